"""Blessing gates: absolute floors on the candidate and no slice regression against the champion."""

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from threadpoolctl import threadpool_limits

from assets.evaluation import ABSOLUTE_GATE, CHAMPION_ALIAS, SLICE_GATE
from assets.evaluation_metrics import classification_metrics, slice_metrics
from assets.features import WINDOW_FEATURES_KEY
from assets.model_gates import GateSpec, absolute_gate_failures, slice_regression_failures
from assets.model_lifecycle import build_model_lifecycle
from edge_packaging.telemetry_contract import HARSH_EVENT_CLASSES
from pipelines.model_specs import HARSH_EVENT_MODEL
from resources.artifact_store import ArtifactStoreResource
from resources.json_refs import JsonRefIOManager
from resources.model_registry import ModelRegistry, ModelRegistryResource
from resources.skops_models import dump_classifier

SPEC = GateSpec(
    min_macro_f1=0.7,
    min_recall={"collision": 0.8, "harsh_brake": 0.6},
    slice_columns=("region",),
    max_slice_regression=0.05,
    min_slice_support=30,
)


def metrics_of(confusion: list[list[int]]) -> dict:
    """`classification_metrics` of predictions laid out as `confusion` (rows true, columns predicted)."""
    cells = np.asarray(confusion)
    n_classes = cells.shape[0]
    y_true = np.repeat(np.repeat(np.arange(n_classes), n_classes), cells.ravel())
    y_pred = np.repeat(np.tile(np.arange(n_classes), n_classes), cells.ravel())
    proba = np.eye(n_classes)[y_pred]
    return classification_metrics(y_true, y_pred, proba, HARSH_EVENT_CLASSES)


def diagonal_confusion(correct: list[int], benign_column: bool = True) -> list[list[int]]:
    """100 rows per class; `correct[k]` of class k predicted right, the rest predicted benign."""
    benign = HARSH_EVENT_CLASSES.index("benign")
    confusion = np.zeros((len(correct), len(correct)), dtype=int)
    for k, right in enumerate(correct):
        confusion[k, k] += right
        confusion[k, benign if benign_column else (k + 1) % len(correct)] += 100 - right
    return confusion.tolist()


def slice_figures(macro_f1: float, support: int = 100) -> dict:
    return {"support": support, "macro_f1": macro_f1, "recall": {}, "gated": support >= 30}


# --- absolute floors -----------------------------------------------------------------------------


def test_a_strong_candidate_clears_the_absolute_floors():
    assert absolute_gate_failures(metrics_of(diagonal_confusion([95, 92, 90, 93, 100])), SPEC) == []


def test_a_weak_candidate_fails_macro_f1_by_its_shortfall():
    metrics = metrics_of(diagonal_confusion([60, 40, 50, 85, 100]))
    assert metrics["macro_f1"] < SPEC.min_macro_f1

    failures = absolute_gate_failures(metrics, SPEC)

    macro = next(failure for failure in failures if failure.gate == "macro_f1_floor")
    assert macro.figure == "macro_f1"
    assert (macro.value, macro.limit) == (metrics["macro_f1"], 0.7)
    assert macro.shortfall == pytest.approx(0.7 - metrics["macro_f1"])
    assert macro.message == (
        f"macro-F1 {metrics['macro_f1']:.2f} is {0.7 - metrics['macro_f1']:.2f} below the floor 0.70"
    )
    assert [failure.gate for failure in failures] == ["macro_f1_floor"]  # collision 0.85, brake 0.60 pass


def test_a_collision_recall_failure_names_collision():
    failures = absolute_gate_failures(metrics_of(diagonal_confusion([95, 92, 90, 71, 100])), SPEC)

    assert len(failures) == 1
    (failure,) = failures
    assert (failure.gate, failure.figure) == ("recall_floor", "recall:collision")
    assert failure.value == pytest.approx(0.71) and failure.shortfall == pytest.approx(0.09)
    assert failure.message == "recall of collision 0.71 is 0.09 below the floor 0.80"


