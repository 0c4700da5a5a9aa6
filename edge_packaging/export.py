"""Export a trained harsh-event classifier as ONE ONNX graph: raw IMU window in, class probabilities out.

The feature graph (`onnx_features.feature_graph`, the ONNX mirror of `features.py`) feeds the
classifier converted by skl2onnx, so a device cannot compute features differently from training: the
only preprocessing that exists on the device is the one inside the model. `parity` measures the
exported model against the Python pipeline it replaces (numpy features + `predict_proba`).

Heavy imports (onnx, skl2onnx, onnxruntime, scikit-learn) happen inside the functions, so importing
this module stays cheap for code that only needs its constants or types.
"""

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_packaging.features import FEATURE_NAMES, compute_window_features
from edge_packaging.onnx_features import FEATURE_NAMES_METADATA_KEY, FEATURES_OUTPUT, feature_graph

if TYPE_CHECKING:
    import numpy as np
    import onnx

PROBABILITIES_OUTPUT = "probabilities"
DEFAULT_OPSET = 17
ML_OPSET = 3
"""Highest ai.onnx.ml opset the classifier may use (tree ensembles as device runtimes know them)."""
CLASS_NAMES_METADATA_KEY = "class_names"
PRODUCER_NAME = "fleetml"

MAX_ABS_PROBABILITY_DIFF = 1e-4
"""Largest difference in any class probability between the edge model and the Python pipeline."""
MIN_ARGMAX_AGREEMENT = 0.999
"""Share of windows whose top class must be the same on the edge model and in the Python pipeline."""


class ExportError(ValueError):
    """The classifier cannot be exported as an edge model; the message says why."""


@dataclass(frozen=True)
class ParityReport:
    """How closely the edge model reproduces the Python pipeline on the same windows."""

    windows: int
    max_abs_diff: float
    argmax_agreement: float
    passed: bool


def _checked_class_names(classifier: Any, class_names: Sequence[str]) -> list[str]:
    """`class_names` as a list, once the classifier is known to predict exactly their indices."""
    import numpy as np

    names = [str(name) for name in class_names]
    if len(set(names)) != len(names) or not names:
        raise ExportError(f"class_names must be distinct and non-empty, got {names}")
    classes = getattr(classifier, "classes_", None)
    if classes is None:
        raise ExportError(f"{type(classifier).__name__} is not a fitted classifier (no classes_)")
    expected = np.arange(len(names))
    classes = np.asarray(classes)
    indexes_names = (
        classes.shape == expected.shape
        and np.issubdtype(classes.dtype, np.integer)
        and np.array_equal(classes, expected)
    )
    if not indexes_names:
        raise ExportError(
            f"the classifier's classes_ {classes.tolist()} must be the integer labels 0..{len(names) - 1} "
            f"indexing class_names {names}; train on the index of each class name"
        )
    n_features = getattr(classifier, "n_features_in_", len(FEATURE_NAMES))
    if n_features != len(FEATURE_NAMES):
        raise ExportError(
            f"the classifier expects {n_features} features, the window features are {len(FEATURE_NAMES)}"
        )
    return names


def _opset_versions(model: "onnx.ModelProto") -> dict[str, int]:
    """The model's opset imports by domain ("ai.onnx" folded into ""), refusing contradictions."""
    versions: dict[str, int] = {}
    for entry in model.opset_import:
        domain = "" if entry.domain == "ai.onnx" else entry.domain
        if versions.get(domain, entry.version) != entry.version:
            raise ExportError(
                f"the model imports domain {domain!r} at two versions: {versions[domain]} and {entry.version}"
            )
        versions[domain] = entry.version
    return versions


def _set_opset_imports(model: "onnx.ModelProto", versions: dict[str, int]) -> None:
    from onnx import helper

    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, versions[domain]) for domain in sorted(versions))
    model.ir_version = max(model.ir_version, helper.find_min_ir_version_for(list(model.opset_import)))


