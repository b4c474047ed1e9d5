"""Fixtures for the local SageMaker runtime: moto S3 in-process and a fast runtime.

Shared by the emulator's tests and the integration tests that run refit's training code in the
runtime alone; each directory's conftest.py re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_cloud.sagemaker import LocalSageMaker, RuntimeSettings
from tests.emulator.local_sagemaker_harness import BUCKET, FAST_SETTINGS


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def settings() -> RuntimeSettings:
    return FAST_SETTINGS


@pytest.fixture
def runtime(s3: Any, tmp_path: Path, settings: RuntimeSettings) -> Iterator[LocalSageMaker]:
    sagemaker = LocalSageMaker(s3, tmp_path / "local-sagemaker", settings=settings)
    try:
        yield sagemaker
    finally:
        sagemaker.close()
