"""Archives built to exhaust a verifier before any signature is checked, and random damage to a genuine
bundle. `tarfile` on CPython 3.11.7 parses a pax header of digits in quadratic time (CVE-2024-6232),
recurses once per chained GNU long-name header, and holds a GNU sparse map at several times its size
in memory; the verifier must refuse each of these from its first header, with bounded work, a
one-line reason, and never an exception other than `BundleRejected`."""

import tarfile
import tracemalloc
from pathlib import Path

import pytest
from bundle_fixtures import cli, make_bundle, member, members_of, seeded_key, write_public_key, write_tar
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from edge_packaging.bundle import BUNDLE_MEMBERS, REJECTION_CODES, BundleLimits, BundleRejected, verify_bundle

KEY = seeded_key(1)
TIMEOUT_S = 20
"""Generous for the checks (well under a second here); the old 1 MiB pax parse took minutes."""


def assert_cli_refuses(bundle: Path, public_key: Path, reason: str) -> None:
    result = cli("verify", bundle, "--public-key", public_key, timeout=TIMEOUT_S)
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("REJECTED: "), result.stderr[-2000:]
    assert reason in result.stderr, result.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def public_key(workdir):
    return write_public_key(workdir / "trusted.pub.pem", KEY)


@pytest.fixture(scope="module")
def good_bundle(workdir):
    return make_bundle(workdir / "good", KEY)


@pytest.fixture(scope="module")
def good_members(good_bundle):
    return members_of(good_bundle)


def genuine_entries(good_members: dict[str, bytes]) -> list:
    return [member(name, good_members[name]) for name in BUNDLE_MEMBERS]


def test_a_pax_header_of_digits_is_refused_in_bounded_time(workdir, public_key, good_members):
    """1 MiB of digits in a pax header ahead of genuine members: minutes of CPU in `tarfile`."""
    digits = b"1" * (1 << 20)
    pax = member("././@PaxHeader", digits, type_=tarfile.XHDTYPE)
    path = write_tar(workdir / "pax-digits.tar", [pax, *genuine_entries(good_members)])
    assert_cli_refuses(path, public_key, "'././@PaxHeader' is a pax extended header, not a regular file")
    with pytest.raises(BundleRejected) as caught:  # in this process only once the child showed it is quick
        verify_bundle(path, [KEY.public_key()])
    assert caught.value.code == "not_regular_file"


def test_chained_gnu_long_names_are_refused_without_recursion(workdir, public_key, good_members):
    """About 400 KB of chained long-name headers: `tarfile` raised RecursionError through the CLI."""
    long_name = member("././@LongLink", b"n" * 99 + b"\0", type_=tarfile.GNUTYPE_LONGNAME)
    entries = [long_name] * 400 + genuine_entries(good_members)
    path = write_tar(workdir / "gnu-chain.tar", entries, fmt=tarfile.GNU_FORMAT)
    assert path.stat().st_size > 400_000
    with pytest.raises(BundleRejected) as caught:
        verify_bundle(path, [KEY.public_key()])
    assert caught.value.code == "not_regular_file"
    assert "'././@LongLink' is a GNU long name header, not a regular file" in str(caught.value)
    assert_cli_refuses(path, public_key, "is a GNU long name header")


def header_with_checksum(block: bytearray) -> bytes:
    """`block` with its header checksum recomputed, as any tar writer would leave it."""
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def gnu_sparse_archive(path: Path, extension_blocks: int) -> Path:
    """An old-GNU sparse member whose map runs on through `extension_blocks` blocks of 21 entries."""
    info = tarfile.TarInfo("model.onnx")
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[482] = 1  # the sparse map continues in an extension block
    entries = b"".join(b"%011o\0%011o\0" % (4096 * (i + 1), 512) for i in range(21))
    extension = entries + b"\1" + bytes(511 - len(entries))  # byte 504: another block follows
    last = entries + bytes(512 - len(entries))
    path.write_bytes(header_with_checksum(header) + extension * (extension_blocks - 1) + last + bytes(1024))
    return path


def test_a_gnu_sparse_map_is_refused_without_expanding_it(workdir, public_key):
    """A 16 MiB sparse map: `tarfile` built a tuple per entry, over six times the archive in memory."""
    path = gnu_sparse_archive(workdir / "sparse.tar", extension_blocks=32 * 1024)
    size = path.stat().st_size
    # A limit just over the size: the read buffer is allocated at the limit, and tracemalloc counts it.
    limits = BundleLimits(max_archive_bytes=size + 1)
    tracemalloc.start()
    try:
        with pytest.raises(BundleRejected) as caught:
            verify_bundle(path, [KEY.public_key()], limits)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.code == "not_regular_file"
    assert "'model.onnx' is a sparse file, not a regular file" in str(caught.value)
    assert peak_bytes < 2 * size, f"peak {peak_bytes} bytes for a {size}-byte archive: the map was expanded"
    assert_cli_refuses(path, public_key, "is a sparse file")


# --- random damage to a genuine bundle -----------------------------------------------------------

HEADER_OFFSETS = (0, 2048, 3072)
"""Where the three headers of `make_bundle`'s archive start (checked in the fixture below)."""


@pytest.fixture(scope="module")
def genuine(good_bundle):
    with tarfile.open(good_bundle) as archive:
        assert tuple(info.offset for info in archive.getmembers()) == HEADER_OFFSETS
    return good_bundle.read_bytes(), verify_bundle(good_bundle, [KEY.public_key()])


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_239), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 10_239), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_240), st.binary(min_size=1, max_size=600)),
    st.tuples(st.just("delete"), st.integers(0, 10_239), st.integers(1, 600)),
    st.tuples(st.just("truncate"), st.integers(0, 10_239), st.just(0)),
)


def mutate(data: bytes, steps: list, fix_checksums: bool) -> bytes:
    out = bytearray(data)
    for kind, at, arg in steps:
        at = min(at, len(out))
        if kind == "flip" and at < len(out):
            out[at] ^= arg
        elif kind == "set" and at < len(out):
            out[at] = arg
        elif kind == "insert":
            out[at:at] = arg
        elif kind == "delete":
            del out[at : at + arg]
        elif kind == "truncate":
            del out[at:]
    if fix_checksums:  # let damage inside a header get past the checksum, to the field checks
        for offset in HEADER_OFFSETS:
            if len(out) >= offset + 512:
                out[offset : offset + 512] = header_with_checksum(out[offset : offset + 512])
    return bytes(out)


@pytest.mark.fuzz
@fuzz_settings(200)
@given(steps=st.lists(mutations, min_size=1, max_size=3), fix_checksums=st.booleans())
def test_damaged_bundles_verify_unchanged_or_are_rejected(genuine, tmp_path_factory, steps, fix_checksums):
    """Any damage either leaves the very same verified content, or is a `BundleRejected`: never another
    exception, never a different manifest or model."""
    data, verified = genuine
    path = tmp_path_factory.mktemp("fuzz") / "b.tar"
    path.write_bytes(mutate(data, steps, fix_checksums))
    try:
        again = verify_bundle(path, [KEY.public_key()])
    except BundleRejected as rejected:
        assert rejected.code in REJECTION_CODES
        assert str(rejected).isprintable() and "\n" not in str(rejected)
        return
    assert again.manifest == verified.manifest
    assert again.model_bytes == verified.model_bytes
    assert again.bundle_sha256 == verified.bundle_sha256
