import contextlib
import datetime as dt
import hashlib
import itertools
import json
import tempfile
import threading
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resources.model_registry as model_registry
from resources.model_registry import (
    AmbiguousVersionError,
    ModelRegistry,
    ModelRegistryResource,
    NoPreviousVersionError,
    RegistrationMetadataIgnored,
    TamperedRegistryError,
    UnknownModelError,
    UnknownVersionError,
    compute_version_id,
)

MODEL = "harsh_event"


def _clock():
    """A deterministic clock: one second per call, from a fixed UTC instant."""
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    ticks = itertools.count()
    return lambda: start + dt.timedelta(seconds=next(ticks))


@pytest.fixture(params=["path", "file-uri"])
def registry_root(request, tmp_path: Path) -> tuple[str, Path]:
    """The registry as a plain path (local store) and as a `file://` URI (the pyarrow store S3 uses)."""
    root = tmp_path / "registry"
    return (str(root) if request.param == "path" else root.as_uri()), root


@pytest.fixture
def registry(registry_root) -> ModelRegistry:
    return ModelRegistry(registry_root[0], clock=_clock())



@contextlib.contextmanager
def power_cut_when_replacing(registry: ModelRegistry, file_name: str):
    """The store dies when it replaces `file_name`; the block must raise that, and the store is whole again after."""
    store = registry._store
    real_replace = store.replace

    def crash(path, data):
        if path.endswith(file_name):
            raise OSError("power cut")
        real_replace(path, data)

    store.replace = crash
    try:
        with pytest.raises(OSError, match="power cut"):
            yield
    finally:
        del store.replace

def _files(tag: str) -> dict[str, bytes]:
    return {"model.skops": f"weights {tag}".encode(), "card.json": json.dumps({"tag": tag}).encode()}


def _history_bytes(root: Path) -> bytes:
    path = root / MODEL / "history.jsonl"
    return path.read_bytes() if path.exists() else b""


def _replay(history: bytes) -> dict[str, str]:
    """Aliases from history.jsonl, written independently of the registry's own replay."""
    aliases = {}
    for line in history.decode().splitlines():
        record = json.loads(line)
        if record["action"] != "register":
            aliases[record["alias"]] = record["version_id"]
    return aliases


