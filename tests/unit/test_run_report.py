from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from refit.config import Settings
from refit.ledger.run_records import ChampionPointer, DataWindow, RunRecords
from refit.record_run.cost import PriceTable, spot_savings_percent
from refit.record_run.outcome import InvalidRunOutcome, describe_error
from refit.record_run.run_report import RunReport, record_run
from refit.run_state import StateError
from tests.unit.moto_stack import SETTINGS_ENV, STACK, TABLE, Aws
from tests.unit.state_builders import (
    ENDPOINT,
    evaluation_result,
    model_data_url,
    promoted_state,
    received_notifications,
    run_plan,
    subscribe_queue,
    training_result,
)

SETTINGS = Settings.from_env(SETTINGS_ENV)
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
FINISHED = "2026-11-28T12:00:00.000Z"
TRAINING_FAILURE = {
    "Error": "States.TaskFailed",
    "Cause": json.dumps(
        {
            "TrainingJobName": "job-run-2",
            "TrainingJobStatus": "Failed",
            "SecondaryStatus": "Failed",
            "FailureReason": "AlgorithmError: column count 3, expected 5",
            "HyperParameters": {"num_round": "50"},
        }
    ),
}


def _record(
    aws: Aws,
    outcome: str,
    state: dict[str, Any] | None,
    name: str = "run-2",
    region: str | None = None,
) -> RunReport:
    event: dict[str, Any] = {"outcome": outcome, "executionName": name}
    if state is not None:
        event["state"] = state
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    topic = aws.settings.notification_topic_arn
    return record_run(event, records, aws.sns, topic, aws.settings, now=NOW, region=region)


class _Untouchable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} must not be called")


