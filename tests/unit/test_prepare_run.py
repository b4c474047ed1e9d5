"""PrepareRun through its handler, in moto: input to RunPlan, run record and bucket changes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from refit.data.datasets import NoTestData
from refit.ledger.run_queue import RunInProgress, RunLock, RunQueue
from refit.ledger.run_records import ChampionPointer, RunRecords
from refit.registry.champion import EndpointBusy
from refit.run_input import DataObject, InvalidRunInput
from tests.lambda_handlers import load_handler
from tests.unit.builders import (
    PREPARE_EXECUTION_ARN,
    FakeLambdaContext,
    csv_rows,
    deploy_endpoint,
    keys_under,
    load_event,
    put,
    run_prepare,
    set_endpoint_status,
    write_training_code,
)
from tests.unit.moto_stack import BUCKET, STACK, TABLE, Aws

# Failed runs publish no application metric; Powertools warns about that, which is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture
def app(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("TRAINING_CODE_DIR", str(write_training_code(tmp_path / "training")))
    put(aws.s3, "data/test/holdout.csv", csv_rows(5))
    return load_handler("prepare_run")


def prepare(app: ModuleType, execution_input: Any, name: str = "run-1") -> dict[str, Any]:
    return run_prepare(app, execution_input, name)


def records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def stored(value: Any) -> Any:
    """A plan's part as the run record keeps it: None values dropped."""
    if isinstance(value, dict):
        return {k: stored(v) for k, v in value.items() if v is not None}
    return value


def test_a_manual_prefix_run_is_planned_and_recorded(app: ModuleType, aws: Aws) -> None:
    # Given data under the sample input's prefix and elsewhere, and no champion yet
    put(aws.s3, "data/train/2026/11/a.csv", csv_rows(10))
    put(aws.s3, "data/train/2026/11/b.csv", csv_rows(6))
    put(aws.s3, "data/train/2025/old.csv", csv_rows(3))
    # When the sample manual input runs
    plan = prepare(app, load_event("execution-input-manual.json"))
    # Then it trains from scratch on that prefix only
    assert plan["status"] == "ready"
    assert plan["trainingMode"] == "full"
    assert plan["data"]["accepted"] == 2
    assert plan["data"]["rows"] == 16
    train_manifest = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key="runs/run-1/train.manifest")["Body"].read()
    )
    assert train_manifest[1:] == ["runs/run-1/data/2026/11/a.csv", "runs/run-1/data/2026/11/b.csv"]
    # And the code it names was uploaded
    code_key = plan["trainingJob"]["HyperParameters"]["sagemaker_submit_directory"]
    assert keys_under(aws.s3, "code/") == [code_key.removeprefix(f"s3://{BUCKET}/")]
    # And a RUNNING record tells what the run covers
    record = records(aws).get_run("run-1")
    assert record is not None
    assert record["status"] == "RUNNING"
    assert record["executionArn"] == PREPARE_EXECUTION_ARN + "run-1"
    assert record["startedAt"] == "2026-11-28T09:20:00.123Z"
    assert record["data"]["accepted"] == 2
    assert record["manifestUri"] == f"s3://{BUCKET}/runs/run-1/manifest.json"
    assert record["jobName"] == plan["trainingJob"]["TrainingJobName"]
    # And the record keeps what the plan says (the table drops nulls), its data without the
    # inlined files
    data = {k: v for k, v in plan["data"].items() if k != "rejectedFiles"}
    assert record["data"] == stored(data)
    for key in ("trainingMode", "trainingModeReason", "dataWindow", "deploymentMode"):
        assert record[key] == stored(plan[key]), key
    assert (record["planStatus"], record["testSets"]) == (plan["status"], stored(plan["testSets"]))
    # And the plan fits a Step Functions state as it is
    assert json.loads(json.dumps(plan)) == plan


def test_a_triggered_run_sets_bad_files_aside(app: ModuleType, aws: Aws) -> None:
    # Given two uploads announced by the trigger, one of them with a header row
    good = put(aws.s3, "data/train/good.csv", csv_rows(4))
    bad = put(aws.s3, "data/train/bad.csv", b"label,x,y,z\n1,2,3,4\n")
    # When PrepareRun handles the trigger's input
    plan = prepare(app, {"source": "s3", "objects": [good, bad]}, name="s3-abc")
    # Then the good file is planned, the bad one moved with its reason listed
    assert plan["data"]["accepted"] == 1
    assert plan["data"]["rejectedFiles"] == [
        {
            "key": "data/train/bad.csv",
            "reason": plan["data"]["rejectedFiles"][0]["reason"],
            "movedTo": "data/rejected/bad.csv",
        }
    ]
    assert "header row" in plan["data"]["rejectedFiles"][0]["reason"]
    assert keys_under(aws.s3, "data/train/") == ["data/train/good.csv"]