def test_messages_show_enough_decimals_to_tell_a_near_miss_from_the_floor():
    failures = absolute_gate_failures(
        {"macro_f1": 0.6999, "per_class": {}},
        GateSpec(0.7, {}, (), 0.05, 30),
    )
    assert failures[0].message == "macro-F1 0.6999 is 0.0001 below the floor 0.7000"


def test_a_recall_floor_on_a_class_without_evaluation_rows_fails():
    confusion = diagonal_confusion([95, 92, 90, 0, 100])
    confusion[3] = [0, 0, 0, 0, 0]
    (failure,) = absolute_gate_failures(metrics_of(confusion), SPEC)
    assert failure.figure == "recall:collision"
    assert "no collision rows" in failure.message


def test_a_recall_floor_on_an_unknown_class_is_a_configuration_error():
    spec = GateSpec(0.5, {"pothole": 0.5}, (), 0.05, 30)
    with pytest.raises(ValueError, match="pothole"):
        absolute_gate_failures(metrics_of(diagonal_confusion([90] * 5)), spec)


def test_gate_spec_rejects_out_of_range_limits_and_does_not_follow_changes_to_its_inputs():
    with pytest.raises(ValueError, match="collision"):
        GateSpec(0.5, {"collision": 1.2}, (), 0.05, 30)
    with pytest.raises(ValueError, match="max_slice_regression"):
        GateSpec(0.5, {}, (), -0.01, 30)
    floors = {"collision": 0.8}
    spec = GateSpec(0.5, floors, ("region",), 0.05, 30)
    floors["collision"] = 0.0
    assert spec.min_recall["collision"] == 0.8


# --- slice regression ----------------------------------------------------------------------------


def test_a_slice_regression_beyond_tolerance_fails():
    champion = {"region": {"eu": slice_figures(0.80), "us": slice_figures(0.90)}}
    candidate = {"region": {"eu": slice_figures(0.70), "us": slice_figures(0.91)}}

    (failure,) = slice_regression_failures(candidate, champion, SPEC)

    assert (failure.gate, failure.figure) == ("slice_regression", "macro_f1[region=eu]")
    assert failure.value == 0.70 and failure.limit == pytest.approx(0.75)
    assert failure.shortfall == pytest.approx(0.05)
    assert failure.message == "macro-F1 on region=eu 0.70 vs champion 0.80: 0.05 beyond the 0.05 tolerance"


def test_a_slice_regression_within_tolerance_passes():
    champion = {"region": {"eu": slice_figures(0.80)}}
    candidate = {"region": {"eu": slice_figures(0.76)}}
    assert slice_regression_failures(candidate, champion, SPEC) == []


def test_small_slices_are_not_gated():
    champion = {"region": {"apac": slice_figures(0.90, support=29)}}
    candidate = {"region": {"apac": slice_figures(0.10, support=29)}}
    assert slice_regression_failures(candidate, champion, SPEC) == []


def test_slices_missing_from_the_champion_are_not_compared():
    champion = {"region": {"eu": slice_figures(0.80)}}
    candidate = {"region": {"eu": slice_figures(0.80), "latam": slice_figures(0.10)}}
    assert slice_regression_failures(candidate, champion, SPEC) == []


def test_without_a_champion_there_are_no_slice_failures():
    candidate = {"region": {"eu": slice_figures(0.10)}}
    assert slice_regression_failures(candidate, None, SPEC) == []


def test_a_gated_slice_column_missing_from_the_candidate_is_a_configuration_error():
    with pytest.raises(ValueError, match="region"):
        slice_regression_failures({}, {"region": {"eu": slice_figures(0.8)}}, SPEC)


