"""Evaluation of a harsh-event classifier: decision thresholds, metrics, slices, intervals and figures.

Pure functions of labels and class probabilities, shared by the evaluation asset, its checks and the
tests. Conventions: labels are integer indices into `class_names`; `proba` is a float [N, C] array with
columns in `class_names` order; the fallback class ("benign") is what a device reports when no harsh
event clears its threshold. Every dict returned is JSON-serialisable (plain floats, ints, lists, None).

Macro-F1 is averaged over the classes present in `y_true` everywhere (metrics, slices, bootstrap): a
class with no rows has no recall, and counting it as F1 0 would punish a slice for what it lacks.
"""

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CALIBRATION_BINS = 10
PER_CLASS_FIGURES = ("precision", "recall", "f1")


@dataclass(frozen=True)
class ThresholdChoice:
    """The score threshold chosen for one class on the validation set, with its one-vs-rest precision
    and recall there. `reached_target` is False when no threshold reached the target precision and the
    threshold maximises the class's F1 instead."""

    threshold: float
    precision: float
    recall: float
    reached_target: bool


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval around the figure measured on all rows (`point`)."""

    low: float
    high: float
    point: float


def choose_thresholds(
    y_true: npt.ArrayLike,
    proba: npt.ArrayLike,
    class_names: Sequence[str],
    target_precision: float,
    fallback_class: str = "benign",
    min_threshold: float = 0.0,
) -> dict[str, ThresholdChoice]:
    """Per non-fallback class, the lowest score threshold (predict the class when its probability is
    >= the threshold) whose one-vs-rest precision on this validation set is >= `target_precision`,
    which gives the highest recall at that precision. When no threshold reaches the target, the
    threshold with the best F1 (the highest such threshold on ties), flagged `reached_target=False`.

    Candidate thresholds are the distinct positive scores of the class: a zero threshold would flag
    every window and leave the ratio in `apply_thresholds` undefined. Raises ValueError for a class
    with no validation rows or no positive score, for which no threshold can be measured.

    `min_threshold` keeps thresholds at or above a floor: a confident model reaches the target
    precision at tiny scores on validation data, and such a threshold lets faint evidence of an event
    outvote a clearly benign window on drifted devices. A class that never scores above the floor gets
    the floor, flagged `reached_target=False`.
    """
    if not 0.0 <= min_threshold < 1.0:
        raise ValueError(f"min_threshold must be in [0, 1), got {min_threshold}")
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    fallback = _class_index(class_names, fallback_class)
    labels = _labels(y_true, len(class_names), "y_true")
    scores = _probabilities(proba, labels.size, len(class_names))
    return {
        name: _choose_threshold(labels == k, scores[:, k], target_precision, name, min_threshold)
        for k, name in enumerate(class_names)
        if k != fallback
    }


def apply_thresholds(
    proba: npt.ArrayLike,
    class_names: Sequence[str],
    thresholds: Mapping[str, float],
    fallback_class: str = "benign",
) -> np.ndarray:
    """One predicted class index per row, by the rule the devices run (`edge_packaging.decision`).

    For a row with probabilities p, a non-fallback class k qualifies when p[k] >= t[k]. The prediction
    is the qualifying class with the largest p[k] / t[k] (how far it clears its own threshold; computed
    in float64), ties going to the class listed first in `class_names`. When no class qualifies, the
    prediction is the fallback class; the fallback's own probability is never consulted.

    `thresholds` must name exactly the non-fallback classes, each threshold in (0, 1].
    """
    from edge_packaging.decision import decide_classes, with_fallback

    _class_index(class_names, fallback_class)
    expected = {name for name in class_names if name != fallback_class}
    if set(thresholds) != expected:
        raise ValueError(f"thresholds must name exactly {sorted(expected)}, got {sorted(thresholds)}")
    return decide_classes(proba, class_names, with_fallback(thresholds, fallback_class))


def classification_metrics(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, proba: npt.ArrayLike, class_names: Sequence[str]
) -> dict:
    """Headline figures of predictions `y_pred` (after thresholds) and probabilities `proba`.

    Returns {"class_names", "n_rows", "accuracy", "macro_f1", "macro_pr_auc", "per_class": {name:
    {"precision", "recall", "f1", "support", "pr_auc"}}, "confusion_matrix" (rows true, columns
    predicted), "calibration": {"ece", "n_bins", "reliability": [{"bin", "lower", "upper",
    "mean_confidence", "accuracy", "count"}]}}. Precision, recall and F1 are 0 where undefined (as
    sklearn's zero_division=0). PR-AUC is one-vs-rest average precision, None for a class absent from
    y_true; macro PR-AUC averages the present classes. Calibration is of the top-class probability
    against whether the top class (argmax of proba, not y_pred) is right.
    """
    labels = _labels(y_true, len(class_names), "y_true")
    predictions = _labels(y_pred, len(class_names), "y_pred", n_rows=labels.size)
    scores = _probabilities(proba, labels.size, len(class_names))
    confusion = _confusion(labels, predictions, len(class_names))
    precision, recall, f1, support = _rates(confusion)
    pr_aucs = _pr_aucs(labels, scores)
    return {
        "class_names": list(class_names),
        "n_rows": int(labels.size),
        "accuracy": float(np.trace(confusion) / labels.size),
        "macro_f1": float(_macro_f1(f1, support)),
        "macro_pr_auc": float(np.mean([auc for auc in pr_aucs if auc is not None])),
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
                "pr_auc": pr_aucs[k],
            }
            for k, name in enumerate(class_names)
        },
        "confusion_matrix": confusion.tolist(),
        "calibration": _calibration(labels, scores),
    }


def slice_metrics(
    slices: "pd.DataFrame",
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    class_names: Sequence[str],
    slice_columns: Sequence[str],
    min_support: int,
) -> dict[str, dict[str, dict]]:
    """Figures per value of each slice column: {column: {str(value): {"support", "macro_f1",
    "recall": {name: float | None}, "gated"}}}.

    `slices` holds one row per prediction, in the same order. Macro-F1 covers the classes present in
    the slice; recall is None for a class absent from it. `gated` says whether the slice has enough
    rows (>= min_support) for its figures to be held against a model. Values are keyed by their
    string form (missing values become "nan" or "None") so the result is JSON-serialisable.
    """
    labels = _labels(y_true, len(class_names), "y_true")
    predictions = _labels(y_pred, len(class_names), "y_pred", n_rows=labels.size)
    if len(slices) != labels.size:
        raise ValueError(f"slices has {len(slices)} rows for {labels.size} predictions")
    missing = [column for column in slice_columns if column not in slices.columns]
    if missing:
        raise ValueError(f"slice columns {missing} are not in the slices table")
    result = {}
    for column in slice_columns:
        keys = slices[column].astype(str)
        result[column] = {
            value: _slice_figures(labels[rows], predictions[rows], class_names, min_support)
            for value, rows in keys.groupby(keys, sort=True).indices.items()
        }
    return result


def bootstrap_intervals(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    class_names: Sequence[str],
    figures: Sequence[str] = ("macro_f1", "recall:collision"),
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of figures, resampling rows with replacement, keyed by figure.

    Figures: "macro_f1", "accuracy", and "precision:<class>", "recall:<class>", "f1:<class>". A
    per-class figure is undefined in a resample without rows of that class; such resamples are left
    out of its interval. Raises ValueError when a figure is undefined on the full data.

    A resample matters only through its confusion counts, and those are multinomial: N draws over the
    observed confusion cells with the cells' frequencies as probabilities. Drawing the counts directly
    gives exactly the distribution of the row bootstrap at O(n_resamples x C^2) cost, whatever N.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    labels = _labels(y_true, len(class_names), "y_true")
    predictions = _labels(y_pred, len(class_names), "y_pred", n_rows=labels.size)
    observed = _confusion(labels, predictions, len(class_names))
    rng = np.random.default_rng(seed)
    cell_frequencies = observed.ravel() / labels.size
    resampled = rng.multinomial(labels.size, cell_frequencies, size=n_resamples).reshape(
        n_resamples, *observed.shape
    )
    tail = (1.0 - confidence) / 2.0
    intervals = {}
    for figure in figures:
        point = float(_figure_values(figure, observed, class_names))
        if np.isnan(point):
            raise ValueError(f"{figure} is undefined: y_true has no rows of its class")
        low, high = np.nanquantile(_figure_values(figure, resampled, class_names), [tail, 1.0 - tail])
        intervals[figure] = Interval(low=float(low), high=float(high), point=point)
    return intervals


def pr_curves_png(y_true: npt.ArrayLike, proba: npt.ArrayLike, class_names: Sequence[str]) -> bytes:
    """A PNG of the one-vs-rest precision-recall curve of every class present in y_true, with its
    average precision in the legend."""
    from sklearn.metrics import precision_recall_curve

    labels = _labels(y_true, len(class_names), "y_true")
    scores = _probabilities(proba, labels.size, len(class_names))
    figure, axes = _new_figure()
    for k, (name, auc) in enumerate(zip(class_names, _pr_aucs(labels, scores), strict=True)):
        if auc is not None:
            precision, recall, _ = precision_recall_curve(labels == k, scores[:, k])
            axes.step(recall, precision, where="post", label=f"{name} (AP {auc:.2f})")
    axes.set(
        title="Precision-recall per class (one-vs-rest)",
        xlabel="recall",
        ylabel="precision",
        xlim=(0.0, 1.0),
        ylim=(0.0, 1.02),
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    return _png_bytes(figure)


def confusion_matrix_png(confusion: npt.ArrayLike, class_names: Sequence[str]) -> bytes:
    """A PNG of the confusion matrix (rows true, columns predicted) with the count in every cell."""
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion must be {len(class_names)}x{len(class_names)}, got {counts.shape}")
    figure, axes = _new_figure()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, label="windows")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=30, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    dark_above = counts.max() / 2.0
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if count > dark_above else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour)
    axes.set(title="Confusion matrix", xlabel="predicted class", ylabel="true class")
    return _png_bytes(figure)


def _class_index(class_names: Sequence[str], name: str) -> int:
    if name not in class_names:
        raise ValueError(f"{name!r} is not one of the classes {tuple(class_names)}")
    return list(class_names).index(name)


def _labels(y: npt.ArrayLike, n_classes: int, what: str, n_rows: int | None = None) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what} must be a non-empty 1-d array of class indices")
    if n_rows is not None and labels.size != n_rows:
        raise ValueError(f"{what} has {labels.size} rows, expected {n_rows}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"{what} holds indices outside [0, {n_classes})")
    return labels.astype(np.int64)


def _probabilities(proba: npt.ArrayLike, n_rows: int, n_classes: int) -> np.ndarray:
    scores = np.asarray(proba, dtype=np.float64)
    if scores.shape != (n_rows, n_classes):
        raise ValueError(f"proba must have shape ({n_rows}, {n_classes}), got {scores.shape}")
    if not np.all((scores >= 0.0) & (scores <= 1.0)):
        raise ValueError("proba must hold probabilities in [0, 1]")
    return scores


def _choose_threshold(
    positive: np.ndarray, scores: np.ndarray, target_precision: float, name: str, min_threshold: float = 0.0
) -> ThresholdChoice:
    n_positive = int(positive.sum())
    if n_positive == 0:
        raise ValueError(f"cannot choose a threshold for {name}: the validation set has no {name} rows")
    thresholds, tp, fp = _operating_points(positive, scores)
    if thresholds.size == 0:
        raise ValueError(f"cannot choose a threshold for {name}: every {name} score is 0")
    above_floor = thresholds >= min_threshold
    if not above_floor.any():
        return ThresholdChoice(threshold=float(min_threshold), precision=0.0, recall=0.0, reached_target=False)
    thresholds, tp, fp = thresholds[above_floor], tp[above_floor], fp[above_floor]
    precision = tp / (tp + fp)
    recall = tp / n_positive
    reaching = np.flatnonzero(precision >= target_precision)
    # Thresholds descend, so the last index reaching the target is the lowest threshold; argmax takes
    # the first, i.e. highest, threshold among F1 ties.
    best = reaching[-1] if reaching.size else int(np.argmax(2 * tp / (tp + fp + n_positive)))
    return ThresholdChoice(
        threshold=float(thresholds[best]),
        precision=float(precision[best]),
        recall=float(recall[best]),
        reached_target=bool(reaching.size),
    )


def _operating_points(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct positive score used as threshold, highest first."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    tp = np.cumsum(positive[order])
    fp = np.cumsum(~positive[order])
    last_of_its_score = np.append(ranked[1:] != ranked[:-1], True) & (ranked > 0.0)
    return ranked[last_of_its_score], tp[last_of_its_score], fp[last_of_its_score]


def _confusion(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    cells = np.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes)
    return cells.reshape(n_classes, n_classes)


def _rates(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 (0 where undefined) and support of [..., C, C] confusions."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(axis=-1)
    predicted = confusion.sum(axis=-2)
    return (
        _ratio_or_zero(tp, predicted),
        _ratio_or_zero(tp, support),
        _ratio_or_zero(2 * tp, support + predicted),
        support,
    )


def _ratio_or_zero(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def _macro_f1(f1: np.ndarray, support: np.ndarray) -> np.ndarray:
    present = support > 0
    return (f1 * present).sum(axis=-1) / present.sum(axis=-1)


def _figure_values(figure: str, confusion: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """The named figure of each [..., C, C] confusion, NaN where undefined."""
    precision, recall, f1, support = _rates(confusion)
    if figure == "macro_f1":
        return _macro_f1(f1, support)
    if figure == "accuracy":
        return np.trace(confusion, axis1=-2, axis2=-1) / confusion.sum(axis=(-2, -1))
    kind, _, name = figure.partition(":")
    if kind not in PER_CLASS_FIGURES or name not in class_names:
        kinds = "|".join(PER_CLASS_FIGURES)
        raise ValueError(f"unknown figure {figure!r}: expected macro_f1, accuracy or <{kinds}>:<class>")
    k = list(class_names).index(name)
    values = {"precision": precision, "recall": recall, "f1": f1}[kind][..., k]
    return np.where(support[..., k] > 0, values, np.nan)


def _pr_aucs(labels: np.ndarray, scores: np.ndarray) -> list[float | None]:
    from sklearn.metrics import average_precision_score

    return [
        float(average_precision_score(labels == k, scores[:, k])) if np.any(labels == k) else None
        for k in range(scores.shape[1])
    ]


def _calibration(labels: np.ndarray, scores: np.ndarray) -> dict:
    """Expected calibration error of the top-class probability over equal-width bins [i/B, (i+1)/B)
    (the last bin includes 1.0), with the reliability table; empty bins report None."""
    confidence = scores.max(axis=1)
    correct = (scores.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    count = np.bincount(bins, minlength=CALIBRATION_BINS)
    confidence_sum = np.bincount(bins, weights=confidence, minlength=CALIBRATION_BINS)
    correct_sum = np.bincount(bins, weights=correct, minlength=CALIBRATION_BINS)
    # sum_b (n_b / N) |accuracy_b - confidence_b| == sum_b |correct_b - confidence_sum_b| / N
    ece = np.abs(correct_sum - confidence_sum).sum() / labels.size
    reliability = [
        {
            "bin": b,
            "lower": b / CALIBRATION_BINS,
            "upper": (b + 1) / CALIBRATION_BINS,
            "mean_confidence": float(confidence_sum[b] / count[b]) if count[b] else None,
            "accuracy": float(correct_sum[b] / count[b]) if count[b] else None,
            "count": int(count[b]),
        }
        for b in range(CALIBRATION_BINS)
    ]
    return {"ece": float(ece), "n_bins": CALIBRATION_BINS, "reliability": reliability}


def _slice_figures(
    labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str], min_support: int
) -> dict:
    _, recall, f1, support = _rates(_confusion(labels, predictions, len(class_names)))
    return {
        "support": int(labels.size),
        "macro_f1": float(_macro_f1(f1, support)),
        "recall": {name: float(recall[k]) if support[k] else None for k, name in enumerate(class_names)},
        "gated": bool(labels.size >= min_support),
    }


def _new_figure() -> tuple["Figure", "Axes"]:
    """A figure on its own Agg canvas: pyplot's global state and backend switching stay untouched,
    so rendering is safe inside a long-lived, multi-threaded Dagster process."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png_bytes(figure: "Figure") -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
