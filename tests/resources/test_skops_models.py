import copy
import io
import json
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from fuzzing import fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from assets.training_sweep import make_classifier
from resources.skops_models import ModelLoadError, UntrustedModelError, dump_classifier, load_classifier

SWEEP_PARAMS = {"learning_rate": 0.1, "max_leaf_nodes": 7, "l2_regularization": 0.0, "max_iter": 5}
# Callables an attacker could name in a payload (most from the very libraries a model is made of), and
# one that is allowed, but only where skops merely references it (FunctionNode).
DANGEROUS_CALLABLES = (
    "scipy._lib._tmpdirs.rmtree",
    "shutil.rmtree",
    "sklearn.utils.discovery.import_module",
    "importlib.import_module",
    "builtins.eval",
    "builtins.exec",
    "posix.system",
    "numpy.load",
    "numpy.save",
    "sklearn.tree._tree.Tree",
    "sklearn.utils.validation.check_array",
)


class TelemetryHook:
    """Not part of any trusted library: a model carrying it must not load."""

    def __init__(self) -> None:
        self.endpoint = "https://example.invalid"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny fits: OpenMP's worker threads only add waiting (seconds per fit on a busy 2-core machine)."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(240, 5))
    features[:, 4] = rng.integers(0, 4, size=240)  # a categorical column (e.g. hardware revision)
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(int) + (features[:, 4] == 3)
    return features, labels


@pytest.fixture(scope="module")
def sweep_model(training_data) -> HistGradientBoostingClassifier:
    """The registry's model as the sweep fits it (`make_classifier`), on float32 features like training."""
    features, labels = training_data
    return make_classifier(SWEEP_PARAMS, seed=0).fit(features.astype("float32"), labels)


def _plant_module(directory: Path) -> tuple[str, Path]:
    """An importable module (once `directory` is on sys.path) that leaves a marker file when imported."""
    name = f"fleetml_planted_{uuid.uuid4().hex}"
    marker = directory / f"{name}.imported"
    (directory / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    return name, marker


def _crafted(module: str, name: str, arguments: tuple) -> bytes:
    """A skops archive whose root node makes skops call `module.name(*arguments)` while loading."""
    arguments_state = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps(arguments))).read("schema.json"))
    root = {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": arguments_state,
        "protocol": arguments_state["protocol"],
        "_skops_version": arguments_state.get("_skops_version"),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(root))
    return buffer.getvalue()


def _unpack(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(entries.pop("schema.json")), entries


def _pack(schema: dict[str, Any], entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _nodes_in_order(state: Any) -> list[dict[str, Any]]:
    """Every node of a schema, depth first in document order (stable, so hypothesis can pick by index)."""
    found = []
    if isinstance(state, dict):
        if "__loader__" in state:
            found.append(state)
        for value in state.values():
            found.extend(_nodes_in_order(value))
    elif isinstance(state, list):
        for value in state:
            found.extend(_nodes_in_order(value))
    return found


def _add_key_type(dict_node: dict[str, Any], type_name: str, key: str) -> bool:
    """Put `key` first in a DictNode with `type_name` as its key type, as an attacker editing schema.json
    would: skops zips key types with keys in order and calls `type_name(key)` while loading."""
    if key in dict_node["content"]:
        return False
    module, name = type_name.rsplit(".", 1)
    null = {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": "null",
        "is_json": True,
    }
    dict_node["content"] = {key: null, **dict_node["content"]}
    dict_node["key_types"]["content"].insert(
        0, {"__class__": name, "__module__": module, "__loader__": "TypeNode"}
    )
    return True


def _with_attribute_key_type(data: bytes, type_name: str, key: str) -> bytes:
    """A genuine model's payload whose attribute dict also holds `key`, typed by `type_name`."""
    schema, entries = _unpack(data)
    assert _add_key_type(schema["content"], type_name, key)
    return _pack(schema, entries)


def test_hist_gradient_boosting_round_trips_with_identical_scores(training_data):
    features, labels = training_data
    model = HistGradientBoostingClassifier(max_iter=15, categorical_features=[4], random_state=0)
    model.fit(features, labels)
    data = dump_classifier(model)
    assert sio.get_untrusted_types(data=data)  # skops alone would refuse it: the allow-list is doing work
    loaded = load_classifier(data)
    assert isinstance(loaded, HistGradientBoostingClassifier)
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))


