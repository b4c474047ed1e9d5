"""Helpers for the moto patch tests: a moto server on 127.0.0.1, fake Lambda handlers, state
machine runs, and tiny fake training/inference scripts.

Bucket, code bundles and requests come from ``local_sagemaker_harness``.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from local_cloud.lambda_result import UNHANDLED, LambdaResult
from tests.emulator.local_sagemaker_harness import (
    BUCKET,
    model_request,
    tar_gz,
    training_request,
    upload_code,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/local-cloud-test"

# Behaviour from the "behaviour" hyperparameter; the model is model.json {"factor": N}.
FAKE_TRAIN = """
    import json, os, signal, sys, time
    from pathlib import Path

    hps = json.loads(os.environ["SM_HPS"])
    behaviour = hps.get("behaviour", "succeed")
    if behaviour == "fail":
        Path(os.environ["SM_OUTPUT_FAILURE"]).write_text("AlgorithmError: the data is bad")
        sys.exit(1)
    if behaviour == "sleep":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        print("sleeping", flush=True)
        while True:
            time.sleep(0.05)
    model = {"factor": float(hps.get("factor", 2))}
    (Path(os.environ["SM_MODEL_DIR"]) / "model.json").write_text(json.dumps(model))
    print("test-rmse: 0.25", flush=True)
"""

# JSON lists or CSV rows in; predictions = value (or row sum) * factor.
FAKE_INFERENCE = """
    import json
    from pathlib import Path

    def model_fn(model_dir):
        return json.loads((Path(model_dir) / "model.json").read_text())

    def input_fn(body, content_type):
        if content_type == "application/json":
            return json.loads(body)
        if content_type == "text/csv":
            rows = [r for r in body.splitlines() if r.strip()]  # text/csv arrives as str
            return [sum(float(v) for v in r.split(",")) for r in rows]
        raise ValueError(f"415: unsupported content type {content_type}")

    def predict_fn(data, model):
        if any(x < 0 for x in data):
            raise ArithmeticError("negative input")
        return [x * model["factor"] for x in data]

    def output_fn(prediction, accept):
        if accept == "text/csv":
            return "\\n".join(f"{p:g}" for p in prediction), "text/csv"
        return json.dumps({"predictions": prediction}), "application/json"
"""


@dataclass
class MotoServer:
    """A ThreadedMotoServer on 127.0.0.1 with an ephemeral port."""

    endpoint: str
    port: int

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            config=Config(retries={"max_attempts": 1}),
        )


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start moto, point the interpreter at it (MOTO_PORT) and let Step Functions execute."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    saved_port = os.environ.get("MOTO_PORT")
    saved_config = default_user_config["stepfunctions"].get("execute_state_machine", False)
    os.environ["MOTO_PORT"] = str(port)
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    try:
        moto = MotoServer(endpoint=f"http://127.0.0.1:{port}", port=port)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": ["lambda.amazonaws.com", "sagemaker.amazonaws.com"]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        role_name = ROLE_ARN.rsplit("/", 1)[1]
        moto.client("iam").create_role(
            RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust)
        )
        yield moto
    finally:
        default_user_config["stepfunctions"]["execute_state_machine"] = saved_config
        if saved_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = saved_port
        server.stop()


# --- Lambda ------------------------------------------------------------------------------------

Handler = Callable[[Any], Any]


@dataclass
class FakeLambdas:
    """The ``invoke_lambda`` callable: runs registered Python handlers in process, returning
    what Lambda's Invoke API would (an exception becomes an Unhandled FunctionError)."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, function_name: str, payload: bytes) -> LambdaResult:
        event = json.loads(payload) if payload else {}
        with self.lock:
            self.calls.append((function_name, event))
            handler = self.handlers.get(function_name)
        if handler is None:
            raise AssertionError(f"no fake handler for {function_name}")
        try:
            result = handler(event)
        except Exception as error:
            body = {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "stackTrace": traceback.format_tb(error.__traceback__),
            }
            return LambdaResult(json.dumps(body).encode(), UNHANDLED, f"[ERROR] {error}\n")
        return LambdaResult(json.dumps(result).encode(), None, f"handled {function_name}\n")

    def events_of(self, function_name: str) -> list[Any]:
        with self.lock:
            return [event for name, event in self.calls if name == function_name]


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return event\n")
    return buffer.getvalue()


