"""The SAM transform, applied offline, turns template.yaml into the expected CloudFormation."""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from tests.static.static_helpers import ASL_PATH, load_template


@pytest.fixture(scope="module")
def translated(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Any]:
    # Given the template with local code locations replaced the way `sam deploy` would
    template = copy.deepcopy(load_template())
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://artifacts/function.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://artifacts/layer.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            del props["DefinitionUri"]
            props["Definition"] = json.loads(ASL_PATH.read_text())
    # When the SAM translator transforms it without network access
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    output: dict[str, Any] = Translator(None, Parser()).translate(
        template, parameter_values={}, get_managed_policy_map=lambda: {}
    )
    return output


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_translation_produces_the_expected_resources(translated: dict[str, Any]) -> None:
    # Then the resource types are those of the design
    types = Counter(r["Type"] for r in translated["Resources"].values())
    assert types["AWS::Lambda::Function"] == 6
    assert types["AWS::Lambda::LayerVersion"] == 2
    # uploads and ends of runs, both into StartRetrain
    assert types["AWS::Lambda::EventSourceMapping"] == 2
    assert types["AWS::StepFunctions::StateMachine"] == 1
    # one role per function, plus the workflow's, SageMaker's and the full-retrain schedule's
    assert types["AWS::IAM::Role"] == 9
    assert types["AWS::Scheduler::Schedule"] == 1
    for kind in (
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::SNS::Subscription",
        "AWS::SQS::QueuePolicy",
    ):
        assert types[kind] == 1, kind
    # uploads and ends of runs: a rule and a queue each, one dead-letter queue
    assert types["AWS::Events::Rule"] == 2
    assert types["AWS::SQS::Queue"] == 3


def test_globals_merge_into_every_function(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]
    # Given the translated PrepareRun function
    prepare = resources["PrepareRunFunction"]["Properties"]
    variables = prepare["Environment"]["Variables"]
    # Then it has the shared variables and its own, and both layers
    assert {"STACK_NAME", "DATA_BUCKET", "TRAINING_IMAGE_URI", "TRAINING_CODE_DIR"} <= set(
        variables
    )
    # (SAM suffixes layer logical ids with a content hash)
    layers = [layer["Ref"] for layer in prepare["Layers"]]
    assert [layer.rstrip("0123456789abcdef") for layer in layers] == [
        "RefitLayer",
        "TrainingCodeLayer",
    ]
    assert prepare["Runtime"] == "python3.13"
    assert prepare["TracingConfig"] == {"Mode": "Active"}


def test_trigger_mappings_report_batch_item_failures(translated: dict[str, Any]) -> None:
    # Given the translated event source mappings
    mappings = {
        r["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]: r["Properties"]
        for r in translated["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    assert set(mappings) == {"TriggerQueue", "RunEndedQueue"}
    # Then both feed StartRetrain and report partial failures
    for mapping in mappings.values():
        assert mapping["FunctionName"] == {"Ref": "StartRetrainFunction"}
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # uploads are batched by the parameters; ends of runs are handled at once
    uploads = mappings["TriggerQueue"]
    assert uploads["MaximumBatchingWindowInSeconds"] == {"Ref": "BatchingWindowSeconds"}
    assert "MaximumBatchingWindowInSeconds" not in mappings["RunEndedQueue"]


def test_state_machine_uses_the_explicit_role(translated: dict[str, Any]) -> None:
    # Given the translated state machine
    machine = translated["Resources"]["RetrainStateMachine"]["Properties"]
    # Then SAM added no role of its own and passed the substitutions through
    assert machine["RoleArn"] == {"Fn::GetAtt": ["StateMachineRole", "Arn"]}
    assert "RetrainStateMachineRole" not in translated["Resources"]
    assert set(machine["DefinitionSubstitutions"]) == {
        "PrepareRunFunctionArn",
        "CheckDataFileFunctionArn",
        "EvaluateModelsFunctionArn",
        "CleanupResourcesFunctionArn",
        "RecordRunFunctionArn",
        "SageMakerRoleArn",
    }
    assert machine["TracingConfiguration"] == {"Enabled": True}
