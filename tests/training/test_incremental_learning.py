"""Incremental jobs learn what a delivery adds: replay, blended leaf refresh, early stop, drift.

The job-level tests run train.py as SageMaker does; the refresh arithmetic is checked
in-process against the Newton step it must equal (training/refit_incremental.py).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
import xgboost as xgb

from tests.training.training_harness import Job, predict, regression_rows, rmse, train_booster

pytestmark = pytest.mark.slow


def chained(first: Job, follow_up: Job, train: np.ndarray, **hyperparameters: object) -> Job:
    """``follow_up`` continues ``first``'s model with its replay sample, as PrepareRun plans."""
    follow_up.write_table("train", train)
    follow_up.write_table("test", regression_rows(200, seed=2))
    follow_up.add_champion_archive(first.model_archive())
    follow_up.add_replay_archive(first.output_archive())
    follow_up.set_hyperparameters(refit_mode="incremental", **hyperparameters)
    return follow_up


def test_the_replay_sample_travels_with_each_model_and_stays_uniform_and_bounded(
    job: Job, new_job: Callable[[], Job]
) -> None:
    # Given a first job on 400 rows and a second on 300 new rows with a 500-row sample
    job.set_hyperparameters(num_round=12, max_depth=3, replay_rows=500)
    assert job.run().returncode == 0
    first_sample = {"rows": 400, "seenRows": 400, "baseRows": 400, "columns": 7}
    assert job.evaluation()["replaySample"] == first_sample
    second = chained(job, new_job(), regression_rows(300, seed=3), num_round=5, replay_rows=500)

    run = second.run()

    # Then the second job trained on the new rows and the first job's sample
    assert run.returncode == 0, run.output
    details = second.evaluation()["incremental"]
    assert (details["newRows"], details["replayRows"], details["replaySeenRows"]) == (300, 400, 400)
    assert details["validationRows"] == 30 + 40  # a tenth of each, mixing new and old rows
    # And it wrote a sample of 500 of the 700 rows seen, as a float32 table, label first; the
    # lineage's trees were still grown on the first job's 400 (PrepareRun's growth rule)
    assert second.evaluation()["replaySample"] == {
        "rows": 500,
        "seenRows": 700,
        "baseRows": 400,
        "columns": 7,
    }
    sample = np.load(second.root / "output" / "data" / "replay" / "replay.npy")
    assert sample.shape == (500, 7) and sample.dtype == np.float32
    seen = np.concatenate([regression_rows(400, seed=1), regression_rows(300, seed=3)])
    seen_rows = {tuple(row) for row in seen.astype(np.float32)}
    assert all(tuple(row) in seen_rows for row in sample)


def test_early_stopping_ends_rounds_that_stop_helping(job: Job, new_job: Callable[[], Job]) -> None:
    # Given a champion fit well on 2,000 rows, and new rows from the same source
    job.write_table("train", regression_rows(2000, seed=1))
    job.set_hyperparameters(num_round=300, max_depth=3)
    assert job.run().returncode == 0
    second = chained(job, new_job(), regression_rows(300, seed=3), num_round=50, max_depth=3)

    run = second.run()

    # Then early stopping ended the appended rounds long before the 50 allowed
    assert run.returncode == 0, run.output
    details = second.evaluation()["incremental"]
    assert details["roundsAdded"] < 50
    assert details["earlyStoppedRound"] == details["roundsAdded"]
    assert second.model().num_boosted_rounds() == 300 + details["roundsAdded"]


def test_drift_trains_from_scratch_on_the_new_rows_and_restarts_the_sample(
    job: Job, new_job: Callable[[], Job]
) -> None:
    # Given a champion, then new rows whose label relationship is reversed
    job.set_hyperparameters(num_round=12, max_depth=3)
    assert job.run().returncode == 0
    reversed_rows = regression_rows(300, seed=3)
    reversed_rows[:, 0] *= -1
    second = chained(job, new_job(), reversed_rows, num_round=5, full_num_round=20)

    run = second.run()

    # Then the job saw the champion fail on the new rows and learnt them from scratch
    assert run.returncode == 0, run.output
    evaluation = second.evaluation()
    assert evaluation["drift"]["detected"] is True
    assert evaluation["drift"]["championNew"] > 2 * evaluation["drift"]["championReference"]
    assert evaluation["drift"]["rows"] == 300  # within DRIFT_CHECK_ROWS: every new row
    assert evaluation["mode"] == "full"
    assert evaluation["modeFallback"].startswith("drift: the champion scores")
    assert second.model().num_boosted_rounds() == 20
    # And the next sample holds the new relationship only, a lineage grown on its rows
    assert evaluation["replaySample"] == {
        "rows": 300,
        "seenRows": 300,
        "baseRows": 300,
        "columns": 7,
    }


