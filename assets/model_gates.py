"""Blessing a candidate harsh-event model, TFX-style: absolute floors, then no regression on slices.

A candidate is blessed when it clears the absolute floors (macro-F1, per-class recall) and, where a
champion exists, loses no more than a tolerance of macro-F1 against it on any slice with enough
support. Each unmet gate is a `GateFailure` whose one-line message is what a blocking asset check
reports. Pure functions over the dicts of `assets.evaluation_metrics`; no Dagster.
"""

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GateSpec:
    """What a candidate must meet to be blessed.

    `min_recall` maps class names to recall floors, e.g. {"collision": 0.8}. `max_slice_regression`
    is the macro-F1 a slice may lose against the champion; slices with fewer than `min_slice_support`
    rows in the candidate's evaluation are too noisy to hold against it.
    """

    min_macro_f1: float
    min_recall: Mapping[str, float]
    slice_columns: tuple[str, ...]
    max_slice_regression: float
    min_slice_support: int

    def __post_init__(self) -> None:
        recall_floors = {f"min_recall[{name}]": floor for name, floor in self.min_recall.items()}
        for name, floor in {"min_macro_f1": self.min_macro_f1, **recall_floors}.items():
            if not 0.0 <= floor <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {floor}")
        if self.max_slice_regression < 0.0:
            raise ValueError(f"max_slice_regression must be >= 0, got {self.max_slice_regression}")
        if self.min_slice_support < 1:
            raise ValueError(f"min_slice_support must be >= 1, got {self.min_slice_support}")
        # Copies, so the spec does not change when the dict or list it was built from does; a plain dict
        # keeps it picklable and `dataclasses.asdict`-able.
        object.__setattr__(self, "min_recall", dict(self.min_recall))
        object.__setattr__(self, "slice_columns", tuple(self.slice_columns))


@dataclass(frozen=True)
class GateFailure:
    """One unmet gate: `figure` measured `value` against `limit`, missing it by `shortfall` (> 0)."""

    gate: str
    figure: str
    value: float
    limit: float
    shortfall: float
    message: str


def absolute_gate_failures(metrics: dict, spec: GateSpec) -> list[GateFailure]:
    """Failures of the macro-F1 floor and the per-class recall floors, given the candidate's
    `classification_metrics`. A floor on a class without evaluation rows fails: it cannot be shown met.
    Raises ValueError for a floor on a class the model does not have."""
    failures = []
    macro_f1 = metrics["macro_f1"]
    if macro_f1 < spec.min_macro_f1:
        failures.append(_below_floor("macro_f1_floor", "macro_f1", "macro-F1", macro_f1, spec.min_macro_f1))
    for name, floor in spec.min_recall.items():
        if name not in metrics["per_class"]:
            classes = tuple(metrics["per_class"])
            raise ValueError(f"recall floor set for {name!r}, which is not a class of the model {classes}")
        figures = metrics["per_class"][name]
        if figures["support"] == 0:
            message = f"recall of {name} cannot be checked: the evaluation set has no {name} rows"
            failures.append(GateFailure("recall_floor", f"recall:{name}", 0.0, floor, floor, message))
        elif figures["recall"] < floor:
            label = f"recall of {name}"
            failures.append(_below_floor("recall_floor", f"recall:{name}", label, figures["recall"], floor))
    return failures


def slice_regression_failures(
    candidate_slices: dict[str, dict[str, dict]],
    champion_slices: dict[str, dict[str, dict]] | None,
    spec: GateSpec,
) -> list[GateFailure]:
    """Slices where the candidate's macro-F1 falls more than `spec.max_slice_regression` below the
    champion's, given both models' `slice_metrics` on the same evaluation set.

    Only slices of `spec.slice_columns` with at least `spec.min_slice_support` candidate rows and
    present for both models are compared. With no champion (the first model) there is nothing to
    regress from and the result is empty. Raises ValueError when the candidate lacks a slice column,
    which would otherwise pass the gate silently.
    """
    if champion_slices is None:
        return []
    failures = []
    for column in spec.slice_columns:
        if column not in candidate_slices:
            raise ValueError(f"the candidate's slice metrics have no column {column!r}")
        champion_column = champion_slices.get(column, {})
        for value, candidate in candidate_slices[column].items():
            champion = champion_column.get(value)
            if champion is None or candidate["support"] < spec.min_slice_support:
                continue
            if candidate["macro_f1"] < champion["macro_f1"] - spec.max_slice_regression:
                failures.append(_slice_regression(f"{column}={value}", candidate, champion, spec))
    return failures


def _below_floor(gate: str, figure: str, label: str, value: float, floor: float) -> GateFailure:
    d = _decimals(value, floor)
    shortfall = floor - value
    message = f"{label} {value:.{d}f} is {shortfall:.{d}f} below the floor {floor:.{d}f}"
    return GateFailure(gate, figure, value, floor, shortfall, message)


def _slice_regression(slice_name: str, candidate: dict, champion: dict, spec: GateSpec) -> GateFailure:
    value = candidate["macro_f1"]
    limit = champion["macro_f1"] - spec.max_slice_regression
    d = _decimals(value, limit)
    shortfall = limit - value
    message = (
        f"macro-F1 on {slice_name} {value:.{d}f} vs champion {champion['macro_f1']:.{d}f}: "
        f"{shortfall:.{d}f} beyond the {spec.max_slice_regression:.{d}f} tolerance"
    )
    return GateFailure("slice_regression", f"macro_f1[{slice_name}]", value, limit, shortfall, message)


def _decimals(value: float, limit: float) -> int:
    """The fewest decimals (2 to 4) that print a failing value and its limit differently."""
    for decimals in (2, 3):
        if f"{value:.{decimals}f}" != f"{limit:.{decimals}f}":
            return decimals
    return 4
