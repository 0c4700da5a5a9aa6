"""Content-addressed storage of binary artifacts (edge models, bundles, reports).

An artifact's path carries its sha256, it is written atomically, and it is never overwritten: the
same bytes land at the same path, different bytes at a different one.
"""

import hashlib
import posixpath
from dataclasses import dataclass

import dagster as dg

from resources.filesystems import atomic_object, filesystem_and_path, safe_segment


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    sha256: str
    size_bytes: int


class ArtifactStoreResource(dg.ConfigurableResource):
    """Artifacts under `uri/<kind>/<sha256[:2]>/<sha256>/<name>` (local path or object store URI)."""

    uri: str

    def put(self, kind: str, name: str, data: bytes) -> StoredArtifact:
        """Store `data` as `name` under its hash; storing the same bytes again is a no-op."""
        sha256 = hashlib.sha256(data).hexdigest()
        fs, root = filesystem_and_path(self.uri)
        path = posixpath.join(root, safe_segment(kind, "artifact kind"), sha256[:2], sha256, safe_segment(name, "artifact name"))
        if fs.get_file_info(path).type.name == "NotFound":
            with atomic_object(fs, path) as temp_path, fs.open_output_stream(temp_path) as stream:
                stream.write(data)
        return StoredArtifact(uri=self.uri_of(kind, sha256, name), sha256=sha256, size_bytes=len(data))

    def uri_of(self, kind: str, sha256: str, name: str) -> str:
        return posixpath.join(self.uri.rstrip("/"), kind, sha256[:2], sha256, name)

    def get(self, uri: str) -> bytes:
        """Read an artifact back and check it still has the hash its path claims."""
        fs, path = filesystem_and_path(uri)
        with fs.open_input_stream(path) as stream:
            data = stream.read()
        expected = posixpath.basename(posixpath.dirname(path))
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError(f"artifact {uri} does not match its sha256: it was changed after it was stored")
        return data