def create_function(lambda_client: Any, name: str) -> str:
    """A function record in moto (its code never runs: the invoker answers); returns its ARN."""
    response = lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=ROLE_ARN,
        Handler="app.lambda_handler",
        Code={"ZipFile": _zip()},
    )
    return str(response["FunctionArn"])


# --- Step Functions ----------------------------------------------------------------------------

_counter = 0
_counter_lock = threading.Lock()


def unique(prefix: str) -> str:
    global _counter
    with _counter_lock:
        _counter += 1
        return f"{prefix}-{_counter}"


def create_state_machine(sfn: Any, definition: dict[str, Any] | str, name: str) -> str:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    response = sfn.create_state_machine(name=name, definition=text, roleArn=ROLE_ARN)
    return str(response["stateMachineArn"])


def start(sfn: Any, state_machine_arn: str, execution_input: Any, name: str | None = None) -> str:
    response = sfn.start_execution(
        stateMachineArn=state_machine_arn,
        name=name or unique("run"),
        input=json.dumps(execution_input),
    )
    return str(response["executionArn"])


def wait_execution(sfn: Any, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        description: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if description["status"] != "RUNNING":
            return description
        if time.monotonic() > deadline:
            raise AssertionError(f"execution still RUNNING after {timeout} s: {execution_arn}")
        time.sleep(0.1)


def run(
    sfn: Any, definition: dict[str, Any] | str, execution_input: Any, timeout: float = 30.0
) -> dict[str, Any]:
    """Create a state machine, run it once, return the finished DescribeExecution."""
    arn = create_state_machine(sfn, definition, unique("sm"))
    return wait_execution(sfn, start(sfn, arn, execution_input), timeout)


def output(description: dict[str, Any]) -> Any:
    assert description["status"] == "SUCCEEDED", description
    return json.loads(description["output"])


def task_state(resource: str, **fields: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": resource, **fields}


def single_task(state: dict[str, Any], catch: bool = False) -> dict[str, Any]:
    """A machine of one Task (``Task``); with ``catch``, errors go to a Pass state that
    outputs them under ``$.error``."""
    states: dict[str, Any] = {"Task": {**state, "End": True}}
    if catch:
        states["Task"]["Catch"] = [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}
        ]
        states["Caught"] = {"Type": "Pass", "End": True}
    return {"StartAt": "Task", "States": states}


def history_types(sfn: Any, execution_arn: str) -> list[str]:
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [event["type"] for event in events]


# --- SageMaker data ----------------------------------------------------------------------------


def upload_training_code(s3: Any, key: str = "code/train/sourcedir.tar.gz") -> str:
    return upload_code(s3, key, {"train.py": FAKE_TRAIN})


def upload_inference_code(s3: Any, key: str = "code/serve/sourcedir.tar.gz") -> str:
    return upload_code(s3, key, {"inference.py": FAKE_INFERENCE})


def fake_training_job(name: str, code: str, **hyperparameters: str) -> dict[str, Any]:
    """A CreateTrainingJob request running FAKE_TRAIN (no channels)."""
    request = training_request(name, code, hyperparameters=hyperparameters, max_runtime=30)
    request["RoleArn"] = ROLE_ARN
    del request["InputDataConfig"]  # no channels (an empty list is invalid)
    return request


def put_model(s3: Any, key: str, factor: float) -> str:
    """A model.tar.gz holding model.json; returns its s3:// URI."""
    s3.put_object(
        Bucket=BUCKET, Key=key, Body=tar_gz({"model.json": json.dumps({"factor": factor})})
    )
    return f"s3://{BUCKET}/{key}"


def create_model(sagemaker: Any, name: str, model_data_url: str, code: str) -> None:
    request = model_request(model_data_url, code)
    sagemaker.create_model(ModelName=name, **request)


def create_endpoint_config(sagemaker: Any, name: str, model_name: str) -> None:
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )


def wait_endpoint(sagemaker: Any, name: str, timeout: float = 20.0) -> dict[str, Any]:
    """Describe (through moto) until the endpoint leaves Creating/Updating/RollingBack."""
    deadline = time.monotonic() + timeout
    while True:
        description: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
        if description["EndpointStatus"] not in ("Creating", "Updating", "RollingBack"):
            return description
        if time.monotonic() > deadline:
            raise AssertionError(f"endpoint {name} still {description['EndpointStatus']}")
        time.sleep(0.05)
