"""Evaluation metrics refit can gate on, and which way is better for each.

The training script computes the values (with XGBoost's own evaluator); this table is the one
place that says whether a larger value is an improvement.
"""

from __future__ import annotations

# metric -> True when higher is better
HIGHER_IS_BETTER: dict[str, bool] = {
    "rmse": False,
    "mae": False,
    "logloss": False,
    "error": False,
    "merror": False,
    "mlogloss": False,
    "auc": True,
    "aucpr": True,
    "accuracy": True,
}
SUPPORTED_METRICS = tuple(HIGHER_IS_BETTER)


class UnsupportedMetricError(ValueError):
    pass


def higher_is_better(metric: str) -> bool:
    try:
        return HIGHER_IS_BETTER[metric]
    except KeyError:
        raise UnsupportedMetricError(
            f"unsupported evaluation metric {metric!r}; use one of {', '.join(SUPPORTED_METRICS)}"
        ) from None


def improvement(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is, in metric units; positive means better."""
    gain = challenger - champion
    return gain if higher_is_better(metric) else -gain
