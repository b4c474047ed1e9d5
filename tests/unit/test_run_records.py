from __future__ import annotations

from moto_stack import STACK, TABLE, Aws

from refit.run_input import DataObject
from refit.run_records import ChampionPointer, RunRecords, object_claim_key


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


def test_object_claims_are_per_version_and_kept_by_their_run(aws: Aws) -> None:
    # Given a claimed object version, including an unversioned ("null") one and a huge key
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    v1 = DataObject("data/train/a.csv", '"e1"', "v1", 10)
    v2 = DataObject("data/train/a.csv", "e2", "v2", 10)
    plain = DataObject("data/train/u.csv", "e1", None, 10)
    long = DataObject("data/train/" + "k" * 1020, "e1", "v" * 32, 10)
    assert records.claim_objects("run-1", [v1, plain, long], "2026-11-28T00:00:00Z") == []
    # When another run claims them and a new version
    lost = records.claim_objects("run-2", [v1, v2, plain, long], "2026-11-28T00:01:00Z")
    # Then only the new version is its; the same run may claim its own objects again
    assert lost == [v1, plain, long]
    assert records.claim_objects("run-1", [v1], "2026-11-28T00:02:00Z") == []
    assert records.object_claims([v1, v2, plain, long]) == {
        v1: "run-1",
        v2: "run-2",
        plain: "run-1",
        long: "run-1",
    }
    # And a run releases only its own claims
    assert object_claim_key(STACK, plain)["sk"] == "data/train/u.csv#e1"
    assert object_claim_key(STACK, long)["sk"].startswith("SHA256#")
    records.release_objects("run-2", [v1, v2])
    assert records.object_claims([v1, v2]) == {v1: "run-1"}
    item = aws.dynamodb.get_item(
        TableName=TABLE, Key={"pk": {"S": f"OBJECT#{STACK}"}, "sk": {"S": "data/train/a.csv#v1"}}
    )["Item"]
    assert item["runName"]["S"] == "run-1" and "expiration" not in item


def test_object_claims_read_more_than_one_batch_get(aws: Aws) -> None:
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    objects = [DataObject(f"data/train/{i:04d}.csv", "e", "v") for i in range(250)]
    assert records.claim_objects("run-1", objects[::2], "2026-11-28T00:00:00Z") == []
    assert records.object_claims(objects) == {o: "run-1" for o in objects[::2]}
