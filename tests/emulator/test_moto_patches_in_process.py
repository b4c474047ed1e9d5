"""local_cloud.moto_patches under in-process ``mock_aws`` (no server): the interpreter's own
clients are intercepted in process, and the same patches apply."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_cloud import moto_patches
from local_cloud.sagemaker import LocalSageMaker
from tests.emulator.local_sagemaker_harness import BUCKET, FAST_SETTINGS, get
from tests.emulator.moto_patches_harness import (
    REGION,
    ROLE_ARN,
    FakeLambdas,
    create_endpoint_config,
    create_function,
    create_model,
    fake_training_job,
    output,
    put_model,
    run,
    task_state,
    upload_inference_code,
    upload_training_code,
    wait_endpoint,
)


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[tuple[LocalSageMaker, FakeLambdas]]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        boto3.client("iam", region_name=REGION).create_role(
            RoleName=ROLE_ARN.rsplit("/", 1)[1], AssumeRolePolicyDocument="{}"
        )
        runtime = LocalSageMaker(s3, tmp_path / "sagemaker", settings=FAST_SETTINGS)
        lambdas = FakeLambdas()
        moto_patches.install(sagemaker=runtime, invoke_lambda=lambdas)
        try:
            yield runtime, lambdas
        finally:
            moto_patches.uninstall()
            runtime.close()


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def test_training_sync_then_lambda_then_endpoint_in_process(
    aws: tuple[LocalSageMaker, FakeLambdas],
) -> None:
    runtime, lambdas = aws
    s3, sagemaker = client("s3"), client("sagemaker")
    job = "in-process-job"
    request = fake_training_job(job, upload_training_code(s3), factor="4")
    function_arn = create_function(client("lambda"), "in-process-fn")
    lambdas.handlers["in-process-fn"] = lambda event: {"artifact": event["url"]}
    machine = {
        "StartAt": "Train",
        "States": {
            "Train": task_state(
                "arn:aws:states:::sagemaker:createTrainingJob.sync",
                Parameters=request,
                ResultSelector={"url.$": "$.ModelArtifacts.S3ModelArtifacts"},
                Next="Notify",
            ),
            "Notify": task_state(function_arn, End=True),
        },
    }

    result = output(run(client("stepfunctions"), machine, {}))

    artifact = f"s3://{BUCKET}/models/{job}/output/model.tar.gz"
    assert result == {"artifact": artifact}
    assert runtime.describe_training_job(job)["TrainingJobStatus"] == "Completed"
    assert get(s3, f"models/{job}/output/model.tar.gz")[:2] == b"\x1f\x8b"

    url = put_model(s3, "models/served/model.tar.gz", factor=4)
    create_model(sagemaker, "served", url, upload_inference_code(s3))
    create_endpoint_config(sagemaker, "served", "served")
    sagemaker.create_endpoint(EndpointName="served", EndpointConfigName="served")
    assert wait_endpoint(sagemaker, "served")["EndpointStatus"] == "InService"
    response = client("sagemaker-runtime").invoke_endpoint(
        EndpointName="served", Body=b"[1, 2]", ContentType="application/json"
    )
    assert json.loads(response["Body"].read()) == {"predictions": [4, 8]}
