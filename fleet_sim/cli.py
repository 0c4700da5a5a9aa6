"""`python -m fleet_sim`: the simulated fleet from the command line.

Each subcommand registers its own parser and handler, so the fleet's later jobs (running edge
bundles on simulated devices) slot in beside `telemetry` without touching it.
"""

import argparse
import datetime as dt
import os
import time
from collections.abc import Sequence
from pathlib import Path

from fleet_sim.events import SEASONS
from fleet_sim.fleet import DEFAULT_REVISIONS, HARDWARE_REVISIONS, check_revisions
from fleet_sim.telemetry import simulate_telemetry

LANDING_DIR = "landing"


def default_home() -> Path:
    """`FLEETML_HOME` if set, else `.fleetml` in the current directory, as the platform resolves it."""
    return Path(os.environ.get("FLEETML_HOME", ".fleetml")).resolve()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fleet_sim",
        description="A deterministic simulated fleet that writes uploads into the fleetml landing zone.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_telemetry_command(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return args.run(args)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _revisions(text: str) -> tuple[str, ...]:
    revisions = tuple(name.strip() for name in text.split(",") if name.strip())
    try:
        check_revisions(revisions)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return revisions


def _add_home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="fleetml home; the landing zone is <home>/landing (default: $FLEETML_HOME, else ./.fleetml)",
    )


def _add_telemetry_command(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "telemetry",
        help="write telemetry uploads (one Parquet file per device per day) into the landing zone",
        description="Simulate the fleet's harsh-event telemetry and write it to <home>/landing/telemetry/.",
    )
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=_positive_int, required=True, help="number of days")
    parser.add_argument("--devices", type=_positive_int, required=True, help="number of devices in the fleet")
    parser.add_argument("--seed", type=int, required=True, help="seed: the same seed writes the same bytes")
    parser.add_argument(
        "--events-per-device-day",
        type=_non_negative_float,
        default=40.0,
        help="mean triggers per device per day (default: 40)",
    )
    parser.add_argument(
        "--season", choices=SEASONS, default="default", help="winter adds rough-road triggers and vibration"
    )
    parser.add_argument(
        "--revisions",
        type=_revisions,
        default=DEFAULT_REVISIONS,
        help=f"comma-separated hardware revisions to fit (default: {','.join(DEFAULT_REVISIONS)}; "
        f"known: {','.join(HARDWARE_REVISIONS)})",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only for long runs)",
    )
    _add_home_option(parser)
    parser.set_defaults(run=_run_telemetry)


def _run_telemetry(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    started = time.perf_counter()
    summary = simulate_telemetry(
        home / LANDING_DIR,
        start=args.start,
        days=args.days,
        devices=args.devices,
        seed=args.seed,
        events_per_device_day=args.events_per_device_day,
        revisions=args.revisions,
        season=args.season,
        progress=args.progress,
    )
    elapsed_s = time.perf_counter() - started
    classes = " ".join(f"{name}={count}" for name, count in summary.class_counts.items())
    print(
        f"telemetry: {summary.files} files, {summary.windows} windows ({summary.labelled} labelled) "
        f"to {summary.telemetry_dir} in {elapsed_s:.1f} s ({summary.windows / max(elapsed_s, 1e-9):.0f} "
        f"windows/s); true classes: {classes}"
    )
    return 0
