from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from refit import layout
from refit.evaluate_models import promotion
from refit.evaluate_models.promotion import (
    MAX_EVALUATION_BYTES,
    Evaluation,
    EvaluationUnavailable,
    decide,
    evaluate,
    load_evaluation,
    output_archive_url,
    read_evaluation,
)
from refit.run_state import RunState
from tests.unit.moto_stack import BUCKET, REGION
from tests.unit.state_builders import (
    evaluation_json,
    model_data_url,
    put_job_output,
    run_plan,
    training_result,
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
        "retainedChallenger": None,
        "retainedChampion": None,
        "retainedImprovement": None,
        "retainedTestRows": None,
        "maxRetainedRegression": None,
        "forced": False,
        "gateDecision": "promote",
        "objective": None,
        "modeFallback": None,
        "championProblem": None,
        "incremental": None,
        "drift": None,
        "replaySample": None,
        "trainedData": None,
    }


# --- the forgetting check -----------------------------------------------------------------------
def test_a_challenger_that_forgets_retained_data_is_rejected_with_both_numbers() -> None:
    # Given a challenger better on new data (0.41 vs 0.45) but worse on retained data (0.6 vs 0.5)
    evaluation = _evaluation(retainedChallenger=0.6, retainedChampion=0.5, retainedTestRows=80)
    # When the gate allows a regression of at most 0.05 on retained data
    decision = decide(evaluation, "rmse", 0.01, max_retained_regression=0.05)
    # Then it is rejected, and the reason says by how much it improved and regressed
    assert decision.verdict == "reject"
    assert decision.reason == (
        "challenger rmse improves new data by 0.04 but regresses retained data by 0.1 > "
        "limit 0.05 (retained: challenger 0.6, champion 0.5)"
    )
    assert decision.retained_improvement == pytest.approx(-0.1)
    assert decision.to_dict()["retainedTestRows"] == 80


def test_a_regression_within_the_limit_is_promoted_and_reported() -> None:
    evaluation = _evaluation(retainedChallenger=0.52, retainedChampion=0.5)
    decision = decide(evaluation, "rmse", 0.0, max_retained_regression=0.02)
    assert decision.verdict == "promote"
    assert decision.reason.endswith("; on retained data worse by 0.02 (limit 0.02)")


@pytest.mark.parametrize(
    ("metric", "retained_challenger", "retained_champion", "verdict"),
    [
        ("auc", 0.80, 0.90, "reject"),  # higher is better: a drop is a regression
        ("auc", 0.95, 0.90, "promote"),
        ("accuracy", 0.70, 0.72, "promote"),  # within the 0.03 limit
        ("mlogloss", 0.9, 0.5, "reject"),  # lower is better: a rise is a regression
        ("error", 0.10, 0.20, "promote"),
    ],
)
def test_the_retained_check_follows_the_metric_direction(
    metric: str, retained_challenger: float, retained_champion: float, verdict: str
) -> None:
    higher = metric in ("auc", "accuracy")
    fresh = {"challenger": 0.9, "champion": 0.8} if higher else {"challenger": 0.3, "champion": 0.4}
    evaluation = _evaluation(
        metric=metric,
        retainedChallenger=retained_challenger,
        retainedChampion=retained_champion,
        **fresh,
    )
    assert decide(evaluation, metric, 0.0, max_retained_regression=0.03).verdict == verdict


def test_a_challenger_rejected_on_new_data_keeps_that_reason() -> None:
    evaluation = _evaluation(challenger=0.5, retainedChallenger=0.1, retainedChampion=0.5)
    decision = decide(evaluation, "rmse", 0.0)
    assert decision.verdict == "reject"
    assert "is worse than champion" in decision.reason
    assert decision.retained_improvement == pytest.approx(0.4)


# --- forced decisions and champions without a score ---------------------------------------------
def test_a_forced_promotion_overrides_the_gate_and_keeps_what_it_said() -> None:
    evaluation = _evaluation(challenger=0.5)
    decision = decide(evaluation, "rmse", 0.0, forced="promote")
    assert (decision.verdict, decision.gate_verdict, decision.forced) == ("promote", "reject", True)
    assert decision.reason.startswith("forced promote by the execution input; the gate said reject")
    assert decision.to_dict()["gateDecision"] == "reject"
    assert decision.to_dict()["forced"] is True


def test_a_forced_rejection_overrides_a_winning_challenger() -> None:
    decision = decide(_evaluation(), "rmse", 0.0, forced="reject")
    assert (decision.verdict, decision.to_dict()["gateDecision"]) == ("reject", "promote")


def test_evaluate_honours_the_plans_forced_decision(s3: Any) -> None:
    put_job_output(s3, "job-run-2")
    state = {
        "run": {**run_plan("run-2"), "forceDecision": "reject"},
        "training": training_result("run-2"),
    }
    decision = evaluate(s3, RunState.parse(state), 0.0)
    assert (decision.verdict, decision.forced) == ("reject", True)


def test_a_forced_promotion_still_needs_a_readable_evaluation(s3: Any) -> None:
    state = {
        "run": {**run_plan("run-9"), "forceDecision": "promote"},
        "training": training_result("run-9"),
    }
    with pytest.raises(EvaluationUnavailable, match="cannot read"):
        evaluate(s3, RunState.parse(state), 0.0)


def test_a_champion_the_job_could_not_score_is_replaced_and_the_reason_says_why(s3: Any) -> None:
    # Given a job that trained from scratch because the champion was unreadable
    problem = "the champion's model.tar.gz (channel model) is unreadable: bad"
    put_job_output(
        s3,
        "job-run-3",
        {
            layout.EVALUATION_FILE: json.dumps(
                evaluation_json(champion=None, championProblem=problem, mode="full")
            ).encode()
        },
    )
    state = {"run": run_plan("run-3", champion="job-run-1"), "training": training_result("run-3")}
    # When evaluated
    decision = evaluate(s3, RunState.parse(state), 0.0)
    # Then the challenger is promoted without a comparison, and the record says why
    assert decision.verdict == "promote"
    assert problem in decision.reason


def test_a_champion_prepare_run_left_out_is_explained_by_the_plan(s3: Any) -> None:
    put_job_output(
        s3,
        "job-run-4",
        {layout.EVALUATION_FILE: json.dumps(evaluation_json(champion=None)).encode()},
    )
    plan = {**run_plan("run-4"), "championProblem": "its artifact s3://b/m.tar.gz is missing"}
    decision = evaluate(
        s3, RunState.parse({"run": plan, "training": training_result("run-4")}), 0.0
    )
    assert decision.verdict == "promote"
    assert "artifact s3://b/m.tar.gz is missing" in decision.reason


# --- the state's view ---------------------------------------------------------------------------
def test_evaluate_reads_the_run_and_training_sections(s3: Any) -> None:
    # Given a run gating on rmse and its job's output
    put_job_output(s3, "job-run-2")
    state = {"run": run_plan("run-2"), "training": training_result("run-2")}
    # When evaluated
    decision = evaluate(s3, RunState.parse(state), 0.01)
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
        evaluate(s3, RunState.parse(state), 0.0)


def test_evaluate_needs_the_run_and_training(s3: Any) -> None:
    with pytest.raises(EvaluationUnavailable, match=r"run\.metric and training\.modelDataUrl"):
        evaluate(s3, RunState.parse({"run": run_plan()}), 0.0)
