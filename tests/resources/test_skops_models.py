import copy
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from resources.skops_models import UntrustedModelError, dump_classifier, load_classifier


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


def test_hist_gradient_boosting_round_trips_with_identical_scores(training_data):
    features, labels = training_data
    model = HistGradientBoostingClassifier(max_iter=15, categorical_features=[4], random_state=0)
    model.fit(features, labels)
    data = dump_classifier(model)
    assert sio.get_untrusted_types(data=data)  # skops alone would refuse it: the allow-list is doing work
    loaded = load_classifier(data)
    assert isinstance(loaded, HistGradientBoostingClassifier)
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))


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

    # Even a harmless numpy function is refused where skops would call it with arguments from the file.
    with pytest.raises(UntrustedModelError, match="called with stored arguments while loading: numpy.full"):
        load_classifier(_crafted("numpy", "full", (3, 1.0)))


def test_bytes_that_are_not_a_skops_archive_are_an_error():
    with pytest.raises(ValueError, match="not a skops archive"):
        load_classifier(b"\x80\x04 not a zip")
