from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from refit import layout
from refit.data.datasets import DataFile, DataSelection, RejectedFile, RunManifests
from refit.data.train_channel import TrainChannel
from refit.metrics import UnsupportedMetricError
from refit.prepare_run.holdout import HoldoutSplit
from refit.prepare_run.run_plan import (
    PlanInputs,
    RunPlan,
    build_run_plan,
    choose_training_mode,
    metric_definitions,
    plan_size,
)
from refit.prepare_run.warm_start import WarmStart
from refit.registry.champion import Champion, ChampionState
from refit.run_input import RunRequest, TrainingMode
from tests.unit.builders import IMAGE, settings
from tests.unit.moto_stack import BUCKET, SETTINGS_ENV, STACK

CODE_URI = f"s3://{BUCKET}/code/sourcedir-0123456789abcdef.tar.gz"
CHAMPION = Champion(
    model_name="s3-champion",
    model_data_url=f"s3://{BUCKET}/models/s3-champion/output/model.tar.gz",
    endpoint_config_name="s3-champion",
    feature_count=3,
    source="endpoint",
)
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def inputs(
    *,
    run_id: str = "s3-0123456789abcdef0123456789abcdef01234567",
    champion: Champion | None = CHAMPION,
    request: RunRequest | None = None,
    accepted: int = 2,
    rejected: tuple[RejectedFile, ...] = (),
    has_validation_data: bool = True,
) -> PlanInputs:
    files = tuple(
        DataFile(f"data/train/part-{i:04d}.csv", "etag", "v1", 100, 10, 4) for i in range(accepted)
    )
    return PlanInputs(
        run_id=run_id,
        request=request or RunRequest(source="s3"),
        selection=DataSelection(files, rejected, ()),
        manifests=RunManifests(
            f"s3://{BUCKET}/runs/{run_id}/manifest.json",
            f"s3://{BUCKET}/runs/{run_id}/train.manifest",
        ),
        champion=ChampionState(champion, endpoint_exists=champion is not None),
        code_uri=CODE_URI,
        has_validation_data=has_validation_data,
        has_batch_input=False,
        region="us-east-1",
    )


def job(plan: RunPlan) -> dict[str, Any]:
    assert plan.training_job is not None
    return plan.training_job


def on_demand_job(plan: RunPlan) -> dict[str, Any]:
    assert plan.on_demand_training_job is not None
    return plan.on_demand_training_job


def channels(plan: RunPlan) -> dict[str, dict[str, Any]]:
    return {c["ChannelName"]: c for c in job(plan)["InputDataConfig"]}


@pytest.mark.parametrize(
    ("requested", "champion", "mode", "reason"),
    [
        ("auto", CHAMPION, "incremental", "continuing the champion s3-champion"),
        ("auto", None, "full", "no champion yet"),
        ("full", CHAMPION, "full", "full retraining requested"),
        ("incremental", CHAMPION, "incremental", "incremental requested"),
        ("incremental", None, "full", "no champion to continue from"),
    ],
)
def test_training_mode_follows_the_request_and_the_champion(
    requested: TrainingMode, champion: Champion | None, mode: str, reason: str
) -> None:
    chosen, why = choose_training_mode(requested, champion)
    assert chosen == mode
    assert reason in why


def test_an_incremental_run_warm_starts_from_the_champion() -> None:
    # Given a champion and default settings (spot on)
    plan = build_run_plan(inputs(), settings())
    request = job(plan)
    # Then the job continues the champion's model with the incremental number of rounds
    assert plan.training_mode == "incremental"
    model = channels(plan)["model"]
    assert model["DataSource"]["S3DataSource"]["S3Uri"] == CHAMPION.model_data_url
    assert model["ContentType"] == "application/x-sagemaker-model"
    assert request["HyperParameters"] == {
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": CODE_URI,
        "objective": "reg:squarederror",
        "num_round": "50",
        "eta": "0.1",
        "eval_metric": "rmse",
        "refit_mode": "incremental",
        "checkpoint_interval": "10",
        "full_num_round": "300",
        "incremental_eta": "0.1",
        "replay_rows": "50000",
    }
    # And it runs on spot with a wait limit and checkpoints
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 3600,
        "MaxWaitTimeInSeconds": 7200,
    }
    name = request["TrainingJobName"]
    assert plan.training_job_name == name
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/checkpoints/{name}/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert plan.champion == CHAMPION
    assert plan.to_document()["champion"]["modelName"] == "s3-champion"


