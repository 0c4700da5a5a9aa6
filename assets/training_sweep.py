"""Hyperparameter sweep of the gradient-boosted classifier, one Ray task per configuration.

Each task returns its figures and its fitted model as skops bytes (the registry's format), so the
chosen model is registered as it was fitted, with no refit on the driver and no pickled model object
crossing a process boundary.
"""

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SweepResult:
    params: dict[str, Any]
    validation_macro_f1: float
    fit_seconds: float
    model_skops: bytes = field(repr=False)


def parameter_grid(
    learning_rates: list[float], max_leaf_nodes: list[int], l2_regularization: list[float], max_iter: int
) -> list[dict[str, Any]]:
    return [
        {"learning_rate": lr, "max_leaf_nodes": leaves, "l2_regularization": l2, "max_iter": max_iter}
        for lr, leaves, l2 in itertools.product(learning_rates, max_leaf_nodes, l2_regularization)
    ]


def make_classifier(params: dict[str, Any], seed: int):
    """HistGradientBoosting with class-balanced weights (collisions are rare but matter most)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        **params, class_weight="balanced", early_stopping=False, random_state=seed
    )


def fit_and_score(
    params: dict[str, Any], seed: int, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> SweepResult:
    from sklearn.metrics import f1_score

    from resources.skops_models import dump_classifier

    started = time.perf_counter()
    model = make_classifier(params, seed).fit(x_train, y_train)
    fit_seconds = time.perf_counter() - started
    score = f1_score(y_val, model.predict(x_val), average="macro", zero_division=0)
    return SweepResult(params=params, validation_macro_f1=float(score), fit_seconds=fit_seconds, model_skops=dump_classifier(model))


def run_sweep_on_ray(
    grid: list[dict[str, Any]], seed: int, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> list[SweepResult]:
    """Fit every configuration as a Ray task on the connected cluster; results in grid order."""
    import ray

    remote_fit = ray.remote(num_cpus=1)(fit_and_score)
    data = [ray.put(array) for array in (x_train, y_train, x_val, y_val)]
    return ray.get([remote_fit.remote(params, seed, *data) for params in grid])


def best_of(results: list[SweepResult]) -> SweepResult:
    """Highest validation macro-F1; ties go to the earlier (simpler-first) configuration."""
    return max(results, key=lambda result: result.validation_macro_f1)