def test_nothing_valid_is_recorded_as_rejected_input(app: ModuleType, aws: Aws) -> None:
    put(aws.s3, "data/train/only.csv", b"a,b\n")
    plan = prepare(app, {})
    assert plan["status"] == "rejected-input"
    record = records(aws).get_run("run-1")
    assert record is not None
    assert (record["status"], record["planStatus"]) == ("RUNNING", "rejected-input")


def test_invalid_input_fails_with_a_named_error_and_no_side_effects(
    app: ModuleType, aws: Aws
) -> None:
    put(aws.s3, "data/train/a.csv", csv_rows(3))
    with pytest.raises(InvalidRunInput) as raised:
        prepare(app, {"trainingMode": "warm"})
    # Step Functions shows the class name as $.error.Error, the message as the cause
    assert type(raised.value).__name__ == "InvalidRunInput"
    assert "run-1: trainingMode must be one of auto, full, incremental" in str(raised.value)
    assert records(aws).get_run("run-1") is None
    assert keys_under(aws.s3, "runs/") == []


def test_missing_test_data_stops_the_run_before_touching_the_data(
    app: ModuleType, aws: Aws
) -> None:
    # Given no test set and a file that would be rejected
    aws.s3.delete_object(Bucket=BUCKET, Key="data/test/holdout.csv")
    put(aws.s3, "data/train/bad.txt", b"x")
    # Then the run fails with NoTestData and the file stays where it was
    with pytest.raises(NoTestData) as raised:
        prepare(app, {})
    assert "no test data under data/test/" in str(raised.value)
    assert keys_under(aws.s3, "data/train/") == ["data/train/bad.txt"]


def test_an_endpoint_mid_update_stops_the_run(app: ModuleType, aws: Aws) -> None:
    deploy_endpoint(aws.sagemaker, aws.settings.endpoint_name, "m-1", "s3://b/m-1/model.tar.gz")
    set_endpoint_status(aws.settings.endpoint_name, "Updating")
    put(aws.s3, "data/train/a.csv", csv_rows(3))
    with pytest.raises(EndpointBusy):
        prepare(app, {})
    assert keys_under(aws.s3, "runs/") == []


def test_a_live_champion_is_continued_and_fixes_the_feature_count(
    app: ModuleType, aws: Aws
) -> None:
    # Given a live champion that refit promoted, trained on 3 features
    model_url = f"s3://{BUCKET}/models/s3-old/output/model.tar.gz"
    config = deploy_endpoint(aws.sagemaker, aws.settings.endpoint_name, "s3-old", model_url)
    records(aws).set_champion(
        ChampionPointer("s3-old", model_url, config, "s3-old", feature_count=3),
        "2026-11-01T00:00:00Z",
    )
    put(aws.s3, "models/s3-old/output/model.tar.gz", b"the champion's artifact")
    # And new files with 3 and with 2 features
    put(aws.s3, "data/train/fits.csv", csv_rows(5, features=3))
    put(aws.s3, "data/train/narrow.csv", csv_rows(5, features=2))
    # When a run is prepared
    plan = prepare(app, {})
    # Then it continues the live model and refuses the file that does not fit it
    assert plan["trainingMode"] == "incremental"
    assert plan["champion"]["modelName"] == "s3-old"
    assert plan["deploy"]["endpointExists"] is True
    model_channel = plan["trainingJob"]["InputDataConfig"][-1]
    assert model_channel["DataSource"]["S3DataSource"]["S3Uri"] == model_url
    assert plan["data"]["accepted"] == 1
    assert (
        "expected 4 (the champion's 3 features + label)"
        in (plan["data"]["rejectedFiles"][0]["reason"])
    )


def test_a_wiring_mistake_in_the_state_machine_is_reported_as_such(app: ModuleType) -> None:
    with pytest.raises(ValueError, match="PrepareRun expects"):
        app.lambda_handler({"trainingMode": "full"}, FakeLambdaContext())


# --- one run at a time: the run lock ---------------------------------------------------------


def run_queue(aws: Aws) -> RunQueue:
    return RunQueue(aws.dynamodb, TABLE, STACK)


def test_a_manual_run_takes_the_free_lock(app: ModuleType, aws: Aws) -> None:
    put(aws.s3, "data/train/a.csv", csv_rows(3))
    prepare(app, {}, name="manual-1")
    # The lock names the run from the execution's start, with no input (nothing to resume)
    assert run_queue(aws).current_lock() == RunLock("manual-1", "2026-11-28T09:20:00.123Z")


