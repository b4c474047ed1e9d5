"""Intake queue and run lock: each uploaded object version trained once, one run at a time.

Uploads can arrive while a run trains and deploys; they must neither be dropped nor slipped
into the running run, and two runs must never deploy the same endpoint at once. Three kinds of
item in the runs table (docs/architecture.md) carry that:

- ``OBJECT#<stack>`` / ``<key>#<versionId or ETag>``: the **ledger**, one item per object version
  ever announced, written once (a redelivered event finds it and is dropped) and given the
  ``runName`` of the run that trains it. No TTL: it is the record of what was trained on.
- ``QUEUE#<stack>`` / the same sort key: objects announced but not yet given to a run. Ledger and
  queue item are written in one transaction, so an object is never in one without the other.
- ``LOCK#<stack>`` / ``HOLDER``: the run that trains and deploys the stack's model now, or is being
  started, with the execution input it was (or will be) started with.

:func:`dispatch` is the only thing that gives queued objects to a run. It runs after every
trigger batch and after every run ends (Step Functions "Execution Status Change" events), so
whatever queued up while a run was in flight is covered by exactly one follow-up run. It takes
the lock first, then the objects, then starts the execution; each step is idempotent and the
lock remembers the run being started, so a dispatcher that dies half-way is finished by the next
one instead of leaving objects taken by a run that never started. A lock whose run has ended is
taken over, so a missed end event never blocks the stack.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from refit import layout
from refit.ledger.run_records import RUNNING, dynamo_item, is_condition_failure, plain_item
from refit.run_input import DataObject
from refit.timestamps import parse_utc

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_stepfunctions import SFNClient

    from refit.ledger.run_records import RunRecords

logger = Logger(child=True)

EXECUTION_NAME_PREFIX = "s3-"
_NAME_HASH_CHARS = 40
# Well below Step Functions' 256 KiB input limit.
MAX_INPUT_BYTES = 200 * 1024
_INPUT_OVERHEAD_BYTES = 64
# DynamoDB: at most 100 actions per transaction, sort keys of at most 1024 bytes.
_OBJECTS_PER_TRANSACTION = 50
_SORT_KEY_MAX_BYTES = 1024
_TRANSACTION_ATTEMPTS = 5
# Not "RUN": RunRecords.list_runs reads every item whose sort key is RUN.
_LOCK_SORT_KEY = "HOLDER"

# Step Functions execution statuses; anything but RUNNING (and PENDING_REDRIVE) has ended.
ACTIVE_EXECUTION_STATUSES = ("RUNNING", "PENDING_REDRIVE")
# Step Functions keeps closed Standard executions for 90 days.
EXECUTION_RETENTION_DAYS = 90


class RunInProgress(RuntimeError):
    """Another run holds the stack's run lock: runs never overlap."""


def ledger_sort_key(obj: DataObject) -> str:
    """``<key>#<versionId or bare ETag>``: one item per object version.

    S3's "null" version (an unversioned bucket) is ``version_id=None``: the ETag tells
    overwrites apart then. A key too long for a sort key is replaced by its SHA-256.
    """
    version = obj.version_id or (obj.etag or "").strip('"')
    sort_key = f"{obj.key}#{version}"
    if len(sort_key.encode()) > _SORT_KEY_MAX_BYTES:
        sort_key = f"SHA256#{hashlib.sha256(sort_key.encode()).hexdigest()}"
    return sort_key


def execution_name(objects: Sequence[DataObject]) -> str:
    """``s3-<hash>``: the same objects always give the same name, whatever their order."""
    lines = sorted("\0".join(identity(obj)) for obj in objects)
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:_NAME_HASH_CHARS]
    name = f"{EXECUTION_NAME_PREFIX}{digest}"
    assert len(name) <= layout.EXECUTION_NAME_MAX
    return name


def identity(obj: DataObject) -> tuple[str, str, str]:
    """What makes two announcements the same object version: key, version id, bare ETag."""
    return (obj.key, obj.version_id or "", (obj.etag or "").strip('"'))


