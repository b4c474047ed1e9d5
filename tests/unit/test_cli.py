from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto_stack import STACK, TABLE, Aws

from refit import cli
from refit.run_records import RunRecords


def _stack_with_outputs(aws: Aws) -> None:
    """A CloudFormation stack whose outputs name the moto resources, like template.yaml's."""
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "DataBucketName": {"Value": "refit-test-data"},
            "StateMachineArn": {"Value": aws.settings.state_machine_arn},
            "RunsTableName": {"Value": TABLE},
            "EndpointName": {"Value": aws.settings.endpoint_name},
        },
    }
    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))


def _state_machine(aws: Aws) -> str:
    role = boto3.client("iam").create_role(
        RoleName="sfn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    return str(
        aws.stepfunctions.create_state_machine(
            name="refit-test-retrain", definition=json.dumps(definition), roleArn=role
        )["stateMachineArn"]
    )


def test_start_sends_validated_manual_input(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a deployed stack
    state_machine = _state_machine(aws)
    _stack_with_outputs(aws)
    # When a full retrain on a prefix is started by hand
    assert cli.main(["--stack", STACK, "start", "--full", "--prefix", "data/train/2026/"]) == 0
    # Then one execution runs with the documented input
    executions = aws.stepfunctions.list_executions(stateMachineArn=state_machine)["executions"]
    assert len(executions) == 1
    assert executions[0]["name"].startswith("manual-")
    described = aws.stepfunctions.describe_execution(executionArn=executions[0]["executionArn"])
    assert json.loads(described["input"]) == {
        "source": "manual",
        "trainingMode": "full",
        "prefix": "data/train/2026/",
    }
    assert capsys.readouterr().out.strip() == executions[0]["executionArn"]


def test_start_refuses_a_prefix_outside_the_training_data(aws: Aws) -> None:
    _state_machine(aws)
    _stack_with_outputs(aws)
    with pytest.raises(SystemExit) as refused:
        cli.main(["--stack", STACK, "start", "--prefix", "models/"])
    assert refused.value.code == 2
    assert aws.stepfunctions.list_state_machines()["stateMachines"]


def test_runs_lists_records_newest_first(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    # Given two finished runs
    _stack_with_outputs(aws)
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    records.put_started("run-old", {"startedAt": "2026-11-01T00:00:00Z"})
    records.put_started("run-new", {"startedAt": "2026-11-02T00:00:00Z", "trainingMode": "full"})
    records.finish("run-new", {"metrics": {"challenger": 0.5, "champion": None}})
    # When they are listed as JSON and as a table
    assert cli.main(["--stack", STACK, "runs", "--json"]) == 0
    listed: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    assert cli.main(["--stack", STACK, "runs"]) == 0
    table = capsys.readouterr().out.splitlines()
    # Then the newest comes first in both
    assert [r["runId"] for r in listed] == ["run-new", "run-old"]
    assert table[1].startswith("run-new") and "0.5" in table[1]


def test_stack_name_comes_from_samconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFIT_STACK", raising=False)
    config = tmp_path / "samconfig.toml"
    config.write_text('version = 0.1\n[default.global.parameters]\nstack_name = "mine"\n')
    assert cli.default_stack_name(config) == "mine"
    assert cli.default_stack_name(tmp_path / "absent.toml") == "refit"
