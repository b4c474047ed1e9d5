"""RecordRun (and RecordFailure): final run record, champion pointer, model package status, SNS.

Safe to retry: every write overwrites (see refit.record_run.run_report).
"""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from refit.config import Settings
from refit.ledger.run_records import RunRecords
from refit.record_run.notify import topic_arn
from refit.record_run.run_report import record_run

settings = Settings.from_env()
topic = topic_arn(settings)
records = RunRecords(boto3.client("dynamodb"), settings.runs_table, settings.stack_name)
sns = boto3.client("sns")
sagemaker = boto3.client("sagemaker")
logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Input ``{"outcome", "executionName", "state": $}``; returns ``{"runId", "status"}``."""
    report = record_run(event, records, sns, topic, settings, sagemaker=sagemaker)
    for metric in report.metrics:
        metrics.add_metric(name=metric.name, unit=metric.unit, value=metric.value)
    return report.to_dict()
