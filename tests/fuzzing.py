"""How hard the fuzz tests try: a short, deterministic run in `make test`, minutes of random search in
`make fuzz` (`FLEETML_FUZZ_SCALE=N` multiplies every fuzz test's examples and draws them afresh)."""

import os

from hypothesis import HealthCheck, settings

FUZZ_SCALE = float(os.environ.get("FLEETML_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for a fuzz test that runs `examples` inputs in `make test`."""
    return settings(
        max_examples=max(1, int(examples * FUZZ_SCALE)),
        deadline=None,
        derandomize=FUZZ_SCALE == 1,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
