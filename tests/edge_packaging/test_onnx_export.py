"""The edge model is the Python pipeline: same features, same probabilities, on a device-sized runtime.

Windows come from the simulated fleet (falling back to class-shaped synthetic windows if `fleet_sim`
is unavailable); a small HistGradientBoostingClassifier is trained on their numpy features, exported
with the ONNX feature graph in front, and held to the Python pipeline on held-out windows.
"""

import datetime as dt
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_packaging.export import (
    MAX_ABS_PROBABILITY_DIFF,
    MIN_ARGMAX_AGREEMENT,
    ExportError,
    export_edge_model,
    parity,
    python_reference_probabilities,
)
from edge_packaging.features import FEATURE_NAMES, compute_window_features
from edge_packaging.onnx_features import feature_graph
from edge_packaging.profiles import AdmittedModel, admit_model, load_profile
from edge_packaging.quantization import quantize_if_it_helps
from edge_packaging.runtime import EdgeModelSession, device_session, measure_call_latency_ms
from edge_packaging.telemetry_contract import GRAVITY_MPS2, HARSH_EVENT_CLASSES, SAMPLES_PER_WINDOW

SEED = 20240601
TRAIN_WINDOWS = 2000
DEVICE_OPERATOR_ALLOW_LIST = frozenset(
    {
        ("", op)
        for op in (
            "Abs", "Add", "Cast", "Concat", "Greater", "Less", "Mul", "ReduceMax", "ReduceMean", "ReduceMin",
            "ReduceSum", "Reshape", "Slice", "Sqrt", "Sub", "Unsqueeze",
        )
    }
    | {("ai.onnx.ml", "TreeEnsembleClassifier")}
)
"""What a gateway runtime must implement to run the harsh-event edge model: a short, realistic list."""
GATEWAY_PROFILE = "vg-r3-gateway"
"""The smallest gateway: every model these tests load in onnxruntime is admitted by it first."""
# Features that are sums or means over the window: numpy sums pairwise, onnxruntime in its own order,
# so these may differ by float32 rounding. Everything else (max, min, threshold counts) must be exact.
SUMMED_FEATURES = frozenset(
    name
    for name in FEATURE_NAMES
    if name.endswith(("_mean", "_std", "_energy")) or name == "speed_change_est_kph"
)


def admitted(model: "bytes | onnx.ModelProto", profile: str = GATEWAY_PROFILE) -> AdmittedModel:
    """`model` admitted by a gateway profile, as every onnxruntime session requires."""
    model_bytes = model if isinstance(model, bytes) else model.SerializeToString()
    return admit_model(model_bytes, [load_profile(profile)])


