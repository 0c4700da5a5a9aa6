"""`<model>/model_evaluation`: the candidate against the champion on held-out data, with the
blocking gates (TFX-style blessing) that decide whether it may be promoted."""

import base64
import functools
from typing import Any

import dagster as dg

from assets.model_spec import ModelSpec
from resources.artifact_store import ArtifactStoreResource
from resources.model_registry import ModelRegistryResource

ABSOLUTE_GATE = "meets_absolute_floors"
SLICE_GATE = "no_slice_regression_vs_champion"
CHAMPION_ALIAS = "champion"


class EvaluationConfig(dg.Config):
    """Operating point and bootstrap size; gate limits live in the model spec."""

    target_precision: float | None = None
    """Precision each event class must reach on validation when choosing its threshold (spec default)."""
    bootstrap_resamples: int = 1000


def load_registered_classifier(registry: ModelRegistryResource, model_name: str, version_id: str) -> Any:
    """The registered classifier, rebuilt by the checked skops loader once per payload and process.

    Rebuilding costs about 0.8 s (thousands of tree arrays), and one training run needs the candidate
    in evaluation and export and the champion in evaluation. The cache is keyed by the bytes just
    read, so a changed payload is never served from it; the models are only used to predict, never
    modified.
    """
    return _classifier_from_payload(registry.read_file(model_name, version_id, "model.skops"))


@functools.lru_cache(maxsize=4)
def _classifier_from_payload(payload: bytes) -> Any:
    from resources.skops_models import load_classifier

    return load_classifier(payload)


def validation_thresholds(model: Any, frame, spec: ModelSpec, target_precision: float) -> dict:
    """Per-class decision thresholds chosen on the validation split at `target_precision`."""
    from assets.evaluation_metrics import choose_thresholds

    validation = frame[frame["split"] == "validation"]
    return choose_thresholds(
        validation["label_index"].to_numpy(),
        model.predict_proba(validation[list(spec.feature_names)].to_numpy("float32")),
        spec.class_names,
        target_precision,
        spec.fallback_class,
        min_threshold=spec.min_decision_threshold,
    )


def evaluate_classifier(model: Any, frame, spec: ModelSpec, target_precision: float, resamples: int) -> dict:
    """Thresholds chosen on the validation split, then every figure on the test split."""
    from assets.evaluation_metrics import (
        apply_thresholds,
        bootstrap_intervals,
        classification_metrics,
        slice_metrics,
    )

    features = list(spec.feature_names)
    test = frame[frame["split"] == "test"]
    choices = validation_thresholds(model, frame, spec, target_precision)
    thresholds = {name: choice.threshold for name, choice in choices.items()}
    y_true = test["label_index"].to_numpy()
    proba = model.predict_proba(test[features].to_numpy("float32"))
    y_pred = apply_thresholds(proba, spec.class_names, thresholds, spec.fallback_class)
    present = {spec.class_names[index] for index in set(y_true.tolist())}
    intervals = bootstrap_intervals(
        y_true,
        y_pred,
        spec.class_names,
        # A floor on a class absent from the test set fails its gate with a clear message; it has no interval.
        figures=("macro_f1", *(f"recall:{name}" for name in spec.gates.min_recall if name in present)),
        n_resamples=resamples,
    )
    return {
        "thresholds": thresholds,
        "threshold_choices": {name: vars(choice) for name, choice in choices.items()},
        "metrics": classification_metrics(y_true, y_pred, proba, spec.class_names),
        "slices": slice_metrics(
            test, y_true, y_pred, spec.class_names, spec.gates.slice_columns, spec.gates.min_slice_support
        ),
        "intervals": {figure: vars(interval) for figure, interval in intervals.items()},
        "_plots": (y_true, proba),
    }


