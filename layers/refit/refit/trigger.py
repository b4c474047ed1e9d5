"""From a burst of S3 uploads to as few retraining runs as possible, each object trained once.

S3 sends "Object Created" to EventBridge, a rule forwards it to SQS, and SQS hands batches to
StartRetrain. One batch becomes one execution per ``MAX_OBJECTS_PER_RUN`` objects. Four layers
keep duplicate deliveries (S3 and SQS are both at-least-once) from training twice:

1. objects are de-duplicated by ``(key, versionId, etag)`` inside the batch: an overwritten key
   is a new version, hence new data; a repeated event for the same version is not;
2. each object version is claimed in the runs table by the run that covers it
   (:class:`ObjectClaims`): an event delivered again in a later, differently composed batch finds
   its object claimed by another run and is dropped (the message is consumed); a run whose
   objects were all claimed already starts nothing;
3. the execution name is a hash of the objects it covers, so a redelivered batch asks for the
   same name and Step Functions refuses a second execution (``ExecutionAlreadyExists``, or the
   running execution itself when the input is identical); a retried batch takes back the claims
   its own name holds;
4. the handler wraps each StartExecution in Powertools idempotency (keyed on that name), which
   answers repeats from DynamoDB without calling Step Functions.

A message that is not an S3 "Object Created" event is logged and dropped: retrying it cannot
make it valid, and returning it as a failure would loop it until the DLQ with no gain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent, SQSEvent

from refit import layout
from refit.run_input import DataObject

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

logger = Logger(child=True)

EXECUTION_NAME_PREFIX = "s3-"
_NAME_HASH_CHARS = 40
# Well below Step Functions' 256 KiB input limit.
MAX_INPUT_BYTES = 200 * 1024
_INPUT_OVERHEAD_BYTES = 64


class StartExecution(Protocol):
    """Starts one run; the handler passes an idempotent wrapper of :func:`start_execution`."""

    def __call__(self, *, run: dict[str, Any]) -> dict[str, Any]: ...


class ObjectClaims(Protocol):
    """Which run owns which object version; :class:`refit.run_records.RunRecords` implements it."""

    def object_claims(self, objects: Iterable[DataObject]) -> dict[DataObject, str]: ...

    def claim_objects(
        self, run_name: str, objects: Sequence[DataObject], claimed_at: str
    ) -> list[DataObject]: ...

    def release_objects(self, run_name: str, objects: Iterable[DataObject]) -> None: ...


class ClaimRace(RuntimeError):
    """Another run claimed some of this run's objects between reading and claiming them."""


@dataclass(frozen=True)
class RunChunk:
    """The objects of one execution and the name derived from them."""

    name: str
    objects: tuple[DataObject, ...]
    message_ids: tuple[str, ...]

    def request(self) -> dict[str, Any]:
        """What :class:`StartExecution` receives: the name and the execution input."""
        return {
            "name": self.name,
            "input": {"source": "s3", "objects": [o.to_dict() for o in self.objects]},
        }


@dataclass(frozen=True)
class TriggerResult:
    started: tuple[str, ...]
    already_started: tuple[str, ...]
    failed_message_ids: tuple[str, ...]
    ignored_messages: int
    already_claimed: int = 0

    def response(self) -> dict[str, Any]:
        """The SQS partial-batch response (``ReportBatchItemFailures``)."""
        return {"batchItemFailures": [{"itemIdentifier": m} for m in self.failed_message_ids]}


def start_retraining(
    event: SQSEvent,
    bucket: str,
    max_objects_per_run: int,
    start: StartExecution,
    claims: ObjectClaims,
) -> TriggerResult:
    """Turn one SQS batch into runs; messages of runs that could not start are retried.

    Failures are reported per message rather than by raising: the runs that did start must not
    be asked for again under a different batch composition, which would give them a new name.
    """
    parsed = list(_objects_in(event, bucket))
    found = [(message_id, obj) for message_id, obj in parsed if obj is not None]
    chunks = plan_runs(found, max_objects_per_run)
    started: list[str] = []
    already: list[str] = []
    failed: list[str] = []
    dropped = 0
    for planned in chunks:
        try:
            chunk = unclaimed_part(planned, claims.object_claims(planned.objects))
        except Exception:
            logger.exception("could not read the claims", extra={"executionName": planned.name})
            failed.extend(planned.message_ids)
            continue
        dropped += len(planned.objects) - len(chunk.objects)
        if not chunk.objects:
            logger.info(
                "every object of this run was claimed by an earlier run: nothing to start",
                extra={"messageIds": list(planned.message_ids)},
            )
            continue
        try:
            _claim(claims, chunk)
        except Exception:
            logger.exception(
                "could not claim the run's objects", extra={"executionName": chunk.name}
            )
            failed.extend(chunk.message_ids)
            continue
        try:
            outcome = start(run=chunk.request())
        except Exception:
            # Step Functions throttling or an outage: these messages come back after the
            # visibility timeout (and reach the DLQ after maxReceiveCount). The claims go, so
            # the redelivery may cover these objects whatever batch it comes in.
            logger.exception("could not start run", extra={"executionName": chunk.name})
            _release(claims, chunk)
            failed.extend(chunk.message_ids)
            continue
        (started if outcome.get("status") == "started" else already).append(chunk.name)
    ignored = len(parsed) - len(found)
    return TriggerResult(
        tuple(started), tuple(already), tuple(sorted(set(failed))), ignored, dropped
    )


