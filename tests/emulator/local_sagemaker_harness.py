"""Helpers for the local SageMaker runtime tests: code bundles, requests, waiting."""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_cloud.sagemaker import LocalSageMaker, RuntimeSettings

BUCKET = "local-sagemaker-test"
UNSETTLED = ("Creating", "Updating", "RollingBack")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"

FAST_SETTINGS = RuntimeSettings(
    poll_interval_seconds=0.05,
    checkpoint_sync_interval_seconds=0.05,
    stop_grace_seconds=2.0,
    close_grace_seconds=1.0,
    spot_capacity_delay_seconds=0.0,
)


def tar_gz(files: dict[str, str | bytes]) -> bytes:
    """A gzipped tarball holding ``files`` (name → content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        out: dict[str, bytes] = {}
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            if extracted is not None:
                out[member.name] = extracted.read()
        return out


def put(s3: Any, key: str, body: str | bytes) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)
    return f"s3://{BUCKET}/{key}"


def get(s3: Any, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body


def keys(s3: Any, prefix: str) -> list[str]:
    response = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in response.get("Contents", []))


def upload_code(s3: Any, key: str, files: dict[str, str]) -> str:
    """Upload a sourcedir.tar.gz of dedented ``files``; returns its s3:// URI."""
    return put(s3, key, tar_gz({name: textwrap.dedent(src) for name, src in files.items()}))


def training_request(
    name: str,
    submit_directory: str,
    *,
    program: str = "train.py",
    hyperparameters: dict[str, str] | None = None,
    channels: dict[str, tuple[str, str]] | None = None,
    spot: bool = False,
    max_runtime: int = 60,
    max_wait: int | None = None,
    checkpoint_uri: str | None = None,
    metrics: list[dict[str, str]] | None = None,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A CreateTrainingJob request; ``channels`` maps name → (S3DataType, S3Uri)."""
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": metrics or [],
        },
        "RoleArn": "arn:aws:iam::123456789012:role/sagemaker",
        "HyperParameters": {
            "sagemaker_program": program,
            "sagemaker_submit_directory": submit_directory,
            **(hyperparameters or {}),
        },
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": data_type,
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
            }
            for channel, (data_type, uri) in (channels or {}).items()
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
        "EnableManagedSpotTraining": spot,
    }
    if spot:
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = max_wait or max_runtime * 2
    if checkpoint_uri:
        request["CheckpointConfig"] = {"S3Uri": checkpoint_uri, "LocalPath": "/opt/ml/checkpoints"}
    if environment:
        request["Environment"] = environment
    return request


def model_request(
    model_data_url: str, submit_directory: str, program: str = "inference.py"
) -> dict[str, Any]:
    """A CreateModel request (without ModelName: the runtime's callers key models by name)."""
    return {
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/sagemaker",
        "PrimaryContainer": {
            "Image": IMAGE,
            "ModelDataUrl": model_data_url,
            "Environment": {
                "SAGEMAKER_PROGRAM": program,
                "SAGEMAKER_SUBMIT_DIRECTORY": submit_directory,
            },
        },
    }


def endpoint_config(name: str, model_name: str, variant: str = "AllTraffic") -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": variant,
                "ModelName": model_name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 1.0,
            }
        ],
    }


def wait_until(
    condition: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def wait_for_endpoint(runtime: LocalSageMaker, name: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait while the endpoint is Creating, Updating or RollingBack; returns the settled
    Describe."""
    wait_until(lambda: runtime.describe_endpoint(name)["EndpointStatus"] not in UNSETTLED, timeout)
    return runtime.describe_endpoint(name)


def finished_training(runtime: LocalSageMaker, name: str, timeout: float = 30.0) -> dict[str, Any]:
    description = runtime.wait_for_training_job(name, timeout)
    assert description["TrainingJobStatus"] not in ("InProgress", "Stopping"), description
    return description


def statuses(description: dict[str, Any]) -> list[str]:
    return [t["Status"] for t in description["SecondaryStatusTransitions"]]


def child_processes() -> list[int]:
    """PIDs of this process's live (non-zombie) children, from /proc."""
    children = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            children.append(int(entry.name))
    return children


def json_lines(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
