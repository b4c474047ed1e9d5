from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from refit.ledger.run_records import RunRecords
from refit.record_run.run_report import record_run
from refit.registry import lineage
from refit.run_state import RunState
from refit_cli import cli
from tests.unit.moto_stack import GROUP, STACK, TABLE, Aws
from tests.unit.state_builders import promoted_state


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


@pytest.mark.parametrize(
    ("flag", "decision"), [("--force-promote", "promote"), ("--force-reject", "reject")]
)
def test_start_can_force_the_gates_decision(aws: Aws, flag: str, decision: str) -> None:
    state_machine = _state_machine(aws)
    _stack_with_outputs(aws)
    assert cli.main(["--stack", STACK, "start", "--full", flag]) == 0
    execution = aws.stepfunctions.list_executions(stateMachineArn=state_machine)["executions"][0]
    described = aws.stepfunctions.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"])["forceDecision"] == decision


def test_start_refuses_both_forced_decisions(aws: Aws) -> None:
    _state_machine(aws)
    _stack_with_outputs(aws)
    with pytest.raises(SystemExit) as refused:
        cli.main(["--stack", STACK, "start", "--force-promote", "--force-reject"])
    assert refused.value.code == 2


def test_start_refuses_a_prefix_outside_the_training_data(aws: Aws) -> None:
    _state_machine(aws)
    _stack_with_outputs(aws)
    with pytest.raises(SystemExit) as refused:
        cli.main(["--stack", STACK, "start", "--prefix", "models/"])
    assert refused.value.code == 2
    assert aws.stepfunctions.list_state_machines()["stateMachines"]


def test_rollback_input_names_the_version_or_none() -> None:
    assert cli.rollback_execution_input(None) == {"source": "manual", "rollback": {}}
    assert cli.rollback_execution_input(3) == {"source": "manual", "rollback": {"toVersion": 3}}