def test_the_sweeps_classifier_round_trips_with_identical_predictions(training_data, sweep_model):
    features = training_data[0].astype("float32")
    loaded = load_classifier(dump_classifier(sweep_model))
    assert isinstance(loaded, HistGradientBoostingClassifier)
    assert loaded.get_params() == sweep_model.get_params()
    np.testing.assert_array_equal(loaded.predict(features), sweep_model.predict(features))
    np.testing.assert_array_equal(loaded.predict_proba(features), sweep_model.predict_proba(features))


def test_pipeline_round_trips_with_identical_scores(training_data):
    features, labels = training_data
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=200))])
    model.fit(features, labels)
    loaded = load_classifier(dump_classifier(model))
    assert [name for name, _ in loaded.steps] == ["scale", "classify"]
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))


def test_dumps_are_canonical_so_the_same_model_is_the_same_registry_version(training_data):
    features, labels = training_data
    model = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(features, labels)
    assert sio.dumps(model) != sio.dumps(model)  # skops alone: object ids and timestamps
    data = dump_classifier(model)
    assert dump_classifier(copy.deepcopy(model)) == data  # other object ids, same bytes
    refit = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(features, labels)
    assert dump_classifier(refit) == data
    other = HistGradientBoostingClassifier(max_iter=6, random_state=0).fit(features, labels)
    assert dump_classifier(other) != data


def test_a_model_holding_a_type_from_outside_the_allow_list_is_refused(training_data):
    features, labels = training_data
    model = LogisticRegression().fit(features, labels)
    model.telemetry_hook = TelemetryHook()
    data = dump_classifier(model)
    with pytest.raises(UntrustedModelError, match=r"test_skops_models\.TelemetryHook") as refused:
        load_classifier(data)
    assert refused.value.types == [f"{__name__}.TelemetryHook"]


def test_a_trusted_library_function_called_with_stored_arguments_is_refused(tmp_path: Path):
    target = tmp_path / "planted.npy"
    payload = _crafted("numpy", "save", (str(target), [1, 2, 3]))
    # The payload is live: trusting what skops reports (as a bare `numpy.*` prefix rule would) writes a file.
    sio.loads(payload, trusted=sio.get_untrusted_types(data=payload))
    assert target.exists()
    target.unlink()

    with pytest.raises(UntrustedModelError, match="numpy.save"):
        load_classifier(payload)
    assert not target.exists()

    # Even a harmless numpy function is refused: it is on no list.
    with pytest.raises(UntrustedModelError, match="numpy.full"):
        load_classifier(_crafted("numpy", "full", (3, 1.0)))


def test_a_dict_key_type_that_deletes_a_directory_is_refused_before_it_runs(sweep_model, tmp_path: Path):
    data = dump_classifier(sweep_model)
    # The payload is live: trusting what skops reports deletes the directory and still yields a model.
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    live = _with_attribute_key_type(data, "scipy._lib._tmpdirs.rmtree", str(decoy))
    assert isinstance(
        sio.loads(live, trusted=sio.get_untrusted_types(data=live)), HistGradientBoostingClassifier
    )
    assert not decoy.exists()

    sentinel = tmp_path / "keep-me"
    sentinel.mkdir()
    payload = _with_attribute_key_type(data, "scipy._lib._tmpdirs.rmtree", str(sentinel))
    with pytest.raises(UntrustedModelError, match=r"scipy\._lib\._tmpdirs\.rmtree") as refused:
        load_classifier(payload)
    assert refused.value.types == ["scipy._lib._tmpdirs.rmtree"]
    assert sentinel.is_dir()


