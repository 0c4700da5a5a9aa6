import io
import os
import re
import tarfile

import pytest
from bundle_fixtures import (
    CREATED_AT,
    LINEAGE,
    TAMPER_CASE_NAMES,
    THRESHOLDS,
    make_bundle,
    member,
    members_of,
    seeded_key,
    tamper_cases,
    tiny_model,
    tiny_model_bytes,
    write_tar,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_packaging import bundle as bundle_module
from edge_packaging.bundle import (
    BUNDLE_MEMBERS,
    REJECTION_CODES,
    BundleExists,
    BundleLimits,
    BundleRejected,
    build_bundle,
    canonical_archive,
    check_model_interface,
    verify_bundle,
)
from edge_packaging.manifest import HARSH_EVENT_INPUTS, HARSH_EVENT_OUTPUT, parse_manifest
from edge_packaging.signing import key_id

KEY = seeded_key(1)
OTHER_KEY = seeded_key(2)


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("good"), KEY)


@pytest.fixture(scope="module")
def cases(good_bundle, tmp_path_factory):
    return tamper_cases(good_bundle, KEY, OTHER_KEY, tmp_path_factory.mktemp("tampered"))


def test_valid_bundle_verifies(good_bundle):
    verified = verify_bundle(good_bundle, [KEY.public_key()])
    assert good_bundle.name == "harsh_event_model-1.2.0.bundle.tar"
    assert verified.manifest.model_version == "1.2.0"
    assert verified.manifest.created_at == CREATED_AT
    assert verified.signing_key_id == key_id(KEY.public_key()) == verified.manifest.signing_key_id
    assert verified.model_bytes == tiny_model_bytes()
    assert verified.manifest.lineage == {**LINEAGE, "model_sha256": verified.manifest.model_sha256}
    assert dict(verified.manifest.decision_thresholds) == THRESHOLDS
    assert verified.manifest.inputs == HARSH_EVENT_INPUTS and verified.manifest.output == HARSH_EVENT_OUTPUT
    assert verified.archive_bytes == good_bundle.stat().st_size
    # Several trusted keys, as a sequence or as an alias mapping, are fine.
    keyring = {"old": OTHER_KEY.public_key(), "release": KEY.public_key()}
    assert verify_bundle(good_bundle, keyring).manifest == verified.manifest
    with pytest.raises(ValueError, match="at least one trusted public key"):
        verify_bundle(good_bundle, [])


def test_archive_layout_is_fixed_and_deterministic(good_bundle, tmp_path):
    with tarfile.open(good_bundle) as archive:
        infos = archive.getmembers()
    assert [info.name for info in infos] == list(BUNDLE_MEMBERS)
    # Manifest and signature first: a device streaming the archive checks them before the model.
    assert list(BUNDLE_MEMBERS) == ["manifest.json", "manifest.sig", "model.onnx"]
    for info in infos:
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, 0, "", "", 0o644)
        assert info.isreg()
    again = make_bundle(tmp_path, KEY)
    assert again.read_bytes() == good_bundle.read_bytes(), "same inputs must give the same bytes"


def test_build_is_idempotent_and_never_overwrites_a_different_bundle(tmp_path):
    first = make_bundle(tmp_path, KEY)
    before = first.read_bytes()
    assert make_bundle(tmp_path, KEY) == first
    with pytest.raises(BundleExists, match="different bundle already exists"):
        make_bundle(tmp_path, KEY, lineage={"code_version": "other"})
    assert first.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name], "no temp files left behind"


def test_build_refuses_a_model_that_does_not_match_the_specs(tmp_path):
    model = tiny_model()
    model.graph.input[1].name = "speed"
    model.graph.node[1].input[0] = "speed"
    with pytest.raises(ValueError, match="model inputs"):
        make_bundle(tmp_path, KEY, model_bytes=model.SerializeToString())
    with pytest.raises(ValueError, match="not an ONNX model"):
        check_model_interface(b"\x01\x02garbage", HARSH_EVENT_INPUTS, HARSH_EVENT_OUTPUT)
    wrong_classes = tiny_model()
    wrong_classes.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 4
    with pytest.raises(ValueError, match="dimension 1 is 4, manifest says 5"):
        check_model_interface(wrong_classes.SerializeToString(), HARSH_EVENT_INPUTS, HARSH_EVENT_OUTPUT)
    assert not list(tmp_path.iterdir())


