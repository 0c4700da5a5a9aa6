"""`<model>/drift_report` per feedback batch and `<model>/live_performance` over all feedback."""

import dagster as dg

from assets.feedback import EDGE_FEEDBACK_KEY
from assets.model_spec import ModelSpec
from assets.partitions import feedback_batches
from assets.step_resources import K8S_BATCH_STEP
from resources.artifact_store import ArtifactStoreResource
from resources.lake import LakeResource

REFERENCE_ROWS = 5000


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class DriftConfig(dg.Config):
    """Fixed explicitly, so the verdict never depends on evidently's sample-size defaults.

    PSI at 0.25 per feature, one drifted feature enough, against the training rows of the batch's own
    hardware revision: a simulated month without drift (`tests/pipelines/test_drift_alarms.py`, 60
    batches) peaks at PSI 0.12 on any feature, while both drift scenarios reach 0.34 (winter) and 1.6
    (a new hardware revision) on their first day. The normalized Wasserstein distance at 0.1 used
    before raised three false alarms in that month, as high as the real drifts: a few extreme windows
    move it on many features at once, and a reference mixing revisions showed one revision's sensor
    bias as drift.
    """

    method: str = "psi"
    threshold: float = 0.25
    """Population stability index at which one feature counts as drifted (0.25: a significant shift)."""
    drift_share: float = 0.02
    """Share of drifted features that makes the batch drifted: one feature is enough."""
    min_rows: int = 300
    """Below this many windows a batch is reported as too small to judge, not measured: the statistics
    of small samples cross any threshold by chance."""


