"""Test data shared by the unit tests: events, CSV files, contexts and moto resources."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from moto.core.utils import utcnow
from moto.sagemaker.models import sagemaker_backends
from moto.stepfunctions.models import stepfunctions_backends

from refit import layout
from refit.config import Settings
from tests.unit.moto_stack import ACCOUNT, BUCKET, REGION, SETTINGS_ENV

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = REPO_ROOT / "events"
STATE_MACHINE_NAME = "refit-test-retrain"
IMAGE = SETTINGS_ENV["TRAINING_IMAGE_URI"]


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


def settings(**overrides: Any) -> Settings:
    """The test stack's settings with some fields changed."""
    return replace(Settings.from_env(SETTINGS_ENV), **overrides)


# --- CSV data -----------------------------------------------------------------------------------


def csv_rows(rows: int, features: int = 3, newline: str = "\n") -> bytes:
    """Headerless numeric CSV, label first."""
    lines = [
        ",".join([f"{i * 0.5:.2f}"] + [f"{(i + f) % 7 + 0.25:.2f}" for f in range(features)])
        for i in range(rows)
    ]
    return (newline.join(lines) + newline).encode()


def put(s3: Any, key: str, body: bytes | str, bucket: str = BUCKET) -> dict[str, Any]:
    """Upload an object; returns its version id and bare ETag."""
    data = body.encode() if isinstance(body, str) else body
    response = s3.put_object(Bucket=bucket, Key=key, Body=data)
    return {
        "key": key,
        "versionId": response.get("VersionId"),
        "etag": response["ETag"].strip('"'),
        "size": len(data),
    }


def keys_under(s3: Any, prefix: str, bucket: str = BUCKET) -> list[str]:
    response = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in response.get("Contents", []))


# --- events -------------------------------------------------------------------------------------


def object_created(
    key: str,
    *,
    version_id: str | None = "v1",
    etag: str = "0cc175b9c0f1b6a831c399e269772661",
    size: int = 120,
    bucket: str = BUCKET,
    etag_field: str = "etag",
) -> dict[str, Any]:
    """An EventBridge "Object Created" event as S3 sends it (``etag_field="eTag"`` as moto does)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": "2026-11-28T09:15:02Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                etag_field: etag,
                "version-id": version_id if version_id is not None else "null",
                "sequencer": "0067A3B1C2D3E4F5A6",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "reason": "PutObject",
        },
    }


def sqs_event(
    *bodies: dict[str, Any] | str, message_ids: list[str] | None = None
) -> dict[str, Any]:
    """An SQS batch whose message bodies are the given events (or raw strings)."""
    ids = message_ids or [f"msg-{i}" for i in range(len(bodies))]
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"handle-{message_id}",
                "body": body if isinstance(body, str) else json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:refit-test-uploads",
                "awsRegion": REGION,
            }
            for message_id, body in zip(ids, bodies, strict=True)
        ]
    }


@dataclass
class FakeLambdaContext:
    function_name: str = "refit-test-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:refit-test-function"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


#: What the ASL's PrepareRun state passes as executionArn, minus the execution name.
PREPARE_EXECUTION_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:refit-test-retrain:"


def run_prepare(
    app: Any, execution_input: Any, name: str, start_time: str = "2026-11-28T09:20:00.123Z"
) -> dict[str, Any]:
    """PrepareRun's handler called with the payload the ASL's PrepareRun state sends."""
    event = {
        "input": execution_input,
        "executionName": name,
        "executionArn": PREPARE_EXECUTION_ARN + name,
        "startTime": start_time,
    }
    plan: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
    return plan


# --- moto resources -----------------------------------------------------------------------------


def create_state_machine(stepfunctions: Any) -> str:
    """A trivial state machine under the name the test settings point at."""
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    response = stepfunctions.create_state_machine(
        name=STATE_MACHINE_NAME,
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/refit-test-states",
    )
    arn: str = response["stateMachineArn"]
    assert arn == SETTINGS_ENV["STATE_MACHINE_ARN"]
    return arn


def executions(stepfunctions: Any, state_machine_arn: str) -> list[dict[str, Any]]:
    """Every execution with its parsed input, sorted by name."""
    listed = stepfunctions.list_executions(stateMachineArn=state_machine_arn)["executions"]
    found = []
    for item in listed:
        described = stepfunctions.describe_execution(executionArn=item["executionArn"])
        found.append({"name": item["name"], "input": json.loads(described["input"])})
    return sorted(found, key=lambda e: e["name"])


def write_training_code(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.py").write_text("print('train')\n")
    (directory / "refit_incremental.py").write_text("REPLAY_DIR = 'replay'\n")
    (directory / "refit_data.py").write_text("MAX_COLUMNS = 10\n")
    (directory / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    for name in layout.TRAINING_MODULES:  # train.py's other modules
        if not (directory / name).exists():
            (directory / name).write_text(f"# {name}\n")
    return directory


def deploy_endpoint(
    sagemaker: Any, endpoint_name: str, model_name: str, model_data_url: str
) -> str:
    """A model, config and endpoint in moto (InService at once); returns the config name."""
    sagemaker.create_model(
        ModelName=model_name,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": model_data_url},
        ExecutionRoleArn=SETTINGS_ENV["SAGEMAKER_ROLE_ARN"],
    )
    config_name = f"{model_name}-config"
    sagemaker.create_endpoint_config(
        EndpointConfigName=config_name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
    return config_name


def set_endpoint_status(endpoint_name: str, status: str, failure_reason: str | None = None) -> None:
    """moto endpoints are InService at once; tests need the other states (and why) too."""
    endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[endpoint_name]
    endpoint.endpoint_status = status
    endpoint.failure_reason = failure_reason


# --- Step Functions executions ending -----------------------------------------------------------


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives the execution ``name`` of the state machine."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


def end_execution(
    stepfunctions: Any,
    arn: str,
    status: str = "ABORTED",
    *,
    error: str | None = None,
    cause: str | None = None,
) -> None:
    """End a moto execution (they stay RUNNING in process): StopExecution, or set the outcome."""
    if status == "ABORTED":
        stepfunctions.stop_execution(executionArn=arn)
        return
    execution = stepfunctions_backends[ACCOUNT][REGION].describe_execution(arn)
    execution.status = status
    execution.stop_date = utcnow()
    execution.error = error
    execution.cause = cause


def execution_status_change(
    arn: str,
    status: str,
    *,
    state_machine_arn: str = SETTINGS_ENV["STATE_MACHINE_ARN"],
    error: str | None = None,
    cause: str | None = None,
    stop_date: int | None = 1_795_000_000_000,
) -> dict[str, Any]:
    """The EventBridge "Execution Status Change" event AWS sends when an execution ends."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": ACCOUNT,
        "time": "2026-11-28T10:00:00Z",
        "region": REGION,
        "resources": [arn],
        "detail": {
            "executionArn": arn,
            "stateMachineArn": state_machine_arn,
            "name": arn.rsplit(":", 1)[-1],
            "status": status,
            "startDate": 1_794_990_000_000,
            "stopDate": stop_date if status != "RUNNING" else None,
            "input": "{}",
            "output": None,
            "error": error,
            "cause": cause,
        },
    }


def execution_statuses(stepfunctions: Any, state_machine_arn: str) -> dict[str, str]:
    """Every execution's status by name."""
    listed = stepfunctions.list_executions(stateMachineArn=state_machine_arn)["executions"]
    return {item["name"]: item["status"] for item in listed}
