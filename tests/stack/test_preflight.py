"""A wrong S3 secret or PostgreSQL password stops the production code location at start-up, with the
variable to fix named, instead of failing deep inside a run."""

import os
import subprocess
import sys

import pytest

from pipelines.preflight import PreflightFailed, check_production_environment

pytestmark = [pytest.mark.stack, pytest.mark.slow]  # real servers take seconds to start


def test_the_stack_passes_the_preflight(local_stack):
    check_production_environment(local_stack.environment())


def test_a_wrong_s3_secret_is_named(local_stack):
    environment = {**local_stack.environment(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    with pytest.raises(PreflightFailed) as failure:
        check_production_environment(environment)
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in str(failure.value)
    assert "refused" in str(failure.value)


def test_a_wrong_postgres_password_is_named(local_stack):
    environment = {**local_stack.environment(), "DAGSTER_PG_PASSWORD": "not-the-password"}
    with pytest.raises(PreflightFailed) as failure:
        check_production_environment(environment)
    assert "DAGSTER_PG_PASSWORD: PostgreSQL refused user" in str(failure.value)


def test_the_code_location_refuses_to_load_with_a_wrong_secret(local_stack):
    environment = {**os.environ, **local_stack.environment(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    completed = subprocess.run(
        [sys.executable, "-c", "import pipelines.definitions"], env=environment, capture_output=True, text=True, check=False
    )
    assert completed.returncode != 0
    last_line = completed.stderr.strip().splitlines()[-1]
    assert "AWS_SECRET_ACCESS_KEY" in completed.stderr and "preflight failed" in completed.stderr, last_line
