"""PrepareRun: validate the input and the data, pick the champion, build the RunPlan."""

from __future__ import annotations

import functools
import sys
from datetime import UTC, datetime
from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from refit.config import Settings

settings = Settings.from_env()
# refit.data.datasets checks data with training/refit_data.py, the reader the job itself runs: the
# TrainingCodeLayer ships it beside train.py (TRAINING_CODE_DIR), outside Lambda's import path.
sys.path.append(settings.training_code_dir)

from refit.ledger.run_queue import RunQueue  # noqa: E402
from refit.ledger.run_records import RunRecords  # noqa: E402
from refit.prepare_run.prepare import PrepareRunEvent, prepare_run  # noqa: E402

logger = Logger()
metrics = Metrics()
s3 = boto3.client("s3")
sagemaker = boto3.client("sagemaker")
dynamodb = boto3.client("dynamodb")
records = RunRecords(dynamodb, settings.runs_table, settings.stack_name)
queue = RunQueue(dynamodb, settings.runs_table, settings.stack_name)


@functools.cache
def _sfn() -> Any:
    # Only when another run holds the lock: most runs never pay for this client.
    return boto3.client("stepfunctions")


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    plan = prepare_run(
        PrepareRunEvent.parse(event),
        s3=s3,
        sagemaker=sagemaker,
        records=records,
        queue=queue,
        settings=settings,
        now=datetime.now(UTC),
        sfn=_sfn,
    )
    data = plan.get("data")  # none: a rollback run, or files left to the CheckDataFiles map
    if data is not None:
        metrics.add_metric(name="FilesAccepted", unit=MetricUnit.Count, value=data["accepted"])
        metrics.add_metric(name="FilesRejected", unit=MetricUnit.Count, value=data["rejected"])
    return plan