def challenged_champion(registry: ModelRegistryResource, model_name: str, candidate_version_id: str):
    """The champion a candidate is measured against: the current one, or, when the candidate already
    is the champion (a rerun after its promotion), the one its promotion replaced. So rerunning the
    evaluation of a candidate reproduces its report instead of dropping the comparison."""
    current = registry.alias(model_name, CHAMPION_ALIAS)
    if current is None or current.version_id != candidate_version_id:
        return current
    history = registry.history(model_name, alias=CHAMPION_ALIAS)
    promotions = [event for event in history if event.version_id == candidate_version_id]
    replaced = promotions[-1].previous_version_id if promotions else None
    return registry.version(model_name, replaced) if replaced else None


def _png_md(title: str, png: bytes) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _per_class_md(metrics: dict) -> str:
    lines = ["| class | precision | recall | F1 | PR-AUC | support |", "| --- | --- | --- | --- | --- | --- |"]
    for name, row in metrics["per_class"].items():
        pr_auc = "n/a" if row["pr_auc"] is None else f"{row['pr_auc']:.3f}"
        lines.append(
            f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {pr_auc} | {row['support']} |"
        )
    return "\n".join(lines)


def _slices_md(candidate: dict, champion: dict | None) -> str:
    lines = ["| slice | support | candidate macro-F1 | champion macro-F1 | gated |", "| --- | --- | --- | --- | --- |"]
    for column, values in candidate.items():
        for value, row in values.items():
            theirs = (champion or {}).get(column, {}).get(value)
            theirs_text = "-" if theirs is None else f"{theirs['macro_f1']:.3f}"
            lines.append(
                f"| {column}={value} | {row['support']} | {row['macro_f1']:.3f} | {theirs_text} | {'yes' if row['gated'] else 'no'} |"
            )
    return "\n".join(lines)


def _gate_result(name: str, failures: list, passed_text: str, extra: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description=passed_text if not failures else "; ".join(failure.message for failure in failures),
        metadata={
            "failures": dg.MetadataValue.json([vars(failure) for failure in failures]),
            **extra,
        },
    )