def _fleet_windows(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(imu, speed_kph, class index, source) for about 4000 simulated event windows."""
    try:
        from edge_packaging.telemetry_contract import imu_windows
        from fleet_sim.fleet import build_fleet
        from fleet_sim.telemetry import device_day_rng, simulate_device_day

        imus, speeds, classes = [], [], []
        for device in build_fleet(20, seed):
            for offset in range(5):
                day = dt.date(2024, 3, 4) + dt.timedelta(days=offset)
                upload = simulate_device_day(device, day, device_day_rng(seed, device, day))
                imus.append(imu_windows(upload.table.column("imu")))
                speeds.append(upload.table.column("speed_kph").to_numpy())
                classes.append(upload.true_class)
        labels = np.array([HARSH_EVENT_CLASSES.index(name) for name in np.concatenate(classes)])
        return np.concatenate(imus), np.concatenate(speeds).astype(np.float32), labels, "fleet_sim"
    except (ImportError, AttributeError, TypeError):
        return (*_synthetic_windows(4000, seed), "synthetic")


def _synthetic_windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-shaped windows: gravity and road noise plus a pulse whose axis and size depend on the class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(HARSH_EVENT_CLASSES), size=n)
    imu = rng.normal(0.0, 0.4, size=(n, 6, SAMPLES_PER_WINDOW)).astype(np.float32)
    imu[:, 3:] *= 0.05
    imu[:, 2] += np.float32(GRAVITY_MPS2)
    t = np.arange(SAMPLES_PER_WINDOW)
    start = rng.integers(40, 120, size=n)
    width = rng.integers(10, 60, size=n)
    pulse = ((t >= start[:, None]) & (t < (start + width)[:, None])).astype(np.float32)
    size = rng.uniform(2.0, 7.0, size=n).astype(np.float32)[:, None]
    for index, name in enumerate(HARSH_EVENT_CLASSES):
        rows = labels == index
        if name == "harsh_brake":
            imu[rows, 0] -= size[rows] * pulse[rows]
        elif name == "harsh_accel":
            imu[rows, 0] += size[rows] * pulse[rows]
        elif name == "harsh_turn":
            imu[rows, 1] += size[rows] * pulse[rows]
            imu[rows, 5] += 0.3 * pulse[rows]
        elif name == "collision":
            imu[rows, 0] += 8 * size[rows] * pulse[rows] * (t % 7 == 0)
        else:
            imu[rows, 2] += size[rows] * pulse[rows] * np.sin(t / 2.0)
    speed = rng.uniform(0, 120, size=n).astype(np.float32)
    return imu, speed, labels


@pytest.fixture(scope="module")
def windows():
    imu, speed, labels, source = _fleet_windows(SEED)
    assert len(imu) - TRAIN_WINDOWS >= 1000, "the held-out set must hold at least 1000 windows"
    print(f"\n{len(imu)} windows from {source}, classes {np.bincount(labels).tolist()}")
    return imu, speed, labels


@pytest.fixture(scope="module")
def held_out(windows):
    imu, speed, labels = windows
    return imu[TRAIN_WINDOWS:], speed[TRAIN_WINDOWS:], labels[TRAIN_WINDOWS:]


@pytest.fixture(scope="module")
def training_set(windows):
    """Numpy features and class indexes of the training windows."""
    imu, speed, labels = windows
    return compute_window_features(imu[:TRAIN_WINDOWS], speed[:TRAIN_WINDOWS]), labels[:TRAIN_WINDOWS]


@pytest.fixture(scope="module")
def tree_classifier(training_set):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(*training_set)


@pytest.fixture(scope="module")
def edge_model(tree_classifier) -> onnx.ModelProto:
    return export_edge_model(tree_classifier, HARSH_EVENT_CLASSES)


def _ops(model: onnx.ModelProto) -> set[tuple[str, str]]:
    return {(node.domain, node.op_type) for node in model.graph.node}


@pytest.mark.parametrize("opset", [17, 18])
def test_feature_graph_reproduces_the_numpy_features(windows, opset):
    imu, speed, _ = windows
    model = feature_graph(opset)
    assert json.loads({p.key: p.value for p in model.metadata_props}["feature_names"]) == list(FEATURE_NAMES)
    session = device_session(admitted(model, "vg-r3-gateway" if opset <= 17 else "vg-r4-gateway"))
    (onnx_features,) = session.run(["features"], {"imu": imu, "speed_kph": speed})
    numpy_features = compute_window_features(imu, speed)

    assert onnx_features.dtype == np.float32 and onnx_features.shape == (len(imu), len(FEATURE_NAMES))
    diff = np.abs(onnx_features - numpy_features)
    column_scale = np.maximum(np.abs(numpy_features).max(axis=0), 1e-6)
    worst = FEATURE_NAMES[int(diff.max(axis=0).argmax())]
    print(
        f"\nopset {opset}: max |onnx - numpy| {diff.max():.3g} ({worst}), "
        f"max relative to the column's scale {(diff.max(axis=0) / column_scale).max():.3g}"
    )
    for index, name in enumerate(FEATURE_NAMES):
        if name in SUMMED_FEATURES:
            assert diff[:, index].max() <= 1e-5 * column_scale[index], name
        else:
            assert np.array_equal(onnx_features[:, index], numpy_features[:, index]), f"{name} not bit-exact"


def test_feature_graph_keeps_the_batch_dimension_symbolic():
    session = device_session(admitted(feature_graph(17)))
    imu_input, speed_input = session.get_inputs()
    assert (imu_input.name, imu_input.shape) == ("imu", ["N", 6, 200])
    assert (speed_input.name, speed_input.shape) == ("speed_kph", ["N"])
    for n in (0, 1, 3):
        feeds = {"imu": np.zeros((n, 6, 200), np.float32), "speed_kph": np.zeros(n, np.float32)}
        (features,) = session.run(None, feeds)
        assert features.shape == (n, len(FEATURE_NAMES))


def test_edge_model_matches_the_python_pipeline_on_held_out_windows(edge_model, tree_classifier, held_out):
    imu, speed, labels = held_out
    report = parity(admitted(edge_model), tree_classifier, imu, speed)
    predicted = python_reference_probabilities(tree_classifier, imu, speed).argmax(axis=1)
    accuracy = float(np.mean(predicted == labels))
    print(f"\n{report}, held-out accuracy {accuracy:.3f}, model {edge_model.ByteSize()} bytes")
    assert report.windows == len(imu) >= 1000
    assert report.max_abs_diff <= MAX_ABS_PROBABILITY_DIFF
    assert report.argmax_agreement >= MIN_ARGMAX_AGREEMENT
    assert report.passed
    assert accuracy > 0.8, "the classifier learnt nothing, so parity would prove little"


def test_edge_model_contract(edge_model):
    session = EdgeModelSession(admitted(edge_model))
    probabilities = session.predict_proba(np.zeros((3, 6, 200), np.float32), np.zeros(3, np.float32))
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, len(HARSH_EVENT_CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    assert [i.name for i in edge_model.graph.input] == ["imu", "speed_kph"]
    (output,) = edge_model.graph.output
    dims = [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim]
    assert output.name == "probabilities" and dims == ["N", len(HARSH_EVENT_CLASSES)]
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    metadata = {p.key: p.value for p in edge_model.metadata_props}
    assert json.loads(metadata["class_names"]) == list(HARSH_EVENT_CLASSES)
    assert json.loads(metadata["feature_names"]) == list(FEATURE_NAMES)
    assert metadata["producer"] == "fleetml" and edge_model.producer_name == "fleetml"
    assert "harsh_brake" in edge_model.doc_string
    assert session.class_names == HARSH_EVENT_CLASSES
    opsets = [(entry.domain, entry.version) for entry in edge_model.opset_import]
    assert len(opsets) == len(dict(opsets)), f"duplicate opset entries {opsets}"
    assert dict(opsets)[""] == 17 and dict(opsets)["ai.onnx.ml"] <= 3
    onnx.checker.check_model(edge_model, full_check=True)


def test_export_is_byte_identical_for_the_same_classifier(tree_classifier, edge_model):
    """The edge model is content-addressed: exporting the same fitted model again (as a rerun of
    `edge_model` does, from the classifier loaded from the registry) must give the same bytes."""
    import copy

    again = export_edge_model(copy.deepcopy(tree_classifier), HARSH_EVENT_CLASSES)
    assert again.SerializeToString() == edge_model.SerializeToString()


def test_edge_model_uses_only_operators_a_device_allow_list_can_name(edge_model):
    used = _ops(edge_model)
    print("\noperators:", ", ".join(f"{domain or 'ai.onnx'}:{op}" for domain, op in sorted(used)))
    assert used <= DEVICE_OPERATOR_ALLOW_LIST, f"not allowed: {sorted(used - DEVICE_OPERATOR_ALLOW_LIST)}"
    assert ("ai.onnx.ml", "TreeEnsembleClassifier") in used


@pytest.mark.parametrize(
    ("labels", "class_names"),
    [
        (np.array(HARSH_EVENT_CLASSES), HARSH_EVENT_CLASSES),  # trained on names, not their indices
        (np.arange(5), HARSH_EVENT_CLASSES[:4]),  # one class more than names
        (np.array([0, 1, 3, 4]), HARSH_EVENT_CLASSES[:4]),  # a gap: column 2 would not be class 2
        (np.arange(5), ("harsh_brake",) * 5),  # names must be distinct
    ],
)
def test_a_classifier_whose_classes_do_not_index_class_names_is_refused(labels, class_names):
    from sklearn.dummy import DummyClassifier

    features = np.zeros((len(labels), len(FEATURE_NAMES)), dtype=np.float32)
    classifier = DummyClassifier().fit(features, labels)
    with pytest.raises(ExportError):
        export_edge_model(classifier, class_names)


def test_a_classifier_trained_on_other_features_is_refused():
    from sklearn.dummy import DummyClassifier

    classifier = DummyClassifier().fit(np.zeros((5, 40), np.float32), np.arange(5))
    with pytest.raises(ExportError, match="features"):
        export_edge_model(classifier, HARSH_EVENT_CLASSES)


def test_an_export_with_swapped_feature_columns_fails_parity(edge_model, tree_classifier, held_out):
    broken = onnx.ModelProto()
    broken.CopyFrom(edge_model)
    (concat,) = [node for node in broken.graph.node if node.output[0] == "features"]
    columns = list(concat.input)
    speed, change = columns.index("features/speed_column"), columns.index("features/speed_change_est")
    columns[speed], columns[change] = columns[change], columns[speed]
    del concat.input[:]
    concat.input.extend(columns)
    imu, speed, _ = held_out
    report = parity(admitted(broken), tree_classifier, imu, speed)
    print(f"\nswapped speed_kph/speed_change_est_kph: {report}")
    assert not report.passed
    assert report.max_abs_diff > MAX_ABS_PROBABILITY_DIFF


def test_a_pipeline_exports_with_the_same_parity(training_set, held_out):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(*training_set)
    model = export_edge_model(pipeline, HARSH_EVENT_CLASSES)
    report = parity(admitted(model), pipeline, held_out[0], held_out[1])
    assert report.passed, report


THREADS_OF_ONE_SESSION = """
import os, sys
import numpy as np
from edge_packaging.profiles import admit_model, load_profile
from edge_packaging.runtime import EdgeModelSession
model, imu, speed = open(sys.argv[1], "rb").read(), np.load(sys.argv[2]), np.load(sys.argv[3])
model = admit_model(model, [load_profile(sys.argv[4])])
EdgeModelSession(model, threads=1)  # onnxruntime's import and process-wide set-up come first
before = len(os.listdir("/proc/self/task"))
EdgeModelSession(model, threads=1).predict_proba(imu, speed)
print(len(os.listdir("/proc/self/task")) - before)
"""


def test_the_runtime_scores_on_one_thread(edge_model, tree_classifier, held_out, tmp_path):
    from threadpoolctl import threadpool_limits

    imu, speed, _ = held_out
    if os.path.isdir("/proc/self/task"):
        # Counted in a fresh process: the test process's other threads (clients, pools) come and go.
        (tmp_path / "model.onnx").write_bytes(edge_model.SerializeToString())
        np.save(tmp_path / "imu.npy", imu[:256])
        np.save(tmp_path / "speed.npy", speed[:256])
        files = [str(tmp_path / name) for name in ("model.onnx", "imu.npy", "speed.npy")]
        command = [sys.executable, "-c", THREADS_OF_ONE_SESSION, *files, GATEWAY_PROFILE]
        counted = subprocess.run(command, capture_output=True, text=True, check=True)
        assert counted.stdout.strip() == "0", "onnxruntime started worker threads"
    session = EdgeModelSession(admitted(edge_model), threads=1)
    session.predict_proba(imu[:256], speed[:256])
    options = session.session_options
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.execution_mode.name == "ORT_SEQUENTIAL"
    assert session.providers == ["CPUExecutionProvider"]

    one_window, one_speed = imu[:1], speed[:1]
    edge = session.measure_latency_ms(one_window, repeats=300, speed_kph=one_speed)
    with threadpool_limits(1):
        python = measure_call_latency_ms(
            lambda: python_reference_probabilities(tree_classifier, one_window, one_speed), repeats=300
        )
    print(f"\none window, one thread: onnx p50 {edge.p50_ms:.3f} ms p99 {edge.p99_ms:.3f} ms; "
          f"python p50 {python.p50_ms:.3f} ms p99 {python.p99_ms:.3f} ms")
    assert 0 < edge.p50_ms <= edge.p99_ms
    with pytest.raises(ValueError):
        session.measure_latency_ms(imu[:2])


def test_quantization_keeps_the_float_tree_model_and_says_why(edge_model):
    # skl2onnx-style duplicate default-domain entry: quantize_dynamic fails on it unless it is fixed.
    duplicated = onnx.ModelProto()
    duplicated.CopyFrom(edge_model)
    duplicated.opset_import.append(onnx.helper.make_opsetid("", 17))
    checks = []
    outcome = quantize_if_it_helps(duplicated, lambda model_bytes: checks.append(model_bytes) or True)
    print(f"\ntree model: {outcome.reason}")
    assert not outcome.quantized
    assert outcome.model_bytes == duplicated.SerializeToString()
    assert outcome.quantized_bytes is not None, f"quantize_dynamic did not run: {outcome.reason}"
    assert outcome.quantized_bytes >= outcome.original_bytes
    assert str(outcome.original_bytes) in outcome.reason and str(outcome.quantized_bytes) in outcome.reason
    assert checks == [], "a quantized model that is not smaller needs no check"


def test_quantization_is_kept_only_when_smaller_and_checked(training_set, held_out):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlp = make_pipeline(StandardScaler(), MLPClassifier((128,), max_iter=20, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(*training_set)
    model = export_edge_model(mlp, HARSH_EVENT_CLASSES)  # skl2onnx declares opset 16 for an MLP

    refused = quantize_if_it_helps(model, lambda model_bytes: False)
    assert not refused.quantized and refused.model_bytes == model.SerializeToString()
    assert "failed the check" in refused.reason

    imu, speed, labels = held_out
    float_accuracy = float(np.mean(mlp.predict(compute_window_features(imu, speed)) == labels))

    def keeps_accuracy(model_bytes: bytes) -> bool:
        """The int8 model may lose at most one point of held-out accuracy."""
        predicted = EdgeModelSession(admitted(model_bytes)).predict_proba(imu, speed).argmax(axis=1)
        accuracy = float(np.mean(predicted == labels))
        print(f"\nmlp held-out accuracy: float {float_accuracy:.4f}, int8 {accuracy:.4f}")
        return accuracy >= float_accuracy - 0.01

    outcome = quantize_if_it_helps(model, keeps_accuracy)
    print(f"\nmlp model: {outcome.reason}")
    assert outcome.quantized and outcome.quantized_bytes < outcome.original_bytes
    probabilities = EdgeModelSession(admitted(outcome.model_bytes)).predict_proba(imu[:4], speed[:4])
    assert probabilities.shape == (4, len(HARSH_EVENT_CLASSES))


def test_importing_edge_packaging_stays_cheap():
    code = (
        "import sys, edge_packaging.export, edge_packaging.runtime, edge_packaging.quantization, "
        "edge_packaging.onnx_features\n"
        "heavy = ('onnx', 'onnxruntime', 'skl2onnx', 'sklearn', 'dagster', 'numpy')\n"
        "print(sorted(name for name in heavy if name in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
    )
    assert result.stdout.strip() == "[]"


def _shifted_probabilities(edge_model: onnx.ModelProto, shift: float) -> bytes:
    """The edge model with `shift` added to every class probability it outputs."""
    from onnx import helper, numpy_helper

    shifted = onnx.ModelProto()
    shifted.CopyFrom(edge_model)
    graph = shifted.graph
    output = graph.output[-1].name
    (producer,) = [node for node in graph.node if output in node.output]
    producer.output[list(producer.output).index(output)] = f"{output}/unshifted"
    graph.initializer.append(numpy_helper.from_array(np.array(shift, np.float32), name=f"{output}/shift"))
    graph.node.append(helper.make_node("Add", [f"{output}/unshifted", f"{output}/shift"], [output]))
    return shifted.SerializeToString()


def test_parity_tells_a_thousandth_from_rounding_noise(edge_model, tree_classifier, held_out):
    """The gate's tolerance is behaviour, not a constant to compare against: a model off by 1e-3 in
    every probability fails, one off by 1e-6 (float rounding scale) passes."""
    imu, speed, _ = held_out
    assert not parity(admitted(_shifted_probabilities(edge_model, 1e-3)), tree_classifier, imu, speed).passed
    assert parity(admitted(_shifted_probabilities(edge_model, 1e-6)), tree_classifier, imu, speed).passed
