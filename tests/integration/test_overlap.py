"""Uploads during a run, runs stopped by hand, manual runs: one run at a time, nothing dropped.

Through the whole local cloud: S3 -> EventBridge -> SQS -> StartRetrain -> Step Functions, real
training in the local SageMaker runtime, and Step Functions' "Execution Status Change" events
(emitted by ``local_cloud.moto_patches.stepfunctions_events``) -> RunEndedRule -> SQS ->
StartRetrain, which starts the queued follow-up run. The tests share one cloud and run in order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from local_cloud.cloud import LocalCloud
from refit.ledger.run_queue import RunQueue
from refit.ledger.run_records import RunRecords
from refit_cli import scenario
from tests.integration.cloud_harness import Notifications, wait_for

pytestmark = pytest.mark.slow

PREFIX = "data/train/overlap/"
FEATURES = 5
RUN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with scenario.local_cloud(state_dir=tmp_path_factory.mktemp("overlap")) as started:
        yield started


class Stack:
    """The deployed stack as the tests look at it."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.info = cloud.connection_info()
        self.s3 = cloud.client("s3")
        self.sfn = cloud.client("stepfunctions")
        self.sagemaker = cloud.client("sagemaker")
        dynamodb = cloud.client("dynamodb")
        stack = cloud.stack
        self.queue = RunQueue(dynamodb, stack.runs_table, stack.stack_name)
        self.records = RunRecords(dynamodb, stack.runs_table, stack.stack_name)
        self.rng = np.random.default_rng(4)
        self.max_running = 0
        self.notifications = Notifications(cloud, "overlap-notifications")

    def upload(self, name: str, rows: int = 60) -> str:
        key = f"{PREFIX}{name}"
        self.s3.put_object(Bucket=self.info.bucket, Key=key, Body=self._rows(rows))
        return key

    def upload_holdout(self) -> None:
        self.s3.put_object(Bucket=self.info.bucket, Key=scenario.TEST_KEY, Body=self._rows(80))

    def _rows(self, rows: int) -> bytes:
        """Headerless CSV, label first: a separable binary problem."""
        x = self.rng.normal(size=(rows, FEATURES))
        y = (x @ np.array([1.0, -1.0, 0.5, 2.0, 0.0]) > 0).astype(float)
        lines = (
            ",".join(f"{v:.6g}" for v in [label, *row]) for label, row in zip(y, x, strict=True)
        )
        return ("\n".join(lines) + "\n").encode()

    def executions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.sfn.list_executions(
            stateMachineArn=self.info.state_machine_arn
        )["executions"]
        running = sum(1 for e in found if e["status"] == "RUNNING")
        self.max_running = max(self.max_running, running)
        return found

    def keys_of(self, execution_arn: str) -> list[str]:
        document = json.loads(self.sfn.describe_execution(executionArn=execution_arn)["input"])
        return [o["key"] for o in document.get("objects", [])]

    def new_execution(self, known: set[str], timeout: float = 60.0) -> dict[str, Any]:
        def started() -> dict[str, Any] | None:
            new = [e for e in self.executions() if e["executionArn"] not in known]
            assert len(new) <= 1, f"more than one new run: {new}"
            return new[0] if new else None

        return wait_for(started, timeout, "a new run")

    def finished(self, execution_arn: str) -> str:
        def status() -> str | None:
            self.executions()
            found: str = self.sfn.describe_execution(executionArn=execution_arn)["status"]
            return None if found == "RUNNING" else found

        return wait_for(status, RUN_TIMEOUT, f"{execution_arn} to end")

    def training(self, run_name: str) -> dict[str, Any]:
        """Wait until the run's training job is in progress."""

        def in_progress() -> dict[str, Any] | None:
            self.executions()
            jobs = self.sagemaker.list_training_jobs(NameContains=run_name[:40])
            for job in jobs["TrainingJobSummaries"]:
                if job["TrainingJobStatus"] == "InProgress":
                    return dict(job)
            return None

        return wait_for(in_progress, 60, f"{run_name} training")

    def idle(self) -> bool:
        """No lock held and nothing queued: the stack is at rest."""
        return self.queue.current_lock() is None and self.queue.queued_count() == 0


@pytest.fixture(scope="module")
def stack(cloud: LocalCloud) -> Stack:
    found = Stack(cloud)
    found.upload_holdout()
    return found


