from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from builders import create_state_machine, executions, load_event, object_created, sqs_event
from moto_stack import BUCKET, STACK, TABLE, Aws

from refit import trigger
from refit.run_input import DataObject
from refit.run_records import RunRecords

VALID_EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


class RecordingStarter:
    """Stands in for the idempotent StartExecution; can fail for chosen runs."""

    def __init__(self, fail_for: set[str] | None = None) -> None:
        self.runs: list[dict[str, Any]] = []
        self.fail_for = fail_for or set()

    def __call__(self, *, run: dict[str, Any]) -> dict[str, Any]:
        if run["name"] in self.fail_for:
            raise RuntimeError("ThrottlingException")
        self.runs.append(run)
        return {"name": run["name"], "status": "started"}


class MemoryClaims:
    """In-memory :class:`trigger.ObjectClaims` for tests about planning, not about claims."""

    def __init__(self) -> None:
        self.owner: dict[DataObject, str] = {}

    def object_claims(self, objects: Iterable[DataObject]) -> dict[DataObject, str]:
        return {o: self.owner[o] for o in objects if o in self.owner}

    def claim_objects(
        self, run_name: str, objects: Sequence[DataObject], claimed_at: str
    ) -> list[DataObject]:
        lost = [o for o in objects if self.owner.get(o, run_name) != run_name]
        self.owner.update({o: run_name for o in objects if o not in lost})
        return lost

    def release_objects(self, run_name: str, objects: Iterable[DataObject]) -> None:
        for o in objects:
            if self.owner.get(o) == run_name:
                del self.owner[o]


def keys_of(run: dict[str, Any]) -> list[str]:
    return [o["key"] for o in run["input"]["objects"]]


def test_sample_batch_becomes_one_run_with_both_uploads() -> None:
    # Given the sample SQS batch of two uploads
    starter = RecordingStarter()
    # When the trigger handles it
    result = trigger.start_retraining(
        SQSEvent(load_event("sqs-s3-object-created.json")), BUCKET, 1000, starter, MemoryClaims()
    )
    # Then one run covers both, with the versions S3 reported
    assert len(starter.runs) == 1
    run = starter.runs[0]
    assert run["input"]["source"] == "s3"
    assert run["input"]["objects"][0] == {
        "key": "data/train/2026/11/28/sales-0001.csv",
        "etag": "6f1c2e0d4b9a8c7e5f3a1b2c3d4e5f60",
        "versionId": "3HL4kqtJvjVBH40Nrjfkd.bv5u8Rt9Zf",
        "size": 18342,
    }
    assert result.started == (run["name"],)
    assert result.response() == {"batchItemFailures": []}


def test_duplicate_delivery_is_one_object_but_a_new_version_is_new_data() -> None:
    # Given the same upload delivered twice, and the key overwritten later (a new version)
    first = object_created("data/train/a.csv", version_id="v1", etag="e1")
    overwrite = object_created("data/train/a.csv", version_id="v2", etag="e2")
    event = sqs_event(first, first, overwrite)
    starter = RecordingStarter()
    # When the batch is handled
    trigger.start_retraining(SQSEvent(event), BUCKET, 100, starter, MemoryClaims())
    # Then one run covers both versions, each once
    objects = starter.runs[0]["input"]["objects"]
    assert [(o["key"], o["versionId"]) for o in objects] == [
        ("data/train/a.csv", "v1"),
        ("data/train/a.csv", "v2"),
    ]


