"""The trigger: S3 uploads and ended runs in, at most one run at a time out.

StartRetrain reads two SQS queues: S3 "Object Created" events (EventBridge, batched over the
batching window) and Step Functions "Execution Status Change" events of this stack's state
machine. For each batch it

1. queues every announced object version never seen before
  (:class:`refit.ledger.run_queue.RunQueue`:
   a ledger item written once per version, so an event delivered again, in any later batch, is
   dropped; an overwritten key is a new version, hence new data);
2. records runs that ended without recording themselves (stopped by hand, timed out:
   :mod:`refit.start_retrain.run_ended`) and lets go of their lock;
3. dispatches (:func:`refit.ledger.run_queue.dispatch`): when no run is in flight, one run takes
   everything queued (up to ``MAX_OBJECTS_PER_RUN``), named after those objects, so a
   redelivered batch can never start a second run for them.

Uploads made while a run is in flight stay queued; the end of that run dispatches them as one
follow-up run. A message that is neither kind is logged and dropped: retrying it cannot make it
valid, and returning it as a failure would loop it until the DLQ with no gain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent, SQSEvent

from refit import layout
from refit.ledger.run_queue import Dispatch, RunQueue, StepFunctionsExecutions, dispatch
from refit.run_input import DataObject
from refit.start_retrain.run_ended import EVENT_DETAIL_TYPE, EVENT_SOURCE, ExecutionEnded

logger = Logger(child=True)


RecordEnded = Callable[[ExecutionEnded], bool]


@dataclass(frozen=True)
class TriggerResult:
    queued: int
    duplicates: int
    ended_runs: tuple[str, ...]
    dispatch: Dispatch | None
    failed_message_ids: tuple[str, ...]
    ignored_messages: int

    def response(self) -> dict[str, Any]:
        """The SQS partial-batch response (``ReportBatchItemFailures``)."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed_message_ids]}


def handle_batch(
    event: SQSEvent,
    *,
    bucket: str,
    queue: RunQueue,
    executions: StepFunctionsExecutions,
    record_ended: RecordEnded,
    max_objects_per_run: int,
    now: str,
) -> TriggerResult:
    """Queue the uploads, close ended runs, dispatch; failures are reported per message.

    A message is only consumed once what it announced is durable (queued, or recorded). When
    dispatching fails, every message of the batch comes back: their objects are queued already
    (the redelivery drops them as duplicates), but the redelivery retries the dispatch.
    """
    uploads: dict[DataObject, set[str]] = {}
    ended: list[tuple[str, ExecutionEnded]] = []
    ignored = 0
    for record in event.records:
        message = _classify(record.message_id, record.body, bucket, executions)
        if isinstance(message, DataObject):
            uploads.setdefault(message, set()).add(record.message_id)
        elif isinstance(message, ExecutionEnded):
            ended.append((record.message_id, message))
        else:
            ignored += 1
    failed: set[str] = set()
    queued: list[DataObject] = []
    try:
        queued = queue.enqueue(uploads, now)
    except Exception:
        # Throttling or an outage: the messages come back after the visibility timeout.
        logger.exception("could not queue the uploads", extra={"objects": len(uploads)})
        failed.update(m for ids in uploads.values() for m in ids)
    ended_runs: list[str] = []
    for message_id, run in ended:
        try:
            record_ended(run)
            queue.release(run.name)
            ended_runs.append(run.name)
        except Exception:
            logger.exception("could not close an ended run", extra={"runId": run.name})
            failed.add(message_id)
    outcome: Dispatch | None = None
    try:
        outcome = dispatch(queue, executions, max_objects=max_objects_per_run, now=now)
    except Exception:
        logger.exception("could not dispatch the queued objects")
        failed.update(record.message_id for record in event.records)
    if outcome is not None:
        logger.info(
            "dispatch",
            extra={
                "outcome": outcome.outcome,
                "runName": outcome.run_name,
                "objects": outcome.objects,
            },
        )
    duplicates = len(uploads) - len(queued) if not failed else 0
    return TriggerResult(
        queued=len(queued),
        duplicates=duplicates,
        ended_runs=tuple(ended_runs),
        dispatch=outcome,
        failed_message_ids=tuple(sorted(failed)),
        ignored_messages=ignored,
    )


def _classify(
    message_id: str, body: str, bucket: str, executions: StepFunctionsExecutions
) -> DataObject | ExecutionEnded | None:
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise TypeError("not a JSON object")
    except (ValueError, TypeError) as error:
        logger.error(
            "dropping a message that is not an event",
            extra={"messageId": message_id, "problem": str(error), "body": body[:1000]},
        )
        return None
    if document.get("source") == EVENT_SOURCE:
        return _ended_run(message_id, document, executions)
    return _object_in(message_id, document, bucket)


def _ended_run(
    message_id: str, document: Mapping[str, Any], executions: StepFunctionsExecutions
) -> ExecutionEnded | None:
    try:
        if document.get("detail-type") != EVENT_DETAIL_TYPE:
            raise ValueError(f"{document.get('detail-type')} is not an execution status change")
        detail = document.get("detail")
        if not isinstance(detail, Mapping):
            raise TypeError("detail is not an object")
        ended = ExecutionEnded.from_detail(detail)
    except (ValueError, TypeError) as error:
        logger.error(
            "dropping a Step Functions event that is not an execution status change",
            extra={"messageId": message_id, "problem": str(error)},
        )
        return None
    if ended.execution_arn != executions.arn(ended.name) or not ended.ended:
        logger.info(
            "ignoring an execution event of another state machine or a run still going",
            extra={"executionArn": ended.execution_arn, "status": ended.status},
        )
        return None
    return ended


def _object_in(message_id: str, document: dict[str, Any], bucket: str) -> DataObject | None:
    """The training object a message announces, or None (logged) for anything else."""
    try:
        s3_event = S3EventBridgeNotificationEvent(document)
        if s3_event.source != "aws.s3" or s3_event.detail_type != "Object Created":
            raise ValueError(f"{s3_event.source} {s3_event.detail_type} is not an upload")
        detail = s3_event.detail
        # detail.object.key is read raw: S3EventBridgeNotificationObject.key unquotes it, which
        # would turn a literal "+" in a key into a space.
        raw = detail.raw_event["object"]
        key = raw["key"]
        if not isinstance(key, str):
            raise TypeError("detail.object.key is not a string")
        event_bucket = detail.bucket.name
    except (ValueError, TypeError, KeyError) as error:
        logger.error(
            "dropping a message that is not an S3 Object Created event",
            extra={
                "messageId": message_id,
                "problem": str(error),
                "body": json.dumps(document)[:1000],
            },
        )
        return None
    if event_bucket != bucket:
        logger.warning("ignoring an upload to another bucket", extra={"bucket": event_bucket})
        return None
    name = key.rsplit("/", 1)[-1]
    # An empty name is a folder marker (the S3 console's "Create folder"), not data; neither is
    # a name or folder starting with _ or . (markers, Spark's _temporary/): the job skips them.
    if (
        not key.startswith(layout.TRAIN_PREFIX)
        or not name
        or layout.is_ignored(key[len(layout.TRAIN_PREFIX) :])
    ):
        logger.info("ignoring an object that is not training data", extra={"key": key})
        return None
    version = raw.get("version-id")
    size = raw.get("size")
    return DataObject(
        key=key,
        etag=_bare_etag(raw.get("etag") or raw.get("eTag")) or None,
        version_id=None if version in (None, "", "null") else str(version),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _bare_etag(etag: str | None) -> str:
    # S3 APIs quote ETags, EventBridge does not: compare the bare value.
    return (etag or "").strip('"')
