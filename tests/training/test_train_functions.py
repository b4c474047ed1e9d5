"""train.py and its modules in-process: the shared names, the layout, parsing and the metrics."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import refit_checkpoints
import refit_errors
import refit_hyperparameters
import refit_scoring
import xgboost as xgb

from refit import layout, metrics
from tests.training.training_harness import (
    Table,
    binary_rows,
    multiclass_rows,
    regression_rows,
    train_booster,
)


def test_shared_names_match_layout(train_module: ModuleType) -> None:
    for name in (
        "CHANNEL_TRAIN",
        "CHANNEL_VALIDATION",
        "CHANNEL_TEST",
        "CHANNEL_MODEL",
        "MODEL_FILE",
        "EVALUATION_FILE",
    ):
        assert getattr(train_module, name) == getattr(layout, name), name
    assert train_module.data.IGNORED_NAME_PREFIXES == layout.IGNORED_NAME_PREFIXES
    # The Lambdas without the training code apply the contract's path rule through layout
    for path in ("a.csv", "_SUCCESS", "x/_temporary/a.csv", ".hidden/a.csv", "a/../b.csv", "a_b"):
        assert layout.is_ignored(path) == train_module.data.is_ignored(path), path


def test_without_environment_the_paths_are_sagemakers(train_module: ModuleType) -> None:
    paths = train_module.job_paths({})

    assert paths.train == Path("/opt/ml/input/data/train")
    assert paths.champion == Path("/opt/ml/input/data/model")
    assert paths.model_dir == Path("/opt/ml/model")
    assert paths.output_data_dir == Path("/opt/ml/output/data")
    assert paths.checkpoint_dir == Path(layout.CHECKPOINT_LOCAL_PATH)
    assert train_module.failure_file({}) == Path("/opt/ml/output/failure")


def test_environment_overrides_the_paths(train_module: ModuleType, tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "checkpointconfig.json").write_text('{"LocalPath": "/from/config"}')
    env = {"SM_ROOT": str(tmp_path), "SM_CHANNEL_TRAIN": "/data/train", "SM_MODEL_DIR": "/m"}

    paths = train_module.job_paths(env)

    assert paths.train == Path("/data/train")
    assert paths.test == tmp_path / "input" / "data" / "test"
    assert paths.model_dir == Path("/m")
    assert paths.checkpoint_dir == Path("/from/config")
    assert train_module.job_paths({**env, "SM_CHECKPOINT_DIR": "/c"}).checkpoint_dir == Path("/c")
    assert train_module.failure_file({"SM_ROOT": "/r"}) == Path("/r/output/failure")
    assert train_module.failure_file({"SM_OUTPUT_FAILURE": "/f"}) == Path("/f")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10", 10), (" 0.1 ", 0.1), ("hist", "hist"), (True, 1), (3, 3), ("1e-3", 0.001)],
)
def test_hyperparameter_strings_become_numbers(value: object, expected: object) -> None:
    assert refit_hyperparameters.coerce(value) == expected


def test_xgboost_gets_every_other_hyperparameter() -> None:
    config = refit_hyperparameters.training_config(
        {
            "num_round": "50",
            "eval_metric": "accuracy",
            "objective": "binary:logistic",
            "max_depth": "4",
            "refit_mode": "full",
            "sagemaker_program": "train.py",
        }
    )

    assert (config.num_round, config.requested_mode, config.checkpoint_interval) == (50, "full", 10)
    assert config.booster_params == {
        "max_depth": 4,
        "objective": "binary:logistic",
        "eval_metric": "error",  # accuracy is 1 - error
    }


def test_auc_matches_counting_pairs_with_ties() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300).astype(float)
    scores = np.round(rng.normal(size=300) + labels, 1)  # rounding makes ties
    positives, negatives = scores[labels == 1], scores[labels == 0]
    pairs = list(itertools.product(positives, negatives))
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)

    assert refit_scoring.metric_value("auc", labels, scores) == pytest.approx(expected)


def test_average_precision_of_a_small_ranking() -> None:
    labels = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    # positives found at ranks 1, 3, 5: mean of precisions 1/1, 2/3, 3/5
    expected = (1 + 2 / 3 + 3 / 5) / 3

    assert refit_scoring.metric_value("aucpr", labels, scores) == pytest.approx(expected)


def test_classification_metrics() -> None:
    labels = np.array([0.0, 1.0, 2.0, 1.0])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]])
    binary_labels = np.array([0.0, 1.0, 1.0, 0.0])
    binary = np.array([0.2, 0.9, 0.4, 0.6])

    assert refit_scoring.metric_value("merror", labels, probabilities) == 0.25
    assert refit_scoring.metric_value("accuracy", labels, probabilities) == 0.75
    assert refit_scoring.metric_value("mlogloss", labels, probabilities) == pytest.approx(
        -np.mean(np.log([0.7, 0.8, 0.2, 0.5]))
    )
    assert refit_scoring.metric_value("error", binary_labels, binary) == 0.5
    assert refit_scoring.metric_value("logloss", binary_labels, binary) == pytest.approx(
        -np.mean(np.log([0.8, 0.9, 0.4, 0.4]))
    )


def test_auc_needs_both_classes() -> None:
    with pytest.raises(refit_errors.TrainingError, match="needs both classes"):
        refit_scoring.metric_value("auc", np.ones(4), np.linspace(0, 1, 4))


def test_checkpoints_keep_the_newest_three_and_skip_a_torn_one(tmp_path: Path) -> None:
    checkpoints = refit_checkpoints.Checkpoints(tmp_path)
    booster = train_booster(regression_rows(50, seed=1), rounds=1)
    for _ in range(4):
        checkpoints.save(booster)
        booster = train_booster(regression_rows(50, seed=1), rounds=1, start=booster)
    (tmp_path / "xgboost-checkpoint.9.ubj").write_bytes(b"torn")

    assert [rounds for rounds, _ in checkpoints.saved()] == [9, 4, 3, 2]
    rounds, newest = checkpoints.newest()
    assert rounds == newest.num_boosted_rounds() == 4
    assert not list(tmp_path.glob(".*"))  # no partial files left behind


@pytest.mark.parametrize(
    ("objective", "metric", "rows"),
    [
        ("reg:squarederror", "rmse", regression_rows),
        ("binary:logistic", "logloss", binary_rows),
        ("multi:softprob", "mlogloss", multiclass_rows),
    ],
)
def test_the_boosted_validation_score_reads_the_champions_trees_once(
    train_module: ModuleType, objective: str, metric: str, rows: Callable[[int, int], Table]
) -> None:
    params = {"objective": objective, **({"num_class": 3} if objective.startswith("multi") else {})}
    champion = train_booster(rows(300, 1), 8, params)
    boosted = train_booster(rows(300, 2), 5, params, start=champion)
    validation_rows = rows(200, 3)
    validation = xgb.DMatrix(validation_rows[:, 1:], label=validation_rows[:, 0])
    config = refit_hyperparameters.training_config(
        {"num_round": "5", "eval_metric": metric, "objective": objective}
    )

    scores = train_module.validation_scores(champion, boosted, 8, validation, config)
    fresh = xgb.DMatrix(validation_rows[:, 1:], label=validation_rows[:, 0])

    assert scores["refreshedValidation"] == refit_scoring.score(champion, fresh, config)
    assert scores["boostedValidation"] == pytest.approx(
        refit_scoring.score(boosted, fresh, config), rel=1e-6
    )
    assert scores["boostedValidation"] != pytest.approx(scores["refreshedValidation"], rel=1e-6)
    # Nothing appended: the boosted model is the refreshed one.
    same = train_module.validation_scores(champion, champion, 8, validation, config)
    assert same["boostedValidation"] == same["refreshedValidation"]


def test_the_job_knows_the_metrics_the_gate_knows() -> None:
    # train.py runs in the SageMaker image without the refit package: refit_hyperparameters'
    # table is a copy of refit.metrics', tied here (and the template's AllowedValues to
    # refit.metrics, statically)
    assert set(metrics.SUPPORTED_METRICS) == refit_hyperparameters.SUPPORTED_METRICS
    assert {
        name for name, higher in metrics.HIGHER_IS_BETTER.items() if higher
    } == refit_hyperparameters.HIGHER_IS_BETTER


def test_the_replay_sample_does_not_depend_on_the_order_rows_arrive_in() -> None:
    # Given the same rows in two orders (the channel's files sort by names holding run ids)
    import refit_incremental

    rows = regression_rows(300, seed=4).astype(np.float32)
    shuffled = rows[np.random.default_rng(1).permutation(len(rows))]
    # When each becomes a replay sample that keeps them all
    samples = [
        refit_incremental.updated_replay(None, table, capacity=1000, seed=len(table)).rows
        for table in (rows, shuffled)
    ]
    # Then the samples are identical, row for row: the next job's seeded split sees the same
    np.testing.assert_array_equal(samples[0], samples[1])
