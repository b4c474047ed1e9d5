"""training/train.py end to end: each test runs the script as SageMaker does, in a subprocess."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import numpy as np
import pytest
import xgboost as xgb

from tests.training.training_harness import (
    FEATURES,
    Job,
    Table,
    binary_rows,
    csv_text,
    logged_metric,
    multiclass_rows,
    predict,
    regression_rows,
    rmse,
    split_structure,
    train_booster,
)

pytestmark = pytest.mark.slow

EVALUATION_FIELDS = {
    "metric",
    "challenger",
    "champion",
    "testRows",
    "trainRows",
    "mode",
    "championRounds",
    "challengerRounds",
    "resumedFromRound",
    "features",
    "retainedChallenger",
    "retainedChampion",
    "retainedTestRows",
    "objective",
    "modeFallback",
    "championProblem",
    "incremental",
    "drift",
    "replaySample",
}


def test_full_training_writes_the_model_and_an_evaluation_that_beats_the_mean(job: Job) -> None:
    run = job.run()

    assert run.returncode == 0, run.output
    evaluation = job.evaluation()
    assert set(evaluation) == EVALUATION_FIELDS
    assert evaluation | {"challenger": None} == {
        "metric": "rmse",
        "challenger": None,
        "champion": None,
        "testRows": 200,
        "trainRows": 400,
        "mode": "full",
        "championRounds": None,
        "challengerRounds": 12,
        "resumedFromRound": 0,
        "features": FEATURES,
        "retainedChallenger": None,
        "retainedChampion": None,
        "retainedTestRows": None,
        "objective": "reg:squarederror",
        "modeFallback": None,
        "championProblem": None,
        "incremental": None,
        "drift": None,
        # Every job writes the replay sample of what it trained on for the next one.
        "replaySample": {"rows": 400, "seenRows": 400, "baseRows": 400, "columns": FEATURES + 1},
    }
    test = regression_rows(200, seed=2)
    assert evaluation["challenger"] < 0.5 * float(np.std(test[:, 0]))  # the mean scores the std
    assert evaluation["challenger"] == pytest.approx(rmse(predict(job.model(), test), test[:, 0]))
    assert logged_metric(run.output, "test-rmse") == pytest.approx(evaluation["challenger"])
    assert "champion-test-rmse" not in run.output
    assert job.model_file.read_bytes()[:1] == b"{"  # UBJSON, as xgboost 3 writes it
    assert not job.failure()


def test_incremental_training_continues_the_previous_jobs_model(
    job: Job, new_job: Callable[[], Job]
) -> None:
    assert job.run().returncode == 0
    champion = job.model()
    follow_up = new_job()
    follow_up.write_table("train", regression_rows(300, seed=3))
    follow_up.write_table("test", regression_rows(200, seed=2))
    follow_up.add_champion_archive(job.model_archive())
    follow_up.set_hyperparameters(num_round=5, max_depth=3, refit_mode="incremental")

    run = follow_up.run()

    assert run.returncode == 0, run.output
    challenger = follow_up.model()
    evaluation = follow_up.evaluation()
    details = evaluation["incremental"]
    added = details["roundsAdded"]
    assert 0 <= added <= 5 and challenger.num_boosted_rounds() == 12 + added
    # The champion's trees are kept (same splits); only their leaves were refreshed.
    assert split_structure(challenger)[:12] == split_structure(champion)
    assert details | {"roundsAdded": None, "earlyStoppedRound": None} == details | {
        "newRows": 300,
        "replayRows": 0,  # no replay channel: the new rows alone
        "replaySeenRows": None,
        "replayProblem": None,
        "leafRefresh": "blended",
        "leafRefreshSkipped": None,
        "leafRefreshRows": 270,  # every fit row: 12 trees x 270 rows is within the budget
        "eta": 0.1,
        "maxRounds": 5,
        "roundsAdded": None,
        "earlyStoppedRound": None,
    }
    test = regression_rows(200, seed=2)
    assert evaluation["mode"] == "incremental"
    assert (evaluation["championRounds"], evaluation["challengerRounds"]) == (12, 12 + added)
    assert evaluation["champion"] == pytest.approx(rmse(predict(champion, test), test[:, 0]))
    assert evaluation["challenger"] == pytest.approx(rmse(predict(challenger, test), test[:, 0]))
    assert logged_metric(run.output, "champion-test-rmse") == pytest.approx(evaluation["champion"])


def test_with_a_champion_and_no_refit_mode_training_is_incremental(job: Job) -> None:
    job.add_champion(train_booster(regression_rows(200, seed=5), rounds=3))

    run = job.run()

    assert run.returncode == 0, run.output
    assert job.evaluation()["mode"] == "incremental"
    assert job.model().num_boosted_rounds() == 3 + 12


def test_full_mode_trains_from_scratch_and_still_scores_the_champion(job: Job) -> None:
    champion = train_booster(regression_rows(200, seed=5), rounds=3)
    job.add_champion(champion)
    job.set_hyperparameters(num_round=7, refit_mode="full")

    run = job.run()

    assert run.returncode == 0, run.output
    evaluation = job.evaluation()
    test = regression_rows(200, seed=2)
    assert (evaluation["mode"], evaluation["challengerRounds"]) == ("full", 7)
    assert evaluation["championRounds"] == 3
    assert evaluation["champion"] == pytest.approx(rmse(predict(champion, test), test[:, 0]))


def test_binary_classification_scores_auc(new_job: Callable[[], Job]) -> None:
    job = new_job()
    job.write_table("train", binary_rows(600, seed=11))
    job.write_table("test", binary_rows(300, seed=12))
    job.set_hyperparameters(
        num_round=15, max_depth=3, objective="binary:logistic", eval_metric="auc"
    )

    run = job.run()

    assert run.returncode == 0, run.output
    assert job.evaluation()["metric"] == "auc"
    assert job.evaluation()["challenger"] > 0.9


def test_multiclass_without_num_class_takes_it_from_labels_then_the_champion(
    new_job: Callable[[], Job],
) -> None:
    # Given a multiclass stack that passes no num_class (the template has no such parameter)
    first = new_job()
    first.write_table("train", multiclass_rows(300, seed=21))
    first.write_table("test", multiclass_rows(150, seed=22))
    first.set_hyperparameters(num_round=5, objective="multi:softprob", eval_metric="mlogloss")
    # When it trains from scratch, then incrementally from that model
    assert first.run().returncode == 0
    second = new_job()
    second.write_table("train", multiclass_rows(200, seed=23))
    second.write_table("test", multiclass_rows(150, seed=22))
    second.add_champion(first.model())
    second.set_hyperparameters(num_round=5, objective="multi:softprob", eval_metric="mlogloss")
    run = second.run()
    # Then both runs know the 3 classes and the warm start scores both models
    assert run.returncode == 0, run.output
    assert predict(second.model(), multiclass_rows(5, seed=24)).shape == (5, 3)
    assert second.evaluation()["champion"] is not None


@pytest.mark.parametrize(
    ("objective_params", "rows", "predicted_class"),
    [
        ({"objective": "binary:logistic"}, binary_rows, lambda predictions: predictions > 0.5),
        # multi:softmax predicts class indices: the script must score margins, not predictions.
        ({"objective": "multi:softmax", "num_class": 3}, multiclass_rows, lambda p: p),
    ],
    ids=["binary", "multiclass"],
)
def test_accuracy_is_the_share_of_right_classes(
    new_job: Callable[[], Job],
    objective_params: dict[str, object],
    rows: Callable[[int, int], Table],
    predicted_class: Callable[[np.ndarray], np.ndarray],
) -> None:
    job = new_job()
    job.write_table("train", rows(600, 11))
    test = rows(300, 12)
    job.write_table("test", test)
    job.set_hyperparameters(num_round=15, max_depth=3, eval_metric="accuracy", **objective_params)

    run = job.run()

    assert run.returncode == 0, run.output
    accuracy = job.evaluation()["challenger"]
    assert accuracy > 0.7
    assert accuracy == pytest.approx(
        np.mean(predicted_class(predict(job.model(), test)) == test[:, 0])
    )


def test_hyperparameters_from_sm_hps_win_and_sagemaker_keys_are_ignored(job: Job) -> None:
    hps = {"num_round": 3, "eta": 0.5, "sagemaker_program": "train.py", "sagemaker_region": "x"}

    run = job.run(SM_HPS=json.dumps(hps))

    assert run.returncode == 0, run.output
    assert job.evaluation()["challengerRounds"] == 3
    assert "not used" not in run.output  # xgboost warns about parameters it does not know


def test_json_encoded_hyperparameters_from_the_sdk_are_decoded(job: Job) -> None:
    # The SageMaker Python SDK's XGBoost estimator writes every value as JSON
    job.set_hyperparameters(
        num_round=json.dumps(4), objective=json.dumps("reg:squarederror"), eta=json.dumps(0.3)
    )

    run = job.run()

    assert run.returncode == 0, run.output
    assert job.evaluation()["challengerRounds"] == 4
    assert job.evaluation()["objective"] == "reg:squarederror"


def test_messy_but_valid_files_are_read(job: Job) -> None:
    """CRLF, blank lines, empty feature fields, nested files; _ and . files are skipped."""
    table = regression_rows(50, seed=7)
    lines = csv_text(table).splitlines()
    fields = lines[3].split(",")
    lines[3] = ",".join([*fields[:2], "", *fields[3:]])  # a missing feature
    lines[10:10] = ["", "  "]
    job.write_text("train", "2026/11/messy.csv", "\r\n".join(lines))
    job.write_text("train", "_SUCCESS", "")
    job.write_text("train", ".part.csv.crc", "not,csv")
    job.write_text("train", "_manifest/notes.txt", "not csv either")

    run = job.run()

    assert run.returncode == 0, run.output
    assert job.evaluation()["trainRows"] == 400 + 50


def test_early_stopping_on_validation_keeps_the_best_rounds(job: Job) -> None:
    noise = regression_rows(100, seed=9)
    noise[:, 0] = np.random.default_rng(9).permutation(noise[:, 0])  # nothing to learn
    job.write_table("validation", noise)
    job.set_hyperparameters(num_round=200, eta=0.3, early_stopping_rounds=3)

    run = job.run()

    assert run.returncode == 0, run.output
    assert job.evaluation()["challengerRounds"] < 200
    assert "validation-rmse" in run.output


def test_killed_incremental_job_resumes_from_its_checkpoint_without_a_second_warm_start(
    job: Job, new_job: Callable[[], Job]
) -> None:
    champion = train_booster(regression_rows(200, seed=5), rounds=8)
    # Patience beyond the rounds: early stopping cannot change how many rounds are kept.
    hyperparameters = {
        "num_round": 40,
        "refit_mode": "incremental",
        "checkpoint_interval": 5,
        "early_stopping_rounds": 100,
    }
    uninterrupted = new_job()
    uninterrupted.write_table("train", regression_rows(400, seed=1))
    uninterrupted.write_table("test", regression_rows(200, seed=2))
    uninterrupted.add_champion(champion)
    uninterrupted.set_hyperparameters(**hyperparameters)
    assert uninterrupted.run().returncode == 0
    job.add_champion(champion)
    job.set_hyperparameters(**hyperparameters)
    first = job.start(REFIT_TEST_ROUND_DELAY="0.05")
    job.wait_for_checkpoint(first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    interrupted_at = job.checkpoints()[-1]
    assert 8 < interrupted_at < 8 + 40

    run = job.run()

    assert run.returncode == 0, run.output
    assert job.evaluation()["resumedFromRound"] == interrupted_at
    assert (interrupted_at - 8) % 5 == 0  # every 5 rounds of this job
    assert f"resuming from checkpoint round {interrupted_at}" in run.output
    challenger = job.model()
    assert challenger.num_boosted_rounds() == 8 + 40
    # The champion's trees were refreshed once, as in a job nobody interrupted.
    test = regression_rows(200, seed=2)
    np.testing.assert_array_equal(
        predict(challenger, test, iteration_range=(0, 8)),
        predict(uninterrupted.model(), test, iteration_range=(0, 8)),
    )
    assert len(job.checkpoints()) <= 3


def test_sigterm_stops_promptly_with_a_checkpoint_and_a_nonzero_exit(job: Job) -> None:
    job.set_hyperparameters(num_round=400, checkpoint_interval=50)
    process = job.start(REFIT_TEST_ROUND_DELAY="0.05")
    deadline = time.monotonic() + 30
    while "[2]" not in job.log_file.read_text():  # training has started
        assert process.poll() is None and time.monotonic() < deadline, job.log_file.read_text()
        time.sleep(0.02)

    stopped_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    returncode = process.wait(timeout=10)

    assert returncode == 128 + signal.SIGTERM
    assert time.monotonic() - stopped_at < 3
    assert "SIGTERM" in job.log_file.read_text()
    assert job.checkpoints() and job.checkpoints()[-1] < 50  # saved on the way out
    assert not job.model_file.exists()


# The data contract's own messages (training/refit_data.py), as PrepareRun gives them too.
BAD_FILES = {
    "header row": ("label,a,b,c,d,e,f\n1,2,3,4,5,6,7\n", "line 1 looks like a header row"),
    "ragged row": (
        "1,2,3,4,5,6,7\n1,2,3,4,5,6,7\n1,2,3\n",
        "line 3 has 3 columns, expected 7 (as in train/part-0.csv)",
    ),
    "non-numeric": ("1,2,3,4,5,6,7\n1,2,3,abc,5,6,7\n", "line 2, column 4: 'abc' is not a number"),
    "empty file": ("", "no data rows"),
    "blank lines only": ("\n\r\n\n", "no data rows"),
    "nan label": (
        "1,2,3,4,5,6,7\r\n\r\nnan,2,3,4,5,6,7\r\n",
        "line 3, column 1 (the label) is 'nan'",
    ),
    "empty label": ("1,2,3,4,5,6,7\n,2,3,4,5,6,7\n", "line 2, column 1 (the label) is empty"),
    "infinite feature": ("1,2,3,4,5,6,7\n1,2,inf,4,5,6,7\n", "line 2, column 3 is infinite"),
    "beyond float32": ("1,2,3,4,5,6,7\n1,2,1e39,4,5,6,7\n", "1e39 is beyond float32's range"),
    "label only": ("1\n2\n", "line 1 has 1 column"),
}


@pytest.mark.parametrize(("content", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_training_data_fails_with_a_message_naming_file_and_line(
    job: Job, content: str, message: str
) -> None:
    job.write_text("train", "2026/bad.csv", content)

    run = job.run()

    assert run.returncode == 1, run.output
    assert job.failure().startswith("train/2026/bad.csv: ")  # the file first (refit finds it)
    assert message in job.failure()
    assert not job.model_file.exists()


def test_a_champion_with_another_feature_count_is_neither_continued_nor_scored(job: Job) -> None:
    """Given a champion of 5 features and data of 6, when an incremental job runs, then it trains
    from scratch with the full round count and says why; the champion cannot be scored."""
    job.add_champion(train_booster(regression_rows(100, seed=5, features=FEATURES - 1), rounds=2))
    job.set_hyperparameters(num_round=3, full_num_round=9, refit_mode="incremental")

    run = job.run()

    assert run.returncode == 0, run.output
    evaluation = job.evaluation()
    assert (evaluation["mode"], evaluation["challengerRounds"]) == ("full", 9)
    assert evaluation["modeFallback"] == (
        f"no warm start: the champion has {FEATURES - 1} features, the data has {FEATURES}"
    )
    assert evaluation["champion"] is None
    assert "cannot be scored" in evaluation["championProblem"]


def test_an_unreadable_champion_means_a_full_retrain_not_a_failed_job(job: Job) -> None:
    job.add_champion_archive(b"not a tarball")
    job.set_hyperparameters(num_round=3, full_num_round=6, refit_mode="incremental")

    run = job.run()

    assert run.returncode == 0, run.output
    evaluation = job.evaluation()
    assert (evaluation["mode"], evaluation["challengerRounds"]) == ("full", 6)
    assert (
        "the champion's model.tar.gz (channel model) is unreadable" in (evaluation["modeFallback"])
    )
    assert evaluation["champion"] is None
    assert "is unreadable" in evaluation["championProblem"]


def test_a_champion_with_another_objective_is_scored_but_not_continued(job: Job) -> None:
    champion = train_booster(
        regression_rows(200, seed=5), rounds=2, params={"objective": "reg:absoluteerror"}
    )
    job.add_champion(champion)
    job.set_hyperparameters(num_round=3, full_num_round=8, refit_mode="incremental")

    run = job.run()

    assert run.returncode == 0, run.output
    evaluation = job.evaluation()
    assert (evaluation["mode"], evaluation["challengerRounds"]) == ("full", 8)
    assert (
        "trained with objective reg:absoluteerror, this job asks for reg:squarederror"
        in (evaluation["modeFallback"])
    )
    test = regression_rows(200, seed=2)
    assert evaluation["champion"] == pytest.approx(rmse(predict(champion, test), test[:, 0]))
    assert evaluation["championProblem"] is None


def shifted_rows(rows: int, seed: int) -> Table:
    """The same features as regression_rows, but the relationship has changed (concept drift)."""
    table = regression_rows(rows, seed)
    table[:, 0] = -table[:, 0] + 3.0
    return table


def test_a_challenger_that_forgets_the_old_data_scores_worse_on_the_retained_set(
    job: Job, new_job: Callable[[], Job]
) -> None:
    """Given a champion trained on the old relationship, when the challenger continues it on
    shifted data only, then it wins on the fresh (shifted) test set and loses on the retained
    (old) one; evaluation.json and the log carry both."""
    assert job.run().returncode == 0
    follow_up = new_job()
    follow_up.write_table("train", shifted_rows(400, seed=3))
    follow_up.write_table("test", shifted_rows(200, seed=4))
    follow_up.write_table("test_retained", regression_rows(150, seed=2))
    follow_up.add_champion_archive(job.model_archive())
    follow_up.set_hyperparameters(num_round=10, max_depth=3, refit_mode="incremental")

    run = follow_up.run()

    assert run.returncode == 0, run.output
    evaluation = follow_up.evaluation()
    assert evaluation["mode"] == "incremental"
    assert evaluation["challenger"] < evaluation["champion"]  # better on new data
    assert evaluation["retainedChallenger"] > evaluation["retainedChampion"]  # forgot the old
    assert evaluation["retainedTestRows"] == 150
    old = regression_rows(150, seed=2)
    assert evaluation["retainedChallenger"] == pytest.approx(
        rmse(predict(follow_up.model(), old), old[:, 0])
    )
    assert evaluation["retainedChampion"] == pytest.approx(
        rmse(predict(job.model(), old), old[:, 0])
    )
    assert logged_metric(run.output, "retained-test-rmse") == pytest.approx(
        evaluation["retainedChallenger"]
    )
    assert logged_metric(run.output, "champion-retained-test-rmse") == pytest.approx(
        evaluation["retainedChampion"]
    )
    assert logged_metric(run.output, "test-rmse") == pytest.approx(evaluation["challenger"])


def test_retained_test_data_must_have_the_training_columns(job: Job) -> None:
    job.write_table("test_retained", regression_rows(20, seed=2, features=FEATURES + 1))

    run = job.run()

    assert run.returncode == 1, run.output
    expected = "line 1 has 8 columns, expected 7 (as in train/part-0.csv)"
    assert f"test_retained/part-0.csv: {expected}" in job.failure()


def test_columns_must_match_between_channels(job: Job) -> None:
    job.write_table("test", regression_rows(20, seed=2, features=FEATURES + 1), name="wide.csv")

    run = job.run()

    assert run.returncode == 1, run.output
    assert "test/wide.csv: line 1 has 8 columns, expected 7 (as in train/part-0.csv)" in (
        job.failure()
    )


def without_num_round(job: Job) -> None:
    job.set_hyperparameters(max_depth=3)


def with_an_unknown_metric(job: Job) -> None:
    job.set_hyperparameters(num_round=3, eval_metric="r2")


def with_a_multiclass_metric_for_regression(job: Job) -> None:
    job.set_hyperparameters(num_round=3, eval_metric="mlogloss")


def incremental_without_champion(job: Job) -> None:
    job.set_hyperparameters(num_round=3, refit_mode="incremental")


def without_test_data(job: Job) -> None:
    (job.channel("test") / "part-0.csv").unlink()


BAD_SETUPS = {
    "no num_round": (without_num_round, "hyperparameter num_round is required"),
    "unknown metric": (with_an_unknown_metric, "eval_metric 'r2' is not supported"),
    "metric vs objective": (
        with_a_multiclass_metric_for_regression,
        "eval_metric mlogloss needs a multi:softmax or multi:softprob objective",
    ),
    "incremental without champion": (
        incremental_without_champion,
        "refit_mode=incremental needs a champion",
    ),
    "no test data": (without_test_data, "channel test has no data files"),
}


@pytest.mark.parametrize(("setup", "message"), BAD_SETUPS.values(), ids=BAD_SETUPS.keys())
def test_bad_job_setup_fails_clearly(job: Job, setup: Callable[[Job], None], message: str) -> None:
    setup(job)

    run = job.run()

    assert run.returncode == 1, run.output
    assert message in job.failure()


def test_a_complete_checkpoint_is_the_model(job: Job) -> None:
    """A job restarted after its last checkpoint boosts nothing more, and says so."""
    assert job.run().returncode == 0
    first_model = job.model_file.read_bytes()

    run = job.run()

    assert run.returncode == 0, run.output
    assert job.evaluation()["resumedFromRound"] == 12
    assert job.model_file.read_bytes() == first_model
    assert xgb.Booster(model_file=str(job.model_file)).num_boosted_rounds() == 12