def _ledger(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def _stored(aws: Aws, run_id: str = "run-2") -> dict[str, Any]:
    run = _ledger(aws).get_run(run_id)
    assert run is not None
    return run


# --- outcomes ---------------------------------------------------------------------------------
def test_promoted_endpoint_run_records_everything_and_moves_the_champion(aws: Aws) -> None:
    # Given a listener on the topic and the state of a run that deployed to the endpoint
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    _ledger(aws).put_started("run-2", {"startedAt": "2026-11-28T11:00:00Z"})
    # When RecordRun runs
    report = _record(aws, "promoted", promoted_state("run-2"))
    # Then the record is the run's audit trail
    run = _stored(aws)
    assert report.to_dict() == {"runId": "run-2", "status": "PROMOTED"}
    assert run["status"] == "PROMOTED"
    assert run["startedAt"] == "2026-11-28T11:00:00Z"
    assert run["finishedAt"] == FINISHED
    assert run["data"]["accepted"] == 3
    assert run["data"]["rejectedFiles"][0]["key"] == "data/train/bad.csv"
    assert run["manifestUri"] == "s3://refit-test-data/runs/run-2/manifest.json"
    assert run["trainingJobName"] == "job-run-2"
    assert run["modelDataUrl"] == model_data_url("job-run-2")
    assert run["metrics"]["challenger"] == 0.41
    assert run["metrics"]["champion"] == 0.45
    assert (run["decision"], run["reason"]) == ("promote", evaluation_result()["reason"])
    assert (run["endpointName"], run["endpointConfigName"]) == (ENDPOINT, "job-run-2")
    assert "transformJobName" not in run
    assert (run["trainingTimeInSeconds"], run["billableTimeInSeconds"]) == (600, 180)
    assert run["spotSavingsPercent"] == 70.0
    assert run["cleanup"]["deleted"]["models"] == ["job-run-0"]
    assert "error" not in run
    # And the champion pointer names the new model, with its feature count
    assert _ledger(aws).get_champion() == ChampionPointer(
        "job-run-2", model_data_url("job-run-2"), "job-run-2", "run-2", 4
    )
    # And its model/config are registered for a later cleanup, as promoted
    [owned] = _ledger(aws).owned_resources()
    assert (owned.run_id, owned.model_name, owned.endpoint_config_name) == (
        "run-2",
        "job-run-2",
        "job-run-2",
    )
    assert owned.promoted and owned.created_at == FINISHED
    # And a notification arrived with a summary and the record
    [note] = received_notifications(aws.sqs, inbox)
    assert note["Subject"] == f"refit {STACK}: run run-2 PROMOTED"
    assert note["MessageAttributes"]["status"]["Value"] == "PROMOTED"
    summary, _, body = note["Message"].partition("\n\nRun record:\n")
    assert "Endpoint refit-test-endpoint serves config job-run-2." in summary
    assert "spot savings 70.0%" in summary
    assert json.loads(body)["runId"] == "run-2"


def test_the_champion_pointer_keeps_the_models_data_window(aws: Aws) -> None:
    # Given a promoted incremental run in the window of a drift detected earlier
    state = promoted_state("run-2")
    state["run"]["startedAt"] = "2026-11-28T11:00:00.100Z"
    state["run"]["dataWindow"] = {"since": "2026-11-20T08:00:00Z", "outsideWindow": 0}
    sample = {"rows": 50, "seenRows": 300, "baseRows": 100, "columns": 5}
    state["evaluation"]["replaySample"] = sample
    # When recorded, the pointer keeps the window and how much of it the trees have seen
    _record(aws, "promoted", state)
    champion = _ledger(aws).get_champion()
    assert champion is not None
    assert champion.data_window == DataWindow("2026-11-20T08:00:00Z", 100, 300)
    # And a challenger that detected drift and learnt from scratch starts a window at its run
    state["evaluation"]["drift"] = {"detected": True, "championNew": 3.1}
    state["evaluation"]["replaySample"] = {**sample, "seenRows": 80, "baseRows": 80}
    _record(aws, "promoted", state, name="run-3")
    champion = _ledger(aws).get_champion()
    assert champion is not None
    assert champion.data_window == DataWindow("2026-11-28T11:00:00.100Z", 80, 80)


def test_promoted_batch_run_records_the_transform_and_no_config(aws: Aws) -> None:
    # Given a promoted batch run
    state = promoted_state("run-2", deployment_mode="batch")
    # When recorded
    _record(aws, "promoted", state)
    # Then the transform is reported, and neither the record nor the ledger names a config
    run = _stored(aws)
    assert run["transformJobName"] == "job-run-2"
    assert run["transformJobStatus"] == "Completed"
    assert run["transformOutputPath"] == "s3://refit-test-data/batch/output/run-2/"
    assert "endpointConfigName" not in run
    champion = _ledger(aws).get_champion()
    assert champion is not None and champion.endpoint_config_name is None
    [owned] = _ledger(aws).owned_resources()
    assert owned.endpoint_config_name is None


def test_rejected_run_keeps_the_champion_and_registers_nothing(aws: Aws) -> None:
    # Given an existing champion and a run whose challenger lost
    previous = ChampionPointer("job-run-1", model_data_url("job-run-1"), "job-run-1", "run-1")
    _ledger(aws).set_champion(previous, "2026-11-27T00:00:00Z")
    state = {
        "run": run_plan("run-2"),
        "training": training_result("run-2"),
        "evaluation": evaluation_result("reject", challenger=0.5),
    }
    # When recorded
    report = _record(aws, "rejected", state)
    # Then the record says why, and nothing else moved
    run = _stored(aws)
    assert report.status == run["status"] == "REJECTED"
    assert run["decision"] == "reject"
    assert run["previousChampion"] == "job-run-1"
    assert "endpointConfigName" not in run
    assert _ledger(aws).get_champion() == previous
    assert _ledger(aws).owned_resources() == []


def test_rejected_input_run_records_the_refused_files(aws: Aws) -> None:
    # Given PrepareRun found nothing valid to train on
    plan = run_plan("run-2")
    plan["status"] = "rejected-input"
    plan["data"].update(accepted=0, rows=0)
    # When recorded
    _record(aws, "rejected-input", {"run": plan})
    # Then the status and the refused files are there, without any training fields
    run = _stored(aws)
    assert run["status"] == "REJECTED_INPUT"
    assert run["data"]["rejectedFiles"][0]["reason"] == "column count 3, expected 5"
    assert "trainingTimeInSeconds" not in run
    assert "spotSavingsPercent" not in run


def test_failed_training_lifts_the_failure_reason_out_of_the_cause(aws: Aws) -> None:
    # Given Train failed and the Catch put SageMaker's description into $.error
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    state = {"run": run_plan("run-2"), "error": TRAINING_FAILURE}
    # When recorded
    report = _record(aws, "failed", state)
    # Then the record and the e-mail name the reason
    run = _stored(aws)
    assert report.status == "FAILED"
    assert run["error"]["Error"] == "States.TaskFailed"
    assert run["error"]["FailureReason"] == "AlgorithmError: column count 3, expected 5"
    assert run["error"]["TrainingJobStatus"] == "Failed"
    assert run["trainingJobName"] == "job-run-2"  # from the plan: the job never reported back
    [note] = received_notifications(aws.sqs, inbox)
    assert "Error: States.TaskFailed: AlgorithmError: column count 3" in note["Message"]
    assert _ledger(aws).owned_resources() == []


def _spot_failure(secondary: str, reason: str, *, billable: int = 0) -> dict[str, Any]:
    """``$.spotFailure`` as Train's States.TaskFailed catcher stores it (Cause = Describe)."""
    describe = {
        "TrainingJobName": "job-run-2",
        "TrainingJobStatus": "Stopped",
        "SecondaryStatus": secondary,
        "FailureReason": reason,
        "EnableManagedSpotTraining": True,
        "TrainingTimeInSeconds": 7200,
        "BillableTimeInSeconds": billable,
    }
    return {"Error": "States.TaskFailed", "Cause": json.dumps(describe)}


def _fallen_back(state: dict[str, Any]) -> dict[str, Any]:
    """A state that went through FallBackOnDemand (the plan has its on-demand request)."""
    plan = state["run"]
    on_demand = {
        **plan["trainingJob"],
        "TrainingJobName": "job-run-2-od",
        "EnableManagedSpotTraining": False,
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    plan["onDemandTrainingJob"] = on_demand
    state["spotFailure"] = _spot_failure(
        "MaxWaitTimeExceeded",
        "MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds provided",
        billable=120,
    )
    state["capacityFallback"] = {
        "from": "spot",
        "to": "on-demand",
        "spotJobName": "job-run-2",
        "onDemandJobName": "job-run-2-od",
    }
    return state


def test_spot_capacity_fallback_is_recorded_with_the_on_demand_jobs_time(aws: Aws) -> None:
    # Given a run whose spot job never got capacity and whose on-demand retry was promoted
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    state = _fallen_back(promoted_state("run-2"))
    state["training"] = {
        **training_result("run-2", seconds=600, billable=600),
        "TrainingJobName": "job-run-2-od",
    }
    # When recorded
    report = _record(aws, "promoted", state)
    # Then the record says what happened and why, and what the spot attempt cost
    run = _stored(aws)
    assert run["status"] == "PROMOTED"
    assert run["capacityFallback"] == {
        "from": "spot",
        "to": "on-demand",
        "reason": "MaxWaitTimeExceeded",
        "spotJobName": "job-run-2",
        "onDemandJobName": "job-run-2-od",
        "spotJobStatus": "Stopped",
        "spotFailureReason": "MaxWaitTimeExceeded: Training job exceeded MaxWaitTimeInSeconds "
        "provided",
        "spotTrainingTimeInSeconds": 7200,
        "spotBillableTimeInSeconds": 120,
    }
    # And the job, times and savings are the on-demand job's: no spot savings on it
    assert run["trainingJobName"] == "job-run-2-od"
    assert run["managedSpotTraining"] is False
    assert (run["trainingTimeInSeconds"], run["billableTimeInSeconds"]) == (600, 600)
    assert run["spotSavingsPercent"] == 0.0
    assert "error" not in run
    # And the notification and the metrics mention it
    [note] = received_notifications(aws.sqs, inbox)
    summary = note["Message"].partition("\n\nRun record:\n")[0]
    assert (
        "No spot capacity for job-run-2 (MaxWaitTimeExceeded): retried once on "
        "on-demand capacity as job-run-2-od, resuming from its checkpoints "
        "(the spot job billed 120 s)." in summary
    )
    assert "spot savings 0.0%" in summary
    names = [m.name for m in report.metrics]
    assert "SpotCapacityFallbacks" in names


def test_a_capacity_failure_reason_is_the_fallback_reason(aws: Aws) -> None:
    # Given the spot job failed for capacity (not out of wait time), then the retry failed too
    state = _fallen_back({"run": run_plan("run-2")})
    state["spotFailure"] = _spot_failure("Failed", "CapacityError: Unable to provision capacity")
    state["error"] = TRAINING_FAILURE
    # When recorded
    report = _record(aws, "failed", state)
    # Then the fallback is there with the capacity reason, and the failed job is the retry
    run = _stored(aws)
    assert run["status"] == "FAILED"
    assert run["capacityFallback"]["reason"] == "CapacityError: Unable to provision capacity"
    assert "spotBillableTimeInSeconds" in run["capacityFallback"]
    assert run["trainingJobName"] == "job-run-2-od"
    assert run["error"]["FailureReason"] == "AlgorithmError: column count 3, expected 5"
    assert "SpotCapacityFallbacks" in [m.name for m in report.metrics]


def test_a_spot_failure_that_was_not_retried_records_no_fallback(aws: Aws) -> None:
    # Given the spot job failed for its own reasons: TrainingFailed copied it into $.error
    state = {"run": run_plan("run-2"), "spotFailure": TRAINING_FAILURE, "error": TRAINING_FAILURE}
    # When recorded
    report = _record(aws, "failed", state)
    # Then it is an ordinary training failure
    run = _stored(aws)
    assert "capacityFallback" not in run
    assert run["trainingJobName"] == "job-run-2"
    assert run["managedSpotTraining"] is True
    assert run["error"]["FailureReason"] == "AlgorithmError: column count 3, expected 5"
    assert "SpotCapacityFallbacks" not in [m.name for m in report.metrics]


def test_failure_after_the_promote_decision_registers_the_orphans(aws: Aws) -> None:
    # Given a run that decided to promote, then failed while updating the endpoint
    state = {
        "run": run_plan("run-2"),
        "training": training_result("run-2"),
        "evaluation": evaluation_result("promote"),
        "endpoint": {"status": "Failed", "configName": "job-run-1"},
        "error": {"Error": "Refit.EndpointNotUpdated", "Cause": "endpoint stayed on job-run-1"},
    }
    # When recorded as failed
    _record(aws, "failed", state)
    # Then the model/config it may have created are indexed as not promoted, for cleanup
    [owned] = _ledger(aws).owned_resources()
    assert (owned.model_name, owned.endpoint_config_name, owned.promoted) == (
        "job-run-2",
        "job-run-2",
        False,
    )
    # And the champion did not move; the plain-text cause is kept as is
    assert _ledger(aws).get_champion() is None
    run = _stored(aws)
    assert run["error"] == {
        "Error": "Refit.EndpointNotUpdated",
        "Cause": "endpoint stayed on job-run-1",
    }
    assert run["endpointStatus"] == "Failed"
    assert "endpointConfigName" not in run


def test_failure_before_any_run_plan_is_recorded_under_the_execution_name(aws: Aws) -> None:
    # Given PrepareRun failed: the state is the execution input plus the error
    lambda_error = {
        "Error": "Refit.InvalidInput",
        "Cause": json.dumps(
            {
                "errorMessage": "trainingMode must be one of auto, full, incremental",
                "errorType": "InvalidInput",
                "stackTrace": ["..."],
            }
        ),
    }
    state = {"source": "manual", "trainingMode": "sometimes", "error": lambda_error}
    # When recorded
    report = _record(aws, "failed", state, name="manual-2026-11-28")
    # Then the execution name is the run id and the Lambda's message is lifted out
    run = _stored(aws, "manual-2026-11-28")
    assert report.run_id == "manual-2026-11-28"
    assert run["status"] == "FAILED"
    assert run["error"]["errorMessage"] == "trainingMode must be one of auto, full, incremental"
    assert run["error"]["errorType"] == "InvalidInput"


@pytest.mark.parametrize("state", [None, {"run": "not a mapping", "training": []}])
def test_missing_or_malformed_state_still_records_a_failure(
    aws: Aws, state: dict[str, Any] | None
) -> None:
    # Given RecordFailure was handed no usable state at all
    # When recorded
    report = _record(aws, "failed", state, name="exec-1")
    # Then a minimal FAILED record exists
    run = _stored(aws, "exec-1")
    assert (report.status, run["status"], run["executionName"]) == ("FAILED", "FAILED", "exec-1")


def test_failed_cleanup_is_recorded_on_a_promoted_run(aws: Aws) -> None:
    # Given a deployed run whose cleanup failed
    state = promoted_state("run-2")
    del state["cleanup"]
    state["cleanupError"] = {
        "Error": "ThrottlingException",
        "Cause": json.dumps({"errorMessage": "Rate exceeded", "errorType": "ClientError"}),
    }
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    # When recorded
    _record(aws, "promoted", state)
    # Then the run is still PROMOTED, with the cleanup error beside it
    run = _stored(aws)
    assert run["status"] == "PROMOTED"
    assert run["cleanupError"]["errorMessage"] == "Rate exceeded"
    [note] = received_notifications(aws.sqs, inbox)
    assert "Cleanup failed" in note["Message"]


def test_retry_rewrites_the_same_record(aws: Aws) -> None:
    # Given RecordRun already ran once for this run
    _record(aws, "promoted", promoted_state("run-2"))
    first = _stored(aws)
    # When Step Functions retries it
    _record(aws, "promoted", promoted_state("run-2"))
    # Then the record, pointer and index entry are the same, not duplicated
    assert _stored(aws) == first
    assert [o.run_id for o in _ledger(aws).owned_resources()] == ["run-2"]


# --- cost -------------------------------------------------------------------------------------
PRICES = PriceTable.load()


def _usd_per_hour(instance_type: str, region: str = "us-east-1") -> float:
    return PRICES.price(region, instance_type).usd_per_hour


def _summary_of(aws: Aws, inbox: str) -> tuple[str, dict[str, Any]]:
    [note] = received_notifications(aws.sqs, inbox)
    summary, _, body = note["Message"].partition("\n\nRun record:\n")
    return summary, json.loads(body)


def test_promoted_endpoint_run_records_training_and_rollout_cost(aws: Aws) -> None:
    # Given a spot run (600 s trained, 180 s billed on 1 × ml.m5.xlarge) whose blue/green update
    # ran 6 minutes (InitEndpointPolls 11:50 -> last poll 11:56) on 1 × ml.m5.large
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    # When RecordRun runs in us-east-1
    report = _record(aws, "promoted", promoted_state("run-2"))
    # Then the record's cost block prices billable seconds at the on-demand rate
    cost = _stored(aws)["cost"]
    train_rate, endpoint_rate = _usd_per_hour("ml.m5.xlarge"), _usd_per_hour("ml.m5.large")
    training = cost["training"]
    assert (training["instanceType"], training["instanceCount"]) == ("ml.m5.xlarge", 1)
    assert (training["trainingSeconds"], training["billableSeconds"]) == (600, 180)
    assert training["costUSD"] == round(180 * train_rate / 3600, 6)
    assert training["onDemandCostUSD"] == round(600 * train_rate / 3600, 6)
    assert training["jobs"][0]["spotSavingsPercent"] == 70.0
    # And the rollout added the new fleet for those 6 minutes
    rollout = cost["endpointRollout"]
    assert (rollout["kind"], rollout["seconds"], rollout["addedInstanceHours"]) == (
        "update",
        360,
        0.1,
    )
    assert rollout["costUSD"] == round(360 * endpoint_rate / 3600, 6)
    assert cost["totalUSD"] == round(training["costUSD"] + rollout["costUSD"], 6)
    assert (cost["region"], cost["model"], cost["currency"]) == ("us-east-1", ENDPOINT, "USD")
    assert cost["priceSource"] == PRICES.source
    assert cost["pricesRetrievedOn"] == PRICES.retrieved_on
    assert "unpriced" not in cost
    # And the notification says it in words and carries the block
    summary, body = _summary_of(aws, inbox)
    assert f"Estimated cost ${cost['totalUSD']:.4f}: training ${training['costUSD']:.4f}" in summary
    assert "on 1 × ml.m5.xlarge" in summary
    assert "endpoint update ran both fleets for 360.0 s: 0.1 extra instance-hours" in summary
    assert f"us-east-1 list prices, from {PRICES.source} as of {PRICES.retrieved_on}" in summary
    assert body["cost"]["totalUSD"] == cost["totalUSD"]
    # And the total is a CloudWatch metric
    assert ("RunCostUSD", "None", cost["totalUSD"]) in [
        (m.name, m.unit, m.value) for m in report.metrics
    ]


def test_a_first_endpoint_adds_no_rollout_hours(aws: Aws) -> None:
    # Given the run created the endpoint (no old fleet ran beside it)
    state = promoted_state("run-2")
    state["run"]["deploy"]["endpointExists"] = False
    # When recorded
    _record(aws, "promoted", state)
    # Then the rollout costs nothing extra and the endpoint's hourly cost is reported
    rollout = _stored(aws)["cost"]["endpointRollout"]
    assert (rollout["kind"], rollout["addedInstanceHours"], rollout["costUSD"]) == ("create", 0, 0)
    assert rollout["endpointUSDPerHour"] == _usd_per_hour("ml.m5.large")


def test_batch_run_records_the_transform_instance_hours(aws: Aws) -> None:
    # Given a batch run whose transform ran 15 minutes on 1 × ml.m5.large
    # When recorded
    _record(aws, "promoted", promoted_state("run-2", deployment_mode="batch"))
    # Then the transform is priced instead of a rollout, under the stack's batch model
    cost = _stored(aws)["cost"]
    assert "endpointRollout" not in cost
    assert cost["transform"]["instanceHours"] == 0.25
    assert cost["transform"]["costUSD"] == round(0.25 * _usd_per_hour("ml.m5.large"), 6)
    assert cost["model"] == f"{STACK}/batch"


def test_a_capacity_fallback_pays_for_the_spot_attempt_and_the_on_demand_job(aws: Aws) -> None:
    # Given the spot job billed 120 s before its wait ran out, then the on-demand job 600 s
    state = _fallen_back(promoted_state("run-2"))
    state["training"] = {
        **training_result("run-2", seconds=600, billable=600),
        "TrainingJobName": "job-run-2-od",
    }
    # When recorded
    _record(aws, "promoted", state)
    # Then both jobs are in the cost, and on-demand saved nothing
    training = _stored(aws)["cost"]["training"]
    assert [(j["jobName"], j["capacity"], j["billableSeconds"]) for j in training["jobs"]] == [
        ("job-run-2", "spot", 120),
        ("job-run-2-od", "on-demand", 600),
    ]
    assert training["costUSD"] == round(
        round(120 * _usd_per_hour("ml.m5.xlarge") / 3600, 6)
        + round(600 * _usd_per_hour("ml.m5.xlarge") / 3600, 6),
        6,
    )
    assert training["jobs"][1]["savingsUSD"] == 0
    assert training["jobs"][1]["typicalSpotCostUSD"] > 0


def test_a_failed_training_job_is_priced_from_its_description(aws: Aws) -> None:
    # Given Train failed after billing 300 s on 2 × ml.m5.2xlarge (the Cause is its Describe)
    describe = {
        **json.loads(TRAINING_FAILURE["Cause"]),
        "ResourceConfig": {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 2},
        "EnableManagedSpotTraining": False,
        "TrainingTimeInSeconds": 300,
        "BillableTimeInSeconds": 300,
    }
    state = {
        "run": run_plan("run-2"),
        "error": {"Error": "States.TaskFailed", "Cause": json.dumps(describe)},
    }
    # When recorded
    _record(aws, "failed", state)
    # Then the failed run still shows what it cost
    cost = _stored(aws)["cost"]
    [job] = cost["training"]["jobs"]
    assert (job["instanceType"], job["instanceCount"], job["capacity"]) == (
        "ml.m5.2xlarge",
        2,
        "on-demand",
    )
    assert cost["totalUSD"] == round(300 * 2 * _usd_per_hour("ml.m5.2xlarge") / 3600, 6)


def test_an_unpriced_region_records_a_null_cost_with_the_reason(aws: Aws) -> None:
    # Given a stack in a region the price table leaves out
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    # When a run is recorded there
    report = _record(aws, "promoted", promoted_state("run-2"), region="af-south-1")
    # Then the run is recorded, its cost is unknown and says why
    run = _stored(aws)
    assert run["status"] == "PROMOTED"
    assert "totalUSD" not in run["cost"]  # null: DynamoDB records leave None out
    assert run["cost"]["unpriced"][0].startswith(
        "training job job-run-2: no prices for region af-south-1"
    )
    assert run["cost"]["training"]["billableSeconds"] == 180
    assert run["cost"]["endpointRollout"]["addedInstanceHours"] == 0.1
    summary, body = _summary_of(aws, inbox)
    assert "Estimated cost unknown (training job job-run-2: no prices for region af-south-1" in (
        summary
    )
    assert body["cost"]["totalUSD"] is None
    assert "RunCostUSD" not in [m.name for m in report.metrics]


def test_a_run_that_failed_in_train_without_a_description_has_an_unknown_cost(aws: Aws) -> None:
    # Given Train timed out: the job may have run, but the state has no billable time
    state = {"run": run_plan("run-2"), "error": {"Error": "States.Timeout"}}
    # When recorded
    _record(aws, "failed", state)
    # Then the cost is unknown rather than zero
    cost = _stored(aws)["cost"]
    assert "totalUSD" not in cost
    assert cost["unpriced"] == [
        "training job job-run-2 may have run; the state holds no billable time"
    ]


def test_a_run_that_trained_nothing_cost_nothing(aws: Aws) -> None:
    plan = run_plan("run-2")
    plan["status"] = "rejected-input"
    _record(aws, "rejected-input", {"run": plan})
    assert _stored(aws)["cost"]["totalUSD"] == 0


# --- contract violations ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"outcome": "won", "executionName": "e"}, "outcome must be one of"),
        ({"outcome": "failed"}, "executionName is required"),
        (
            {"outcome": "promoted", "executionName": "e", "state": {"run": run_plan()}},
            "a promoted run needs",
        ),
    ],
)
def test_contract_violations_write_nothing(event: dict[str, Any], message: str) -> None:
    # Given a ledger and a topic that fail on any use
    untouchable: Any = _Untouchable()
    # When / Then the input is refused before anything is written or sent
    with pytest.raises(InvalidRunOutcome, match=message):
        record_run(event, untouchable, untouchable, "arn:aws:sns:us-east-1:1:t", SETTINGS)


