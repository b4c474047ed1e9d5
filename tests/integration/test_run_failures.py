"""Faults after the trigger: a training job that fails and an endpoint update that rolls back.

One LocalCloud for the module (the real template, trigger path, state machine, handlers and
train.py; the local SageMaker runtime's fault injection), its runs in file order:

1. (fixture) an upload trains the champion and creates the endpoint;
2. the next run's training job dies of out-of-memory: the run is FAILED with the job's
   FailureReason, not retried on demand, the endpoint keeps serving the champion, no model or
   endpoint config is created, a notification says why;
3. the next run wins but the endpoint update fails and SageMaker rolls it back: the workflow
   sees the old config (``Refit.EndpointRolledBack``), the run is FAILED, the champion's model
   and config are kept and still serve; the new model/config are registered for cleanup;
4. the next successful run's cleanup deletes them: nothing from the failed update is left.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from local_cloud.cloud import LocalCloud
from local_cloud.sagemaker import OUT_OF_MEMORY_FAILURE
from refit import layout
from tests.integration.cloud_harness import (
    TEST_KEY,
    CloudRuns,
    Notifications,
    csv,
    fast_cloud,
    rows,
)

pytestmark = pytest.mark.slow

PROBE = rows(10, seed=99)


@dataclass
class Faults:
    cloud: LocalCloud
    runs: CloudRuns
    notifications: Notifications
    champion_config: str
    champion_model: str
    champion_predictions: list[float]


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    with fast_cloud(tmp_path_factory, "run-failures") as cloud:
        runs = CloudRuns(cloud)
        notifications = Notifications(cloud)
        runs.put(TEST_KEY, csv(rows(80, seed=1)))
        first = runs.upload_run({"data/train/first.csv": csv(rows(40, seed=2))})
        assert first.status == "PROMOTED", first.record
        config = runs.endpoint_config_name()
        yield Faults(
            cloud,
            runs,
            notifications,
            champion_config=config,
            champion_model=str(first.record["trainingJobName"]),
            champion_predictions=runs.predict(PROBE),
        )


def assert_champion_still_serves(faults: Faults) -> None:
    runs = faults.runs
    assert runs.endpoint_config_name() == faults.champion_config
    assert runs.predict(PROBE) == faults.champion_predictions
    assert faults.champion_model in runs.model_names()
    assert faults.champion_config in runs.endpoint_config_names()


def test_a_training_job_out_of_memory_fails_the_run_and_leaves_the_endpoint_alone(
    faults: Faults,
) -> None:
    runs = faults.runs
    models, configs = runs.model_names(), runs.endpoint_config_names()
    # Given the next training job runs out of memory
    faults.cloud.inject_training_failure()

    # When new data arrives
    run = runs.upload_run({"data/train/oom.csv": csv(rows(60, seed=3))})

    # Then the run failed with the job's own FailureReason, without an on-demand retry
    job = layout.sagemaker_name(run.name)
    described = runs.sagemaker.describe_training_job(TrainingJobName=job)
    assert (described["TrainingJobStatus"], described["FailureReason"]) == (
        "Failed",
        OUT_OF_MEMORY_FAILURE,
    )
    assert run.execution_status == "FAILED"
    assert run.status == "FAILED"
    assert run.record["trainingJobName"] == job
    assert run.error["Error"] == "States.TaskFailed"
    assert run.error["TrainingJobStatus"] == "Failed"
    assert run.error["FailureReason"] == OUT_OF_MEMORY_FAILURE
    entered = runs.states_entered(run.arn)
    assert "TrainOnDemand" not in entered and "EvaluateModels" not in entered
    assert f"{job}-{layout.ON_DEMAND_JOB_SUFFIX}" not in runs.training_job_names()
    # And nothing was created for it: no model, no endpoint config, no artifact
    assert (runs.model_names(), runs.endpoint_config_names()) == (models, configs)
    assert not runs.exists(f"{layout.MODELS_PREFIX}{job}/output/model.tar.gz")
    # And the champion keeps serving, unchanged
    assert_champion_still_serves(faults)
    # And the notification says what failed and why
    notification = faults.notifications.for_run(run.name)
    assert notification["subject"].endswith(f"run {run.name} FAILED")
    assert notification["attributes"]["status"] == "FAILED"
    assert f"Error: States.TaskFailed: {OUT_OF_MEMORY_FAILURE}" in notification["message"]
    assert Notifications.record_in(notification)["error"]["FailureReason"] == (
        OUT_OF_MEMORY_FAILURE
    )


def test_an_endpoint_update_that_rolls_back_is_recorded_and_keeps_the_champion(
    faults: Faults,
) -> None:
    runs = faults.runs
    # Given the endpoint's next update fails its health checks (SageMaker rolls it back)
    reason = "Update failed: the new production variant did not pass health checks"
    faults.cloud.inject_endpoint_update_failure(reason=reason)

    # When a run's challenger wins (more data from the same source: a better model)
    run = runs.upload_run({"data/train/rollback.csv": csv(rows(200, seed=4))})

    # Then the workflow saw the endpoint back on the champion's config: the run is ROLLED_BACK,
    # with the endpoint's reason, and its package rejected
    assert run.record["decision"] == "promote", run.record
    assert run.execution_status == "FAILED"
    assert run.status == "ROLLED_BACK"
    assert run.record["rollbackReason"] == reason
    assert run.record["modelPackageStatus"] == "Rejected"
    assert run.error["Error"] == "Refit.EndpointRolledBack"
    assert faults.champion_config in run.error["Cause"]
    entered = runs.states_entered(run.arn)
    assert entered[-3:] == ["EndpointRolledBack", "RecordFailure", "RunFailed"], entered
    assert "CleanupResources" not in entered
    described = runs.sagemaker.describe_endpoint(EndpointName=runs.info.endpoint_name)
    assert described["FailureReason"] == reason
    # And the champion's model and config are kept and still serve the same predictions
    assert_champion_still_serves(faults)
    # And the run's own model and config, created before the update, are known to cleanup
    new = layout.sagemaker_name(run.name)
    assert new in runs.model_names() and new in runs.endpoint_config_names()
    owned = {entry.run_id: entry for entry in runs.records.owned_resources()}
    assert (owned[run.name].model_name, owned[run.name].endpoint_config_name) == (new, new)
    assert owned[run.name].promoted is False
    # And the notification reports the rollback
    notification = faults.notifications.for_run(run.name)
    assert notification["attributes"]["status"] == "ROLLED_BACK"
    assert f"The endpoint update was rolled back ({reason})" in notification["message"]

    # When the next run wins and its update succeeds
    after = runs.upload_run({"data/train/after.csv": csv(rows(200, seed=5))})

    # Then the endpoint moved on, and the rolled-back run's model and config are deleted
    assert after.status == "PROMOTED", after.record
    assert runs.endpoint_config_name() == layout.sagemaker_name(after.name)
    assert runs.predict(PROBE) != faults.champion_predictions
    deleted: dict[str, Any] = after.record["cleanup"]["deleted"]
    assert new in deleted["models"] and new in deleted["endpointConfigs"]
    assert new not in runs.model_names() and new not in runs.endpoint_config_names()
    assert run.name not in {entry.run_id for entry in runs.records.owned_resources()}
    # (the previous champion survives as the rollback target: PreviousModelsToKeep = 1)
    assert faults.champion_model in runs.model_names()
    assert np.isfinite(runs.predict(PROBE)).all()
