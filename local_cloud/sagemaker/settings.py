"""Time and behaviour knobs of the local runtime: defaults mimic AWS, tests shrink them."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class RuntimeSettings:
    """Everything time-dependent, in one object handed to :class:`LocalSageMaker`.

    Attributes:
        poll_interval_seconds: how often a running job checks its process, limits and
            injections.
        checkpoint_sync_interval_seconds: how often new or changed local checkpoint files are
            uploaded to ``CheckpointConfig.S3Uri`` while the script runs.
        stop_grace_seconds: SIGTERM → SIGKILL delay for StopTrainingJob, limits and spot
            interruptions (SageMaker gives 120 s).
        close_grace_seconds: the same delay when :meth:`LocalSageMaker.close` tears down.
        spot_capacity_delay_seconds: emulated wait for spot capacity before every attempt of a
            managed-spot job (the job sits in ``Starting``; not billed).
        spot_price_fraction: spot price / on-demand price applied to billed seconds of spot
            jobs. 1.0 bills the process run time as is; 0.3 models a typical 70 % discount.
        log_tail_lines: lines of script output kept for a FailureReason fallback.
        host: the address endpoint servers bind to (loopback only).
        python_executable: the interpreter that runs training scripts.
        pass_hyperparameters_as_args: pass ``--name value`` per hyperparameter, as the
            SageMaker training toolkit does in script mode.
    """

    poll_interval_seconds: float = 0.5
    checkpoint_sync_interval_seconds: float = 0.5
    stop_grace_seconds: float = 120.0
    close_grace_seconds: float = 5.0
    spot_capacity_delay_seconds: float = 0.0
    spot_price_fraction: float = 1.0
    log_tail_lines: int = 50
    host: str = "127.0.0.1"
    python_executable: str = sys.executable
    pass_hyperparameters_as_args: bool = True
