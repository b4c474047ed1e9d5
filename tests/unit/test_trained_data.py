"""What a run trains on is pinned, and what has been trained is on record.

PrepareRun copies each validated version to ``runs/<run>/data/`` and points the job's channel
at the copies; EvaluateModels folds a trained run into ``runs/cumulative-manifest.json``; a full
retrain reuses its pinned copies. Driven through the handlers, in moto.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError
from refit_data import label_rule

from refit import layout
from refit.data import datasets, trained_data
from refit.ledger.run_records import RunRecords
from refit.run_input import RunRequest
from tests.lambda_handlers import load_handler
from tests.unit.builders import (
    FakeLambdaContext,
    csv_rows,
    put,
    run_prepare,
    write_training_code,
)
from tests.unit.moto_stack import BUCKET, STACK, TABLE, Aws
from tests.unit.state_builders import evaluation_json, put_job_output

REGRESSION_LABELS = label_rule("reg:squarederror")


def select_all(aws: Aws) -> datasets.DataSelection:
    """What a listing run of run id ``r`` selects from ``data/train/``."""
    selection = datasets.select_data(
        aws.s3,
        BUCKET,
        RunRequest(),
        run_id="r",
        max_file_bytes=2**20,
        champion_features=None,
        rule=REGRESSION_LABELS,
    )
    return datasets.set_aside_rejected(aws.s3, BUCKET, "r", selection)


@pytest.fixture
def prepare_app(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("TRAINING_CODE_DIR", str(write_training_code(tmp_path / "training")))
    put(aws.s3, "data/test/holdout.csv", csv_rows(5))
    return load_handler("prepare_run")


@pytest.fixture
def evaluate_app(aws: Aws) -> ModuleType:
    return load_handler("evaluate_models")


def prepare(app: ModuleType, execution_input: Any, name: str) -> dict[str, Any]:
    return run_prepare(app, execution_input, name, start_time="2026-11-28T09:20:00Z")


def train(aws: Aws, app: ModuleType, plan: dict[str, Any], challenger: float = 0.41) -> Any:
    """The job completed (its output archive exists); EvaluateModels runs."""
    job = plan["trainingJob"]["TrainingJobName"]
    evaluation = evaluation_json(champion=None, challenger=challenger)
    model_url = put_job_output(
        aws.s3, job, {layout.EVALUATION_FILE: json.dumps(evaluation).encode()}
    )
    training = {"TrainingJobName": job, "TrainingJobStatus": "Completed", "modelDataUrl": model_url}
    evaluation = app.lambda_handler({"run": plan, "training": training}, FakeLambdaContext())
    # RecordRun ends the run: the next one may take the run lock
    RunRecords(aws.dynamodb, TABLE, STACK).finish(plan["runId"], {"status": "PROMOTED"})
    return evaluation


def job_reads(aws: Aws, plan: dict[str, Any]) -> dict[str, bytes]:
    """What the training job downloads: its train channel's ManifestFile, resolved now."""
    (channel,) = [c for c in plan["trainingJob"]["InputDataConfig"] if c["ChannelName"] == "train"]
    source = channel["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "ManifestFile"
    manifest_key = source["S3Uri"].removeprefix(f"s3://{BUCKET}/")
    prefix, *relative = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read()
    )
    base = prefix["prefix"].removeprefix(f"s3://{BUCKET}/")
    return {
        name: aws.s3.get_object(Bucket=BUCKET, Key=base + name)["Body"].read() for name in relative
    }


def run_manifest(aws: Aws, plan: dict[str, Any]) -> dict[str, Any]:
    key = plan["data"]["manifestUri"].removeprefix(f"s3://{BUCKET}/")
    document: dict[str, Any] = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    return document


def cumulative(aws: Aws) -> dict[str, dict[str, Any]]:
    body = aws.s3.get_object(Bucket=BUCKET, Key=layout.CUMULATIVE_MANIFEST_KEY)["Body"].read()
    return {entry["key"]: entry for entry in json.loads(body)["objects"]}


def triggered(*objects: dict[str, Any]) -> dict[str, Any]:
    return {"source": "s3", "objects": list(objects)}


# --- pinning: the job reads what PrepareRun validated ------------------------------------------