def test_an_unreadable_replay_sample_is_reported_and_the_job_trains_without_it(
    job: Job, new_job: Callable[[], Job]
) -> None:
    job.set_hyperparameters(num_round=12, max_depth=3)
    assert job.run().returncode == 0
    second = chained(job, new_job(), regression_rows(300, seed=3), num_round=5)
    (second.channel("replay") / "output.tar.gz").write_bytes(b"not a tarball")

    run = second.run()

    assert run.returncode == 0, run.output
    details = second.evaluation()["incremental"]
    assert details["replayRows"] == 0
    assert details["replayProblem"].startswith("the replay sample is unreadable")


# --- The blended refresh, in-process -------------------------------------------------------


@pytest.fixture(scope="module")
def refresh(train_module: ModuleType) -> ModuleType:
    import refit_incremental

    return refit_incremental


def matrix(table: np.ndarray) -> xgb.DMatrix:
    return xgb.DMatrix(table[:, 1:], label=table[:, 0])


def test_refreshing_on_the_training_data_itself_changes_nothing(refresh: ModuleType) -> None:
    rows = regression_rows(500, seed=1)
    booster = train_booster(rows, rounds=6, params={"lambda": 0.0})

    refreshed = refresh.refresh_leaves(booster, matrix(rows), "reg:squarederror", 0.0)

    np.testing.assert_allclose(predict(refreshed, rows), predict(booster, rows), atol=1e-4)


def test_a_refreshed_leaf_is_the_newton_step_on_old_and_new_rows_together(
    refresh: ModuleType,
) -> None:
    # Given one tree fit on old rows (eta 1, no regularisation, base score 0): leaf = mean label
    old, new = regression_rows(400, seed=1), regression_rows(300, seed=2)
    params = {"lambda": 0.0, "eta": 1.0, "base_score": 0.0, "max_depth": 2}
    booster = train_booster(old, rounds=1, params=params)

    refreshed = refresh.refresh_leaves(booster, matrix(new), "reg:squarederror", 0.0)

    # Then each leaf holds the mean label of old and new rows in that leaf
    both = np.concatenate([old, new])
    leaves = booster.predict(matrix(both), pred_leaf=True).astype(int).ravel()
    expected = {leaf: both[leaves == leaf, 0].mean() for leaf in np.unique(leaves)}
    got = predict(refreshed, both)
    for leaf, mean in expected.items():
        np.testing.assert_allclose(got[leaves == leaf], mean, rtol=1e-4)
    # And the covers add up: old + new rows per leaf
    tree = json.loads(refreshed.save_raw("json"))["learner"]["gradient_booster"]["model"]
    assert tree["trees"][0]["sum_hessian"][0] == pytest.approx(len(both))


def test_a_forest_per_round_is_not_refreshed_and_its_etas_count_every_tree(
    refresh: ModuleType,
) -> None:
    # A forest's trees share one round's gradient: refreshing them one by one would be wrong.
    booster = train_booster(regression_rows(300, seed=1), rounds=3, params={"num_parallel_tree": 3})

    assert "num_parallel_tree" in refresh.refresh_problem(booster, "reg:squarederror")
    assert len(refresh.tree_etas(booster)) == 9


def test_the_refresh_budget_bounds_rows_times_trees(refresh: ModuleType) -> None:
    rows = regression_rows(1000, seed=1)
    booster = train_booster(rows, rounds=10)

    assert refresh.refresh_sample(rows, booster, 0, seed=1) is rows  # 0: every row
    assert refresh.refresh_sample(rows, booster, 20_000, seed=1) is rows  # within the budget
    sample = refresh.refresh_sample(rows, booster, 2_000, seed=1)  # 10 trees: 200 rows
    assert sample.shape == (200, rows.shape[1])
    assert {tuple(row) for row in sample} <= {tuple(row) for row in rows}
    np.testing.assert_array_equal(sample, refresh.refresh_sample(rows, booster, 2_000, seed=1))