def test_a_dict_key_type_that_imports_a_module_is_refused_before_it_runs(
    sweep_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.syspath_prepend(str(tmp_path))
    data = dump_classifier(sweep_model)
    decoy, decoy_marker = _plant_module(tmp_path)
    live = _with_attribute_key_type(data, "sklearn.utils.discovery.import_module", decoy)
    sio.loads(live, trusted=sio.get_untrusted_types(data=live))
    assert decoy in sys.modules and decoy_marker.exists()  # the payload is live: it ran the module's code

    planted, marker = _plant_module(tmp_path)
    payload = _with_attribute_key_type(data, "sklearn.utils.discovery.import_module", planted)
    with pytest.raises(UntrustedModelError, match=r"sklearn\.utils\.discovery\.import_module"):
        load_classifier(payload)
    assert planted not in sys.modules
    assert not marker.exists()


def test_a_tree_is_refused_since_scikit_learn_does_not_bounds_check_its_nodes(training_data, sweep_model):
    features, labels = training_data
    model = copy.deepcopy(sweep_model)
    model.shadow_tree = DecisionTreeClassifier(random_state=0).fit(features, labels).tree_
    with pytest.raises(UntrustedModelError, match=r"sklearn\.tree\._tree\.Tree") as refused:
        load_classifier(dump_classifier(model))
    assert refused.value.types == ["sklearn.tree._tree.Tree"]

    with pytest.raises(UntrustedModelError, match="DecisionTreeClassifier"):
        load_classifier(dump_classifier(DecisionTreeClassifier(random_state=0).fit(features, labels)))


@pytest.mark.parametrize(
    ("field", "value"),
    [("left", 10**6), ("right", 0), ("feature_idx", 5), ("feature_idx", -1)],
    ids=["child-past-the-end", "cycle-to-the-root", "feature-past-the-last-column", "negative-feature"],
)
def test_a_hist_gradient_boosting_tree_pointing_outside_its_arrays_is_refused(sweep_model, field, value):
    """scikit-learn walks these arrays with no bounds checks: predicting would read stray memory or hang."""
    schema, entries = _unpack(dump_classifier(sweep_model))
    predictor = next(node for node in _nodes_in_order(schema) if node["__class__"] == "TreePredictor")
    nodes_file = predictor["content"]["content"]["nodes"]["file"]
    nodes = np.load(io.BytesIO(entries[nodes_file]))
    assert not nodes["is_leaf"][0]  # the root splits, so its fields are followed
    nodes[field][0] = value
    buffer = io.BytesIO()
    np.save(buffer, nodes, allow_pickle=False)
    entries[nodes_file] = buffer.getvalue()
    with pytest.raises(ModelLoadError, match="corrupt HistGradientBoosting tree: a node points outside"):
        load_classifier(_pack(schema, entries))


def test_a_model_that_is_not_a_classifier_is_refused(training_data):
    features, _ = training_data
    scaler = StandardScaler().fit(features)
    with pytest.raises(UntrustedModelError, match="not a classifier") as refused:
        load_classifier(dump_classifier(scaler))
    assert refused.value.types == ["sklearn.preprocessing._data.StandardScaler"]

    with pytest.raises(ModelLoadError, match="rebuilds a Pipeline, not a classifier"):
        load_classifier(dump_classifier(Pipeline([("scale", scaler)])))


def test_an_allowed_key_type_that_cannot_take_its_key_is_a_load_error_not_a_crash(sweep_model):
    schema, entries = _unpack(dump_classifier(sweep_model))
    first_key_type = schema["content"]["key_types"]["content"][0]
    first_key_type.update(__module__="numpy", __class__="float64")  # allowed, but float64("loss") fails
    with pytest.raises(ModelLoadError, match="could not rebuild") as failed:
        load_classifier(_pack(schema, entries))
    assert not isinstance(failed.value, UntrustedModelError)


def test_bytes_that_are_not_a_skops_archive_are_an_error():
    with pytest.raises(ModelLoadError, match="not a skops archive"):
        load_classifier(b"\x80\x04 not a zip")


@pytest.mark.fuzz
def test_mutated_payloads_load_as_the_genuine_classifier_or_are_refused_without_a_call(
    training_data, sweep_model, tmp_path_factory: pytest.TempPathFactory
):
    """Hostile edits of schema.json (node types swapped for dangerous callables, dict key types added):
    the load either yields the genuine classifier or raises the refusal naming exactly what was placed,
    and none of the callables ever runs."""
    features = training_data[0].astype("float32")
    expected = sweep_model.predict_proba(features)
    genuine_schema, entries = _unpack(dump_classifier(sweep_model))
    node_count = len(_nodes_in_order(genuine_schema))
    dict_count = sum(node["__loader__"] == "DictNode" for node in _nodes_in_order(genuine_schema))

    scratch = tmp_path_factory.mktemp("mutations")
    sentinel = scratch / "keep-me"
    sentinel.mkdir()
    planted, import_marker = _plant_module(scratch)
    shell_marker = scratch / "shell-ran"
    eval_marker = scratch / "eval-ran"
    key_argument = {  # what each callable would receive as a dict key: something whose effect shows
        "rmtree": str(sentinel),
        "import_module": planted,
        "eval": f"open({str(eval_marker)!r}, 'w')",
        "exec": f"open({str(eval_marker)!r}, 'w').close()",
        "system": f"touch {shell_marker}",
        "load": str(sentinel / "evidence.txt"),
    }
    (sentinel / "evidence.txt").write_text("rmtree would delete this")

    swaps = st.lists(
        st.tuples(st.integers(0, node_count - 1), st.sampled_from(DANGEROUS_CALLABLES)), max_size=3
    )
    key_types = st.lists(
        st.tuples(st.integers(0, dict_count - 1), st.sampled_from((*DANGEROUS_CALLABLES, "builtins.str"))),
        max_size=3,
    )

    @fuzz_settings(80)
    @given(swaps=swaps, key_types=key_types)
    @example(swaps=[], key_types=[(0, "builtins.str")])  # a harmless edit: the genuine model
    @example(swaps=[], key_types=[(0, "scipy._lib._tmpdirs.rmtree")])  # the reported attack
    def check(swaps: list[tuple[int, str]], key_types: list[tuple[int, str]]) -> None:
        schema = copy.deepcopy(genuine_schema)
        nodes = _nodes_in_order(schema)
        dict_nodes = [node for node in nodes if node["__loader__"] == "DictNode"]
        placed: dict[int, str] = {}
        for index, type_name in swaps:
            nodes[index]["__module__"], nodes[index]["__class__"] = type_name.rsplit(".", 1)
            placed[index] = type_name
        placed_names = set(placed.values())
        for position, (index, type_name) in enumerate(key_types):
            key = key_argument.get(type_name.rsplit(".", 1)[1], f"extra_attribute_{position}")
            if _add_key_type(dict_nodes[index], type_name, key) and type_name != "builtins.str":
                placed_names.add(type_name)

        try:
            model = load_classifier(_pack(schema, entries))
        except UntrustedModelError as refused:
            assert {name.split(" as ")[0] for name in refused.types} == placed_names
        else:
            assert not placed_names
            assert isinstance(model, HistGradientBoostingClassifier)
            np.testing.assert_array_equal(model.predict_proba(features), expected)
        assert (sentinel / "evidence.txt").exists()
        assert planted not in sys.modules and not import_marker.exists()
        assert not eval_marker.exists() and not shell_marker.exists()

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(scratch))
        check()
