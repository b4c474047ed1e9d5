"""A delivery too large for one PrepareRun: PrepareRun fans out, CheckDataFile checks each file,
PrepareRun takes the verdicts (refit.data.file_checks), through the real handlers in moto.

The map itself (ItemReader, ItemSelector) is played here the way the ASL's CheckDataFiles
state runs it; the local-cloud test of bad input runs the real state machine through it.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from refit_data import label_rule

from refit.data import file_checks
from tests.lambda_handlers import load_handler
from tests.unit.builders import (
    FakeLambdaContext,
    csv_rows,
    keys_under,
    put,
    run_prepare,
    write_training_code,
)
from tests.unit.moto_stack import BUCKET, Aws

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture
def apps(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[ModuleType, ModuleType]:
    monkeypatch.setenv("TRAINING_CODE_DIR", str(write_training_code(tmp_path / "training")))
    monkeypatch.setenv("INLINE_CHECK_MB", "0")  # every run with bytes to read fans out
    monkeypatch.setenv("CHECK_CONCURRENCY", "7")
    put(aws.s3, "data/test/holdout.csv", csv_rows(5))
    return load_handler("prepare_run"), load_handler("check_data_file")


def run_the_map(aws: Aws, checker: ModuleType, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """CheckDataFiles as the ASL defines it: its items from S3, one invocation per item."""
    checks = plan["checks"]
    items = json.loads(
        aws.s3.get_object(Bucket=checks["bucket"], Key=checks["itemsKey"])["Body"].read()
    )
    return [
        checker.lambda_handler(
            {
                "item": item,
                "index": index,
                "runId": plan["runId"],
                "expectedColumns": checks["expectedColumns"],
            },
            FakeLambdaContext(),
        )
        for index, item in enumerate(items)
    ]


def prepare_after_checks(app: ModuleType, execution_input: Any, name: str) -> dict[str, Any]:
    event = {
        "input": execution_input,
        "executionName": name,
        "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:m:{name}",
        "startTime": "2026-11-28T09:20:00.123Z",
        "afterChecks": True,
    }
    plan: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
    return plan


def test_a_large_delivery_is_checked_file_by_file_and_then_planned_as_ever(
    apps: tuple[ModuleType, ModuleType], aws: Aws
) -> None:
    prepare, checker = apps
    # Given a delivery of good files, a bad one and one with another column count
    good = [put(aws.s3, f"data/train/big/part-{n}.csv", csv_rows(8 + n)) for n in range(3)]
    bad = put(aws.s3, "data/train/big/header.csv", b"label,x,y,z\n1,2,3,4\n")
    wide = put(aws.s3, "data/train/big/wide.csv", csv_rows(4, features=5))
    delivery = {"source": "s3", "objects": [*good, bad, wide]}
    # When PrepareRun sees more bytes to read than InlineCheckMB
    plan = run_prepare(prepare, delivery, "s3-big")
    # Then it reads none of them, changes nothing and hands the list to the map
    assert plan["status"] == file_checks.CHECK_FILES_STATUS
    assert plan["checks"]["files"] == 5
    assert plan["checks"]["concurrency"] == 7
    assert plan["checks"]["expectedColumns"] is None  # no champion
    assert len(keys_under(aws.s3, "data/train/")) == 5
    assert keys_under(aws.s3, "runs/s3-big/") == ["runs/s3-big/checks/items.json"]
    # When each file is checked by its own CheckDataFile
    outcomes = run_the_map(aws, checker, plan)
    # Then each returns only its outcome, and nothing moved yet
    assert sorted(o["outcome"] for o in outcomes) == ["accepted"] * 4 + ["invalid"]
    assert len(keys_under(aws.s3, "data/train/")) == 5
    # When PrepareRun runs again with the verdicts
    final = prepare_after_checks(prepare, delivery, "s3-big")
    # Then the run is planned on the good files, exactly as if checked inline
    assert final["status"] == "ready"
    assert final["data"]["accepted"] == 3
    assert final["data"]["rows"] == 8 + 9 + 10
    reasons = {r["key"]: r["reason"] for r in final["data"]["rejectedFiles"]}
    assert "header row" in reasons["data/train/big/header.csv"]
    # And the run's one column count holds across files checked apart
    assert reasons["data/train/big/wide.csv"] == (
        "line 1 has 6 columns, expected 4 (as in data/train/big/part-0.csv)"
    )
    assert sorted(keys_under(aws.s3, "data/train/")) == sorted(g["key"] for g in good)
    assert "data/rejected/big/wide.csv" in keys_under(aws.s3, "data/rejected/")


def test_a_verdict_holds_only_for_the_bytes_it_read(
    apps: tuple[ModuleType, ModuleType], aws: Aws
) -> None:
    prepare, checker = apps
    put(aws.s3, "data/train/a.csv", csv_rows(6))
    plan = run_prepare(prepare, {}, "manual-1")
    run_the_map(aws, checker, plan)
    # Given the file overwritten with bad bytes after its check
    put(aws.s3, "data/train/a.csv", b"1,2,abc,4\n")
    # When PrepareRun takes the verdicts
    final = prepare_after_checks(prepare, {}, "manual-1")
    # Then the new bytes are read, not trusted: refused with the contract's reason
    assert final["status"] == "rejected-input"
    assert "'abc' is not a number" in final["data"]["rejectedFiles"][0]["reason"]


def test_a_champions_layout_reaches_each_files_own_check(aws: Aws) -> None:
    # Given the fan-out plan of a run whose champion has 3 features
    plan = {
        "runId": "r",
        "checks": {
            "bucket": BUCKET,
            "expectedColumns": {"count": 4, "because": "the champion's 3 features + label"},
        },
    }
    narrow = put(aws.s3, "data/train/narrow.csv", csv_rows(3, features=2))
    event = {
        **plan,
        "index": 0,
        "item": narrow,
        "expectedColumns": plan["checks"]["expectedColumns"],
    }
    # When the file's check runs
    verdict = file_checks.check_item(
        aws.s3, BUCKET, event, max_file_bytes=2**20, rule=label_rule("reg:squarederror")
    )
    # Then it is refused for the champion's layout, and the verdict is where PrepareRun looks
    assert verdict.outcome == "invalid"
    assert verdict.reason == "line 1 has 3 columns, expected 4 (the champion's 3 features + label)"
    assert file_checks.load_verdicts(aws.s3, BUCKET, "r") == {"data/train/narrow.csv": verdict}
