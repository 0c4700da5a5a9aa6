"""Read what a model asset handed its children, and fetch the artifact it points at, on any store.

    python -m pipelines.asset_refs_cli show harsh_event/edge_bundle
    python -m pipelines.asset_refs_cli fetch harsh_event/edge_bundle --output bundle.tar

Model assets pass their children a JSON reference (URI, sha256, version, figures) through the
`ref_io_manager`. The references live under `$FLEETML_REFS_URI` (production: `s3://...`), else
`$FLEETML_HOME/refs`. `fetch` downloads the referenced artifact and refuses it unless its bytes still
have the sha256 the reference and its content address record, so CI verifies what the lineage built,
wherever it is stored. Errors print one line on stderr and exit 1.
"""

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from resources.filesystems import join_uri, read_bytes


def default_refs_uri() -> str:
    """`$FLEETML_REFS_URI`, else `$FLEETML_HOME/refs` with `FLEETML_HOME` defaulting to `.fleetml`."""
    return os.environ.get("FLEETML_REFS_URI") or str(Path(os.environ.get("FLEETML_HOME", ".fleetml")).resolve() / "refs")


def read_reference(asset_key: str, refs_uri: str | None = None) -> dict:
    """The JSON reference the asset `asset_key` (`a/b` path form) last materialized."""
    parts = [part for part in asset_key.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"not an asset key: {asset_key!r}")
    uri = join_uri(refs_uri or default_refs_uri(), *parts[:-1], f"{parts[-1]}.json")
    try:
        return json.loads(read_bytes(uri))
    except FileNotFoundError:
        raise LookupError(f"{asset_key} has not been materialized (no {uri})") from None


def fetch_artifact(reference: dict, output: Path) -> str:
    """Write the artifact `reference["uri"]` to `output` after checking its sha256; return the hash."""
    data = read_bytes(reference["uri"])
    sha256 = hashlib.sha256(data).hexdigest()
    if reference.get("sha256") and sha256 != reference["sha256"]:
        raise ValueError(f"{reference['uri']} has sha256 {sha256[:12]}, its reference says {reference['sha256'][:12]}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    return sha256


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.asset_refs_cli", description=__doc__.splitlines()[0])
    parser.add_argument("--refs", default=None, help="references root (default: $FLEETML_REFS_URI, else $FLEETML_HOME/refs)")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print an asset's reference as JSON")
    show.add_argument("asset_key")
    fetch = commands.add_parser("fetch", help="download the artifact an asset's reference points at")
    fetch.add_argument("asset_key")
    fetch.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        reference = read_reference(args.asset_key, args.refs)
        if args.command == "show":
            print(json.dumps(reference, indent=2, sort_keys=True))
            return 0
        sha256 = fetch_artifact(reference, args.output)
    except (LookupError, ValueError, KeyError, OSError) as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
    print(f"{args.output} ({sha256[:16]}) from {reference['uri']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
