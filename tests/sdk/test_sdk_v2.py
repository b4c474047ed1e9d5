"""The SageMaker Python SDK v2 (the seed's course) runs train → incremental → deploy → predict →
batch transform → delete against the local cloud, unpatched, in a venv of its own.

Nothing may leave loopback: the SDK runs with every proxy variable pointing at a recorder on
127.0.0.1 (NO_PROXY for the cloud itself) and its telemetry opted out by config file; a request
to any other host would be recorded and fail the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from local_cloud.cloud import LocalCloud
from tests.sdk.sdk_harness import ROOT, data_files, evaluation_of, predictions_of, run_flow

pytestmark = pytest.mark.slow

SDK_PYTHON = ROOT / ".venv-sdk-v2" / "bin" / "python"
FLOW = Path(__file__).with_name("sdk_v2_flow.py")

# What the flow touches in the bucket, by action: the SDK user's role grants exactly this.
SDK_PREFIXES = {
    "s3:GetObject": ["sdk/train/*", "sdk/test/*", "sdk/code/*", "sdk/output/*", "sdk/batch-in/*",
                     "sdk/checkpoints/*"],
    "s3:PutObject": ["sdk/output/*", "sdk/checkpoints/*", "sdk/batch-out/*"],
}  # fmt: skip
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def sdk_user_role(iam: Any, bucket: str) -> str:
    """A SageMaker execution role for the SDK's jobs: the stack's own role reads only refit's
    prefixes (runs/, models/, code/...), so on AWS it could not read sdk/."""
    statements = [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"},
        *(
            {"Effect": "Allow", "Action": action, "Resource": [
                f"arn:aws:s3:::{bucket}/{prefix}" for prefix in prefixes]}
            for action, prefixes in SDK_PREFIXES.items()
        ),
    ]  # fmt: skip
    role = iam.create_role(
        RoleName="sdk-user-sagemaker", AssumeRolePolicyDocument=json.dumps(TRUST)
    )
    iam.put_role_policy(
        RoleName="sdk-user-sagemaker",
        PolicyName="sdk-prefix",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    return str(role["Role"]["Arn"])


def allowed(iam: Any, role_arn: str, action: str, resource: str) -> bool:
    result = iam.simulate_principal_policy(
        PolicySourceArn=role_arn, ActionNames=[action], ResourceArns=[resource]
    )
    return bool(result["EvaluationResults"][0]["EvalDecision"] == "allowed")


def test_the_seeds_sdk_v2_flow_runs_on_the_local_cloud(
    cloud: LocalCloud, proxy: tuple[str, list[str]], tmp_path: Path
) -> None:
    # Given a role for the SDK's jobs, data files, and an SDK that may only reach the cloud
    info = cloud.connection_info()
    iam = boto3.client("iam", endpoint_url=info.endpoint_url, region_name=info.region)
    role_arn = sdk_user_role(iam, info.bucket)
    stack_role = iam.get_role(RoleName=cloud.stack.resources["SageMakerExecutionRole"][1])
    # (IAM's simulator says what AWS would: this role suffices, the stack's would not)
    for action, prefixes in SDK_PREFIXES.items():
        for prefix in prefixes:
            key = f"arn:aws:s3:::{info.bucket}/{prefix.replace('*', 'x')}"
            assert allowed(iam, role_arn, action, key), (action, key)
    sdk_data = f"arn:aws:s3:::{info.bucket}/sdk/train/train.csv"
    assert not allowed(iam, stack_role["Role"]["Arn"], "s3:GetObject", sdk_data)
    runs_key = f"arn:aws:s3:::{info.bucket}/runs/x"
    assert allowed(iam, stack_role["Role"]["Arn"], "s3:GetObject", runs_key)
    rows = data_files(tmp_path)
    proxy_url, attempts = proxy
    env = {
        **info.environment(),
        "BUCKET": info.bucket,
        "ROLE": role_arn,
        "SOURCE_DIR": str(ROOT / "training"),
        "DATA_DIR": str(tmp_path),
    }

    # When the seed's flow runs with the SDK
    result, stdout = run_flow(SDK_PYTHON, FLOW, env, proxy_url, tmp_path)

    # fit() printed the job's own log lines, read from CloudWatch Logs as on AWS
    assert "training from scratch: 20 rounds" in stdout
    sagemaker = boto3.client("sagemaker", endpoint_url=info.endpoint_url, region_name=info.region)
    s3 = boto3.client("s3", endpoint_url=info.endpoint_url, region_name=info.region)
    first, second = (sagemaker.describe_training_job(TrainingJobName=n) for n in result["jobs"])
    # Then both jobs trained on managed spot with their checkpoints in S3
    for job in (first, second):
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        assert job["EnableManagedSpotTraining"] is True
        assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] == 1200
        assert job["CheckpointConfig"]["S3Uri"].startswith(f"s3://{info.bucket}/sdk/checkpoints/")
    # And the second continued the first through the model channel
    model_channel = next(c for c in second["InputDataConfig"] if c["ChannelName"] == "model")
    assert model_channel["DataSource"]["S3DataSource"]["S3Uri"] == result["modelData"][0]
    evaluation = evaluation_of(s3, result["modelData"][1])
    assert (evaluation["mode"], evaluation["championRounds"]) == ("incremental", 20)
    # And the endpoint served that model's predictions, as xgboost computes them
    expected = predictions_of(s3, result["modelData"][1], rows)
    np.testing.assert_allclose(result["predictions"], expected, rtol=1e-5)
    # And a malformed row was the client's error (4xx), not the model's
    bad = result["badRequest"]
    assert (bad["code"], bad["originalStatusCode"]) == ("ModelError", 400), bad
    assert "is not a number" in bad["message"]
    # And the batch transform wrote the same predictions
    np.testing.assert_allclose(result["batch"], expected, rtol=1e-5)
    transform = sagemaker.describe_transform_job(TransformJobName=result["transformJob"])
    assert transform["TransformJobStatus"] == "Completed"
    # And the endpoint is gone
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName=result["endpoint"])
    # And nothing tried to leave loopback
    assert attempts == [], attempts