def execution_input(objects: Sequence[DataObject]) -> dict[str, Any]:
    """The input of a trigger-started run (see refit.run_input); ``retryOf`` when it carries
    objects queued again after a failed run (refit.start_retrain.quarantine)."""
    document: dict[str, Any] = {"source": "s3", "objects": [obj.to_dict() for obj in objects]}
    retried = sorted({obj.retry_of for obj in objects if obj.retry_of})
    if retried:
        document["retryOf"] = retried[0]
    return document


def input_bytes(obj: DataObject) -> int:
    """What one object adds to an execution input."""
    return len(json.dumps(obj.to_dict()).encode()) + 2


@dataclass(frozen=True)
class RunLock:
    """Who trains and deploys the stack's model; ``execution_input`` only for dispatched runs."""

    run_name: str
    acquired_at: str
    execution_input: Mapping[str, Any] | None = None

    @property
    def objects(self) -> tuple[DataObject, ...]:
        listed = (self.execution_input or {}).get("objects") or []
        return tuple(_data_object(item) for item in listed)


class Executions(Protocol):
    """Step Functions as the dispatcher needs it
    (refit.start_retrain.trigger.StepFunctionsExecutions)."""

    def status(self, name: str) -> str | None:
        """The execution's status, None when no execution has that name."""
        ...

    def start(self, name: str, execution_input: Mapping[str, Any]) -> bool:
        """Start it; False when it existed already (same name), which is success."""
        ...


class StepFunctionsExecutions:
    """:class:`refit.ledger.run_queue.Executions` over the stack's state machine."""

    def __init__(self, sfn: SFNClient, state_machine_arn: str) -> None:
        self._sfn = sfn
        self._state_machine_arn = state_machine_arn

    @classmethod
    def of_execution(cls, sfn: SFNClient, execution_arn: str) -> StepFunctionsExecutions:
        """The state machine an execution ARN belongs to (PrepareRun knows only its own)."""
        prefix, _name = execution_arn.rsplit(":", 1)
        return cls(sfn, prefix.replace(":execution:", ":stateMachine:", 1))

    def arn(self, name: str) -> str:
        # arn:aws:states:<region>:<account>:stateMachine:<machine> -> ...:execution:<machine>:<name>
        return f"{self._state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"

    def status(self, name: str) -> str | None:
        try:
            return self._sfn.describe_execution(executionArn=self.arn(name))["status"]
        except self._sfn.exceptions.ExecutionDoesNotExist:
            return None

    def start(self, name: str, execution_input: Mapping[str, Any]) -> bool:
        try:
            response = self._sfn.start_execution(
                stateMachineArn=self._state_machine_arn,
                name=name,
                input=canonical_json(execution_input),
            )
        except self._sfn.exceptions.ExecutionAlreadyExists:
            logger.info("run already started", extra={"executionName": name})
            return False
        logger.info(
            "run started", extra={"executionName": name, "executionArn": response["executionArn"]}
        )
        return True


