"""IO manager for the small JSON documents that model assets hand to their children.

Model assets store their heavy artifacts (tables, models, bundles) content-addressed elsewhere and
return a reference: URIs, hashes, versions, figures. Passing that reference through Dagster, rather
than looking up "the latest" artifact on disk, keeps every child bound to its actual parent.
"""

import json
import posixpath
from typing import Any

import dagster as dg

from resources.filesystems import atomic_object, filesystem_and_path, safe_segment


class JsonRefIOManager(dg.ConfigurableIOManager):
    """Stores each output as `<uri>/<asset key path>.json` (local path or object store URI)."""

    uri: str

    def _path(self, key: dg.AssetKey) -> "tuple[Any, str]":
        fs, root = filesystem_and_path(self.uri)
        return fs, posixpath.join(root, *[safe_segment(part, "asset key part") for part in key.path]) + ".json"

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        fs, path = self._path(context.asset_key)
        with atomic_object(fs, path) as temp_path, fs.open_output_stream(temp_path) as stream:
            stream.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def load_input(self, context: dg.InputContext) -> dict:
        fs, path = self._path(context.asset_key)
        if fs.get_file_info(path).type.name == "NotFound":
            raise FileNotFoundError(f"{context.asset_key.to_user_string()} has not been materialized ({path})")
        with fs.open_input_stream(path) as stream:
            return json.loads(stream.read())