def test_messages_that_are_not_training_uploads_are_dropped_not_retried() -> None:
    # Given a batch mixing a good upload with garbage, other prefixes, markers and other buckets
    event = sqs_event(
        object_created("data/train/good.csv"),
        "not json",
        '["a list"]',
        {"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}}},
        object_created("data/test/holdout.csv"),
        object_created("data/train/_SUCCESS"),
        object_created("data/train/.hidden.csv"),
        object_created("data/train/elsewhere.csv", bucket="another-bucket"),
    )
    starter = RecordingStarter()
    # When it is handled
    result = trigger.start_retraining(SQSEvent(event), BUCKET, 100, starter, MemoryClaims())
    # Then only the good upload starts a run and nothing is sent back to the queue
    assert [keys_of(r) for r in starter.runs] == [["data/train/good.csv"]]
    assert result.ignored_messages == 8
    assert result.response() == {"batchItemFailures": []}


def test_a_batch_with_nothing_to_train_starts_nothing() -> None:
    starter = RecordingStarter()
    result = trigger.start_retraining(
        SQSEvent(sqs_event(object_created("data/test/x.csv"))), BUCKET, 100, starter, MemoryClaims()
    )
    assert starter.runs == []
    assert result.started == ()


def test_keys_are_used_as_sent_and_both_etag_spellings_are_read() -> None:
    # Given EventBridge's un-encoded key with a literal "+" and moto's "eTag" spelling
    event = sqs_event(
        object_created("data/train/c++ notes.csv", etag="aa", etag_field="eTag", version_id=None)
    )
    starter = RecordingStarter()
    # When handled
    trigger.start_retraining(SQSEvent(event), BUCKET, 100, starter, MemoryClaims())
    # Then the key is not unquoted, the etag is found and "null" means no version
    assert starter.runs[0]["input"]["objects"] == [
        {"key": "data/train/c++ notes.csv", "etag": "aa", "size": 120}
    ]


def test_a_burst_is_split_into_runs_of_the_configured_size() -> None:
    # Given 250 uploads
    uploads = [object_created(f"data/train/part-{i:04d}.csv") for i in range(250)]
    starter = RecordingStarter()
    # When at most 100 objects go into one run
    result = trigger.start_retraining(
        SQSEvent(sqs_event(*uploads)), BUCKET, 100, starter, MemoryClaims()
    )
    # Then three runs cover every object exactly once, in key order
    sizes = [len(keys_of(r)) for r in starter.runs]
    covered = [k for r in starter.runs for k in keys_of(r)]
    assert sizes == [100, 100, 50]
    assert covered == sorted(f"data/train/part-{i:04d}.csv" for i in range(250))
    assert len(set(result.started)) == 3


def test_runs_of_long_keys_stay_within_the_step_functions_input_limit() -> None:
    # Given 600 uploads with keys near S3's 1 KiB maximum
    prefix = "data/train/" + "k" * 980
    found = [
        (f"m{i}", DataObject(f"{prefix}{i:04d}.csv", "e" * 32, "v" * 32, 10)) for i in range(600)
    ]
    # When they are planned with a generous objects-per-run limit
    chunks = trigger.plan_runs(found, 1000)
    # Then several runs cover them all, each input under the limit Step Functions accepts
    sizes = [len(json.dumps(c.request()["input"]).encode()) for c in chunks]
    assert len(chunks) > 1
    assert max(sizes) <= trigger.MAX_INPUT_BYTES < 256 * 1024
    assert sum(len(c.objects) for c in chunks) == 600


def test_only_messages_of_a_run_that_failed_to_start_are_retried() -> None:
    # Given 3 uploads split into runs of 2, and Step Functions failing for the second run
    uploads = [object_created(f"data/train/{n}.csv") for n in ("a", "b", "c")]
    event = sqs_event(*uploads, message_ids=["m-a", "m-b", "m-c"])
    chunks = trigger.plan_runs(
        [
            (m, DataObject(f"data/train/{n}.csv", "0cc175b9c0f1b6a831c399e269772661", "v1", 120))
            for m, n in zip(["m-a", "m-b", "m-c"], ["a", "b", "c"], strict=True)
        ],
        2,
    )
    starter = RecordingStarter(fail_for={chunks[1].name})
    # When the batch is handled
    result = trigger.start_retraining(SQSEvent(event), BUCKET, 2, starter, MemoryClaims())
    # Then the first run started and only the message of the failed run goes back to the queue
    assert [keys_of(r) for r in starter.runs] == [["data/train/a.csv", "data/train/b.csv"]]
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "m-c"}]}


def test_execution_name_is_a_valid_hash_of_the_objects_in_any_order() -> None:
    a = DataObject("data/train/a.csv", '"e1"', "v1", 1)
    b = DataObject("data/train/b.csv", "e2", None, 2)
    name = trigger.execution_name([a, b])
    assert VALID_EXECUTION_NAME.match(name)
    assert name.startswith("s3-")
    # Order and ETag quoting do not matter; a different version does
    assert trigger.execution_name([b, a]) == name
    assert trigger.execution_name([DataObject("data/train/a.csv", "e1", "v1"), b]) == name
    assert trigger.execution_name([DataObject("data/train/a.csv", "e1", "v2"), b]) != name


