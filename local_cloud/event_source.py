"""The SQS -> Lambda event source mapping, as the Lambda service runs it.

moto's own mapping invokes the function inside ``SendMessage``, one record at a time, and
ignores ``MaximumBatchingWindowInSeconds`` and ``batchItemFailures``; ``moto_patches`` turns it
off. :class:`SqsPoller` does what Lambda's pollers do instead, through the SQS API of the
emulator:

- long-poll the queue; once a first message arrives, keep gathering until ``BatchSize``
  messages, ``MaximumBatchingWindowInSeconds`` since that first message, or a 6 MB payload;
- invoke the function with the SQS event (``Records`` with ``messageId``, ``receiptHandle``,
  ``body``, ``attributes``, ``messageAttributes``, ``md5OfBody``, ``eventSource``,
  ``eventSourceARN``, ``awsRegion``), up to ``ScalingConfig.MaximumConcurrency`` batches at a
  time;
- on success delete the batch, or with ``ReportBatchItemFailures`` every message but the
  reported ones (an invalid report fails the whole batch); on a function error delete nothing:
  the messages come back after the queue's visibility timeout, and moto's redrive policy moves
  them to the dead-letter queue after ``maxReceiveCount`` receives.

Fault injection: :class:`DelayedDelivery` (``EventSources.delayed``) holds chosen messages back
and puts them on the queue again when released, as an event that EventBridge or SQS delivers
late (with ``duplicate``: after its first delivery went through).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from local_cloud.lambda_result import LambdaInvoker, LambdaResult
from local_cloud.stack import EventSourceMappingInfo

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # synchronous invocation payload limit
DEFAULT_CONCURRENCY = 2  # Lambda's minimum for MaximumConcurrency, and a sane local default
_RECEIVE_MAX = 10  # ReceiveMessage's MaxNumberOfMessages limit


@dataclass(frozen=True)
class _Hold:
    match: Callable[[str], bool]
    duplicate: bool


class DelayedDelivery:
    """Messages held back from the pollers until :meth:`release` sends them again.

    :meth:`arm` takes the next received message whose body ``match``-es: without
    ``duplicate`` it is deleted from the queue and kept (it arrives late, once); with it, it is
    delivered now and a copy is kept (it arrives again, late). :meth:`release` sends every kept
    body back to its queue, where the pollers find it like any new message.
    """

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self._lock = threading.Lock()
        self._holds: list[_Hold] = []
        self._held: list[tuple[str, str]] = []  # (queue URL, body)

    def arm(self, match: Callable[[str], bool], *, duplicate: bool = False) -> None:
        with self._lock:
            self._holds.append(_Hold(match, duplicate))

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def intercept(self, queue_url: str, message: dict[str, Any]) -> bool:
        """Whether the pollers may deliver ``message`` now."""
        body = str(message.get("Body", ""))
        with self._lock:
            hold = next((h for h in self._holds if h.match(body)), None)
            if hold is None:
                return True
            self._holds.remove(hold)
            self._held.append((queue_url, body))
        if hold.duplicate:
            return True
        self._sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return False

    def release(self) -> int:
        """Send the held messages again; returns how many."""
        with self._lock:
            held, self._held = self._held, []
        for queue_url, body in held:
            self._sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        return len(held)


def s3_event_for(key: str) -> Callable[[str], bool]:
    """Matches an EventBridge S3 event body whose ``detail.object.key`` is ``key``."""

    def match(body: str) -> bool:
        try:
            document = json.loads(body)
        except ValueError:
            return False
        detail = document.get("detail") if isinstance(document, dict) else None
        obj = detail.get("object") if isinstance(detail, dict) else None
        return isinstance(obj, dict) and obj.get("key") == key

    return match


@dataclass(frozen=True)
class BatchOutcome:
    """One invocation by a poller: what was sent, what came back, what was deleted."""

    message_ids: tuple[str, ...]
    function_error: str | None
    failed_ids: tuple[str, ...]  # left in the queue (all of them on a function error)
    deleted: int
    payload_bytes: int = 0  # size of the SQS event the function was invoked with


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A ReceiveMessage message as Lambda puts it in an SQS event."""
    attributes: dict[str, dict[str, Any]] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        binary = value.get("BinaryValue")
        attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if binary is not None else None,
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [
                base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])
            ],
            "dataType": value.get("DataType", "String"),
        }
        attributes[name] = {k: v for k, v in attributes[name].items() if v is not None}
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_item_ids(result: LambdaResult, message_ids: Iterable[str]) -> set[str] | None:
    """The ``batchItemFailures`` of a successful response; None = the whole batch failed.

    As Lambda reads it: an empty/null response, ``{}`` or an empty list is full success; an
    item identifier that is empty or not in the batch makes the whole batch a failure.
    """
    batch = set(message_ids)
    text = result.payload.decode("utf-8", errors="replace").strip()
    if not text or text == "null":
        return set()
    try:
        document = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(document, dict) or document.get("batchItemFailures") is None:
        return set()
    failures = document["batchItemFailures"]
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in batch:
            return None
        failed.add(identifier)
    return failed