def test_the_train_channel_reads_the_manifest_and_test_data_is_a_prefix() -> None:
    plan = build_run_plan(inputs(), settings())
    train = channels(plan)["train"]["DataSource"]["S3DataSource"]
    assert train["S3DataType"] == "ManifestFile"
    assert train["S3Uri"].endswith("/train.manifest")
    test = channels(plan)["test"]["DataSource"]["S3DataSource"]
    assert (test["S3DataType"], test["S3Uri"]) == ("S3Prefix", f"s3://{BUCKET}/data/test/")
    assert channels(plan)["validation"]["ContentType"] == "text/csv"
    assert job(plan)["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/models/"}


def test_a_first_run_trains_from_scratch_without_a_model_channel() -> None:
    plan = build_run_plan(
        inputs(champion=None, request=RunRequest(training_mode="incremental")), settings()
    )
    assert plan.training_mode == "full"
    assert "no champion" in (plan.training_mode_reason or "")
    assert plan.champion is None
    assert plan.to_document()["champion"] is None
    assert "model" not in channels(plan)
    assert job(plan)["HyperParameters"]["num_round"] == "300"
    assert plan.deploy.endpoint_exists is False


def test_a_full_retrain_still_scores_the_champion() -> None:
    plan = build_run_plan(inputs(request=RunRequest(training_mode="full")), settings())
    assert job(plan)["HyperParameters"]["refit_mode"] == "full"
    assert "model" in channels(plan)


def test_validation_channel_only_when_there_is_validation_data() -> None:
    plan = build_run_plan(inputs(has_validation_data=False), settings())
    assert set(channels(plan)) == {"train", "test", "model"}


def test_on_demand_training_has_no_wait_limit_but_keeps_checkpoints() -> None:
    plan = build_run_plan(inputs(), settings(use_spot_training=False))
    request = job(plan)
    assert request["EnableManagedSpotTraining"] is False
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert "CheckpointConfig" in request


