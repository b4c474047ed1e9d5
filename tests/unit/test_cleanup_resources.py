from __future__ import annotations

import json

from refit.ledger.run_records import RunRecords
from tests.lambda_handlers import load_handler
from tests.unit.moto_stack import STACK, TABLE, Aws
from tests.unit.state_builders import (
    ENDPOINT,
    FakeLambdaContext,
    create_run_resources,
    model_names,
    promoted_state,
)


def test_handler_cleans_up_and_returns_the_report(aws: Aws) -> None:
    # Given two older promoted runs and the endpoint on the new run-3 (PREVIOUS_MODELS_TO_KEEP=1;
    # no packages: the index's promoted flag decides)
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    create_run_resources(aws.sagemaker, records, "run-1", day=1)
    create_run_resources(aws.sagemaker, records, "run-2", day=2)
    current = create_run_resources(aws.sagemaker, None, "run-3", day=3)
    aws.sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=current)
    app = load_handler("cleanup_resources")
    # When CleanupResources runs on the whole state
    result = app.lambda_handler({"state": promoted_state("run-3")}, FakeLambdaContext())
    # Then the JSON-ready $.cleanup reports what went and what stayed
    assert result == {
        "deleted": {"models": ["job-run-1"], "endpointConfigs": ["job-run-1"], "endpoints": []},
        "kept": {
            "models": ["job-run-3", "job-run-2"],
            "endpointConfigs": ["job-run-3", "job-run-2"],
            "rollbackPackages": [],
        },
        "skippedUnowned": [],
        "registryError": None,
    }
    assert json.loads(json.dumps(result)) == result
    assert model_names(aws.sagemaker) == {"job-run-3", "job-run-2"}


def test_handler_with_nothing_to_do(aws: Aws) -> None:
    # Given a first model and an empty index
    app = load_handler("cleanup_resources")
    # When CleanupResources runs
    result = app.lambda_handler({"state": promoted_state("run-1")}, FakeLambdaContext())
    # Then nothing is deleted
    assert result["deleted"] == {"models": [], "endpointConfigs": [], "endpoints": []}
