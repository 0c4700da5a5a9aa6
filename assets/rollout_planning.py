"""Staged over-the-air rollout of an edge bundle, as data (no Dagster here).

Fleet OTA practice: a small canary first, then widening waves, each held until its gate passes on
live feedback; every stage names the bundle to roll back to. Devices are assigned to waves by a
stable hash, so the canary devices of a revision stay the same across replans and a device never
jumps back to an earlier wave.
"""

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

DEFAULT_STAGE_SHARES: tuple[float, ...] = (0.01, 0.10, 0.50, 1.00)
STAGE_NAMES: tuple[str, ...] = ("canary", "early", "half", "full")


@dataclass(frozen=True)
class StageGate:
    """What live feedback from a stage must show before the next stage starts."""

    max_false_positive_rate: float
    """Share of events the model flagged that reviewers dismissed as benign."""
    max_latency_p99_ms: float
    min_reviewed_events: int
    min_soak_hours: int


@dataclass(frozen=True)
class RolloutStage:
    name: str
    hardware_rev: str
    cumulative_share: float
    devices: tuple[str, ...]
    """Devices newly reached in this stage."""
    gate: StageGate


def _rollout_order(device_id: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{device_id}".encode()).hexdigest()


def plan_rollout(
    devices_by_revision: Mapping[str, Sequence[str]],
    eligible_revisions: Sequence[str],
    latency_budget_ms: Mapping[str, float],
    max_false_positive_rate: float,
    min_reviewed_events: int = 50,
    min_soak_hours: int = 24,
    stage_shares: Sequence[float] = DEFAULT_STAGE_SHARES,
    salt: str = "fleetml-rollout",
) -> list[RolloutStage]:
    """Stages per eligible hardware revision (one whose device profile the bundle passed).

    Each stage reaches at least one new device while any remain, so a 1% canary of a small fleet is
    still one real device. Revisions that are not eligible get no stage at all.
    """
    if list(stage_shares) != sorted(stage_shares) or stage_shares[-1] != 1.0:
        raise ValueError("stage shares must increase and end at 1.0")
    stages: list[RolloutStage] = []
    for revision in sorted(eligible_revisions):
        ordered = sorted(set(devices_by_revision.get(revision, ())), key=lambda d: _rollout_order(d, salt))
        reached = 0
        gate = StageGate(max_false_positive_rate, latency_budget_ms[revision], min_reviewed_events, min_soak_hours)
        for index, share in enumerate(stage_shares):
            target = len(ordered) if share >= 1.0 else max(reached + 1, math.ceil(share * len(ordered)))
            target = min(target, len(ordered))
            name = STAGE_NAMES[index] if index < len(STAGE_NAMES) else f"stage-{index + 1}"
            stages.append(RolloutStage(name, revision, share, tuple(ordered[reached:target]), gate))
            reached = target
    return stages


def stages_as_json(stages: Sequence[RolloutStage]) -> list[dict]:
    return [asdict(stage) for stage in stages]
