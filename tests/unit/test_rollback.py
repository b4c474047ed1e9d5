"""Rollback runs (refit.registry.rollback): the target in the Model Registry, PrepareRun's plan,
RecordRun.

A rollback run trains nothing: PrepareRun finds an approved package and plans its container, the
promotion path deploys it (not run here), RecordRun points the champion at the target and rejects
the package it took off the endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from refit.ledger.run_queue import RunInProgress, RunLock, RunQueue
from refit.ledger.run_records import ChampionPointer, RunRecords
from refit.record_run.outcome import RESTORED, ROLLED_BACK
from refit.record_run.run_report import record_run
from refit.registry import lineage
from refit.registry.rollback import NoRollbackTarget, RollbackTarget, find_rollback_target
from refit.run_input import RollbackRequest
from tests.lambda_handlers import load_handler
from tests.unit.builders import (
    csv_rows,
    deploy_endpoint,
    put,
    run_prepare,
    write_training_code,
)
from tests.unit.moto_stack import BUCKET, GROUP, STACK, TABLE, Aws
from tests.unit.state_builders import IMAGE, model_data_url

# Failed runs publish no application metric; Powertools warns about that, which is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ENDPOINT = "refit-test-endpoint"
APPROVED, REJECTED, PENDING = lineage.APPROVED, lineage.REJECTED, lineage.PENDING


def _image(run_id: str) -> str:
    # Each package its own image tag: the plan shows which package it deploys.
    return f"{IMAGE}-{run_id}"


def _environment(run_id: str) -> dict[str, str]:
    return {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://c/{run_id}"}


def _metadata(run_id: str) -> dict[str, str]:
    return {"runId": run_id, "features": "3", "objective": "reg:squarederror"}


def _package(aws: Aws, run_id: str, status: str) -> str:
    """A package of the stack's group shaped like refit.registry.lineage registers it."""
    return str(
        aws.sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            InferenceSpecification={
                "Containers": [
                    {
                        "Image": _image(run_id),
                        "ModelDataUrl": model_data_url(f"job-{run_id}"),
                        "Environment": _environment(run_id),
                    }
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelApprovalStatus=status,
            CustomerMetadataProperties=_metadata(run_id),
        )["ModelPackageArn"]
    )


def _history(aws: Aws, *statuses: str) -> list[str]:
    """Packages of run-1, run-2, ... (versions 1, 2, ...) with these statuses; their ARNs."""
    return [_package(aws, f"run-{n}", status) for n, status in enumerate(statuses, start=1)]


def _status(aws: Aws, arn: str) -> str:
    return str(aws.sagemaker.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"])


def _find(aws: Aws, live: str | None, to_version: int | None = None) -> RollbackTarget:
    return find_rollback_target(aws.sagemaker, GROUP, RollbackRequest(to_version), live)


# --- the target -------------------------------------------------------------------------------


def test_the_target_is_the_newest_approved_model_older_than_the_live_one(aws: Aws) -> None:
    # Given v4 live, v3 rejected (rolled back), v2 and v1 approved
    arns = _history(aws, APPROVED, APPROVED, REJECTED, APPROVED)
    # When the rollback target is looked up without a version
    target = _find(aws, arns[3])
    # Then it is v2, with everything needed to deploy it and who trained it
    assert target == RollbackTarget(
        package_arn=arns[1],
        version=2,
        trained_by_run="run-2",
        image=_image("run-2"),
        model_data_url=model_data_url("job-run-2"),
        environment=_environment("run-2"),
        metadata=_metadata("run-2"),
    )


def test_to_version_picks_that_version_or_says_why_it_cannot(aws: Aws) -> None:
    # Given v4 live, v3 rejected, v5 pending (a challenger being evaluated), no v6
    arns = _history(aws, APPROVED, APPROVED, REJECTED, APPROVED, PENDING)
    # When an approved older version is asked for, then it is the target
    target = _find(aws, arns[3], to_version=1)
    assert (target.package_arn, target.version, target.trained_by_run) == (arns[0], 1, "run-1")
    assert target.image == _image("run-1")
    # And any other version is refused, the message saying why
    refusals = {
        3: f"version 3 of {GROUP} is Rejected: only an approved model is rolled back to",
        5: f"version 5 of {GROUP} is PendingManualApproval: only an approved model",
        4: f"version 4 of {GROUP} is already live",
        6: f"{GROUP} has no version 6",
    }
    for version, why in refusals.items():
        with pytest.raises(NoRollbackTarget) as refused:
            _find(aws, arns[3], to_version=version)
        assert why in str(refused.value)


def test_nothing_approved_older_than_the_live_model_is_refused(aws: Aws) -> None:
    # Given v1 live after a rollback to it, and the newer v2 still approved
    arns = _history(aws, APPROVED, APPROVED)
    # When the previous model is asked for, then there is none: a newer one is no rollback
    with pytest.raises(NoRollbackTarget) as refused:
        _find(aws, arns[0])
    assert f"no approved model older than version 1 in {GROUP}" in str(refused.value)


def test_with_the_live_package_unknown_the_newest_approved_model_is_the_target(aws: Aws) -> None:
    # Given an endpoint serving a model refit did not promote (no known package)
    arns = _history(aws, APPROVED, APPROVED, REJECTED)
    # Then the newest approved package is the target
    assert _find(aws, None).package_arn == arns[1]


def _calls_of(aws: Aws, live: str, to_version: int | None) -> tuple[RollbackTarget, list[str]]:
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    aws.sagemaker.meta.events.register("before-call.*.*", count, unique_id="count-rollback")
    try:
        target = _find(aws, live, to_version)
    finally:
        aws.sagemaker.meta.events.unregister("before-call.*.*", unique_id="count-rollback")
    return target, calls


def test_the_lookup_costs_the_same_with_3_and_60_approved_models(aws: Aws) -> None:
    # Given 3 approved packages, the newest live
    arns = _history(aws, APPROVED, APPROVED, APPROVED)
    few = [_calls_of(aws, arns[-1], None), _calls_of(aws, arns[-1], 1)]
    # And then 60 (three pages of the lookup's listing), the newest live
    arns += [_package(aws, f"run-{n}", APPROVED) for n in range(4, 61)]
    many = [_calls_of(aws, arns[-1], None), _calls_of(aws, arns[-1], 1)]
    # Then each found the model before the live one (or the one asked for) ...
    assert [t.version for t, _ in few] == [2, 1]
    assert [t.version for t, _ in many] == [59, 1]
    # ... with the same calls: one page of the listing at most, never the whole history
    assert [calls for _, calls in few] == [calls for _, calls in many]
    assert many[0][1] == ["ListModelPackages", "DescribeModelPackage"]
    assert many[1][1] == ["DescribeModelPackageGroup", "DescribeModelPackage"]


# --- PrepareRun -------------------------------------------------------------------------------


@pytest.fixture
def app(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    # Training code to upload and data to train on: a rollback must use neither. No test data.
    monkeypatch.setenv("TRAINING_CODE_DIR", str(write_training_code(tmp_path / "training")))
    put(aws.s3, "data/train/new.csv", csv_rows(5))
    return load_handler("prepare_run")


def _prepare(app: ModuleType, execution_input: Any, name: str = "manual-rb") -> dict[str, Any]:
    return run_prepare(app, execution_input, name)


def _records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def _queue(aws: Aws) -> RunQueue:
    return RunQueue(aws.dynamodb, TABLE, STACK)


def _serve(aws: Aws, run_id: str, package_arn: str) -> str:
    """``run_id``'s model on the endpoint, promoted by refit: the pointer names its package."""
    model = f"job-{run_id}"
    config = deploy_endpoint(aws.sagemaker, ENDPOINT, model, model_data_url(model))
    _records(aws).set_champion(
        ChampionPointer(
            model, model_data_url(model), config, run_id, 3, "reg:squarederror", package_arn
        ),
        promoted_at="2026-11-20T00:00:00Z",
    )
    return config


def _bucket(aws: Aws) -> list[tuple[str, str]]:
    listed = aws.s3.list_object_versions(Bucket=BUCKET)
    return sorted((v["Key"], v["VersionId"]) for v in listed.get("Versions", []))


def test_a_rollback_plans_the_previous_models_container_and_leaves_the_bucket(
    app: ModuleType, aws: Aws
) -> None:
    # Given v4 live (promoted by refit), v3 rejected, v2 approved
    arns = _history(aws, APPROVED, APPROVED, REJECTED, APPROVED)
    live_config = _serve(aws, "run-4", arns[3])
    bucket = _bucket(aws)
    # When a rollback run is prepared
    plan = _prepare(app, {"rollback": {}})
    # Then it deploys v2's container over the live endpoint, training nothing
    assert (plan["status"], plan["kind"], plan["trainingJob"]) == ("rollback", "rollback", None)
    deploy = plan["deploy"]
    assert (deploy["image"], deploy["environment"]) == (_image("run-2"), _environment("run-2"))
    assert deploy["endpointName"] == ENDPOINT and deploy["endpointExists"] is True
    assert deploy["modelName"] != "job-run-2"  # a model of this run: cleanup owns it
    # And StartRollback finds v2's artifact and a promote decision naming the package
    rollback = plan["rollback"]
    assert rollback["training"] == {"modelDataUrl": model_data_url("job-run-2")}
    evaluation = rollback["evaluation"]
    assert evaluation["decision"] == "promote"
    assert (evaluation["modelPackageArn"], evaluation["trainedByRun"]) == (arns[1], "run-2")
    assert (evaluation["features"], evaluation["objective"]) == (3, "reg:squarederror")
    assert "rollback to model package version 2" in evaluation["reason"]
    assert (rollback["replacedModelPackageArn"], rollback["replacedModelName"]) == (
        arns[3],
        "job-run-4",
    )
    assert plan["champion"]["modelName"] == "job-run-4"
    assert plan["champion"]["endpointConfigName"] == live_config
    assert json.loads(json.dumps(plan)) == plan
    # And the bucket is untouched: no manifests, no code upload, no data moved, no test data read
    assert _bucket(aws) == bucket
    # And the RUNNING record says it is a rollback, of what to what
    record = _records(aws).get_run("manual-rb")
    assert record is not None
    assert (record["status"], record["kind"], record["planStatus"]) == (
        "RUNNING",
        "rollback",
        "rollback",
    )
    assert record["rollback"] == {
        "modelPackageArn": arns[1],
        "modelPackageVersion": 2,
        "trainedByRun": "run-2",
        "replacedModelPackageArn": arns[3],
        "replacedModelName": "job-run-4",
    }
    assert "rollback" in record["request"] and not record["request"]["rollback"].get("toVersion")
    # And the run holds the lock; nothing in the registry changed yet
    assert _queue(aws).current_lock() == RunLock("manual-rb", "2026-11-28T09:20:00.123Z")
    assert [_status(aws, arn) for arn in arns] == [APPROVED, APPROVED, REJECTED, APPROVED]


def test_a_rollback_is_refused_while_another_run_holds_the_lock(app: ModuleType, aws: Aws) -> None:
    # Given a dispatched run training
    arns = _history(aws, APPROVED, APPROVED)
    _serve(aws, "run-2", arns[1])
    _queue(aws).acquire(RunLock("s3-abc", "2026-11-28T09:00:00Z", {"source": "s3"}))
    _records(aws).put_started("s3-abc", {"startedAt": "2026-11-28T09:00:00Z"})
    # When a rollback is prepared, then it is refused before recording anything
    with pytest.raises(RunInProgress, match="run s3-abc has been training or deploying"):
        _prepare(app, {"rollback": {"toVersion": 1}})
    assert _records(aws).get_run("manual-rb") is None
    lock = _queue(aws).current_lock()
    assert lock is not None and lock.run_name == "s3-abc"


def test_no_rollback_target_fails_the_run_before_recording_it(app: ModuleType, aws: Aws) -> None:
    # Given v1 live: nothing older to go back to
    arns = _history(aws, APPROVED)
    _serve(aws, "run-1", arns[0])
    bucket = _bucket(aws)
    # When a rollback is prepared
    with pytest.raises(NoRollbackTarget) as refused:
        _prepare(app, {"rollback": {}})
    # Then it fails with a named error (Step Functions' $.error.Error) saying why
    assert type(refused.value).__name__ == "NoRollbackTarget"
    assert "no approved model older than version 1" in str(refused.value)
    # And it wrote no record (RecordFailure writes the FAILED one) and touched nothing; like any
    # run failing after hold_run_lock, it holds the lock until its end event releases it
    assert _records(aws).get_run("manual-rb") is None
    assert _bucket(aws) == bucket
    lock = _queue(aws).current_lock()
    assert lock is not None and lock.run_name == "manual-rb"
    assert _status(aws, arns[0]) == APPROVED


# --- RecordRun --------------------------------------------------------------------------------


def _rolled_out(plan: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The state after StartRollback and the promotion path: its $.training and $.evaluation."""
    deploy = plan["deploy"]
    return {
        "run": plan,
        "training": plan["rollback"]["training"],
        "evaluation": plan["rollback"]["evaluation"],
        "endpoint": {"status": "InService", "configName": deploy["endpointConfigName"]},
        "endpointPolls": {
            "count": 3,
            "startedAt": "2026-11-28T09:21:00.000Z",
            "lastPolledAt": "2026-11-28T09:27:00.000Z",
        },
        **extra,
    }


def _record(aws: Aws, outcome: str, state: dict[str, Any], name: str = "manual-rb") -> Any:
    event = {"outcome": outcome, "executionName": name, "state": state}
    topic = aws.settings.notification_topic_arn
    return record_run(event, _records(aws), aws.sns, topic, aws.settings, sagemaker=aws.sagemaker)


def test_a_restored_model_becomes_the_champion_and_the_replaced_one_is_rejected(
    app: ModuleType, aws: Aws
) -> None:
    # Given a rollback from v4 to v2 that deployed and verified the endpoint
    arns = _history(aws, APPROVED, APPROVED, REJECTED, APPROVED)
    _serve(aws, "run-4", arns[3])
    plan = _prepare(app, {"rollback": {}})
    # When RecordRun records it
    report = _record(aws, "promoted", _rolled_out(plan))
    # Then the run is RESTORED, counted as such
    assert report.status == RESTORED
    stored = _records(aws).get_run("manual-rb")
    assert stored is not None and stored["status"] == RESTORED
    assert "RunsRestored" in {m.name for m in report.metrics}
    # And the champion is this run's model, with v2's package, artifact and training run
    champion = _records(aws).get_champion()
    assert champion is not None
    assert (champion.model_name, champion.endpoint_config_name) == (
        plan["deploy"]["modelName"],
        plan["deploy"]["endpointConfigName"],
    )
    assert (champion.model_package_arn, champion.run_id) == (arns[1], "run-2")
    assert champion.model_data_url == model_data_url("job-run-2")
    assert (champion.feature_count, champion.objective) == (3, "reg:squarederror")
    # And v4 is rejected naming the rollback run (the next rollback goes further back), v2 stays
    replaced = aws.sagemaker.describe_model_package(ModelPackageName=arns[3])
    assert replaced["ModelApprovalStatus"] == REJECTED
    assert "rollback run manual-rb" in replaced["ApprovalDescription"]
    assert replaced["CustomerMetadataProperties"]["runId"] == "run-4"
    assert _status(aws, arns[1]) == APPROVED
    assert (report.record["modelPackageArn"], report.record["replacedModelPackageArn"]) == (
        arns[1],
        arns[3],
    )
    assert report.record["replacedModelPackageStatus"] == REJECTED
    # And it cost the endpoint update only: no training job was run, none is priced
    cost = report.record["cost"]
    assert cost.get("training") is None and not cost.get("unpriced")
    assert cost["totalUSD"] == cost["endpointRollout"]["costUSD"] > 0


@pytest.mark.parametrize(
    ("error", "status"),
    [("Refit.EndpointFailed", "FAILED"), ("Refit.EndpointRolledBack", ROLLED_BACK)],
)
def test_a_failed_rollback_leaves_the_champion_and_both_packages(
    app: ModuleType, aws: Aws, error: str, status: str
) -> None:
    # Given a rollback from v4 to v2 whose endpoint update failed
    arns = _history(aws, APPROVED, APPROVED, REJECTED, APPROVED)
    _serve(aws, "run-4", arns[3])
    plan = _prepare(app, {"rollback": {}})
    state = _rolled_out(plan, error={"Error": error, "Cause": "health check failed"})
    del state["endpoint"]
    # When RecordRun records it
    report = _record(aws, "failed", state)
    # Then v4 keeps serving as the champion, and neither package changes
    assert report.status == status
    champion = _records(aws).get_champion()
    assert champion is not None
    assert (champion.model_name, champion.model_package_arn) == ("job-run-4", arns[3])
    assert [_status(aws, arn) for arn in arns] == [APPROVED, APPROVED, REJECTED, APPROVED]
    assert report.record.get("replacedModelPackageArn") is None
