"""Deliveries through the real trigger path: each run learns more and is promoted.

Four uploads to ``data/train/``, one after the other, on one stationary relationship. The first
run trains from scratch; each later one continues the champion with the new file plus the
champion's replay sample (its ``output.tar.gz``, the job's ``replay`` channel), refreshes its
leaves, appends early-stopped rounds, beats the champion on the holdout and is promoted — except
the second, which brings the lineage to 3x the rows its trees were grown on: PrepareRun's growth
rule (``FullRetrainGrowth``) retrains from scratch on all the files instead. The run record says
how each run learnt: replay rows, rounds added, leaf refresh, why a full retrain.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_cloud.cloud import LocalCloud
from refit import layout
from tests.integration.cloud_harness import TEST_KEY, CloudRuns, csv, fast_cloud, rows

pytestmark = pytest.mark.slow

DELIVERY_ROWS = 400


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    # Enough rounds for a model that gains from more data; the gate needs a strict improvement.
    with fast_cloud(
        tmp_path_factory,
        "deliveries",
        NumRoundsFull="40",
        NumRoundsIncremental="40",
        CheckpointIntervalRounds="20",
    ) as started:
        yield started


def test_each_delivery_is_trained_incrementally_with_replay_and_promoted(
    cloud: LocalCloud,
) -> None:
    runs = CloudRuns(cloud)
    runs.put(TEST_KEY, csv(rows(400, seed=100)))
    first = runs.upload_run({"data/train/delivery-0.csv": csv(rows(DELIVERY_ROWS, seed=0))})
    assert first.status == "PROMOTED", first.record
    scores = [first.record["metrics"]["challenger"]]
    champion_job = first.record["trainingJobName"]

    for delivery in range(1, 4):
        run = runs.upload_run(
            {f"data/train/delivery-{delivery}.csv": csv(rows(DELIVERY_ROWS, seed=delivery))}
        )
        record = run.record
        if delivery == 2:
            # Then the lineage has 3 x the 400 rows its trees were grown on: a full retrain on
            # every file so far, started by this upload
            assert record["trainingMode"] == "full", record
            assert record["trainingModeReason"] == (
                "full retrain: the champion's trees were grown on 400 rows, its lineage has "
                "1,200 with this delivery (FullRetrainGrowth 3)"
            )
            assert record["data"]["rows"] == DELIVERY_ROWS * 3
            manifest = runs.json_object(record["manifestUri"])
            assert sorted(f["key"] for f in manifest["accepted"]) == [
                f"data/train/delivery-{n}.csv" for n in range(3)
            ]
            assert record.get("incremental") is None  # recorded for incremental runs only
        else:
            # Then the run continued the champion on the new file plus everything seen before
            assert record["trainingMode"] == "incremental", record
            assert record["data"]["rows"] == DELIVERY_ROWS  # it read only the new file
            learnt = record["incremental"]
            assert learnt["newRows"] == DELIVERY_ROWS
            seen = DELIVERY_ROWS * delivery
            assert learnt["replayRows"] == min(seen, 50_000)
            assert learnt["replaySeenRows"] == seen
            assert learnt["leafRefresh"] == "blended"
            assert 1 <= learnt["roundsAdded"] <= 40
            assert learnt["eta"] == pytest.approx(0.1)
            assert record["drift"]["detected"] is False
            assert record["drift"]["rows"] == min(DELIVERY_ROWS, 10_000)  # DRIFT_CHECK_ROWS
            # And the replay channel was the champion's own output.tar.gz
            job = runs.sagemaker.describe_training_job(TrainingJobName=record["trainingJobName"])
            channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
            replay_uri = channels[layout.CHANNEL_REPLAY]["DataSource"]["S3DataSource"]["S3Uri"]
            assert replay_uri == (
                f"s3://{runs.bucket}/{layout.MODELS_PREFIX}{champion_job}/output/output.tar.gz"
            )
        # And it beat its champion on the holdout and was promoted
        assert run.status == "PROMOTED", (record.get("reason"), record.get("metrics"))
        assert record["metrics"]["champion"] == pytest.approx(scores[-1])
        assert record["metrics"]["challenger"] < scores[-1]
        scores.append(record["metrics"]["challenger"])
        champion_job = record["trainingJobName"]
    assert scores == sorted(scores, reverse=True), scores
    # And the champion's window says what its trees were grown on and what its lineage has seen
    pointer = runs.records.get_champion()
    assert pointer is not None and pointer.data_window is not None
    assert (pointer.data_window.base_rows, pointer.data_window.seen_rows) == (1200, 1600)
    assert pointer.data_window.since is None  # no drift: all data