def test_slice_gate_reads_slice_metrics_of_both_models_on_the_same_evaluation_set():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, len(HARSH_EVENT_CLASSES), 400)
    slices = pd.DataFrame({"region": np.where(np.arange(400) < 200, "eu", "us")})
    slices.loc[:9, "region"] = "apac"
    champion_pred = y_true.copy()
    candidate_pred = y_true.copy()
    candidate_pred[200:300] = (y_true[200:300] + 1) % len(HARSH_EVENT_CLASSES)  # half of us wrong
    candidate_pred[:10] = (y_true[:10] + 1) % len(HARSH_EVENT_CLASSES)  # all of the tiny apac wrong

    def figures(y_pred: np.ndarray) -> dict:
        return slice_metrics(slices, y_true, y_pred, HARSH_EVENT_CLASSES, ["region"], SPEC.min_slice_support)

    failures = slice_regression_failures(figures(candidate_pred), figures(champion_pred), SPEC)

    assert [failure.figure for failure in failures] == ["macro_f1[region=us]"]
    assert failures[0].message.startswith("macro-F1 on region=us 0.")
    assert "vs champion 1.00" in failures[0].message


# --- wiring: the blocking check on the code location's own evaluation asset -----------------------
# The functions above are the gate's logic; these tests hold the asset definitions the platform builds
# from the harsh-event spec to it: `model_evaluation` must compare the candidate with the registered
# champion slice by slice, report it through its blocking check, and so keep `champion_model` from
# promoting a candidate that regressed on one slice. Small synthetic models, no Ray: a few seconds.

REGRESSING_REV = "vg-r4"
"""The hardware revision on which the regressing candidate has learnt to call every event benign."""


def lifecycle_assets() -> dict[str, dg.AssetsDefinition]:
    """The harsh-event lifecycle's assets as the code location builds them, by name."""
    return {a.key.path[-1]: a for a in build_model_lifecycle(HARSH_EVENT_MODEL, WINDOW_FEATURES_KEY)}


def synthetic_dataset(rows: int, seed: int = 0) -> pd.DataFrame:
    """A training dataset shaped like `harsh_event/training_dataset`: the spec's features, a label and
    a split per row, and the slice columns. The class shows in one feature; a second one tells the
    regressing hardware revision (4% of rows) apart, so a model can learn to treat it differently."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, len(HARSH_EVENT_MODEL.class_names), rows)
    hardware_rev = np.where(rng.random(rows) < 0.04, REGRESSING_REV, "vg-r3")
    features = rng.normal(0.0, 1.0, size=(rows, len(HARSH_EVENT_MODEL.feature_names))).astype("float32")
    features[:, 0] = label + rng.normal(0.0, 0.1, rows)
    features[:, 1] = hardware_rev == REGRESSING_REV
    return pd.DataFrame(features, columns=list(HARSH_EVENT_MODEL.feature_names)).assign(
        label_index=label,
        split=rng.choice(["train", "validation", "test"], rows, p=[0.5, 0.25, 0.25]),
        hardware_rev=hardware_rev,
        vehicle_class=rng.choice(["light", "medium", "heavy"], rows),
        region=rng.choice(["north", "south"], rows),
    )


def register_classifier(
    registry: ModelRegistry, frame: pd.DataFrame, label: np.ndarray, max_iter: int
) -> str:
    """Fit a small tree classifier on the train split with `label`; register it; its version id."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    train = (frame["split"] == "train").to_numpy()
    features = frame[list(HARSH_EVENT_MODEL.feature_names)].to_numpy("float32")
    with threadpool_limits(1):  # OpenMP threads on a busy 2-core machine cost far more than they give
        model = HistGradientBoostingClassifier(max_iter=max_iter, random_state=0).fit(
            features[train], label[train]
        )
    files = {"model.skops": dump_classifier(model)}
    return registry.register(HARSH_EVENT_MODEL.name, files, {"max_iter": max_iter}).version_id


