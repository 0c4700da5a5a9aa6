"""Persist scikit-learn classifiers with skops, never pickle: bytes for the registry, and a guarded load.

`dump_classifier` writes a skops archive in a canonical form, so the same fitted model always gives
the same bytes (and so the same content-addressed registry version). skops names its internal
objects after `id()` and stamps the current time on archive entries; both are rewritten here.

`load_classifier` treats the archive as hostile. skops rebuilds an object by importing the type a node
names and, for nearly every kind of node, calling it with data from the file: `ListNode` calls
`type([...])`, `NdArrayNode` calls `type(array)`, `ObjectNode` runs `type.__setstate__`, and `DictNode`
calls each of its key types with the key string, so a `TypeNode` naming `shutil.rmtree` deletes the
directory the key names. skops' own audit does not look at how a type is used, and trusting a library
by prefix trusts its file, import and eval helpers. So every node's type must be on an exact list kept
*per loader*, holding only what the models the registry stores are made of; the root must be a
classifier; and the tree arrays of HistGradientBoosting, which scikit-learn walks without bounds checks,
are checked before the model is handed out. `sklearn.tree._tree.Tree` (the same problem, and no model
here needs it) is on no list.
"""

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

_HIST_GRADIENT_BOOSTING = (
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier"
)
_PIPELINE = "sklearn.pipeline.Pipeline"
_LOGISTIC_REGRESSION = "sklearn.linear_model._logistic.LogisticRegression"
# What the root of a payload may be: the sweep's HistGradientBoosting (`assets/training_sweep.py`), or a
# scaled logistic regression in a Pipeline (a baseline; the Pipeline must end in a classifier).
CLASSIFIER_TYPES: frozenset[str] = frozenset({_HIST_GRADIENT_BOOSTING, _PIPELINE, _LOGISTIC_REGRESSION})
# For each skops loader, the exact types it may name. How the loader uses the type is what matters:
# all of these are called with file data (or get `__setstate__` with it) except under FunctionNode and
# PartialNode, which only reference theirs; the model then calls `check_array` with the stored keyword
# arguments (HistGradientBoosting's categorical preprocessing), which is why it is the one function here.
ALLOWED_TYPES_BY_LOADER: dict[str, frozenset[str]] = {
    "ObjectNode": CLASSIFIER_TYPES
    | {
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn.preprocessing._label.LabelEncoder",
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        "sklearn.preprocessing._function_transformer.FunctionTransformer",
        "sklearn.preprocessing._data.StandardScaler",
    },
    "LossNode": frozenset(
        {"sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss"}
    ),
    "FunctionNode": frozenset({"sklearn.utils.validation.check_array"}),
    "PartialNode": frozenset({"functools.partial"}),
    "NdArrayNode": frozenset({"numpy.ndarray", "numpy.float64", "numpy.uint64"}),
    "RandomGeneratorNode": frozenset({"numpy.random._generator.Generator"}),
    # Dict key types, each called with a key string from the file (int: a `class_weight` dict).
    "TypeNode": frozenset({"builtins.str", "builtins.int", "numpy.float64"}),
    "DictNode": frozenset({"builtins.dict"}),
    "ListNode": frozenset({"builtins.list"}),
    "TupleNode": frozenset({"builtins.tuple"}),
    "SliceNode": frozenset({"builtins.slice"}),
    "JsonNode": frozenset({"builtins.str"}),
}
_ALLOWED_TYPES: frozenset[str] = frozenset().union(*ALLOWED_TYPES_BY_LOADER.values())
# A cached node hands back an object already built from an earlier (checked) node; it builds nothing.
ALLOWED_TYPES_BY_LOADER["CachedNode"] = _ALLOWED_TYPES


class ModelLoadError(ValueError):
    """A payload that is not a usable classifier: not a skops archive, or not rebuildable, or not safe."""


class UntrustedModelError(ModelLoadError):
    """A payload naming types outside the allow-list, or where their loader may not use them: `types`."""

    def __init__(self, types: list[str], detail: str = "") -> None:
        self.types = types
        super().__init__(
            f"refusing to load a model holding untrusted types: {', '.join(types)}"
            + (f" ({detail})" if detail else "")
        )


def dump_classifier(model: Any) -> bytes:
    """Serialize a fitted scikit-learn model to canonical skops bytes (same model, same bytes)."""
    import skops.io as sio

    return _canonical_archive(sio.dumps(model))


def load_classifier(data: bytes) -> Any:
    """Load a classifier written by `dump_classifier`, checking the payload before skops builds anything.

    Raises `UntrustedModelError` (naming the types) when a node names a type its loader may not use, or
    the root is not a classifier, all before any type is imported or called; `ModelLoadError` when the
    bytes are not a skops archive, skops cannot rebuild them, or the rebuilt model is unsafe to run.
    """
    import skops.io as sio

    try:
        schema = _schema(data)
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise ModelLoadError(f"not a skops archive: {error}") from error
    refused = _refused_types(schema)
    if refused:
        raise UntrustedModelError(refused)
    if _type_name(schema) not in CLASSIFIER_TYPES:
        raise UntrustedModelError([_type_name(schema)], "not a classifier type this registry stores")
    try:
        # skops' own audit also names types no node carries (a random generator's bit generator class).
        flagged = sio.get_untrusted_types(data=data)
        if not _ALLOWED_TYPES.issuperset(flagged):
            raise UntrustedModelError(sorted(set(flagged) - _ALLOWED_TYPES), "flagged by skops' audit")
        model = sio.loads(data, trusted=flagged)
        _check_is_runnable_classifier(model)
    except ModelLoadError:
        raise
    except Exception as error:  # a hostile payload of allowed types can fail anywhere: still a refusal
        raise ModelLoadError(f"skops could not rebuild a usable classifier: {error!r}") from error
    return model


