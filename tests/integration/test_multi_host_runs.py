"""A stack training on two hosts, through the real trigger path: one model, half the rows each.

``TrainingInstanceCount=2`` with ``TrainingInputMode=FastFile``: PrepareRun cuts the one uploaded
file into two parts of the train channel (``ShardedByS3Key``, an S3 prefix as FastFile needs),
the local runtime runs ``train.py`` as two hosts that join one XGBoost collective, and the run is
gated, promoted and priced like any other: the cost counts both instances.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from local_cloud.cloud import LocalCloud
from refit import layout
from tests.integration.cloud_harness import TEST_KEY, CloudRuns, csv, fast_cloud, rows

pytestmark = pytest.mark.slow

TRAIN_ROWS = 400


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with fast_cloud(
        tmp_path_factory, "multi-host", TrainingInstanceCount="2", TrainingInputMode="FastFile"
    ) as started:
        yield started


def test_a_two_host_run_is_promoted_each_host_reading_half(cloud: LocalCloud) -> None:
    runs = CloudRuns(cloud)
    runs.put(TEST_KEY, csv(rows(100, seed=1)))
    # Given one upload to a stack that trains on two hosts
    run = runs.upload_run({f"{layout.TRAIN_PREFIX}two-hosts/a.csv": csv(rows(TRAIN_ROWS, seed=2))})
    # Then the run is promoted on every row, and the endpoint serves its model
    assert run.status == "PROMOTED", run.record
    assert run.record["metrics"]["trainRows"] == TRAIN_ROWS
    assert len(runs.predict(rows(3, seed=3))) == 3
    # And the job ran on two hosts, each reading its own part of the data
    job = run.record["jobName"]
    described = runs.sagemaker.describe_training_job(TrainingJobName=job)
    assert described["ResourceConfig"]["InstanceCount"] == 2
    channel = described["InputDataConfig"][0]
    assert channel["InputMode"] == "FastFile"
    train = channel["DataSource"]["S3DataSource"]
    assert (train["S3DataType"], train["S3DataDistributionType"]) == ("S3Prefix", "ShardedByS3Key")
    logs = cloud.client("logs")
    streams = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{job}/"
    )["logStreams"]
    hosts = sorted({s["logStreamName"].split("/")[1].rsplit("-", 1)[0] for s in streams})
    assert hosts == ["algo-1", "algo-2"]
    loaded = []
    for host in hosts:
        events = logs.filter_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{job}/{host}-"
        )["events"]
        text = "\n".join(e["message"] for e in events)
        found = re.search(r"channel train: (\d+) rows", text)
        assert found, text
        loaded.append(int(found.group(1)))
    assert sum(loaded) == TRAIN_ROWS and all(n > TRAIN_ROWS / 4 for n in loaded), loaded
    # And the cost counts both instances' billable time
    training = run.record["cost"]["training"]
    assert training["instanceCount"] == 2
    (block,) = training["jobs"]
    assert block["instanceCount"] == 2 and block["billableSeconds"] >= 1
    assert block["costUSD"] == pytest.approx(
        block["billableSeconds"] * 2 * block["usdPerHour"] / 3600, abs=1e-6
    )
