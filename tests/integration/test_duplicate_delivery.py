"""The same S3 event delivered again through the real trigger path is trained on once.

One LocalCloud for this module (one per process; pytest runs modules one after the other, so the
module-scoped fixture is closed before another module starts its own).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local_cloud.cloud import LocalCloud

WINDOW_SECONDS = 1


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state_dir: Path = tmp_path_factory.mktemp("duplicate-delivery")
    with LocalCloud(
        state_dir=state_dir, parameters={"BatchingWindowSeconds": WINDOW_SECONDS}
    ) as started:
        yield started


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)
    return value


def object_created(bucket: str, key: str) -> str:
    """The EventBridge "Object Created" body S3 sends (no object is uploaded: only the trigger
    path is under test)."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2026-11-28T09:15:02Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {"key": key, "size": 12, "etag": "e-" + key[-5:], "version-id": "v1"},
                "reason": "PutObject",
            },
        }
    )


def test_the_same_s3_event_delivered_again_starts_one_run(cloud: LocalCloud) -> None:
    info = cloud.connection_info()
    sqs = cloud.client("sqs")
    sfn = cloud.client("stepfunctions")
    queue = cloud.stack.queue_url
    (poller,) = [p for p in cloud.event_sources.pollers if p.mapping.queue_url == queue]
    body = object_created(info.bucket, "data/train/dup/a.csv")

    def executions() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = sfn.list_executions(stateMachineArn=info.state_machine_arn)[
            "executions"
        ]
        return found

    def handled(messages: int) -> bool:
        return sum(len(o.message_ids) for o in poller.outcomes) >= messages

    # Given the event delivered once, then the very same body again, more than a window apart
    sqs.send_message(QueueUrl=queue, MessageBody=body)
    wait_for(lambda: handled(1))
    time.sleep(WINDOW_SECONDS + 1)
    sqs.send_message(QueueUrl=queue, MessageBody=body)
    wait_for(lambda: handled(2))
    # Then exactly one execution exists and every message was consumed
    assert len(executions()) == 1
    # When it comes a third time, in one batch with a new file
    time.sleep(WINDOW_SECONDS + 1)
    sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "again", "MessageBody": body},
            {"Id": "new", "MessageBody": object_created(info.bucket, "data/train/dup/b.csv")},
        ],
    )
    wait_for(lambda: handled(4))
    # Then the only new execution covers only the new file
    started = wait_for(lambda: len(executions()) == 2 and executions())
    inputs = [
        json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in started
    ]
    assert sorted([o["key"] for o in i["objects"]] for i in inputs) == [
        ["data/train/dup/a.csv"],
        ["data/train/dup/b.csv"],
    ]
    assert all(o.deleted == len(o.message_ids) for o in poller.outcomes)
    assert not sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages")