def test_plan_runs_merges_message_ids_of_duplicates() -> None:
    obj = DataObject("data/train/a.csv", "e", "v")
    chunks = trigger.plan_runs([("m2", obj), ("m1", obj)], 10)
    assert len(chunks) == 1
    assert chunks[0].objects == (obj,)
    assert chunks[0].message_ids == ("m1", "m2")


def test_start_execution_treats_an_existing_execution_as_started(aws: Aws) -> None:
    # Given a state machine and a run already started under the name for these objects
    arn = create_state_machine(aws.stepfunctions)
    run = trigger.RunChunk("s3-abc", (DataObject("data/train/a.csv", "e", "v"),), ()).request()
    first = trigger.start_execution(aws.stepfunctions, arn, run)
    aws.stepfunctions.stop_execution(executionArn=first["executionArn"])
    # When the same run is asked for again after that execution ended
    again = trigger.start_execution(aws.stepfunctions, arn, run)
    # Then ExecutionAlreadyExists is success and no second execution exists
    assert first["status"] == "started"
    assert again == {"name": "s3-abc", "status": "already-started"}
    assert [e["name"] for e in executions(aws.stepfunctions, arn)] == ["s3-abc"]


def test_start_execution_passes_other_errors_on(aws: Aws) -> None:
    # Given no state machine at all
    run = trigger.RunChunk("s3-abc", (DataObject("data/train/a.csv"),), ()).request()
    # Then the error reaches the caller, which reports the messages for retry
    with pytest.raises(aws.stepfunctions.exceptions.StateMachineDoesNotExist):
        trigger.start_execution(aws.stepfunctions, aws.settings.state_machine_arn, run)


# --- claims: an object is trained on once across batches -----------------------------------


def records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def test_an_event_redelivered_with_a_new_file_only_adds_the_new_file(aws: Aws) -> None:
    # Given a batch that started a run for a.csv
    claims = records(aws)
    upload = object_created("data/train/a.csv")
    first = RecordingStarter()
    trigger.start_retraining(SQSEvent(sqs_event(upload)), BUCKET, 100, first, claims)
    # When the same S3 event comes again in a later batch together with a new file
    second = RecordingStarter()
    result = trigger.start_retraining(
        SQSEvent(sqs_event(upload, object_created("data/train/b.csv"))), BUCKET, 100, second, claims
    )
    # Then the second run covers only the new file, under the name of what it covers
    assert [keys_of(r) for r in second.runs] == [["data/train/b.csv"]]
    (run,) = second.runs
    assert run["name"] == trigger.execution_name(
        [DataObject("data/train/b.csv", "0cc175b9c0f1b6a831c399e269772661", "v1", 120)]
    )
    assert run["name"] != first.runs[0]["name"]
    assert result.already_claimed == 1
    assert result.response() == {"batchItemFailures": []}


def test_an_event_redelivered_alone_asks_only_for_the_run_that_exists(aws: Aws) -> None:
    # Given a.csv trained on by a run, and b.csv by a run together with c.csv
    claims = records(aws)
    a, b, c = (object_created(f"data/train/{n}.csv") for n in "abc")
    first = RecordingStarter()
    trigger.start_retraining(SQSEvent(sqs_event(a)), BUCKET, 100, first, claims)
    trigger.start_retraining(SQSEvent(sqs_event(b, c)), BUCKET, 100, first, claims)
    for _ in range(4):  # delivered 2-5 times in all, each time in a batch of its own
        again = RecordingStarter()
        from_a = trigger.start_retraining(SQSEvent(sqs_event(a, a)), BUCKET, 100, again, claims)
        from_b = trigger.start_retraining(SQSEvent(sqs_event(b)), BUCKET, 100, again, claims)
        # Then a.csv alone maps to the name of its run, which Step Functions refuses to start
        # again (ExecutionAlreadyExists, see test_start_retrain), and b.csv starts nothing
        assert [r["name"] for r in again.runs] == [first.runs[0]["name"]]
        assert from_b.already_claimed == 1
        assert from_a.response() == from_b.response() == {"batchItemFailures": []}