def test_a_manual_run_is_refused_while_another_run_is_running(app: ModuleType, aws: Aws) -> None:
    # Given a dispatched run holding the lock and RUNNING
    run_queue(aws).acquire(
        RunLock("s3-abc", "2026-11-28T09:00:00Z", {"source": "s3", "objects": [{"key": "x"}]})
    )
    records(aws).put_started("s3-abc", {"startedAt": "2026-11-28T09:00:00Z"})
    put(aws.s3, "data/train/a.csv", csv_rows(3))
    put(aws.s3, "data/train/bad.csv", b"x")
    # When a manual run is prepared
    with pytest.raises(RunInProgress) as raised:
        prepare(app, {}, name="manual-1")
    # Then it fails with a named error naming the holder, before touching anything
    assert type(raised.value).__name__ == "RunInProgress"
    assert "run s3-abc has been training or deploying" in str(raised.value)
    assert "since 2026-11-28T09:00:00Z" in str(raised.value)
    assert records(aws).get_run("manual-1") is None
    assert keys_under(aws.s3, "runs/") == []
    assert keys_under(aws.s3, "data/train/") == ["data/train/a.csv", "data/train/bad.csv"]
    lock = run_queue(aws).current_lock()
    assert lock is not None and lock.run_name == "s3-abc"


def test_a_manual_run_takes_over_from_a_run_that_recorded_its_end(
    app: ModuleType, aws: Aws
) -> None:
    # Given the lock of a run that RecordRun finished, its end event not processed yet
    run_queue(aws).acquire(RunLock("s3-abc", "2026-11-28T09:00:00Z"))
    records(aws).put_started("s3-abc", {})
    records(aws).finish("s3-abc", {"status": "REJECTED"})
    put(aws.s3, "data/train/a.csv", csv_rows(3))
    # When a manual run is prepared
    plan = prepare(app, {}, name="manual-1")
    # Then it runs and holds the lock
    assert plan["status"] == "ready"
    lock = run_queue(aws).current_lock()
    assert lock is not None and lock.run_name == "manual-1"


def test_the_dispatched_run_itself_passes_its_lock(app: ModuleType, aws: Aws) -> None:
    # Given the trigger's lock for the run it started
    good = put(aws.s3, "data/train/good.csv", csv_rows(4))
    run_input = {"source": "s3", "objects": [good]}
    run_queue(aws).acquire(RunLock("s3-abc", "2026-11-28T09:19:59Z", run_input))
    # When that run's PrepareRun runs, and again (a Lambda retry)
    first = prepare(app, run_input, name="s3-abc")
    again = prepare(app, run_input, name="s3-abc")
    # Then both are planned and the lock is unchanged
    assert first["status"] == again["status"] == "ready"
    assert run_queue(aws).current_lock() == RunLock("s3-abc", "2026-11-28T09:19:59Z", run_input)


def test_a_manual_run_records_its_files_so_late_events_do_not_train_them_again(
    app: ModuleType, aws: Aws
) -> None:
    # Given one file whose S3 event is already queued, and one whose event has not come yet
    queued = put(aws.s3, "data/train/a.csv", csv_rows(10))
    late = put(aws.s3, "data/train/b.csv", csv_rows(6))
    queued_object = DataObject(queued["key"], queued["etag"], queued["versionId"])
    late_object = DataObject(late["key"], late["etag"], late["versionId"])
    assert run_queue(aws).enqueue([queued_object], "2026-11-28T09:19:00Z") == [queued_object]
    # When a manual full retrain covers both
    plan = prepare(app, {"trainingMode": "full"}, name="manual-full")
    assert plan["data"]["accepted"] == 2
    # Then neither waits in the queue, the ledger names the manual run for both
    assert run_queue(aws).queued_count() == 0
    assert run_queue(aws).ledger([queued_object, late_object]) == {
        queued_object: "manual-full",
        late_object: "manual-full",
    }
    # and the late event for b.csv is a duplicate
    assert run_queue(aws).enqueue([late_object], "2026-11-28T09:30:00Z") == []


def test_a_two_host_stack_gets_the_data_in_parts_it_can_shard(
    app: ModuleType, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stack training on two hosts, and one file of data
    monkeypatch.setattr(app, "settings", replace(app.settings, training_instance_count=2))
    put(aws.s3, "data/train/2026/11/a.csv", csv_rows(40))
    # When a run is prepared
    plan = prepare(app, load_event("execution-input-manual.json"))
    # Then the job's train channel is a prefix of two parts, sharded between the hosts
    train = plan["trainingJob"]["InputDataConfig"][0]
    source = train["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "S3Prefix"
    assert source["S3DataDistributionType"] == "ShardedByS3Key"
    assert plan["trainingJob"]["ResourceConfig"]["InstanceCount"] == 2
    parts = keys_under(aws.s3, source["S3Uri"].removeprefix(f"s3://{BUCKET}/"))
    assert len(parts) == 2
    body = b"".join(aws.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in parts)
    assert body == csv_rows(40)
