"""The gate through the whole local cloud: a challenger that forgets the old data is rejected.

A first run trains on the old relationship, with ``data/test/holdout.csv`` as its test set. Then
the relationship changes: a new test file and new training data arrive with it. PrepareRun splits
``data/test/`` at the champion's run start (the new file is fresh, the holdout retained), the
real ``train.py`` sees the champion fail on the new rows (drift), learns them from scratch and
scores both models on both sets, and EvaluateModels rejects the challenger: it wins on the new
data but regresses on the old by more than ``MaxRetainedRegression``. The endpoint keeps
serving the champion.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
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
    with fast_cloud(tmp_path_factory, "gate", MaxRetainedRegression="0.05") as started:
        yield started


def shifted(table: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Same features, changed relationship (concept drift): the label is mirrored."""
    drifted = table.copy()
    drifted[:, 0] = 3.0 - drifted[:, 0]
    return drifted


def test_a_forgetting_challenger_is_rejected(cloud: LocalCloud) -> None:
    runs = CloudRuns(cloud)
    notifications = Notifications(cloud)
    # Given a champion trained and tested on the old relationship
    runs.put(TEST_KEY, csv(rows(120, seed=1)))
    first = runs.upload_run({"data/train/old.csv": csv(rows(200, seed=2))})
    assert first.status == "PROMOTED", first.record
    serving = runs.endpoint_config_name()

    # When the relationship changes: new test data, then new training data, arrive
    runs.put(f"{layout.TEST_PREFIX}2026/new.csv", csv(shifted(rows(120, seed=3))))
    second = runs.upload_run({"data/train/new.csv": csv(shifted(rows(200, seed=4)))})

    # Then the job saw the champion fail on the new rows (drift) and learnt them from scratch,
    # won on the new data, lost on the old
    record = second.record
    assert record["trainingMode"] == "full", record
    assert record["trainingModeReason"].startswith("drift: "), record
    assert record["drift"]["detected"] is True
    assert (record["testSets"]["freshFiles"], record["testSets"]["retainedFiles"]) == (1, 1)
    metrics = record["metrics"]
    assert metrics["challenger"] < metrics["champion"]
    assert metrics["retainedChallenger"] - metrics["retainedChampion"] > 0.05
    # And it was rejected with both numbers in the reason, recorded and notified
    assert second.status == "REJECTED", record
    assert record["decision"] == "reject"
    assert "improves new data by" in record["reason"]
    assert "but regresses retained data by" in record["reason"]
    assert "> limit 0.05" in record["reason"]
    assert record["reason"] in notifications.for_run(second.name)["message"]
    # And the champion keeps serving
    assert runs.endpoint_config_name() == serving
    # A from-scratch challenger is no incremental one: FullRetrainAfterRejections counts none
    assert runs.records.rejection_streak(layout.sagemaker_name(first.name)) == 0
