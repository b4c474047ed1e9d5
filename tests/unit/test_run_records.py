from __future__ import annotations

from refit.ledger.run_records import ChampionPointer, RunRecords, dynamo_item, plain_item
from tests.unit.moto_stack import STACK, TABLE, Aws


def test_run_record_is_started_then_finished(aws: Aws) -> None:
    # Given a ledger
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    # When a run starts and finishes with float metrics
    records.put_started("run-1", {"startedAt": "2026-11-28T00:00:00Z"})
    records.finish("run-1", {"status": "PROMOTED", "metrics": {"challenger": 0.25, "rows": 10}})
    # Then the record holds both, with numbers round-tripped
    run = records.get_run("run-1")
    assert run is not None
    assert run["status"] == "PROMOTED"
    assert run["startedAt"] == "2026-11-28T00:00:00Z"
    assert run["metrics"] == {"challenger": 0.25, "rows": 10}


def test_champion_pointer_round_trips(aws: Aws) -> None:
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    assert records.get_champion() is None
    champion = ChampionPointer("m-1", "s3://b/models/m-1/output/model.tar.gz", "m-1", "run-1", 7)
    records.set_champion(champion, "2026-11-28T00:00:00Z")
    assert records.get_champion() == champion


def test_resources_index_lists_newest_first_and_forgets(aws: Aws) -> None:
    # Given three runs that created resources, one of them unknown to the ledger before
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    records.put_started("run-1", {})
    records.register_resources("run-1", "m-1", "c-1", "2026-11-01T00:00:00Z", promoted=True)
    records.register_resources("run-2", "m-2", None, "2026-11-02T00:00:00Z", promoted=False)
    records.register_resources("run-3", "m-3", "c-3", "2026-11-03T00:00:00Z", promoted=True)
    # When one is forgotten
    records.forget_resources("run-2")
    # Then the index lists the others, newest first, and the run records stay
    listed = records.owned_resources()
    assert [r.run_id for r in listed] == ["run-3", "run-1"]
    assert listed[0].promoted and listed[0].endpoint_config_name == "c-3"
    assert records.get_run("run-2") is not None


def test_resources_index_keeps_the_model_package_and_forgets_it(aws: Aws) -> None:
    # Given a run indexed with its package, and one indexed before the index kept packages
    # (its run record has EvaluateModels' modelPackageArn all the same)
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    package = "arn:aws:sagemaker:us-east-1:123456789012:model-package/refit-test-models/"
    first = package + "1"
    records.register_resources(
        "run-1", "m-1", "c-1", "2026-11-01T00:00:00Z", promoted=True, model_package_arn=first
    )
    records.annotate("run-2", {"modelPackageArn": package + "2"})
    records.register_resources("run-2", "m-2", "c-2", "2026-11-02T00:00:00Z", promoted=True)
    records.register_resources("run-3", "m-3", "c-3", "2026-11-03T00:00:00Z", promoted=True)
    # When the index is read
    listed = {r.run_id: r.model_package_arn for r in records.owned_resources()}
    # Then each entry names its package, or None when the run has none
    assert listed == {"run-1": first, "run-2": package + "2", "run-3": None}
    # And forgetting a run drops the package from the index item too
    records.forget_resources("run-1")
    run = records.get_run("run-1")
    assert run is not None and "resourceModelPackageArn" not in run


def test_items_round_trip_floats_and_drop_none(aws: Aws) -> None:
    # Given an item with a float, a nested None and a None attribute
    item = dynamo_item(
        {"pk": "X", "sk": "Y", "score": 0.1, "nested": {"a": None, "b": 2}, "n": None}
    )
    # Then DynamoDB gets Decimals and no None values, and the plain view gives the numbers back
    assert "n" not in item and item["nested"] == {"M": {"b": {"N": "2"}}}
    assert plain_item(item) == {"pk": "X", "sk": "Y", "score": 0.1, "nested": {"b": 2}}


ABORTED = {
    "status": "ABORTED",
    "finishedAt": "2026-11-28T10:00:00Z",
    "error": {"Error": "States.Aborted", "Cause": "stopped"},
}


def test_finish_if_running_finishes_a_running_record_once(aws: Aws) -> None:
    # Given a run PrepareRun recorded as RUNNING
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    records.put_started("run-1", {"startedAt": "2026-11-28T09:00:00Z", "jobName": "job-1"})
    # When it is finished by the run-ended path, twice (a redelivered event)
    first = records.finish_if_running("run-1", ABORTED)
    again = records.finish_if_running("run-1", {**ABORTED, "finishedAt": "2026-11-28T11:00:00Z"})
    # Then only the first call wrote, and the record keeps what PrepareRun wrote
    assert (first, again) == (True, False)
    run = records.get_run("run-1")
    assert run is not None
    assert run["status"] == "ABORTED"
    assert run["finishedAt"] == "2026-11-28T10:00:00Z"
    assert run["error"] == {"Error": "States.Aborted", "Cause": "stopped"}
    assert (run["startedAt"], run["jobName"], run["runId"]) == (
        "2026-11-28T09:00:00Z",
        "job-1",
        "run-1",
    )


def test_finish_if_running_leaves_a_recorded_run_alone(aws: Aws) -> None:
    # Given a run RecordRun already finished
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    records.put_started("run-1", {"startedAt": "2026-11-28T09:00:00Z"})
    records.finish("run-1", {"status": "PROMOTED", "finishedAt": "2026-11-28T09:30:00Z"})
    before = records.get_run("run-1")
    # When the run-ended path tries to finish it
    wrote = records.finish_if_running("run-1", ABORTED)
    # Then nothing changes
    assert wrote is False
    assert records.get_run("run-1") == before


def test_finish_if_running_creates_the_record_of_a_run_stopped_before_prepare_run(
    aws: Aws,
) -> None:
    # Given no record at all (the execution was stopped before PrepareRun wrote one)
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    # When it is finished
    wrote = records.finish_if_running("s3-never-prepared", {**ABORTED, "pk": "X", "sk": "Y"})
    # Then a record exists under the run's own key (pk/sk in the attributes are ignored)
    assert wrote is True
    run = records.get_run("s3-never-prepared")
    assert run is not None
    assert (run["pk"], run["sk"]) == ("RUN#s3-never-prepared", "RUN")
    assert (run["runId"], run["status"]) == ("s3-never-prepared", "ABORTED")
    assert aws.dynamodb.scan(TableName=TABLE)["Count"] == 1