@pytest.mark.parametrize("version", ["0", "-1", "two"])
def test_rollback_to_a_version_that_cannot_exist_is_a_usage_error(
    version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused while parsing the arguments: before the stack is looked up or anything started
    with pytest.raises(SystemExit) as refused:
        cli.main(["--stack", STACK, "rollback", "--to-version", version])
    assert refused.value.code == 2
    assert "argument --to-version" in capsys.readouterr().err


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


# --- cost -------------------------------------------------------------------------------------
def _recorded(
    aws: Aws, run_id: str, *, days_ago: int, region: str = "us-east-1", batch: bool = False
) -> dict[str, Any]:
    """A run finished ``days_ago`` days ago through the real RecordRun; returns its record."""
    finished = datetime.now(UTC) - timedelta(days=days_ago)
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    records.put_started(run_id, {"startedAt": finished.isoformat()})
    state = promoted_state(run_id, deployment_mode="batch" if batch else "endpoint")
    event = {"outcome": "promoted", "executionName": run_id, "state": state}
    topic = aws.settings.notification_topic_arn
    record_run(event, records, aws.sns, topic, aws.settings, now=finished, region=region)
    found = records.get_run(run_id)
    assert found is not None
    return found


def test_runs_shows_the_cost_columns(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a recorded spot run that updated the endpoint
    _stack_with_outputs(aws)
    run = _recorded(aws, "run-2", days_ago=0)
    # When the runs are listed
    assert cli.main(["--stack", STACK, "runs"]) == 0
    header, row = (re.split(r"\s{2,}", line) for line in capsys.readouterr().out.splitlines())
    # Then savings, instances, the rollout's added endpoint-hours and the cost are shown
    assert header[-4:] == ["spot %", "instances", "deploy h", "cost $"]
    assert row[-4:] == ["70.0", "1×ml.m5.xlarge", "0.1000", f"{run['cost']['totalUSD']:.4f}"]


def test_runs_without_a_cost_block_show_dashes() -> None:
    table = cli.format_runs([{"runId": "old", "status": "PROMOTED"}])
    assert re.split(r"\s{2,}", table.splitlines()[1])[-4:] == ["-", "-", "-", "-"]


def test_cost_totals_per_day_and_per_model(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    # Given runs today (endpoint and batch), yesterday, one in an unpriced region, one too old
    _stack_with_outputs(aws)
    today = [_recorded(aws, "run-a", days_ago=0), _recorded(aws, "run-b", days_ago=0, batch=True)]
    yesterday = _recorded(aws, "run-c", days_ago=1)
    _recorded(aws, "run-d", days_ago=1, region="af-south-1")
    _recorded(aws, "run-old", days_ago=10)
    # When the last 7 days are totalled
    assert cli.main(["--stack", STACK, "cost", "--days", "7", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)
    # Then each day and each model adds up its runs' estimates, the old run left out
    [day_1, day_0] = totals["byDay"][::-1]
    assert day_0["runs"] == 2
    assert day_0["totalUSD"] == pytest.approx(sum(r["cost"]["totalUSD"] for r in today))
    assert (day_1["runs"], day_1["unpricedRuns"]) == (2, 1)
    assert day_1["totalUSD"] == pytest.approx(yesterday["cost"]["totalUSD"])
    by_model = {m["model"]: m for m in totals["byModel"]}
    assert set(by_model) == {aws.settings.endpoint_name, f"{STACK}/batch"}
    assert by_model[f"{STACK}/batch"]["runs"] == 1
    assert by_model[f"{STACK}/batch"]["deployInstanceHours"] == 0.25
    assert by_model[aws.settings.endpoint_name]["runs"] == 3
    assert totals["total"]["runs"] == 4
    assert totals["total"]["billableSeconds"] == 4 * 180
    assert totals["total"]["spotSavedUSD"] > 0
    # And the unpriced run says why
    [unpriced] = totals["unpriced"]
    assert unpriced["runId"] == "run-d"
    assert "af-south-1" in unpriced["reasons"][0]
    # And the text report shows the same, with where the prices come from
    assert cli.main(["--stack", STACK, "cost"]) == 0
    text = capsys.readouterr().out
    [total_row] = [re.split(r"\s{2,}", x) for x in text.splitlines() if x.startswith("total ")]
    assert total_row[:4] == ["total", "4", str(4 * 600), str(4 * 180)]
    assert f"{totals['total']['totalUSD']:.4f}" in total_row
    assert "Prices: https://aws.amazon.com/sagemaker/pricing/" in text
    assert (
        "Not fully priced: run-d: training job job-run-d: no prices for region af-south-1" in text
    )


def test_cost_leaves_out_running_runs_and_flags_records_without_cost() -> None:
    runs = [
        {"runId": "r1", "status": "RUNNING", "startedAt": "2026-11-28T10:00:00Z"},
        {"runId": "r2", "status": "FAILED", "finishedAt": "2026-11-28T10:00:00Z"},
    ]
    totals = cli.cost_totals(runs, 1, date(2026, 11, 28))
    assert totals["total"]["runs"] == 1 and totals["total"]["totalUSD"] == 0
    assert totals["unpriced"] == [{"runId": "r2", "reasons": ["recorded without a cost estimate"]}]


def test_cost_refuses_zero_days(aws: Aws) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["--stack", STACK, "cost", "--days", "0"])
    assert refused.value.code == 2


def test_models_shows_the_lineage_newest_first_and_the_live_package(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a promoted run, then a rejected one, both registered and recorded
    _stack_with_outputs(aws)
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    topic = aws.settings.notification_topic_arn
    for run_id, outcome, decision in (
        ("run-1", "promoted", "promote"),
        ("run-2", "rejected", "reject"),
    ):
        state = promoted_state(run_id)
        records.put_started(run_id, {"startedAt": f"2026-11-0{run_id[-1]}T00:00:00Z"})
        registered = lineage.register(
            aws.sagemaker, records, GROUP, RunState.parse(state), state["evaluation"]
        )
        state["evaluation"] = {**state["evaluation"], "decision": decision, **registered}
        event = {"outcome": outcome, "executionName": run_id, "state": state}
        record_run(event, records, aws.sns, topic, aws.settings, sagemaker=aws.sagemaker)
    # When the lineage is listed as JSON and as a table
    assert cli.main(["--stack", STACK, "models", "--json"]) == 0
    listed: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    assert cli.main(["--stack", STACK, "models", "--limit", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    # Then the rejected run's package comes first, and the promoted one is live and approved
    assert [(m["runId"], m["status"], m["live"]) for m in listed] == [
        ("run-2", "Rejected", False),
        ("run-1", "Approved", True),
    ]
    assert listed[1]["dataRows"] == promoted_state("run-1")["run"]["data"]["rows"]
    assert len(table) == 2 and "run-2" in table[1] and "Rejected" in table[1]
