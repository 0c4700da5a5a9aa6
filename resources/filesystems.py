"""Where a storage URI points, and the few operations every store needs on it.

A URI is a local path by default or `s3://bucket/key` in production. Every store (the landing zone
and its quarantine, the lake, the registry, the artifact store, asset references, the alert log)
resolves it here, so none of them branches on the scheme and none calls `Path` on remote data.

S3 is configured the way every S3 client is, from the standard environment variables, so that Dagster
steps, Spark executors, Ray workers, the simulated devices and the CLIs all reach the same store:
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` (default us-east-1) and, for an
S3-compatible server such as SeaweedFS or MinIO, `AWS_ENDPOINT_URL`. They are not Dagster resource
config: processes that Dagster does not configure (Spark executors, Ray workers, devices) need them
too. The production code location checks them when it loads (`pipelines/preflight.py`).
"""

import functools
import os
import posixpath
import re
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

CREDENTIAL_VARIABLES = "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
_REFUSED_MARKERS = (
    "SignatureDoesNotMatch",
    "does not match the signature",
    "InvalidAccessKeyId",
    "AccessDenied",
    "Access Denied",
    "Forbidden",
    "403",
)


class StorageAccessError(OSError):
    """The object store refused or could not be reached; the message names the variables to check."""


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3 (or an S3-compatible server); read from the environment by default."""

    access_key_id: str | None
    secret_access_key: str | None
    region: str = "us-east-1"
    endpoint_url: str | None = None

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] | None = None) -> "S3Settings":
        environment = os.environ if environment is None else environment
        return cls(
            access_key_id=environment.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=environment.get("AWS_SECRET_ACCESS_KEY") or None,
            region=environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION") or "us-east-1",
            endpoint_url=environment.get("AWS_ENDPOINT_URL_S3") or environment.get("AWS_ENDPOINT_URL") or None,
        )


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


@functools.lru_cache(maxsize=8)
def s3_filesystem(settings: S3Settings) -> "pafs.S3FileSystem":
    """One pyarrow S3 filesystem per distinct settings (creating one initialises the AWS SDK)."""
    import pyarrow.fs as pafs

    options: dict = {"region": settings.region}
    if settings.access_key_id and settings.secret_access_key:
        options |= {"access_key": settings.access_key_id, "secret_key": settings.secret_access_key}
    if settings.endpoint_url:
        endpoint = urllib.parse.urlsplit(settings.endpoint_url)
        options |= {"endpoint_override": endpoint.netloc or endpoint.path, "scheme": endpoint.scheme or "https"}
    return pafs.S3FileSystem(**options)


def filesystem_and_path(uri: str) -> "tuple[pafs.FileSystem, str]":
    """The pyarrow filesystem holding `uri` and the path of `uri` on it."""
    import pyarrow.fs as pafs

    uri = str(uri)
    if uri.startswith("s3://"):
        return s3_filesystem(S3Settings.from_environment()), uri.removeprefix("s3://").rstrip("/")
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    local = pafs.LocalFileSystem()
    return local, local.normalize_path(os.path.abspath(uri))


def join_uri(root: str, *parts: str) -> str:
    """`root/part/...` for a local path or a URI alike."""
    return posixpath.join(str(root).rstrip("/"), *parts)


SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,254}")


def safe_segment(value: str, what: str) -> str:
    """`value` when it can only name one entry under its root (no `/`, no `..`, no absolute path).

    Partition keys, asset key parts and run tags come from outside the process (a sensor, a run
    request, a CLI): joined unchecked, `../../x` or `/etc` would leave the store's root."""
    if not SAFE_SEGMENT.fullmatch(value) or ".." in value:
        raise ValueError(f"{what} {value!r} must match {SAFE_SEGMENT.pattern} without '..'")
    return value


def exists(fs: "pafs.FileSystem", path: str) -> bool:
    return fs.get_file_info(path).type.name != "NotFound"


def read_bytes(uri: str) -> bytes:
    """The whole object at `uri` in one read: hashing and parsing the same bytes cannot see two versions."""
    fs, path = filesystem_and_path(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Publish `data` at `uri` atomically (see `atomic_object`)."""
    fs, path = filesystem_and_path(uri)
    with atomic_object(fs, path) as temp_path, fs.open_output_stream(temp_path) as stream:
        stream.write(data)


def read_parquet(uri: str, columns: list[str] | None = None) -> "pa.Table":
    import pyarrow.parquet as pq

    fs, path = filesystem_and_path(uri)
    return pq.read_table(path, filesystem=fs, columns=columns)


@contextmanager
def atomic_object(fs: "pafs.FileSystem", path: str) -> Iterator[str]:
    """Yield a temporary path beside `path` to write to; on success it is moved onto `path`.

    Readers see the old object or the new one, never a partial one: a rename locally, a server-side
    copy on object stores. Writing straight to the final key would not do on S3: pyarrow completes a
    multipart upload when its stream is closed, even while an exception unwinds, so a failed writer
    would publish a truncated object. The dot-prefixed temp name is never listed as an object of its own.
    """
    directory = posixpath.dirname(path)
    fs.create_dir(directory, recursive=True)
    temp_path = posixpath.join(directory, f".tmp-{uuid.uuid4().hex}")
    try:
        yield temp_path
        fs.move(temp_path, path)
    except BaseException:
        if exists(fs, temp_path):
            fs.delete_file(temp_path)
        raise


def check_access(uri: str, settings: S3Settings | None = None) -> None:
    """Fail now, with the variables to fix, if the store behind `uri` refuses or cannot be reached.

    Listing the bucket is the cheapest call that needs valid credentials; a local path needs none.
    `settings` default to this process's environment.
    """
    if not str(uri).startswith("s3://"):
        return
    import pyarrow.fs as pafs

    settings = settings or S3Settings.from_environment()
    fs = s3_filesystem(settings)
    bucket = str(uri).removeprefix("s3://").split("/", 1)[0]
    try:
        fs.get_file_info(pafs.FileSelector(bucket, allow_not_found=True, recursive=False))
    except OSError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        where = settings.endpoint_url or f"AWS S3 ({settings.region})"
        if any(marker in detail for marker in _REFUSED_MARKERS):
            raise StorageAccessError(
                f"S3 at {where} refused the credentials in {CREDENTIAL_VARIABLES} for {uri}: {detail}"
            ) from error
        raise StorageAccessError(
            f"S3 at {where} (AWS_ENDPOINT_URL) could not be reached for {uri}: {detail}"
        ) from error
