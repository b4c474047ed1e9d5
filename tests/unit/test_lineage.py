"""refit.registry.lineage: one Model Registry package per trained model, decided by RecordRun."""

from __future__ import annotations

import time
from typing import Any

from moto.sagemaker.models import sagemaker_backends

from refit.ledger.run_records import ChampionPointer, RunRecords
from refit.record_run.run_report import record_run
from refit.registry import lineage
from refit.registry.champion import resolve_champion
from refit.run_state import RunState
from tests.model_registry import insert_model_packages
from tests.unit.builders import deploy_endpoint
from tests.unit.moto_stack import ACCOUNT, GROUP, REGION, STACK, TABLE, Aws
from tests.unit.state_builders import (
    evaluation_result,
    model_data_url,
    promoted_state,
    run_plan,
    training_result,
)


def _records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def _register(aws: Aws, run_id: str, decision: str = "promote") -> dict[str, Any]:
    event = RunState.parse({"run": run_plan(run_id), "training": training_result(run_id)})
    return lineage.register(aws.sagemaker, _records(aws), GROUP, event, evaluation_result(decision))


def _packages(aws: Aws) -> list[dict[str, Any]]:
    listed = aws.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)
    return [
        aws.sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"])
        for p in listed["ModelPackageSummaryList"]
    ]


def _state_with_package(run_id: str, arn: str, decision: str = "promote") -> dict[str, Any]:
    state = promoted_state(run_id)
    state["evaluation"] = {**evaluation_result(decision), "modelPackageArn": arn}
    return state


def test_register_creates_one_pending_package_with_the_run_lineage(aws: Aws) -> None:
    # Given a run whose evaluation was read
    _records(aws).put_started("run-1", {"startedAt": "2026-11-28T10:00:00Z"})
    # When EvaluateModels registers it, and a retry registers it again
    first = _register(aws, "run-1")
    again = _register(aws, "run-1")
    # Then one package exists, pending, carrying run id, manifest, mode and metrics
    assert first == again and first["modelPackageVersion"] == 1
    (package,) = _packages(aws)
    assert package["ModelApprovalStatus"] == lineage.PENDING
    metadata = package["CustomerMetadataProperties"]
    assert metadata["runId"] == "run-1"
    assert metadata["manifestUri"].endswith("runs/run-1/manifest.json")
    assert {"metric", "challenger", "trainingMode"} <= set(metadata)
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == training_result("run-1")["modelDataUrl"]
    # And the run record knows its package
    assert _records(aws).get_run("run-1")["modelPackageArn"] == first["modelPackageArn"]


def test_a_registry_failure_is_recorded_not_raised(aws: Aws) -> None:
    # Given a group that does not exist
    event = RunState.parse({"run": run_plan("run-1"), "training": training_result("run-1")})
    # When registering
    result = lineage.register(
        aws.sagemaker, _records(aws), "missing-group", event, evaluation_result("promote")
    )
    # Then the evaluation carries the error, no ARN
    assert result["modelPackageArn"] is None and result["modelPackageError"]


def test_record_run_approves_the_promoted_package_and_points_the_champion_at_it(
    aws: Aws,
) -> None:
    # Given a registered, promoted run
    arn = _register(aws, "run-2")["modelPackageArn"]
    event = {
        "outcome": "promoted",
        "executionName": "run-2",
        "state": _state_with_package("run-2", arn),
    }
    # When RecordRun runs (twice: a retry)
    for _ in range(2):
        report = record_run(
            event,
            _records(aws),
            aws.sns,
            aws.settings.notification_topic_arn,
            aws.settings,
            sagemaker=aws.sagemaker,
        )
    # Then the package is Approved with the gate's reason, metadata intact
    package = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == lineage.APPROVED
    assert package["ApprovalDescription"] == evaluation_result("promote")["reason"]
    assert package["CustomerMetadataProperties"]["runId"] == "run-2"
    # And the record and the champion pointer name it
    assert report.record["modelPackageStatus"] == lineage.APPROVED
    champion = _records(aws).get_champion()
    assert champion is not None and champion.model_package_arn == arn


def test_record_run_rejects_the_package_of_a_rejected_or_failed_run(aws: Aws) -> None:
    # Given two registered runs: one the gate rejected, one that failed deploying
    rejected = _register(aws, "run-3", "reject")["modelPackageArn"]
    failed = _register(aws, "run-4")["modelPackageArn"]
    failed_state = _state_with_package("run-4", failed)
    failed_state["error"] = {"Error": "Refit.EndpointRolledBack", "Cause": "rolled back"}
    events = [
        {
            "outcome": "rejected",
            "executionName": "run-3",
            "state": _state_with_package("run-3", rejected, "reject"),
        },
        {"outcome": "failed", "executionName": "run-4", "state": failed_state},
    ]
    # When RecordRun records them
    for event in events:
        record_run(
            event,
            _records(aws),
            aws.sns,
            aws.settings.notification_topic_arn,
            aws.settings,
            sagemaker=aws.sagemaker,
        )
    # Then both packages are Rejected, each with its reason
    by_arn = {p["ModelPackageArn"]: p for p in _packages(aws)}
    assert by_arn[rejected]["ModelApprovalStatus"] == lineage.REJECTED
    assert by_arn[rejected]["ApprovalDescription"] == evaluation_result("reject")["reason"]
    assert by_arn[failed]["ModelApprovalStatus"] == lineage.REJECTED
    assert "Refit.EndpointRolledBack" in by_arn[failed]["ApprovalDescription"]