def test_uploads_during_a_run_are_queued_for_exactly_one_follow_up_run(stack: Stack) -> None:
    # Given a run training on a first upload
    first_key = stack.upload("a.csv")
    first = stack.new_execution(set())
    assert stack.keys_of(first["executionArn"]) == [first_key]
    stack.training(first["name"])

    # When two more files arrive while it trains, in two trigger batches
    window = float(stack.cloud.parameters["BatchingWindowSeconds"])
    second_key = stack.upload("b.csv")
    time.sleep(window + 1)
    third_key = stack.upload("c.csv")
    wait_for(lambda: stack.queue.queued_count() == 2, 30, "two queued files")

    # Then they are queued, not started, not merged into the running run
    assert [e["name"] for e in stack.executions()] == [first["name"]]
    lock = stack.queue.current_lock()
    assert lock is not None and lock.run_name == first["name"]
    assert stack.keys_of(first["executionArn"]) == [first_key]

    # When the first run ends
    assert stack.finished(first["executionArn"]) == "SUCCEEDED"

    # Then exactly one follow-up run covers both, with no further upload
    follow_up = stack.new_execution({first["executionArn"]})
    assert sorted(stack.keys_of(follow_up["executionArn"])) == [second_key, third_key]
    assert stack.finished(follow_up["executionArn"]) == "SUCCEEDED"
    wait_for(stack.idle, 30, "the stack at rest")
    assert len(stack.executions()) == 2
    assert stack.max_running == 1


def test_a_run_stopped_by_hand_is_recorded_and_the_queued_run_starts(stack: Stack) -> None:
    known = {e["executionArn"] for e in stack.executions()}
    # Given a run whose job waits for spot capacity (so it is still running when stopped,
    # however fast the machine), and a file queued behind it
    stack.cloud.inject_spot_capacity_never_arrives()
    stack.upload("d.csv")
    stopped = stack.new_execution(known)
    job = stack.training(stopped["name"])
    queued_key = stack.upload("e.csv")
    wait_for(lambda: stack.queue.queued_count() == 1, 30, "one queued file")

    # When someone stops the execution by hand
    stack.sfn.stop_execution(executionArn=stopped["executionArn"], cause="operator")

    # Then the run is recorded as aborted, its training job is stopped
    assert stack.finished(stopped["executionArn"]) == "ABORTED"
    record = wait_for(
        lambda: (r := stack.records.get_run(stopped["name"])) and r["status"] != "RUNNING" and r,
        30,
        "the stopped run's record",
    )
    assert record["status"] == "ABORTED"
    assert record["error"]["Cause"] == "operator"
    wait_for(
        lambda: (
            stack.sagemaker.describe_training_job(TrainingJobName=job["TrainingJobName"])[
                "TrainingJobStatus"
            ]
            == "Stopped"
        ),
        30,
        "the training job stopped",
    )
    # and the follow-up run covering the queued file starts by itself
    known.add(stopped["executionArn"])
    follow_up = stack.new_execution(known)
    assert stack.keys_of(follow_up["executionArn"]) == [queued_key]

    # When a manual run is started while the follow-up holds the stack
    manual = stack.sfn.start_execution(
        stateMachineArn=stack.info.state_machine_arn,
        name="manual-overlap",
        input=json.dumps({"source": "manual"}),
    )
    # Then it is refused before touching anything, with the reason recorded
    assert stack.finished(manual["executionArn"]) == "FAILED"
    refused = stack.records.get_run("manual-overlap")
    assert refused is not None and refused["status"] == "FAILED"
    assert refused["error"]["Error"] == "RunInProgress"
    assert follow_up["name"] in refused["error"]["Cause"]

    # And the follow-up run completes; the stack comes to rest
    assert stack.finished(follow_up["executionArn"]) == "SUCCEEDED"
    wait_for(stack.idle, 30, "the stack at rest")
    assert stack.max_running <= 2  # the refused manual run ran only its PrepareRun/RecordRun
    assert "ABORTED" in stack.notifications.for_run(stopped["name"])["subject"]


def test_a_manual_run_takes_the_lock_once_the_stack_is_idle(stack: Stack) -> None:
    # Given nothing in flight
    wait_for(stack.idle, 30, "the stack at rest")
    # When a manual run is started
    manual = stack.sfn.start_execution(
        stateMachineArn=stack.info.state_machine_arn,
        name="manual-when-idle",
        input=json.dumps({"source": "manual", "prefix": PREFIX}),
    )
    # Then it runs to the end, and its end releases the lock
    assert stack.finished(manual["executionArn"]) == "SUCCEEDED"
    wait_for(stack.idle, 30, "the stack at rest")
