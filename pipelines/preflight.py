"""Start-up checks of the production environment: every problem named by the variable that fixes it.

A wrong S3 secret or Postgres password would otherwise surface deep inside the first run that touches
the store (or as a bare driver error from the Dagster instance). The code location runs these checks
when it loads with `FLEETML_ENV=prod`, so a code server, a run worker or `dagster asset materialize`
refuses to start with one clear line per problem. `python -m pipelines.preflight` runs them alone.

Set `FLEETML_PREFLIGHT=skip` only where no store is meant to be reached (rendering manifests offline).
"""

import os
import sys
from collections.abc import Mapping

from resources.filesystems import S3Settings, StorageAccessError, check_access

STORE_VARIABLES = (
    "FLEETML_LAKE_URI",
    "FLEETML_LANDING_ROOT",
    "FLEETML_QUARANTINE_ROOT",
    "FLEETML_REGISTRY_URI",
    "FLEETML_ARTIFACTS_URI",
    "FLEETML_REFS_URI",
    "FLEETML_ALERT_LOG",
)
POSTGRES_VARIABLES = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


class PreflightFailed(RuntimeError):
    """The production environment is not usable; the message lists every problem found."""


def store_problems(environment: Mapping[str, str]) -> list[str]:
    problems = [f"{name} is not set" for name in STORE_VARIABLES if not environment.get(name)]
    checked_buckets: set[str] = set()
    for name in STORE_VARIABLES:
        uri = environment.get(name, "")
        bucket = uri.removeprefix("s3://").split("/", 1)[0] if uri.startswith("s3://") else None
        if bucket is None or bucket in checked_buckets:
            continue
        checked_buckets.add(bucket)
        try:
            check_access(uri, S3Settings.from_environment(environment))
        except StorageAccessError as error:
            problems.append(f"{name}: {error}")
    return problems


def postgres_problems(environment: Mapping[str, str]) -> list[str]:
    """Connect to the instance's PostgreSQL the way dagster-postgres will (skipped when not configured)."""
    if not environment.get("DAGSTER_PG_HOST"):
        return []
    missing = [name for name in POSTGRES_VARIABLES if not environment.get(name)]
    if missing:
        return [f"{name} is not set" for name in missing]
    import psycopg2

    try:
        psycopg2.connect(
            host=environment["DAGSTER_PG_HOST"],
            port=int(environment["DAGSTER_PG_PORT"]),
            user=environment["DAGSTER_PG_USER"],
            password=environment["DAGSTER_PG_PASSWORD"],
            dbname=environment["DAGSTER_PG_DB"],
            connect_timeout=5,
        ).close()
    except psycopg2.OperationalError as error:
        detail = " ".join(str(error).split())
        if "password authentication failed" in detail:
            return [f"DAGSTER_PG_PASSWORD: PostgreSQL refused user {environment['DAGSTER_PG_USER']!r}: {detail}"]
        where = f"{environment['DAGSTER_PG_HOST']}:{environment['DAGSTER_PG_PORT']}"
        return [f"DAGSTER_PG_HOST / DAGSTER_PG_PORT: PostgreSQL at {where} cannot be reached: {detail}"]
    return []


def check_production_environment(environment: Mapping[str, str] | None = None) -> None:
    """Raise `PreflightFailed` listing every problem of the stores and the instance database."""
    environment = os.environ if environment is None else environment
    if environment.get("FLEETML_PREFLIGHT") == "skip":
        return
    problems = store_problems(environment) + postgres_problems(environment)
    if problems:
        raise PreflightFailed("fleetml production preflight failed:\n  " + "\n  ".join(problems))


def main() -> int:
    try:
        check_production_environment()
    except PreflightFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    print("fleetml production preflight: stores and instance database reachable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
