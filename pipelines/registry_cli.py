"""Inspect and move model aliases from a shell: `python -m pipelines.registry_cli --help`.

    list MODEL                                        versions, key metrics, and the aliases on each
    history MODEL [--alias A]                         alias changes, oldest first
    promote MODEL VERSION [--alias champion] --reason TEXT
    rollback MODEL [--alias champion] [--to VERSION] --reason TEXT

VERSION is a version id or a unique prefix of at least 8 hex characters. The registry is `--registry
URI`, else `$FLEETML_REGISTRY_URI`, else `$FLEETML_HOME/registry` (`FLEETML_HOME` defaults to
`.fleetml`). Changes are recorded with the actor `$USER` (or `cli`). Errors print one line on stderr
and exit 1.
"""

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resources.model_registry import HistoryEvent, ModelRegistry

MAX_METRICS_SHOWN = 4


def default_registry_uri() -> str:
    """`$FLEETML_REGISTRY_URI`, else `$FLEETML_HOME/registry` with `FLEETML_HOME` defaulting to `.fleetml`."""
    uri = os.environ.get("FLEETML_REGISTRY_URI")
    if uri:
        return uri
    return str(Path(os.environ.get("FLEETML_HOME", ".fleetml")).resolve() / "registry")


def _actor() -> str:
    return os.environ.get("USER") or "cli"


def _short(version_id: str | None) -> str:
    return "-" if version_id is None else version_id[:12]


def _format_metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _metrics(metadata: Any) -> str:
    metrics = metadata.get("metrics") if hasattr(metadata, "get") else None
    if not isinstance(metrics, dict) or not metrics:
        return "-"
    shown = [
        f"{key}={_format_metric(value)}"
        for key, value in list(metrics.items())[:MAX_METRICS_SHOWN]
        if isinstance(value, (int, float, str, bool))
    ]
    more = len(metrics) - MAX_METRICS_SHOWN
    return " ".join(shown) + (f" (+{more})" if more > 0 else "") if shown else "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )


def _timestamp(value: "dt.datetime") -> str:
    if value.utcoffset() is None:
        return value.isoformat()
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _list(registry: "ModelRegistry", args: argparse.Namespace) -> str:
    versions = registry.versions(args.model)
    on_version: dict[str, list[str]] = {}
    for alias, version_id in sorted(registry.aliases(args.model).items()):
        on_version.setdefault(version_id, []).append(alias)
    rows = [["SEQ", "VERSION", "CREATED (UTC)", "METRICS", "ALIASES"]]
    for version in versions:
        rows.append(
            [
                str(version.sequence),
                version.short_id,
                _timestamp(version.created_at),
                _metrics(version.metadata),
                ",".join(on_version.get(version.version_id, [])) or "-",
            ]
        )
    return _table(rows)


def _history(registry: "ModelRegistry", args: argparse.Namespace) -> str:
    events = registry.history(args.model, args.alias)
    if not events:
        return f"{args.model}: no alias changes" + (f" for {args.alias!r}" if args.alias else "")
    rows = [["AT (UTC)", "ALIAS", "FROM", "TO", "ACTION", "ACTOR", "RUN", "REASON"]]
    for event in events:
        rows.append(
            [
                _timestamp(event.at),
                event.alias,
                _short(event.previous_version_id),
                _short(event.version_id),
                event.action,
                event.actor,
                event.run_id or "-",
                event.reason,
            ]
        )
    return _table(rows)


def _describe(event: "HistoryEvent", model: str, recorded: bool) -> str:
    if not recorded:
        return f"{model}: {event.alias} already points at {_short(event.version_id)} (nothing recorded)"
    return f"{model}: {event.alias} {_short(event.previous_version_id)} -> {_short(event.version_id)}"


def _promote(registry: "ModelRegistry", args: argparse.Namespace) -> str:
    before = len(registry.history(args.model))
    event = registry.set_alias(args.model, args.alias, args.version, _actor(), args.reason, args.run_id)
    return _describe(event, args.model, len(registry.history(args.model)) > before)


def _rollback(registry: "ModelRegistry", args: argparse.Namespace) -> str:
    before = len(registry.history(args.model))
    event = registry.rollback(
        args.model, args.alias, args.to, actor=_actor(), reason=args.reason, run_id=args.run_id
    )
    return _describe(event, args.model, len(registry.history(args.model)) > before)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.registry_cli", description="fleetml model registry: versions and aliases"
    )
    registry_help = (
        "registry root: a path or s3:// URI (default: $FLEETML_REGISTRY_URI or $FLEETML_HOME/registry)"
    )
    parser.add_argument("--registry", help=registry_help)
    # Also accepted after the subcommand; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", default=argparse.SUPPRESS, help=registry_help)
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser(
        "list", parents=[common], help="versions of a model, with metrics and aliases"
    )
    listing.add_argument("model")
    listing.set_defaults(handler=_list)

    history = commands.add_parser("history", parents=[common], help="alias changes, oldest first")
    history.add_argument("model")
    history.add_argument("--alias", help="only this alias")
    history.set_defaults(handler=_history)

    promote = commands.add_parser("promote", parents=[common], help="point an alias at a version")
    promote.add_argument("model")
    promote.add_argument("version", help="version id or unique prefix (>= 8 hex characters)")
    promote.add_argument("--alias", default="champion")
    promote.add_argument("--reason", required=True)
    promote.add_argument("--run-id", help="the run that motivated the change, if any")
    promote.set_defaults(handler=_promote)

    rollback = commands.add_parser(
        "rollback",
        parents=[common],
        help="point an alias back (default: where it was before its latest change)",
    )
    rollback.add_argument("model")
    rollback.add_argument("--alias", default="champion")
    rollback.add_argument("--to", help="version id or unique prefix to roll back to")
    rollback.add_argument("--reason", required=True)
    rollback.add_argument("--run-id", help="the run that motivated the change, if any")
    rollback.set_defaults(handler=_rollback)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported here so that `--help` and argument errors answer without importing the registry module.
    from resources.model_registry import ModelRegistry, RegistryError

    registry = ModelRegistry(args.registry or default_registry_uri())
    try:
        print(args.handler(registry, args))
    except (RegistryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
