from __future__ import annotations

from typing import Any

import pytest

from refit.run_input import (
    DataObject,
    InvalidRunInput,
    RollbackRequest,
    RunRequest,
    parse_run_input,
)
from tests.unit.builders import load_event


def test_empty_input_trains_on_everything_with_stack_defaults() -> None:
    # When a run is started with no input fields
    request = parse_run_input({})
    # Then it is a manual auto-mode run over all of data/train/ in the stack's deployment mode
    assert request == RunRequest()
    assert request.source == "manual"
    assert request.data_prefix == "data/train/"
    assert request.training_mode == "auto"
    assert request.deployment_mode is None


def test_sample_manual_inputs_parse() -> None:
    manual = parse_run_input(load_event("execution-input-manual.json"))
    full = parse_run_input(load_event("execution-input-full-retrain.json"))
    assert manual.prefix == "data/train/2026/11/"
    assert manual.data_prefix == "data/train/2026/11/"
    assert full.training_mode == "full"
    assert full.deployment_mode == "endpoint"


def test_trigger_input_keeps_each_object_version() -> None:
    # Given the input the trigger sends, one object written while versioning was off
    document = {
        "source": "s3",
        "objects": [
            {"key": "data/train/a.csv", "etag": "abc", "versionId": "v2", "size": 10},
            {"key": "data/train/b.csv", "versionId": "null"},
        ],
    }
    # When it is parsed
    request = parse_run_input(document)
    # Then every object is kept and S3's "null" version reads as no version
    assert request.source == "s3"
    assert request.objects == (
        DataObject("data/train/a.csv", "abc", "v2", 10),
        DataObject("data/train/b.csv", None, None, None),
    )
    assert request.objects[1].to_dict() == {"key": "data/train/b.csv"}
    assert request.summary()["objectCount"] == 2


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "must be a JSON object"),
        ({"prefx": "data/train/"}, "unknown field(s) prefx in execution input; allowed: source"),
        ({"source": "cron"}, "source must be one of s3, manual, schedule; got 'cron'"),
        ({"trainingMode": "warm"}, "trainingMode must be one of auto, full, incremental"),
        ({"deploymentMode": "serverless"}, "deploymentMode must be one of endpoint, batch"),
        ({"forceDecision": "yes"}, "forceDecision must be one of promote, reject; got 'yes'"),
        ({"prefix": "data/test/"}, "prefix must be a string starting with 'data/train/'"),
        ({"prefix": 3}, "prefix must be a string starting with 'data/train/'"),
        (
            {"prefix": "data/train/x/", "objects": [{"key": "data/train/x/a.csv"}]},
            "objects and prefix are mutually exclusive",
        ),
        ({"objects": []}, "objects must be a non-empty list"),
        ({"objects": "data/train/a.csv"}, "objects must be a non-empty list"),
        ({"objects": ["data/train/a.csv"]}, "objects[0] must be an object with fields key"),
        ({"objects": [{"etag": "x"}]}, "objects[0].key must be a non-empty string"),
        ({"objects": [{"key": "k", "version": "1"}]}, "unknown field(s) version in objects[0]"),
        ({"objects": [{"key": "k", "size": True}]}, "objects[0].size must be an integer >= 0"),
        ({"objects": [{"key": "k", "size": -1}]}, "objects[0].size must be an integer >= 0"),
        ({"objects": [{"key": "k", "etag": 5}]}, "objects[0].etag must be a string or null"),
    ],
)
def test_invalid_input_names_the_field(document: Any, expected: str) -> None:
    # When an input breaks the contract
    with pytest.raises(InvalidRunInput) as raised:
        parse_run_input(document)
    # Then the message says which field and what it accepts
    assert expected in str(raised.value)


def test_invalid_input_is_a_value_error_named_for_step_functions() -> None:
    # Step Functions reports the exception's class name as $.error.Error
    assert issubclass(InvalidRunInput, ValueError)
    assert InvalidRunInput.__name__ == "InvalidRunInput"


def test_a_manual_run_may_force_the_decision() -> None:
    request = parse_run_input({"trainingMode": "full", "forceDecision": "reject"})
    assert request.force_decision == "reject"
    assert request.summary()["forceDecision"] == "reject"
    assert parse_run_input({}).force_decision is None


# --- rollback -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "to_version"),
    [
        ({"rollback": {}}, None),
        ({"rollback": {"toVersion": None}}, None),
        ({"rollback": {"toVersion": 3}}, 3),
        ({"source": "manual", "rollback": {"toVersion": 1}}, 1),
    ],
)
def test_a_rollback_names_a_version_or_none(document: Any, to_version: int | None) -> None:
    request = parse_run_input(document)
    assert request.rollback == RollbackRequest(to_version)
    assert request.summary()["rollback"] == {"toVersion": to_version}
    assert parse_run_input({}).rollback is None


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"rollback": {"toVersion": 0}}, "rollback.toVersion must be a model package version"),
        ({"rollback": {"toVersion": -1}}, "an integer >= 1); got -1"),
        ({"rollback": {"toVersion": True}}, "an integer >= 1); got True"),
        ({"rollback": {"toVersion": "3"}}, "an integer >= 1); got '3'"),
        ({"rollback": {"toVersion": 2.0}}, "an integer >= 1); got 2.0"),
        ({"rollback": 3}, 'rollback must be an object: {} or {"toVersion": <version>}'),
        ({"rollback": {"version": 3}}, "unknown field(s) version in rollback; allowed: toVersion"),
        ({"rollback": {}, "prefix": "data/train/x/"}, "cannot be combined with prefix"),
        ({"rollback": {}, "objects": [{"key": "k"}]}, "cannot be combined with objects"),
        ({"rollback": {}, "trainingMode": "full"}, "cannot be combined with trainingMode"),
        ({"rollback": {}, "forceDecision": "promote"}, "cannot be combined with forceDecision"),
        ({"rollback": {}, "deploymentMode": "batch"}, "cannot be combined with deploymentMode"),
    ],
)
def test_an_invalid_rollback_names_the_field(document: Any, expected: str) -> None:
    with pytest.raises(InvalidRunInput) as raised:
        parse_run_input(document)
    assert expected in str(raised.value)
