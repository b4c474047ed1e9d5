"""StartRetrain: an SQS batch of S3 "Object Created" events becomes one or a few executions."""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from refit import trigger
from refit.config import Settings
from refit.run_records import RunRecords

settings = Settings.from_env()
logger = Logger()
tracer = Tracer()
metrics = Metrics()
sfn = boto3.client("stepfunctions")
dynamodb = boto3.client("dynamodb")
# Per-object claims (OBJECT#<stack> items) keep an object re-announced in a later batch from
# being trained on twice.
records = RunRecords(dynamodb, settings.runs_table, settings.stack_name)
# Idempotency records share the runs table (pk/sk); the key is the execution name, itself a
# hash of the objects, so a repeated batch is answered from DynamoDB.
persistence = DynamoDBPersistenceLayer(
    table_name=settings.runs_table,
    key_attr="pk",
    sort_key_attr="sk",
    static_pk_value=f"IDEMPOTENCY#{settings.stack_name}",
    boto3_client=dynamodb,
)
idempotency = IdempotencyConfig(event_key_jmespath="name", raise_on_no_idempotency_key=True)


def _start(run: dict[str, Any]) -> dict[str, Any]:
    return trigger.start_execution(sfn, settings.state_machine_arn, run)


start_once: trigger.StartExecution = idempotent_function(
    data_keyword_argument="run", persistence_store=persistence, config=idempotency
)(_start)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    result = trigger.start_retraining(
        SQSEvent(event), settings.data_bucket, settings.max_objects_per_run, start_once, records
    )
    metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=len(result.started))
    metrics.add_metric(name="MessagesIgnored", unit=MetricUnit.Count, value=result.ignored_messages)
    metrics.add_metric(
        name="ObjectsAlreadyClaimed", unit=MetricUnit.Count, value=result.already_claimed
    )
    return result.response()
