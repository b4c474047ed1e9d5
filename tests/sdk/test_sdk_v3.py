"""The SageMaker Python SDK v3 (the current major) runs the seed's flow against the local cloud,
unpatched, in a venv of its own: ModelTrainer validates its role with
iam:SimulatePrincipalPolicy and runs train.py through its own ContainerEntrypoint drivers; the
sagemaker.core resources deploy, invoke, batch-transform and delete.

Nothing may leave loopback (the proxy recorder of conftest.py).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from local_cloud.cloud import LocalCloud
from tests.sdk.sdk_harness import ROOT, data_files, evaluation_of, predictions_of, run_flow

pytestmark = pytest.mark.slow

SDK_PYTHON = ROOT / ".venv-sdk-v3" / "bin" / "python"
FLOW = Path(__file__).with_name("sdk_v3_flow.py")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"


def sourcedir_tar() -> bytes:
    """training/ as a sourcedir.tar.gz, what serving imports inference.py from."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted((ROOT / "training").glob("*.py")):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def test_the_seeds_flow_runs_with_sdk_v3_on_the_local_cloud(
    cloud: LocalCloud, proxy: tuple[str, list[str]], tmp_path: Path
) -> None:
    # Given data files, the serving code in S3, and an SDK that may only reach the cloud
    info = cloud.connection_info()
    s3 = boto3.client("s3", endpoint_url=info.endpoint_url, region_name=info.region)
    s3.put_object(Bucket=info.bucket, Key="sdk3/code/sourcedir.tar.gz", Body=sourcedir_tar())
    rows = data_files(tmp_path)
    proxy_url, attempts = proxy
    env = {
        **info.environment(),
        "BUCKET": info.bucket,
        "IMAGE": IMAGE,
        "SOURCE_DIR": str(ROOT / "training"),
        "SOURCEDIR_TAR": f"s3://{info.bucket}/sdk3/code/sourcedir.tar.gz",
        "DATA_DIR": str(tmp_path),
    }

    # When the flow runs with SDK v3
    result, _ = run_flow(SDK_PYTHON, FLOW, env, proxy_url, tmp_path)

    sagemaker = boto3.client("sagemaker", endpoint_url=info.endpoint_url, region_name=info.region)
    first, second = (sagemaker.describe_training_job(TrainingJobName=n) for n in result["jobs"])
    # Then both jobs ran the SDK's own drivers (no script mode) on managed spot, checkpointing
    for job in (first, second):
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        assert "sm_train.sh" in " ".join(
            job["AlgorithmSpecification"]["ContainerEntrypoint"]
            + job["AlgorithmSpecification"].get("ContainerArguments", [])
        )
        assert {"code", "sm_drivers"} <= {c["ChannelName"] for c in job["InputDataConfig"]}
        assert job["EnableManagedSpotTraining"] is True
        assert job["CheckpointConfig"]["S3Uri"].startswith(f"s3://{info.bucket}/sdk3/checkpoints/")
        assert job["RoleArn"] == result["role"]
    # And the second continued the first through the model channel
    evaluation = evaluation_of(s3, result["modelData"][1])
    assert (evaluation["mode"], evaluation["championRounds"]) == ("incremental", 20)
    # And the endpoint and the batch transform answered xgboost's own predictions
    expected = predictions_of(s3, result["modelData"][1], rows)
    np.testing.assert_allclose(result["predictions"], expected, rtol=1e-5)
    np.testing.assert_allclose(result["batch"], expected, rtol=1e-5)
    assert result["transformStatus"] == "Completed"
    # And the endpoint is gone
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName=result["endpoint"])
    # And nothing tried to leave loopback
    assert attempts == [], attempts
