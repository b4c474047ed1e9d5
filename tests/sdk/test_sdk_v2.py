"""The SageMaker Python SDK v2 (the seed's course) runs train → incremental → deploy → predict →
batch transform → delete against the local cloud, unpatched, in a venv of its own.

Nothing may leave loopback: the SDK runs with every proxy variable pointing at a recorder on
127.0.0.1 (NO_PROXY for the cloud itself) and its telemetry opted out by config file; a request
to any other host would be recorded and fail the test.
"""

from __future__ import annotations

import io
import json
import os
import socketserver
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import xgboost as xgb
from botocore.exceptions import ClientError

from local_cloud.cloud import LocalCloud
from local_cloud.sagemaker import RuntimeSettings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SDK_PYTHON = ROOT / ".venv-sdk-v2" / "bin" / "python"
FLOW = Path(__file__).with_name("sdk_v2_flow.py")
TELEMETRY_OPT_OUT = (
    'SchemaVersion: "1.0"\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n'
)


class _Recorder(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.seen.append(self.rfile.readline(4096).decode("latin-1").strip())  # type: ignore[attr-defined]
        self.wfile.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )


@pytest.fixture(scope="module")
def proxy() -> Iterator[tuple[str, list[str]]]:
    """An HTTP(S) proxy on loopback that answers 403 and remembers every request line."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    if not SDK_PYTHON.exists():
        pytest.fail("the SDK v2 venv is missing: run `make sdk-venvs`")
    settings = RuntimeSettings(poll_interval_seconds=0.1, close_grace_seconds=1.0)
    with LocalCloud(state_dir=tmp_path_factory.mktemp("sdk-v2"), runtime_settings=settings) as c:
        yield c


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


def data_files(directory: Path) -> np.ndarray:
    rng = np.random.default_rng(63)
    features = rng.random((1600, 5))
    labels = features[:, 0] * 10 + features[:, 1] * 5 + rng.normal(0, 0.5, len(features))
    table = np.column_stack([labels, features])
    np.savetxt(directory / "train.csv", table[:1200], delimiter=",", fmt="%.6f")
    np.savetxt(directory / "test.csv", table[1200:], delimiter=",", fmt="%.6f")
    np.savetxt(directory / "rows.csv", features[1200:1220], delimiter=",", fmt="%.6f")
    return np.loadtxt(directory / "rows.csv", delimiter=",", ndmin=2)


def archive_member(body: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def test_the_seeds_sdk_v2_flow_runs_on_the_local_cloud(
    cloud: LocalCloud, proxy: tuple[str, list[str]], tmp_path: Path
) -> None:
    # Given the stack's SageMaker role, data files, and an SDK that may only reach the cloud
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
    assert allowed(
        iam, stack_role["Role"]["Arn"], "s3:GetObject", f"arn:aws:s3:::{info.bucket}/runs/x"
    )
    rows = data_files(tmp_path)
    (tmp_path / "sdk-config.yaml").write_text(TELEMETRY_OPT_OUT)
    proxy_url, attempts = proxy
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER"))}
    env = {
        **inherited,
        **info.environment(),
        "BUCKET": info.bucket,
        "ROLE": role_arn,
        "SOURCE_DIR": str(ROOT / "training"),
        "DATA_DIR": str(tmp_path),
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(tmp_path / "sdk-config.yaml"),
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(tmp_path / "sdk-config.yaml"),
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
        **{name: proxy_url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }

    # When the seed's flow runs with the SDK
    flow = subprocess.run(
        [str(SDK_PYTHON), str(FLOW)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert flow.returncode == 0, flow.stderr[-4000:]
    result = json.loads(flow.stdout.strip().splitlines()[-1])
    # fit() printed the job's own log lines, read from CloudWatch Logs as on AWS
    assert "training from scratch: 20 rounds" in flow.stdout
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
    output = s3.get_object(
        Bucket=info.bucket,
        Key=result["modelData"][1].split("/", 3)[3].replace("model.tar.gz", "output.tar.gz"),
    )["Body"].read()
    evaluation = json.loads(archive_member(output, "evaluation.json"))
    assert (evaluation["mode"], evaluation["championRounds"]) == ("incremental", 20)
    # And the endpoint served that model's predictions, as xgboost computes them
    model = s3.get_object(Bucket=info.bucket, Key=result["modelData"][1].split("/", 3)[3])
    booster = xgb.Booster()
    booster.load_model(bytearray(archive_member(model["Body"].read(), "xgboost-model")))
    expected = booster.predict(xgb.DMatrix(rows.astype(np.float32)))
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
