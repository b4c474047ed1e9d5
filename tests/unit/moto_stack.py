"""The stack's data resources in moto, shaped like template.yaml, and the names tests share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from refit import layout
from refit.config import Settings

STACK = "refit-test"
BUCKET = "refit-test-data"
TABLE = "refit-test-runs"
ACCOUNT = "123456789012"
REGION = "us-east-1"

SETTINGS_ENV: dict[str, str] = {
    "STACK_NAME": STACK,
    "DATA_BUCKET": BUCKET,
    "RUNS_TABLE": TABLE,
    "STATE_MACHINE_ARN": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:refit-test-retrain",
    "NOTIFICATION_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:refit-test-notifications",
    "SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/refit-test-sagemaker",
    "TRAINING_IMAGE_URI": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
    "ENDPOINT_NAME": "refit-test-endpoint",
    "MAX_RUNTIME_SECONDS": "3600",
    "MAX_WAIT_SECONDS": "7200",
}


GROUP = layout.model_package_group_name(STACK)


def create_model_package_group(sagemaker: Any) -> str:
    """The template's ModelPackageGroup: every trained model is registered in it."""
    return str(
        sagemaker.create_model_package_group(
            ModelPackageGroupName=GROUP,
            Tags=[{"Key": layout.TAG_STACK, "Value": STACK}],
        )["ModelPackageGroupArn"]
    )


@dataclass
class Aws:
    """moto-backed clients, handed to domain code the way handlers hand in real ones."""

    s3: Any
    dynamodb: Any
    sagemaker: Any
    sns: Any
    sqs: Any
    stepfunctions: Any
    settings: Settings