def test_extract_writes_only_verified_members_to_a_fresh_directory(good_bundle, tmp_path):
    verified = verify_bundle(good_bundle, [KEY.public_key()])
    first = verified.extract(tmp_path)
    second = verified.extract(tmp_path)
    assert first != second and first.parent == tmp_path
    assert sorted(p.name for p in first.iterdir()) == sorted(BUNDLE_MEMBERS)
    assert (first / "model.onnx").read_bytes() == verified.model_bytes
    assert parse_manifest((first / "manifest.json").read_bytes()) == verified.manifest


def test_every_tamper_case_is_listed_and_every_rejection_code_is_exercised(cases):
    assert sorted(cases) == sorted(TAMPER_CASE_NAMES)
    # "unreadable": see test_missing_path_is_rejected; "revoked_key": see test_key_rotation.py
    exercised = {case.code for case in cases.values()} | {"unreadable", "revoked_key"}
    assert exercised == set(REJECTION_CODES)


@pytest.mark.parametrize("name", TAMPER_CASE_NAMES)
def test_tampered_bundle_is_rejected_with_its_reason(cases, name):
    case = cases[name]
    limits = BundleLimits(max_archive_bytes=case.max_archive_bytes or BundleLimits().max_archive_bytes)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(case.path, [KEY.public_key()], limits)
    assert caught.value.code == case.code
    assert case.reason in str(caught.value)
    assert str(caught.value).isprintable()


def test_oversized_archive_is_refused_before_it_is_opened(cases, monkeypatch):
    case = cases["oversized_archive"]

    def must_not_open(*args, **kwargs):
        raise AssertionError("the archive was opened before its size was checked")

    monkeypatch.setattr(bundle_module, "open", must_not_open, raising=False)
    with pytest.raises(BundleRejected, match="over the limit of 4096"):
        verify_bundle(case.path, [KEY.public_key()], BundleLimits(max_archive_bytes=case.max_archive_bytes))


def test_oversized_member_is_refused_from_its_header_before_any_data_is_read(cases):
    path = cases["oversized_member"].path
    # Reading the data first would end in "unexpected end of data" (corrupt_archive) instead.
    assert path.stat().st_size < 8192, "the archive does not even hold the claimed bytes"
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(path, [KEY.public_key()])
    assert caught.value.code == "member_too_large"


