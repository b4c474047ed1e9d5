"""Spot capacity never comes: the real workflow retries once on demand, from the same checkpoints.

``statemachine/retrain.asl.json`` runs in moto's interpreter (``local_cloud.moto_patches``) and
the real ``training/train.py`` trains in the local SageMaker runtime. The functions are
in-process fakes around the real refit code: PrepareRun is
``refit.prepare_run.prepare.prepare_run``, EvaluateModels
``refit.evaluate_models.promotion.evaluate``, RecordRun ``refit.record_run.run_report.record_run``
(DynamoDB record + SNS); only CleanupResources is canned.

Why not a LocalCloud: the stack's ``MaxWaitSeconds`` is at least 60 s (the template and
``refit.config`` hold AWS-sized limits), so a spot job whose capacity never arrives needs a
minute to give up. Here the same code builds the plan from settings whose two limits are shrunk
with ``dataclasses.replace`` to :data:`LIMIT_SECONDS`.

Three runs share the module's moto server and start together:

- **never**: no spot capacity ever: the spot job ends ``Stopped``/``MaxWaitTimeExceeded``
  without having run; the on-demand job trains from scratch.
- **reclaimed**: the spot job checkpoints, is interrupted, and capacity never returns: the
  on-demand job resumes from the spot job's checkpoints.
- **broken**: the spot job fails for its own reason: no retry, the failure is recorded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from moto.moto_api._internal.models import moto_api_backend

from local_cloud import moto_patches
from local_cloud.sagemaker import LocalSageMaker
from refit import layout
from refit.config import Settings
from refit.evaluate_models import promotion
from refit.ledger.run_queue import RunQueue
from refit.ledger.run_records import RunRecords
from refit.prepare_run.prepare import PrepareRunEvent, prepare_run
from refit.record_run.run_report import record_run
from refit.run_state import RunState
from tests.emulator.local_sagemaker_harness import FAST_SETTINGS, IMAGE, wait_until
from tests.emulator.moto_patches_harness import (
    ROLE_ARN,
    FakeLambdas,
    MotoServer,
    create_function,
    create_state_machine,
    moto_server,
    start,
    unique,
    wait_execution,
)
from tests.runs_table import create_runs_table

REPO = Path(__file__).resolve().parents[2]
ASL_PATH = REPO / "statemachine" / "retrain.asl.json"
TRAINING_DIR = REPO / "training"
if not (TRAINING_DIR / "train.py").is_file():
    pytest.skip("training/train.py is missing", allow_module_level=True)
pytest.importorskip("xgboost")
pytestmark = pytest.mark.slow

STACK = "refit-fallback"
BUCKET = "refit-fallback-data"
TABLE = "refit-fallback-runs"
#: MaxRuntimeInSeconds = MaxWaitTimeInSeconds of the plan: long enough for a job of ROUNDS
#: rounds at ROUND_DELAY (plus the interpreter's start), short enough for a test.
LIMIT_SECONDS = 12
ROUNDS = 12
CHECKPOINT_INTERVAL = 2
#: train.py's test hook: seconds slept per round, so that the spot job checkpoints and is
#: interrupted mid-training, and the capacity injection lands before the interruption.
ROUND_DELAY = "0.2"
FEATURES = 4


def _table(rows: int, seed: int) -> str:
    """Headerless CSV, label first: a smooth regression problem xgboost learns in a few rounds."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + np.sin(x[:, 0]) + 0.1 * rng.normal(size=rows)
    buffer = io.StringIO()
    np.savetxt(buffer, np.column_stack([y, x]), delimiter=",", fmt="%.6g")
    return buffer.getvalue()


@dataclass
class Stack:
    server: MotoServer
    runtime: LocalSageMaker
    settings: Settings
    state_machine_arn: str
    plans: dict[str, dict[str, Any]]
    sabotage: dict[str, Callable[[dict[str, Any]], None]]
    # RecordRun calls of a run to fail (as a throttled table or an SNS outage would)
    record_failures: dict[str, int]
    lambdas: FakeLambdas
    s3: Any
    sagemaker: Any
    sfn: Any
    records: RunRecords

    def start(self, run_id: str) -> str:
        return start(self.sfn, self.state_machine_arn, {"source": "manual"}, run_id)

    def entered(self, execution_arn: str) -> list[str]:
        """The states an execution entered, in order."""
        events = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in events["events"]
            if "stateEnteredEventDetails" in e
        ]


