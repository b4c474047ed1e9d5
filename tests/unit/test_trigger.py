"""The trigger's batch handling in moto: messages parsed, uploads queued, ended runs closed."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from botocore.exceptions import ClientError

from refit.ledger.run_queue import Dispatch, RunLock, RunQueue, execution_name
from refit.run_input import DataObject
from refit.start_retrain import trigger
from refit.start_retrain.run_ended import ExecutionEnded
from tests.unit.builders import (
    create_state_machine,
    end_execution,
    execution_arn,
    execution_status_change,
    executions,
    load_event,
    object_created,
    sqs_event,
)
from tests.unit.moto_stack import BUCKET, STACK, TABLE, Aws

NOW = "2026-11-28T10:00:00Z"
ETAG = "0cc175b9c0f1b6a831c399e269772661"


class EndedRuns:
    """Stands in for refit.start_retrain.run_ended.record_ended_run; can fail."""

    def __init__(self, fail: bool = False) -> None:
        self.seen: list[ExecutionEnded] = []
        self.fail = fail

    def __call__(self, ended: ExecutionEnded) -> bool:
        if self.fail:
            raise RuntimeError("SNS is down")
        self.seen.append(ended)
        return True


class ThrottledDynamoDB:
    """DynamoDB refusing every transaction (an outage, throttling)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "slow down"}},
            "TransactWriteItems",
        )


@pytest.fixture
def machine(aws: Aws) -> str:
    return create_state_machine(aws.stepfunctions)


def queue_of(aws: Aws) -> RunQueue:
    return RunQueue(aws.dynamodb, TABLE, STACK)


def handle(
    aws: Aws,
    event: dict[str, Any],
    ended: EndedRuns | None = None,
    *,
    dynamodb: Any = None,
    max_objects: int = 100,
) -> trigger.TriggerResult:
    return trigger.handle_batch(
        SQSEvent(event),
        bucket=BUCKET,
        queue=RunQueue(dynamodb or aws.dynamodb, TABLE, STACK),
        executions=trigger.StepFunctionsExecutions(
            aws.stepfunctions, aws.settings.state_machine_arn
        ),
        record_ended=ended or EndedRuns(),
        max_objects_per_run=max_objects,
        now=NOW,
    )


def started(aws: Aws) -> list[dict[str, Any]]:
    return executions(aws.stepfunctions, aws.settings.state_machine_arn)


def objects_of(aws: Aws) -> list[list[dict[str, Any]]]:
    return [run["input"]["objects"] for run in started(aws)]


# --- uploads -----------------------------------------------------------------------------------


def test_sample_batch_becomes_one_run_with_both_uploads(aws: Aws, machine: str) -> None:
    # When the sample SQS batch of two uploads is handled
    result = handle(aws, load_event("sqs-s3-object-created.json"))
    # Then one run covers both, with the versions S3 reported
    (run,) = started(aws)
    assert run["input"]["source"] == "s3"
    assert run["input"]["objects"][0] == {
        "key": "data/train/2026/11/28/sales-0001.csv",
        "etag": "6f1c2e0d4b9a8c7e5f3a1b2c3d4e5f60",
        "versionId": "3HL4kqtJvjVBH40Nrjfkd.bv5u8Rt9Zf",
        "size": 18342,
    }
    assert len(run["input"]["objects"]) == 2
    assert result.queued == 2
    assert result.dispatch == Dispatch("started", run["name"], 2)
    assert result.response() == {"batchItemFailures": []}


