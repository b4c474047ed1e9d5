"""Helpers for tests that drive the whole application through a :class:`LocalCloud`.

Everything here reads the cloud through its public APIs (S3, Step Functions, DynamoDB via
``RunRecords``, SageMaker, SNS → SQS); waits poll with deadlines and fail with what they saw.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from local_cloud.cloud import LocalCloud
from local_cloud.sagemaker import RuntimeSettings
from refit import layout
from refit.ledger.run_records import RunRecords

T = TypeVar("T")

FEATURES = 4
TEST_KEY = f"{layout.TEST_PREFIX}holdout.csv"
#: Small models, short waits: a run takes seconds.
FAST_PARAMETERS: Mapping[str, str] = {
    "NumRoundsFull": "8",
    "NumRoundsIncremental": "4",
    "LearningRate": "0.3",  # few rounds: larger steps
    "CheckpointIntervalRounds": "4",
    "BatchingWindowSeconds": "1",
    "EndpointPollSeconds": "1",
    # Switch at once, no baking: only test_rollout.py watches traffic shift.
    "RolloutMode": "AllAtOnce",
    "RolloutBakeSeconds": "0",
}
FAST_RUNTIME = RuntimeSettings(
    poll_interval_seconds=0.1,
    checkpoint_sync_interval_seconds=0.2,
    stop_grace_seconds=2.0,
    close_grace_seconds=1.0,
)


def fast_cloud(
    tmp_path_factory: Any, name: str, *, runtime: RuntimeSettings = FAST_RUNTIME, **parameters: str
) -> LocalCloud:
    """A LocalCloud on FAST_PARAMETERS (``parameters`` override them) with its state in a test
    directory named ``name``; use it as a context manager."""
    return LocalCloud(
        state_dir=tmp_path_factory.mktemp(name),
        parameters={**FAST_PARAMETERS, **parameters},
        runtime_settings=runtime,
    )


TRIGGER_TIMEOUT = 30.0
RUN_TIMEOUT = 90.0


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    """``condition()`` once truthy; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