def tarfile_canonical_archive(contents: dict[str, bytes]) -> bytes:
    """The bundle layout as `tarfile` writes it: how every bundle before the strict reader was built."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in BUNDLE_MEMBERS:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uname, info.gname = len(contents[name]), 0, 0o644, "", ""
            archive.addfile(info, io.BytesIO(contents[name]))
    return buffer.getvalue()


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3 * 10_240), min_size=3, max_size=3), fill=st.binary(min_size=1, max_size=8)
)
def test_the_canonical_layout_is_byte_for_byte_what_tarfile_writes(sizes, fill):
    contents = {name: (fill * size)[:size] for name, size in zip(BUNDLE_MEMBERS, sizes, strict=True)}
    assert canonical_archive(contents) == tarfile_canonical_archive(contents)


@pytest.mark.parametrize(
    ("field", "value"), [("mtime", 1), ("uid", 1000), ("mode", 0o755), ("uname", "root"), ("linkname", "x")]
)
def test_a_header_field_off_the_canonical_value_is_refused_before_the_signature(
    good_members, tmp_path, field, value
):
    entries = [member(name, good_members[name]) for name in BUNDLE_MEMBERS]
    setattr(entries[0][0], field, value)
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(write_tar(tmp_path / "b.tar", entries), [OTHER_KEY.public_key()])  # no key would do
    assert caught.value.code == "non_canonical"
    assert "member manifest.json has a non-canonical header" in str(caught.value)


def test_only_posix_ustar_regular_file_headers_are_read(good_members, tmp_path):
    entries = [member(name, good_members[name]) for name in BUNDLE_MEMBERS]
    gnu = write_tar(tmp_path / "gnu.tar", entries, fmt=tarfile.GNU_FORMAT)  # magic "ustar  \0"
    with pytest.raises(BundleRejected, match="member manifest.json has a non-canonical header"):
        verify_bundle(gnu, [KEY.public_key()])
    entries[0][0].type = tarfile.AREGTYPE
    old_style = write_tar(tmp_path / "v7.tar", entries)
    with pytest.raises(BundleRejected, match="is an old-style .pre-POSIX. file entry, not a regular file"):
        verify_bundle(old_style, [KEY.public_key()])


def test_member_limits_follow_the_configured_limits(good_bundle):
    model_size = len(members_of(good_bundle)["model.onnx"])
    reason = f"member model.onnx claims {model_size} bytes, over the limit of 100$"
    with pytest.raises(BundleRejected, match=reason):
        verify_bundle(good_bundle, [KEY.public_key()], BundleLimits(max_model_bytes=100))
    with pytest.raises(BundleRejected, match="member manifest.json claims .* over the limit of 10"):
        verify_bundle(good_bundle, [KEY.public_key()], BundleLimits(max_manifest_bytes=10))


def test_missing_path_is_rejected(tmp_path):
    with pytest.raises(BundleRejected, match="cannot read bundle"):
        verify_bundle(tmp_path / "absent.bundle.tar", [KEY.public_key()])
    with pytest.raises(BundleRejected, match="not a regular file"):
        verify_bundle(tmp_path, [KEY.public_key()])


# --- properties -------------------------------------------------------------------------------

# Any text, paths assembled from the pieces attacks use, and the classic offenders by name.
path_pieces = st.sampled_from(["..", ".", "", "model.onnx", "manifest.json", "a", "C:", "\\.."])
classic = ["/model.onnx", "./model.onnx", "model.onnx/", "..", "C:\\model.onnx"]
member_names = (
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30)
    | st.lists(path_pieces, min_size=1, max_size=4).map("/".join)
    | st.sampled_from(list(BUNDLE_MEMBERS) + classic)
).filter(lambda name: 0 < len(name.encode()) <= 100)  # what a plain ustar header holds: no pax, no prefix


def expected_code(name: str) -> str:
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "absolute_path"
    if ".." in re.split(r"[/\\]", name):
        return "parent_path"
    if name in BUNDLE_MEMBERS:
        return "duplicate_member"
    return "unexpected_member"


@pytest.fixture(scope="module")
def good_members(good_bundle):
    return members_of(good_bundle)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=member_names)
def test_any_added_member_is_refused_for_the_right_reason(good_members, tmp_path_factory, name):
    path = tmp_path_factory.mktemp("names") / "b.tar"
    write_tar(path, [member(n, data) for n, data in good_members.items()] + [member(name, b"payload")])
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(path, [KEY.public_key()])
    assert caught.value.code == expected_code(name), (name, str(caught.value))
    assert str(caught.value).isprintable()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=member_names)
def test_a_renamed_model_verifies_only_under_its_own_name(good_members, tmp_path_factory, name):
    path = tmp_path_factory.mktemp("renamed") / "b.tar"
    entries = [member(n if n != "model.onnx" else name, data) for n, data in good_members.items()]
    write_tar(path, entries)
    if name == "model.onnx":  # the same members, re-packed in another tar layout
        with pytest.raises(BundleRejected, match="canonical layout"):
            verify_bundle(path, [KEY.public_key()])
        path.write_bytes(canonical_archive(good_members))
        assert verify_bundle(path, [KEY.public_key()]).model_bytes == good_members["model.onnx"]
        return
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(path, [KEY.public_key()])
    assert caught.value.code in {"absolute_path", "parent_path", "duplicate_member", "unexpected_member"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.lists(st.integers(0, 99), min_size=3, max_size=3).map(lambda parts: ".".join(map(str, parts))),
    event_thresholds=st.lists(st.floats(0.0, 1.0, exclude_min=True), min_size=4, max_size=4),
    lineage=st.dictionaries(
        st.text(max_size=8),
        st.integers() | st.text(max_size=8) | st.floats(allow_nan=False, allow_infinity=False),
        max_size=4,
    ),
)
def test_any_valid_bundle_verifies(tmp_path_factory, version, event_thresholds, lineage):
    directory = tmp_path_factory.mktemp("valid")
    path = build_bundle(
        directory,
        tiny_model_bytes(),
        model_name="harsh_event_model",
        model_version=version,
        decision_thresholds=dict(zip(HARSH_EVENT_OUTPUT.class_names, [*event_thresholds, 0.0], strict=True)),
        lineage=lineage,
        private_key=KEY,
        created_at=CREATED_AT,
    )
    verified = verify_bundle(path, [KEY.public_key()])
    assert verified.manifest.model_version == version
    assert os.path.basename(path) == f"harsh_event_model-{version}.bundle.tar"
