"""End to end through the local cloud: the demo's scenario, one test per step, in order.

Runs start the way they do in AWS: uploads to ``data/train/`` (S3 → EventBridge → SQS →
StartRetrain → Step Functions), step 4 by hand with a per-run ``deploymentMode`` and step 5 as
``refit rollback`` does. Each test asserts what really happened, from the public APIs: the run
record, the endpoint's description and answers, the model artifact loaded directly with xgboost,
SageMaker's resources, S3 objects.
:mod:`refit_cli.scenario` checks the same things as it goes (so ``make demo`` fails loudly);
these tests state them again, independently, on the evidence it returns.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from refit import layout
from refit_cli.demo import runs_table
from refit_cli.scenario import (
    STACK_PARAMETERS,
    TRUSTED_PREFIX,
    BatchStep,
    InitialStep,
    RejectedStep,
    RollbackStep,
    Scenario,
    UpdateStep,
)

pytestmark = pytest.mark.slow

FULL_ROUNDS = int(STACK_PARAMETERS["NumRoundsFull"])
INCREMENTAL_ROUNDS = int(STACK_PARAMETERS["NumRoundsIncremental"])


def after(step: object, name: str) -> None:
    """Skip a test whose earlier step failed: that failure is already reported."""
    if step is None:
        pytest.skip(f"{name} did not complete")


def execution_input(scenario: Scenario, arn: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        scenario.sfn.describe_execution(executionArn=arn)["input"]
    )
    return document


def test_step1_initial_upload_trains_from_scratch_and_creates_the_endpoint(
    scenario: Scenario,
) -> None:
    # When the held-out set and a first batch are uploaded
    step: InitialStep = scenario.step_initial()

    # Then the trigger started a run for the upload, which trained from scratch and promoted
    run = step.run
    document = execution_input(scenario, run.execution_arn)
    assert document["source"] == "s3"
    assert [o["key"] for o in document["objects"]] == [scenario.data.initial.key]
    assert (run.status, run.training_mode, run.deployment_mode) == (
        "PROMOTED",
        "full",
        "endpoint",
    )
    assert run.rows == scenario.data.initial.rows
    assert run.champion is None and run.challenger is not None
    assert run.metric("challengerRounds") == FULL_ROUNDS
    # and the endpoint exists, serves the run's config, and answers with the artifact's model
    assert step.endpoint.name == scenario.info.endpoint_name
    assert step.endpoint.status == "InService"
    assert step.endpoint.config_name == run.record["endpointConfigName"] == run.job_name
    assert step.predictions.shape == (len(scenario.data.probe),)
    assert np.all((step.predictions > 0) & (step.predictions < 1))
    np.testing.assert_allclose(step.predictions, step.artifact_predictions, rtol=1e-5, atol=1e-6)


def test_step2_new_data_continues_the_champion_on_spot_and_updates_the_endpoint_in_place(
    scenario: Scenario,
) -> None:
    initial = scenario.initial
    after(initial, "step 1")
    assert initial is not None
    # When two files of new data are uploaded together, with one spot interruption armed
    step: UpdateStep = scenario.step_update()

    # Then one run covers both files, continues the champion, and beats it
    run = step.run
    assert step.executions_started == 1
    covered = execution_input(scenario, run.execution_arn)["objects"]
    assert sorted(o["key"] for o in covered) == sorted(b.key for b in scenario.data.update)
    assert (run.status, run.training_mode, run.deployment_mode) == (
        "PROMOTED",
        "incremental",
        "endpoint",
    )
    assert run.rows == sum(b.rows for b in scenario.data.update)
    assert run.champion == pytest.approx(initial.run.challenger)
    assert run.challenger is not None and run.champion is not None
    assert run.challenger < run.champion
    assert run.metric("championRounds") == FULL_ROUNDS
    assert run.metric("challengerRounds") == FULL_ROUNDS + INCREMENTAL_ROUNDS


def test_step2_the_interrupted_job_resumed_from_its_checkpoint(scenario: Scenario) -> None:
    step = scenario.update
    after(step, "step 2")
    assert step is not None
    run, job = step.run, step.job
    # The public DescribeTrainingJob shows one interruption of a managed spot job
    assert job.managed_spot
    assert job.secondary_statuses.count("Interrupted") == 1
    assert job.secondary_statuses[-1] == "Completed"
    # the local runtime ran it twice
    assert (job.local_interruptions, job.local_attempts) == (1, 2)
    # and the second attempt resumed from a checkpoint of this job, not from the champion (20)
    resumed = run.metric("resumedFromRound")
    assert FULL_ROUNDS < resumed < FULL_ROUNDS + INCREMENTAL_ROUNDS
    assert job.log_resume_rounds == (resumed,)
    # Spot billing: only the seconds the training process ran, at the spot price
    assert run.billable_seconds is not None and run.training_seconds is not None
    assert run.billable_seconds < run.training_seconds
    assert run.spot_savings_percent is not None and run.spot_savings_percent > 0


def test_step2_the_endpoint_serves_the_new_model_under_the_same_name(scenario: Scenario) -> None:
    step = scenario.update
    after(step, "step 2")
    assert step is not None
    before, now = step.endpoint_before, step.endpoint
    # Same endpoint (name, ARN, creation time), new config, in service
    assert now.name == before.name == scenario.info.endpoint_name
    assert (now.arn, now.creation_time) == (before.arn, before.creation_time)
    assert now.status == "InService"
    assert now.config_name == step.run.record["endpointConfigName"] == step.run.job_name
    assert now.config_name != before.config_name
    # Its answers changed, and are those of the new model.tar.gz loaded directly
    assert not np.allclose(step.predictions, step.predictions_before, rtol=0, atol=1e-6)
    np.testing.assert_allclose(step.predictions, step.artifact_predictions, rtol=1e-5, atol=1e-6)
    # and still are, asked again now
    np.testing.assert_array_equal(scenario.predict(scenario.data.probe), step.predictions)


def test_step2_stale_resources_are_deleted_and_live_ones_remain(scenario: Scenario) -> None:
    step, initial = scenario.update, scenario.initial
    after(step, "step 2")
    assert step is not None and initial is not None
    old, new = initial.run.job_name, step.run.job_name
    # The run's cleanup report names step 1's model and config (PreviousModelsToKeep=0)
    assert step.deleted["models"] == [old]
    assert step.deleted["endpointConfigs"] == [old]
    # SageMaker no longer has them, and still has the live pair
    assert not scenario.exists(f"model/{old}")
    assert not scenario.exists(f"endpoint-config/{old}")
    assert scenario.exists(f"model/{new}")
    assert scenario.exists(f"endpoint-config/{new}")
    assert scenario.endpoint().status == "InService"


def test_step3_corrupted_labels_are_rejected_and_the_endpoint_is_unchanged(
    scenario: Scenario,
) -> None:
    update = scenario.update
    after(update, "step 2")
    assert update is not None
    # When a batch whose labels are inverted is uploaded
    step: RejectedStep = scenario.step_corrupted()

    # Then its challenger is trained but scores far worse than the champion: rejected
    run = step.run
    # The job saw the inverted labels as drift and learnt them from scratch; the gate said no
    assert (run.status, run.training_mode) == ("REJECTED", "full")
    assert run.record["trainingModeReason"].startswith("drift: ")
    assert run.record["decision"] == "reject"
    assert run.challenger is not None and run.champion is not None
    assert run.champion == pytest.approx(update.run.challenger)
    assert run.challenger > 2 * run.champion
    assert "endpointConfigName" not in run.record
    # and nothing was deployed: no model, same config, same answers
    assert not step.challenger_model_exists
    assert not scenario.exists(f"model/{run.job_name}")
    assert step.endpoint.config_name == step.endpoint_before.config_name == update.run.job_name
    assert step.endpoint.status == "InService"
    np.testing.assert_array_equal(step.predictions, step.predictions_before)
    np.testing.assert_array_equal(step.predictions, update.predictions)


def test_step4_a_batch_mode_run_writes_one_prediction_per_record(scenario: Scenario) -> None:
    rejected, update = scenario.rejected, scenario.update
    after(rejected, "step 3")
    assert update is not None
    # When records to score are uploaded and a batch-mode run is started by hand
    step: BatchStep = scenario.step_batch()

    # Then the run retrained on the trusted source, passed the gate, and ran a transform
    run = step.run
    assert step.execution_input == {
        "source": "manual",
        "trainingMode": "full",
        "prefix": TRUSTED_PREFIX,
        "deploymentMode": "batch",
    }
    assert execution_input(scenario, run.execution_arn) == step.execution_input
    assert (run.status, run.training_mode, run.deployment_mode) == ("PROMOTED", "full", "batch")
    assert run.rows == scenario.data.initial.rows + sum(b.rows for b in scenario.data.update)
    assert run.challenger is not None and run.champion is not None
    assert run.challenger < run.champion
    assert run.record["transformJobStatus"] == "Completed"
    # One output file with one prediction per input record, equal to the model's own, and the
    # _SUCCESS marker written after it, naming the transform job
    output = f"batch/output/{run.run_id}/patients.csv.out"
    marker = f"batch/output/{run.run_id}/_SUCCESS"
    assert step.output_keys == (marker, output)
    written = scenario.s3.get_object(Bucket=scenario.info.bucket, Key=marker)["Body"].read()
    assert json.loads(written)["TransformJobName"] == run.record["transformJobName"]
    body = scenario.s3.get_object(Bucket=scenario.info.bucket, Key=output)["Body"]
    lines = body.read().decode().splitlines()
    assert len(lines) == scenario.data.to_score.rows
    np.testing.assert_allclose(
        [float(line) for line in lines], step.artifact_predictions, rtol=1e-5, atol=1e-6
    )
    # The endpoint was not touched by a batch-mode run
    assert step.endpoint.config_name == update.run.job_name
    np.testing.assert_array_equal(scenario.predict(scenario.data.probe), update.predictions)


def test_the_demo_table_lists_every_run(scenario: Scenario) -> None:
    after(scenario.batch, "step 4")
    table = runs_table(scenario.runs).splitlines()
    assert table[0].split()[:4] == ["step", "run", "mode", "rows"]
    assert len(table) == 2 + 4
    decisions = [
        next(word for word in line.split() if word in ("PROMOTED", "REJECTED"))
        for line in table[2:]
    ]
    assert decisions == ["PROMOTED", "PROMOTED", "REJECTED", "PROMOTED"]


def test_every_trained_model_is_in_the_registry_with_its_runs_verdict(scenario: Scenario) -> None:
    after(scenario.batch, "step 4")
    # Given the stack's model package group after the four runs
    group = layout.model_package_group_name(scenario.info.stack_name)
    listed = scenario.sagemaker.list_model_packages(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Ascending"
    )["ModelPackageSummaryList"]
    packages = [
        scenario.sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"])
        for p in listed
    ]
    # Then each run has one package, approved when promoted, rejected when rejected
    verdicts = {
        p["CustomerMetadataProperties"]["runId"]: p["ModelApprovalStatus"] for p in packages
    }
    expected = {
        run.run_id: "Approved" if run.status == "PROMOTED" else "Rejected" for run in scenario.runs
    }
    assert len(packages) == len(scenario.runs) and verdicts == expected
    # And each run record names its package; the champion pointer names the last promoted one
    by_run = {p["CustomerMetadataProperties"]["runId"]: p["ModelPackageArn"] for p in packages}
    assert all(run.record.get("modelPackageArn") == by_run[run.run_id] for run in scenario.runs)
    champion = scenario.records.get_champion()
    assert champion is not None and champion.model_package_arn == by_run[scenario.batch.run.run_id]


def test_step5_refit_rollback_puts_the_first_model_back_through_the_promotion_path(
    scenario: Scenario,
) -> None:
    initial, update = scenario.initial, scenario.update
    after(scenario.batch, "step 4")
    assert initial is not None and update is not None
    # When `refit rollback` runs (the endpoint serves step 2's model; step 4's batch model moved
    # the champion pointer but never served)
    step: RollbackStep = scenario.step_rollback()

    # Then it trained nothing and deployed step 1's package through the promotion's states
    run = step.run
    assert step.execution_input == {"source": "manual", "rollback": {}}
    assert (run.status, run.training_mode, run.deployment_mode) == (
        "RESTORED",
        "rollback",
        "endpoint",
    )
    events = scenario.sfn.get_execution_history(executionArn=run.execution_arn, maxResults=1000)
    entered = {
        e["stateEnteredEventDetails"]["name"]
        for e in events["events"]
        if "stateEnteredEventDetails" in e
    }
    assert {"StartRollback", "CreateModel", "UpdateEndpoint", "VerifyEndpointConfig"} <= entered
    assert not {"Train", "EvaluateModels"} & entered
    # And the same endpoint answers with step 1's predictions again
    assert step.endpoint.arn == step.endpoint_before.arn
    np.testing.assert_array_equal(step.predictions_before, update.predictions)
    np.testing.assert_allclose(step.predictions, initial.predictions, rtol=1e-5, atol=1e-6)
    # And the registry and the champion pointer say so: step 1 live again, step 2 rejected
    assert step.package_statuses == {initial.run.run_id: "Approved", update.run.run_id: "Rejected"}
    champion = scenario.records.get_champion()
    assert champion is not None
    assert (champion.model_name, champion.run_id, champion.model_package_arn) == (
        run.run_id,
        initial.run.run_id,
        initial.run.record["modelPackageArn"],
    )
    # And the demo's table ends with the rollback
    table = runs_table(scenario.runs).splitlines()
    assert len(table) == 2 + 5
    assert "rollback → endpoint" in table[-1] and "RESTORED" in table[-1]
