"""The job's settings: its hyperparameters, parsed and checked into one ``TrainingConfig``.

SageMaker passes hyperparameters as strings (``SM_HPS``, else the job's
``input/config/hyperparameters.json``). This module turns numbers back into numbers, checks
refit's own (``OWN_HYPERPARAMETERS``) and hands every other one, except ``sagemaker_*``, to
xgboost; a bad value is a TrainingError naming the hyperparameter, raised before any data is read.

The metric tables are a copy of ``layers/refit/refit/metrics.py``, the product's one list: the
SageMaker image has no refit package (tests/training/test_train_functions.py ties the two). They
live here, not in ``refit_scoring``, because what uses them is the check of ``eval_metric``
against the objective and ``TrainingConfig.higher_is_better``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import refit_incremental as incremental
from refit_errors import TrainingError

MODES = ("full", "incremental")
# Hyperparameters this script consumes; everything else (except sagemaker_*) goes to xgboost.
OWN_HYPERPARAMETERS = frozenset(
    {
        "num_round",
        "full_num_round",
        "eval_metric",
        "refit_mode",
        "checkpoint_interval",
        "early_stopping_rounds",
        "incremental_eta",
        "replay_rows",
        "validation_fraction",
        "drift_threshold",
        "refresh_leaves",
        "refresh_budget",
    }
)
DEFAULT_INCREMENTAL_ETA = 0.1
DEFAULT_REPLAY_ROWS = 50_000
DEFAULT_VALIDATION_FRACTION = 0.1
# Most leaf lookups (rows x trees) a leaf refresh makes, so its cost stays flat as trees
# accumulate: past it, a uniform sample of the new rows, each weighted for the rows it stands
# for (0 = every new row). Bench figure 1: 5M cut the refresh ~3x, quality within noise.
DEFAULT_REFRESH_BUDGET = 5_000_000
# The champion this much worse on the new rows than on the test data when it was trained: the
# relationship moved (refit_incremental.DriftCheck).
DEFAULT_DRIFT_THRESHOLD = 0.5
# The metrics eval_metric may name: refit.metrics.HIGHER_IS_BETTER, copied (see above).
HIGHER_IS_BETTER = frozenset({"auc", "aucpr", "accuracy"})
SINGLE_OUTPUT_METRICS = frozenset({"rmse", "mae", "logloss", "auc", "aucpr", "error"})
MULTICLASS_METRICS = frozenset({"merror", "mlogloss"})
SUPPORTED_METRICS = SINGLE_OUTPUT_METRICS | MULTICLASS_METRICS | {"accuracy"}


@dataclass(frozen=True)
class TrainingConfig:
    objective: str
    metric: str
    num_round: int
    full_num_round: int  # rounds when an incremental job has to train from scratch instead
    requested_mode: str | None  # None: incremental when there is a champion, else full
    checkpoint_interval: int
    early_stopping_rounds: int | None
    extra_params: dict[str, Any]  # every other hyperparameter, for xgboost
    # Incremental jobs (training/refit_incremental.py): appended rounds, replay, drift.
    incremental_eta: float = DEFAULT_INCREMENTAL_ETA
    replay_rows: int = DEFAULT_REPLAY_ROWS
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    refresh_leaves: bool = True
    refresh_budget: int = DEFAULT_REFRESH_BUDGET

    @property
    def booster_params(self) -> dict[str, Any]:
        return {
            **self.extra_params,
            "objective": self.objective,
            "eval_metric": self.xgboost_metric,
        }

    @property
    def eta(self) -> float:
        default = self.extra_params.get("learning_rate", incremental.DEFAULT_ETA)
        return float(self.extra_params.get("eta", default))

    @property
    def reg_lambda(self) -> float:
        return float(self.extra_params.get("lambda", self.extra_params.get("reg_lambda", 1.0)))

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER

    @property
    def multiclass(self) -> bool:
        return self.objective.startswith("multi:")

    @property
    def xgboost_metric(self) -> str:
        """The metric xgboost logs per round; accuracy is ``1 - error``, which xgboost lacks."""
        if self.metric == "accuracy":
            return "merror" if self.multiclass else "error"
        return self.metric


def load_hyperparameters(env: Mapping[str, str], hyperparameters_file: Path) -> dict[str, Any]:
    """The job's hyperparameters: ``SM_HPS`` when set, else ``hyperparameters_file``, else none."""
    if env.get("SM_HPS"):
        source, text = "SM_HPS", env["SM_HPS"]
    elif hyperparameters_file.is_file():
        source, text = str(hyperparameters_file), hyperparameters_file.read_text()
    else:
        return {}
    try:
        hyperparameters = json.loads(text)
    except json.JSONDecodeError as error:
        raise TrainingError(f"hyperparameters in {source} are not valid JSON: {error}") from None
    if not isinstance(hyperparameters, dict):
        raise TrainingError(f"hyperparameters in {source} must be a JSON object")
    if source == "SM_HPS":
        return hyperparameters  # the toolkit decoded them already
    # The file holds strings as sent; the toolkit JSON-decodes each (the SageMaker Python SDK
    # encodes every value), keeping a string that is not JSON as it is.
    return {name: json_or_text(value) for name, value in hyperparameters.items()}


