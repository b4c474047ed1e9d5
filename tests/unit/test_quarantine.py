"""A run whose job failed on one accepted file: the file is set aside, the rest trains once more."""

from __future__ import annotations

import json
from typing import Any

from refit import layout
from refit.data.trained_data import TrainedVersion
from refit.ledger.run_queue import RunQueue, execution_input
from refit.ledger.run_records import RunRecords
from refit.run_input import DataObject
from refit.start_retrain.quarantine import failed_file, retry_without_failed_file
from tests.unit.builders import csv_rows, keys_under, put
from tests.unit.moto_stack import BUCKET, STACK, TABLE, Aws

RUN = "s3-failed"
NOW = "2026-12-07T20:00:00Z"


def queue(aws: Aws) -> RunQueue:
    return RunQueue(aws.dynamodb, TABLE, STACK)


def records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def failed_run(aws: Aws, reason: str, **request: Any) -> list[DataObject]:
    """A run of three pinned files whose job failed with ``reason``; its objects."""
    accepted, objects = [], []
    for name in ("a.csv", "b.csv", "c.csv"):
        uploaded = put(aws.s3, f"data/train/{name}", csv_rows(3))
        pinned = layout.pinned_data_key(RUN, uploaded["key"])
        put(aws.s3, pinned, csv_rows(3))
        obj = DataObject(uploaded["key"], uploaded["etag"], uploaded["versionId"], uploaded["size"])
        objects.append(obj)
        accepted.append(
            {**obj.to_dict(), "rows": 3, "columns": 4, "pinnedUri": f"s3://{BUCKET}/{pinned}"}
        )
    manifest_key = f"{layout.run_prefix(RUN)}manifest.json"
    put(aws.s3, manifest_key, json.dumps({"runId": RUN, "accepted": accepted}).encode())
    queue(aws).enqueue(objects, NOW)
    queue(aws).take(RUN, objects, NOW)
    ledger = records(aws)
    ledger.put_started(
        RUN,
        {"manifestUri": f"s3://{BUCKET}/{manifest_key}", "request": {"source": "s3", **request}},
    )
    ledger.finish(
        RUN,
        {
            "status": "FAILED",
            "error": {"Error": "SageMaker.AlgorithmError", "FailureReason": reason},
        },
    )
    return objects


def retry(aws: Aws) -> Any:
    return retry_without_failed_file(
        RUN,
        records=records(aws),
        queue=queue(aws),
        s3=aws.s3,
        bucket=BUCKET,
        sns=aws.sns,
        topic=aws.settings.notification_topic_arn,
        stack_name=STACK,
        now=NOW,
    )


REASON = (
    "AlgorithmError: ExecuteUserScriptError: exit code 1\nlast output:\n... ERROR training "
    f"failed: train/runs/{RUN}/data/b.csv: line 3, column 2: something the contract missed"
)


def test_the_file_a_job_failed_on_is_set_aside_and_the_others_queued_once_more(aws: Aws) -> None:
    # Given a triggered run whose job failed on b.csv, named in its FailureReason
    a, b, c = failed_run(aws, REASON)
    # When the trigger handles its end
    outcome = retry(aws)
    # Then b.csv is moved to data/rejected/ with the job's reason
    assert outcome is not None and outcome.key == "data/train/b.csv"
    assert keys_under(aws.s3, "data/train/") == ["data/train/a.csv", "data/train/c.csv"]
    sidecar = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key="data/rejected/b.csv.reason.json")["Body"].read()
    )
    assert sidecar["reason"].startswith(f"the training job of run {RUN} failed on it: ")
    assert "line 3, column 2" in sidecar["reason"]
    assert (sidecar["versionId"], sidecar["runId"]) == (b.version_id, RUN)
    # And a.csv and c.csv are queued again, for one run that says it retries the failed one
    pending = queue(aws).pending(10)
    assert pending == [a, c]
    assert execution_input(pending)["retryOf"] == RUN
    # And the failed run's record says what happened
    record = records(aws).get_run(RUN)
    assert record is not None
    assert record["quarantine"] == {
        "key": "data/train/b.csv",
        "reason": outcome.reason,
        "movedTo": "data/rejected/b.csv",
        "requeuedObjects": 2,
    }  # (notRetried: None, which the record leaves out)
    # And a second delivery of the end event changes nothing
    assert retry(aws) is None
    assert queue(aws).pending(10) == [a, c]


def test_a_retry_that_fails_again_is_not_retried(aws: Aws) -> None:
    failed_run(aws, REASON, retryOf="s3-first")
    outcome = retry(aws)
    assert outcome is not None and outcome.requeued == 0
    assert outcome.not_retried is not None
    assert "already retried run s3-first's files" in outcome.not_retried
    assert queue(aws).pending(10) == []
    assert keys_under(aws.s3, "data/rejected/") == [
        "data/rejected/b.csv",
        "data/rejected/b.csv.reason.json",
    ]


def test_a_run_started_by_hand_is_not_repeated_as_uploads(aws: Aws) -> None:
    failed_run(aws, REASON, source="manual")
    outcome = retry(aws)
    assert outcome is not None and outcome.requeued == 0
    assert "start it again" in str(outcome.not_retried)
    assert queue(aws).pending(10) == []


def test_a_failure_that_names_no_file_of_the_run_changes_nothing(aws: Aws) -> None:
    failed_run(aws, "AlgorithmError: out of memory")
    assert retry(aws) is None
    assert keys_under(aws.s3, "data/rejected/") == []
    assert queue(aws).pending(10) == []


def test_the_longest_pinned_path_named_wins() -> None:
    entries = [
        TrainedVersion("data/train/a.csv", None, None, 1, 1, 2, "runs/r/data/a.csv", "r", NOW),
        TrainedVersion("data/train/x/a.csv", None, None, 1, 1, 2, "runs/r/data/x/a.csv", "r", NOW),
    ]
    found = failed_file("train/runs/r/data/x/a.csv: line 1", entries)
    assert found is not None and found.key == "data/train/x/a.csv"
    assert failed_file("train/runs/r/data/a.csv.bak: line 1", entries) is None