def test_subject_stays_within_sns_limits(aws: Aws) -> None:
    # Given an execution name of the maximum length
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    name = "x" * 80
    # When its failure is recorded
    _record(aws, "failed", {"error": {"Error": "States.Timeout"}}, name=name)
    # Then the subject is cut to 100 ASCII characters
    [note] = received_notifications(aws.sqs, inbox)
    assert len(note["Subject"]) == 100
    assert note["Subject"].endswith("...")
    assert note["Subject"].isascii()


# --- pure helpers -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("training", "billable", "spot", "expected"),
    [
        (3600, 1080, True, 70.0),
        (3, 1, True, 66.7),
        (600, 600, True, 0.0),
        (600, 600, False, 0.0),
        (600, 600, None, 0.0),
        (0, 0, True, None),
        (None, 100, True, None),
        (100, None, True, None),
    ],
)
def test_spot_savings_percent(
    training: int | None, billable: int | None, spot: bool | None, expected: float | None
) -> None:
    assert spot_savings_percent(training, billable, spot) == expected


def test_on_demand_savings_are_zero_whatever_the_times() -> None:
    # SageMaker bills on-demand time in full; a rounding gap must not read as savings
    assert spot_savings_percent(600, 590, False) == 0.0


def test_error_cause_is_bounded() -> None:
    error = StateError.parse({"Error": "States.TaskFailed", "Cause": "x" * 100_000})
    described = describe_error(error)
    assert described is not None
    assert len(described["Cause"]) == 4000


