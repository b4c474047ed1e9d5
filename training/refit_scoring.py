"""How the job scores a model: ``config.metric`` of a booster on a test set, computed in numpy.

Challenger and champion go through the same ``score`` on the same rows, so the gate compares
like with like; ``evaluation.json`` and the log lines (``format_metric``) report its values.
``accuracy`` is ``1 - error`` (or ``1 - merror``), ``aucpr`` is average precision. Which metrics
exist and which way is better is ``refit_hyperparameters``' table.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import xgboost as xgb
from refit_errors import TrainingError
from refit_hyperparameters import TrainingConfig

PROBABILITY_EPSILON = 1e-16  # clips log(0) in logloss, as xgboost does


def score(
    booster: xgb.Booster,
    test: xgb.DMatrix,
    config: TrainingConfig,
    iteration_range: tuple[int, int] = (0, 0),
) -> float:
    """``config.metric`` of ``booster`` on ``test``; challenger and champion go through here.
    ``iteration_range``: these rounds only, on ``test``'s base margin (xgboost's (0, 0): all)."""
    labels = test.get_label().astype(np.float64)
    # Margins, then softmax: multi:softmax predicts bare classes, mlogloss needs probabilities.
    output = booster.predict(test, output_margin=config.multiclass, iteration_range=iteration_range)
    if output.ndim != (2 if config.multiclass else 1):
        raise TrainingError(
            f"a model with {output.ndim}-D output cannot be scored for objective {config.objective}"
        )
    predictions = softmax(output) if config.multiclass else output.astype(np.float64)
    value = metric_value(config.metric, labels, predictions)
    if not np.isfinite(value):
        raise TrainingError(f"test-{config.metric} is {value}: check the test labels")
    return value


def softmax(margins: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    shifted = np.exp(margins.astype(np.float64) - margins.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float64)


def metric_value(
    metric: str, labels: npt.NDArray[np.float64], predictions: npt.NDArray[np.float64]
) -> float:
    if predictions.ndim == 2:
        classes = check_class_labels(metric, labels, predictions.shape[1])
        if metric == "mlogloss":
            chosen = predictions[np.arange(len(labels)), classes]
            return float(-np.mean(np.log(np.clip(chosen, PROBABILITY_EPSILON, None))))
        merror = float(np.mean(predictions.argmax(axis=1) != classes))
        return 1.0 - merror if metric == "accuracy" else merror
    if metric == "rmse":
        return float(np.sqrt(np.mean((predictions - labels) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(predictions - labels)))
    if metric == "logloss":
        check_binary_labels(metric, labels, fractional=True)
        p = np.clip(predictions, PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
        return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    check_binary_labels(metric, labels, fractional=False)
    if metric == "auc":
        return area_under_roc(labels, predictions)
    if metric == "aucpr":
        return average_precision(labels, predictions)
    error = float(np.mean((predictions > 0.5) != (labels == 1)))
    return 1.0 - error if metric == "accuracy" else error


def check_class_labels(
    metric: str, labels: npt.NDArray[np.float64], classes: int
) -> npt.NDArray[np.intp]:
    valid = (labels == np.floor(labels)) & (labels >= 0) & (labels < classes)
    if not valid.all():
        raise TrainingError(f"{metric} needs test labels 0..{classes - 1} (class indices)")
    return labels.astype(np.intp)


def check_binary_labels(metric: str, labels: npt.NDArray[np.float64], *, fractional: bool) -> None:
    valid = ((labels >= 0) & (labels <= 1)) if fractional else ((labels == 0) | (labels == 1))
    if not valid.all():
        allowed = "between 0 and 1" if fractional else "0 or 1"
        raise TrainingError(f"{metric} needs test labels {allowed}")
    if metric in ("auc", "aucpr") and len(np.unique(labels)) < 2:
        raise TrainingError(f"{metric} needs both classes in the test labels")


def area_under_roc(labels: npt.NDArray[np.float64], scores: npt.NDArray[np.float64]) -> float:
    """ROC AUC as the Mann-Whitney statistic; tied scores share their average rank."""
    positives = labels == 1
    n_positive = int(positives.sum())
    n_negative = len(labels) - n_positive
    ranks = average_ranks(scores)
    positive_rank_sum = float(ranks[positives].sum())
    return (positive_rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], len(values))
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]  # ranks start..end-1 (from 1) averaged
    return ranks


def average_precision(labels: npt.NDArray[np.float64], scores: npt.NDArray[np.float64]) -> float:
    """Area under the precision-recall curve as average precision, ties as one threshold."""
    order = np.argsort(-scores, kind="mergesort")
    ordered_scores, ordered_labels = scores[order], labels[order]
    last_of_threshold = np.append(np.flatnonzero(np.diff(ordered_scores)), len(scores) - 1)
    true_positives = np.cumsum(ordered_labels)[last_of_threshold]
    precision = true_positives / (last_of_threshold + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def format_metric(value: float) -> str:
    """Positional notation, so MetricDefinitions regexes like ``([0-9.]+)`` read it whole."""
    return np.format_float_positional(value, trim="-")


def collective_score(
    booster: xgb.Booster,
    rows: xgb.DMatrix,
    config: TrainingConfig,
    iteration_range: tuple[int, int] = (0, 0),
) -> float:
    """``config.metric`` as xgboost itself evaluates it, which on a multi-host job sums each
    host's part (every host holds a shard of ``rows``): what :func:`score` gives on one host,
    up to how xgboost computes the metric (e.g. ties in auc)."""
    model = booster if iteration_range == (0, 0) else booster[slice(*iteration_range)]
    name = config.xgboost_metric
    # "[0]\tdata-<metric>:<value>" per eval_metric the booster has
    for part in model.eval_set([(rows, "data")]).split("\t")[1:]:
        key, _, value = part.partition(":")
        if key == f"data-{name}":
            result = float(value)
            return 1.0 - result if config.metric == "accuracy" else result
    raise TrainingError(f"xgboost did not evaluate {name}")
