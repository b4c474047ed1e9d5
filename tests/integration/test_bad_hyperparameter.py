"""A real training failure: the stack passes XGBoost a hyperparameter it refuses.

The stack's ``Objective`` parameter is an XGBoost hyperparameter. ``reg:bogus`` passes the
template's ``AllowedPattern`` (as it would in CloudFormation) and nothing before training can
know XGBoost's list of objectives, so the real ``training/train.py`` runs and XGBoost raises.
That is the only way a bad hyperparameter reaches a job: execution inputs carry none
(``refit.run_input`` refuses unknown fields). The out-of-memory case, which no input can cause
locally, is in ``test_run_failures.py`` (the runtime's ``inject_training_failure``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local_cloud.cloud import LocalCloud
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


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with fast_cloud(tmp_path_factory, "bad-hyperparameter", Objective="reg:bogus") as started:
        yield started


def test_a_hyperparameter_xgboost_refuses_fails_the_run_with_the_scripts_reason(
    cloud: LocalCloud,
) -> None:
    runs = CloudRuns(cloud)
    notifications = Notifications(cloud)
    runs.put(TEST_KEY, csv(rows(40, seed=1)))

    # When data arrives on a stack whose objective XGBoost does not know
    run = runs.upload_run({"data/train/a.csv": csv(rows(40, seed=2))})

    # Then the job ran train.py, which failed with XGBoost's own complaint as FailureReason
    job = layout.sagemaker_name(run.name)
    described = runs.sagemaker.describe_training_job(TrainingJobName=job)
    assert described["TrainingJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "reg:bogus" in reason and "objective" in reason.lower(), reason
    log = runs.cloud.sagemaker.describe_training_job(job)["LocalRuntime"]["LogFile"]
    assert "training failed" in Path(log).read_text()
    # And the run is FAILED with that reason, without an on-demand retry of a hopeless job
    assert (run.execution_status, run.status) == ("FAILED", "FAILED")
    assert run.error["FailureReason"] == reason
    assert "TrainOnDemand" not in runs.states_entered(run.arn)
    # And nothing was deployed: no model, no endpoint config, no endpoint
    assert runs.model_names() == set() and runs.endpoint_config_names() == set()
    assert runs.sagemaker.list_endpoints()["Endpoints"] == []
    # And the notification carries the reason
    notification = notifications.for_run(run.name)
    assert notification["attributes"]["status"] == "FAILED"
    assert "reg:bogus" in notification["message"]