def test_a_file_deleted_after_prepare_run_still_trains_its_validated_version(
    prepare_app: ModuleType, aws: Aws
) -> None:
    # Given two uploads prepared for a run
    a = put(aws.s3, "data/train/2026/a.csv", csv_rows(4))
    b = put(aws.s3, "data/train/2026/b.csv", csv_rows(6))
    plan = prepare(prepare_app, triggered(a, b), "s3-one")
    # When one is deleted before the job downloads its data
    aws.s3.delete_object(Bucket=BUCKET, Key="data/train/2026/a.csv")
    # Then the job still finds both validated versions, and nothing else
    assert job_reads(aws, plan) == {
        "runs/s3-one/data/2026/a.csv": csv_rows(4),
        "runs/s3-one/data/2026/b.csv": csv_rows(6),
    }


def test_an_overwrite_after_prepare_run_does_not_reach_the_job(
    prepare_app: ModuleType, aws: Aws
) -> None:
    # Given an upload prepared for a run
    a = put(aws.s3, "data/train/a.csv", csv_rows(4))
    plan = prepare(prepare_app, triggered(a), "s3-one")
    # When the key is overwritten (even with a file that would fail validation) meanwhile
    put(aws.s3, "data/train/a.csv", b"label,x\nnot,validated\n")
    # Then the job trains on the validated bytes
    assert job_reads(aws, plan) == {"runs/s3-one/data/a.csv": csv_rows(4)}


def test_the_run_manifest_has_versions_etags_rows_and_pinned_copies(
    prepare_app: ModuleType, aws: Aws
) -> None:
    a = put(aws.s3, "data/train/a.csv", csv_rows(4, newline="\r\n"))
    plan = prepare(prepare_app, triggered(a), "s3-one")
    (entry,) = run_manifest(aws, plan)["accepted"]
    assert entry == {
        "key": "data/train/a.csv",
        "versionId": a["versionId"],
        "etag": a["etag"],
        "size": a["size"],
        "rows": 4,
        "columns": 4,
        "pinnedUri": f"s3://{BUCKET}/runs/s3-one/data/a.csv",
        "pinnedBy": None,
    }
    # The copy is byte for byte (CRLF kept: train.py reads universal newlines), same ETag
    pinned = aws.s3.head_object(Bucket=BUCKET, Key="runs/s3-one/data/a.csv")
    assert pinned["ETag"].strip('"') == a["etag"]


def test_a_deletion_between_validation_and_pinning_still_pins_the_version(aws: Aws) -> None:
    # Given a checked file whose key is deleted before the copy (a delete marker)
    put(aws.s3, "data/train/a.csv", csv_rows(3))
    selection = select_all(aws)
    aws.s3.delete_object(Bucket=BUCKET, Key="data/train/a.csv")
    # When it is pinned
    pinned = datasets.pin_accepted(aws.s3, BUCKET, "r", selection)
    # Then the validated version is copied all the same
    assert [f.pinned_key for f in pinned.accepted] == ["runs/r/data/a.csv"]
    body = aws.s3.get_object(Bucket=BUCKET, Key="runs/r/data/a.csv")["Body"].read()
    assert body == csv_rows(3)


def test_a_version_gone_for_good_is_skipped_not_replaced(aws: Aws) -> None:
    # Given a checked file, overwritten since, whose checked version is then deleted for good
    put(aws.s3, "data/train/gone.csv", csv_rows(3))
    selection = select_all(aws)
    put(aws.s3, "data/train/gone.csv", csv_rows(9))
    (checked,) = selection.accepted
    aws.s3.delete_object(Bucket=BUCKET, Key=checked.key, VersionId=checked.version_id)
    # When it is pinned
    pinned = datasets.pin_accepted(aws.s3, BUCKET, "r", selection)
    # Then it is skipped with the reason; the newer, unchecked version is not copied instead
    assert pinned.accepted == ()
    assert [s.to_dict() for s in pinned.skipped] == [
        {
            "key": "data/train/gone.csv",
            "reason": "the validated version vanished before it was pinned",
        }
    ]
    assert aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")["KeyCount"] == 0


def test_without_a_version_id_the_checked_etag_guards_the_copy(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a checked file in a bucket without versioning (no version id to copy by)
    checked = datasets.DataFile("data/train/a.csv", "abc", None, 10, 3, 4)
    calls: list[dict[str, Any]] = []

    def overwritten_meanwhile(**arguments: Any) -> None:
        # moto ignores CopySourceIfMatch; S3 answers 412 when the ETag no longer matches
        calls.append(arguments)
        raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "CopyObject")

    monkeypatch.setattr(aws.s3, "copy_object", overwritten_meanwhile)
    selection = datasets.DataSelection((checked,), (), ())
    # When it is pinned after an overwrite
    pinned = datasets.pin_accepted(aws.s3, BUCKET, "r", selection)
    # Then the copy required the checked ETag, and the changed file is skipped
    assert calls[0]["CopySourceIfMatch"] == '"abc"'
    assert calls[0]["CopySource"] == {"Bucket": BUCKET, "Key": "data/train/a.csv"}
    assert (pinned.accepted, [s.key for s in pinned.skipped]) == ((), ["data/train/a.csv"])


