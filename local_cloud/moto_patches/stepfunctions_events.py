"""Step Functions "Execution Status Change" events on EventBridge, as AWS emits them.

AWS puts an event on the default bus whenever a Standard execution changes status; refit's
``RunEndedRule`` routes the terminal ones (SUCCEEDED, FAILED, TIMED_OUT, ABORTED) to the queue
that starts the next queued run. moto's interpreter emits nothing. The execution worker calls
``BaseExecutionWorkerCommunication.terminated`` once the program has ended (also after
StopExecution); it is wrapped to put the event through moto's EventBridge backend, whose rules
route it like any other event (SQS targets work in moto). A stopped execution keeps the error and
cause given to StopExecution, as on AWS.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from moto.events.models import EventsBackend, events_backends
from moto.stepfunctions.models import StepFunctionBackend
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.backend import execution as execution_module
from moto.stepfunctions.responses import StepFunctionResponse

from ._patching import Patch, Replace, Require

logger = logging.getLogger(__name__)

SOURCE = "aws.states"
DETAIL_TYPE = "Step Functions Execution Status Change"


def _millis(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if isinstance(moment, datetime) else None


def status_change_detail(execution: Any) -> dict[str, Any]:
    """The ``detail`` AWS sends (field names as in the EventBridge schema)."""
    status = execution.exec_status
    output = execution.output
    return {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine.arn,
        "name": execution.name,
        "status": getattr(status, "value", status),
        "startDate": _millis(execution.start_date),
        "stopDate": _millis(execution.stop_date),
        "input": json.dumps(execution.input_data),
        "output": json.dumps(output) if output is not None else None,
        "error": execution.error,
        "cause": execution.cause,
    }


def publish_status_change(execution: Any) -> None:
    backend = events_backends[execution.account_id][execution.region_name]
    backend.put_events(
        [
            {
                "Source": SOURCE,
                "DetailType": DETAIL_TYPE,
                "Detail": json.dumps(status_change_detail(execution)),
                "Resources": [execution.exec_arn],
            }
        ]
    )


_STOP_REASON = "_refit_stop_reason"


def _build_stop_execution(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """moto's StopExecution response ignores ``error`` and ``cause``: keep them on the
    execution before it stops, for :func:`_keep_stop_reason`."""

    def stop_execution(self: Any) -> Any:
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        reason = (self._get_param("error"), self._get_param("cause"))
        setattr(execution, _STOP_REASON, reason)
        return original(self)

    return stop_execution


def _keep_stop_reason(communication: Any) -> None:
    """StopExecution's error and cause become the execution's, as DescribeExecution and the
    status change event show them on AWS."""
    execution = communication.execution
    state = execution.exec_worker.env.program_state()
    if isinstance(state, ProgramStopped):
        error, cause = getattr(execution, _STOP_REASON, (None, None))
        execution.error = execution.error or error or state.error or None
        execution.cause = execution.cause or cause or state.cause or None


def _build_terminated(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def terminated(self: Any) -> None:
        original(self)
        try:
            _keep_stop_reason(self)
            publish_status_change(self.execution)
        except Exception:
            # AWS's delivery is best effort too; a lost event must not break the execution.
            logger.exception("could not emit the execution status change event")

    return terminated


def patches() -> list[Patch]:
    return [
        Require(EventsBackend, "put_events", ("self", "events")),
        Require(ProgramStopped, "__init__", ("self", "stop_date", "error", "cause")),
        Require(
            execution_module.BaseExecutionWorkerCommunication, "__init__", ("self", "execution")
        ),
        Require(StepFunctionBackend, "describe_execution", ("self", "execution_arn")),
        Replace(StepFunctionResponse, "stop_execution", ("self",), _build_stop_execution),
        Replace(
            execution_module.BaseExecutionWorkerCommunication,
            "terminated",
            ("self",),
            _build_terminated,
        ),
    ]