def test_version_id_is_the_hash_of_file_names_and_hashes_and_registration_is_idempotent(
    registry, registry_root
):
    files = _files("a")
    first = registry.register(MODEL, files, {"metrics": {"f1": 0.9}})
    expected = hashlib.sha256(
        json.dumps(
            {"files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    assert (
        first.version_id
        == expected
        == compute_version_id({name: entry.sha256 for name, entry in first.files.items()})
    )
    assert first.short_id == expected[:12] and first.sequence == 1
    assert first.files["model.skops"].size_bytes == len(files["model.skops"])

    again = registry.register(MODEL, dict(reversed(list(files.items()))), {"metrics": {"f1": 0.9}})
    assert again == first and again.created_at == first.created_at
    second = registry.register(MODEL, _files("b"), {})
    assert second.sequence == 2 and second.version_id != first.version_id
    assert [v.version_id for v in registry.versions(MODEL)] == [first.version_id, second.version_id]
    assert len(list((registry_root[1] / MODEL / "versions").iterdir())) == 2

    version_json = registry_root[1] / MODEL / "versions" / first.version_id / "version.json"
    record = json.loads(version_json.read_text())
    assert record["metadata"] == {"metrics": {"f1": 0.9}}
    assert record["files"]["card.json"]["sha256"] == hashlib.sha256(files["card.json"]).hexdigest()
    assert registry.read_file(MODEL, first.short_id, "model.skops") == files["model.skops"]
    assert registry.models() == [MODEL]


def test_identical_files_with_other_metadata_keep_the_first_and_say_so(registry, registry_root):
    first = registry.register(MODEL, _files("a"), {"run_id": "r1"})
    version_json = registry_root[1] / MODEL / "versions" / first.version_id / "version.json"
    stored = version_json.read_bytes()
    with pytest.warns(RegistrationMetadataIgnored, match="first registration's metadata is kept"):
        again = registry.register(MODEL, _files("a"), {"run_id": "r2"})
    assert again.metadata == {"run_id": "r1"} and version_json.read_bytes() == stored


def test_never_overwrites_an_artifact_with_other_content(registry, registry_root):
    files = _files("a")
    version_id = compute_version_id({name: hashlib.sha256(data).hexdigest() for name, data in files.items()})
    stray = registry_root[1] / MODEL / "versions" / version_id / "model.skops"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"someone else's bytes")
    with pytest.raises(TamperedRegistryError, match="exists with other content"):
        registry.register(MODEL, files, {})
    assert stray.read_bytes() == b"someone else's bytes"
    assert not (stray.parent / "version.json").exists()


def test_an_interrupted_registration_is_invisible_until_registered_again(registry, registry_root):
    done = registry.register(MODEL, _files("a"), {})
    files = _files("b")
    version_id = compute_version_id({name: hashlib.sha256(data).hexdigest() for name, data in files.items()})
    partial = registry_root[1] / MODEL / "versions" / version_id
    partial.mkdir(parents=True)
    (partial / "model.skops").write_bytes(files["model.skops"])  # crashed before version.json
    assert registry.versions(MODEL) == [done]
    with pytest.raises(UnknownVersionError):
        registry.version(MODEL, version_id)
    completed = registry.register(MODEL, files, {})
    assert completed.version_id == version_id and completed.sequence == 2


def test_tampered_artifact_or_record_is_detected_on_read(registry, registry_root):
    version = registry.register(MODEL, _files("a"), {})
    directory = registry_root[1] / MODEL / "versions" / version.version_id
    (directory / "model.skops").write_bytes(b"weights A")  # same size, other bytes
    with pytest.raises(TamperedRegistryError, match="tampered registry"):
        registry.read_file(MODEL, version.version_id, "model.skops")
    assert registry.read_file(MODEL, version.version_id, "card.json") == _files("a")["card.json"]

    # Covering the tracks in version.json breaks the content address instead.
    record = json.loads((directory / "version.json").read_text())
    record["files"]["model.skops"]["sha256"] = hashlib.sha256(b"weights A").hexdigest()
    (directory / "version.json").write_text(json.dumps(record))
    with pytest.raises(TamperedRegistryError, match="does not match its address"):
        registry.read_file(MODEL, version.version_id, "model.skops")


def test_versions_are_found_by_unique_prefix_and_ambiguity_is_an_error(registry, monkeypatch):
    real = model_registry.compute_version_id
    # Two real versions sharing 8 hex characters would take ~65k registrations; fix the first 8 instead.
    monkeypatch.setattr(model_registry, "compute_version_id", lambda files: "abcdef01" + real(files)[8:])
    first = registry.register(MODEL, _files("a"), {})
    second = registry.register(MODEL, _files("b"), {})
    assert first.version_id[:8] == second.version_id[:8] == "abcdef01"
    with pytest.raises(AmbiguousVersionError, match="matches 2 versions"):
        registry.version(MODEL, "abcdef01")
    assert registry.version(MODEL, first.short_id) == first
    assert registry.version(MODEL, second.version_id.upper()) == second
    with pytest.raises(UnknownVersionError, match="at least 8 hex"):
        registry.version(MODEL, "abcdef0")
    with pytest.raises(UnknownVersionError, match="no version"):
        registry.version(MODEL, "0123456789")
    with pytest.raises(UnknownModelError, match="models: harsh_event"):
        registry.version("eco_driving", first.version_id)


def test_aliases_history_and_rollback(registry, registry_root):
    v1, v2, v3 = (registry.register(MODEL, _files(tag), {}) for tag in "abc")
    assert registry.alias(MODEL, "champion") is None and registry.history(MODEL) == []
    with pytest.raises(NoPreviousVersionError, match="never set"):
        registry.rollback(MODEL, actor="ops", reason="nothing to undo")

    first = registry.set_alias(MODEL, "champion", v1.version_id, "trainer", "first model", run_id="run-1")
    assert (first.previous_version_id, first.run_id, first.action) == (None, "run-1", "set_alias")
    with pytest.raises(NoPreviousVersionError, match="no previous version"):
        registry.rollback(MODEL, actor="ops", reason="nothing before it")
    before = _history_bytes(registry_root[1])
    registry.set_alias(MODEL, "champion", v2.short_id, "trainer", "beats v1 on recall")
    registry.set_alias(MODEL, "challenger", v3.version_id, "trainer", "shadow test")
    assert _history_bytes(registry_root[1]).startswith(before)
    assert registry.alias(MODEL, "champion") == v2
    assert registry.aliases(MODEL) == {"champion": v2.version_id, "challenger": v3.version_id}

    back = registry.rollback(MODEL, actor="ops", reason="false alarms on rev C")
    assert (back.version_id, back.previous_version_id) == (v1.version_id, v2.version_id)
    assert back.action == "rollback"
    assert registry.alias(MODEL, "champion") == v1
    # Each rollback undoes the latest change, so a second one returns to v2.
    assert registry.rollback(MODEL, actor="ops", reason="undo").version_id == v2.version_id
    explicit = registry.rollback(MODEL, "champion", v3.short_id, actor="ops", reason="pin v3")
    assert explicit.version_id == v3.version_id and registry.alias(MODEL, "challenger") == v3

    lines = [json.loads(line) for line in _history_bytes(registry_root[1]).decode().splitlines()]
    assert [line["action"] for line in lines[:3]] == ["register"] * 3
    assert set(lines[0]) == {"action", "at", "version_id", "record_sha256", "prev"}
    assert len(lines) == 9 and set(lines[3]) == {
        "at",
        "alias",
        "version_id",
        "previous_version_id",
        "actor",
        "reason",
        "run_id",
        "action",
        "prev",
    }
    assert [e.version_id for e in registry.history(MODEL, "champion")] == [
        v.version_id for v in (v1, v2, v1, v2, v3)
    ]
    assert json.loads((registry_root[1] / MODEL / "aliases.json").read_text()) == registry.aliases(MODEL)

    # Re-pointing an alias where it already is records nothing (a re-run of a promoting step).
    same = registry.set_alias(MODEL, "champion", v3.version_id, "trainer", "again")
    assert same == explicit and len(registry.history(MODEL)) == 6

    with pytest.raises(UnknownVersionError):
        registry.set_alias(MODEL, "champion", "f" * 64, "trainer", "no such version")
    with pytest.raises(ValueError, match="reason"):
        registry.set_alias(MODEL, "champion", v1.version_id, "trainer", " ")
    with pytest.raises(UnknownModelError):
        registry.history("eco_driving")


def test_names_cannot_escape_the_registry(registry):
    version = registry.register(MODEL, _files("a"), {})
    # `re.match` with `$` accepted a trailing newline: "champion\n" was an alias of its own.
    for bad in ("champion\n", "../escape", "a/b", "..", ".hidden", ""):
        with pytest.raises(ValueError, match="invalid"):
            registry.register(bad, _files("a"), {})
        with pytest.raises(ValueError, match="invalid"):
            registry.register(MODEL, {bad: b"x"}, {})
        with pytest.raises(ValueError, match="invalid"):
            registry.set_alias(MODEL, bad, version.version_id, "trainer", "bad alias")
    assert registry.history(MODEL) == []
    with pytest.raises(ValueError, match="invalid"):
        registry.register(MODEL, {"version.json": b"{}"}, {})
    with pytest.raises(ValueError, match="plain JSON"):
        registry.register(MODEL, _files("a"), {"metrics": {"f1": float("nan")}})


def test_history_wins_after_a_crash_between_history_append_and_alias_cache(registry, registry_root):
    v1, v2 = (registry.register(MODEL, _files(tag), {}) for tag in "ab")
    registry.set_alias(MODEL, "champion", v1.version_id, "trainer", "first")
    aliases_json = registry_root[1] / MODEL / "aliases.json"
    stale = aliases_json.read_bytes()

    with power_cut_when_replacing(registry, "aliases.json"):
        registry.set_alias(MODEL, "champion", v2.version_id, "trainer", "second")

    assert aliases_json.read_bytes() == stale  # the cache is behind ...
    assert registry.alias(MODEL, "champion") == v2  # ... and the history decides
    assert registry.rollback(MODEL, actor="ops", reason="undo").version_id == v1.version_id
    assert json.loads(aliases_json.read_text()) == {"champion": v1.version_id}


def test_a_torn_history_line_is_not_history_and_is_cut_before_the_next_append(tmp_path):
    registry = ModelRegistry(str(tmp_path), clock=_clock())
    v1, v2 = (registry.register(MODEL, _files(tag), {}) for tag in "ab")
    registry.set_alias(MODEL, "champion", v1.version_id, "trainer", "first")
    history = tmp_path / MODEL / "history.jsonl"
    committed = history.read_bytes()
    with history.open("ab") as stream:
        stream.write(b'{"at":"2026-11-01T00:00:09+00:00","alias":"champion","version_id":"')
    assert registry.alias(MODEL, "champion") == v1
    registry.set_alias(MODEL, "champion", v2.version_id, "trainer", "second")
    data = history.read_bytes()
    assert data.startswith(committed) and len(data.splitlines()) == 4  # two registrations, two changes
    assert _replay(data) == {"champion": v2.version_id}


def _promoted_history(registry: ModelRegistry) -> list:
    """Five history lines: two registrations, then champion v1 (by trainer), v2, and a rollback."""
    v1, v2 = (registry.register(MODEL, _files(tag), {}) for tag in "ab")
    registry.set_alias(MODEL, "champion", v1.version_id, "trainer", "first")
    registry.set_alias(MODEL, "champion", v2.version_id, "trainer", "better")
    registry.rollback(MODEL, actor="ops", reason="false alarms")
    return [v1, v2]


def _edit_line(number: int, old: bytes, new: bytes):
    def edit(lines: list[bytes]) -> list[bytes]:
        assert old in lines[number - 1]
        return [*lines[: number - 1], lines[number - 1].replace(old, new), *lines[number:]]

    return edit


HISTORY_EDITS = {
    "who promoted": (_edit_line(3, b'"actor":"trainer"', b'"actor":"ops"'), "line 4 does not follow line 3"),
    "why": (_edit_line(4, b'"reason":"better"', b'"reason":"worse"'), "line 5 does not follow line 4"),
    "the last line": (
        _edit_line(5, b'"actor":"ops"', b'"actor":"trainer"'),
        "line 5 is not the line its head",
    ),
    "a deleted line": (lambda lines: lines[:2] + lines[3:], "line 3 does not follow line 2"),
    "a deleted last line": (lambda lines: lines[:4], "has 4 lines but its head records 5"),
    "reordered lines": (
        lambda lines: [*lines[:2], lines[3], lines[2], lines[4]],
        "line 3 does not follow line 2",
    ),
    "an inserted line": (lambda lines: [*lines[:3], lines[2], *lines[3:]], "line 4 does not follow line 3"),
}


@pytest.mark.parametrize("edit", HISTORY_EDITS, ids=list(HISTORY_EDITS))
def test_an_edited_history_is_detected_on_every_read_naming_the_line(registry, registry_root, edit):
    v1, _ = _promoted_history(registry)
    history = registry_root[1] / MODEL / "history.jsonl"
    change, message = HISTORY_EDITS[edit]
    history.write_bytes(b"".join(line + b"\n" for line in change(history.read_bytes().splitlines())))
    edited = history.read_bytes()

    for read in (registry.history, registry.aliases, lambda model: registry.alias(model, "champion")):
        with pytest.raises(TamperedRegistryError, match=message):
            read(MODEL)
    with pytest.raises(TamperedRegistryError, match=message):
        registry.set_alias(MODEL, "challenger", v1.version_id, "ops", "nothing is appended to it")
    assert history.read_bytes() == edited


def test_a_changed_version_id_in_a_promotion_is_detected(registry, registry_root):
    v1, _ = _promoted_history(registry)
    history = registry_root[1] / MODEL / "history.jsonl"
    lines = history.read_bytes().splitlines()
    record = json.loads(lines[3])  # champion v1 -> v2
    record["version_id"] = v1.version_id
    lines[3] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    history.write_bytes(b"".join(line + b"\n" for line in lines))
    with pytest.raises(TamperedRegistryError, match="line 5 does not follow line 4"):
        registry.aliases(MODEL)


def test_a_history_without_its_head_is_detected(registry, registry_root):
    _promoted_history(registry)
    (registry_root[1] / MODEL / "history.head.json").unlink()
    with pytest.raises(TamperedRegistryError, match="lines 1 to 5 are past its head"):
        registry.aliases(MODEL)


def test_an_append_interrupted_before_its_head_is_kept_and_anchored_by_the_next(registry, registry_root):
    v1, v2 = (registry.register(MODEL, _files(tag), {}) for tag in "ab")
    with power_cut_when_replacing(registry, "history.head.json"):
        registry.set_alias(MODEL, "champion", v1.version_id, "trainer", "first")

    assert registry.alias(MODEL, "champion") == v1  # the line past the head is history
    registry.set_alias(MODEL, "champion", v2.version_id, "trainer", "second")
    head = json.loads((registry_root[1] / MODEL / "history.head.json").read_text())
    last = _history_bytes(registry_root[1]).splitlines()[-1]
    assert head == {"lines": 4, "sha256": hashlib.sha256(last).hexdigest()}
    assert registry.alias(MODEL, "champion") == v2


@pytest.mark.parametrize(
    "field, value",
    [("metadata", {"metrics": {"f1": 0.99}}), ("sequence", 7), ("created_at", "2020-01-01T00:00:00+00:00")],
)
def test_an_edited_version_record_is_detected_on_read(registry, registry_root, field, value):
    version = registry.register(MODEL, _files("a"), {"metrics": {"f1": 0.71}})
    registry.set_alias(MODEL, "challenger", version.version_id, "trainer", "candidate")
    version_json = registry_root[1] / MODEL / "versions" / version.version_id / "version.json"
    record = json.loads(version_json.read_text())
    record[field] = value
    version_json.write_text(json.dumps(record, indent=2, sort_keys=True))

    message = "not the record registered in history.jsonl"
    for read in (
        lambda: registry.version(MODEL, version.short_id),
        lambda: registry.versions(MODEL),
        lambda: registry.alias(MODEL, "challenger"),
        lambda: registry.read_file(MODEL, version.version_id, "model.skops"),
        lambda: registry.register(MODEL, _files("a"), {"metrics": {"f1": 0.71}}),
    ):
        with pytest.raises(TamperedRegistryError, match=message):
            read()


ALIASES = st.sampled_from(["champion", "challenger"])
OPERATION = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 3)),
    st.tuples(st.just("set"), ALIASES, st.integers(0, 3)),
    st.tuples(st.just("rollback"), ALIASES, st.none() | st.integers(0, 3)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(OPERATION, min_size=1, max_size=12), as_uri=st.booleans())