def test_many_files_are_pinned_in_parallel(aws: Aws) -> None:
    for index in range(40):
        put(aws.s3, f"data/train/batch/{index:02}.csv", csv_rows(2))
    selection = select_all(aws)
    pinned = datasets.pin_accepted(aws.s3, BUCKET, "r", selection)
    assert [f.pinned_key for f in pinned.accepted] == [
        f"runs/r/data/batch/{index:02}.csv" for index in range(40)
    ]


# --- the cumulative manifest -------------------------------------------------------------------


def test_two_runs_accumulate_in_the_cumulative_manifest(
    prepare_app: ModuleType, evaluate_app: ModuleType, aws: Aws
) -> None:
    # Given a first run that trained on a.csv and was promoted
    a = put(aws.s3, "data/train/a.csv", csv_rows(4))
    first = train(aws, evaluate_app, prepare(prepare_app, triggered(a), "s3-one"))
    assert first["trainedData"] == {
        "updated": True,
        "cumulativeManifestUri": f"s3://{BUCKET}/runs/cumulative-manifest.json",
        "objects": 1,
        "rows": 4,
        "added": 1,
        "replaced": 0,
        "removed": 0,
    }
    # When a second run trains on b.csv and its challenger is rejected
    b = put(aws.s3, "data/train/b.csv", csv_rows(6))
    second_plan = prepare(prepare_app, triggered(b), "s3-two")
    second_plan["champion"] = None
    second = train(aws, evaluate_app, second_plan)
    # Then both versions are on record (a rejected challenger's data was still trained on)
    assert second["trainedData"]["objects"] == 2
    entries = cumulative(aws)
    assert entries == {
        "data/train/a.csv": {
            "key": "data/train/a.csv",
            "versionId": a["versionId"],
            "etag": a["etag"],
            "size": a["size"],
            "rows": 4,
            "columns": 4,
            "pinnedUri": f"s3://{BUCKET}/runs/s3-one/data/a.csv",
            "runId": "s3-one",
            "trainedAt": entries["data/train/a.csv"]["trainedAt"],
        },
        "data/train/b.csv": {
            "key": "data/train/b.csv",
            "versionId": b["versionId"],
            "etag": b["etag"],
            "size": b["size"],
            "rows": 6,
            "columns": 4,
            "pinnedUri": f"s3://{BUCKET}/runs/s3-two/data/b.csv",
            "runId": "s3-two",
            "trainedAt": entries["data/train/b.csv"]["trainedAt"],
        },
    }
    # And EvaluateModels again (a Lambda retry) changes nothing
    again = train(aws, evaluate_app, second_plan)
    assert (again["trainedData"]["added"], again["trainedData"]["objects"]) == (0, 2)


def test_an_overwrite_replaces_and_a_delete_removes(
    prepare_app: ModuleType, evaluate_app: ModuleType, aws: Aws
) -> None:
    # Given a.csv and b.csv trained by a first run
    a = put(aws.s3, "data/train/a.csv", csv_rows(4))
    b = put(aws.s3, "data/train/b.csv", csv_rows(6))
    train(aws, evaluate_app, prepare(prepare_app, triggered(a, b), "s3-one"))
    # When a.csv is overwritten and b.csv deleted, and the overwrite's run trains
    newer = put(aws.s3, "data/train/a.csv", csv_rows(7))
    aws.s3.delete_object(Bucket=BUCKET, Key="data/train/b.csv")
    result = train(aws, evaluate_app, prepare(prepare_app, triggered(newer), "s3-two"))
    # Then a.csv's newer version replaced the older one and b.csv dropped out
    assert (result["trainedData"]["replaced"], result["trainedData"]["removed"]) == (1, 1)
    entries = cumulative(aws)
    assert list(entries) == ["data/train/a.csv"]
    assert entries["data/train/a.csv"]["versionId"] == newer["versionId"]
    assert entries["data/train/a.csv"]["rows"] == 7
    assert entries["data/train/a.csv"]["pinnedUri"].endswith("runs/s3-two/data/a.csv")


