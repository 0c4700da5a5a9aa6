"""The two kinds of store every storage test runs against: a local folder and an S3 prefix.

`StoreRoot` gives tests one vocabulary for both (join, read, write, exists, delete), so that a test
written once checks the same behaviour on a POSIX directory and on a real S3-compatible server.
"""

import posixpath
from dataclasses import dataclass

import pyarrow.fs as pafs

from resources.filesystems import exists, filesystem_and_path, join_uri, read_bytes


@dataclass(frozen=True)
class StoreRoot:
    """A root URI for one test: a temporary folder, or a fresh prefix in the test bucket."""

    kind: str
    uri: str

    def join(self, *parts: str) -> str:
        return join_uri(self.uri, *parts)

    def exists(self, uri: str) -> bool:
        fs, path = filesystem_and_path(uri)
        return exists(fs, path)

    def read(self, uri: str) -> bytes:
        return read_bytes(uri)

    def write(self, uri: str, data: bytes) -> str:
        """Land `data` at `uri` whole: a temp name renamed into place locally, one PUT on S3."""
        fs, path = filesystem_and_path(uri)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        if self.kind == "local":
            temp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.tmp")
            with fs.open_output_stream(temp) as stream:
                stream.write(data)
            fs.move(temp, path)
        else:
            with fs.open_output_stream(path) as stream:
                stream.write(data)
        return uri

    def delete(self, uri: str) -> None:
        fs, path = filesystem_and_path(uri)
        fs.delete_file(path)

    def names(self, uri: str) -> list[str]:
        """Names of the objects directly under `uri`."""
        fs, path = filesystem_and_path(uri)
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(posixpath.basename(info.path) for info in infos if info.type == pafs.FileType.File)