# --- the gate ---------------------------------------------------------------------------------
def _rejected_state(run_id: str, **evaluation: Any) -> dict[str, Any]:
    return {
        "run": run_plan(run_id),
        "training": training_result(run_id),
        "evaluation": {**evaluation_result("reject", challenger=0.5), **evaluation},
    }


def test_rejected_incremental_runs_count_towards_a_full_retrain(aws: Aws) -> None:
    # Given two rejected incremental challengers of job-run-1 (one recorded twice: a retry)
    _record(aws, "rejected", _rejected_state("run-2"), name="run-2")
    _record(aws, "rejected", _rejected_state("run-3"), name="run-3")
    _record(aws, "rejected", _rejected_state("run-3"), name="run-3")
    # Then the streak is 2; a forced rejection does not count, a promotion ends it
    assert _ledger(aws).rejection_streak("job-run-1") == 2
    _record(aws, "rejected", _rejected_state("run-4", forced=True), name="run-4")
    assert _ledger(aws).rejection_streak("job-run-1") == 2
    _record(aws, "promoted", promoted_state("run-5"), name="run-5")
    assert _ledger(aws).rejection_streak("job-run-1") == 0


def test_a_rejected_full_retrain_ends_the_streak(aws: Aws) -> None:
    _record(aws, "rejected", _rejected_state("run-2"), name="run-2")
    state = _rejected_state("run-3")
    state["run"]["trainingMode"] = "full"
    _record(aws, "rejected", state, name="run-3")
    assert _ledger(aws).rejection_streak("job-run-1") == 0