def test_a_spot_run_plans_its_on_demand_retry_on_the_same_checkpoints() -> None:
    # Given a spot stack
    plan = build_run_plan(inputs(run_id="manual-1"), settings())
    spot, on_demand = job(plan), on_demand_job(plan)
    # Then the retry is the same request under its own name, on demand, without a wait limit
    assert on_demand["TrainingJobName"] == "manual-1-od" != spot["TrainingJobName"]
    assert on_demand["EnableManagedSpotTraining"] is False
    assert on_demand["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    # And it resumes from the spot job's checkpoints (same S3 URI and local path)
    assert on_demand["CheckpointConfig"] == spot["CheckpointConfig"]
    assert on_demand["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/checkpoints/manual-1/"
    # And trains the same thing: data, code, hyperparameters, instances, output, role
    same = {k for k in spot if k not in ("TrainingJobName", "EnableManagedSpotTraining")}
    same -= {"StoppingCondition", "Tags"}
    assert {k: on_demand[k] for k in same} == {k: spot[k] for k in same}
    assert set(on_demand) == set(spot)
    # And it is tagged like every resource, plus the capacity it runs on
    assert on_demand["Tags"] == [*spot["Tags"], {"Key": "refit:capacity", "Value": "on-demand"}]
    # And the spot request itself is unchanged (not aliased by the copy)
    assert spot["EnableManagedSpotTraining"] is True
    assert spot["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert spot["Tags"] == [
        {"Key": "refit:stack", "Value": STACK},
        {"Key": "refit:run", "Value": "manual-1"},
    ]


def test_an_on_demand_stack_has_nothing_to_fall_back_to() -> None:
    plan = build_run_plan(inputs(), settings(use_spot_training=False))
    assert plan.on_demand_training_job is None
    assert plan.to_document()["onDemandTrainingJob"] is None


def test_the_on_demand_job_name_is_valid_and_distinct_for_any_execution_name() -> None:
    for run_id in ("My_Manual.Run_" + "x" * 70, "r" * 80, "s3-" + "a" * 60):
        plan = build_run_plan(inputs(run_id=run_id), settings())
        spot = job(plan)["TrainingJobName"]
        on_demand = on_demand_job(plan)["TrainingJobName"]
        assert SAGEMAKER_NAME.match(on_demand), on_demand
        assert on_demand != spot


def test_every_resource_is_tagged_with_the_stack_and_run() -> None:
    plan = build_run_plan(inputs(run_id="manual-1"), settings())
    base = [{"Key": "refit:stack", "Value": STACK}, {"Key": "refit:run", "Value": "manual-1"}]
    assert job(plan)["Tags"] == base
    deploy = plan.to_document()["deploy"]
    assert deploy["tags"] == base
    assert deploy["modelTags"] == [*base, {"Key": "refit:role", "Value": "model"}]
    assert deploy["endpointConfigTags"][-1] == {
        "Key": "refit:role",
        "Value": "endpoint-config",
    }
    assert deploy["transform"]["Tags"][-1] == {"Key": "refit:role", "Value": "transform"}


def test_deploy_block_names_everything_after_the_job() -> None:
    plan = build_run_plan(inputs(run_id="manual-1"), settings())
    deploy = plan.deploy
    assert deploy.model_name == deploy.endpoint_config_name == "manual-1"
    assert deploy.endpoint_name == SETTINGS_ENV["ENDPOINT_NAME"]
    assert deploy.image == IMAGE
    assert deploy.environment == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": CODE_URI,
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": "us-east-1",
    }
    # The default rollout: a 10 % canary for 300 s, then 300 s of baking, watched by no alarm
    # here (the template passes its two in ROLLBACK_ALARMS)
    assert deploy.deployment_config == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 300,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 2400,
        }
    }
    # Polls (EndpointMaxPolls) cover provisioning; WaitForRollout sleeps through the rollout
    assert (deploy.poll_seconds, deploy.max_polls) == (30, 120)
    # An update: WaitForRollout sleeps through the canary's 300 s and the bake's 300 s
    assert deploy.rollout_seconds == 600
    assert deploy.transform.job_name == "manual-1"
    # The document the ASL reads: CreateTransformJob's request beside hasInput and successMarker
    transform = plan.to_document()["deploy"]["transform"]
    assert transform["TransformJobName"] == "manual-1"
    assert transform["hasInput"] is False
    assert transform["successMarker"] == {
        "Bucket": BUCKET,
        "Key": "batch/output/manual-1/_SUCCESS",
    }
    assert transform["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/batch/output/manual-1/"
    source = transform["TransformInput"]["DataSource"]["S3DataSource"]
    assert source["S3Uri"] == f"s3://{BUCKET}/batch/input/"
    assert transform["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1}


def test_job_names_are_valid_sagemaker_names_for_any_execution_name() -> None:
    run_id = "My_Manual.Run_" + "x" * 70
    plan = build_run_plan(inputs(run_id=run_id), settings())
    assert SAGEMAKER_NAME.match(job(plan)["TrainingJobName"])


def test_deployment_mode_defaults_to_the_stack_and_can_be_overridden() -> None:
    assert build_run_plan(inputs(), settings()).deployment_mode == "endpoint"
    override = inputs(request=RunRequest(deployment_mode="batch"))
    assert build_run_plan(override, settings()).deployment_mode == "batch"


def test_nothing_accepted_means_rejected_input() -> None:
    rejected = (RejectedFile("data/train/a.csv", "bad", "data/rejected/a.csv"),)
    plan = build_run_plan(inputs(accepted=0, rejected=rejected), settings())
    assert plan.status == "rejected-input"
    assert plan.to_document()["data"]["rejectedFiles"] == [
        {"key": "data/train/a.csv", "reason": "bad", "movedTo": "data/rejected/a.csv"}
    ]


def test_metric_patterns_tell_challenger_and_champion_apart() -> None:
    patterns = [re.compile(d["Regex"]) for d in metric_definitions("rmse")]
    challenger, champion, retained, retained_champion = patterns
    assert [d["Name"] for d in metric_definitions("rmse")] == [
        "test-rmse",
        "champion-test-rmse",
        "retained-test-rmse",
        "champion-retained-test-rmse",
    ]
    assert challenger.search("test-rmse: 0.41")[1] == "0.41"  # type: ignore[index]
    assert champion.search("champion-test-rmse: 4.5e-01")[1] == "4.5e-01"  # type: ignore[index]
    assert retained.search("retained-test-rmse: 0.6")[1] == "0.6"  # type: ignore[index]
    # Each line feeds exactly one metric
    lines = [
        "test-rmse: 1",
        "champion-test-rmse: 2",
        "retained-test-rmse: 3",
        "champion-retained-test-rmse: 4",
    ]
    for pattern, own in zip(patterns, lines, strict=True):
        assert [line for line in lines if pattern.search(line)] == [own]
    assert retained_champion.search(lines[3])[1] == "4"  # type: ignore[index]


def test_an_unsupported_metric_fails_before_training() -> None:
    with pytest.raises(UnsupportedMetricError):
        build_run_plan(inputs(), settings(evaluation_metric="r2"))


def test_a_run_of_a_thousand_files_stays_far_below_the_state_limit() -> None:
    # Given 1,000 accepted and 1,000 rejected files with long keys and long reasons
    long_key = "data/train/" + "deeply/nested/" * 50
    rejected = tuple(
        RejectedFile(f"{long_key}{i}.csv", "x" * 1024, f"data/rejected/{i}.csv")
        for i in range(1000)
    )
    plan = build_run_plan(inputs(accepted=1000, rejected=rejected), settings())
    # Then the lists stay in the manifest and the plan is a small fraction of 256 KiB
    document = plan.to_document()
    size = len(json.dumps(document).encode())
    assert size < 32 * 1024
    assert plan_size(plan) < size  # compact, as PrepareRun logs it
    data = document["data"]
    assert data["accepted"] == 1000
    assert data["rejected"] == 1000
    assert 0 < len(data["rejectedFiles"]) <= layout.INLINE_KEYS_MAX
    assert data["rejectedFilesInline"] == len(data["rejectedFiles"])
    # And the reasons inlined are cut short
    assert all(len(f["reason"]) == 300 for f in data["rejectedFiles"])


def test_the_plan_is_plain_json() -> None:
    document = build_run_plan(inputs(), settings()).to_document()
    assert json.loads(json.dumps(document)) == document


def test_the_document_has_the_keys_the_state_machine_reads() -> None:
    plan = build_run_plan(inputs(), settings())
    assert list(plan.to_document()) == [
        "runId",
        "status",
        "source",
        "trainingMode",
        "trainingModeReason",
        "startedAt",
        "dataWindow",
        "deploymentMode",
        "metric",
        "higherIsBetter",
        "data",
        "champion",
        "trainingJob",
        "onDemandTrainingJob",
        "deploy",
        "forceDecision",
        "championProblem",
        "testSets",
    ]


def test_the_document_is_a_copy() -> None:
    # Given a rendered document that a caller changes
    plan = build_run_plan(inputs(), settings())
    document = plan.to_document()
    document["trainingJob"]["TrainingJobName"] = "changed"
    document["deploy"]["transform"]["Tags"].clear()
    # Then the plan, and the next rendering, are as they were
    assert plan.training_job_name != "changed"
    assert plan.to_document()["deploy"]["transform"]["Tags"] != []


# --- the gate -----------------------------------------------------------------------------------
def test_an_unsafe_warm_start_makes_the_run_a_full_retrain_and_says_why() -> None:
    why = "full retrain: the last 3 incremental challengers of s3-champion were rejected"
    plan = build_run_plan(
        dataclasses.replace(inputs(), warm_start=WarmStart(full_retrain_reason=why)), settings()
    )
    assert (plan.training_mode, plan.training_mode_reason) == ("full", why)
    assert job(plan)["HyperParameters"]["num_round"] == "300"
    # The champion is still scored: the model channel stays
    assert layout.CHANNEL_MODEL in channels(plan)


def test_a_champion_whose_artifact_is_missing_is_left_out_of_the_job() -> None:
    warm_start = WarmStart("full retrain: its artifact is missing", "its artifact is missing")
    plan = build_run_plan(dataclasses.replace(inputs(), warm_start=warm_start), settings())
    assert plan.training_mode == "full"
    assert layout.CHANNEL_MODEL not in channels(plan)
    assert plan.champion_problem == "its artifact is missing"
    assert plan.to_document()["championProblem"] == "its artifact is missing"
    assert plan.champion == CHAMPION  # the endpoint is still updated


def test_a_requested_full_retrain_keeps_its_own_reason() -> None:
    warm_start = WarmStart(full_retrain_reason="full retrain: rejections")
    request = RunRequest(training_mode="full")
    plan = build_run_plan(
        dataclasses.replace(inputs(request=request), warm_start=warm_start), settings()
    )
    assert plan.training_mode_reason == "full retraining requested"


def test_split_holdout_becomes_two_manifest_channels() -> None:
    split = HoldoutSplit(
        cutoff="2026-11-01T00:00:00Z",
        fresh_files=1,
        retained_files=2,
        fresh_manifest_uri=f"s3://{BUCKET}/runs/r/test.manifest",
        retained_manifest_uri=f"s3://{BUCKET}/runs/r/test_retained.manifest",
        reason="split",
    )
    plan = build_run_plan(dataclasses.replace(inputs(), test_sets=split), settings())
    found = channels(plan)
    for name, uri in [
        (layout.CHANNEL_TEST, split.fresh_manifest_uri),
        (layout.CHANNEL_TEST_RETAINED, split.retained_manifest_uri),
    ]:
        source = found[name]["DataSource"]["S3DataSource"]
        assert (source["S3DataType"], source["S3Uri"]) == ("ManifestFile", uri)
    assert plan.test_sets == split
    assert plan.to_document()["testSets"]["retainedFiles"] == 2


def test_without_a_split_the_test_channel_reads_the_whole_prefix() -> None:
    plan = build_run_plan(inputs(), settings())
    source = channels(plan)[layout.CHANNEL_TEST]["DataSource"]["S3DataSource"]
    assert (source["S3DataType"], source["S3Uri"]) == ("S3Prefix", f"s3://{BUCKET}/data/test/")
    assert layout.CHANNEL_TEST_RETAINED not in channels(plan)


def test_a_forced_decision_reaches_the_plan() -> None:
    plan = build_run_plan(inputs(request=RunRequest(force_decision="reject")), settings())
    assert plan.force_decision == "reject"
    assert plan.to_document()["forceDecision"] == "reject"


def test_a_new_endpoint_has_no_rollout_to_wait_for() -> None:
    # Given no champion and no endpoint: CreateEndpoint, which shifts no traffic
    plan = build_run_plan(inputs(champion=None), settings())
    # Then WaitForRollout sleeps 0 s
    assert plan.deploy.endpoint_exists is False
    assert plan.deploy.rollout_seconds == 0


def test_a_multi_host_job_reads_the_train_channel_prepare_run_shaped() -> None:
    # Given a train channel of parts shared by two hosts, streamed
    channel = TrainChannel(
        f"s3://{BUCKET}/runs/r/channel/train/", "S3Prefix", "ShardedByS3Key", "FastFile", 4
    )
    # When the plan is built for a two-host stack
    plan = build_run_plan(
        dataclasses.replace(inputs(), train_channel=channel),
        settings(training_instance_count=2),
    )
    # Then the job's train channel is that one, the other channels replicated in File mode
    train, *others = job(plan)["InputDataConfig"]
    assert train == channel.request()
    assert train["InputMode"] == "FastFile"
    assert job(plan)["ResourceConfig"]["InstanceCount"] == 2
    for other in others:
        assert "InputMode" not in other
        assert other["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"