class SqsPoller:
    """The pollers of one SQS event source mapping (one gathering thread, N invocations)."""

    def __init__(
        self,
        mapping: EventSourceMappingInfo,
        sqs: Any,
        invoke: LambdaInvoker,
        *,
        region: str,
        poll_wait_seconds: int = 1,
        on_batch: Callable[[BatchOutcome], None] | None = None,
        delayed: DelayedDelivery | None = None,
    ) -> None:
        self.mapping = mapping
        self._sqs = sqs
        self._invoke = invoke
        self._region = region
        self._poll_wait = max(0, min(20, poll_wait_seconds))
        self._on_batch = on_batch
        self._delayed = delayed
        concurrency = mapping.maximum_concurrency or DEFAULT_CONCURRENCY
        self._slots = threading.Semaphore(concurrency)
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix=f"sqs-{mapping.function_logical_id}"
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sqs-poller-{mapping.uuid}", daemon=True
        )
        self._lock = threading.Lock()
        self.outcomes: list[BatchOutcome] = []

    def start(self) -> SqsPoller:
        if self.mapping.enabled:
            self._thread.start()
        return self

    def request_stop(self) -> None:
        """Stop gathering new batches (returns at once)."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling; wait for running invocations (their workers may be closed first)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SqsPoller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- polling -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.2):
                continue
            try:
                batch = self._gather()
            except Exception:  # keep polling through emulator hiccups
                if not self._stop.is_set():
                    logger.exception("polling %s failed", self.mapping.queue_url)
                    self._stop.wait(1.0)
                batch = []
            if not batch or self._stop.is_set():
                self._slots.release()
                continue
            try:
                self._executor.submit(self._deliver, batch)
            except RuntimeError:  # executor shut down
                self._slots.release()
                return

    def _receive(self, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self.mapping.queue_url,
            MaxNumberOfMessages=max(1, min(_RECEIVE_MAX, count)),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _gather(self) -> list[dict[str, Any]]:
        """Messages for one invocation: up to BatchSize, within the batching window."""
        window = self.mapping.maximum_batching_window_seconds
        batch: list[dict[str, Any]] = []
        size = 0
        first_at: float | None = None
        while not self._stop.is_set() and len(batch) < self.mapping.batch_size:
            if first_at is None:
                wait = self._poll_wait
            else:
                left = window - (time.monotonic() - first_at)
                if left <= 0:
                    break
                wait = min(self._poll_wait, int(left))
            messages = self._receive(self.mapping.batch_size - len(batch), wait)
            if self._delayed is not None:
                queue = self.mapping.queue_url
                messages = [m for m in messages if self._delayed.intercept(queue, m)]
            for message in messages:
                size += len(message.get("Body", "").encode()) + 1024
                batch.append(message)
            if messages and first_at is None:
                first_at = time.monotonic()
            if batch and (window == 0 or size >= MAX_PAYLOAD_BYTES):
                break
            if not messages and first_at is not None:
                # Nothing new: wait out (part of) the rest of the window without busy polling.
                left = window - (time.monotonic() - first_at)
                self._stop.wait(min(0.2, max(0.0, left)))
        return batch

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        try:
            self._deliver_batch(batch)
        except Exception:  # one bad batch must not stop the mapping
            logger.exception("delivering a batch to %s failed", self.mapping.function_name)
        finally:
            self._slots.release()

    def _deliver_batch(self, batch: list[dict[str, Any]]) -> None:
        records = [sqs_record(m, self.mapping.queue_arn, self._region) for m in batch]
        ids = [r["messageId"] for r in records]
        event = json.dumps({"Records": records}).encode()
        result = self._invoke(self.mapping.function_name, event)
        if result.function_error:
            failed = set(ids)
            logger.warning(
                "%s failed on %d message(s): %s",
                self.mapping.function_name,
                len(ids),
                result.payload[:500].decode(errors="replace"),
            )
        elif self.mapping.report_batch_item_failures:
            reported = failed_item_ids(result, ids)
            failed = set(ids) if reported is None else reported
        else:
            failed = set()
        to_delete = [m for m in batch if m["MessageId"] not in failed]
        deleted = self._delete(to_delete)
        outcome = BatchOutcome(
            message_ids=tuple(ids),
            function_error=result.function_error,
            failed_ids=tuple(i for i in ids if i in failed),
            deleted=deleted,
            payload_bytes=len(event),
        )
        with self._lock:
            self.outcomes.append(outcome)
        if self._on_batch is not None:
            self._on_batch(outcome)

    def _delete(self, messages: list[dict[str, Any]]) -> int:
        deleted = 0
        for start in range(0, len(messages), _RECEIVE_MAX):
            chunk = messages[start : start + _RECEIVE_MAX]
            response = self._sqs.delete_message_batch(
                QueueUrl=self.mapping.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
            deleted += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                logger.warning("could not delete a message: %s", failure)
        return deleted


class EventSources:
    """Every SQS mapping of a deployed stack, started and stopped together."""

    def __init__(
        self,
        mappings: Iterable[EventSourceMappingInfo],
        sqs: Any,
        invoke: LambdaInvoker,
        *,
        region: str,
        poll_wait_seconds: int = 1,
    ) -> None:
        self.delayed = DelayedDelivery(sqs)
        self.pollers = [
            SqsPoller(
                m,
                sqs,
                invoke,
                region=region,
                poll_wait_seconds=poll_wait_seconds,
                delayed=self.delayed,
            )
            for m in mappings
        ]

    def start(self) -> EventSources:
        for poller in self.pollers:
            poller.start()
        return self

    def request_stop(self) -> None:
        for poller in self.pollers:
            poller.request_stop()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        for poller in self.pollers:
            with contextlib.suppress(Exception):
                poller.stop(timeout)
