"""EvaluateModels: read the job's evaluation.json, decide promote or reject, register the model."""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped,unused-ignore]
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from refit import layout
from refit.config import Settings
from refit.evaluate_models import promotion
from refit.ledger.run_records import RunRecords
from refit.registry import lineage
from refit.run_state import RunState

settings = Settings.from_env()
s3 = boto3.client("s3")
sagemaker = boto3.client("sagemaker")
records = RunRecords(boto3.client("dynamodb"), settings.runs_table, settings.stack_name)
group = layout.model_package_group_name(settings.stack_name)
logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Input ``{"run": $.run, "training": $.training}``; output becomes ``$.evaluation``."""
    state = RunState.parse(event)
    decision = promotion.evaluate(
        s3, state, settings.min_improvement, settings.max_retained_regression
    )
    metrics.add_metric(name=decision.cloudwatch_metric, unit=MetricUnit.Count, value=1)
    if decision.forced:
        metrics.add_metric(name="DecisionsForced", unit=MetricUnit.Count, value=1)
    logger.info("evaluated", extra={"decision": decision.verdict, "reason": decision.reason})
    evaluation = decision.to_dict()
    # Every trained model enters the registry, PendingManualApproval until RecordRun decides.
    return {**evaluation, **lineage.register(sagemaker, records, group, state, evaluation)}
