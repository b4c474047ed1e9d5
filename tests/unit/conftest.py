"""Unit-test fixtures: moto in-process, clients injected into domain code."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from refit.config import Settings
from tests.runs_table import create_runs_table
from tests.unit.moto_stack import (
    BUCKET,
    REGION,
    SETTINGS_ENV,
    TABLE,
    Aws,
    create_model_package_group,
)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in SETTINGS_ENV.items():
        monkeypatch.setenv(key, value)
    return dict(SETTINGS_ENV)


@pytest.fixture
def aws(settings_env: dict[str, str]) -> Iterator[Aws]:
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        dynamodb = session.client("dynamodb")
        create_runs_table(dynamodb, TABLE)
        sns = session.client("sns")
        sns.create_topic(Name="refit-test-notifications")
        sagemaker = session.client("sagemaker")
        create_model_package_group(sagemaker)
        yield Aws(
            s3=s3,
            dynamodb=dynamodb,
            sagemaker=sagemaker,
            sns=sns,
            sqs=session.client("sqs"),
            stepfunctions=session.client("stepfunctions"),
            settings=Settings.from_env(),
        )