def _type_name(node: Any) -> str:
    return f"{node.get('__module__')}.{node.get('__class__')}" if isinstance(node, dict) else repr(node)


def _refused_types(schema: Any) -> list[str]:
    """Types of nodes whose loader is unknown or may not use them ("T as Loader": T allowed elsewhere)."""
    refused = set()
    for node in _nodes(schema):
        loader, name = node["__loader__"], _type_name(node)
        allowed = ALLOWED_TYPES_BY_LOADER.get(loader) if isinstance(loader, str) else None
        if allowed is None or name not in allowed:
            refused.add(name if name not in _ALLOWED_TYPES else f"{name} as {loader}")
    return sorted(refused)


def _check_is_runnable_classifier(model: Any) -> None:
    from sklearn.base import is_classifier
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    if not is_classifier(model):
        raise ModelLoadError(f"the payload rebuilds a {type(model).__name__}, not a classifier")
    steps = [step for _, step in model.steps] if isinstance(model, Pipeline) else [model]
    for step in steps:
        if isinstance(step, Pipeline):
            _check_is_runnable_classifier(step)
        elif isinstance(step, HistGradientBoostingClassifier):
            _check_tree_predictors(step)


def _check_tree_predictors(model: Any) -> None:
    """Refuse HistGradientBoosting trees that scikit-learn's prediction code would walk out of bounds.

    `_predictor.pyx` follows `left`/`right`, reads column `feature_idx` and row `bitset_idx` of the
    category bitsets with no bounds checks (skops refuses `TreePredictor` by default for this reason).
    Children must come after their parent (as the grower writes them), which also rules out cycles.
    """
    import numpy as np
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE

    n_features = model.n_features_in_
    is_categorical = np.asarray(model._bin_mapper.is_categorical_)
    if is_categorical.shape != (n_features,):
        raise ModelLoadError("corrupt HistGradientBoosting: categorical flags do not match the features")
    for predictor in (tree for iteration in model._predictors for tree in iteration):
        nodes = predictor.nodes
        bitsets = (predictor.raw_left_cat_bitsets, predictor.binned_left_cat_bitsets)
        if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1:
            raise ModelLoadError("corrupt HistGradientBoosting tree: nodes are not a predictor record array")
        if len(nodes) == 0 or any(np.ndim(bitset) != 2 or np.shape(bitset)[1] != 8 for bitset in bitsets):
            raise ModelLoadError("corrupt HistGradientBoosting tree: empty, or bitsets of the wrong shape")
        split = np.flatnonzero(nodes["is_leaf"] == 0)
        left, right, feature = nodes["left"][split], nodes["right"][split], nodes["feature_idx"][split]
        categorical = nodes["is_categorical"][split] != 0
        in_bounds = (
            np.all((left > split) & (left < len(nodes)) & (right > split) & (right < len(nodes)))
            and np.all((feature >= 0) & (feature < n_features))
            and np.all(is_categorical[feature[categorical]] != 0)
            and np.all(nodes["bitset_idx"][split][categorical] < min(len(bitset) for bitset in bitsets))
        )
        if not in_bounds:
            raise ModelLoadError("corrupt HistGradientBoosting tree: a node points outside its arrays")


def _schema(data: bytes) -> Any:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("schema.json"))


def _nodes(state: Any) -> Iterator[dict[str, Any]]:
    """Every node of a skops schema: the JSON objects carrying a `__loader__`."""
    stack = [state]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _canonical_archive(data: bytes) -> bytes:
    """Rewrite a skops archive so it depends only on the model: ids and entry names by first use.

    skops keys its memo (`__id__`, shared objects) and array entries (`file`) by `id()` of the object
    at save time; renumbering both consistently keeps the meaning and drops the address. Entries get a
    fixed timestamp and are written in a fixed order, uncompressed (as skops writes them).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        entries = {name: archive.read(name) for name in archive.namelist() if name != "schema.json"}

    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def rewrite(item: Any) -> Any:
        if isinstance(item, list):
            return [rewrite(value) for value in item]
        if not isinstance(item, dict):
            return item
        is_node = "__loader__" in item
        result = {}
        for key, value in item.items():
            if is_node and key == "__id__" and isinstance(value, int):
                result[key] = ids.setdefault(value, len(ids) + 1)
            elif is_node and key == "file" and isinstance(value, str) and value in entries:
                suffix = value[value.rfind(".") :] if "." in value else ""
                result[key] = files.setdefault(value, f"{len(files) + 1}{suffix}")
            else:
                result[key] = rewrite(value)
        return result

    canonical_schema = rewrite(schema)
    if set(files) != set(entries):
        # An entry no node points at, or a layout this function does not know: keep skops' bytes.
        return data
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_entry("schema.json"), json.dumps(canonical_schema, indent=2))
        for old_name, new_name in sorted(files.items(), key=lambda item: int(item[1].split(".")[0])):
            archive.writestr(_entry(new_name), entries[old_name])
    return output.getvalue()


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info
