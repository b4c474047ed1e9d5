"""StartRetrain end to end in moto: uploads and ended runs in, at most one execution at a time."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from refit.ledger.run_queue import RunQueue, execution_name
from refit.ledger.run_records import RunRecords
from refit.registry import lineage
from refit.run_input import DataObject
from refit.run_state import RunState
from tests.lambda_handlers import load_handler
from tests.unit.builders import (
    FakeLambdaContext,
    create_state_machine,
    end_execution,
    execution_arn,
    execution_status_change,
    execution_statuses,
    executions,
    load_event,
    object_created,
    sqs_event,
)
from tests.unit.moto_stack import GROUP, STACK, TABLE, Aws
from tests.unit.state_builders import (
    evaluation_result,
    received_notifications,
    run_plan,
    subscribe_queue,
    training_result,
)

ETAG = "0cc175b9c0f1b6a831c399e269772661"
NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


@pytest.fixture
def max_objects() -> str:
    return "100"


@pytest.fixture
def app(aws: Aws, monkeypatch: pytest.MonkeyPatch, max_objects: str) -> ModuleType:
    monkeypatch.setenv("MAX_OBJECTS_PER_RUN", max_objects)
    create_state_machine(aws.stepfunctions)
    return load_handler("start_retrain")


def handle(app: ModuleType, aws: Aws, event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
    # Whatever happened, runs never overlap
    assert len(running(aws)) <= 1
    return response


def started(aws: Aws) -> list[dict[str, Any]]:
    return executions(aws.stepfunctions, aws.settings.state_machine_arn)


def running(aws: Aws) -> list[str]:
    try:
        statuses = execution_statuses(aws.stepfunctions, aws.settings.state_machine_arn)
    except aws.stepfunctions.exceptions.StateMachineDoesNotExist:
        return []
    return [name for name, status in statuses.items() if status == "RUNNING"]


def keys_of(run: dict[str, Any]) -> list[str]:
    return [o["key"] for o in run["input"]["objects"]]


def queue(aws: Aws) -> RunQueue:
    return RunQueue(aws.dynamodb, TABLE, STACK)


def items(aws: Aws, kind: str) -> dict[str, dict[str, Any]]:
    response = aws.dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"{kind}#{STACK}"}},
    )
    return {item["sk"]["S"]: item for item in response["Items"]}


def upload(name: str, version: str = "v1", etag: str = ETAG) -> dict[str, Any]:
    return object_created(f"data/train/{name}", version_id=version, etag=etag)


def data_object(name: str, version: str = "v1", etag: str = ETAG) -> DataObject:
    return DataObject(f"data/train/{name}", etag, version, 120)


def end_run(
    app: ModuleType, aws: Aws, name: str, status: str = "SUCCEEDED", message_id: str = "end"
) -> dict[str, Any]:
    """End an execution in moto and deliver its status change event to the handler."""
    arn = execution_arn(aws.settings.state_machine_arn, name)
    end_execution(aws.stepfunctions, arn, status)
    event = sqs_event(execution_status_change(arn, status), message_ids=[message_id])
    return handle(app, aws, event)


# --- one run per object version ----------------------------------------------------------------


def test_sample_batch_starts_one_execution(app: ModuleType, aws: Aws) -> None:
    # When the sample batch of two uploads arrives
    response = handle(app, aws, load_event("sqs-s3-object-created.json"))
    # Then one execution covers both and no message is retried
    (run,) = started(aws)
    assert keys_of(run) == [
        "data/train/2026/11/28/sales-0001.csv",
        "data/train/2026/11/28/sales-0002.csv",
    ]
    assert response == NO_FAILURES


def test_an_event_delivered_many_times_is_one_run(app: ModuleType, aws: Aws) -> None:
    # Given a.csv's event delivered 2 to 5 times in one batch
    a = upload("a.csv")
    for copies in range(2, 6):
        assert handle(app, aws, sqs_event(*[a] * copies)) == NO_FAILURES
    # When the same SQS message is redelivered, and the event comes again in later batches
    for _ in range(3):
        assert handle(app, aws, sqs_event(a, message_ids=["m-1"])) == NO_FAILURES
    # Then one execution trains a.csv, once
    (run,) = started(aws)
    assert keys_of(run) == ["data/train/a.csv"]
    # And the ledger holds it once, given to that run, and the queue is empty
    (ledger,) = items(aws, "OBJECT").values()
    assert ledger["runName"] == {"S": run["name"]}
    assert items(aws, "QUEUE") == {}


def test_a_duplicate_after_its_run_ended_starts_nothing(app: ModuleType, aws: Aws) -> None:
    # Given a.csv trained by a run that has ended
    a = upload("a.csv")
    handle(app, aws, sqs_event(a))
    (run,) = started(aws)
    end_run(app, aws, run["name"])
    # When its event is delivered again, 4 times (the lock is free now)
    for attempt in range(4):
        assert handle(app, aws, sqs_event(a, message_ids=[f"m-{attempt}"])) == NO_FAILURES
    # Then it never re-enters the queue and no run starts
    assert [r["name"] for r in started(aws)] == [run["name"]]
    assert queue(aws).queued_count() == 0


def test_an_overwritten_key_is_new_data(app: ModuleType, aws: Aws) -> None:
    # Given a.csv v1 in a run
    handle(app, aws, sqs_event(upload("a.csv", "v1", "e1")))
    (first,) = started(aws)
    # When the key is overwritten while it runs, and v1's event is delivered again
    overwrite = sqs_event(upload("a.csv", "v2", "e2"), upload("a.csv", "v1", "e1"))
    assert handle(app, aws, overwrite) == NO_FAILURES
    assert queue(aws).queued_count() == 1
    end_run(app, aws, first["name"])
    # Then the follow-up trains the new version only
    second = next(r for r in started(aws) if r["name"] != first["name"])
    assert [(o["versionId"], o["etag"]) for o in second["input"]["objects"]] == [("v2", "e2")]


# --- one run at a time -------------------------------------------------------------------------


@pytest.mark.parametrize("first_ended", ["SUCCEEDED", "FAILED", "ABORTED"])
def test_uploads_during_a_run_become_one_follow_up_run(
    app: ModuleType, aws: Aws, first_ended: str
) -> None:
    # Given a run in flight
    handle(app, aws, sqs_event(upload("a.csv")))
    (first,) = started(aws)
    # When uploads keep coming while it runs (some delivered twice)
    late = [f"late-{n}.csv" for n in range(4)]
    for n, name in enumerate(late):
        response = handle(app, aws, sqs_event(upload(name), upload(name)))
        # Then each is consumed and queued, and no second execution starts
        assert response == NO_FAILURES
        assert queue(aws).queued_count() == n + 1
        assert running(aws) == [first["name"]]
    assert handle(app, aws, sqs_event(upload(late[0]))) == NO_FAILURES
    assert queue(aws).queued_count() == len(late)
    # When the run ends, and its end event is delivered twice
    assert end_run(app, aws, first["name"], first_ended) == NO_FAILURES
    assert end_run(app, aws, first["name"], first_ended, message_id="end-again") == NO_FAILURES
    # Then exactly one follow-up run covers everything queued, under the name of those objects
    runs = started(aws)
    assert len(runs) == 2
    (follow_up,) = [r for r in runs if r["name"] != first["name"]]
    assert keys_of(follow_up) == [f"data/train/{name}" for name in late]
    assert follow_up["name"] == execution_name([data_object(name) for name in late])
    assert running(aws) == [follow_up["name"]]
    assert queue(aws).queued_count() == 0


def test_a_run_whose_end_event_never_came_is_taken_over(app: ModuleType, aws: Aws) -> None:
    # Given a run that was stopped, but whose end event was lost, and an upload queued meanwhile
    handle(app, aws, sqs_event(upload("a.csv")))
    (first,) = started(aws)
    handle(app, aws, sqs_event(upload("b.csv")))
    end_execution(
        aws.stepfunctions, execution_arn(aws.settings.state_machine_arn, first["name"]), "ABORTED"
    )
    # When the next upload arrives
    assert handle(app, aws, sqs_event(upload("c.csv"))) == NO_FAILURES
    # Then a new run covers what was queued
    (second,) = [r for r in started(aws) if r["name"] != first["name"]]
    assert keys_of(second) == ["data/train/b.csv", "data/train/c.csv"]
    lock = queue(aws).current_lock()
    assert lock is not None and lock.run_name == second["name"]


@pytest.mark.parametrize("max_objects", ["10"])
def test_a_backlog_drains_one_run_at_a_time(app: ModuleType, aws: Aws) -> None:
    # Given 25 uploads at once, at most 10 objects per run
    uploads = [upload(f"part-{i:04d}.csv") for i in range(25)]
    assert handle(app, aws, sqs_event(*uploads)) == NO_FAILURES
    # When each run ends in turn
    order = [running(aws)[0]]
    for _ in range(3):
        end_run(app, aws, order[-1])
        order.extend(running(aws))
    # Then three successive runs of 10, 10 and 5 covered each upload once, in key order
    runs = {r["name"]: keys_of(r) for r in started(aws)}
    assert len(order) == len(runs) == 3
    assert [len(runs[name]) for name in order] == [10, 10, 5]
    assert [k for name in order for k in runs[name]] == [
        f"data/train/part-{i:04d}.csv" for i in range(25)
    ]
    assert running(aws) == []


# --- failures ----------------------------------------------------------------------------------


def test_a_failed_start_is_retried_with_the_same_objects(app: ModuleType, aws: Aws) -> None:
    # Given Step Functions refusing the call (here: the state machine is missing)
    aws.stepfunctions.delete_state_machine(stateMachineArn=aws.settings.state_machine_arn)
    event = sqs_event(upload("a.csv"), message_ids=["m-1"])
    # When the batch arrives, and another upload in a batch of its own
    failed = handle(app, aws, event)
    also_failed = handle(app, aws, sqs_event(upload("b.csv"), message_ids=["m-2"]))
    # Then the messages go back to the queue
    assert failed == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert also_failed == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    # And once Step Functions works again, the redelivery starts the run for a.csv alone
    create_state_machine(aws.stepfunctions)
    assert handle(app, aws, event) == NO_FAILURES
    (run,) = started(aws)
    assert keys_of(run) == ["data/train/a.csv"]
    assert run["name"] == execution_name([data_object("a.csv")])
    # And b.csv waits for it
    assert handle(app, aws, sqs_event(upload("b.csv"), message_ids=["m-2"])) == NO_FAILURES
    assert [o.key for o in queue(aws).pending(10)] == ["data/train/b.csv"]


def test_messages_that_are_neither_kind_are_dropped(app: ModuleType, aws: Aws) -> None:
    response = handle(
        app, aws, sqs_event("not json", {"source": "aws.ec2", "detail": {}}, upload("a.csv"))
    )
    assert response == NO_FAILURES
    assert len(started(aws)) == 1


# --- runs that ended unrecorded ----------------------------------------------------------------


def records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def test_a_stopped_run_is_recorded_and_notified(app: ModuleType, aws: Aws) -> None:
    # Given a run PrepareRun recorded as RUNNING, and someone reading the topic
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    handle(app, aws, sqs_event(upload("a.csv")))
    (run,) = started(aws)
    records(aws).put_started(run["name"], {"startedAt": "2026-11-28T09:20:00Z"})
    # When it is stopped by hand and its end event arrives (twice)
    assert end_run(app, aws, run["name"], "ABORTED") == NO_FAILURES
    assert end_run(app, aws, run["name"], "ABORTED", message_id="again") == NO_FAILURES
    # Then its record says so, and one notification went out
    record = records(aws).get_run(run["name"])
    assert record is not None
    assert record["status"] == "ABORTED"
    assert record["finishedAt"] == "2026-11-18T11:06:40Z"
    assert record["error"]["Error"] == "States.Aborted"
    [note] = received_notifications(aws.sqs, inbox)
    assert note["Subject"] == f"refit {STACK}: run {run['name']} ABORTED"
    assert queue(aws).current_lock() is None


def test_a_run_that_recorded_itself_is_left_alone(app: ModuleType, aws: Aws) -> None:
    # Given a run whose RecordFailure wrote FAILED before the execution failed
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    handle(app, aws, sqs_event(upload("a.csv")))
    (run,) = started(aws)
    records(aws).put_started(run["name"], {})
    records(aws).finish(run["name"], {"status": "FAILED", "error": {"Error": "NoTestData"}})
    # When its end event arrives
    assert end_run(app, aws, run["name"], "FAILED") == NO_FAILURES
    # Then the record keeps its own error, nobody is notified again, and the lock is free
    record = records(aws).get_run(run["name"])
    assert record is not None
    assert (record["status"], record["error"]) == ("FAILED", {"Error": "NoTestData"})
    assert received_notifications(aws.sqs, inbox) == []
    assert queue(aws).current_lock() is None


def test_a_run_stopped_before_prepare_run_gets_a_record(app: ModuleType, aws: Aws) -> None:
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    handle(app, aws, sqs_event(upload("a.csv")))
    (run,) = started(aws)
    end_run(app, aws, run["name"], "ABORTED")
    record = records(aws).get_run(run["name"])
    assert record is not None and record["status"] == "ABORTED"
    assert len(received_notifications(aws.sqs, inbox)) == 1


def test_the_package_of_a_stopped_run_is_rejected(app: ModuleType, aws: Aws) -> None:
    # Given a run stopped by hand after EvaluateModels registered its challenger
    handle(app, aws, sqs_event(upload("a.csv")))
    (run,) = started(aws)
    records(aws).put_started(run["name"], {"startedAt": "2026-11-28T09:20:00Z"})
    event = RunState.parse({"run": run_plan(run["name"]), "training": training_result(run["name"])})
    registered = lineage.register(
        aws.sagemaker, records(aws), GROUP, event, evaluation_result("promote")
    )
    # When its end event arrives
    assert end_run(app, aws, run["name"], "ABORTED") == NO_FAILURES
    # Then the handler's SageMaker client rejected the package, and the lock is free
    arn = registered["modelPackageArn"]
    package = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == lineage.REJECTED
    assert f"run {run['name']} ABORTED before it was recorded" in package["ApprovalDescription"]
    record = records(aws).get_run(run["name"])
    assert record is not None and record["modelPackageStatus"] == lineage.REJECTED
    assert queue(aws).current_lock() is None
