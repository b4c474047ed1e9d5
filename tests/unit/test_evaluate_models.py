from __future__ import annotations

import json

import pytest

from refit import layout
from refit.evaluate_models.promotion import EvaluationUnavailable
from tests.lambda_handlers import load_handler
from tests.unit.moto_stack import Aws
from tests.unit.state_builders import (
    FakeLambdaContext,
    evaluation_json,
    put_job_output,
    run_plan,
    training_result,
)


def test_handler_returns_the_evaluation_section(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a stack demanding a 0.05 gain and a challenger that gains only 0.04
    monkeypatch.setenv("MIN_IMPROVEMENT", "0.05")
    put_job_output(aws.s3, "job-run-2")
    app = load_handler("evaluate_models")
    event = {"run": run_plan("run-2"), "training": training_result("run-2")}
    # When EvaluateModels runs
    result = app.lambda_handler(event, FakeLambdaContext())
    # Then it rejects, in a JSON-ready $.evaluation
    assert result["decision"] == "reject"
    assert result["reason"].endswith("(minimum 0.05)")
    assert json.loads(json.dumps(result)) == result


def test_handler_promotes_a_first_model(aws: Aws) -> None:
    put_job_output(
        aws.s3,
        "job-run-1",
        {layout.EVALUATION_FILE: json.dumps(evaluation_json(champion=None)).encode()},
    )
    app = load_handler("evaluate_models")
    event = {"run": run_plan("run-1", champion=None), "training": training_result("run-1")}
    result = app.lambda_handler(event, FakeLambdaContext())
    assert (result["decision"], result["champion"]) == ("promote", None)


# Nothing to count when the evaluation is missing: Powertools warns about the empty flush.
@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_handler_fails_loudly_without_an_evaluation(aws: Aws) -> None:
    # Given a job that left no output archive
    app = load_handler("evaluate_models")
    event = {"run": run_plan("run-3"), "training": training_result("run-3")}
    # When / Then the error reaches Step Functions' Catch
    with pytest.raises(EvaluationUnavailable, match="cannot read"):
        app.lambda_handler(event, FakeLambdaContext())
