"""StartRetrain end to end in moto: SQS batch in, executions out, idempotent on redelivery."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from builders import (
    FakeLambdaContext,
    create_state_machine,
    executions,
    load_event,
    object_created,
    sqs_event,
)
from lambda_handlers import load_handler
from moto_stack import TABLE, Aws

from refit import trigger
from refit.run_input import DataObject


@pytest.fixture
def app(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("MAX_OBJECTS_PER_RUN", "100")
    create_state_machine(aws.stepfunctions)
    return load_handler("start_retrain")


def handle(app: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
    return response


def test_sample_batch_starts_one_execution(app: ModuleType, aws: Aws) -> None:
    # When the sample batch of two uploads arrives
    response = handle(app, load_event("sqs-s3-object-created.json"))
    # Then one execution covers both and no message is retried
    started = executions(aws.stepfunctions, aws.settings.state_machine_arn)
    assert len(started) == 1
    assert [o["key"] for o in started[0]["input"]["objects"]] == [
        "data/train/2026/11/28/sales-0001.csv",
        "data/train/2026/11/28/sales-0002.csv",
    ]
    assert response == {"batchItemFailures": []}


def test_redelivered_batch_starts_nothing_new(app: ModuleType, aws: Aws) -> None:
    # Given a batch that was handled once
    event = load_event("sqs-s3-object-created.json")
    handle(app, event)
    # When SQS delivers it again
    response = handle(app, event)
    # Then there is still exactly one execution, and the repeat was answered by the
    # idempotency record kept in the runs table
    assert len(executions(aws.stepfunctions, aws.settings.state_machine_arn)) == 1
    assert response == {"batchItemFailures": []}
    records = aws.dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "IDEMPOTENCY#refit-test"}},
    )["Items"]
    assert [r["status"]["S"] for r in records] == ["COMPLETED"]
    assert "expiration" in records[0]


def test_redelivery_after_the_idempotency_record_expired_is_still_one_run(
    app: ModuleType, aws: Aws
) -> None:
    # Given a handled batch whose idempotency records are gone (expired)
    event = sqs_event(object_created("data/train/a.csv"), message_ids=["m-1"])
    handle(app, event)
    for item in aws.dynamodb.scan(TableName=TABLE)["Items"]:
        aws.dynamodb.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})
    # When the same message comes back
    response = handle(app, event)
    # Then the execution name alone keeps it to one run
    assert len(executions(aws.stepfunctions, aws.settings.state_machine_arn)) == 1
    assert response == {"batchItemFailures": []}


def test_the_same_s3_event_twice_in_one_batch_is_one_object(app: ModuleType, aws: Aws) -> None:
    upload = object_created("data/train/a.csv")
    handle(app, sqs_event(upload, upload))
    started = executions(aws.stepfunctions, aws.settings.state_machine_arn)
    assert len(started) == 1
    assert len(started[0]["input"]["objects"]) == 1


def test_two_versions_of_one_key_are_both_covered(app: ModuleType, aws: Aws) -> None:
    # Given a key uploaded, then overwritten, in one batch
    handle(
        app,
        sqs_event(
            object_created("data/train/a.csv", version_id="v1", etag="e1"),
            object_created("data/train/a.csv", version_id="v2", etag="e2"),
        ),
    )
    # Then the run lists both versions (PrepareRun trains on the current one)
    started = executions(aws.stepfunctions, aws.settings.state_machine_arn)
    assert [o["versionId"] for o in started[0]["input"]["objects"]] == ["v1", "v2"]


def test_a_later_version_of_a_key_starts_its_own_run(app: ModuleType, aws: Aws) -> None:
    # Given one version handled in an earlier batch
    handle(app, sqs_event(object_created("data/train/a.csv", version_id="v1", etag="e1")))
    # When the key is overwritten and the new version arrives
    handle(app, sqs_event(object_created("data/train/a.csv", version_id="v2", etag="e2")))
    # Then that is new data: a second run
    assert len(executions(aws.stepfunctions, aws.settings.state_machine_arn)) == 2


def test_a_burst_of_250_uploads_is_three_runs(app: ModuleType, aws: Aws) -> None:
    uploads = [object_created(f"data/train/part-{i:04d}.csv") for i in range(250)]
    handle(app, sqs_event(*uploads))
    started = executions(aws.stepfunctions, aws.settings.state_machine_arn)
    assert sorted(len(e["input"]["objects"]) for e in started) == [50, 100, 100]


def test_an_execution_already_existing_under_the_name_is_success(app: ModuleType, aws: Aws) -> None:
    # Given an execution that already has the name this batch maps to, with another input
    obj = DataObject("data/train/a.csv", "0cc175b9c0f1b6a831c399e269772661", "v1", 120)
    name = trigger.execution_name([obj])
    aws.stepfunctions.start_execution(
        stateMachineArn=aws.settings.state_machine_arn, name=name, input='{"source": "manual"}'
    )
    # When the batch arrives
    response = handle(app, sqs_event(object_created("data/train/a.csv")))
    # Then ExecutionAlreadyExists counts as started: nothing new, nothing retried
    assert [e["name"] for e in executions(aws.stepfunctions, aws.settings.state_machine_arn)] == [
        name
    ]
    assert response == {"batchItemFailures": []}


def test_a_failed_start_is_retried_and_succeeds_later(app: ModuleType, aws: Aws) -> None:
    # Given Step Functions refusing the call (here: the state machine is missing)
    aws.stepfunctions.delete_state_machine(stateMachineArn=aws.settings.state_machine_arn)
    event = sqs_event(object_created("data/train/a.csv"), message_ids=["m-1"])
    # When the batch arrives
    failed = handle(app, event)
    # Then the message goes back to the queue
    assert failed == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    # And once Step Functions works again, the redelivery starts the run (no stale record)
    create_state_machine(aws.stepfunctions)
    assert handle(app, event) == {"batchItemFailures": []}
    assert len(executions(aws.stepfunctions, aws.settings.state_machine_arn)) == 1


def test_an_s3_event_in_two_different_batches_is_trained_once(app: ModuleType, aws: Aws) -> None:
    # Given a.csv's event handled in a first batch
    upload = object_created("data/train/a.csv")
    handle(app, sqs_event(upload, message_ids=["m-1"]))
    # When S3 delivers the same event again, a minute later, with a new file
    response = handle(
        app, sqs_event(upload, object_created("data/train/b.csv"), message_ids=["m-2", "m-3"])
    )
    # Then the second execution covers only the new file and both messages are consumed
    started = executions(aws.stepfunctions, aws.settings.state_machine_arn)
    assert sorted([o["key"] for o in e["input"]["objects"]] for e in started) == [
        ["data/train/a.csv"],
        ["data/train/b.csv"],
    ]
    assert response == {"batchItemFailures": []}


def test_an_s3_event_delivered_again_alone_starts_nothing(app: ModuleType, aws: Aws) -> None:
    upload = object_created("data/train/a.csv")
    handle(app, sqs_event(upload, object_created("data/train/b.csv")))
    for attempt in range(4):
        assert handle(app, sqs_event(upload, message_ids=[f"m-{attempt}"])) == {
            "batchItemFailures": []
        }
    assert len(executions(aws.stepfunctions, aws.settings.state_machine_arn)) == 1


def test_a_failed_start_frees_its_objects_for_any_later_batch(app: ModuleType, aws: Aws) -> None:
    # Given a start that failed for a.csv
    aws.stepfunctions.delete_state_machine(stateMachineArn=aws.settings.state_machine_arn)
    upload = object_created("data/train/a.csv")
    assert handle(app, sqs_event(upload, message_ids=["m-1"])) == {
        "batchItemFailures": [{"itemIdentifier": "m-1"}]
    }
    # When its message comes back in a batch with another file
    create_state_machine(aws.stepfunctions)
    handle(app, sqs_event(upload, object_created("data/train/b.csv")))
    # Then one run covers both
    (started,) = executions(aws.stepfunctions, aws.settings.state_machine_arn)
    assert [o["key"] for o in started["input"]["objects"]] == [
        "data/train/a.csv",
        "data/train/b.csv",
    ]
