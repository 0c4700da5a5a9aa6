"""Where a storage URI points, and how to publish an object there atomically.

A URI is a local path by default or `s3://...` (any pyarrow filesystem) in production; the lake, the
artifact store and the asset references all resolve it here, so none of them branches on the scheme.
"""

import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs as pafs


def filesystem_and_path(uri: str) -> "tuple[pafs.FileSystem, str]":
    """The pyarrow filesystem holding `uri` and the path of `uri` on it."""
    import pyarrow.fs as pafs

    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    local = pafs.LocalFileSystem()
    return local, local.normalize_path(str(uri))


@contextmanager
def atomic_object(fs: "pafs.FileSystem", path: str) -> Iterator[str]:
    """Yield a temporary path beside `path` to write to; on success it is moved onto `path`.

    Readers see the old object or the new one, never a partial one (a rename locally, a single put
    on object stores). The dot-prefixed temp name is never listed as an object of its own.
    """
    directory = posixpath.dirname(path)
    fs.create_dir(directory, recursive=True)
    temp_path = posixpath.join(directory, f".tmp-{uuid.uuid4().hex}")
    try:
        yield temp_path
        fs.move(temp_path, path)
    except BaseException:
        if fs.get_file_info(temp_path).type.name != "NotFound":
            fs.delete_file(temp_path)
        raise
