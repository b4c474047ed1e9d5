"""RecordRun's input, typed: how the run ended, its status, and a Catch's error as recorded.

``{"outcome", "executionName", "state"}`` is parsed here once (the state through
``refit.run_state.RunState``); the record, usage and summary modules read the typed fields. The
statuses live here because every part of the report (record, metrics, notification) says one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from refit.run_state import RunState, StateError, text

Outcome = Literal["promoted", "rejected", "rejected-input", "failed"]
STATUSES: dict[Outcome, str] = {
    "promoted": "PROMOTED",
    "rejected": "REJECTED",
    "rejected-input": "REJECTED_INPUT",
    "failed": "FAILED",
}
# Two outcomes are told apart further: a failed run whose endpoint update SageMaker rolled back
# (an alarm or a failed health check; the champion keeps serving), and a rollback run that put
# an earlier model back (refit.registry.rollback).
ROLLED_BACK = "ROLLED_BACK"
RESTORED = "RESTORED"
ROLLED_BACK_ERROR = "Refit.EndpointRolledBack"
# A .sync failure's Cause is the whole Describe*Job response: enough to find the reason, but a
# record (400 KB item limit) and an e-mail only need its start.
CAUSE_MAX_CHARS = 4000
# Keys worth lifting out of a Cause: SageMaker Describe*Job responses and Lambda error payloads.
_CAUSE_KEYS = (
    "FailureReason",
    "TrainingJobStatus",
    "SecondaryStatus",
    "TransformJobStatus",
    "errorType",
    "errorMessage",
)


class InvalidRunOutcome(ValueError):
    """RecordRun's input does not follow the contract; nothing was written."""


@dataclass(frozen=True)
class RunOutcome:
    """RecordRun's input, typed."""

    outcome: Outcome
    execution_name: str
    state: RunState

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> RunOutcome:
        outcome = event.get("outcome")
        known = next((o for o in STATUSES if o == outcome), None)
        if known is None:
            raise InvalidRunOutcome(
                f"outcome must be one of {', '.join(STATUSES)}, got {outcome!r}"
            )
        execution_name = text(event, "executionName")
        if execution_name is None:
            raise InvalidRunOutcome("executionName is required")
        state = event.get("state")
        return cls(
            outcome=known,
            execution_name=execution_name,
            state=RunState.parse(state if isinstance(state, Mapping) else {}),
        )

    @property
    def run_id(self) -> str:
        # Without $.run (PrepareRun failed) the execution name is the run id by construction.
        run = self.state.run
        return run.run_id if run and run.run_id else self.execution_name

    @property
    def is_rollback_run(self) -> bool:
        return bool(self.state.run and self.state.run.is_rollback)

    @property
    def rolled_back(self) -> bool:
        """The endpoint update was rolled back: InService on the old config."""
        error = self.state.error
        return self.outcome == "failed" and error is not None and error.name == ROLLED_BACK_ERROR

    @property
    def status(self) -> str:
        if self.outcome == "promoted" and self.is_rollback_run:
            return RESTORED
        if self.rolled_back:
            return ROLLED_BACK
        return STATUSES[self.outcome]

    @property
    def endpoint_mode(self) -> bool:
        run = self.state.run
        return bool(run and run.deployment_mode == "endpoint")

    @property
    def decided_to_promote(self) -> bool:
        evaluation = self.state.evaluation
        return evaluation is not None and evaluation.promote

    @property
    def endpoint_config_name(self) -> str | None:
        """The config the endpoint was verified on, else the one the run planned."""
        deploy, endpoint = self.state.deploy, self.state.endpoint
        verified = endpoint.config_name if endpoint else None
        return verified or (deploy.endpoint_config_name if deploy else None)

    @property
    def training_mode(self) -> tuple[str | None, str | None]:
        """The mode the job really trained in, and why it differs from the plan (train.py fell
        back)."""
        run, evaluation = self.state.run, self.state.evaluation
        planned = run.training_mode if run else None
        if evaluation is not None and evaluation.mode_fallback is not None:
            return evaluation.mode or planned, evaluation.mode_fallback
        return planned, None


def describe_error(error: StateError | None) -> dict[str, Any] | None:
    """A Catch's ``{"Error", "Cause"}``, with the reason lifted out of a JSON Cause."""
    if error is None:
        return None
    described: dict[str, Any] = {"Error": error.name}
    if error.cause is not None:
        described["Cause"] = error.cause[:CAUSE_MAX_CHARS]
        if error.details is not None:
            # Recorded as the Cause says, whichever kind of Describe or payload it is.
            described.update({k: text(error.details, k) for k in _CAUSE_KEYS})
    return {k: v for k, v in described.items() if v is not None}