class RunQueue:
    """Ledger, queue and lock items of one stack in the runs table."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, stack_name: str) -> None:
        self._db = dynamodb
        self._table = table_name
        self._stack = stack_name

    @property
    def _ledger_pk(self) -> str:
        return f"OBJECT#{self._stack}"

    @property
    def _queue_pk(self) -> str:
        return f"QUEUE#{self._stack}"

    @property
    def _lock_key(self) -> dict[str, str]:
        return {"pk": f"LOCK#{self._stack}", "sk": _LOCK_SORT_KEY}

    # --- intake -------------------------------------------------------------------------------
    def enqueue(self, objects: Iterable[DataObject], queued_at: str) -> list[DataObject]:
        """Queue the objects never seen before; returns them. Seen ones (duplicates) are skipped.

        One transaction per object group: "ledger item if absent" + "queue item", so an object
        is in the ledger exactly when it is queued or was given to a run.
        """
        unique: dict[str, DataObject] = {}
        for obj in objects:
            unique.setdefault(ledger_sort_key(obj), obj)
        queued: list[DataObject] = []
        items = sorted(unique.items())
        for start in range(0, len(items), _OBJECTS_PER_TRANSACTION):
            queued.extend(
                self._enqueue_group(
                    dict(items[start : start + _OBJECTS_PER_TRANSACTION]), queued_at
                )
            )
        return queued

    def _enqueue_group(self, group: dict[str, DataObject], queued_at: str) -> list[DataObject]:
        for attempt in range(_TRANSACTION_ATTEMPTS):
            if not group:
                return []
            actions: list[Any] = []
            for sort_key, obj in group.items():
                attributes = {**_object_attributes(obj), "queuedAt": queued_at}
                actions.append(
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": dynamo_item(
                                {"pk": self._ledger_pk, "sk": sort_key, **attributes}
                            ),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                )
                actions.append(
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": dynamo_item(
                                {"pk": self._queue_pk, "sk": sort_key, **attributes}
                            ),
                        }
                    }
                )
            try:
                self._db.transact_write_items(TransactItems=actions)
                return list(group.values())
            except ClientError as error:
                seen = _already_in_ledger(error, list(group))
                # Duplicates are dropped and the rest retried; only a conflict that persists
                # (or an error we do not understand) reaches the caller.
                if seen is None or (not seen and attempt == _TRANSACTION_ATTEMPTS - 1):
                    raise
                for sort_key in seen:
                    logger.info(
                        "object already announced: not queued again",
                        extra={"key": group[sort_key].key, "versionId": group[sort_key].version_id},
                    )
                    del group[sort_key]
                if not seen:  # a conflict with a concurrent transaction: try again
                    time.sleep(0.05 * (attempt + 1))
        return []

    def pending(self, max_objects: int, max_input_bytes: int = MAX_INPUT_BYTES) -> list[DataObject]:
        """The queued objects the next run takes: at most ``max_objects`` and the input budget."""
        found: list[DataObject] = []
        size = _INPUT_OVERHEAD_BYTES
        for item in self._query(self._queue_pk):
            obj = _data_object(item)
            size += input_bytes(obj)
            if len(found) >= max_objects or size > max_input_bytes:
                break
            found.append(obj)
        return found

    def queued_count(self) -> int:
        return sum(1 for _ in self._query(self._queue_pk, count_only=True))

    def take(self, run_name: str, objects: Sequence[DataObject], taken_at: str) -> None:
        """Give objects to ``run_name``: ledger names the run, queue items go.

        Also for objects never announced (a manual run's files): their ledger item is created,
        so an S3 event arriving late for them is a duplicate. Idempotent, and only the lock
        holder calls it, so no condition is needed.
        """
        for start in range(0, len(objects), _OBJECTS_PER_TRANSACTION):
            actions: list[Any] = []
            for obj in objects[start : start + _OBJECTS_PER_TRANSACTION]:
                sort_key = ledger_sort_key(obj)
                known = {k: v for k, v in _object_attributes(obj).items() if v is not None}
                names = {f"#o{i}": name for i, name in enumerate(known)}
                values = {f":o{i}": value for i, value in enumerate(known.values())}
                described = "".join(
                    f", #o{i} = if_not_exists(#o{i}, :o{i})" for i in range(len(known))
                )
                actions.append(
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": dynamo_item({"pk": self._ledger_pk, "sk": sort_key}),
                            "UpdateExpression": f"SET runName = :run, claimedAt = :at{described}",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": dynamo_item(
                                {":run": run_name, ":at": taken_at, **values}
                            ),
                        }
                    }
                )
                actions.append(
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": dynamo_item({"pk": self._queue_pk, "sk": sort_key}),
                        }
                    }
                )
            self._db.transact_write_items(TransactItems=actions)

    def requeue(self, failed_run: str, objects: Iterable[DataObject], queued_at: str) -> int:
        """Queue objects ``failed_run`` took once more, noting it (``retryOf``); returns how many.

        Only objects whose ledger still names ``failed_run`` go back (a redelivered end event
        queues nothing twice); their ledger item says "queued" again, so a late S3 event for
        them stays a duplicate.
        """
        requeued = 0
        for obj in objects:
            sort_key = ledger_sort_key(obj)
            attributes = {k: v for k, v in _object_attributes(obj).items() if v is not None} | {
                "queuedAt": queued_at,
                "retryOf": failed_run,
            }
            actions: list[Any] = [
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": dynamo_item({"pk": self._ledger_pk, "sk": sort_key}),
                        "UpdateExpression": "REMOVE runName, claimedAt SET queuedAt = :at",
                        "ConditionExpression": "runName = :run",
                        "ExpressionAttributeValues": dynamo_item(
                            {":run": failed_run, ":at": queued_at}
                        ),
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": dynamo_item({"pk": self._queue_pk, "sk": sort_key, **attributes}),
                    }
                },
            ]
            try:
                self._db.transact_write_items(TransactItems=actions)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                logger.info("not queued again", extra={"key": obj.key, "runName": failed_run})
                continue
            requeued += 1
        return requeued

    def ledger(self, objects: Iterable[DataObject]) -> dict[DataObject, str | None]:
        """Ledger state of each object seen before: the run that took it, or None while queued."""
        found: dict[DataObject, str | None] = {}
        for obj in objects:
            response = self._db.get_item(
                TableName=self._table,
                Key=dynamo_item({"pk": self._ledger_pk, "sk": ledger_sort_key(obj)}),
                ConsistentRead=True,
            )
            if "Item" in response:
                found[obj] = plain_item(response["Item"]).get("runName")
        return found

    # --- lock ---------------------------------------------------------------------------------
    def current_lock(self) -> RunLock | None:
        response = self._db.get_item(
            TableName=self._table, Key=dynamo_item(self._lock_key), ConsistentRead=True
        )
        if "Item" not in response:
            return None
        item = plain_item(response["Item"])
        raw_input = item.get("executionInput")
        return RunLock(
            run_name=item["runName"],
            acquired_at=item["acquiredAt"],
            execution_input=json.loads(raw_input) if isinstance(raw_input, str) else None,
        )

    def acquire(self, lock: RunLock) -> bool:
        """Take the lock if nobody holds it; False otherwise."""
        attributes: dict[str, Any] = {
            **self._lock_key,
            "runName": lock.run_name,
            "acquiredAt": lock.acquired_at,
        }
        if lock.execution_input is not None:
            attributes["executionInput"] = canonical_json(lock.execution_input)
        try:
            self._db.put_item(
                TableName=self._table,
                Item=dynamo_item(attributes),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            return False
        return True

    def release(self, run_name: str) -> bool:
        """Drop the lock if ``run_name`` holds it; False when it does not (nothing changes)."""
        try:
            self._db.delete_item(
                TableName=self._table,
                Key=dynamo_item(self._lock_key),
                ConditionExpression="runName = :run",
                ExpressionAttributeValues=dynamo_item({":run": run_name}),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            return False
        return True

    def _query(self, pk: str, count_only: bool = False) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": dynamo_item({":pk": pk}),
            "ConsistentRead": True,
        }
        if count_only:
            kwargs["ProjectionExpression"] = "sk"
        while True:
            page = self._db.query(**kwargs)
            for raw in page.get("Items", []):
                yield plain_item(raw)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass(frozen=True)
class Dispatch:
    """What :func:`dispatch` did: ``started`` a run, found the lock ``busy``, or ``idle``."""

    outcome: Literal["started", "busy", "idle"]
    run_name: str | None = None
    objects: int = 0
    resumed: bool = False


def dispatch(queue: RunQueue, executions: Executions, *, max_objects: int, now: str) -> Dispatch:
    """Start the next run if none is in flight and objects are queued.

    Safe to call any number of times from any number of places at once: at most one run holds
    the lock, and a dispatcher that finds the lock held by a run it cannot see started finishes
    starting it (same name, same input: idempotent in Step Functions).
    """
    for _ in range(3):  # the lock changed hands meanwhile: look again
        lock = queue.current_lock()
        if lock is not None:
            status = executions.status(lock.run_name)
            if status in ACTIVE_EXECUTION_STATUSES:
                return Dispatch("busy", lock.run_name)
            if status is None and _outlived_retention(lock.acquired_at, now):
                # Step Functions forgets closed executions after 90 days: this run ran long ago
                # and its end was never processed. Starting it again would retrain old data.
                logger.warning(
                    "releasing the lock of a forgotten run", extra={"runName": lock.run_name}
                )
                queue.release(lock.run_name)
                continue
            if status is None:
                if lock.execution_input is None:
                    # A manual run's PrepareRun took it: that execution exists, so this is a
                    # read racing its start. Leave it.
                    return Dispatch("busy", lock.run_name)
                queue.take(lock.run_name, lock.objects, now)
                executions.start(lock.run_name, lock.execution_input)
                logger.info(
                    "finished starting a dispatched run",
                    extra={"runName": lock.run_name, "objects": len(lock.objects)},
                )
                return Dispatch("started", lock.run_name, len(lock.objects), resumed=True)
            # The holder ended but its end was not processed (yet): the lock is stale.
            logger.warning(
                "taking over the lock of a run that has ended",
                extra={"runName": lock.run_name, "status": status},
            )
            queue.release(lock.run_name)
            continue
        pending = queue.pending(max_objects)
        if not pending:
            return Dispatch("idle")
        name = execution_name(pending)
        run_input = execution_input(pending)
        if not queue.acquire(RunLock(name, now, run_input)):
            continue
        queue.take(name, pending, now)
        executions.start(name, run_input)
        logger.info(
            "dispatched the queued objects", extra={"runName": name, "objects": len(pending)}
        )
        return Dispatch("started", name, len(pending))
    return Dispatch("busy")


def hold_run_lock(
    queue: RunQueue,
    records: RunRecords,
    run_name: str,
    now: str,
    executions: Callable[[], Executions] | None = None,
) -> None:
    """PrepareRun's guard: this run holds the lock, or it raises :class:`RunInProgress`.

    A dispatched run finds the lock already its own. A manual run takes it when free, or when
    its holder has ended: its record is finished, or (its end event not processed yet, e.g.
    stopped by hand with no upload since) Step Functions says so. ``executions`` is built only
    then: the lock is free on almost every call.
    """
    for _ in range(3):
        lock = queue.current_lock()
        if lock is None:
            if queue.acquire(RunLock(run_name, now)):
                return
            continue
        if lock.run_name == run_name:
            return
        holder = records.get_run(lock.run_name)
        ended = holder is not None and holder.get("status") != RUNNING
        if not ended and executions is not None:
            # None: a dispatched run not started yet, which is busy too.
            status = executions().status(lock.run_name)
            ended = status is not None and status not in ACTIVE_EXECUTION_STATUSES
        if ended:
            queue.release(lock.run_name)
            continue
        raise RunInProgress(
            f"run {lock.run_name} has been training or deploying this stack's model since "
            f"{lock.acquired_at}; runs never overlap. Start this run again once it has ended "
            "(see `refit runs`); uploads made meanwhile are queued and need no action."
        )
    raise RunInProgress("the run lock kept changing hands; start this run again")


def _outlived_retention(acquired_at: str, now: str) -> bool:
    """Older than Step Functions' retention of closed executions (90 days)."""
    try:
        age = parse_utc(now) - parse_utc(acquired_at)
    except ValueError:
        return False
    return age > timedelta(days=EXECUTION_RETENTION_DAYS)


def canonical_json(document: Mapping[str, Any]) -> str:
    """Step Functions treats "same name and same input" as the same StartExecution."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _object_attributes(obj: DataObject) -> dict[str, Any]:
    return {"key": obj.key, "versionId": obj.version_id, "etag": obj.etag, "size": obj.size}


def _data_object(item: Mapping[str, Any]) -> DataObject:
    size = item.get("size")
    retry_of = item.get("retryOf")
    return DataObject(
        key=str(item["key"]),
        etag=item.get("etag"),
        version_id=item.get("versionId"),
        size=size if isinstance(size, int) else None,
        retry_of=retry_of if isinstance(retry_of, str) else None,
    )


def _already_in_ledger(error: ClientError, sort_keys: list[str]) -> list[str] | None:
    """Sort keys whose ledger put failed its condition, from a cancelled transaction.

    None when the error is not a cancellation we understand (the caller re-raises); an empty
    list when it was cancelled for another reason (a conflicting transaction: retry).
    """
    if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return None
    reasons = error.response.get("CancellationReasons")
    if not isinstance(reasons, list) or len(reasons) != 2 * len(sort_keys):
        return None
    return [
        sort_keys[i // 2]
        for i, reason in enumerate(reasons)
        if i % 2 == 0 and reason.get("Code") == "ConditionalCheckFailed"
    ]