def json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def coerce(value: Any) -> Any:
    """SageMaker passes hyperparameters as strings: turn numeric ones back into numbers."""
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, str):
        return value
    text = value.strip()
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def positive_int(hyperparameters: Mapping[str, Any], name: str, default: int | None) -> int:
    value = coerce(hyperparameters.get(name, default))
    if value is None:
        raise TrainingError(f"hyperparameter {name} is required")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        raise TrainingError(f"hyperparameter {name} must be a positive integer, got {value!r}")
    return value


def positive_float(hyperparameters: Mapping[str, Any], name: str, default: float) -> float:
    value = coerce(hyperparameters.get(name, default))
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise TrainingError(f"hyperparameter {name} must be a positive number, got {value!r}")
    return float(value)


def fraction(
    hyperparameters: Mapping[str, Any], name: str, default: float, *, below_one: bool = False
) -> float:
    value = positive_float(hyperparameters, name, default)
    if value > 1 or (below_one and value == 1):
        bound = "below 1" if below_one else "at most 1"
        raise TrainingError(f"hyperparameter {name} must be above 0 and {bound}, got {value!r}")
    return value


def non_negative_int(hyperparameters: Mapping[str, Any], name: str, default: int) -> int:
    value = coerce(hyperparameters.get(name, default))
    if value == 0:
        return 0
    return positive_int(hyperparameters, name, default)


def training_config(hyperparameters: Mapping[str, Any]) -> TrainingConfig:
    objective = str(coerce(hyperparameters.get("objective", "reg:squarederror")))
    metric = str(coerce(hyperparameters.get("eval_metric", "rmse"))).lower()
    mode = str(coerce(hyperparameters.get("refit_mode", ""))).lower() or None
    if mode is not None and mode not in MODES:
        raise TrainingError(f"hyperparameter refit_mode must be full or incremental, got {mode!r}")
    early_stopping = hyperparameters.get("early_stopping_rounds")
    config = TrainingConfig(
        objective=objective,
        metric=metric,
        num_round=positive_int(hyperparameters, "num_round", None),
        full_num_round=positive_int(
            hyperparameters,
            "full_num_round",
            coerce(hyperparameters.get("num_round")),
        ),
        requested_mode=mode,
        checkpoint_interval=positive_int(hyperparameters, "checkpoint_interval", 10),
        early_stopping_rounds=(
            None
            if early_stopping in (None, "")
            else positive_int(hyperparameters, "early_stopping_rounds", None)
        ),
        incremental_eta=fraction(hyperparameters, "incremental_eta", DEFAULT_INCREMENTAL_ETA),
        replay_rows=non_negative_int(hyperparameters, "replay_rows", DEFAULT_REPLAY_ROWS),
        validation_fraction=fraction(
            hyperparameters, "validation_fraction", DEFAULT_VALIDATION_FRACTION, below_one=True
        ),
        drift_threshold=positive_float(hyperparameters, "drift_threshold", DEFAULT_DRIFT_THRESHOLD),
        refresh_leaves=bool(non_negative_int(hyperparameters, "refresh_leaves", 1)),
        refresh_budget=non_negative_int(hyperparameters, "refresh_budget", DEFAULT_REFRESH_BUDGET),
        extra_params={
            key: coerce(value)
            for key, value in hyperparameters.items()
            if key not in OWN_HYPERPARAMETERS | {"objective"} and not key.startswith("sagemaker_")
        },
    )
    check_metric_fits_objective(config)
    return config


def check_metric_fits_objective(config: TrainingConfig) -> None:
    if config.metric not in SUPPORTED_METRICS:
        supported = ", ".join(sorted(SUPPORTED_METRICS))
        raise TrainingError(
            f"eval_metric {config.metric!r} is not supported; use one of {supported}"
        )
    if config.multiclass and config.metric in SINGLE_OUTPUT_METRICS:
        raise TrainingError(
            f"eval_metric {config.metric} does not fit objective {config.objective}; "
            "use merror, mlogloss or accuracy"
        )
    if not config.multiclass and config.metric in MULTICLASS_METRICS:
        raise TrainingError(
            f"eval_metric {config.metric} needs a multi:softmax or multi:softprob objective, "
            f"got {config.objective}"
        )