def unclaimed_part(chunk: RunChunk, claimed_by: dict[DataObject, str]) -> RunChunk:
    """The chunk without objects other runs claimed, named after what remains.

    Objects claimed under the very name the remaining objects hash to are this run's own claims
    (a retry after claiming but before starting the execution), so they stay.
    """
    kept = [obj for obj in chunk.objects if obj not in claimed_by]
    for name in sorted(set(claimed_by.values())):
        candidate = [o for o in chunk.objects if o not in claimed_by or claimed_by[o] == name]
        if execution_name(candidate) == name:
            kept = candidate
            break
    for obj in chunk.objects:
        if obj not in kept:
            logger.info(
                "object already claimed by another run: dropped",
                extra={"key": obj.key, "versionId": obj.version_id, "runName": claimed_by[obj]},
            )
    if len(kept) == len(chunk.objects):
        return chunk
    return replace(chunk, name=execution_name(kept) if kept else "", objects=tuple(kept))


def _claim(claims: ObjectClaims, chunk: RunChunk) -> None:
    """Claim all objects of the chunk, or none: a lost race releases ours and raises."""
    claimed_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    lost = claims.claim_objects(chunk.name, chunk.objects, claimed_at)
    if lost:
        _release(claims, chunk)
        raise ClaimRace(
            f"{len(lost)} object(s) of {chunk.name} were claimed by another run meanwhile; "
            "the redelivery will leave them out"
        )


def _release(claims: ObjectClaims, chunk: RunChunk) -> None:
    try:
        claims.release_objects(chunk.name, chunk.objects)
    except Exception:
        # The claims stay under a name never started; a retry of this batch takes them back.
        logger.exception("could not release the run's claims", extra={"executionName": chunk.name})


def start_execution(sfn: SFNClient, state_machine_arn: str, run: dict[str, Any]) -> dict[str, Any]:
    """StartExecution for one chunk; an execution of that name existing already is success."""
    name = run["name"]
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=name,
            # Canonical JSON: Step Functions treats "same name and same input" as the same call.
            input=json.dumps(run["input"], sort_keys=True, separators=(",", ":")),
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        logger.info("run already started for these objects", extra={"executionName": name})
        return {"name": name, "status": "already-started"}
    arn = response["executionArn"]
    logger.info("run started", extra={"executionName": name, "executionArn": arn})
    return {"name": name, "status": "started", "executionArn": arn}


def plan_runs(found: Iterable[tuple[str, DataObject]], max_objects_per_run: int) -> list[RunChunk]:
    """De-duplicate, sort and chunk ``(message id, object)`` pairs into named runs.

    A run also ends before its execution input would outgrow ``MAX_INPUT_BYTES`` (Step
    Functions refuses inputs over 256 KiB; S3 keys can be 1 KiB each).
    """
    messages: dict[DataObject, set[str]] = {}
    for message_id, obj in found:
        messages.setdefault(obj, set()).add(message_id)
    groups: list[list[DataObject]] = []
    size = 0
    for obj in sorted(messages, key=_identity):
        item_size = len(json.dumps(obj.to_dict()).encode()) + 2
        if (
            not groups
            or len(groups[-1]) >= max_objects_per_run
            or size + item_size > MAX_INPUT_BYTES
        ):
            groups.append([])
            size = _INPUT_OVERHEAD_BYTES
        groups[-1].append(obj)
        size += item_size
    return [
        RunChunk(
            execution_name(group),
            tuple(group),
            tuple(sorted({m for obj in group for m in messages[obj]})),
        )
        for group in groups
    ]


def execution_name(objects: Sequence[DataObject]) -> str:
    """``s3-<hash>``: the same objects always give the same name, whatever their order."""
    lines = sorted("\0".join(_identity(obj)) for obj in objects)
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:_NAME_HASH_CHARS]
    name = f"{EXECUTION_NAME_PREFIX}{digest}"
    assert len(name) <= layout.EXECUTION_NAME_MAX
    return name


def _identity(obj: DataObject) -> tuple[str, str, str]:
    return (obj.key, obj.version_id or "", _bare_etag(obj.etag))


def _bare_etag(etag: str | None) -> str:
    # S3 APIs quote ETags, EventBridge does not: compare the bare value.
    return (etag or "").strip('"')


def _objects_in(event: SQSEvent, bucket: str) -> Iterable[tuple[str, DataObject | None]]:
    for record in event.records:
        yield record.message_id, _object_in(record.message_id, record.body, bucket)


def _object_in(message_id: str, body: str, bucket: str) -> DataObject | None:
    """The training object a message announces, or None (logged) for anything else."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise TypeError("not a JSON object")
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
            extra={"messageId": message_id, "problem": str(error), "body": body[:1000]},
        )
        return None
    if event_bucket != bucket:
        logger.warning("ignoring an upload to another bucket", extra={"bucket": event_bucket})
        return None
    name = key.rsplit("/", 1)[-1]
    if not key.startswith(layout.TRAIN_PREFIX) or name.startswith(layout.IGNORED_NAME_PREFIXES):
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