def test_a_forced_decision_and_the_retained_scores_are_recorded_and_notified(aws: Aws) -> None:
    # Given a run whose challenger a person forced through over the gate's rejection
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    state = promoted_state("run-2")
    state["evaluation"] = {
        **state["evaluation"],
        "forced": True,
        "gateDecision": "reject",
        "reason": "forced promote by the execution input; the gate said reject: worse",
        "retainedChallenger": 0.6,
        "retainedChampion": 0.5,
        "retainedImprovement": -0.1,
        "retainedTestRows": 80,
        "maxRetainedRegression": 0.05,
        "objective": "reg:squarederror",
    }
    # When recorded
    _record(aws, "promoted", state)
    # Then the record and the notification say it was forced, and keep both retained scores
    run = _stored(aws)
    assert (run["decisionForced"], run["gateDecision"]) == (True, "reject")
    assert run["metrics"]["retainedChallenger"] == 0.6
    assert run["metrics"]["retainedTestRows"] == 80
    message = received_notifications(aws.sqs, inbox)[0]["Message"]
    assert "Decision: promote (forced by the execution input): forced promote" in message
    assert _ledger(aws).get_champion().objective == "reg:squarederror"  # type: ignore[union-attr]


def test_a_fallback_in_the_training_job_corrects_the_recorded_mode(aws: Aws) -> None:
    state = _rejected_state(
        "run-2", mode="full", modeFallback="no warm start: the champion has 3 features"
    )
    _record(aws, "rejected", state)
    run = _stored(aws)
    assert (run["trainingMode"], run["trainingModeReason"]) == (
        "full",
        "no warm start: the champion has 3 features",
    )