def deduplicate_opset_imports(model: "onnx.ModelProto") -> None:
    """List each opset domain of `model` once, in place.

    skl2onnx lists the default domain twice, and onnx.compose.merge_models concatenates the lists of
    both models. onnxruntime sessions tolerate that; tools that map a domain to one version do not
    (`quantize_dynamic` fails with "Failed to find proper ai.onnx domain"). Raises `ExportError` if a
    domain is listed at two different versions.
    """
    _set_opset_imports(model, _opset_versions(model))


def _convert_classifier(classifier: Any, opset: int) -> "onnx.ModelProto":
    """The classifier alone as ONNX: input `features` [N, 41] float32, outputs label and probabilities."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        # skl2onnx 1.20 passes numpy booleans to integer attributes (tree ensembles); protobuf 6.x
        # converts them and warns that 7.34 will refuse them, so protobuf must stay below 7.34.
        warnings.filterwarnings(
            "ignore", message=".*Expected an int, got a boolean", category=DeprecationWarning
        )
        converted = convert_sklearn(
            classifier,
            name="fleetml_classifier",
            initial_types=[(FEATURES_OUTPUT, FloatTensorType([None, len(FEATURE_NAMES)]))],
            options={"zipmap": False},
            target_opset={"": opset, "ai.onnx.ml": ML_OPSET},
        )
    outputs = [output.name for output in converted.graph.output]
    if PROBABILITIES_OUTPUT not in outputs:
        raise ExportError(
            f"skl2onnx produced outputs {outputs} for {type(classifier).__name__}, none named probabilities"
        )
    versions = _opset_versions(converted)
    if versions.get("", opset) > opset:
        raise ExportError(
            f"skl2onnx converted the classifier at default opset {versions['']}, above the requested {opset}"
        )
    if versions.get("", opset) < opset:
        _raise_default_opset(converted, versions[""], opset)
    if versions.get("ai.onnx.ml", 0) > ML_OPSET:
        raise ExportError(f"the classifier needs ai.onnx.ml opset {versions['ai.onnx.ml']}, above {ML_OPSET}")
    versions[""] = opset
    _set_opset_imports(converted, versions)
    return converted


def _raise_default_opset(model: "onnx.ModelProto", current: int, target: int) -> None:
    """Declare `target` as the model's default-domain opset, in place, without changing its meaning.

    skl2onnx declares the lowest opset its operators need (16 for an MLP even when 17 is asked),
    while one merged graph must import one version. Relabelling is exact when no operator the
    model uses was redefined between the two versions; otherwise the ONNX version converter must
    rewrite the model, and a model it cannot rewrite is refused.
    """
    import onnx

    redefined = sorted(
        {
            node.op_type
            for node in model.graph.node
            if node.domain in ("", "ai.onnx")
            and onnx.defs.get_schema(node.op_type, target, "").since_version > current
        }
    )
    if not redefined:
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = target
        return
    try:
        converted = onnx.version_converter.convert_version(model, target)
    except Exception as error:
        raise ExportError(
            f"the classifier uses {', '.join(redefined)}, redefined between opset {current} and {target}, "
            f"and the ONNX version converter failed: {error}"
        ) from error
    model.CopyFrom(converted)


def export_edge_model(
    classifier: Any, class_names: Sequence[str], opset: int = DEFAULT_OPSET
) -> "onnx.ModelProto":
    """The edge model: window features and `classifier` merged into one checked ONNX graph.

    `classifier` is a fitted scikit-learn classifier (HistGradientBoostingClassifier, or any Pipeline
    skl2onnx converts) trained on `compute_window_features` output with integer labels 0..n-1 that
    index `class_names`. The model takes `imu` float32 [N, 6, 200] and `speed_kph` float32 [N] and
    returns `probabilities` float32 [N, n_classes], columns in `class_names` order. Class and feature
    names are stored as JSON in the metadata (`class_names`, `feature_names`). Raises `ExportError`
    when the classifier does not fit that contract.
    """
    import onnx
    from onnx import TensorProto, compose, helper

    names = _checked_class_names(classifier, class_names)
    features = feature_graph(opset)
    converted = _convert_classifier(classifier, opset)
    # merge_models requires equal IR versions; both now carry the minimum their opsets allow, and the
    # classifier may pull that up (ai.onnx.ml).
    ir_version = max(features.ir_version, converted.ir_version)
    features.ir_version = converted.ir_version = ir_version
    merged = compose.merge_models(
        features,
        converted,
        io_map=[(FEATURES_OUTPUT, FEATURES_OUTPUT)],
        outputs=[PROBABILITIES_OUTPUT],
        name="fleetml_edge_model",
        producer_name=PRODUCER_NAME,
        producer_version=_fleetml_version(),
    )
    deduplicate_opset_imports(merged)

    (output,) = merged.graph.output
    if output.name != PROBABILITIES_OUTPUT:
        raise ExportError(f"the merged model's output is {output.name}, expected {PROBABILITIES_OUTPUT}")
    output.CopyFrom(
        helper.make_tensor_value_info(
            PROBABILITIES_OUTPUT,
            TensorProto.FLOAT,
            ["N", len(names)],
            "class probabilities, columns in order: " + ", ".join(names),
        )
    )
    merged.doc_string = (
        "fleetml harsh-event edge model: raw IMU window (imu float32 [N, 6, 200]: ax, ay, az in m/s^2, "
        "gx, gy, gz in rad/s, 50 Hz) and GPS speed (speed_kph float32 [N]) in, class probabilities "
        f"(probabilities float32 [N, {len(names)}]) out, columns: {', '.join(names)}. The window features "
        "are computed inside the graph, mirroring edge_packaging/features.py."
    )
    merged.graph.doc_string = merged.doc_string
    helper.set_model_props(
        merged,
        {
            CLASS_NAMES_METADATA_KEY: json.dumps(names),
            FEATURE_NAMES_METADATA_KEY: json.dumps(list(FEATURE_NAMES)),
            "classifier": type(classifier).__name__,
            "producer": PRODUCER_NAME,
        },
    )
    onnx.checker.check_model(merged, full_check=True)
    return merged


def _fleetml_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fleetml")
    except PackageNotFoundError:
        return "unknown"


def python_reference_probabilities(
    classifier: Any, imu: "np.ndarray", speed_kph: "np.ndarray"
) -> "np.ndarray":
    """Class probabilities [N, n_classes] from the Python pipeline: numpy features, then predict_proba."""
    return classifier.predict_proba(compute_window_features(imu, speed_kph))


def parity(model_bytes: bytes, classifier: Any, imu: "np.ndarray", speed_kph: "np.ndarray") -> ParityReport:
    """Run the serialized edge model on `imu`/`speed_kph` and compare it with the Python pipeline.

    Passes when no probability differs by more than `MAX_ABS_PROBABILITY_DIFF` and the top class
    agrees on at least `MIN_ARGMAX_AGREEMENT` of the windows.
    """
    import numpy as np

    from edge_packaging.runtime import EdgeModelSession

    imu = np.asarray(imu, dtype=np.float32)
    if len(imu) == 0:
        raise ValueError("parity needs at least one window")
    edge = EdgeModelSession(model_bytes).predict_proba(imu, speed_kph)
    reference = python_reference_probabilities(classifier, imu, speed_kph)
    if edge.shape != reference.shape:
        raise ValueError(f"edge model returns {edge.shape}, the Python pipeline {reference.shape}")
    max_abs_diff = float(np.max(np.abs(edge.astype(np.float64) - reference)))
    argmax_agreement = float(np.mean(edge.argmax(axis=1) == reference.argmax(axis=1)))
    return ParityReport(
        windows=len(imu),
        max_abs_diff=max_abs_diff,
        argmax_agreement=argmax_agreement,
        passed=max_abs_diff <= MAX_ABS_PROBABILITY_DIFF and argmax_agreement >= MIN_ARGMAX_AGREEMENT,
    )
