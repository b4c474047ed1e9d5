"""The SQS -> Lambda event source mapping: batching window, batch size, partial failures, DLQ."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local_cloud.event_source import (
    DelayedDelivery,
    SqsPoller,
    failed_item_ids,
    s3_event_for,
    sqs_record,
)
from local_cloud.lambda_result import UNHANDLED, LambdaResult
from local_cloud.stack import EventSourceMappingInfo

REGION = "us-east-1"


@pytest.fixture(scope="module")
def sqs() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset).close()
    yield boto3.client(
        "sqs",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    urllib.request.urlopen(reset).close()
    server.stop()


class FakeFunction:
    """Records every event; answers with ``respond(event)``."""

    def __init__(self, respond: Callable[[dict[str, Any]], LambdaResult] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.times: list[float] = []
        self._respond = respond or (lambda _event: LambdaResult(b"null"))
        self._lock = threading.Lock()

    def __call__(self, function_name: str, payload: bytes) -> LambdaResult:
        event = json.loads(payload)
        with self._lock:
            self.events.append(event)
            self.times.append(time.monotonic())
        return self._respond(event)

    def record_counts(self) -> list[int]:
        with self._lock:
            return [len(e["Records"]) for e in self.events]


def make_queue(
    sqs: Any, *, visibility: int = 30, max_receives: int | None = None
) -> dict[str, str]:
    name = f"q-{uuid.uuid4().hex[:8]}"
    attributes = {"VisibilityTimeout": str(visibility)}
    queues: dict[str, str] = {}
    if max_receives is not None:
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
        queues["dlq"] = dlq
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
                "maxReceiveCount": max_receives,
            }
        )
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    queues.update(url=url, arn=arn["Attributes"]["QueueArn"])
    return queues


def mapping(
    queue: dict[str, str], *, batch_size: int, window: int, report: bool = True
) -> EventSourceMappingInfo:
    return EventSourceMappingInfo(
        uuid=str(uuid.uuid4()),
        function_logical_id="StartRetrainFunction",
        function_name="refit-StartRetrainFunction-TEST",
        queue_arn=queue["arn"],
        queue_url=queue["url"],
        batch_size=batch_size,
        maximum_batching_window_seconds=window,
        report_batch_item_failures=report,
        maximum_concurrency=2,
        enabled=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_messages_within_the_window_become_one_invocation(sqs: Any) -> None:
    # Given a mapping with BatchSize 10 and a 2 s batching window
    queue = make_queue(sqs)
    function = FakeFunction()
    with SqsPoller(mapping(queue, batch_size=10, window=2), sqs, function, region=REGION):
        # When 5 messages arrive within the window
        sent_at = time.monotonic()
        for i in range(5):
            sqs.send_message(
                QueueUrl=queue["url"],
                MessageBody=json.dumps({"n": i}),
                MessageAttributes={"kind": {"DataType": "String", "StringValue": "upload"}},
            )
            time.sleep(0.1)
        wait_until(lambda: len(function.events) >= 1)
        time.sleep(1.0)  # no second invocation follows

    # Then the function ran once, with all 5 records, after the window
    assert function.record_counts() == [5]
    assert function.times[0] - sent_at >= 1.5
    records = function.events[0]["Records"]
    assert sorted(json.loads(r["body"])["n"] for r in records) == [0, 1, 2, 3, 4]
    record = records[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue["arn"]
    assert record["awsRegion"] == REGION
    assert record["receiptHandle"] and record["messageId"] and record["md5OfBody"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    assert record["messageAttributes"]["kind"]["stringValue"] == "upload"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    # and the batch was deleted
    assert visible(sqs, queue["url"]) == 0


def test_batch_size_caps_each_invocation(sqs: Any) -> None:
    # Given BatchSize 2 and a 1 s window
    queue = make_queue(sqs)
    function = FakeFunction()
    for i in range(5):
        sqs.send_message(QueueUrl=queue["url"], MessageBody=str(i))
    # When the poller drains the queue
    with SqsPoller(mapping(queue, batch_size=2, window=1), sqs, function, region=REGION):
        wait_until(lambda: sum(function.record_counts()) == 5)
    # Then no invocation had more than 2 records
    assert sorted(function.record_counts()) == [1, 2, 2]


def test_batch_item_failures_keep_only_the_reported_messages(sqs: Any) -> None:
    # Given a function that reports the message with body "bad" as failed
    queue = make_queue(sqs, visibility=2)

    def respond(event: dict[str, Any]) -> LambdaResult:
        bad = [r["messageId"] for r in event["Records"] if r["body"] == "bad"]
        failures = [{"itemIdentifier": i} for i in bad]
        return LambdaResult(json.dumps({"batchItemFailures": failures}).encode())

    function = FakeFunction(respond)
    for body in ("good-1", "bad", "good-2"):
        sqs.send_message(QueueUrl=queue["url"], MessageBody=body)
    with SqsPoller(mapping(queue, batch_size=10, window=0), sqs, function, region=REGION) as poller:
        # When the batch is processed and the visibility timeout lets "bad" come back
        wait_until(lambda: len(function.events) >= 2)
        outcomes = list(poller.outcomes)
    # Then only "bad" was kept, and redelivered alone
    assert outcomes[0].deleted == 2 and len(outcomes[0].failed_ids) == 1
    second = function.events[1]["Records"]
    assert [r["body"] for r in second] == ["bad"]
    assert second[0]["attributes"]["ApproximateReceiveCount"] == "2"


def test_function_error_keeps_the_batch_and_redrive_moves_it_to_the_dlq(sqs: Any) -> None:
    # Given a function that always fails and a queue that redrives after 2 receives
    queue = make_queue(sqs, visibility=1, max_receives=2)
    function = FakeFunction(lambda _e: LambdaResult(b'{"errorType": "Boom"}', UNHANDLED))
    sqs.send_message(QueueUrl=queue["url"], MessageBody="poison")
    with SqsPoller(mapping(queue, batch_size=10, window=0), sqs, function, region=REGION):
        # When it is received, fails, comes back, fails again
        wait_until(lambda: len(function.events) >= 2)
        # Then moto's redrive policy moves it to the dead-letter queue on the next receive
        wait_until(lambda: visible(sqs, queue["dlq"]) == 1, timeout=5)
    assert visible(sqs, queue["url"]) == 0
    receives = [e["Records"][0]["attributes"]["ApproximateReceiveCount"] for e in function.events]
    assert receives == ["1", "2"]


def test_an_invalid_failure_report_fails_the_whole_batch(sqs: Any) -> None:
    # Given a function that reports an identifier that is not in the batch
    queue = make_queue(sqs, visibility=30)
    bogus = LambdaResult(b'{"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]}')
    function = FakeFunction(lambda _e: bogus)
    sqs.send_message(QueueUrl=queue["url"], MessageBody="a")
    sqs.send_message(QueueUrl=queue["url"], MessageBody="b")
    with SqsPoller(mapping(queue, batch_size=10, window=0), sqs, function, region=REGION) as poller:
        wait_until(lambda: len(poller.outcomes) == 1)
    # Then nothing was deleted
    assert poller.outcomes[0].deleted == 0
    assert visible(sqs, queue["url"]) == 2


def test_without_report_batch_item_failures_the_response_is_ignored(sqs: Any) -> None:
    queue = make_queue(sqs)
    report = LambdaResult(b'{"batchItemFailures": [{"itemIdentifier": "x"}]}')
    function = FakeFunction(lambda _e: report)
    sqs.send_message(QueueUrl=queue["url"], MessageBody="a")
    no_report = mapping(queue, batch_size=10, window=0, report=False)
    with SqsPoller(no_report, sqs, function, region=REGION) as poller:
        wait_until(lambda: len(poller.outcomes) == 1)
    assert poller.outcomes[0].deleted == 1


def test_delayed_delivery_holds_messages_back_until_released(sqs: Any) -> None:
    # Given one event held back entirely and a second delivery of another held for later
    queue = make_queue(sqs)
    function = FakeFunction()
    delayed = DelayedDelivery(sqs)

    def event(key: str) -> str:
        return json.dumps({"detail": {"object": {"key": key}}})

    delayed.arm(s3_event_for("data/train/late.csv"))
    delayed.arm(s3_event_for("data/train/twice.csv"), duplicate=True)
    poller = SqsPoller(
        mapping(queue, batch_size=10, window=0), sqs, function, region=REGION, delayed=delayed
    )
    with poller:
        # When three events arrive
        for key in ("data/train/late.csv", "data/train/twice.csv", "data/train/other.csv"):
            sqs.send_message(QueueUrl=queue["url"], MessageBody=event(key))
        wait_until(lambda: sum(function.record_counts()) == 2 and delayed.held == 2)
        # Then only the two not held back entirely were delivered, and nothing is left queued
        first = sorted(r["body"] for e in function.events for r in e["Records"])
        assert first == sorted([event("data/train/twice.csv"), event("data/train/other.csv")])
        assert visible(sqs, queue["url"]) == 0
        # When the held messages are released
        assert delayed.release() == 2
        wait_until(lambda: sum(function.record_counts()) == 4)
    # Then they came through the queue once more, and nothing is held any longer
    delivered = sorted(r["body"] for e in function.events for r in e["Records"])
    assert delivered == sorted(
        [
            event("data/train/late.csv"),
            *[event("data/train/twice.csv")] * 2,
            event("data/train/other.csv"),
        ]
    )
    assert delayed.held == 0 and delayed.release() == 0


def test_stop_is_prompt_while_long_polling(sqs: Any) -> None:
    # Given a poller waiting on an empty queue
    queue = make_queue(sqs)
    poller = SqsPoller(mapping(queue, batch_size=10, window=0), sqs, FakeFunction(), region=REGION)
    poller.start()
    time.sleep(0.3)
    # When it is stopped
    started = time.monotonic()
    poller.stop()
    # Then it returns within about one long-poll
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", set()),
        (b"null", set()),
        (b"{}", set()),
        (b'{"batchItemFailures": []}', set()),
        (b'{"batchItemFailures": [{"itemIdentifier": "m2"}]}', {"m2"}),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', None),
        (b'{"batchItemFailures": [{"itemIdentifier": "zz"}]}', None),
        (b'{"batchItemFailures": "m1"}', None),
    ],
)
def test_failed_item_ids_reads_the_response_as_lambda_does(
    payload: bytes, expected: set[str] | None
) -> None:
    assert failed_item_ids(LambdaResult(payload), ["m1", "m2"]) == expected


def test_binary_message_attributes_are_base64_in_the_record() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": "x",
        "MD5OfBody": "9dd4e461268c8034f5c8564e155c67a6",
        "MessageAttributes": {"blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}},
    }
    record = sqs_record(message, "arn:aws:sqs:us-east-1:123456789012:q", REGION)
    assert record["messageAttributes"]["blob"] == {
        "binaryValue": "AAE=",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Binary",
    }
