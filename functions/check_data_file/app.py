"""CheckDataFile: one file of a large delivery through the data contract
(refit.data.file_checks)."""

from __future__ import annotations

import sys
from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from refit.config import Settings

settings = Settings.from_env()
# The data contract is training/refit_data.py, shipped by the TrainingCodeLayer (as PrepareRun).
sys.path.append(settings.training_code_dir)

import refit_data  # noqa: E402

from refit.data.file_checks import check_item  # noqa: E402

logger = Logger()
s3 = boto3.client("s3")
rule = refit_data.label_rule(settings.objective)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    verdict = check_item(
        s3,
        settings.data_bucket,
        event,
        max_file_bytes=settings.max_file_mb * 1024 * 1024,
        rule=rule,
    )
    logger.info("file checked", extra={"key": verdict.key, "outcome": verdict.outcome})
    # Only the outcome: the map's output must stay small whatever the file count.
    return {"outcome": verdict.outcome}
