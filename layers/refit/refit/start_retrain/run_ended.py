"""Runs that ended without recording themselves: stopped by hand, timed out, crashed.

A run records its own outcome (RecordRun) on every path the state machine controls. A
StopExecution, the execution timing out, or a failure of RecordRun itself skip that: no Catch
runs. Step Functions then still emits an "Execution Status Change" event, which EventBridge
routes to the trigger's run-ended queue; this module turns it into the final run record and the
notification. Step Functions itself stops the run's ``.sync`` SageMaker job on a stop.

A run stopped after EvaluateModels registered its challenger would leave that Model Registry
package ``PendingManualApproval`` for ever: this module rejects it (nothing was promoted), with
the end status and cause as the reason, and records the outcome under the keys RecordRun uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from refit import layout
from refit.record_run.notify import Notification, publish
from refit.registry import lineage
from refit.timestamps import format_utc

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient

    from refit.ledger.run_records import RunRecords

logger = Logger(child=True)

EVENT_SOURCE = "aws.states"
EVENT_DETAIL_TYPE = "Step Functions Execution Status Change"
# Execution status -> run record status for runs that did not record themselves.
UNRECORDED_STATUSES = {"ABORTED": "ABORTED", "TIMED_OUT": "TIMED_OUT", "FAILED": "FAILED"}
_DEFAULT_ERRORS = {
    "ABORTED": ("States.Aborted", "the execution was stopped (StopExecution)"),
    "TIMED_OUT": ("States.Timeout", "the execution exceeded its timeout"),
    "FAILED": ("States.Failed", "the execution failed before recording its outcome"),
}


@dataclass(frozen=True)
class ExecutionEnded:
    """The detail of a Step Functions "Execution Status Change" event."""

    name: str
    execution_arn: str
    state_machine_arn: str
    status: str
    stopped_at: str | None
    error: str | None
    cause: str | None

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> ExecutionEnded:
        for required in ("name", "executionArn", "stateMachineArn", "status"):
            if not isinstance(detail.get(required), str):
                raise ValueError(f"execution status change without {required}")
        stop_date = detail.get("stopDate")
        return cls(
            name=detail["name"],
            execution_arn=detail["executionArn"],
            state_machine_arn=detail["stateMachineArn"],
            status=detail["status"],
            stopped_at=_iso(stop_date) if isinstance(stop_date, int | float) else None,
            error=_text(detail.get("error")),
            cause=_text(detail.get("cause")),
        )

    @property
    def ended(self) -> bool:
        return self.status in (*UNRECORDED_STATUSES, "SUCCEEDED")


def record_ended_run(
    ended: ExecutionEnded,
    records: RunRecords,
    sns: SNSClient,
    topic: str,
    stack_name: str,
    *,
    sagemaker: SageMakerClient | None = None,
    endpoint_name: str | None = None,
) -> bool:
    """Finish the run record of an execution that ended unrecorded; True when this wrote it.

    A run that recorded itself (RecordRun ran) is left as it is: the conditional write only
    applies to a record still RUNNING, or to none at all (stopped before PrepareRun wrote it).
    With ``sagemaker``, the run's registered model package (``modelPackageArn`` of its record)
    is rejected; a registry error is logged and kept as ``modelPackageError``, never raised: the
    record, the notification and the lock release do not depend on SageMaker. Never the package
    of the model ``endpoint_name`` serves: a run can fail to record itself after its promotion
    was verified, and the live model must not be marked Rejected (it stays pending, and says why).
    """
    status = UNRECORDED_STATUSES.get(ended.status)
    if status is None:
        return False
    default_error, default_cause = _DEFAULT_ERRORS[ended.status]
    error = {"Error": ended.error or default_error, "Cause": ended.cause or default_cause}
    finished_at = ended.stopped_at or _iso(datetime.now(UTC).timestamp() * 1000)
    wrote = records.finish_if_running(
        ended.name,
        {
            "status": status,
            "finishedAt": finished_at,
            "executionArn": ended.execution_arn,
            "error": error,
            "recordedBy": "run-ended",
        },
    )
    record = records.get_run(ended.name) or {}
    if not wrote:
        # Written by an earlier delivery whose notification failed? Then finish its work now.
        if record.get("recordedBy") != "run-ended" or record.get("notifiedAt"):
            return False
        finished_at = str(record.get("finishedAt", finished_at))
    logger.warning(
        "run ended without recording its outcome",
        extra={"runId": ended.name, "status": status, "error": error},
    )
    live = (
        bool(record.get("modelPackageArn"))
        and sagemaker is not None
        and bool(endpoint_name)
        and serves_run(sagemaker, str(endpoint_name), ended.name)
    )
    if live:
        package = _live_package(ended.name, record)
    else:
        package = _reject_package(ended.name, status, error, record, sagemaker)
    if package:
        records.finish(ended.name, package)
    publish(
        sns,
        topic,
        Notification(
            subject=f"refit {stack_name}: run {ended.name} {status}",
            message="\n".join(
                [
                    f"Run {ended.name} ended {status} at {finished_at} before recording its "
                    "outcome.",
                    f"Reason: {error['Error']}: {error['Cause']}",
                    (
                        "The endpoint serves this run's model: its promotion was verified before "
                        "the record failed. The next run treats it as the champion."
                    )
                    if live
                    else (
                        "Its SageMaker job was stopped by Step Functions; nothing was promoted "
                        "by this run. If it was stopped while the endpoint was updating, "
                        "SageMaker finishes that update and the next run treats whatever the "
                        "endpoint serves as the champion."
                    ),
                    *_package_lines(package),
                    "Uploads queued meanwhile start the next run now.",
                ]
            ),
            attributes={"status": status, "stack": stack_name},
        ),
    )
    records.finish(ended.name, {"notifiedAt": _iso(datetime.now(UTC).timestamp() * 1000)})
    return True


def _reject_package(
    run_id: str,
    status: str,
    error: Mapping[str, str],
    record: Mapping[str, Any],
    sagemaker: SageMakerClient | None,
) -> dict[str, Any]:
    """Reject the run's registered package; the record's package keys (as RecordRun writes them).

    Idempotent: a redelivery finds the package Rejected already and changes nothing.
    """
    arn = record.get("modelPackageArn")
    if not isinstance(arn, str) or not arn:
        return {}
    reason = f"run {run_id} {status} before it was recorded: {error['Error']}: {error['Cause']}"
    decided = lineage.decide(sagemaker, arn, lineage.REJECTED, reason)
    if decided["modelPackageError"]:
        logger.warning(
            "the package of an unrecorded run stays pending",
            extra={"runId": run_id, "arn": arn, "error": decided["modelPackageError"]},
        )
    return decided


def serves_run(sagemaker: SageMakerClient, endpoint_name: str, run_id: str) -> bool:
    """Whether ``endpoint_name`` serves the model ``run_id`` created (refit names it after the
    run: ``layout.sagemaker_name``). Unknown (an endpoint that is gone, a Describe refused):
    False, so the package is handled as any unrecorded run's."""
    model_name = layout.sagemaker_name(run_id)
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        config = sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
    except (ClientError, BotoCoreError) as error:
        logger.info("live model unknown", extra={"endpoint": endpoint_name, "error": str(error)})
        return False
    return any(v.get("ModelName") == model_name for v in config.get("ProductionVariants", []))


def _live_package(run_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    arn = record.get("modelPackageArn")
    if not isinstance(arn, str) or not arn:
        return {}
    logger.warning("the endpoint serves the model of an unrecorded run", extra={"runId": run_id})
    return {
        "modelPackageArn": arn,
        "modelPackageVersion": lineage.package_version(arn),
        "modelPackageStatus": None,
        "modelPackageError": "not rejected: the endpoint serves this run's model",
    }


def _package_lines(package: Mapping[str, Any]) -> list[str]:
    if not package:
        return []
    state = package.get("modelPackageStatus") or (
        f"still {lineage.PENDING}: {package.get('modelPackageError') or 'not updated'}"
    )
    return [f"Model package: version {package.get('modelPackageVersion')} ({state})."]


def _iso(epoch_millis: float) -> str:
    return format_utc(datetime.fromtimestamp(epoch_millis / 1000, UTC), "seconds")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