def _settings(topic_arn: str) -> Settings:
    env = {
        "STACK_NAME": STACK,
        "DATA_BUCKET": BUCKET,
        "RUNS_TABLE": TABLE,
        "NOTIFICATION_TOPIC_ARN": topic_arn,
        "SAGEMAKER_ROLE_ARN": ROLE_ARN,
        "TRAINING_IMAGE_URI": IMAGE,
        "ENDPOINT_NAME": f"{STACK}-endpoint",
        "DEPLOYMENT_MODE": "batch",  # no endpoint: the runs end at the record, in seconds
        "USE_SPOT_TRAINING": "true",
        "OBJECTIVE": "reg:squarederror",
        "EVALUATION_METRIC": "rmse",
        "NUM_ROUNDS_FULL": str(ROUNDS),
        "CHECKPOINT_INTERVAL_ROUNDS": str(CHECKPOINT_INTERVAL),
        "TRAINING_CODE_DIR": str(TRAINING_DIR),
    }
    # The one deviation from a deployed stack: limits below refit.config's 60 s minimum.
    return dataclasses.replace(
        Settings.from_env(env), max_runtime_seconds=LIMIT_SECONDS, max_wait_seconds=LIMIT_SECONDS
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # moto's backends are per process: start from nothing (as LocalCloud does) and leave nothing
    moto_api_backend.reset()
    previous_delay = os.environ.get("REFIT_TEST_ROUND_DELAY")
    os.environ["REFIT_TEST_ROUND_DELAY"] = ROUND_DELAY  # inherited by the training processes
    try:
        with moto_server() as server:
            yield from _stack(server, tmp_path_factory.mktemp("sagemaker"))
    finally:
        moto_api_backend.reset()
        if previous_delay is None:
            os.environ.pop("REFIT_TEST_ROUND_DELAY", None)
        else:
            os.environ["REFIT_TEST_ROUND_DELAY"] = previous_delay


def _stack(server: MotoServer, work_dir: Path) -> Iterator[Stack]:
    s3, sagemaker, sns = server.client("s3"), server.client("sagemaker"), server.client("sns")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="data/train/a.csv", Body=_table(160, seed=1).encode())
    s3.put_object(Bucket=BUCKET, Key="data/train/b.csv", Body=_table(80, seed=2).encode())
    s3.put_object(Bucket=BUCKET, Key="data/test/holdout.csv", Body=_table(60, seed=3).encode())
    dynamodb = server.client("dynamodb")
    create_runs_table(dynamodb, TABLE)
    topic = sns.create_topic(Name=f"{STACK}-notifications")["TopicArn"]
    settings = _settings(topic)
    records = RunRecords(dynamodb, TABLE, STACK)
    plans: dict[str, dict[str, Any]] = {}
    sabotage: dict[str, Callable[[dict[str, Any]], None]] = {}
    record_failures: dict[str, int] = {}

    def record(event: dict[str, Any]) -> dict[str, Any]:
        run = str(event.get("executionName"))
        if record_failures.get(run, 0) > 0:
            record_failures[run] -= 1
            raise ConnectionError("ProvisionedThroughputExceededException (injected)")
        return record_run(event, records, sns, topic, settings).to_dict()

    def prepare(event: dict[str, Any]) -> dict[str, Any]:
        parsed = PrepareRunEvent.parse(event)
        plan = prepare_run(
            parsed,
            s3=s3,
            sagemaker=sagemaker,
            records=records,
            # The three runs train at once, as three stacks would: each has its own run lock.
            queue=RunQueue(dynamodb, TABLE, f"{STACK}-{parsed.execution_name}"),
            settings=settings,
            now=datetime.now(UTC),
        )
        sabotage.get(plan["runId"], lambda _: None)(plan)
        plans[plan["runId"]] = plan
        return plan

    handlers: dict[str, Callable[[Any], Any]] = {
        "PrepareRun": prepare,
        "EvaluateModels": lambda event: promotion.evaluate(
            s3, RunState.parse(event), 0.0
        ).to_dict(),
        "CleanupResources": lambda event: {"deleted": {}, "kept": {}},
        "RecordRun": record,
    }
    runtime = LocalSageMaker(server.client("s3"), work_dir, settings=FAST_SETTINGS)
    lambdas = FakeLambdas()
    moto_patches.install(sagemaker=runtime, invoke_lambda=lambdas)
    try:
        arns = {}
        for key, handler in handlers.items():
            name = unique(f"{STACK}-{key.lower()}")
            arns[f"{key}FunctionArn"] = create_function(server.client("lambda"), name)
            lambdas.handlers[name] = handler
        definition = ASL_PATH.read_text()
        for placeholder, value in {**arns, "SageMakerRoleArn": ROLE_ARN}.items():
            definition = definition.replace("${" + placeholder + "}", value)
        sfn = server.client("stepfunctions")
        yield Stack(
            server=server,
            runtime=runtime,
            settings=settings,
            state_machine_arn=create_state_machine(sfn, definition, unique(f"{STACK}-retrain")),
            plans=plans,
            sabotage=sabotage,
            record_failures=record_failures,
            lambdas=lambdas,
            s3=s3,
            sagemaker=sagemaker,
            sfn=sfn,
            records=records,
        )
    finally:
        moto_patches.uninstall()
        runtime.close()