def test_lineage_lists_newest_first_joined_with_runs_and_marks_the_live_one(aws: Aws) -> None:
    # Given three registered runs, the second of them live
    records = _records(aws)
    arns = []
    for run_id in ("run-1", "run-2", "run-3"):
        records.put_started(run_id, {"startedAt": f"2026-11-28T1{run_id[-1]}:00:00Z"})
        arns.append(_register(aws, run_id)["modelPackageArn"])
    records.set_champion(
        ChampionPointer(
            "job-run-2", "s3://b/m.tar.gz", "job-run-2", "run-2", model_package_arn=arns[1]
        ),
        promoted_at="2026-11-28T12:30:00Z",
    )
    # When listing the two newest
    entries = lineage.lineage(aws.sagemaker, records, GROUP, limit=2, live_package_arn=arns[1])
    # Then run-3 comes first, run-2 is live, and each row has its run record
    assert [e.run_id for e in entries] == ["run-3", "run-2"]
    assert [e.live for e in entries] == [False, True]
    assert entries[1].to_dict()["startedAt"] == "2026-11-28T12:00:00Z"
    assert entries[0].to_dict()["version"] == 3


# --- the champion's package costs the same however many models exist ---------------------------

ENDPOINT = "refit-test-endpoint"


def _insert_past_packages(first: int, count: int) -> None:
    """``count`` refit-shaped packages (runs past-<n>), straight into moto's backend."""

    def request(n: int) -> dict[str, Any]:
        run_id = f"past-{n:05d}"
        event = RunState.parse({"run": run_plan(run_id), "training": training_result(run_id)})
        return lineage.package_request(GROUP, event, evaluation_result("reject"))

    requests = (request(n) for n in range(first, first + count))
    insert_model_packages(ACCOUNT, REGION, requests, lineage.REJECTED)


def _promote(aws: Aws, run_id: str, *, replacing: bool = False) -> str:
    """Register ``run_id`` as EvaluateModels does, serve it on the endpoint, point at it."""
    arn = str(_register(aws, run_id)["modelPackageArn"])
    model = f"job-{run_id}"
    if replacing:  # moto has no UpdateEndpoint: the same name on the new config
        aws.sagemaker.delete_endpoint(EndpointName=ENDPOINT)
    config = deploy_endpoint(aws.sagemaker, ENDPOINT, model, model_data_url(model))
    _records(aws).set_champion(
        ChampionPointer(model, model_data_url(model), config, run_id, 3, model_package_arn=arn),
        promoted_at="2026-11-28T12:00:00Z",
    )
    return arn


def _lookups(aws: Aws) -> tuple[list[str], list[str], str | None]:
    """The calls (service:Operation, in order) of resolve_champion and of live_package_arn."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(f"{model.service_model.service_name}:{model.name}")

    clients = (aws.sagemaker, aws.dynamodb)
    for client in clients:
        client.meta.events.register("before-call.*.*", record, unique_id="count-lookups")
    try:
        state = resolve_champion(aws.sagemaker, _records(aws), ENDPOINT, "endpoint")
        champion_calls = list(calls)
        calls.clear()
        live = lineage.live_package_arn(aws.sagemaker, _records(aws), ENDPOINT)
    finally:
        for client in clients:
            client.meta.events.unregister("before-call.*.*", unique_id="count-lookups")
    assert state.champion is not None and state.champion.model_package_arn == live
    return champion_calls, calls, live


def test_the_champion_lookup_costs_the_same_with_5_and_5000_registered_models(aws: Aws) -> None:
    started = time.perf_counter()
    # Given 5 registered models, the newest promoted and served by the endpoint
    _insert_past_packages(0, 4)
    live_of_5 = _promote(aws, "run-5")
    few = _lookups(aws)
    # And then 5,000, the newest promoted in its turn
    _insert_past_packages(4, 4994)
    live_of_5000 = _promote(aws, "run-5000", replacing=True)
    assert len(sagemaker_backends[ACCOUNT][REGION].model_packages) == 5000
    many = _lookups(aws)
    # Then each lookup found the package the endpoint serves ...
    assert (few[2], many[2]) == (live_of_5, live_of_5000)
    assert lineage.package_version(live_of_5000) == 5000
    # ... with exactly the same calls, in the same order, and no listing
    assert few[:2] == many[:2]
    for calls in many[:2]:
        assert calls and not [c for c in calls if c.split(":")[1].startswith("List")]
    assert "sagemaker:DescribeModelPackage" not in many[0] + many[1]
    assert time.perf_counter() - started < 20