def test_messages_that_are_not_training_uploads_are_dropped_not_retried(
    aws: Aws, machine: str
) -> None:
    # Given a batch mixing a good upload with garbage, other prefixes, markers and other buckets
    event = sqs_event(
        object_created("data/train/good.csv"),
        "not json",
        '["a list"]',
        {"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}}},
        {"source": "aws.sqs", "detail-type": "Something Else", "detail": {}},
        object_created("data/test/holdout.csv"),
        object_created("data/train/_SUCCESS"),
        object_created("data/train/.hidden.csv"),
        object_created("data/train/_temporary/0/part-0.csv"),  # Spark's output in progress
        object_created("data/train/elsewhere.csv", bucket="another-bucket"),
        object_created("data/train/a/../b.csv"),  # a broken path: PrepareRun refuses it
    )
    # When it is handled
    result = handle(aws, event)
    # Then only the good upload and the broken path are queued and run, and nothing is sent
    # back to the queue
    assert [sorted(o["key"] for o in objects) for objects in objects_of(aws)] == [
        ["data/train/a/../b.csv", "data/train/good.csv"]
    ]
    assert result.ignored_messages == 10
    assert result.queued == 2
    assert result.response() == {"batchItemFailures": []}


def test_a_batch_with_nothing_to_train_starts_nothing(aws: Aws, machine: str) -> None:
    result = handle(aws, sqs_event(object_created("data/test/x.csv")))
    assert started(aws) == []
    assert result.dispatch == Dispatch("idle")
    assert result.response() == {"batchItemFailures": []}


def test_keys_are_used_as_sent_and_both_etag_spellings_are_read(aws: Aws, machine: str) -> None:
    # Given EventBridge's un-encoded key with a literal "+" and moto's "eTag" spelling, in an
    # unversioned bucket ("null" version), and a quoted ETag
    event = sqs_event(
        object_created("data/train/c++ notes.csv", etag="aa", etag_field="eTag", version_id=None),
        object_created("data/train/q.csv", etag='"bb"', version_id=""),
    )
    # When handled
    handle(aws, event)
    # Then the key is not unquoted, the bare etag is found and "null"/"" mean no version
    assert objects_of(aws) == [
        [
            {"key": "data/train/c++ notes.csv", "etag": "aa", "size": 120},
            {"key": "data/train/q.csv", "etag": "bb", "size": 120},
        ]
    ]


def test_the_same_event_many_times_in_one_batch_is_one_object(aws: Aws, machine: str) -> None:
    # Given one upload delivered 5 times in a batch, plus a later version of its key
    upload = object_created("data/train/a.csv", version_id="v1", etag="e1")
    overwrite = object_created("data/train/a.csv", version_id="v2", etag="e2")
    # When the batch is handled
    result = handle(aws, sqs_event(*[upload] * 5, overwrite))
    # Then one run covers both versions, each once
    assert [[(o["key"], o["versionId"]) for o in objects] for objects in objects_of(aws)] == [
        [("data/train/a.csv", "v1"), ("data/train/a.csv", "v2")]
    ]
    assert result.queued == 2
    assert result.response() == {"batchItemFailures": []}


def test_an_event_in_a_later_batch_is_a_duplicate(aws: Aws, machine: str) -> None:
    # Given a.csv handled and running
    upload = object_created("data/train/a.csv")
    handle(aws, sqs_event(upload))
    # When its event comes again with a new file
    result = handle(aws, sqs_event(upload, object_created("data/train/b.csv")))
    # Then only b.csv is queued (to wait for the run in flight) and nothing is retried
    assert (result.queued, result.duplicates) == (1, 1)
    assert result.dispatch is not None and result.dispatch.outcome == "busy"
    assert [o.key for o in queue_of(aws).pending(10)] == ["data/train/b.csv"]
    assert len(started(aws)) == 1
    assert result.response() == {"batchItemFailures": []}


def test_uploads_that_cannot_be_queued_come_back(aws: Aws, machine: str) -> None:
    # Given DynamoDB refusing the queue's transactions
    event = sqs_event(
        object_created("data/train/a.csv"),
        object_created("data/train/a.csv"),
        object_created("data/train/b.csv"),
        "garbage",
        message_ids=["m-a1", "m-a2", "m-b", "m-x"],
    )
    # When the batch is handled
    result = handle(aws, event, dynamodb=ThrottledDynamoDB(aws.dynamodb))
    # Then every upload message (both copies of a.csv) comes back, the garbage does not
    assert result.response() == {
        "batchItemFailures": [{"itemIdentifier": m} for m in ("m-a1", "m-a2", "m-b")]
    }
    assert started(aws) == []
    # And the redelivery queues and runs them
    assert handle(aws, event).response() == {"batchItemFailures": []}
    assert len(objects_of(aws)[0]) == 2


def test_a_failed_dispatch_returns_every_message(aws: Aws) -> None:
    # Given no state machine: StartExecution fails
    arn = execution_arn(aws.settings.state_machine_arn, "s3-old")
    event = sqs_event(
        object_created("data/train/a.csv"),
        execution_status_change(arn, "SUCCEEDED"),
        message_ids=["m-1", "m-2"],
    )
    # When the batch is handled
    result = handle(aws, event)
    # Then both messages come back for another try
    assert result.response() == {
        "batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]
    }
    assert result.dispatch is None
    # And the redelivery, with Step Functions back, starts the run for a.csv
    create_state_machine(aws.stepfunctions)
    again = handle(aws, event)
    assert again.response() == {"batchItemFailures": []}
    assert [[o["key"] for o in objects] for objects in objects_of(aws)] == [["data/train/a.csv"]]
    assert again.dispatch is not None and again.dispatch.resumed


# --- ended runs ---------------------------------------------------------------------------------


def test_an_ended_run_is_recorded_released_and_followed_up(aws: Aws, machine: str) -> None:
    # Given a run in flight and an upload queued behind it
    handle(aws, sqs_event(object_created("data/train/a.csv")))
    (first,) = started(aws)
    handle(aws, sqs_event(object_created("data/train/b.csv")))
    arn = execution_arn(machine, first["name"])
    end_execution(aws.stepfunctions, arn, "ABORTED")
    ended = EndedRuns()
    # When its end event arrives
    result = handle(aws, sqs_event(execution_status_change(arn, "ABORTED", error="X")), ended)
    # Then it was recorded, its lock released, and the queued upload started
    assert [(e.name, e.status, e.error) for e in ended.seen] == [(first["name"], "ABORTED", "X")]
    assert result.ended_runs == (first["name"],)
    follow_up = execution_name([DataObject("data/train/b.csv", ETAG, "v1", 120)])
    assert result.dispatch == Dispatch("started", follow_up, 1)
    assert result.response() == {"batchItemFailures": []}


def test_events_of_another_state_machine_or_of_a_running_run_are_ignored(
    aws: Aws, machine: str
) -> None:
    # Given a run in flight
    handle(aws, sqs_event(object_created("data/train/a.csv")))
    (run,) = started(aws)
    other_machine = machine.replace("refit-test-retrain", "someone-else")
    ended = EndedRuns()
    # When an end event of another state machine's execution of the same name arrives, and
    # a status change of this run that is not an end
    result = handle(
        aws,
        sqs_event(
            execution_status_change(
                execution_arn(other_machine, run["name"]),
                "ABORTED",
                state_machine_arn=other_machine,
            ),
            execution_status_change(execution_arn(machine, run["name"]), "RUNNING"),
        ),
        ended,
    )
    # Then nothing is recorded, the run keeps its lock, and the messages are consumed
    assert ended.seen == []
    assert result.ignored_messages == 2
    lock = queue_of(aws).current_lock()
    assert lock is not None and lock.run_name == run["name"]
    assert result.response() == {"batchItemFailures": []}


def test_malformed_step_functions_events_are_dropped_not_retried(aws: Aws, machine: str) -> None:
    arn = execution_arn(machine, "s3-abc")
    wrong_type = {**execution_status_change(arn, "ABORTED"), "detail-type": "Other Thing"}
    no_detail = {**execution_status_change(arn, "ABORTED"), "detail": "text"}
    no_name = execution_status_change(arn, "ABORTED")
    del no_name["detail"]["name"]
    ended = EndedRuns()
    result = handle(aws, sqs_event(wrong_type, no_detail, no_name), ended)
    assert ended.seen == []
    assert result.ignored_messages == 3
    assert result.response() == {"batchItemFailures": []}


def test_an_end_that_cannot_be_recorded_comes_back_but_the_stack_moves_on(
    aws: Aws, machine: str
) -> None:
    # Given a run that was stopped, an upload queued behind it, and recording its end failing
    handle(aws, sqs_event(object_created("data/train/a.csv")))
    (first,) = started(aws)
    arn = execution_arn(machine, first["name"])
    end_execution(aws.stepfunctions, arn, "ABORTED")
    event = sqs_event(
        execution_status_change(arn, "ABORTED"),
        object_created("data/train/b.csv"),
        message_ids=["m-end", "m-b"],
    )
    # When the end event and the upload arrive together
    result = handle(aws, event, EndedRuns(fail=True))
    # Then only the end event comes back, and the upload still runs (the lock of a run that
    # ended is taken over)
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m-end"}]}
    assert result.ended_runs == ()
    assert result.dispatch is not None and result.dispatch.outcome == "started"
    assert len(started(aws)) == 2


# --- Step Functions ----------------------------------------------------------------------------


def test_executions_are_addressed_under_the_state_machine(aws: Aws, machine: str) -> None:
    executions_ = trigger.StepFunctionsExecutions(aws.stepfunctions, machine)
    assert executions_.arn("s3-abc") == (
        "arn:aws:states:us-east-1:123456789012:execution:refit-test-retrain:s3-abc"
    )
    # Given no execution yet
    assert executions_.status("s3-abc") is None
    # When started twice with the same input, and again after it ended
    assert executions_.start("s3-abc", {"source": "s3", "objects": [{"key": "a"}]}) is True
    assert executions_.status("s3-abc") == "RUNNING"
    assert executions_.start("s3-abc", {"objects": [{"key": "a"}], "source": "s3"}) is True
    end_execution(aws.stepfunctions, executions_.arn("s3-abc"), "ABORTED")
    assert executions_.start("s3-abc", {"source": "s3", "objects": [{"key": "a"}]}) is False
    # Then there is one execution, with the input as sent
    assert started(aws) == [
        {"name": "s3-abc", "input": {"source": "s3", "objects": [{"key": "a"}]}}
    ]
    assert executions_.status("s3-abc") == "ABORTED"


def test_other_step_functions_errors_reach_the_caller(aws: Aws) -> None:
    # Given no state machine at all
    executions_ = trigger.StepFunctionsExecutions(aws.stepfunctions, aws.settings.state_machine_arn)
    assert executions_.status("s3-abc") is None
    with pytest.raises(aws.stepfunctions.exceptions.StateMachineDoesNotExist):
        executions_.start("s3-abc", {"source": "s3"})


def test_a_dispatched_run_that_never_started_is_started_by_the_next_batch(
    aws: Aws, machine: str
) -> None:
    # Given the lock taken for a.csv by a trigger that died before StartExecution
    a = DataObject("data/train/a.csv", ETAG, "v1", 120)
    queue = queue_of(aws)
    queue.enqueue([a], NOW)
    name = execution_name([a])
    queue.acquire(RunLock(name, NOW, {"source": "s3", "objects": [a.to_dict()]}))
    # When a.csv's event is redelivered
    result = handle(aws, sqs_event(object_created("data/train/a.csv")))
    # Then that run starts, and a.csv is not queued again
    assert result.dispatch == Dispatch("started", name, 1, resumed=True)
    assert result.duplicates == 1
    assert [r["name"] for r in started(aws)] == [name]
    assert queue.queued_count() == 0
