from __future__ import annotations

from typing import Any

import pytest

from refit.ledger.run_records import ChampionPointer, RunRecords
from refit.registry.champion import (
    BUSY_STATUSES,
    Champion,
    EndpointBusy,
    EndpointFailed,
    resolve_champion,
)
from tests.unit.builders import deploy_endpoint, set_endpoint_status
from tests.unit.moto_stack import STACK, TABLE, Aws

ENDPOINT = "refit-test-endpoint"
POINTER = ChampionPointer(
    model_name="run-7",
    model_data_url="s3://refit-test-data/models/run-7/output/model.tar.gz",
    endpoint_config_name="run-7-config",
    run_id="run-7",
    feature_count=3,
)


def ledger(aws: Aws, pointer: ChampionPointer | None = POINTER) -> RunRecords:
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    if pointer is not None:
        records.set_champion(pointer, "2026-11-01T00:00:00Z")
    return records


def count_sagemaker_calls(aws: Aws) -> list[str]:
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    aws.sagemaker.meta.events.register("before-call.sagemaker.*", record)
    return calls


def test_batch_mode_uses_the_pointer_without_asking_sagemaker(aws: Aws) -> None:
    calls = count_sagemaker_calls(aws)
    state = resolve_champion(aws.sagemaker, ledger(aws), ENDPOINT, "batch")
    assert state.champion == Champion("run-7", POINTER.model_data_url, "run-7-config", 3, "pointer")
    assert not state.endpoint_exists
    assert calls == []


@pytest.mark.parametrize("pointer", [POINTER, None])
def test_without_an_endpoint_the_pointer_decides(aws: Aws, pointer: ChampionPointer | None) -> None:
    # Given no endpoint (never created, or deleted by someone)
    state = resolve_champion(aws.sagemaker, ledger(aws, pointer), ENDPOINT, "endpoint")
    # Then the last promoted model is the champion, if any, and the endpoint must be created
    assert state.endpoint_exists is False
    assert (state.champion.model_name if state.champion else None) == (
        pointer.model_name if pointer else None
    )


def test_the_live_model_is_the_champion_even_when_the_pointer_disagrees(aws: Aws) -> None:
    # Given an endpoint serving a model other than the pointer's (say, after a manual rollback)
    config = deploy_endpoint(
        aws.sagemaker, ENDPOINT, "run-5", "s3://refit-test-data/models/run-5/output/model.tar.gz"
    )
    # When the champion is resolved
    state = resolve_champion(aws.sagemaker, ledger(aws), ENDPOINT, "endpoint")
    # Then it is what is live; its feature count is unknown (the pointer is about another model)
    assert state.endpoint_exists
    assert state.champion == Champion(
        "run-5", "s3://refit-test-data/models/run-5/output/model.tar.gz", config, None, "endpoint"
    )


def test_a_live_model_the_pointer_left_finds_its_package_through_its_run_tag(aws: Aws) -> None:
    # Given the endpoint serving run-5's model (tagged refit:run = run-5, whose record names its
    # package) while the pointer moved on to a batch-mode run's model
    deploy_endpoint(
        aws.sagemaker, ENDPOINT, "run-5", "s3://refit-test-data/models/run-5/output/model.tar.gz"
    )
    model_arn = aws.sagemaker.describe_model(ModelName="run-5")["ModelArn"]
    aws.sagemaker.add_tags(ResourceArn=model_arn, Tags=[{"Key": "refit:run", "Value": "run-5"}])
    records = ledger(aws)
    package = "arn:aws:sagemaker:us-east-1:123456789012:model-package/refit-test-models/5"
    records.put_started("run-5", {"modelPackageArn": package})
    # When the champion is resolved
    state = resolve_champion(aws.sagemaker, records, ENDPOINT, "endpoint")
    # Then the live model's package is known (refit models marks it, refit rollback starts there)
    assert state.champion is not None and state.champion.model_package_arn == package


def test_the_pointer_adds_the_feature_count_of_the_live_model(aws: Aws) -> None:
    deploy_endpoint(aws.sagemaker, ENDPOINT, "run-7", POINTER.model_data_url)
    state = resolve_champion(aws.sagemaker, ledger(aws), ENDPOINT, "endpoint")
    assert state.champion is not None
    assert (state.champion.model_name, state.champion.feature_count) == ("run-7", 3)


def test_the_lookup_costs_the_same_however_many_models_exist(aws: Aws) -> None:
    # Given many models besides the live one
    for i in range(20):
        aws.sagemaker.create_model(
            ModelName=f"old-{i}",
            PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://b/{i}/model.tar.gz"},
            ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        )
    deploy_endpoint(aws.sagemaker, ENDPOINT, "run-7", POINTER.model_data_url)
    calls = count_sagemaker_calls(aws)
    # When the champion is resolved
    resolve_champion(aws.sagemaker, ledger(aws), ENDPOINT, "endpoint")
    # Then three describe calls suffice, and nothing is listed
    assert calls == ["DescribeEndpoint", "DescribeEndpointConfig", "DescribeModel"]


def test_a_live_model_whose_definition_was_deleted_comes_from_the_pointer(aws: Aws) -> None:
    deploy_endpoint(aws.sagemaker, ENDPOINT, "run-7", POINTER.model_data_url)
    aws.sagemaker.delete_model(ModelName="run-7")
    state = resolve_champion(aws.sagemaker, ledger(aws), ENDPOINT, "endpoint")
    assert state.champion is not None
    assert state.champion.model_data_url == POINTER.model_data_url


def test_an_endpoint_in_flight_stops_the_run(aws: Aws) -> None:
    deploy_endpoint(aws.sagemaker, ENDPOINT, "run-7", POINTER.model_data_url)
    records = ledger(aws)
    for status in BUSY_STATUSES:
        # Given another deployment in progress
        set_endpoint_status(ENDPOINT, status)
        # Then this run refuses to start, saying why
        with pytest.raises(EndpointBusy, match=f"{ENDPOINT} is {status}: another deployment"):
            resolve_champion(aws.sagemaker, records, ENDPOINT, "endpoint")


def test_a_failed_endpoint_asks_for_deletion(aws: Aws) -> None:
    deploy_endpoint(aws.sagemaker, ENDPOINT, "run-7", POINTER.model_data_url)
    set_endpoint_status(ENDPOINT, "Failed")
    with pytest.raises(EndpointFailed, match="delete-endpoint --endpoint-name refit-test-endpoint"):
        resolve_champion(aws.sagemaker, ledger(aws), ENDPOINT, "endpoint")


def test_a_busy_endpoint_does_not_matter_in_batch_mode(aws: Aws) -> None:
    deploy_endpoint(aws.sagemaker, ENDPOINT, "run-5", "s3://b/run-5/model.tar.gz")
    set_endpoint_status(ENDPOINT, "Updating")
    state = resolve_champion(aws.sagemaker, ledger(aws), ENDPOINT, "batch")
    assert state.champion is not None
    assert state.champion.model_name == "run-7"