def test_aliases_always_equal_the_replayed_history_which_only_grows(operations, as_uri):
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        registry = ModelRegistry(root.as_uri() if as_uri else directory, clock=_clock())
        registry.register(MODEL, _files("seed"), {})
        ids = {}
        expected: dict[str, list[str]] = {}  # alias -> versions it pointed at, oldest first
        previous_bytes = b""
        for operation in operations:
            kind, *arguments = operation
            if kind == "register":
                ids[arguments[0]] = registry.register(MODEL, _files(str(arguments[0])), {}).version_id
            elif kind == "set":
                alias, index = arguments
                if index in ids:
                    registry.set_alias(MODEL, alias, ids[index], "prop", "set")
                    pointed = expected.setdefault(alias, [])
                    if not pointed or pointed[-1] != ids[index]:
                        pointed.append(ids[index])
                else:
                    with pytest.raises(UnknownVersionError):
                        registry.set_alias(MODEL, alias, "0" * 64, "prop", "no such version")
            else:
                alias, index = arguments
                pointed = expected.setdefault(alias, [])
                if index is None and len(pointed) < 2:
                    with pytest.raises(NoPreviousVersionError):
                        registry.rollback(MODEL, alias, actor="prop", reason="undo")
                elif index is None or index in ids:
                    target = pointed[-2] if index is None else ids[index]
                    to_version = None if index is None else ids[index]
                    registry.rollback(MODEL, alias, to_version, actor="prop", reason="back")
                    if not pointed or pointed[-1] != target:
                        pointed.append(target)

            history = _history_bytes(root)
            assert history.startswith(previous_bytes)
            previous_bytes = history
            truth = {alias: pointed[-1] for alias, pointed in expected.items() if pointed}
            assert _replay(history) == registry.aliases(MODEL) == truth
            cache = root / MODEL / "aliases.json"
            assert (json.loads(cache.read_text()) if cache.exists() else {}) == truth


