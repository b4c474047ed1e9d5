"""The intake queue and the run lock in moto: each object version trained once, one run at once."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.stepfunctions.models import stepfunctions_backends

from refit.ledger.run_queue import (
    MAX_INPUT_BYTES,
    Dispatch,
    RunInProgress,
    RunLock,
    RunQueue,
    StepFunctionsExecutions,
    canonical_json,
    dispatch,
    execution_input,
    execution_name,
    hold_run_lock,
    ledger_sort_key,
)
from refit.ledger.run_records import RunRecords
from refit.run_input import DataObject
from tests.unit.builders import (
    create_state_machine,
    end_execution,
    execution_arn,
    execution_statuses,
    executions,
)
from tests.unit.moto_stack import ACCOUNT, REGION, STACK, TABLE, Aws

VALID_EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
NOW = "2026-11-28T10:00:00Z"


def obj(name: str, version: str | None = "v1", etag: str = "e1") -> DataObject:
    return DataObject(f"data/train/{name}", etag, version, 10)


def run_queue(aws: Aws, dynamodb: Any = None) -> RunQueue:
    return RunQueue(dynamodb or aws.dynamodb, TABLE, STACK)


def sfn(aws: Aws) -> StepFunctionsExecutions:
    return StepFunctionsExecutions(aws.stepfunctions, aws.settings.state_machine_arn)


def items(aws: Aws, kind: str) -> dict[str, dict[str, Any]]:
    """The ledger (OBJECT) or queue (QUEUE) items by sort key, as stored."""
    response = aws.dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"{kind}#{STACK}"}},
    )
    return {item["sk"]["S"]: item for item in response["Items"]}


def assert_ledger_and_queue_agree(aws: Aws) -> None:
    """An object is queued exactly when its ledger item names no run yet."""
    ledger, queued = items(aws, "OBJECT"), items(aws, "QUEUE")
    assert set(queued) <= set(ledger)
    for sort_key, item in ledger.items():
        assert ("runName" in item) is (sort_key not in queued), sort_key


def started(aws: Aws) -> list[dict[str, Any]]:
    return executions(aws.stepfunctions, aws.settings.state_machine_arn)


def keys_of(run: dict[str, Any]) -> list[str]:
    return [o["key"] for o in run["input"]["objects"]]


def end(aws: Aws, name: str, status: str = "ABORTED") -> None:
    end_execution(aws.stepfunctions, execution_arn(aws.settings.state_machine_arn, name), status)


def running(aws: Aws) -> list[str]:
    statuses = execution_statuses(aws.stepfunctions, aws.settings.state_machine_arn)
    return [name for name, status in statuses.items() if status == "RUNNING"]


# --- names -------------------------------------------------------------------------------------


def test_ledger_sort_keys_tell_versions_apart() -> None:
    # A version id names the version; without one ("null"), the bare ETag does
    assert ledger_sort_key(obj("a.csv", "v1")) == "data/train/a.csv#v1"
    assert ledger_sort_key(obj("u.csv", None, '"e1"')) == "data/train/u.csv#e1"
    assert ledger_sort_key(obj("u.csv", None, "e1")) == ledger_sort_key(obj("u.csv", None, '"e1"'))
    assert ledger_sort_key(obj("u.csv", None, "e2")) != ledger_sort_key(obj("u.csv", None, "e1"))
    # A key too long for a DynamoDB sort key is hashed, still per version
    long_v1, long_v2 = obj("k" * 1020, "v1"), obj("k" * 1020, "v2")
    assert ledger_sort_key(long_v1).startswith("SHA256#")
    assert len(ledger_sort_key(long_v1).encode()) <= 1024
    assert ledger_sort_key(long_v1) != ledger_sort_key(long_v2)


def test_execution_name_is_a_valid_hash_of_the_objects_in_any_order() -> None:
    a = DataObject("data/train/a.csv", '"e1"', "v1", 1)
    b = DataObject("data/train/b.csv", "e2", None, 2)
    name = execution_name([a, b])
    assert VALID_EXECUTION_NAME.match(name)
    assert name.startswith("s3-")
    # Order, size and ETag quoting do not matter; a different version does
    assert execution_name([b, a]) == name
    assert execution_name([DataObject("data/train/a.csv", "e1", "v1"), b]) == name
    assert execution_name([DataObject("data/train/a.csv", "e1", "v2"), b]) != name
    assert execution_name([a]) != name


# --- intake ------------------------------------------------------------------------------------


def test_an_object_version_is_queued_once_even_after_its_run_took_it(aws: Aws) -> None:
    queue = run_queue(aws)
    a, b = obj("a.csv"), obj("b.csv")
    # Given a.csv announced 3 times in one call
    assert queue.enqueue([a, a, a], NOW) == [a]
    # When it is announced again, alone and with b.csv
    assert queue.enqueue([a], NOW) == []
    assert queue.enqueue([b, a], NOW) == [b]
    # Then it is queued once, and the ledger knows both, taken by no run yet
    assert queue.queued_count() == 2
    assert queue.ledger([a, b, obj("c.csv")]) == {a: None, b: None}
    assert_ledger_and_queue_agree(aws)
    # And once a run took them, announcing them again never queues them again
    queue.take("s3-run", [a, b], NOW)
    assert queue.queued_count() == 0
    for _ in range(4):
        assert queue.enqueue([a, b, a], NOW) == []
    assert queue.queued_count() == 0
    assert queue.ledger([a, b]) == {a: "s3-run", b: "s3-run"}
    assert_ledger_and_queue_agree(aws)


def test_an_overwritten_key_is_new_data(aws: Aws) -> None:
    queue = run_queue(aws)
    # Given a version of a key in a versioned bucket and one in an unversioned bucket, taken
    old = [obj("a.csv", "v1", "e1"), obj("u.csv", None, "e1")]
    queue.enqueue(old, NOW)
    queue.take("s3-first", old, NOW)
    # When both keys are overwritten (a new version id; only a new ETag)
    new = [obj("a.csv", "v2", "e2"), obj("u.csv", None, "e2")]
    queued = queue.enqueue([*new, *old], NOW)
    # Then the new versions are queued, the old ones are not
    assert queued == new
    assert queue.pending(100) == new
    assert_ledger_and_queue_agree(aws)


def test_the_queue_item_describes_the_object(aws: Aws) -> None:
    queue = run_queue(aws)
    plain = DataObject("data/train/c++ notes.csv", "aa", None, None)
    queue.enqueue([obj("a.csv"), plain], NOW)
    # The objects come back as they were announced, None fields included
    assert queue.pending(100) == [obj("a.csv"), plain]
    item = items(aws, "QUEUE")["data/train/a.csv#v1"]
    assert item["queuedAt"] == {"S": NOW}


def test_many_objects_are_queued_over_several_transactions(aws: Aws) -> None:
    queue = run_queue(aws)
    objects = [obj(f"{i:04d}.csv") for i in range(110)]
    # Given every third object already announced, spread over every transaction
    seen = objects[::3]
    queue.enqueue(seen, NOW)
    # When all 110 are announced (transactions of at most 100 actions)
    queued = queue.enqueue(objects, NOW)
    # Then exactly the others are queued
    assert sorted(o.key for o in queued) == sorted(o.key for o in objects if o not in seen)
    assert queue.queued_count() == 110
    assert_ledger_and_queue_agree(aws)


class FlakyDynamoDB:
    """A DynamoDB client whose next transactions fail as chosen, then behave."""

    def __init__(self, client: Any, failures: Sequence[Callable[[dict[str, Any]], None]]) -> None:
        self._client = client
        self._failures = list(failures)
        self.transactions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        if self._failures:
            self._failures.pop(0)(kwargs)
        return self._client.transact_write_items(**kwargs)


def cancelled(codes: Callable[[int], str]) -> Callable[[dict[str, Any]], None]:
    """Fail a transaction as TransactionCanceledException with a reason per action."""

    def fail(kwargs: dict[str, Any]) -> None:
        count = len(kwargs["TransactItems"])
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                "CancellationReasons": [{"Code": codes(i)} for i in range(count)],
            },
            "TransactWriteItems",
        )

    return fail


def conflict(kwargs: dict[str, Any]) -> None:
    cancelled(lambda i: "TransactionConflict" if i == 0 else "None")(kwargs)


def throttled(kwargs: dict[str, Any]) -> None:
    raise ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems"
    )


def test_a_transaction_conflict_is_retried_and_queues_everything(aws: Aws) -> None:
    # Given DynamoDB cancelling the first two transactions for a conflicting write
    flaky = FlakyDynamoDB(aws.dynamodb, [conflict, conflict])
    objects = [obj("a.csv"), obj("b.csv")]
    # When objects are queued
    queued = run_queue(aws, flaky).enqueue(objects, NOW)
    # Then the third attempt queued them all
    assert queued == objects
    assert flaky.transactions == 3
    assert run_queue(aws).queued_count() == 2
    assert_ledger_and_queue_agree(aws)


def test_a_cancelled_transaction_drops_only_the_duplicates(aws: Aws) -> None:
    # Given b.csv announced before, and a conflict on the first attempt (then moto's real
    # conditional failure for b.csv)
    run_queue(aws).enqueue([obj("b.csv")], NOW)
    run_queue(aws).take("s3-old", [obj("b.csv")], NOW)
    flaky = FlakyDynamoDB(aws.dynamodb, [conflict])
    # When a.csv, b.csv and c.csv are queued
    queued = run_queue(aws, flaky).enqueue([obj("a.csv"), obj("b.csv"), obj("c.csv")], NOW)
    # Then a.csv and c.csv are queued, b.csv stays with its run
    assert queued == [obj("a.csv"), obj("c.csv")]
    assert flaky.transactions == 3  # conflict, conditional failure, success
    assert run_queue(aws).ledger([obj("b.csv")]) == {obj("b.csv"): "s3-old"}
    assert [o.key for o in run_queue(aws).pending(10)] == ["data/train/a.csv", "data/train/c.csv"]
    assert_ledger_and_queue_agree(aws)


def test_a_cancellation_naming_every_object_queues_nothing(aws: Aws) -> None:
    # Given a cancellation that says every ledger item exists (a concurrent batch queued them)
    flaky = FlakyDynamoDB(
        aws.dynamodb, [cancelled(lambda i: "ConditionalCheckFailed" if i % 2 == 0 else "None")]
    )
    # When they are queued
    queued = run_queue(aws, flaky).enqueue([obj("a.csv"), obj("b.csv")], NOW)
    # Then nothing is queued and nothing is tried again
    assert queued == []
    assert flaky.transactions == 1


def mismatched_reasons(kwargs: dict[str, Any]) -> None:
    # A cancellation whose reasons do not match the actions cannot be understood
    cancelled(lambda i: "ConditionalCheckFailed")({"TransactItems": kwargs["TransactItems"][:1]})


@pytest.mark.parametrize(
    "failure",
    [throttled, mismatched_reasons, conflict],
    ids=["throttled", "mismatched-reasons", "conflicts-every-time"],
)
def test_errors_the_queue_cannot_settle_reach_the_caller(
    aws: Aws, failure: Callable[[dict[str, Any]], None]
) -> None:
    # Given DynamoDB failing every transaction the same way
    flaky = FlakyDynamoDB(aws.dynamodb, [failure] * 5)
    # Then queueing fails (after the retries a conflict gets)
    with pytest.raises(ClientError):
        run_queue(aws, flaky).enqueue([obj("a.csv")], NOW)
    assert flaky.transactions == (5 if failure is conflict else 1)
    # Nothing was queued, so the messages (returned to SQS) queue it later
    assert run_queue(aws).queued_count() == 0
    assert items(aws, "OBJECT") == {}


def test_pending_respects_the_object_and_input_limits(aws: Aws) -> None:
    queue = run_queue(aws)
    objects = [obj(f"{i:03d}.csv") for i in range(30)]
    queue.enqueue(objects, NOW)
    # In key order, at most max_objects
    assert queue.pending(10) == objects[:10]
    assert queue.pending(100) == objects
    # And at most the input budget: 5 objects plus the envelope fit, a sixth does not
    one = len(json.dumps(objects[0].to_dict()).encode()) + 2
    assert queue.pending(100, max_input_bytes=64 + 5 * one) == objects[:5]
    # Reading takes nothing
    assert queue.queued_count() == 30


# --- lock --------------------------------------------------------------------------------------


def test_the_lock_has_one_holder_and_only_it_lets_go(aws: Aws) -> None:
    queue = run_queue(aws)
    run_input = execution_input([obj("a.csv")])
    assert queue.current_lock() is None
    # Given run-1 holding the lock with its input
    assert queue.acquire(RunLock("run-1", NOW, run_input)) is True
    # Then nobody else can take it, and only run-1 releases it
    assert queue.acquire(RunLock("run-2", NOW)) is False
    assert queue.release("run-2") is False
    lock = queue.current_lock()
    assert lock == RunLock("run-1", NOW, run_input)
    assert lock is not None and lock.objects == (obj("a.csv"),)
    assert queue.release("run-1") is True
    assert queue.current_lock() is None
    # A manual run's lock has no input and no objects
    assert queue.acquire(RunLock("manual-1", NOW)) is True
    assert queue.current_lock() == RunLock("manual-1", NOW, None)


# --- dispatch ----------------------------------------------------------------------------------


def test_dispatch_starts_one_run_for_everything_queued(aws: Aws) -> None:
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    # Nothing queued: nothing to do
    assert dispatch(queue, sfn(aws), max_objects=100, now=NOW) == Dispatch("idle")
    # Given two objects queued
    queue.enqueue([obj("b.csv"), obj("a.csv")], NOW)
    # When dispatched, twice
    first = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    second = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    # Then one run, named after its objects, took both; the second dispatch found it busy
    name = execution_name([obj("a.csv"), obj("b.csv")])
    assert first == Dispatch("started", name, 2)
    assert second == Dispatch("busy", name)
    (run,) = started(aws)
    assert run == {"name": name, "input": execution_input([obj("a.csv"), obj("b.csv")])}
    assert queue.queued_count() == 0
    assert queue.ledger([obj("a.csv"), obj("b.csv")]) == {obj("a.csv"): name, obj("b.csv"): name}
    assert queue.current_lock() == RunLock(name, NOW, run["input"])
    assert_ledger_and_queue_agree(aws)


def test_uploads_during_a_run_wait_for_it(aws: Aws) -> None:
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    queue.enqueue([obj("a.csv")], NOW)
    first = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    # When more objects come while it runs
    for n in range(3):
        queue.enqueue([obj(f"late-{n}.csv")], NOW)
        assert dispatch(queue, sfn(aws), max_objects=100, now=NOW).outcome == "busy"
    # Then they are queued, and no second run exists
    assert queue.queued_count() == 3
    assert [r["name"] for r in started(aws)] == [first.run_name]


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"])
def test_the_lock_of_a_run_that_ended_unnoticed_is_taken_over(aws: Aws, status: str) -> None:
    # Given a run that ended (its end event never came) and objects queued meanwhile
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    queue.enqueue([obj("a.csv")], NOW)
    first = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    assert first.run_name
    queue.enqueue([obj("b.csv")], NOW)
    end(aws, first.run_name, status)
    # When the next dispatch comes
    outcome = dispatch(queue, sfn(aws), max_objects=100, now="2026-11-28T11:00:00Z")
    # Then it released the stale lock and started the follow-up for what was queued
    follow_up = execution_name([obj("b.csv")])
    assert outcome == Dispatch("started", follow_up, 1)
    lock = queue.current_lock()
    assert lock is not None and lock.run_name == follow_up
    assert running(aws) == [follow_up]


def test_a_dispatcher_that_died_after_taking_the_lock_is_finished_by_the_next(aws: Aws) -> None:
    # Given a dispatcher that acquired the lock for the queued objects, then died
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    queue.enqueue([obj("a.csv"), obj("b.csv")], NOW)
    pending = queue.pending(100)
    name, run_input = execution_name(pending), execution_input(pending)
    assert queue.acquire(RunLock(name, NOW, run_input))
    # and more objects queued after that
    queue.enqueue([obj("c.csv")], NOW)
    # When the next dispatch comes
    outcome = dispatch(queue, sfn(aws), max_objects=100, now="2026-11-28T11:00:00Z")
    # Then it started that run, same name and input, and took exactly its objects
    assert outcome == Dispatch("started", name, 2, resumed=True)
    assert started(aws) == [{"name": name, "input": run_input}]
    assert queue.ledger(pending) == {o: name for o in pending}
    assert queue.pending(100) == [obj("c.csv")]
    assert_ledger_and_queue_agree(aws)


def test_a_dispatcher_that_died_after_taking_the_objects_is_finished_by_the_next(
    aws: Aws,
) -> None:
    # Given a dispatcher that took the lock and the objects, then died before StartExecution
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    queue.enqueue([obj("a.csv")], NOW)
    pending = queue.pending(100)
    name, run_input = execution_name(pending), execution_input(pending)
    assert queue.acquire(RunLock(name, NOW, run_input))
    queue.take(name, pending, NOW)
    # When the next dispatch comes (twice)
    outcome = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    again = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    # Then the run is started once, with the input the lock remembered
    assert outcome == Dispatch("started", name, 1, resumed=True)
    assert again == Dispatch("busy", name)
    assert started(aws) == [{"name": name, "input": run_input}]


def test_a_failed_start_keeps_the_lock_and_is_finished_later(aws: Aws) -> None:
    # Given no state machine (deleted, or Step Functions failing)
    queue = run_queue(aws)
    queue.enqueue([obj("a.csv")], NOW)
    # When dispatching, the error reaches the caller, the lock remembers the run
    with pytest.raises(ClientError, match="StateMachineDoesNotExist"):
        dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    lock = queue.current_lock()
    assert lock is not None and lock.objects == (obj("a.csv"),)
    # And once Step Functions works, the next dispatch starts that very run
    create_state_machine(aws.stepfunctions)
    outcome = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    assert outcome == Dispatch("started", lock.run_name, 1, resumed=True)
    assert started(aws) == [{"name": lock.run_name, "input": execution_input([obj("a.csv")])}]


def test_a_manual_run_holding_the_lock_keeps_dispatch_waiting(aws: Aws) -> None:
    # Given a manual run whose PrepareRun took the lock, and objects queued
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    aws.stepfunctions.start_execution(
        stateMachineArn=aws.settings.state_machine_arn, name="manual-1", input="{}"
    )
    assert queue.acquire(RunLock("manual-1", NOW))
    queue.enqueue([obj("a.csv")], NOW)
    # Then dispatch waits while it runs
    assert dispatch(queue, sfn(aws), max_objects=100, now=NOW) == Dispatch("busy", "manual-1")
    # And takes over once it ended
    end(aws, "manual-1")
    outcome = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    assert outcome == Dispatch("started", execution_name([obj("a.csv")]), 1)


class RacingQueue(RunQueue):
    """Another dispatcher runs to completion right after this one read the queue."""

    def __init__(self, aws: Aws) -> None:
        super().__init__(aws.dynamodb, TABLE, STACK)
        self._aws = aws
        self.raced: Dispatch | None = None

    def pending(self, max_objects: int, max_input_bytes: int = MAX_INPUT_BYTES) -> list[DataObject]:
        found = super().pending(max_objects, max_input_bytes)
        if self.raced is None:
            self.raced = dispatch(run_queue(self._aws), sfn(self._aws), max_objects=1, now=NOW)
        return found


def test_two_dispatchers_at_once_start_one_run(aws: Aws) -> None:
    # Given two objects queued and a second dispatcher (at most 1 object per run) winning the
    # lock between this dispatcher's read of the queue and its acquire
    create_state_machine(aws.stepfunctions)
    queue = RacingQueue(aws)
    queue.enqueue([obj("a.csv"), obj("b.csv")], NOW)
    # When this dispatcher (2 objects per run) goes on
    outcome = dispatch(queue, sfn(aws), max_objects=2, now=NOW)
    # Then it found the other's run in flight and started nothing
    winner = execution_name([obj("a.csv")])
    assert queue.raced == Dispatch("started", winner, 1)
    assert outcome == Dispatch("busy", winner)
    assert [r["name"] for r in started(aws)] == [winner]
    assert queue.pending(10) == [obj("b.csv")]


def test_a_backlog_drains_as_successive_runs_one_at_a_time(aws: Aws) -> None:
    # Given 25 objects queued and at most 10 per run
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    objects = [obj(f"part-{i:04d}.csv") for i in range(25)]
    queue.enqueue(objects, NOW)
    names: list[str] = []
    # When each run ends and the next dispatch comes
    while (outcome := dispatch(queue, sfn(aws), max_objects=10, now=NOW)).outcome == "started":
        assert outcome.run_name
        names.append(outcome.run_name)
        assert running(aws) == [outcome.run_name]
        assert dispatch(queue, sfn(aws), max_objects=10, now=NOW).outcome == "busy"
        end(aws, outcome.run_name, "SUCCEEDED")
    # Then three runs of 10, 10 and 5 covered every object once, in key order
    assert outcome == Dispatch("idle")
    runs = {r["name"]: keys_of(r) for r in started(aws)}
    assert [len(runs[n]) for n in names] == [10, 10, 5]
    assert [k for n in names for k in runs[n]] == [o.key for o in objects]
    assert queue.queued_count() == 0


def test_runs_of_long_keys_stay_within_the_step_functions_input_limit(aws: Aws) -> None:
    # Given 200 objects with keys of about 1 KiB (about 180 fit in one input) and a generous
    # objects-per-run limit
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    prefix = "data/train/" + "k" * 1000
    objects = [DataObject(f"{prefix}{i:04d}.csv", "e" * 32, "v" * 32, 10) for i in range(200)]
    assert all(len(o.key.encode()) > 1000 for o in objects)
    queue.enqueue(objects, NOW)
    # When the backlog drains
    while (outcome := dispatch(queue, sfn(aws), max_objects=1000, now=NOW)).outcome == "started":
        assert outcome.run_name
        end(aws, outcome.run_name, "SUCCEEDED")
    # Then several runs cover every object once, each input under the limit
    runs = started(aws)
    sizes = [len(canonical_json(r["input"]).encode()) for r in runs]
    assert len(runs) > 1
    assert max(sizes) <= MAX_INPUT_BYTES < 256 * 1024
    assert sorted(k for r in runs for k in keys_of(r)) == [o.key for o in objects]


# --- PrepareRun's guard ------------------------------------------------------------------------


def records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def test_a_manual_run_takes_a_free_lock(aws: Aws) -> None:
    queue = run_queue(aws)
    hold_run_lock(queue, records(aws), "manual-1", NOW)
    assert queue.current_lock() == RunLock("manual-1", NOW)
    # Its PrepareRun retried passes again
    hold_run_lock(queue, records(aws), "manual-1", "2026-11-28T10:05:00Z")
    assert queue.current_lock() == RunLock("manual-1", NOW)


def test_a_dispatched_run_finds_the_lock_its_own(aws: Aws) -> None:
    queue = run_queue(aws)
    run_input = execution_input([obj("a.csv")])
    queue.acquire(RunLock("s3-abc", NOW, run_input))
    hold_run_lock(queue, records(aws), "s3-abc", "2026-11-28T10:00:01Z")
    assert queue.current_lock() == RunLock("s3-abc", NOW, run_input)


@pytest.mark.parametrize("holder_record", [None, "RUNNING"])
def test_a_manual_run_is_refused_while_another_holds_the_lock(
    aws: Aws, holder_record: str | None
) -> None:
    # Given a run holding the lock, not prepared yet or RUNNING
    queue = run_queue(aws)
    queue.acquire(RunLock("s3-abc", NOW, execution_input([obj("a.csv")])))
    if holder_record:
        records(aws).put_started("s3-abc", {"startedAt": NOW})
    # When a manual run prepares
    with pytest.raises(RunInProgress) as raised:
        hold_run_lock(queue, records(aws), "manual-1", "2026-11-28T10:05:00Z")
    # Then it is refused with a message naming the holder, which keeps the lock
    assert f"run s3-abc has been training or deploying this stack's model since {NOW}" in str(
        raised.value
    )
    lock = queue.current_lock()
    assert lock is not None and lock.run_name == "s3-abc"


@pytest.mark.parametrize("finished", ["PROMOTED", "FAILED", "ABORTED"])
def test_a_manual_run_takes_over_from_a_holder_that_finished(aws: Aws, finished: str) -> None:
    # Given the lock of a run whose record is finished (its end event not processed yet)
    queue = run_queue(aws)
    queue.acquire(RunLock("s3-abc", NOW, execution_input([obj("a.csv")])))
    records(aws).put_started("s3-abc", {})
    records(aws).finish("s3-abc", {"status": finished})
    # When a manual run prepares
    hold_run_lock(queue, records(aws), "manual-1", "2026-11-28T10:05:00Z")
    # Then it holds the lock, and the late end event of s3-abc cannot release it
    assert queue.current_lock() == RunLock("manual-1", "2026-11-28T10:05:00Z")
    assert queue.release("s3-abc") is False


def test_a_manual_run_takes_over_from_a_stopped_holder_whose_end_was_not_processed(
    aws: Aws,
) -> None:
    # Given a dispatched run, stopped by hand, its record still RUNNING (no end event handled)
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    queue.enqueue([obj("a.csv")], NOW)
    first = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    assert first.run_name
    records(aws).put_started(first.run_name, {"startedAt": NOW})
    end(aws, first.run_name, "ABORTED")
    # When a manual run prepares, able to ask Step Functions
    hold_run_lock(
        queue, records(aws), "manual-1", "2026-11-28T10:05:00Z", executions=lambda: sfn(aws)
    )
    # Then it holds the lock
    lock = queue.current_lock()
    assert lock is not None and lock.run_name == "manual-1"


def test_a_manual_run_is_refused_while_step_functions_says_the_holder_runs(aws: Aws) -> None:
    # Given a dispatched run still RUNNING
    create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    queue.enqueue([obj("a.csv")], NOW)
    first = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    records(aws).put_started(str(first.run_name), {"startedAt": NOW})
    asked: list[str] = []

    def executions() -> StepFunctionsExecutions:
        asked.append("sfn")
        return sfn(aws)

    # When a manual run prepares
    with pytest.raises(RunInProgress):
        hold_run_lock(
            queue, records(aws), "manual-1", "2026-11-28T10:05:00Z", executions=executions
        )
    # Then Step Functions was asked once, and the holder keeps the lock
    assert asked == ["sfn"]
    lock = queue.current_lock()
    assert lock is not None and lock.run_name == first.run_name


def test_the_lock_of_a_run_forgotten_by_step_functions_is_not_run_again(aws: Aws) -> None:
    # Given a run that ended and recorded itself, whose end event was lost
    machine = create_state_machine(aws.stepfunctions)
    queue = run_queue(aws)
    queue.enqueue([obj("a.csv")], NOW)
    first = dispatch(queue, sfn(aws), max_objects=100, now=NOW)
    assert first.run_name
    end(aws, first.run_name, "SUCCEEDED")
    records(aws).put_started(first.run_name, {})
    records(aws).finish(first.run_name, {"status": "PROMOTED"})
    # and, 90 days later, Step Functions has deleted the closed execution
    state_machine = stepfunctions_backends[ACCOUNT][REGION].describe_state_machine(machine)
    state_machine.executions.clear()
    # When a new upload is dispatched
    queue.enqueue([obj("b.csv")], NOW)
    outcome = dispatch(queue, sfn(aws), max_objects=100, now="2027-03-01T00:00:00Z")
    # Then the new upload runs; a.csv is not trained a second time
    assert outcome == Dispatch("started", execution_name([obj("b.csv")]), 1)
    assert [keys_of(r) for r in started(aws)] == [["data/train/b.csv"]]