def build_evaluation_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    evaluation_key = dg.AssetKey([spec.name, "model_evaluation"])

    @dg.asset(
        key=evaluation_key,
        group_name=spec.name,
        kinds={"scikit-learn"},
        code_version="1",
        io_manager_key="ref_io_manager",
        ins={
            "candidate_model": dg.AssetIn(dg.AssetKey([spec.name, "candidate_model"])),
            "training_dataset": dg.AssetIn(dg.AssetKey([spec.name, "training_dataset"])),
        },
        check_specs=[
            dg.AssetCheckSpec(
                ABSOLUTE_GATE,
                asset=evaluation_key,
                blocking=True,
                description="Macro-F1 and the per-class recall floors of the model spec are met on the test set.",
            ),
            dg.AssetCheckSpec(
                SLICE_GATE,
                asset=evaluation_key,
                blocking=True,
                description="No slice (hardware revision, vehicle class, region) is worse than the champion's "
                "beyond the spec's tolerance. The first model has no champion and passes on the floors alone.",
            ),
        ],
    )
    def model_evaluation(
        context: dg.AssetExecutionContext,
        config: EvaluationConfig,
        candidate_model: dict,
        training_dataset: dict,
        registry: ModelRegistryResource,
        artifacts: ArtifactStoreResource,
    ):
        """The candidate on the held-out test set: per-class precision/recall/F1, macro-F1, PR-AUC,
        confusion matrix, calibration, the same by slice, bootstrap 95% intervals, and a decision
        threshold per class chosen on validation at the target precision. The current champion is
        evaluated the same way on the same data, and the gates compare them."""
        import json

        from assets.evaluation_metrics import confusion_matrix_png, pr_curves_png
        from assets.model_gates import absolute_gate_failures, slice_regression_failures
        from resources.filesystems import read_parquet

        frame = read_parquet(training_dataset["uri"]).to_pandas()
        target_precision = config.target_precision or spec.target_precision
        candidate = evaluate_classifier(
            load_registered_classifier(registry, spec.name, candidate_model["version_id"]),
            frame, spec, target_precision, config.bootstrap_resamples,
        )
        champion_version = challenged_champion(registry, spec.name, candidate_model["version_id"])
        champion = None
        if champion_version is not None:
            champion = evaluate_classifier(
                load_registered_classifier(registry, spec.name, champion_version.version_id),
                frame, spec, target_precision, config.bootstrap_resamples,
            )
        y_true, proba = candidate.pop("_plots")
        if champion is not None:
            champion.pop("_plots")
        metrics = candidate["metrics"]
        floors = absolute_gate_failures(metrics, spec.gates)
        regressions = slice_regression_failures(candidate["slices"], champion and champion["slices"], spec.gates)
        pr_png = pr_curves_png(y_true, proba, spec.class_names)
        confusion_png = confusion_matrix_png(metrics["confusion_matrix"], spec.class_names)
        report = {
            "candidate_version": candidate_model["version_id"],
            "champion_version": champion_version.version_id if champion else None,
            "target_precision": target_precision,
            "candidate": candidate,
            "champion": champion,
            "gates": {
                "passed": not floors and not regressions,
                "failures": [vars(failure) for failure in floors + regressions],
            },
        }
        stored = artifacts.put("evaluations", "evaluation.json", json.dumps(report, sort_keys=True, indent=2).encode())
        pr_uri = artifacts.put("evaluations", "pr_curves.png", pr_png).uri
        confusion_uri = artifacts.put("evaluations", "confusion_matrix.png", confusion_png).uri
        macro = candidate["intervals"]["macro_f1"]
        yield dg.Output(
            {**report, "report_uri": stored.uri},
            metadata={
                "macro_f1": metrics["macro_f1"],
                "macro_f1_95ci": f"[{macro['low']:.3f}, {macro['high']:.3f}]",
                "macro_pr_auc": metrics["macro_pr_auc"],
                "accuracy": metrics["accuracy"],
                "expected_calibration_error": metrics["calibration"]["ece"],
                **{
                    f"recall_{name}_95ci": f"[{iv['low']:.3f}, {iv['high']:.3f}]"
                    for name, iv in (
                        (figure.split(":", 1)[1], interval)
                        for figure, interval in candidate["intervals"].items()
                        if figure.startswith("recall:")
                    )
                },
                "test_rows": metrics["n_rows"],
                "per_class": dg.MetadataValue.md(_per_class_md(metrics)),
                "slices": dg.MetadataValue.md(_slices_md(candidate["slices"], champion and champion["slices"])),
                "thresholds": dg.MetadataValue.json(candidate["thresholds"]),
                "champion_version": champion_version.version_id if champion else "none (first model)",
                "champion_macro_f1": champion["metrics"]["macro_f1"] if champion else None,
                "confusion_matrix": _png_md("Confusion matrix (test set, after thresholds)", confusion_png),
                "pr_curves": _png_md("Precision-recall curves (test set)", pr_png),
                "report": dg.MetadataValue.path(stored.uri),
                "plots": dg.MetadataValue.json({"pr_curves": pr_uri, "confusion_matrix": confusion_uri}),
            },
        )
        yield _gate_result(
            ABSOLUTE_GATE,
            floors,
            f"macro-F1 {metrics['macro_f1']:.3f} >= {spec.gates.min_macro_f1}; recall floors met",
            {"macro_f1": metrics["macro_f1"], "min_macro_f1": spec.gates.min_macro_f1},
        )
        yield _gate_result(
            SLICE_GATE,
            regressions,
            "no other champion to compare with: passes on the absolute floors alone"
            if champion is None
            else f"no gated slice more than {spec.gates.max_slice_regression} below champion {champion_version.short_id}",
            {"champion_version": champion_version.version_id if champion else "none"},
        )

    return model_evaluation
