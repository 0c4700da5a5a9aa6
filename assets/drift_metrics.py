"""Feature drift between a reference window and a current window, measured by evidently.

A pure function of two pandas frames and a list of numerical feature columns, shared by the drift
asset, its checks and the tests. No Dagster here; evidently and pandas are imported inside the
function because importing evidently costs about 6 s, which a code location must not pay at load.

The stattest and both thresholds are always passed to evidently explicitly. Left to itself, evidently
picks the test from the sample size and the column's cardinality (p-value tests such as K-S, or a
Z-test for a 0/1 column, under 1000 rows; distances above), so the same shift could be judged by a
different rule from one window to the next. The default, the normalized Wasserstein distance
("wasserstein": the Wasserstein-1 distance divided by the reference column's standard deviation,
floored at 0.001), is a distance in reference standard deviations, so its verdict does not drift with
the window size the way a p-value does: a column shifted by one standard deviation scores about 1.0.
Its sampling noise still shrinks with the window, though: for two draws of one normal distribution
(simulated, 400 pairs) the score's median and 95th percentile are 0.11 and 0.19 at 300 vs 200 rows
(60% of unshifted columns reach 0.1), 0.065 and 0.12 at 1000 vs 500, 0.04 and 0.08 at 2000 vs 1500,
0.03 and 0.05 at 5000 vs 3000. The default threshold of 0.1 suits windows of a couple of thousand
rows; a window of a few hundred rows needs a higher threshold (about 0.2), or it flags noise.

Every figure in `DriftResult` is read from evidently's own result (`Snapshot.dict()` of a report
of the metrics that `DataDriftPreset` itself expands to, with their default tests), never recomputed
here:

- per feature, the `ValueDrift` metric (`config.type == "evidently:metric_v2:ValueDrift"`):
  `score` is its `value`, `threshold` its `config.threshold`, the method its `config.method`, and
  `drifted` is its test's `status == "FAIL"` (evidently's `drift_detected`: score >= threshold for a
  distance, p-value < threshold for a p-value test);
- for the dataset, the `DriftedColumnsCount` metric (`"evidently:metric_v2:DriftedColumnsCount"`):
  `drifted_share` is `value.share`, `drift_share_threshold` is `config.drift_share`, and
  `dataset_drifted` is its "less than drift_share" test's `status == "FAIL"`, i.e.
  share >= drift_share.

evidently computes the per-feature metrics and the dataset count through two separate code paths; the
number of drifted features and the count are checked to agree.

The report lists those metrics itself rather than through `DataDriftPreset`, because the preset also
renders evidently's legacy drift table, which re-measures every column and draws its charts a second
time: half of the report's cost (1.3 s instead of 2.3 s for 41 features) for the same figures and the
same per-feature charts.
"""

import math
import numbers
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_METHOD = "wasserstein"
DEFAULT_THRESHOLD = 0.1
DEFAULT_DRIFT_SHARE = 0.3

# evidently names each metric, widget and test of a report with a fresh random UUID (dashed or 32 hex
# digits): quoted in the report's JSON, and after `metric_` in the script that draws it.
_REPORT_ID = re.compile(
    r'(?<=")(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?=")'
    r"|(?<=metric_)[0-9a-f]{32}\b"
)
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"


