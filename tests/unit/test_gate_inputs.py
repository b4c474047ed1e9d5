"""PrepareRun's side of the gate: warm-start safety, the rejection streak, fresh vs retained test
data (refit.prepare_run.warm_start, refit.prepare_run.holdout, RunRecords' streak item)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from refit import layout
from refit.ledger.run_queue import RunQueue
from refit.ledger.run_records import ChampionPointer, DataWindow, RunRecords
from refit.prepare_run.holdout import champion_run_started_at, split_holdout
from refit.prepare_run.warm_start import WarmStart, check_warm_start, known_pointer, outgrown
from refit.registry.champion import Champion
from tests.lambda_handlers import load_handler
from tests.unit.builders import (
    FakeLambdaContext,
    csv_rows,
    deploy_endpoint,
    put,
    write_training_code,
)
from tests.unit.moto_stack import BUCKET, STACK, TABLE, Aws

MODEL_URL = f"s3://{BUCKET}/models/s3-old/output/model.tar.gz"
CHAMPION = Champion("s3-old", MODEL_URL, "s3-old-config", 3, "pointer")


def records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def warm_start(
    aws: Aws,
    *,
    columns: int = 4,
    limit: int = 3,
    objective: str = "reg:squarederror",
    new_rows: int = 10,
    growth: float = 3.0,
) -> WarmStart:
    return check_warm_start(
        aws.s3,
        records(aws),
        CHAMPION,
        known_pointer(records(aws), CHAMPION),
        objective=objective,
        data_columns=columns,
        new_rows=new_rows,
        full_retrain_after_rejections=limit,
        full_retrain_growth=growth,
    )


def with_champion(
    aws: Aws, objective: str | None = "reg:squarederror", window: DataWindow | None = None
) -> None:
    put(aws.s3, "models/s3-old/output/model.tar.gz", b"artifact")
    records(aws).set_champion(
        ChampionPointer("s3-old", MODEL_URL, None, "run-0", 3, objective, data_window=window),
        "2026-11-01T00:00:00Z",
    )


# --- warm start ---------------------------------------------------------------------------------
def test_a_safe_champion_is_continued(aws: Aws) -> None:
    with_champion(aws)
    assert warm_start(aws).full_retrain_reason is None


def test_a_missing_artifact_means_a_full_retrain_without_the_champion(aws: Aws) -> None:
    # Given a champion pointer whose model.tar.gz is gone
    records(aws).set_champion(ChampionPointer("s3-old", MODEL_URL, None, "run-0", 3), "t")
    # When PrepareRun checks the warm start
    checked = warm_start(aws)
    # Then it retrains from scratch and the champion cannot be scored
    assert checked.full_retrain_reason == (
        f"full retrain: the champion s3-old cannot be used: its artifact {MODEL_URL} is missing"
    )
    assert checked.champion_problem == f"its artifact {MODEL_URL} is missing"


def test_another_objective_means_a_full_retrain(aws: Aws) -> None:
    with_champion(aws, objective="reg:absoluteerror")
    checked = warm_start(aws)
    assert checked.full_retrain_reason == (
        "full retrain: the champion s3-old was trained with objective reg:absoluteerror, "
        "the stack now asks for reg:squarederror"
    )
    assert checked.champion_problem is None  # still scored


def test_another_feature_count_means_a_full_retrain(aws: Aws) -> None:
    with_champion(aws)
    assert "has 3 features, the data has 5" in (
        warm_start(aws, columns=6).full_retrain_reason or ""
    )


def test_k_rejected_challengers_in_a_row_mean_a_full_retrain(aws: Aws) -> None:
    with_champion(aws)
    ledger = records(aws)
    # Given two rejected incremental runs (one recorded twice: a RecordRun retry)
    ledger.count_rejection("s3-old", "run-1")
    ledger.count_rejection("s3-old", "run-2")
    ledger.count_rejection("s3-old", "run-2")
    assert ledger.rejection_streak("s3-old") == 2
    assert warm_start(aws).full_retrain_reason is None
    # When a third is rejected
    ledger.count_rejection("s3-old", "run-3")
    # Then the next run retrains from scratch, unless the fallback is off
    assert warm_start(aws).full_retrain_reason == (
        "full retrain: the last 3 incremental challengers of s3-old were rejected "
        "(FullRetrainAfterRejections 3)"
    )
    assert warm_start(aws, limit=0).full_retrain_reason is None


def test_data_that_outgrew_the_champions_trees_means_a_full_retrain(aws: Aws) -> None:
    # Given a champion whose trees were grown on 100 rows, its lineage has seen 250
    with_champion(aws, window=DataWindow(None, base_rows=100, seen_rows=250))
    # When a delivery brings its lineage to just under 3x the base, it is continued
    assert warm_start(aws, new_rows=49).full_retrain_reason is None
    # And at 3x it retrains from scratch, on all data (not the delivery alone), saying why
    checked = warm_start(aws, new_rows=50)
    assert checked.full_retrain_reason == (
        "full retrain: the champion's trees were grown on 100 rows, its lineage has 300 with "
        "this delivery (FullRetrainGrowth 3)"
    )
    assert not checked.delivery_only
    # Unless the rule is off
    assert warm_start(aws, new_rows=50, growth=0).full_retrain_reason is None


def test_the_growth_rule_needs_the_window_the_pointer_recorded() -> None:
    assert outgrown(None, 10**9, 3.0) is None  # promoted before refit recorded it
    assert outgrown(DataWindow(None, None, 500), 10**9, 3.0) is None  # sample without a base
    assert outgrown(DataWindow(None, 10, 10), 20, 3.0) is not None
    assert outgrown(DataWindow(None, 10, 10), 10**9, 0.0) is None


def test_a_new_feature_count_retrains_on_the_delivery_alone(aws: Aws) -> None:
    with_champion(aws)
    assert warm_start(aws, columns=6).delivery_only


def test_a_streak_belongs_to_one_champion_and_resets(aws: Aws) -> None:
    ledger = records(aws)
    ledger.count_rejection("old-champion", "run-1")
    ledger.count_rejection("s3-old", "run-2")  # another champion: starts over
    assert ledger.rejection_streak("s3-old") == 1
    assert ledger.rejection_streak("old-champion") == 0
    ledger.reset_rejections()
    assert ledger.rejection_streak("s3-old") == 0


# --- fresh vs retained test data ----------------------------------------------------------------
def test_test_data_is_split_at_the_start_of_the_champions_run(aws: Aws) -> None:
    # Given a test file from before the champion's run and one uploaded since
    put(aws.s3, "data/test/old.csv", csv_rows(5))
    put(aws.s3, "data/test/_SUCCESS", b"")
    time.sleep(1.1)
    started = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(1.1)
    put(aws.s3, "data/test/2026/new.csv", csv_rows(5))
    # When PrepareRun splits the holdout
    split = split_holdout(aws.s3, BUCKET, "run-2", started)
    # Then each side is a ManifestFile relative to data/test/
    assert (split.fresh_files, split.retained_files, split.cutoff) == (1, 1, started)
    fresh = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key="runs/run-2/test.manifest")["Body"].read()
    )
    retained = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key="runs/run-2/test_retained.manifest")["Body"].read()
    )
    assert fresh == [{"prefix": f"s3://{BUCKET}/{layout.TEST_PREFIX}"}, "2026/new.csv"]
    assert retained == [{"prefix": f"s3://{BUCKET}/{layout.TEST_PREFIX}"}, "old.csv"]
    assert split.fresh_manifest_uri == f"s3://{BUCKET}/runs/run-2/test.manifest"


@pytest.mark.parametrize("cutoff", [None, "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"])
def test_nothing_to_split_reads_all_of_data_test(aws: Aws, cutoff: str | None) -> None:
    put(aws.s3, "data/test/old.csv", csv_rows(5))
    split = split_holdout(aws.s3, BUCKET, "run-2", cutoff)
    assert not split.split
    assert split.fresh_manifest_uri is None
    assert "all of data/test/" in split.reason


def test_the_cutoff_is_the_start_of_the_champions_own_run(aws: Aws) -> None:
    ledger = records(aws)
    assert champion_run_started_at(ledger, CHAMPION) is None  # unknown to refit
    with_champion(aws)
    ledger.put_started("run-0", {"startedAt": "2026-11-01T08:00:00.000Z"})
    assert champion_run_started_at(ledger, CHAMPION) == "2026-11-01T08:00:00.000Z"
    assert champion_run_started_at(ledger, None) is None


# --- through PrepareRun -------------------------------------------------------------------------
@pytest.fixture
def app(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    monkeypatch.setenv("TRAINING_CODE_DIR", str(write_training_code(tmp_path / "training")))
    put(aws.s3, "data/test/holdout.csv", csv_rows(5))
    return load_handler("prepare_run")


def prepare(app: ModuleType, execution_input: Any, name: str = "run-1") -> dict[str, Any]:
    event = {
        "input": execution_input,
        "executionName": name,
        "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:{STACK}-retrain:{name}",
        "startTime": "2026-11-28T09:20:00.123Z",
    }
    plan: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
    return plan


def test_prepare_run_records_why_the_champion_is_not_continued(app: ModuleType, aws: Aws) -> None:
    # Given a live champion whose artifact has been deleted
    config = deploy_endpoint(aws.sagemaker, aws.settings.endpoint_name, "s3-old", MODEL_URL)
    records(aws).set_champion(ChampionPointer("s3-old", MODEL_URL, config, "run-0", 3), "t")
    put(aws.s3, "data/train/new.csv", csv_rows(5))
    # When a run is prepared
    plan = prepare(app, {"forceDecision": "promote"})
    # Then it is a full retrain without a model channel, and the record says why
    assert plan["trainingMode"] == "full"
    assert "is missing" in plan["trainingModeReason"]
    channels = {c["ChannelName"] for c in plan["trainingJob"]["InputDataConfig"]}
    assert layout.CHANNEL_MODEL not in channels
    record = records(aws).get_run("run-1")
    assert record is not None
    assert record["trainingModeReason"] == plan["trainingModeReason"]
    assert record["forceDecision"] == "promote"
    assert record["testSets"]["reason"].startswith("no champion with a known run")


def write_trained(aws: Aws, entries: list[tuple[str, bytes, str]]) -> None:
    """Upload each (key, body, trainedAt) and record it in the cumulative manifest as trained."""
    objects = []
    for key, body, trained_at in entries:
        uploaded = put(aws.s3, key, body)
        pinned = f"runs/run-0/data/{key.removeprefix(layout.TRAIN_PREFIX)}"
        put(aws.s3, pinned, body)
        objects.append(
            {
                "key": key,
                "versionId": uploaded["versionId"],
                "etag": uploaded["etag"],
                "size": len(body),
                "rows": body.count(b"\n"),
                "columns": 4,
                "pinnedUri": f"s3://{BUCKET}/{pinned}",
                "runId": "run-0",
                "trainedAt": trained_at,
            }
        )
    document = {"formatVersion": 1, "bucket": BUCKET, "objects": objects}
    put(aws.s3, layout.CUMULATIVE_MANIFEST_KEY, json.dumps(document))


def live_champion(aws: Aws, window: DataWindow) -> None:
    config = deploy_endpoint(aws.sagemaker, aws.settings.endpoint_name, "s3-old", MODEL_URL)
    put(aws.s3, "models/s3-old/output/model.tar.gz", b"artifact")
    records(aws).set_champion(
        ChampionPointer(
            "s3-old", MODEL_URL, config, "run-0", 3, "reg:squarederror", data_window=window
        ),
        "t",
    )


def train_keys(plan: dict[str, Any], aws: Aws) -> list[str]:
    manifest = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key=f"runs/{plan['runId']}/manifest.json")["Body"].read()
    )
    return sorted(item["key"] for item in manifest["accepted"])


def test_a_delivery_that_outgrew_the_champion_retrains_on_all_data_in_its_window(
    app: ModuleType, aws: Aws
) -> None:
    # Given a champion whose lineage restarted at a drift detected at 10:00, and trained data
    # from before and after it
    write_trained(
        aws,
        [
            ("data/train/before-drift.csv", csv_rows(5), "2026-11-28T09:59:59Z"),
            ("data/train/after-drift.csv", csv_rows(5), "2026-11-28T10:00:05Z"),
        ],
    )
    live_champion(aws, DataWindow("2026-11-28T10:00:00.250Z", base_rows=5, seen_rows=10))
    # When a delivery of 5 rows brings its lineage to 3x the rows its trees were grown on
    delivered = put(aws.s3, "data/train/new.csv", csv_rows(5))
    reads: list[str] = []
    app.s3.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: reads.append(params["url_path"])
    )
    plan = prepare(app, {"source": "s3", "objects": [delivered]})
    # Then the run retrains from scratch on all data since the drift, the delivery included
    assert plan["trainingMode"] == "full"
    assert plan["trainingModeReason"].startswith("full retrain: the champion's trees were grown")
    assert "on the data trained since 2026-11-28T10:00:00.250Z" in plan["trainingModeReason"]
    assert train_keys(plan, aws) == ["data/train/after-drift.csv", "data/train/new.csv"]
    assert plan["dataWindow"] == {"since": "2026-11-28T10:00:00.250Z", "outsideWindow": 1}
    assert plan["data"]["rows"] == 10
    # (the delivery was read once: the retrain on all data takes it as just checked)
    assert sum(path.endswith("/data/train/new.csv") for path in reads) == 1
    record = records(aws).get_run("run-1")
    assert record is not None and record["dataWindow"] == plan["dataWindow"]


def test_a_full_retrain_by_hand_trains_on_everything(app: ModuleType, aws: Aws) -> None:
    # Given the same window
    write_trained(
        aws,
        [
            ("data/train/before-drift.csv", csv_rows(5), "2026-11-28T09:59:59Z"),
            ("data/train/after-drift.csv", csv_rows(5), "2026-11-28T10:00:05Z"),
        ],
    )
    live_champion(aws, DataWindow("2026-11-28T10:00:00.250Z", base_rows=5, seen_rows=5))
    # When a full retrain is asked for by hand, it takes all data (the way out of a false drift)
    plan = prepare(app, {"trainingMode": "full"})
    assert train_keys(plan, aws) == ["data/train/after-drift.csv", "data/train/before-drift.csv"]
    assert plan["dataWindow"] == {"since": None, "outsideWindow": 0}
    # While the scheduled one stays in the window
    RunQueue(aws.dynamodb, TABLE, STACK).release("run-1")  # the first run has ended
    scheduled = prepare(app, {"source": "schedule", "trainingMode": "full"}, name="run-2")
    assert train_keys(scheduled, aws) == ["data/train/after-drift.csv"]