def test_a_full_retrain_reuses_pinned_versions_and_validates_the_rest(
    prepare_app: ModuleType, evaluate_app: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run that trained a.csv, b.csv and c.csv
    a = put(aws.s3, "data/train/a.csv", csv_rows(4))
    b = put(aws.s3, "data/train/b.csv", csv_rows(5))
    c = put(aws.s3, "data/train/c.csv", csv_rows(6))
    train(aws, evaluate_app, prepare(prepare_app, triggered(a, b, c), "s3-one"))
    # And since then b.csv was deleted, c.csv overwritten and d.csv uploaded (not trained yet)
    aws.s3.delete_object(Bucket=BUCKET, Key="data/train/b.csv")
    newer_c = put(aws.s3, "data/train/c.csv", csv_rows(2))
    put(aws.s3, "data/train/d.csv", csv_rows(3))
    read: list[str] = []
    original_check = datasets._check

    def counting_check(s3: Any, bucket: str, candidate: Any, *args: Any) -> Any:
        read.append(candidate.key)
        return original_check(s3, bucket, candidate, *args)

    monkeypatch.setattr(datasets, "_check", counting_check)
    # When a full retrain is started (refit start --full)
    plan = prepare(prepare_app, {"trainingMode": "full"}, "full-1")
    # Then it trains on a.csv's pinned copy (not read again) and validates c.csv's new version
    # and d.csv; b.csv is gone from the training set
    assert sorted(read) == ["data/train/c.csv", "data/train/d.csv"]
    assert job_reads(aws, plan) == {
        "runs/s3-one/data/a.csv": csv_rows(4),
        "runs/full-1/data/c.csv": csv_rows(2),
        "runs/full-1/data/d.csv": csv_rows(3),
    }
    assert plan["trainingMode"] == "full"
    assert plan["data"]["rows"] == 4 + 2 + 3
    accepted = {f["key"]: f for f in run_manifest(aws, plan)["accepted"]}
    assert accepted["data/train/a.csv"]["pinnedBy"] == "s3-one"
    assert accepted["data/train/c.csv"]["versionId"] == newer_c["versionId"]
    # And once it trained, the cumulative manifest is exactly the current data
    monkeypatch.undo()
    train(aws, evaluate_app, plan)
    entries = cumulative(aws)
    assert {key: entry["runId"] for key, entry in entries.items()} == {
        "data/train/a.csv": "s3-one",
        "data/train/c.csv": "full-1",
        "data/train/d.csv": "full-1",
    }


def test_a_reused_entry_that_does_not_fit_the_run_is_checked_like_any_file(
    prepare_app: ModuleType, evaluate_app: ModuleType, aws: Aws
) -> None:
    # Given a trained 3-feature file, and a 2-feature file listed before it
    a = put(aws.s3, "data/train/a.csv", csv_rows(4))
    train(aws, evaluate_app, prepare(prepare_app, triggered(a), "s3-one"))
    put(aws.s3, "data/train/0-narrow.csv", csv_rows(4, features=2))
    # When a full retrain lists them (the first good file fixes the width, as always)
    plan = prepare(prepare_app, {"trainingMode": "full"}, "full-1")
    # Then the trained file is not taken on its record: it is read, and refused with the reason
    assert plan["data"]["accepted"] == 1
    (rejected,) = plan["data"]["rejectedFiles"]
    assert rejected["key"] == "data/train/a.csv"
    assert "expected 3 (as in data/train/0-narrow.csv)" in rejected["reason"]


def test_a_failed_update_is_reported_and_does_not_lose_the_challenger(
    prepare_app: ModuleType, evaluate_app: ModuleType, aws: Aws
) -> None:
    # Given an unreadable cumulative manifest
    aws.s3.put_object(Bucket=BUCKET, Key=layout.CUMULATIVE_MANIFEST_KEY, Body=b"{not json")
    a = put(aws.s3, "data/train/a.csv", csv_rows(4))
    plan = prepare(prepare_app, triggered(a), "s3-one")
    # When the run's job completed
    result = train(aws, evaluate_app, plan)
    # Then the decision stands and the failure is in $.evaluation for the run record
    assert result["decision"] == "promote"
    assert result["trainedData"]["updated"] is False
    assert "TrainedDataUnreadable" in result["trainedData"]["error"]


def test_load_trained_is_empty_before_any_run(aws: Aws) -> None:
    assert trained_data.load_trained(aws.s3, BUCKET) == {}