@dataclass(frozen=True)
class FeatureDrift:
    """evidently's drift verdict for one feature: its score under the method of the run (a distance for
    "wasserstein", a p-value for p-value tests), the threshold it was compared with, and whether the
    feature drifted."""

    feature: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """The drift of a current window against a reference window, feature by feature and as a whole.

    `features` follow the order of the requested columns. `dataset_drifted` is True when
    `drifted_share` (the share of drifted features) reaches `drift_share_threshold`. `html` is
    evidently's standalone HTML report (about 6.5 MB for 41 features, scripts inlined), left out of the
    repr.
    """

    method: str
    threshold: float
    drift_share_threshold: float
    features: tuple[FeatureDrift, ...]
    drifted_share: float
    dataset_drifted: bool
    reference_rows: int
    current_rows: int
    html: str = field(repr=False)

    def top_drifted(self, n: int) -> tuple[FeatureDrift, ...]:
        """The `n` features with the highest score, highest first (ties by feature name).

        For a distance method such as "wasserstein" the highest scores are the most drifted features;
        for a p-value method they are the least drifted.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return tuple(sorted(self.features, key=lambda f: (-f.score, f.feature))[:n])


def measure_drift(
    reference: "pd.DataFrame",
    current: "pd.DataFrame",
    columns: Sequence[str],
    method: str = DEFAULT_METHOD,
    threshold: float = DEFAULT_THRESHOLD,
    drift_share: float = DEFAULT_DRIFT_SHARE,
) -> DriftResult:
    """Measure the drift of `current` against `reference` on exactly `columns` (numerical) with
    evidently's data-drift metrics, the stattest `method`, the per-feature `threshold` and the
    dataset-drift share `drift_share` all fixed explicitly, whatever the sample size.

    `method` is any evidently stattest that accepts numerical columns ("wasserstein", "psi",
    "kl_div", "jensenshannon", "hellinger", or p-value tests such as "ks"); evidently raises a
    ValueError for an unknown or non-numerical one. NaN values are dropped column by column by
    evidently. A constant reference column is normed by a floor of 0.001 in place of its zero standard
    deviation: it scores 0 while the current column holds the same constant, and very high as soon as
    it moves.

    Raises ValueError for an empty column list or duplicate columns, a column missing from either
    frame, a non-numerical or boolean column, a column without any finite value in either frame, an
    empty frame, a threshold that is not a positive finite number, or a drift share outside (0, 1].
    Raises RuntimeError if evidently's output does not have the structure read here.
    """
    _validate(reference, current, columns, threshold, drift_share)
    selected = list(columns)

    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    # An explicit definition keeps evidently from inferring a low-cardinality float column (a 0/1
    # flag) as categorical, which a numerical method would then refuse.
    definition = DataDefinition(numerical_columns=selected)
    report = Report(
        [
            DriftedColumnsCount(
                columns=selected, method=method, threshold=threshold, drift_share=drift_share
            ),
            *(ValueDrift(column=column, method=method, threshold=threshold) for column in selected),
        ],
        include_tests=True,
    )
    with warnings.catch_warnings():
        # evidently also computes a feature correlation matrix for the report; a constant column makes
        # numpy divide by a zero standard deviation there. That matrix plays no part in any verdict.
        warnings.filterwarnings(
            "ignore",
            message="invalid value encountered in divide",
            category=RuntimeWarning,
            module=r"numpy\.lib\._function_base_impl",
        )
        snapshot = report.run(
            current_data=Dataset.from_pandas(
                current.loc[:, selected].reset_index(drop=True), data_definition=definition
            ),
            reference_data=Dataset.from_pandas(
                reference.loc[:, selected].reset_index(drop=True), data_definition=definition
            ),
        )
        html = stable_report_ids(snapshot.get_html_str(as_iframe=False))

    return _read_snapshot(
        snapshot.dict(),
        selected,
        html=html,
        reference_rows=len(reference),
        current_rows=len(current),
    )


def stable_report_ids(html: str) -> str:
    """`html` with evidently's random element ids renumbered in order of first appearance, in the
    shape each had (a valid UUID stays one), so that the same data gives the same report bytes."""
    numbered: dict[str, str] = {}

    def renumber(match: re.Match[str]) -> str:
        original = match.group()
        if original not in numbered:
            n = len(numbered)
            numbered[original] = f"{n:08x}-0000-7000-8000-000000000000" if "-" in original else f"{n:032x}"
        return numbered[original]

    return _REPORT_ID.sub(renumber, html)


def _validate(
    reference: "pd.DataFrame",
    current: "pd.DataFrame",
    columns: Sequence[str],
    threshold: float,
    drift_share: float,
) -> None:
    import numpy as np
    import pandas as pd

    if isinstance(columns, str):
        raise ValueError(f"columns must be a sequence of column names, not the string {columns!r}")
    selected = list(columns)
    if not selected:
        raise ValueError("columns is empty: name at least one feature column to measure drift on")
    duplicates = sorted({c for c in selected if selected.count(c) > 1})
    if duplicates:
        raise ValueError(f"columns contains duplicates: {duplicates}")
    if not (isinstance(threshold, numbers.Real) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive finite number, got {threshold!r}")
    if not (isinstance(drift_share, numbers.Real) and 0 < drift_share <= 1):
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share!r}")

    for name, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
        missing = [c for c in selected if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} frame lacks columns {missing}")
        if len(frame) == 0:
            raise ValueError(f"{name} frame is empty: no rows to measure drift on")
        not_numerical = [
            c
            for c in selected
            if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
        ]
        if not_numerical:
            raise ValueError(
                f"{name} columns {not_numerical} are not numerical (bool and object columns are "
                "refused: cast them to float first)"
            )
        no_finite = [
            c for c in selected if not np.isfinite(frame[c].to_numpy(dtype=np.float64)).any()
        ]
        if no_finite:
            raise ValueError(f"{name} columns {no_finite} hold no finite value")


def _read_snapshot(
    payload: dict[str, Any],
    columns: list[str],
    html: str,
    reference_rows: int,
    current_rows: int,
) -> DriftResult:
    """Build a DriftResult from `Snapshot.dict()` of the drift metrics' run (see the module docstring
    for which figure comes from where)."""
    from evidently.legacy.tests.base_test import TestStatus

    tests_by_metric: dict[str, list[dict[str, Any]]] = {}
    for test in payload["tests"]:
        tests_by_metric.setdefault(test["metric_config"]["metric_id"], []).append(test)

    def failed(metric: dict[str, Any]) -> bool:
        tests = tests_by_metric.get(metric["id"], [])
        if len(tests) != 1:
            raise RuntimeError(
                f"expected one evidently test for {metric['metric_name']}, found {len(tests)}"
            )
        status = TestStatus(tests[0]["status"])
        if status not in (TestStatus.SUCCESS, TestStatus.FAIL):
            raise RuntimeError(
                f"evidently could not decide {metric['metric_name']}: status {status.value}, "
                f"{tests[0].get('description')}"
            )
        return status is TestStatus.FAIL

    by_feature: dict[str, FeatureDrift] = {}
    methods: set[str] = set()
    counts: list[dict[str, Any]] = []
    for metric in payload["metrics"]:
        config = metric.get("config", {})
        if config.get("type") == _VALUE_DRIFT:
            methods.add(config["method"])
            by_feature[config["column"]] = FeatureDrift(
                feature=config["column"],
                score=float(metric["value"]),
                threshold=float(config["threshold"]),
                drifted=failed(metric),
            )
        elif config.get("type") == _DRIFTED_COLUMNS_COUNT:
            counts.append(metric)

    if sorted(by_feature) != sorted(columns) or len(counts) != 1:
        raise RuntimeError(
            f"evidently's result has ValueDrift for {sorted(by_feature)} and {len(counts)} "
            f"DriftedColumnsCount metrics; expected ValueDrift for {sorted(columns)} and one count"
        )
    if len(methods) != 1:
        raise RuntimeError(f"evidently used several methods across features: {sorted(methods)}")
    thresholds = {f.threshold for f in by_feature.values()}
    if len(thresholds) != 1:
        raise RuntimeError(f"evidently used several thresholds across features: {sorted(thresholds)}")

    count = counts[0]
    features = tuple(by_feature[c] for c in columns)
    drifted_count = int(count["value"]["count"])
    if drifted_count != sum(f.drifted for f in features):
        raise RuntimeError(
            f"evidently's DriftedColumnsCount ({drifted_count}) disagrees with its per-feature "
            f"verdicts ({sum(f.drifted for f in features)} drifted)"
        )

    return DriftResult(
        method=methods.pop(),
        threshold=thresholds.pop(),
        drift_share_threshold=float(count["config"]["drift_share"]),
        features=features,
        drifted_share=float(count["value"]["share"]),
        dataset_drifted=failed(count),
        reference_rows=reference_rows,
        current_rows=current_rows,
        html=html,
    )
