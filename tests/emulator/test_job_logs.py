"""Endpoints and batch transforms log to their CloudWatch groups, as SageMaker's do: a failed
invocation's traceback is where InvokeEndpoint's ModelError message points."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local_cloud.sagemaker import LocalSageMaker
from tests.emulator.local_sagemaker_harness import (
    BUCKET,
    FAST_SETTINGS,
    endpoint_config,
    model_request,
    put,
    tar_gz,
    upload_code,
    wait_for_endpoint,
)

FAILING_INFERENCE = """
    def model_fn(model_dir):
        return 2.0

    def transform_fn(model, body, content_type, accept):
        values = [float(v) for v in body.split(",")]
        if min(values) < 0:
            raise ArithmeticError("negative input")
        return ",".join(str(v * model) for v in values), "text/csv"
"""


@pytest.fixture
def logged(s3: Any, tmp_path: Path) -> Iterator[tuple[LocalSageMaker, Any, dict[str, Any]]]:
    logs = boto3.client("logs", region_name="us-east-1")
    runtime = LocalSageMaker(s3, tmp_path / "sm", settings=FAST_SETTINGS, logs=logs)
    data = put(s3, "models/m/model.tar.gz", tar_gz({"model.json": json.dumps({})}))
    code = upload_code(s3, "code/m.tar.gz", {"inference.py": FAILING_INFERENCE})
    try:
        yield runtime, logs, model_request(data, code)
    finally:
        runtime.close()


def events(logs: Any, group: str) -> dict[str, list[str]]:
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    return {
        stream["logStreamName"]: [
            event["message"]
            for event in logs.get_log_events(
                logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
            )["events"]
        ]
        for stream in streams
    }


def test_a_failed_invocation_is_logged_in_the_endpoints_group(
    logged: tuple[LocalSageMaker, Any, dict[str, Any]],
) -> None:
    runtime, logs, model = logged
    runtime.create_endpoint("ep-logs", endpoint_config("cfg", "m"), {"m": model})
    assert wait_for_endpoint(runtime, "ep-logs")["EndpointStatus"] == "InService"

    assert runtime.invoke("ep-logs", b"1,2", "text/csv", "text/csv").status == 200
    assert runtime.invoke("ep-logs", b"1,-2", "text/csv", "text/csv").status == 500

    (stream, lines), *others = events(logs, "/aws/sagemaker/Endpoints/ep-logs").items()
    assert not others
    assert re.fullmatch(r"AllTraffic/i-[0-9a-f]{17}", stream)
    assert lines[0].startswith("loading model m (inference.py")
    assert "Exception on /invocations [POST]" in lines
    assert lines[-1] == "ArithmeticError: negative input"


def test_a_failed_object_is_logged_in_the_transform_jobs_group(
    logged: tuple[LocalSageMaker, Any, dict[str, Any]], s3: Any
) -> None:
    runtime, logs, model = logged
    put(s3, "batch/input/bad.csv", "1,-2\n")
    request = {
        "TransformJobName": "tj-logs",
        "ModelName": "m",
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/batch/input/"}
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/batch/output/", "Accept": "text/csv"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }

    runtime.start_transform_job(request, model)
    assert runtime.wait_for_transform_job("tj-logs", 30)["TransformJobStatus"] == "Failed"

    (stream, lines), *others = events(logs, "/aws/sagemaker/TransformJobs").items()
    assert not others and stream.startswith("tj-logs/i-")
    assert "ArithmeticError: negative input" in lines
    assert lines[-1].startswith(f"s3://{BUCKET}/batch/input/bad.csv: model answered 500")