def _evaluation(stack: Stack, job: str) -> dict[str, Any]:
    """``evaluation.json`` of a job, as train.py wrote it."""
    key = f"{layout.MODELS_PREFIX}{job}/output/output.tar.gz"
    body = stack.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        member = archive.extractfile(layout.EVALUATION_FILE)
        assert member is not None
        document: dict[str, Any] = json.loads(member.read())
    return document


def _runtime_log(stack: Stack, job: str) -> str:
    """The local runtime's notes in a job's log (``[local-sagemaker] checkpoints: ...``)."""
    log_file = Path(stack.runtime.describe_training_job(job)["LocalRuntime"]["LogFile"])
    notes = [line for line in log_file.read_text().splitlines() if "[local-sagemaker]" in line]
    return "\n".join(notes)


def _job_is_training(stack: Stack, job: str) -> bool:
    if job not in stack.runtime.list_training_jobs():
        return False
    return bool(stack.runtime.describe_training_job(job)["SecondaryStatus"] == "Training")


def test_spot_capacity_that_never_comes_is_retried_once_on_demand_from_the_checkpoints(
    stack: Stack,
) -> None:
    never, reclaimed, broken = (unique(f"spot-{kind}") for kind in ("never", "reclaimed", "broken"))
    spot = {run: layout.sagemaker_name(run) for run in (never, reclaimed, broken)}
    on_demand = {run: layout.sagemaker_name(run, layout.ON_DEMAND_JOB_SUFFIX) for run in spot}
    # Given a spot job that never gets capacity, one that checkpoints and is then interrupted
    # for good, and one whose training itself fails (an invalid number of rounds)
    stack.runtime.inject_spot_capacity_never_arrives(spot[never])
    stack.runtime.inject_spot_interruption(spot[reclaimed], after_checkpoints=1)
    stack.sabotage[broken] = lambda plan: plan["trainingJob"]["HyperParameters"].update(
        num_round="0"
    )

    # When the three runs start together
    executions = {run: stack.start(run) for run in spot}
    # (the reclaimed job's capacity vanishes once its first attempt trains: its interruption
    # then finds no capacity to come back to)
    wait_until(lambda: _job_is_training(stack, spot[reclaimed]), timeout=30)
    stack.runtime.inject_spot_capacity_never_arrives(spot[reclaimed])
    finished = {run: wait_execution(stack.sfn, arn, timeout=60) for run, arn in executions.items()}

    # Then the two capacity failures were retried on demand, and promoted
    assert {run: d["status"] for run, d in finished.items()} == {
        never: "SUCCEEDED",
        reclaimed: "SUCCEEDED",
        broken: "FAILED",
    }
    for run in (never, reclaimed):
        path = stack.entered(executions[run])
        assert path[path.index("Train") :][:7] == [
            "Train",
            "CanTrainOnDemand",
            "ParseSpotFailure",
            "SpotCapacityFailed",
            "FallBackOnDemand",
            "TrainOnDemand",
            "EvaluateModels",
        ], path
        # The spot job ran out of wait time; the on-demand job is the same request on demand,
        # reading and writing the same checkpoints
        spot_job = stack.sagemaker.describe_training_job(TrainingJobName=spot[run])
        assert (spot_job["TrainingJobStatus"], spot_job["SecondaryStatus"]) == (
            "Stopped",
            "MaxWaitTimeExceeded",
        )
        retry = stack.sagemaker.describe_training_job(TrainingJobName=on_demand[run])
        assert retry["TrainingJobStatus"] == "Completed"
        assert retry["EnableManagedSpotTraining"] is False
        assert retry["CheckpointConfig"] == spot_job["CheckpointConfig"]
        assert retry["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/checkpoints/{spot[run]}/"
        assert "MaxWaitTimeInSeconds" not in retry["StoppingCondition"]
        tags = stack.sagemaker.list_tags(ResourceArn=retry["TrainingJobArn"])["Tags"]
        assert {"Key": "refit:capacity", "Value": "on-demand"} in tags
        assert {"Key": "refit:stack", "Value": STACK} in tags
        # And the run record says so, with the on-demand job's time and no spot savings
        record = stack.records.get_run(run)
        assert record is not None
        assert record["status"] == "PROMOTED"
        assert record["trainingJobName"] == on_demand[run]
        assert record["managedSpotTraining"] is False
        assert record["spotSavingsPercent"] == 0.0
        assert record["billableTimeInSeconds"] == record["trainingTimeInSeconds"] > 0
        fallback = record["capacityFallback"]
        assert fallback["from"] == "spot" and fallback["to"] == "on-demand"
        assert fallback["reason"] == "MaxWaitTimeExceeded"
        assert (fallback["spotJobName"], fallback["onDemandJobName"]) == (
            spot[run],
            on_demand[run],
        )
        assert fallback["spotTrainingTimeInSeconds"] >= LIMIT_SECONDS
        assert record["metrics"]["challengerRounds"] == ROUNDS

    # The spot job that never got capacity never ran (nor billed): the retry trained from
    # scratch, finding no checkpoint
    assert stack.runtime.describe_training_job(spot[never])["LocalRuntime"]["Attempts"] == 0
    never_record = stack.records.get_run(never)
    assert never_record is not None
    assert never_record["capacityFallback"]["spotBillableTimeInSeconds"] == 0
    from_scratch = _evaluation(stack, on_demand[never])
    assert from_scratch["resumedFromRound"] == 0
    assert "checkpoints: " not in _runtime_log(stack, on_demand[never])

    # The reclaimed job checkpointed, was interrupted once and never restarted (billed only
    # for what it ran); the on-demand job downloaded its checkpoints, resumed from the newest
    # and boosted only the missing rounds, to the very model an uninterrupted job builds
    reclaimed_spot = stack.runtime.describe_training_job(spot[reclaimed])["LocalRuntime"]
    assert (reclaimed_spot["Interruptions"], reclaimed_spot["Attempts"]) == (1, 1)
    assert "checkpoints: " in _runtime_log(stack, on_demand[reclaimed])
    resumed = _evaluation(stack, on_demand[reclaimed])
    assert CHECKPOINT_INTERVAL <= resumed["resumedFromRound"] < ROUNDS
    assert resumed["challengerRounds"] == ROUNDS
    assert resumed["challenger"] == pytest.approx(from_scratch["challenger"], rel=1e-9)
    reclaimed_record = stack.records.get_run(reclaimed)
    assert reclaimed_record is not None
    assert reclaimed_record["metrics"]["resumedFromRound"] == resumed["resumedFromRound"]
    assert reclaimed_record["capacityFallback"]["spotBillableTimeInSeconds"] > 0

    # And a spot job that failed for its own reason is not retried: its failure is the run's
    path = stack.entered(executions[broken])
    assert "TrainOnDemand" not in path
    assert path[path.index("Train") :] == [
        "Train",
        "CanTrainOnDemand",
        "ParseSpotFailure",
        "SpotCapacityFailed",
        "TrainingFailed",
        "RecordFailure",
        "RunFailed",
    ]
    assert on_demand[broken] not in stack.runtime.list_training_jobs()
    record = stack.records.get_run(broken)
    assert record is not None
    assert record["status"] == "FAILED"
    assert "capacityFallback" not in record
    assert record["trainingJobName"] == spot[broken]
    assert record["error"]["Error"] == "States.TaskFailed"
    assert record["error"]["TrainingJobStatus"] == "Failed"
    assert "num_round" in record["error"]["FailureReason"]


def test_a_record_that_fails_once_is_written_by_the_retry(stack: Stack) -> None:
    # Given a run whose first RecordRun call fails (the function raised: a throttled table)
    run = unique("record-retry")
    stack.record_failures[run] = 1
    # When it runs on capacity that is there
    finished = wait_execution(stack.sfn, stack.start(run), timeout=60)
    # Then the record state retried the idempotent RecordRun, which wrote the run as promoted
    assert finished["status"] == "SUCCEEDED", finished
    path = stack.entered(finished["executionArn"])
    assert "RecordPromoted" in path and "RecordNotWritten" not in path, path
    record_calls = [  # RecordRun's payload alone carries an outcome
        e for _, e in stack.lambdas.calls if e.get("executionName") == run and "outcome" in e
    ]
    assert len(record_calls) == 2
    record = stack.records.get_run(run)
    assert record is not None and record["status"] == "PROMOTED", record
