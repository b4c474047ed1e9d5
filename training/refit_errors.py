"""How a training job ends early: its two exceptions and the one-line reason it reports.

Every module of the job raises these (the hyperparameters, the scoring, the checkpoints and
``train.py`` itself) and ``train.main`` turns them into the exit status and the failure file,
SageMaker's FailureReason. So they sit below all of them, in a module that imports nothing of
the job's: stdlib only.
"""

from __future__ import annotations

import re

XGBOOST_ERROR_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:\d+: ")


class TrainingError(Exception):
    """A problem with the job's inputs; the message becomes the job's FailureReason."""


class TrainingStopped(Exception):
    """SIGTERM arrived: spot interruption or StopTrainingJob."""


def first_line(error: BaseException) -> str:
    """The reason alone: xgboost errors add a time, a source location and a C++ stack trace."""
    text = str(error).strip()
    return XGBOOST_ERROR_PREFIX.sub("", text.splitlines()[0]) if text else type(error).__name__