def rows(count: int, seed: int, *, features: int = FEATURES) -> np.ndarray[Any, Any]:
    """Label first, then features: a smooth regression problem XGBoost learns in a few rounds."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, features))
    weights = np.linspace(-2.0, 3.0, features)
    y = x @ weights + np.sin(x[:, 0]) + 0.1 * rng.normal(size=count)
    return np.column_stack([y, x])


def csv(table: np.ndarray[Any, Any], *, newline: str = "\n", fmt: str = "%.6g") -> bytes:
    buffer = io.StringIO()
    np.savetxt(buffer, table, delimiter=",", fmt=fmt, newline=newline)
    return buffer.getvalue().encode()


@dataclass(frozen=True)
class Run:
    name: str
    arn: str
    execution_status: str
    record: dict[str, Any]
    execution_input: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.record.get("error") or {})


class CloudRuns:
    """Start runs the way users do and wait for what they become."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.info = cloud.connection_info()
        self.bucket = self.info.bucket
        self.s3 = cloud.client("s3")
        self.sfn = cloud.client("stepfunctions")
        self.sagemaker = cloud.client("sagemaker")
        self.sagemaker_runtime = cloud.client("sagemaker-runtime")
        self.records = RunRecords(
            cloud.client("dynamodb"), self.info.runs_table, self.info.stack_name
        )

    # -- executions --------------------------------------------------------------------------
    def execution_arns(self) -> set[str]:
        arns: set[str] = set()
        for page in self.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=self.info.state_machine_arn
        ):
            arns.update(e["executionArn"] for e in page["executions"])
        return arns

    def execution_input(self, arn: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(
            self.sfn.describe_execution(executionArn=arn)["input"]
        )
        return document

    def covered_keys(self, arn: str) -> list[str]:
        return sorted(o["key"] for o in self.execution_input(arn).get("objects") or [])

    @contextmanager
    def new_executions(self) -> Iterator[Callable[[], list[str]]]:
        """``with runs.new_executions() as new:`` ... ``new()`` = executions started since."""
        known = self.execution_arns()
        yield lambda: sorted(self.execution_arns() - known)

    def triggered(self, keys: Sequence[str], known: set[str]) -> str:
        """The one execution, not in ``known``, the trigger started for exactly ``keys``."""
        wanted = sorted(keys)

        def find() -> str | None:
            for arn in sorted(self.execution_arns() - known):
                if self.covered_keys(arn) == wanted:
                    return arn
            return None

        found = wait_for(find, TRIGGER_TIMEOUT, f"an execution covering exactly {wanted}")
        return found

    def upload_run(self, files: Mapping[str, bytes]) -> Run:
        """Upload ``files`` together (one batching window) and wait for their run to end."""
        known = self.execution_arns()
        for key, body in files.items():
            self.put(key, body)
        return self.finished(self.triggered(list(files), known))

    def finished(self, arn: str, timeout: float = RUN_TIMEOUT) -> Run:
        def done() -> dict[str, Any] | None:
            described: dict[str, Any] = self.sfn.describe_execution(executionArn=arn)
            return None if described["status"] == "RUNNING" else described

        described = wait_for(done, timeout, f"execution {arn} to finish")
        name = str(described["name"])
        record = self.records.get_run(name)
        assert record is not None, f"no run record for {name}"
        return Run(
            name, arn, str(described["status"]), record, json.loads(described.get("input", "{}"))
        )

    def states_entered(self, arn: str) -> list[str]:
        events = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        return [
            e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
        ]

    # -- S3 ----------------------------------------------------------------------------------
    def put(self, key: str, body: bytes) -> dict[str, Any]:
        response: dict[str, Any] = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return response

    def exists(self, key: str) -> bool:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key)
        return any(o["Key"] == key for o in listed.get("Contents", []))

    def keys(self, prefix: str) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def json_object(self, uri_or_key: str) -> Any:
        key = uri_or_key.removeprefix(f"s3://{self.bucket}/")
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    # -- SageMaker ---------------------------------------------------------------------------
    def endpoint_config_name(self) -> str:
        described = self.sagemaker.describe_endpoint(EndpointName=self.info.endpoint_name)
        assert described["EndpointStatus"] == "InService", described
        return str(described["EndpointConfigName"])

    def predict(self, table: np.ndarray[Any, Any]) -> list[float]:
        response = self.sagemaker_runtime.invoke_endpoint(
            EndpointName=self.info.endpoint_name,
            ContentType="text/csv",
            Accept="text/csv",
            Body=csv(table[:, 1:]),
        )
        return [float(v) for v in response["Body"].read().decode().split()]

    def model_names(self) -> set[str]:
        return {m["ModelName"] for m in self.sagemaker.list_models(MaxResults=100)["Models"]}

    def endpoint_config_names(self) -> set[str]:
        listed = self.sagemaker.list_endpoint_configs(MaxResults=100)["EndpointConfigs"]
        return {c["EndpointConfigName"] for c in listed}

    def training_job_names(self) -> set[str]:
        listed = self.sagemaker.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
        return {j["TrainingJobName"] for j in listed}


class Notifications:
    """The stack's SNS topic, read through an SQS queue subscribed to it (as an e-mail reader
    would read it, minus the e-mail)."""

    def __init__(self, cloud: LocalCloud, name: str = "refit-test-notifications") -> None:
        self._sqs = cloud.client("sqs")
        self._queue = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        cloud.client("sns").subscribe(
            TopicArn=cloud.connection_info().topic_arn, Protocol="sqs", Endpoint=arn
        )
        self.received: list[dict[str, Any]] = []

    def _drain(self) -> None:
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self._queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return
            for message in messages:
                envelope = json.loads(message["Body"])
                self.received.append(
                    {
                        "subject": envelope.get("Subject", ""),
                        "message": envelope.get("Message", ""),
                        "attributes": {
                            k: v.get("Value")
                            for k, v in (envelope.get("MessageAttributes") or {}).items()
                        },
                    }
                )
                self._sqs.delete_message(
                    QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"]
                )

    def about(self, run_id: str) -> list[dict[str, Any]]:
        self._drain()
        return [n for n in self.received if run_id in n["subject"]]

    def for_run(self, run_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The one notification about ``run_id``."""
        found = wait_for(lambda: self.about(run_id), timeout, f"a notification for run {run_id}")
        assert len(found) == 1, found
        return found[0]

    @staticmethod
    def record_in(notification: Mapping[str, Any]) -> dict[str, Any]:
        """The run record the notification carries as JSON after its summary."""
        _, _, body = str(notification["message"]).partition("Run record:\n")
        document: dict[str, Any] = json.loads(body)
        return document
