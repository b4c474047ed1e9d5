"""Settings parsed once from a function's environment, failing fast on anything missing or wrong.

The template's ``Globals.Function.Environment`` and each function's ``Environment`` set these
variables; ``docs/architecture.md`` lists them. A handler calls ``Settings.from_env()`` at import
time so that a misconfigured function fails at cold start with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from refit.rollout import ROLLOUT_MODES, RolloutMode, RolloutPolicy

DeploymentMode = Literal["endpoint", "batch"]
DEPLOYMENT_MODES: tuple[DeploymentMode, ...] = ("endpoint", "batch")
# How the train channel reaches the job: copied to the volume first, or streamed (FastFile).
TrainInputMode = Literal["File", "FastFile"]
INPUT_MODES: tuple[TrainInputMode, ...] = ("File", "FastFile")


class ConfigError(RuntimeError):
    """The function's environment is missing a variable or holds an unusable value."""


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str | None = None) -> str:
        value = self._environ.get(name, default)
        if value is None or value == "":
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is required")
        return value

    def integer(self, name: str, default: int | None = None, minimum: int = 0) -> int:
        raw = self.text(name, None if default is None else str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value

    def number(self, name: str, default: float | None = None) -> float:
        raw = self.text(name, None if default is None else str(default))
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None

    def flag(self, name: str, default: bool | None = None) -> bool:
        raw = self.text(name, None if default is None else str(default).lower()).lower()
        if raw in ("true", "1", "yes"):
            return True
        if raw in ("false", "0", "no"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def mode(self, name: str, default: DeploymentMode) -> DeploymentMode:
        raw = self.text(name, default)
        for mode in DEPLOYMENT_MODES:
            if raw == mode:
                return mode
        raise ConfigError(f"{name} must be one of {', '.join(DEPLOYMENT_MODES)}, got {raw!r}")

    def input_mode(self, name: str, default: TrainInputMode) -> TrainInputMode:
        raw = self.text(name, default)
        for mode in INPUT_MODES:
            if raw == mode:
                return mode
        raise ConfigError(f"{name} must be one of {', '.join(INPUT_MODES)}, got {raw!r}")

    def rollout_mode(self, name: str, default: RolloutMode) -> RolloutMode:
        raw = self.text(name, default)
        for mode in ROLLOUT_MODES:
            if raw == mode:
                return mode
        raise ConfigError(f"{name} must be one of {', '.join(ROLLOUT_MODES)}, got {raw!r}")

    def names(self, name: str) -> tuple[str, ...]:
        """A comma-separated list; empty or unset = none."""
        raw = self._environ.get(name, "")
        return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the domain code needs from the stack, in one typed object."""

    stack_name: str
    data_bucket: str
    runs_table: str
    state_machine_arn: str
    notification_topic_arn: str
    sagemaker_role_arn: str
    training_image_uri: str
    training_instance_type: str
    training_instance_count: int
    use_spot_training: bool
    max_runtime_seconds: int
    max_wait_seconds: int
    checkpoint_interval_rounds: int
    deployment_mode: DeploymentMode
    endpoint_name: str
    endpoint_instance_type: str
    endpoint_instance_count: int
    evaluation_metric: str
    min_improvement: float
    max_retained_regression: float
    full_retrain_after_rejections: int
    full_retrain_growth: float
    previous_models_to_keep: int
    objective: str
    num_rounds_full: int
    num_rounds_incremental: int
    learning_rate: float
    incremental_learning_rate: float
    replay_sample_rows: int
    max_file_mb: int
    max_objects_per_run: int
    # A run reading more than this checks its files in the CheckDataFiles map
    # (refit.data.file_checks)
    inline_check_mb: int
    check_concurrency: int
    endpoint_poll_seconds: int
    endpoint_max_polls: int
    training_code_dir: str
    rollout: RolloutPolicy
    # File: the train channel is copied to the volume before training; FastFile streams it
    # (refit.data.train_channel).
    training_input_mode: TrainInputMode = "File"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        settings = cls(
            stack_name=env.text("STACK_NAME"),
            data_bucket=env.text("DATA_BUCKET"),
            runs_table=env.text("RUNS_TABLE"),
            # Only some functions need these two; the template gives them to those functions.
            state_machine_arn=env.text("STATE_MACHINE_ARN", "-"),
            notification_topic_arn=env.text("NOTIFICATION_TOPIC_ARN", "-"),
            sagemaker_role_arn=env.text("SAGEMAKER_ROLE_ARN"),
            training_image_uri=env.text("TRAINING_IMAGE_URI"),
            training_instance_type=env.text("TRAINING_INSTANCE_TYPE", "ml.m5.xlarge"),
            training_instance_count=env.integer("TRAINING_INSTANCE_COUNT", 1, minimum=1),
            use_spot_training=env.flag("USE_SPOT_TRAINING", True),
            training_input_mode=env.input_mode("TRAINING_INPUT_MODE", "File"),
            max_runtime_seconds=env.integer("MAX_RUNTIME_SECONDS", 3600, minimum=60),
            max_wait_seconds=env.integer("MAX_WAIT_SECONDS", 7200, minimum=60),
            checkpoint_interval_rounds=env.integer("CHECKPOINT_INTERVAL_ROUNDS", 10, minimum=1),
            deployment_mode=env.mode("DEPLOYMENT_MODE", "endpoint"),
            endpoint_name=env.text("ENDPOINT_NAME"),
            endpoint_instance_type=env.text("ENDPOINT_INSTANCE_TYPE", "ml.m5.large"),
            endpoint_instance_count=env.integer("ENDPOINT_INSTANCE_COUNT", 1, minimum=1),
            evaluation_metric=env.text("EVALUATION_METRIC", "rmse"),
            min_improvement=env.number("MIN_IMPROVEMENT", 0.0),
            max_retained_regression=env.number("MAX_RETAINED_REGRESSION", 0.0),
            # 0: never fall back to a full retrain because challengers keep losing.
            full_retrain_after_rejections=env.integer("FULL_RETRAIN_AFTER_REJECTIONS", 3),
            # refit.prepare_run.warm_start's growth rule; 0: off.
            full_retrain_growth=env.number("FULL_RETRAIN_GROWTH", 3.0),
            # Approved models kept besides the live one (0: only the live one).
            previous_models_to_keep=env.integer("PREVIOUS_MODELS_TO_KEEP", 1, minimum=0),
            objective=env.text("OBJECTIVE", "reg:squarederror"),
            num_rounds_full=env.integer("NUM_ROUNDS_FULL", 300, minimum=1),
            num_rounds_incremental=env.integer("NUM_ROUNDS_INCREMENTAL", 50, minimum=1),
            # eta of full trainings; training/refit_incremental.py: the appended rounds' eta
            # and the replay sample.
            learning_rate=env.number("LEARNING_RATE", 0.1),
            incremental_learning_rate=env.number("INCREMENTAL_LEARNING_RATE", 0.1),
            replay_sample_rows=env.integer("REPLAY_SAMPLE_ROWS", 50000, minimum=0),
            max_file_mb=env.integer("MAX_FILE_MB", 512, minimum=1),
            max_objects_per_run=env.integer("MAX_OBJECTS_PER_RUN", 1000, minimum=1),
            inline_check_mb=env.integer("INLINE_CHECK_MB", 256, minimum=0),
            check_concurrency=env.integer("CHECK_CONCURRENCY", 100, minimum=1),
            endpoint_poll_seconds=env.integer("ENDPOINT_POLL_SECONDS", 30, minimum=1),
            endpoint_max_polls=env.integer("ENDPOINT_MAX_POLLS", 120, minimum=1),
            training_code_dir=env.text("TRAINING_CODE_DIR", "/opt/refit_training"),
            rollout=RolloutPolicy(
                mode=env.rollout_mode("ROLLOUT_MODE", "Canary"),
                step_percent=env.integer("ROLLOUT_STEP_PERCENT", 10, minimum=1),
                wait_seconds=env.integer("ROLLOUT_WAIT_SECONDS", 300),
                bake_seconds=env.integer("ROLLOUT_BAKE_SECONDS", 300),
                alarm_names=env.names("ROLLBACK_ALARMS"),
            ),
        )
        if settings.full_retrain_growth != 0 and not settings.full_retrain_growth > 1:
            raise ConfigError(
                "FULL_RETRAIN_GROWTH must be 0 (off) or greater than 1, got "
                f"{settings.full_retrain_growth}"
            )
        rollout = settings.rollout
        if rollout.step_percent > 50 or (rollout.mode == "Linear" and rollout.step_percent < 10):
            raise ConfigError(
                "ROLLOUT_STEP_PERCENT must be 1-50 for a canary and 10-50 for linear steps "
                f"(SageMaker's limits), got {rollout.step_percent} for {rollout.mode}"
            )
        for name, rate in (
            ("LEARNING_RATE", settings.learning_rate),
            ("INCREMENTAL_LEARNING_RATE", settings.incremental_learning_rate),
        ):
            if not 0 < rate <= 1:
                raise ConfigError(f"{name} must be above 0 and at most 1, got {rate}")
        if settings.use_spot_training and settings.max_wait_seconds < settings.max_runtime_seconds:
            raise ConfigError(
                "MAX_WAIT_SECONDS must be >= MAX_RUNTIME_SECONDS when USE_SPOT_TRAINING is true"
            )
        return settings
