"""StartRetrain: queue S3 uploads, close ended runs, start the next run when none is in flight.

Closing a run that ended unrecorded also rejects its registered model package (SageMaker); a run
whose job failed on one accepted file has that file set aside and the rest queued once more
(refit.start_retrain.quarantine) before the next dispatch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from refit.config import Settings
from refit.ledger.run_queue import RunQueue, StepFunctionsExecutions
from refit.ledger.run_records import RunRecords
from refit.record_run.notify import topic_arn
from refit.start_retrain import quarantine, trigger
from refit.start_retrain.run_ended import ExecutionEnded, record_ended_run

settings = Settings.from_env()
topic = topic_arn(settings)
logger = Logger()
metrics = Metrics()
dynamodb = boto3.client("dynamodb")
sns = boto3.client("sns")
queue = RunQueue(dynamodb, settings.runs_table, settings.stack_name)
records = RunRecords(dynamodb, settings.runs_table, settings.stack_name)
executions = StepFunctionsExecutions(boto3.client("stepfunctions"), settings.state_machine_arn)


@cache
def _sagemaker() -> Any:
    # Only a run that ended unrecorded needs it: SageMaker's large service model stays off the
    # trigger's cold start.
    return boto3.client("sagemaker")


@cache
def _s3() -> Any:
    return boto3.client("s3")  # only for a run that ended: uploads need no S3 call


def _record_ended(ended: ExecutionEnded) -> bool:
    wrote = record_ended_run(
        ended,
        records,
        sns,
        topic,
        settings.stack_name,
        sagemaker=_sagemaker(),
        endpoint_name=settings.endpoint_name,
    )
    quarantine.retry_without_failed_file(
        ended.name,
        records=records,
        queue=queue,
        s3=_s3(),
        bucket=settings.data_bucket,
        sns=sns,
        topic=topic,
        stack_name=settings.stack_name,
        now=_now(),
    )
    return wrote


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = trigger.handle_batch(
        SQSEvent(event),
        bucket=settings.data_bucket,
        queue=queue,
        executions=executions,
        record_ended=_record_ended,
        max_objects_per_run=settings.max_objects_per_run,
        now=_now(),
    )
    started = result.dispatch is not None and result.dispatch.outcome == "started"
    metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=int(started))
    metrics.add_metric(name="ObjectsQueued", unit=MetricUnit.Count, value=result.queued)
    metrics.add_metric(name="DuplicateObjects", unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(name="MessagesIgnored", unit=MetricUnit.Count, value=result.ignored_messages)
    return result.response()
