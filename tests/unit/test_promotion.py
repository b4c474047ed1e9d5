from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto_stack import BUCKET, REGION
from state_builders import (
    evaluation_json,
    model_data_url,
    put_job_output,
    run_plan,
    training_result,
)

from refit import layout, promotion
from refit.promotion import (
    MAX_EVALUATION_BYTES,
    Evaluation,
    EvaluationUnavailable,
    decide,
    evaluate,
    load_evaluation,
    output_archive_url,
    read_evaluation,
)


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """One moto bucket for the module: these tests only read, each under its own job name."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


def _evaluation(**overrides: object) -> Evaluation:
    return Evaluation.parse(evaluation_json(**overrides), "test")


# --- reading evaluation.json --------------------------------------------------------------------
def test_evaluation_is_read_from_the_output_archive_beside_the_model(s3: Any) -> None:
    # Given a job output whose archive holds other files before "./evaluation.json"
    url = put_job_output(
        s3,
        "job-a",
        {
            "logs/train.log": b"x" * 10_000,
            f"./{layout.EVALUATION_FILE}": json.dumps(evaluation_json()).encode(),
        },
    )
    # When it is loaded
    evaluation = load_evaluation(s3, url)
    # Then every contract field is typed
    assert evaluation == Evaluation(
        metric="rmse",
        challenger=0.41,
        champion=0.45,
        test_rows=500,
        train_rows=1200,
        mode="incremental",
        champion_rounds=100,
        challenger_rounds=150,
        resumed_from_round=0,
        features=4,
    )


def test_output_archive_url_is_derived_from_the_model_artifact() -> None:
    assert (
        output_archive_url("s3://b/models/job/output/model.tar.gz")
        == "s3://b/models/job/output/output.tar.gz"
    )
    with pytest.raises(EvaluationUnavailable, match="is not s3://"):
        output_archive_url("s3://b/models/job/model.bin")


def test_missing_archive_is_a_clear_error(s3: Any) -> None:
    # Given a job whose output archive was never written
    url = model_data_url("job-gone")
    # When / Then
    with pytest.raises(EvaluationUnavailable, match=r"cannot read .*job-gone/output/output\.tar"):
        load_evaluation(s3, url)


def test_archive_without_evaluation_is_a_clear_error(s3: Any) -> None:
    url = put_job_output(s3, "job-b", {"other.json": b"{}"})
    with pytest.raises(EvaluationUnavailable, match=f"holds no {layout.EVALUATION_FILE}"):
        load_evaluation(s3, url)


def test_nested_evaluation_file_does_not_count(s3: Any) -> None:
    url = put_job_output(
        s3, "job-b2", {f"sub/{layout.EVALUATION_FILE}": json.dumps(evaluation_json()).encode()}
    )
    with pytest.raises(EvaluationUnavailable, match="holds no"):
        load_evaluation(s3, url)


def test_archive_that_is_not_a_tarball_is_a_clear_error(s3: Any) -> None:
    url = put_job_output(s3, "job-c")
    s3.put_object(Bucket=BUCKET, Key="models/job-c/output/output.tar.gz", Body=b"not gzip")
    with pytest.raises(EvaluationUnavailable, match=r"not a readable tar\.gz"):
        load_evaluation(s3, url)


def test_oversized_evaluation_file_is_refused(s3: Any) -> None:
    url = put_job_output(s3, "job-big", {layout.EVALUATION_FILE: b" " * (MAX_EVALUATION_BYTES + 1)})
    with pytest.raises(EvaluationUnavailable, match="more than"):
        load_evaluation(s3, url)


def test_reading_stops_at_the_byte_budget(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an archive whose evaluation.json comes after a large incompressible log
    monkeypatch.setattr(promotion, "MAX_ARCHIVE_READ_BYTES", 64 * 1024)
    url = put_job_output(
        s3,
        "job-long",
        {
            "train.log": os.urandom(256 * 1024),
            layout.EVALUATION_FILE: json.dumps(evaluation_json()).encode(),
        },
    )
    # When / Then reading gives up instead of streaming the whole archive
    with pytest.raises(EvaluationUnavailable, match="in the first 65536 bytes"):
        load_evaluation(s3, url)


def test_broken_evaluation_in_the_archive_is_refused(s3: Any) -> None:
    # Given a job whose evaluation.json was cut short
    url = put_job_output(s3, "job-d", {layout.EVALUATION_FILE: b'{"metric": "rm'})
    # When / Then loading it fails naming the archive and the file
    with pytest.raises(
        EvaluationUnavailable, match=r"output\.tar\.gz!evaluation\.json is not valid"
    ):
        load_evaluation(s3, url)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (
            b'{"metric": "rmse", "challenger": NaN, "champion": 0.4, '
            b'"testRows": 5, "trainRows": 5}',
            "not valid JSON",
        ),
        (json.dumps(evaluation_json(champion=float("inf"))).encode(), "not valid JSON"),
        (json.dumps(evaluation_json(challenger="0.4")).encode(), "'challenger' must be a number"),
        (json.dumps(evaluation_json(champion=True)).encode(), "'champion' must be a number"),
        (json.dumps(evaluation_json(testRows=0)).encode(), "testRows"),
        (json.dumps(evaluation_json(trainRows=-1)).encode(), "trainRows"),
        (json.dumps([1, 2]).encode(), "must be a JSON object"),
        (
            json.dumps({k: v for k, v in evaluation_json().items() if k != "metric"}).encode(),
            "'metric' is missing",
        ),
    ],
)
def test_bad_evaluation_content_is_refused(content: bytes, message: str) -> None:
    # Given an evaluation.json that is broken or scores a diverged model
    # When / Then reading it fails with a message naming the problem
    with pytest.raises(EvaluationUnavailable, match=message):
        read_evaluation(content, "test")


def test_optional_fields_may_be_absent() -> None:
    # Given the minimum contract: no rounds, mode or features
    evaluation = read_evaluation(
        b'{"metric": "auc", "challenger": 0.9, "champion": null, "testRows": 5, "trainRows": 7}',
        "test",
    )
    # Then the optional fields read as None
    assert (evaluation.champion, evaluation.features, evaluation.mode) == (None, None, None)


def test_non_finite_scores_are_refused_even_when_parsed() -> None:
    with pytest.raises(EvaluationUnavailable, match="not a finite number"):
        _evaluation(challenger=float("nan"))


# --- deciding -----------------------------------------------------------------------------------
def test_lower_rmse_beats_the_champion_with_a_readable_reason() -> None:
    # Given a challenger with a lower rmse than the champion
    evaluation = _evaluation(challenger=0.41, champion=0.45)
    # When decided with a minimum gain of 0.01
    decision = decide(evaluation, "rmse", 0.01)
    # Then it is promoted and the reason says why in numbers
    assert decision.verdict == "promote"
    assert decision.reason == "challenger rmse 0.41 beats champion 0.45 by 0.04 (minimum 0.01)"
    assert decision.improvement == pytest.approx(0.04)
    assert decision.higher_is_better is False


@pytest.mark.parametrize(
    ("metric", "challenger", "champion", "verdict"),
    [
        ("rmse", 0.30, 0.40, "promote"),
        ("rmse", 0.40, 0.30, "reject"),
        ("auc", 0.30, 0.40, "reject"),
        ("auc", 0.40, 0.30, "promote"),
    ],
)
def test_direction_follows_the_metric(
    metric: str, challenger: float, champion: float, verdict: str
) -> None:
    # Given the same pair of scores under a lower-is-better and a higher-is-better metric
    evaluation = _evaluation(metric=metric, challenger=challenger, champion=champion)
    # When decided
    decision = decide(evaluation, metric, 0.0)
    # Then the verdict flips with the direction
    assert decision.verdict == verdict
    assert decision.higher_is_better is (metric == "auc")


def test_gain_below_the_minimum_is_rejected() -> None:
    decision = decide(_evaluation(challenger=0.445, champion=0.45), "rmse", 0.01)
    assert decision.verdict == "reject"
    assert decision.reason == (
        "challenger rmse 0.445 beats champion 0.45 by only 0.005 (minimum 0.01)"
    )


def test_gain_equal_to_the_minimum_is_promoted_despite_float_rounding() -> None:
    # Given 0.36 - 0.35, which is 0.00999... in binary floating point
    decision = decide(_evaluation(challenger=0.35, champion=0.36), "rmse", 0.01)
    # Then the gain still meets a 0.01 minimum
    assert decision.verdict == "promote"


def test_equal_scores_are_rejected() -> None:
    decision = decide(_evaluation(challenger=0.45, champion=0.45), "rmse", 0.0)
    assert decision.verdict == "reject"
    assert decision.improvement == 0
    assert "no improvement" in decision.reason


def test_worse_challenger_is_rejected_with_the_direction_named() -> None:
    decision = decide(_evaluation(metric="auc", challenger=0.8, champion=0.85), "auc", 0.0)
    assert decision.verdict == "reject"
    assert decision.reason == (
        "challenger auc 0.8 is worse than champion 0.85 (higher is better; minimum 0)"
    )


def test_no_champion_promotes_the_first_model() -> None:
    decision = decide(_evaluation(champion=None), "rmse", 0.5)
    assert decision.verdict == "promote"
    assert decision.reason == "no champion: first model"
    assert decision.improvement is None


def test_metric_mismatch_is_refused() -> None:
    with pytest.raises(EvaluationUnavailable, match="scored 'rmse' but the run gates on 'auc'"):
        decide(_evaluation(), "auc", 0.0)


def test_decision_dict_follows_the_state_contract() -> None:
    decision = decide(_evaluation(), "rmse", 0.01)
    assert decision.to_dict() == {
        "metric": "rmse",
        "higherIsBetter": False,
        "challenger": 0.41,
        "champion": 0.45,
        "improvement": pytest.approx(0.04),
        "decision": "promote",
        "reason": "challenger rmse 0.41 beats champion 0.45 by 0.04 (minimum 0.01)",
        "testRows": 500,
        "trainRows": 1200,
        "mode": "incremental",
        "features": 4,
        "championRounds": 100,
        "challengerRounds": 150,
        "resumedFromRound": 0,
        "trainedData": None,
    }


# --- the state's view ---------------------------------------------------------------------------
def test_evaluate_reads_the_run_and_training_sections(s3: Any) -> None:
    # Given a run gating on rmse and its job's output
    put_job_output(s3, "job-run-2")
    state = {"run": run_plan("run-2"), "training": training_result("run-2")}
    # When evaluated
    decision = evaluate(s3, state, 0.01)
    # Then the configured metric and minimum apply
    assert decision.verdict == "promote"


def test_evaluate_refuses_an_unscored_champion(s3: Any) -> None:
    # Given a run with a champion but an evaluation that did not score it
    put_job_output(
        s3,
        "job-run-2",
        {layout.EVALUATION_FILE: json.dumps(evaluation_json(champion=None)).encode()},
    )
    state = {"run": run_plan("run-2", champion="job-run-1"), "training": training_result("run-2")}
    # When / Then promoting without the gate is refused
    with pytest.raises(EvaluationUnavailable, match="did not score it"):
        evaluate(s3, state, 0.0)


def test_evaluate_needs_the_run_and_training(s3: Any) -> None:
    with pytest.raises(EvaluationUnavailable, match=r"run\.metric and training\.modelDataUrl"):
        evaluate(s3, {"run": run_plan()}, 0.0)
