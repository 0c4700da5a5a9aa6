"""`python -m fleet_sim`: the simulated fleet from the command line.

Each subcommand registers its own parser and handler: `telemetry` writes the fleet's uploads,
`deploy` runs an edge bundle on the fleet (feedback and telemetry uploads), `evaluate` measures a
bundle against the simulator's true classes.
"""

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fleet_sim.deploy import (
    DEV_PUBLIC_KEY,
    SCENARIOS,
    DeviceRefusal,
    deploy_bundle,
    evaluate_bundle_on_fleet,
    next_telemetry_day,
)
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
    _add_deploy_command(subcommands)
    _add_evaluate_command(subcommands)
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
    parser.add_argument(
        "--landing",
        default=None,
        help="the landing zone: a folder or an s3:// URI, which devices upload to "
        "(default: $FLEETML_LANDING_ROOT, else <home>/landing)",
    )


def landing_root(args: argparse.Namespace) -> str | Path:
    """Where uploads go: `--landing`, else `$FLEETML_LANDING_ROOT` (as the platform reads it), else
    `<home>/landing`."""
    chosen = args.landing or os.environ.get("FLEETML_LANDING_ROOT")
    if chosen:
        return chosen if "://" in chosen else Path(chosen).resolve()
    return (args.home or default_home()) / LANDING_DIR


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
    started = time.perf_counter()
    summary = simulate_telemetry(
        landing_root(args),
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


def _add_bundle_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the commands that run a bundle on the fleet."""
    parser.add_argument("--bundle", type=Path, required=True, help="the edge bundle (.bundle.tar) to run")
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="none",
        help="none: the fleet as is; new_hardware_rev: new vehicles join on vg-r5 gateways; winter: "
        "every device in winter (default: none)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the fleet and its traffic (default: 7)")
    parser.add_argument(
        "--devices",
        type=_positive_int,
        default=70,
        help="devices in the existing fleet, the same devices as `telemetry` builds (default: 70)",
    )
    parser.add_argument(
        "--events-per-device-day",
        type=_non_negative_float,
        default=40.0,
        help="mean triggers per device per day (default: 40)",
    )
    parser.add_argument(
        "--public-key",
        type=Path,
        default=None,
        help=f"the public key the devices trust (default: <home>/{DEV_PUBLIC_KEY})",
    )
    _add_home_option(parser)


def _add_deploy_command(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "deploy",
        help="run an edge bundle on the fleet: feedback and telemetry uploads into the landing zone",
        description="Devices verify the bundle, score every event one window at a time, and upload: one "
        "feedback batch per hardware revision and day to <home>/landing/edge_feedback/, and unlabelled telemetry to "
        "<home>/landing/telemetry/. Safety managers review flagged events and spot-check the rest.",
    )
    parser.add_argument("--days", type=_positive_int, required=True, help="number of days")
    parser.add_argument(
        "--start",
        type=dt.date.fromisoformat,
        default=None,
        help="first day, YYYY-MM-DD (default: the day after the latest telemetry day in the landing zone, "
        "else today)",
    )
    _add_bundle_options(parser)
    parser.set_defaults(run=_run_deploy)


def _add_evaluate_command(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "evaluate",
        help="macro-F1 of an edge bundle on a fresh simulated day, against the true classes",
        description="Run the bundle as the devices do on a fresh day of the scenario's fleet (traffic never "
        "uploaded) and score its decisions against the simulator's true classes.",
    )
    parser.add_argument("--day", type=dt.date.fromisoformat, required=True, help="the day, YYYY-MM-DD")
    _add_bundle_options(parser)
    parser.set_defaults(run=_run_evaluate)


def _public_key_path(args: argparse.Namespace, home: Path) -> Path:
    return args.public_key if args.public_key is not None else home / DEV_PUBLIC_KEY


def _run_deploy(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    landing = landing_root(args)
    start = args.start or next_telemetry_day(landing)
    started = time.perf_counter()
    try:
        summary = deploy_bundle(
            args.bundle,
            _public_key_path(args, home),
            landing,
            start=start,
            days=args.days,
            scenario=args.scenario,
            seed=args.seed,
            devices=args.devices,
            events_per_device_day=args.events_per_device_day,
        )
    except DeviceRefusal as refusal:
        print(f"deploy: refused: {refusal}", file=sys.stderr)
        return 1
    elapsed_s = time.perf_counter() - started
    revisions = " ".join(f"{name}={count}" for name, count in summary.devices_by_revision.items())
    devices = sum(summary.devices_by_revision.values())
    last = start + dt.timedelta(days=args.days - 1)
    days = f"{args.days} day{'s' if args.days > 1 else ''}"
    print(
        f"deploy: {summary.model_version} (bundle {summary.bundle_sha256[:12]}) scenario {summary.scenario}, "
        f"{days} {start}..{last}, {devices} devices ({revisions}): "
        f"{len(summary.feedback_files)} feedback files, {len(summary.telemetry_files)} telemetry files, "
        f"{summary.events} events, {summary.reviewed_share:.0%} reviewed, predicted-vs-true accuracy "
        f"{summary.accuracy:.3f}, inference p50 {summary.inference_p50_ms:.3f} ms p99 "
        f"{summary.inference_p99_ms:.3f} ms, in {elapsed_s:.1f} s"
    )
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    try:
        evaluation = evaluate_bundle_on_fleet(
            args.bundle,
            _public_key_path(args, home),
            day=args.day,
            scenario=args.scenario,
            seed=args.seed,
            devices=args.devices,
            events_per_device_day=args.events_per_device_day,
        )
    except DeviceRefusal as refusal:
        print(f"evaluate: refused: {refusal}", file=sys.stderr)
        return 1
    revisions = " ".join(f"{name}={value:.3f}" for name, value in evaluation.by_revision.items())
    classes = " ".join(f"{name}={value:.3f}" for name, value in evaluation.per_class_f1.items())
    print(
        f"evaluate: {evaluation.model_version} (bundle {evaluation.bundle_sha256[:12]}) scenario "
        f"{evaluation.scenario}, {evaluation.day}, {evaluation.windows} windows: macro-F1 "
        f"{evaluation.macro_f1:.3f}; by revision {revisions}; per class {classes}"
    )
    return 0