def test_the_tree_arrays_read_from_ubjson_are_the_models_own(refresh: ModuleType) -> None:
    booster = train_booster(regression_rows(500, seed=1), rounds=4)
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]

    read = refresh.ubjson_trees(bytearray(booster.save_raw("ubj")))

    assert len(read) == len(trees) == 4
    for arrays, tree in zip(read, trees, strict=True):
        for name in refresh.TREE_ARRAYS:
            np.testing.assert_allclose(arrays[name], np.asarray(tree[name]), rtol=1e-6)


def test_a_model_layout_the_reader_does_not_know_is_refused(refresh: ModuleType) -> None:
    model = bytearray(train_booster(regression_rows(200, seed=1), rounds=2).save_raw("ubj"))
    with pytest.raises(refresh.ModelFormatError):
        refresh.ubjson_trees(model + b"}")  # bytes after the document
    with pytest.raises(refresh.ModelFormatError):
        refresh.ubjson_trees(bytearray(model.replace(b"split_conditions", b"split_thresholds")))


def test_the_drift_check_scores_a_seeded_sample_of_a_large_batch(refresh: ModuleType) -> None:
    rows = regression_rows(refresh.DRIFT_CHECK_ROWS + 500, seed=1)

    sample = refresh.uniform_sample(rows, refresh.DRIFT_CHECK_ROWS, seed=7)

    assert sample.shape == (refresh.DRIFT_CHECK_ROWS, rows.shape[1])
    assert len({tuple(row) for row in sample}) == len(sample)  # drawn without replacement
    np.testing.assert_array_equal(sample, refresh.uniform_sample(rows, len(sample), seed=7))
    small = rows[:50]
    assert refresh.uniform_sample(small, refresh.DRIFT_CHECK_ROWS, seed=7) is small


def test_a_weighted_sample_refreshes_as_the_rows_it_stands_for(refresh: ModuleType) -> None:
    # Each row of a sample weighted 2 counts as two rows: the same leaves as reading them twice.
    old, new = regression_rows(400, seed=1), regression_rows(300, seed=2)
    booster = train_booster(old, rounds=5)

    weighted = refresh.refresh_leaves(booster, matrix(new), "reg:squarederror", 1.0, row_weight=2)
    doubled = refresh.refresh_leaves(
        booster, matrix(np.concatenate([new, new])), "reg:squarederror", 1.0
    )

    np.testing.assert_allclose(predict(weighted, old), predict(doubled, old), rtol=1e-5)


def test_the_etas_of_every_tree_travel_with_the_model(refresh: ModuleType) -> None:
    booster = train_booster(regression_rows(200, seed=1), rounds=4, params={"eta": 0.3})
    refresh.record_tree_etas(booster, np.array([0.3] * 3 + [0.1]))
    reloaded = xgb.Booster()
    reloaded.load_model(booster.save_raw("ubj"))

    assert refresh.tree_etas(reloaded).tolist() == [0.3, 0.3, 0.3, 0.1]
    unrecorded = train_booster(regression_rows(200, seed=1), rounds=2, params={"eta": 0.2})
    assert refresh.tree_etas(unrecorded).tolist() == pytest.approx([0.2, 0.2])


def test_rmse_of_a_refreshed_chain_improves(job: Job, new_job: Callable[[], Job]) -> None:
    """Three deliveries from one source: each challenger beats its champion on the holdout."""
    job.write_table("train", regression_rows(600, seed=1))
    job.set_hyperparameters(num_round=30, max_depth=3)
    assert job.run().returncode == 0
    scores = [job.evaluation()["challenger"]]
    previous = job
    for seed in (3, 4, 5):
        follow_up = chained(previous, new_job(), regression_rows(600, seed=seed), num_round=30)
        assert follow_up.run().returncode == 0
        evaluation = follow_up.evaluation()
        assert evaluation["champion"] == pytest.approx(scores[-1])
        scores.append(evaluation["challenger"])
        previous = follow_up
    assert all(later < earlier for earlier, later in itertools.pairwise(scores)), scores
    test = regression_rows(200, seed=2)
    assert scores[-1] == pytest.approx(rmse(predict(previous.model(), test), test[:, 0]))