def test_concurrent_registrations_are_safe(tmp_path):
    registry_uri = str(tmp_path)
    barrier = threading.Barrier(8)
    results, errors = [], []

    def register(tag: str) -> None:
        try:
            barrier.wait()
            results.append(ModelRegistry(registry_uri).register(MODEL, _files(tag), {"tag": tag}))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=register, args=(tag,)) for tag in ["same"] * 4 + ["x", "y", "z", "w"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    same = {v.version_id for v in results if v.metadata["tag"] == "same"}
    assert len(same) == 1
    versions = ModelRegistry(registry_uri).versions(MODEL)
    assert [v.sequence for v in versions] == [1, 2, 3, 4, 5]
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_the_resource_registers_and_promotes_inside_a_materialization(tmp_path):
    @dg.asset
    def candidate_model(
        context: dg.AssetExecutionContext, model_registry: ModelRegistryResource
    ) -> dg.MaterializeResult:
        """A candidate registered and made challenger, as the training asset will."""
        version = model_registry.register(
            MODEL, {"model.skops": b"fitted"}, {"metrics": {"f1": 0.91}, "run_id": context.run.run_id}
        )
        event = model_registry.set_alias(
            MODEL, "challenger", version.version_id, "dagster", "new candidate", context.run.run_id
        )
        return dg.MaterializeResult(
            metadata={
                "version_id": version.version_id,
                "uri": dg.MetadataValue.path(
                    model_registry.artifact_uri(MODEL, version.version_id, "model.skops")
                ),
                "previous": str(event.previous_version_id),
            }
        )

    resource = ModelRegistryResource(uri=str(tmp_path / "registry"))
    result = dg.materialize(
        [candidate_model], resources={"model_registry": resource}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    metadata = result.asset_materializations_for_node("candidate_model")[0].metadata
    registry = resource.registry()
    challenger = registry.alias(MODEL, "challenger")
    assert challenger is not None and metadata["version_id"].value == challenger.version_id
    assert challenger.metadata["run_id"] == result.run_id
    assert registry.history(MODEL)[0].run_id == result.run_id
    assert resource.read_file(MODEL, challenger.short_id, "model.skops") == b"fitted"
    assert Path(metadata["uri"].value).read_bytes() == b"fitted"