def test_an_overwritten_key_is_new_data(aws: Aws) -> None:
    # Given a.csv v1 trained on, in a bucket with versions and in one without ("null")
    claims = records(aws)
    for old, new in [
        (
            object_created("data/train/a.csv", version_id="v1", etag="e1"),
            object_created("data/train/a.csv", version_id="v2", etag="e2"),
        ),
        (
            object_created("data/train/u.csv", version_id=None, etag="e1"),
            object_created("data/train/u.csv", version_id=None, etag="e2"),
        ),
    ]:
        trigger.start_retraining(SQSEvent(sqs_event(old)), BUCKET, 100, RecordingStarter(), claims)
        # When the key is overwritten (new version id, or only a new ETag)
        starter = RecordingStarter()
        trigger.start_retraining(SQSEvent(sqs_event(new, old)), BUCKET, 100, starter, claims)
        # Then the new version starts a run of its own, the old one is not trained again
        (run,) = starter.runs
        assert [o["etag"] for o in run["input"]["objects"]] == ["e2"]


def test_a_retry_after_claiming_but_failing_to_start_starts_the_same_run(aws: Aws) -> None:
    # Given a batch whose objects were claimed before StartExecution failed (a crash: the claims
    # were not released)
    claims = records(aws)
    event = sqs_event(
        object_created("data/train/a.csv"),
        object_created("data/train/b.csv"),
        message_ids=["m-a", "m-b"],
    )
    (chunk,) = trigger.plan_runs(
        [
            (m, DataObject(f"data/train/{n}.csv", "0cc175b9c0f1b6a831c399e269772661", "v1", 120))
            for m, n in (("m-a", "a"), ("m-b", "b"))
        ],
        100,
    )
    assert claims.claim_objects(chunk.name, chunk.objects[:1], "2026-11-28T00:00:00Z") == []
    # and, this time, Step Functions failing once after the claim
    failing = RecordingStarter(fail_for={chunk.name})
    failed = trigger.start_retraining(SQSEvent(event), BUCKET, 100, failing, claims)
    assert failed.response() == {
        "batchItemFailures": [{"itemIdentifier": "m-a"}, {"itemIdentifier": "m-b"}]
    }
    claims.claim_objects(chunk.name, chunk.objects[:1], "2026-11-28T00:00:00Z")  # crash again
    # When the identical batch is retried
    starter = RecordingStarter()
    result = trigger.start_retraining(SQSEvent(event), BUCKET, 100, starter, claims)
    # Then it takes its own claims back and starts the run under the same name, on both objects
    assert [r["name"] for r in starter.runs] == [chunk.name]
    assert keys_of(starter.runs[0]) == ["data/train/a.csv", "data/train/b.csv"]
    assert set(claims.object_claims(chunk.objects).values()) == {chunk.name}
    assert result.already_claimed == 0


class RacingClaims(RunRecords):
    """Another run claims b.csv right after this one read the claims."""

    def object_claims(self, objects: Iterable[DataObject]) -> dict[DataObject, str]:
        found = super().object_claims(objects)
        for obj in objects:
            if obj.key == "data/train/b.csv":
                RunRecords.claim_objects(self, "s3-winner", [obj], "2026-11-28T00:00:00Z")
        return found


def test_losing_a_claim_race_releases_this_runs_claims_and_retries(aws: Aws) -> None:
    claims = RacingClaims(aws.dynamodb, TABLE, STACK)
    event = sqs_event(
        object_created("data/train/a.csv"),
        object_created("data/train/b.csv"),
        message_ids=["m-a", "m-b"],
    )
    starter = RecordingStarter()
    # When another run claims b.csv between this run's read and its claim
    result = trigger.start_retraining(SQSEvent(event), BUCKET, 100, starter, claims)
    # Then nothing starts, a.csv is free again, and the messages come back
    assert starter.runs == []
    a, b = (
        DataObject(f"data/train/{n}.csv", "0cc175b9c0f1b6a831c399e269772661", "v1", 120)
        for n in "ab"
    )
    assert records(aws).object_claims([a, b]) == {b: "s3-winner"}
    assert result.response() == {
        "batchItemFailures": [{"itemIdentifier": "m-a"}, {"itemIdentifier": "m-b"}]
    }
    # And the retry leaves b.csv to its winner and trains a.csv
    retry = RecordingStarter()
    trigger.start_retraining(SQSEvent(event), BUCKET, 100, retry, records(aws))
    assert [keys_of(r) for r in retry.runs] == [["data/train/a.csv"]]
