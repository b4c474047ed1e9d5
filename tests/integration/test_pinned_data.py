"""The job trains on what PrepareRun validated, even when the data changes before it downloads.

A managed-spot job waits for capacity before it downloads its channels (the runtime's
``spot_capacity_delay_seconds``), the window in which a file may be deleted. Before pinning, the
job's ManifestFile named the live keys and such a run failed "Data download failed: 404",
taking the good files down with it. Now the channel lists PrepareRun's copies under
``runs/<run>/data/``: the deleted file's validated version still trains, and afterwards the
cumulative data manifest no longer lists it (a deleted key is not trained on again).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from local_cloud.cloud import LocalCloud
from refit import layout
from tests.integration.cloud_harness import (
    FAST_RUNTIME,
    TEST_KEY,
    CloudRuns,
    csv,
    fast_cloud,
    rows,
    wait_for,
)

pytestmark = pytest.mark.slow

KEPT = f"{layout.TRAIN_PREFIX}race/kept.csv"
DELETED = f"{layout.TRAIN_PREFIX}race/deleted.csv"
SPOT_WAIT_SECONDS = 2.0


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    runtime = dataclasses.replace(FAST_RUNTIME, spot_capacity_delay_seconds=SPOT_WAIT_SECONDS)
    with fast_cloud(
        tmp_path_factory,
        "pinned-data",
        runtime=runtime,
        DeploymentMode="batch",
        UseSpotTraining="true",
    ) as started:
        yield started


def test_a_file_deleted_while_the_job_waits_for_spot_capacity_still_trains(
    cloud: LocalCloud,
) -> None:
    runs = CloudRuns(cloud)
    runs.put(TEST_KEY, csv(rows(40, seed=1)))
    known = runs.execution_arns()
    # Given two uploads, one run for both
    runs.put(KEPT, csv(rows(30, seed=2)))
    runs.put(DELETED, csv(rows(20, seed=3)))
    arn = runs.triggered([DELETED, KEPT], known)
    # When PrepareRun has validated them and the job is waiting for spot capacity
    job = layout.sagemaker_name(arn.rsplit(":", 1)[-1])
    wait_for(lambda: job in runs.training_job_names() or None, 30.0, f"training job {job} created")
    described = runs.sagemaker.describe_training_job(TrainingJobName=job)
    assert described["TrainingJobStatus"] == "InProgress"
    assert described["SecondaryStatus"] == "Starting", described["SecondaryStatus"]
    # ... one of them is deleted
    runs.s3.delete_object(Bucket=runs.bucket, Key=DELETED)

    # Then the run trains on both validated versions and succeeds
    run = runs.finished(arn)
    assert run.status == "PROMOTED", run.record
    assert run.record["data"]["rows"] == 50
    manifest = runs.json_object(run.record["manifestUri"])
    pinned = {f["key"]: f["pinnedUri"] for f in manifest["accepted"]}
    assert pinned == {
        key: f"s3://{runs.bucket}/{layout.pinned_data_key(run.name, key)}"
        for key in (DELETED, KEPT)
    }
    # And the job read both files' rows, from the pinned copies
    assert run.record["metrics"]["trainRows"] == 50
    train_manifest = runs.json_object(f"{layout.run_prefix(run.name)}train.manifest")
    assert sorted(train_manifest[1:]) == sorted(
        layout.pinned_data_key(run.name, key) for key in (DELETED, KEPT)
    )
    # And the cumulative manifest lists only the key that still exists
    cumulative = runs.json_object(layout.CUMULATIVE_MANIFEST_KEY)
    assert [entry["key"] for entry in cumulative["objects"]] == [KEPT]
    assert run.record["trainedData"]["updated"] is True
    assert run.record["trainedData"]["removed"] == 1