@pytest.fixture(scope="module")
def gated_home(tmp_path_factory) -> dict:
    """A registry holding a champion and two candidates trained on one synthetic dataset: one as
    good as the champion everywhere, one that calls every event on `REGRESSING_REV` benign."""
    home = tmp_path_factory.mktemp("gated_home")
    frame = synthetic_dataset(8000)
    dataset_uri = str(home / "training_dataset.parquet")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), dataset_uri)
    refs = home / "refs" / HARSH_EVENT_MODEL.name
    refs.mkdir(parents=True)
    (refs / "training_dataset.json").write_text(json.dumps({"uri": dataset_uri}))
    registry = ModelRegistry(str(home / "registry"))
    label = frame["label_index"].to_numpy()
    champion = register_classifier(registry, frame, label, max_iter=10)
    registry.set_alias(
        HARSH_EVENT_MODEL.name, CHAMPION_ALIAS, champion, actor="test", reason="the champion to beat"
    )
    benign = HARSH_EVENT_MODEL.class_names.index(HARSH_EVENT_MODEL.fallback_class)
    blind_on_rev = np.where(frame["hardware_rev"] == REGRESSING_REV, benign, label)
    return {
        "home": home,
        "champion": champion,
        "as_good": register_classifier(registry, frame, label, max_iter=12),
        "regressing": register_classifier(registry, frame, blind_on_rev, max_iter=10),
    }


def evaluate_and_promote(
    gated_home: dict, candidate: str, tmp_path: Path
) -> tuple[dg.ExecuteInProcessResult, str]:
    """Materialize the code location's `model_evaluation` (with its checks) and `champion_model` for
    `candidate`, in a copy of the gated home; the result, and the champion afterwards."""
    home = Path(shutil.copytree(gated_home["home"], tmp_path / "home"))
    (home / "refs" / HARSH_EVENT_MODEL.name / "candidate_model.json").write_text(
        json.dumps({"version_id": candidate})
    )
    assets = lifecycle_assets()
    parents = [
        dg.AssetSpec([HARSH_EVENT_MODEL.name, name]).with_io_manager_key("ref_io_manager")
        for name in ("candidate_model", "training_dataset")
    ]
    with threadpool_limits(1):
        result = dg.materialize(
            [assets["model_evaluation"], assets["champion_model"], *parents],
            selection=[assets["model_evaluation"].key, assets["champion_model"].key],
            resources={
                "registry": ModelRegistryResource(uri=str(home / "registry")),
                "artifacts": ArtifactStoreResource(uri=str(home / "artifacts")),
                "ref_io_manager": JsonRefIOManager(uri=str(home / "refs")),
            },
            run_config={
                "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                "ops": {"harsh_event__model_evaluation": {"config": {"bootstrap_resamples": 20}}},
            },
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    champion = ModelRegistry(str(home / "registry")).alias(HARSH_EVENT_MODEL.name, CHAMPION_ALIAS)
    return result, champion.version_id


def gates_of(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def test_the_wired_slice_gate_blocks_a_candidate_worse_than_the_champion_on_one_slice(gated_home, tmp_path):
    result, champion = evaluate_and_promote(gated_home, gated_home["regressing"], tmp_path)

    gates = gates_of(result)
    assert gates[ABSOLUTE_GATE].passed  # overall it clears the floors: only the slice comparison can stop it
    gate = gates[SLICE_GATE]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    failures = gate.metadata["failures"].value
    assert [failure["figure"] for failure in failures] == [f"macro_f1[hardware_rev={REGRESSING_REV}]"]
    assert f"on hardware_rev={REGRESSING_REV}" in gate.description and "vs champion" in gate.description
    assert not result.success  # blocking: the evaluation step fails, so champion_model never runs
    assert "champion_model" not in {
        event.asset_key.path[-1] for event in result.get_asset_materialization_events()
    }
    assert champion == gated_home["champion"]


def test_the_wired_slice_gate_passes_a_candidate_as_good_on_every_slice(gated_home, tmp_path):
    result, champion = evaluate_and_promote(gated_home, gated_home["as_good"], tmp_path)

    gates = gates_of(result)
    assert gates[ABSOLUTE_GATE].passed and gates[SLICE_GATE].passed
    assert gates[SLICE_GATE].metadata["champion_version"].value == gated_home["champion"]  # it was compared
    assert result.success
    assert champion == gated_home["as_good"]  # promoted


def test_the_gates_on_the_evaluation_asset_are_blocking():
    checks = {check.name: check for check in lifecycle_assets()["model_evaluation"].check_specs}
    assert checks[SLICE_GATE].blocking and checks[ABSOLUTE_GATE].blocking
