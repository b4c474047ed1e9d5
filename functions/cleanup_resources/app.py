"""CleanupResources: delete stale owned endpoints and unused models/configs, keep rollbacks."""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from refit.cleanup_resources.cleanup import clean_up
from refit.config import Settings
from refit.ledger.run_records import RunRecords

settings = Settings.from_env()
sagemaker = boto3.client("sagemaker")
records = RunRecords(boto3.client("dynamodb"), settings.runs_table, settings.stack_name)
logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Input ``{"state": $}``; output becomes ``$.cleanup``."""
    report = clean_up(sagemaker, records, settings, event.get("state") or {})
    metrics.add_metric(name="ResourcesDeleted", unit=MetricUnit.Count, value=report.deleted_count)
    metrics.add_metric(
        name="ResourcesSkippedUnowned", unit=MetricUnit.Count, value=len(report.skipped_unowned)
    )
    return report.to_dict()