def build_monitoring_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    features_key = dg.AssetKey([spec.name, "feedback_features"])
    drift_key = dg.AssetKey([spec.name, "drift_report"])

    @dg.asset(
        key=drift_key,
        deps=[features_key],
        ins={"training_dataset": dg.AssetIn(dg.AssetKey([spec.name, "training_dataset"]))},
        partitions_def=feedback_batches,
        group_name=spec.name,
        kinds={"evidently"},
        code_version="1",
        op_tags=K8S_BATCH_STEP,
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        config: DriftConfig,
        training_dataset: dict,
        lake: LakeResource,
        artifacts: ArtifactStoreResource,
    ) -> dg.MaterializeResult:
        """evidently's data-drift preset on the model's features of this batch against the training
        reference (a seeded sample of the train split), with the method, per-feature threshold and
        drifted-share threshold fixed in config. The HTML report is stored and linked."""
        from assets.drift_metrics import measure_drift
        from resources.filesystems import read_parquet

        features = list(spec.feature_names)
        reference = read_parquet(training_dataset["uri"], columns=[*features, "hardware_rev", "split"]).to_pandas()
        reference = reference[reference["split"] == "train"]
        current = lake.read_table(features_key.path, context.partition_key).to_pandas()
        # A batch is one hardware revision's: it is compared with what the model learnt of that revision
        # (revisions differ in bias and noise, which is not drift); a revision new to the model, with
        # everything it learnt.
        same_revision = reference[reference["hardware_rev"].isin(current["hardware_rev"].unique())]
        if len(same_revision) >= config.min_rows:
            reference = same_revision
        reference = reference[features].sample(n=min(REFERENCE_ROWS, len(reference)), random_state=0)
        if len(current) < config.min_rows:
            context.log.info(f"{context.partition_key}: {len(current)} windows, too few to judge drift (< {config.min_rows})")
            return dg.MaterializeResult(
                metadata={
                    "drift_judged": False,
                    "reason": f"too small to judge: {len(current)} windows < min_rows {config.min_rows}",
                    "current_rows": len(current),
                    "hardware_revs": sorted(current["hardware_rev"].unique().tolist()),
                }
            )
        result = measure_drift(reference, current[features], features, config.method, config.threshold, config.drift_share)
        stored = artifacts.put("drift_reports", f"{context.partition_key}.html", result.html.encode())
        ranked = sorted(result.features, key=lambda f: f.score, reverse=True)
        table = "\n".join(
            f"| {f.feature} | {f.score:.3f} | {'yes' if f.drifted else 'no'} |" for f in ranked[:15]
        )
        return dg.MaterializeResult(
            metadata={
                "drift_judged": True,
                "drifted_share": result.drifted_share,
                "dataset_drifted": result.dataset_drifted,
                "drifted_features": sum(f.drifted for f in result.features),
                "method": result.method,
                "threshold": result.threshold,
                "drift_share_threshold": result.drift_share_threshold,
                "reference_rows": result.reference_rows,
                "current_rows": result.current_rows,
                "hardware_revs": sorted(current["hardware_rev"].unique().tolist()),
                "model_versions": sorted(current["model_version"].unique().tolist()),
                "training_dataset": training_dataset["uri"],
                "features": dg.MetadataValue.md("| feature | score | drifted |\n| --- | --- | --- |\n" + table),
                "report": dg.MetadataValue.path(stored.uri),
                "report_url": dg.MetadataValue.url(f"file://{stored.uri}") if "://" not in stored.uri else dg.MetadataValue.url(stored.uri),
            }
        )

    @dg.asset(
        key=dg.AssetKey([spec.name, "live_performance"]),
        deps=[EDGE_FEEDBACK_KEY],
        ins={"rollout_plan": dg.AssetIn(dg.AssetKey([spec.name, "rollout_plan"]))},
        group_name=spec.name,
        kinds={"pandas"},
        code_version="1",
        io_manager_key="ref_io_manager",
    )
    def live_performance(context: dg.AssetExecutionContext, rollout_plan: dict, lake: LakeResource) -> dg.Output[dict]:
        """What the fleet's reviewers and devices say: precision/recall per class from reviewed feedback
        by model version and hardware revision, on-device inference_ms p50/p99 against each profile's
        budget, and every stage gate of the current rollout plan evaluated (pass/fail)."""
        import pandas as pd

        from assets.live_metrics import (
            distinct_events,
            evaluate_stage_gates,
            latency_by_revision,
            performance_by_group,
        )

        partitions = lake.stored_partitions(EDGE_FEEDBACK_KEY.path)
        columns = ["event_id", "device_id", "hardware_rev", "model_version", "predicted_label", "review_label", "inference_ms"]
        frames = [lake.read_table(EDGE_FEEDBACK_KEY.path, p, columns=columns).to_pandas() for p in partitions]
        feedback = distinct_events(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns))
        current_version = rollout_plan["bundle"]["version"]
        performance = performance_by_group(feedback, spec.class_names, ["model_version", "hardware_rev"])
        current = performance_by_group(feedback[feedback["model_version"] == current_version], spec.class_names, [])
        latency = latency_by_revision(feedback[feedback["model_version"] == current_version])
        stages = evaluate_stage_gates(rollout_plan["stages"], feedback[feedback["model_version"] == current_version], spec.fallback_class)
        overall = current.get("all", {})
        recalls = {name: row["recall"] for name, row in overall.get("per_class", {}).items() if row["support"] > 0}
        weakest = min(recalls, key=recalls.get) if recalls else None
        ref = {
            "model_version": current_version,
            "batches": len(partitions),
            "reviewed_rows": int(feedback["review_label"].notna().sum()),
            "reviewed_rows_current_version": overall.get("reviewed", 0),
            "macro_f1": overall.get("macro_f1"),
            "min_recall": recalls[weakest] if weakest else None,
            "min_recall_class": weakest,
            "by_group": performance,
            "latency": latency,
            "stages": stages,
        }
        return dg.Output(
            ref,
            metadata={
                "model_version": current_version,
                "batches": len(partitions),
                "reviewed_rows": ref["reviewed_rows"],
                "reviewed_rows_current_version": ref["reviewed_rows_current_version"],
                "live_macro_f1": ref["macro_f1"],
                "live_min_recall": ref["min_recall"],
                "live_min_recall_class": weakest or "n/a",
                "by_version_and_revision": dg.MetadataValue.md(
                    "| model | revision | reviewed | macro-F1 |\n| --- | --- | --- | --- |\n"
                    + "\n".join(
                        f"| {key.split('|')[0]} | {key.split('|')[1]} | {row['reviewed']} | {_figure(row['macro_f1'])} |"
                        for key, row in performance.items()
                    )
                ),
                "latency": dg.MetadataValue.json(latency),
                "stage_gates": dg.MetadataValue.md(
                    "| revision | stage | devices | reviewed | FPR | p99 ms | passed |\n| --- | --- | --- | --- | --- | --- | --- |\n"
                    + "\n".join(
                        f"| {s['hardware_rev']} | {s['name']} | {s['devices']} | {s['reviewed']} | "
                        f"{_figure(s['false_positive_rate'])} | {_figure(s['latency_p99_ms'])} | {'yes' if s['passed'] else 'no'} |"
                        for s in stages
                    )
                ),
            },
        )

    return [drift_report, live_performance]
