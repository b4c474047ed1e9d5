"""The demo scenario: five refit runs through the local cloud, each step checked as it happens.

``python -m refit_cli.demo`` prints its progress and a table; ``tests/e2e`` asserts on the
evidence each step returns. Both drive the application only through its public interfaces:

- runs are started by **uploads** (``data/train/`` → EventBridge → SQS → StartRetrain → Step
  Functions), except steps 4 and 5, started by hand exactly as ``refit start`` and
  ``refit rollback`` do;
- the scenario waits on the Step Functions API (``list_executions``, ``describe_execution``,
  ``get_execution_history``), reads run records with :class:`refit.ledger.run_records.RunRecords`,
  calls the endpoint through ``sagemaker-runtime`` and inspects SageMaker and S3 with boto3.

Two local-only handles are used on purpose: the cloud's fault injection (one spot interruption
in step 2) and the local runtime's ``LocalRuntime`` view of a training job (interruptions,
attempts, log file), which double-checks what the public DescribeTrainingJob says.

The data is scikit-learn's copy of the Wisconsin breast cancer data set (569 rows, 30 features,
binary label), shuffled with a fixed seed and delivered in batches:

1. **initial**: 140 rows → full training → the endpoint is created and answers; its predictions
   are those of ``model.tar.gz`` loaded directly with xgboost.
2. **update**: 140 new rows in two files uploaded together (one run: the batching window) →
   incremental spot training from the champion, interrupted once and resumed from a checkpoint
   → better on the held-out set → the endpoint is updated in place (same name and ARN, new
   config, new predictions) → the previous model and endpoint config are deleted
   (``PreviousModelsToKeep=0``).
3. **corrupted**: 80 rows from another source whose labels are inverted → the challenger scores
   far worse → rejected: no model is created, the endpoint keeps its config and predictions.
4. **batch**: records to score are uploaded to ``batch/input/``, then a run is started by hand
   with ``{"deploymentMode": "batch"}`` (a per-run override; the stack's ``DeploymentMode``
   parameter sets the default for every run). It retrains from scratch (``trainingMode: full``)
   on the trusted source only (``prefix: data/train/clinic-a/``), passes the same gate against
   the champion, and its transform writes one prediction per record. The endpoint is untouched.
5. **rollback**: a run started by hand exactly as ``refit rollback`` does puts step 1's model
   (the newest approved one older than the live step 2 model) back on the endpoint through the
   promotion path, without training: the endpoint answers with step 1's predictions again and
   step 2's package is rejected.

Outcomes are deterministic: fixed seed, fixed data order, XGBoost's exact CPU algorithm without
sampling (a job resumed from a checkpoint builds the same trees as an uninterrupted one). With
seed 9 the margins are wide: step 2 lowers the held-out logloss by about 33 %, step 3 raises it
about fiftyfold, step 4 lowers it by about 8 %. Step 2 brings no more rows than the champion was
trained on: with three times as many, the growth rule (``FullRetrainGrowth``) would retrain from
scratch instead of continuing the champion.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
from botocore.exceptions import ClientError  # type: ignore[import-untyped,unused-ignore]

from local_cloud.cloud import LocalCloud
from local_cloud.sagemaker import RuntimeSettings
from refit import layout
from refit.ledger.run_records import RunRecords
from refit_cli.cli import build_execution_input, manual_execution_name, rollback_execution_input

Matrix = npt.NDArray[np.float64]
Progress = Callable[[str], None]
StepT = TypeVar("StepT")

# --- The stack and runtime the scenario runs on ------------------------------------------------

#: Template parameter overrides: a model small enough to train in seconds, short waits.
STACK_PARAMETERS: Mapping[str, str] = {
    "Objective": "binary:logistic",
    "EvaluationMetric": "logloss",
    "NumRoundsFull": "20",
    "NumRoundsIncremental": "10",
    "LearningRate": "0.3",  # few rounds: larger steps, full and appended
    "IncrementalLearningRate": "0.3",
    "CheckpointIntervalRounds": "2",
    "UseSpotTraining": "true",
    # Only the live model/config pair survives a promotion: step 2 shows cleanup deleting.
    "PreviousModelsToKeep": "0",
    # Long enough to gather step 2's two files into one run.
    "BatchingWindowSeconds": "2",
    # Below AWS's minimum (5): local endpoints are ready within a second.
    "EndpointPollSeconds": "1",
    # Switch at once, no baking: tests/integration/test_rollout.py shows canary and rollback.
    "RolloutMode": "AllAtOnce",
    "RolloutBakeSeconds": "0",
}

#: Local runtime knobs: poll and sync often (jobs last seconds); bill spot time at 30 % of the
#: on-demand price, a typical managed-spot discount, so the savings column means something.
RUNTIME_SETTINGS = RuntimeSettings(
    poll_interval_seconds=0.1,
    checkpoint_sync_interval_seconds=0.2,
    spot_price_fraction=0.3,
)

#: train.py's test hook: seconds slept after each boosting round. 569 rows train in
#: milliseconds; at 0.2 s a round, the injected interruption lands mid-training (after the
#: first checkpoint upload) the way it would on a job of realistic size.
ROUND_DELAY_VARIABLE = "REFIT_TEST_ROUND_DELAY"
ROUND_DELAY_SECONDS = "0.2"

TRIGGER_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 240.0
POLL_SECONDS = 0.5

# --- The data ----------------------------------------------------------------------------------

SEED = 9
TEST_ROWS = 169
INITIAL_ROWS = 140
UPDATE_ROWS = (70, 70)
CORRUPTED_ROWS = 80
TO_SCORE_ROWS = 40  # 169 + 140 + 140 + 80 + 40 = all 569 rows, each used once
PROBE_ROWS = 20  # held-out rows sent to the endpoint before and after each step

TRUSTED_PREFIX = f"{layout.TRAIN_PREFIX}clinic-a/"
TEST_KEY = f"{layout.TEST_PREFIX}holdout.csv"
INITIAL_KEY = f"{TRUSTED_PREFIX}batch-1.csv"
UPDATE_KEYS = (f"{TRUSTED_PREFIX}batch-2-part-1.csv", f"{TRUSTED_PREFIX}batch-2-part-2.csv")
CORRUPTED_KEY = f"{layout.TRAIN_PREFIX}clinic-b/batch-3.csv"
TO_SCORE_KEY = f"{layout.BATCH_INPUT_PREFIX}patients.csv"


class ExpectationFailed(AssertionError):
    """A step did not happen as described; the message says what was expected and seen."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ExpectationFailed(message)


@dataclass(frozen=True)
class Batch:
    """One CSV object: label first (refit's format), or features only (records to score)."""

    key: str
    features: Matrix
    labels: Matrix | None

    @property
    def rows(self) -> int:
        return int(self.features.shape[0])

    def csv(self) -> bytes:
        data = (
            self.features if self.labels is None else np.column_stack([self.labels, self.features])
        )
        buffer = io.StringIO()
        np.savetxt(buffer, data, delimiter=",", fmt="%.10g")
        return buffer.getvalue().encode()


@dataclass(frozen=True)
class ScenarioData:
    test: Batch
    initial: Batch
    update: tuple[Batch, ...]
    corrupted: Batch
    to_score: Batch

    @property
    def probe(self) -> Matrix:
        """Held-out feature rows whose predictions are compared across steps."""
        return self.test.features[:PROBE_ROWS]


def load_data(seed: int = SEED) -> ScenarioData:
    """Breast cancer rows from scikit-learn (shipped inside the wheel: no download)."""
    from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

    features, labels = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(labels))
    sizes = [TEST_ROWS, INITIAL_ROWS, *UPDATE_ROWS, CORRUPTED_ROWS, TO_SCORE_ROWS]
    if sum(sizes) != len(labels):
        raise ValueError(f"batch sizes add up to {sum(sizes)}, the data set has {len(labels)}")
    parts = np.split(order, np.cumsum(sizes)[:-1])

    def batch(key: str, rows: npt.NDArray[np.intp], *, labelled: bool = True) -> Batch:
        x = np.asarray(features[rows], dtype=np.float64)
        y = np.asarray(labels[rows], dtype=np.float64) if labelled else None
        return Batch(key, x, y)

    test, initial, update_1, update_2, corrupted, to_score = parts
    bad = batch(CORRUPTED_KEY, corrupted)
    assert bad.labels is not None
    return ScenarioData(
        test=batch(TEST_KEY, test),
        initial=batch(INITIAL_KEY, initial),
        update=(batch(UPDATE_KEYS[0], update_1), batch(UPDATE_KEYS[1], update_2)),
        # Clinic B encodes the diagnosis the other way round: every label is inverted.
        corrupted=Batch(bad.key, bad.features, 1.0 - bad.labels),
        to_score=batch(TO_SCORE_KEY, to_score, labelled=False),
    )


@contextlib.contextmanager
def local_cloud(*, port: int | None = None, state_dir: Path | None = None) -> Iterator[LocalCloud]:
    """A started :class:`LocalCloud` with the scenario's parameters, closed on exit.

    Training subprocesses inherit this process's environment: the round delay is set for the
    cloud's lifetime and restored afterwards.
    """
    previous = os.environ.get(ROUND_DELAY_VARIABLE)
    os.environ[ROUND_DELAY_VARIABLE] = ROUND_DELAY_SECONDS
    try:
        with LocalCloud(
            port=port,
            state_dir=state_dir,
            parameters=STACK_PARAMETERS,
            runtime_settings=RUNTIME_SETTINGS,
        ) as cloud:
            yield cloud
    finally:
        if previous is None:
            os.environ.pop(ROUND_DELAY_VARIABLE, None)
        else:
            os.environ[ROUND_DELAY_VARIABLE] = previous


# --- What each step returns --------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One finished execution and its run record."""

    step: str
    execution_arn: str
    execution_status: str
    record: Mapping[str, Any]
    seconds: float  # upload (or StartExecution) → execution finished

    @property
    def run_id(self) -> str:
        return str(self.record["runId"])

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    @property
    def training_mode(self) -> str:
        # A rollback run trains nothing: its "mode" is the rollback itself.
        if self.record.get("kind") == "rollback":
            return "rollback"
        return str(self.record.get("trainingMode"))

    @property
    def deployment_mode(self) -> str:
        return str(self.record.get("deploymentMode"))

    @property
    def rows(self) -> int | None:
        rows = (self.record.get("data") or {}).get("rows")
        return int(rows) if rows is not None else None

    def metric(self, name: str) -> Any:
        return (self.record.get("metrics") or {}).get(name)

    @property
    def challenger(self) -> float | None:
        value = self.metric("challenger")
        return float(value) if value is not None else None

    @property
    def champion(self) -> float | None:
        value = self.metric("champion")
        return float(value) if value is not None else None

    @property
    def job_name(self) -> str:
        return str(self.record.get("trainingJobName"))

    @property
    def model_data_url(self) -> str:
        return str(self.record.get("modelDataUrl"))

    @property
    def training_seconds(self) -> int | None:
        return self.record.get("trainingTimeInSeconds")

    @property
    def billable_seconds(self) -> int | None:
        return self.record.get("billableTimeInSeconds")

    @property
    def spot_savings_percent(self) -> float | None:
        value = self.record.get("spotSavingsPercent")
        return float(value) if value is not None else None


@dataclass(frozen=True)
class Endpoint:
    name: str
    arn: str
    config_name: str
    status: str
    creation_time: Any


@dataclass(frozen=True)
class InitialStep:
    run: Run
    endpoint: Endpoint
    predictions: Matrix  # the endpoint's answers for the probe rows
    artifact_predictions: Matrix  # model.tar.gz loaded with xgboost, same rows


@dataclass(frozen=True)
class TrainingJob:
    name: str
    managed_spot: bool
    secondary_statuses: tuple[str, ...]  # public DescribeTrainingJob transitions
    local_interruptions: int  # LocalRuntime
    local_attempts: int
    log_resume_rounds: tuple[int, ...]  # "resuming from checkpoint round N" in the job log
    log_file: str

    @property
    def interruptions(self) -> int:
        return self.secondary_statuses.count("Interrupted")


@dataclass(frozen=True)
class UpdateStep:
    run: Run
    executions_started: int  # by the two-file upload burst
    endpoint_before: Endpoint
    endpoint: Endpoint
    predictions_before: Matrix
    predictions: Matrix
    artifact_predictions: Matrix
    job: TrainingJob
    deleted: Mapping[str, list[str]]  # the run record's cleanup report
    gone: tuple[str, ...]  # resources checked absent: "model/<name>", "endpoint-config/<name>"
    live: tuple[str, ...]  # resources checked present


@dataclass(frozen=True)
class RejectedStep:
    run: Run
    endpoint_before: Endpoint
    endpoint: Endpoint
    predictions_before: Matrix
    predictions: Matrix
    challenger_model_exists: bool


@dataclass(frozen=True)
class BatchStep:
    run: Run
    execution_input: Mapping[str, Any]
    endpoint_before: Endpoint
    endpoint: Endpoint
    output_keys: tuple[str, ...]
    predictions: Matrix  # every line of the transform output, in order
    artifact_predictions: Matrix  # the run's model.tar.gz on the same records


@dataclass(frozen=True)
class RollbackStep:
    run: Run
    execution_input: Mapping[str, Any]
    endpoint_before: Endpoint
    endpoint: Endpoint
    predictions_before: Matrix  # step 2's model, live before the rollback
    predictions: Matrix  # served after it
    restored_predictions: Matrix  # step 1's model.tar.gz loaded directly
    package_statuses: Mapping[str, str]  # run id -> its package's approval after the rollback


# --- The scenario ------------------------------------------------------------------------------


@dataclass
class Scenario:
    """The five steps, in order, against a running :class:`LocalCloud`."""

    cloud: LocalCloud
    data: ScenarioData = field(default_factory=load_data)
    progress: Progress = field(default=lambda message: None)
    initial: InitialStep | None = None
    update: UpdateStep | None = None
    rejected: RejectedStep | None = None
    batch: BatchStep | None = None
    rollback: RollbackStep | None = None

    def __post_init__(self) -> None:
        self.info = self.cloud.connection_info()
        self.s3 = self.cloud.client("s3")
        self.sfn = self.cloud.client("stepfunctions")
        self.sagemaker = self.cloud.client("sagemaker")
        self.sagemaker_runtime = self.cloud.client("sagemaker-runtime")
        self.records = RunRecords(
            self.cloud.client("dynamodb"), self.info.runs_table, self.info.stack_name
        )
        self._test_uploaded = False

    @property
    def runs(self) -> list[Run]:
        steps: list[Any] = [self.initial, self.update, self.rejected, self.batch, self.rollback]
        return [step.run for step in steps if step is not None]

    # -- steps -------------------------------------------------------------------------------

    def upload_test_set(self) -> None:
        self._put(self.data.test, "the held-out set every challenger and champion is scored on")
        self._test_uploaded = True

    def step_initial(self) -> InitialStep:
        """Initial data → full training → the endpoint is created and answers."""
        if not self._test_uploaded:
            self.upload_test_set()
        run = self._triggered_run("1 initial", [self.data.initial])
        self._expect_run(run, status="PROMOTED", training_mode="full", deployment_mode="endpoint")
        expect(
            run.champion is None, f"step 1: a champion was scored ({run.champion}): expected none"
        )
        endpoint = self.endpoint()
        expect(
            endpoint.status == "InService",
            f"step 1: endpoint {endpoint.name} is {endpoint.status}, expected InService",
        )
        expect(
            endpoint.config_name == run.record.get("endpointConfigName") == run.job_name,
            f"step 1: endpoint config {endpoint.config_name}, run record says "
            f"{run.record.get('endpointConfigName')}, job {run.job_name}",
        )
        predictions = self.predict(self.data.probe)
        artifact = self.artifact_predictions(run.model_data_url, self.data.probe)
        self._expect_same_predictions("step 1", predictions, artifact, run.model_data_url)
        self.progress(
            f"ok: endpoint {endpoint.name} InService on config {endpoint.config_name}; "
            f"its {len(predictions)} predictions match model.tar.gz"
        )
        self.initial = InitialStep(run, endpoint, predictions, artifact)
        return self.initial

    def step_update(self) -> UpdateStep:
        """New data → incremental spot training (interrupted once, resumed) → in-place update."""
        initial = self._require(self.initial, "step 1")
        before = self.endpoint()
        predictions_before = self.predict(self.data.probe)
        self.cloud.inject_spot_interruption(after_checkpoints=1)
        self.progress("armed one spot interruption for the next spot training job")
        known = self._execution_arns()
        run = self._triggered_run("2 update", list(self.data.update))
        started = self._execution_arns() - known
        expect(
            len(started) == 1,
            f"step 2: the two-file upload started {len(started)} executions, expected 1 "
            "(the batching window gathers an upload burst into one run)",
        )
        self._expect_run(
            run, status="PROMOTED", training_mode="incremental", deployment_mode="endpoint"
        )
        challenger, champion = run.challenger, run.champion
        expect(
            challenger is not None and champion is not None and challenger < champion,
            f"step 2: challenger logloss {challenger} should beat the champion's {champion}",
        )
        job = self._training_job(run.job_name)
        self._expect_resumed(run, job, initial.run)

        endpoint = self.endpoint()
        expect(
            endpoint.name == before.name == self.info.endpoint_name,
            f"step 2: endpoint name {endpoint.name}, expected {self.info.endpoint_name}",
        )
        expect(
            endpoint.arn == before.arn and endpoint.creation_time == before.creation_time,
            f"step 2: endpoint {endpoint.name} was recreated (ARN/creation time changed), "
            "expected an in-place update",
        )
        expect(
            endpoint.status == "InService" and endpoint.config_name == run.job_name,
            f"step 2: endpoint is {endpoint.status} on config {endpoint.config_name}, "
            f"expected InService on the new config {run.job_name}",
        )
        expect(
            endpoint.config_name != before.config_name,
            f"step 2: endpoint config still {before.config_name}",
        )
        predictions = self.predict(self.data.probe)
        artifact = self.artifact_predictions(run.model_data_url, self.data.probe)
        self._expect_same_predictions("step 2", predictions, artifact, run.model_data_url)
        expect(
            not np.allclose(predictions, predictions_before, rtol=0, atol=1e-6),
            "step 2: the endpoint's predictions did not change after the promotion",
        )

        cleanup = run.record.get("cleanup") or {}
        deleted = {k: list(v) for k, v in (cleanup.get("deleted") or {}).items()}
        stale_model, stale_config = initial.run.job_name, initial.endpoint.config_name
        expect(
            stale_model in deleted.get("models", [])
            and stale_config in deleted.get("endpointConfigs", []),
            f"step 2: cleanup should delete step 1's model and endpoint config "
            f"({stale_model}), it reported {deleted}",
        )
        gone = (f"model/{stale_model}", f"endpoint-config/{stale_config}")
        live = (f"model/{run.job_name}", f"endpoint-config/{endpoint.config_name}")
        for resource in gone:
            expect(not self.exists(resource), f"step 2: stale {resource} still exists")
        for resource in live:
            expect(self.exists(resource), f"step 2: live {resource} is missing")
        self.progress(
            f"ok: job {run.job_name} interrupted {job.interruptions}x, resumed from round "
            f"{run.metric('resumedFromRound')} (champion had {run.metric('championRounds')})"
        )
        self.progress(
            f"ok: endpoint {endpoint.name} updated in place to config {endpoint.config_name}; "
            "new predictions match model.tar.gz"
        )
        self.progress(f"ok: cleanup deleted {', '.join(gone)}; {', '.join(live)} remain")
        self.update = UpdateStep(
            run=run,
            executions_started=len(started),
            endpoint_before=before,
            endpoint=endpoint,
            predictions_before=predictions_before,
            predictions=predictions,
            artifact_predictions=artifact,
            job=job,
            deleted=deleted,
            gone=gone,
            live=live,
        )
        return self.update

    def step_corrupted(self) -> RejectedStep:
        """A batch with inverted labels → challenger rejected, endpoint unchanged.

        The incremental job sees the champion fail on the new rows far worse than on its test
        data (training/refit_incremental.py's drift check), so it learns them from scratch
        instead of replaying the old relationship; the gate, on the true test data, rejects it.
        """
        self._require(self.update, "step 2")
        before = self.endpoint()
        predictions_before = self.predict(self.data.probe)
        run = self._triggered_run("3 corrupted", [self.data.corrupted])
        self._expect_run(run, status="REJECTED", training_mode="full", deployment_mode="endpoint")
        reason = str(run.record.get("trainingModeReason") or "")
        expect(reason.startswith("drift: "), f"step 3: no drift seen ({reason or 'no reason'})")
        challenger, champion = run.challenger, run.champion
        expect(
            challenger is not None and champion is not None and challenger > champion,
            f"step 3: challenger logloss {challenger} should be worse than the champion's "
            f"{champion}",
        )
        expect(run.record.get("decision") == "reject", f"step 3: decision {run.record}")
        endpoint = self.endpoint()
        expect(
            endpoint.config_name == before.config_name and endpoint.status == "InService",
            f"step 3: endpoint is {endpoint.status} on {endpoint.config_name}, expected "
            f"InService on the old config {before.config_name}",
        )
        predictions = self.predict(self.data.probe)
        expect(
            np.array_equal(predictions, predictions_before),
            "step 3: the endpoint's predictions changed although the challenger was rejected",
        )
        challenger_model = self.exists(f"model/{run.job_name}")
        expect(not challenger_model, f"step 3: a model {run.job_name} was created for a reject")
        self.progress(
            f"ok: rejected (challenger {challenger:.4f} vs champion {champion:.4f}); endpoint "
            f"still on {endpoint.config_name}, same predictions"
        )
        self.rejected = RejectedStep(
            run, before, endpoint, predictions_before, predictions, challenger_model
        )
        return self.rejected

    def step_batch(self) -> BatchStep:
        """Records to score + a run started by hand in batch mode → one prediction per record."""
        self._require(self.rejected, "step 3")
        before = self.endpoint()
        self._put(self.data.to_score, "records to score (no label column)")
        # What `refit start --full --prefix data/train/clinic-a/ --mode batch` sends.
        document = build_execution_input(
            argparse.Namespace(full=True, incremental=False, prefix=TRUSTED_PREFIX, mode="batch")
        )
        name = manual_execution_name(time.time())
        started_at = time.monotonic()
        arn = self.sfn.start_execution(
            stateMachineArn=self.info.state_machine_arn, name=name, input=json.dumps(document)
        )["executionArn"]
        self.progress(
            f"started run {name} by hand (= refit start --full --prefix {TRUSTED_PREFIX} "
            f"--mode batch): {json.dumps(document)}"
        )
        run = self._finished_run("4 batch", arn, started_at)
        self._expect_run(run, status="PROMOTED", training_mode="full", deployment_mode="batch")
        challenger, champion = run.challenger, run.champion
        expect(
            challenger is not None and champion is not None and challenger < champion,
            f"step 4: challenger logloss {challenger} should beat the champion's {champion}",
        )
        expect(
            run.record.get("transformJobStatus") == "Completed",
            f"step 4: transform job {run.record.get('transformJobName')} is "
            f"{run.record.get('transformJobStatus')}, expected Completed",
        )
        output_prefix = f"{layout.BATCH_OUTPUT_PREFIX}{run.run_id}/"
        listed = self.s3.list_objects_v2(Bucket=self.info.bucket, Prefix=output_prefix)
        output_keys = tuple(sorted(o["Key"] for o in listed.get("Contents", [])))
        expected_key = f"{output_prefix}{Path(TO_SCORE_KEY).name}.out"
        marker = f"{output_prefix}{layout.SUCCESS_MARKER}"
        expect(
            output_keys == tuple(sorted((expected_key, marker))),
            f"step 4: batch output {list(output_keys)}, expected [{expected_key}, {marker}]",
        )
        body = self.s3.get_object(Bucket=self.info.bucket, Key=expected_key)["Body"].read()
        predictions = _parse_predictions(body)
        expect(
            len(predictions) == self.data.to_score.rows,
            f"step 4: {len(predictions)} predictions for {self.data.to_score.rows} records",
        )
        artifact = self.artifact_predictions(run.model_data_url, self.data.to_score.features)
        self._expect_same_predictions("step 4", predictions, artifact, run.model_data_url)
        endpoint = self.endpoint()
        expect(
            endpoint.config_name == before.config_name and endpoint.status == "InService",
            f"step 4: a batch run changed the endpoint to {endpoint.config_name} "
            f"({endpoint.status}); expected it untouched on {before.config_name}",
        )
        self.progress(
            f"ok: {len(predictions)} predictions in s3://{self.info.bucket}/{expected_key} "
            f"(one per record, = model.tar.gz), then {layout.SUCCESS_MARKER}; endpoint untouched"
        )
        self.batch = BatchStep(run, document, before, endpoint, output_keys, predictions, artifact)
        return self.batch

    def step_rollback(self) -> RollbackStep:
        """`refit rollback` → step 1's model back on the endpoint, through the promotion path."""
        initial = self._require(self.initial, "step 1")
        update = self._require(self.update, "step 2")
        self._require(self.batch, "step 4")
        before = self.endpoint()
        predictions_before = self.predict(self.data.probe)
        document = rollback_execution_input(None)  # what `refit rollback` sends
        name = manual_execution_name(time.time())
        started_at = time.monotonic()
        arn = self.sfn.start_execution(
            stateMachineArn=self.info.state_machine_arn, name=name, input=json.dumps(document)
        )["executionArn"]
        self.progress(f"started run {name} by hand (= refit rollback): {json.dumps(document)}")
        run = self._finished_run("5 rollback", arn, started_at)
        self._expect_run(
            run, status="RESTORED", training_mode="rollback", deployment_mode="endpoint"
        )
        target = initial.run.record.get("modelPackageArn")
        replaced = update.run.record.get("modelPackageArn")
        expect(
            run.record.get("modelPackageArn") == target
            and run.record.get("replacedModelPackageArn") == replaced,
            f"step 5: restored {run.record.get('modelPackageArn')} replacing "
            f"{run.record.get('replacedModelPackageArn')}; expected step 1's package {target} "
            f"replacing step 2's {replaced}",
        )
        endpoint = self.endpoint()
        expect(
            endpoint.status == "InService"
            and endpoint.arn == before.arn
            and endpoint.config_name == run.record.get("endpointConfigName") == run.run_id,
            f"step 5: endpoint {endpoint.name} is {endpoint.status} on {endpoint.config_name}; "
            f"expected the same endpoint InService on the rollback's config {run.run_id}",
        )
        predictions = self.predict(self.data.probe)
        restored = self.artifact_predictions(initial.run.model_data_url, self.data.probe)
        self._expect_same_predictions("step 5", predictions, restored, initial.run.model_data_url)
        statuses = {
            step_run.run_id: str(
                self.sagemaker.describe_model_package(
                    ModelPackageName=str(step_run.record.get("modelPackageArn"))
                )["ModelApprovalStatus"]
            )
            for step_run in (initial.run, update.run)
        }
        expect(
            statuses == {initial.run.run_id: "Approved", update.run.run_id: "Rejected"},
            f"step 5: packages {statuses}: expected step 1's Approved and step 2's Rejected",
        )
        self.progress(
            f"ok: step 1's model is back on {endpoint.name} (config {endpoint.config_name}), "
            "its predictions match its model.tar.gz; step 2's package is Rejected"
        )
        self.rollback = RollbackStep(
            run,
            document,
            before,
            endpoint,
            predictions_before,
            predictions,
            restored,
            statuses,
        )
        return self.rollback

    # -- runs --------------------------------------------------------------------------------

    def _triggered_run(self, step: str, batches: Sequence[Batch]) -> Run:
        """Upload ``batches`` to data/train/ and wait for the run the trigger starts for them."""
        known = self._execution_arns()
        started_at = time.monotonic()
        for batch in batches:
            self._put(batch, "starts a run through the trigger")
        keys = sorted(batch.key for batch in batches)
        arn = self._wait_for_triggered_execution(keys, known)
        return self._finished_run(step, arn, started_at)

    def _wait_for_triggered_execution(self, keys: list[str], known: set[str]) -> str:
        deadline = time.monotonic() + TRIGGER_TIMEOUT_SECONDS
        checked: set[str] = set(known)
        while time.monotonic() < deadline:
            for arn in sorted(self._execution_arns() - checked):
                checked.add(arn)
                document = json.loads(self.sfn.describe_execution(executionArn=arn)["input"])
                covered = sorted(o.get("key") for o in document.get("objects") or [])
                if covered == keys and document.get("source") == "s3":
                    self.progress(f"run {arn.rsplit(':', 1)[-1]} started by the trigger")
                    return arn
            time.sleep(POLL_SECONDS)
        raise ExpectationFailed(
            f"no execution covering exactly {keys} started within "
            f"{TRIGGER_TIMEOUT_SECONDS:.0f} s of the upload: the trigger path (EventBridge rule "
            "→ SQS → StartRetrain) did not fire, or split or merged the upload; see "
            "lambda-logs/StartRetrainFunction.log in the state directory"
        )

    def _finished_run(self, step: str, arn: str, started_at: float) -> Run:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        reported: set[str] = set()
        while True:
            described = self.sfn.describe_execution(executionArn=arn)
            self._report_states(arn, reported)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise ExpectationFailed(
                    f"step {step}: execution {arn} still RUNNING after {RUN_TIMEOUT_SECONDS:.0f} s"
                )
            time.sleep(POLL_SECONDS)
        seconds = time.monotonic() - started_at
        name = str(described["name"])
        record = self.records.get_run(name)
        expect(record is not None, f"step {step}: no run record for {name}")
        assert record is not None
        status = str(described["status"])
        expect(
            status == "SUCCEEDED",
            f"step {step}: execution {name} ended {status} (run record status "
            f"{record.get('status')}, error {record.get('error')})",
        )
        run = Run(step, arn, status, record, seconds)
        self.progress(
            f"run {name} finished {run.status} in {seconds:.1f} s "
            f"({run.training_mode} → {run.deployment_mode}, {run.rows} rows, logloss "
            f"challenger {_number(run.challenger)} / champion {_number(run.champion)})"
        )
        return run

    def _report_states(self, arn: str, reported: set[str]) -> None:
        """Report each task state the execution entered, once (endpoint polls included once)."""
        events = self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        for event in events:
            details = event.get("stateEnteredEventDetails")
            if not details or event["type"] != "TaskStateEntered":
                continue
            state = str(details["name"])
            if state not in reported:
                reported.add(state)
                self.progress(f"  state {state}")

    def _expect_run(
        self, run: Run, *, status: str, training_mode: str, deployment_mode: str
    ) -> None:
        seen = (run.status, run.training_mode, run.deployment_mode)
        wanted = (status, training_mode, deployment_mode)
        expect(
            seen == wanted,
            f"step {run.step}: run {run.run_id} is {'/'.join(seen)}, expected "
            f"{'/'.join(wanted)} (reason: {run.record.get('reason')}; error: "
            f"{run.record.get('error')})",
        )

    def _expect_resumed(self, run: Run, job: TrainingJob, previous: Run) -> None:
        resumed = run.metric("resumedFromRound")
        champion_rounds = run.metric("championRounds")
        challenger_rounds = run.metric("challengerRounds")
        expect(job.managed_spot, f"step 2: job {job.name} is not a managed spot job")
        expect(
            job.interruptions == 1 and job.local_interruptions == 1 and job.local_attempts == 2,
            f"step 2: job {job.name}: {job.interruptions} Interrupted transition(s), "
            f"{job.local_interruptions} interruption(s) and {job.local_attempts} attempt(s) in "
            "the local runtime; expected 1, 1 and 2 (did the job finish before its first "
            "checkpoint upload?)",
        )
        expect(
            champion_rounds == previous.metric("challengerRounds")
            and isinstance(resumed, int)
            and isinstance(challenger_rounds, int)
            and champion_rounds < resumed < challenger_rounds,
            f"step 2: resumedFromRound {resumed}, championRounds {champion_rounds}, "
            f"challengerRounds {challenger_rounds}: expected a resume from one of this job's own "
            "checkpoints (strictly between the champion's rounds and the final count)",
        )
        expect(
            job.log_resume_rounds == (resumed,),
            f"step 2: the job log ({job.log_file}) shows resumes from {job.log_resume_rounds}, "
            f"evaluation.json says {resumed}",
        )
        expect(
            run.spot_savings_percent is not None and run.spot_savings_percent > 0,
            f"step 2: spot savings {run.spot_savings_percent}%, expected > 0",
        )

    # -- AWS views ---------------------------------------------------------------------------

    def _put(self, batch: Batch, why: str) -> None:
        self.s3.put_object(Bucket=self.info.bucket, Key=batch.key, Body=batch.csv())
        self.progress(f"uploaded {batch.key} ({batch.rows} rows): {why}")

    def _execution_arns(self) -> set[str]:
        arns: set[str] = set()
        paginator = self.sfn.get_paginator("list_executions")
        for page in paginator.paginate(stateMachineArn=self.info.state_machine_arn):
            arns.update(e["executionArn"] for e in page["executions"])
        return arns

    def endpoint(self) -> Endpoint:
        described = self.sagemaker.describe_endpoint(EndpointName=self.info.endpoint_name)
        return Endpoint(
            name=str(described["EndpointName"]),
            arn=str(described["EndpointArn"]),
            config_name=str(described["EndpointConfigName"]),
            status=str(described["EndpointStatus"]),
            creation_time=described.get("CreationTime"),
        )

    def predict(self, rows: Matrix) -> Matrix:
        response = self.sagemaker_runtime.invoke_endpoint(
            EndpointName=self.info.endpoint_name,
            ContentType="text/csv",
            Accept="text/csv",
            Body=Batch("", rows, None).csv(),
        )
        return _parse_predictions(response["Body"].read())

    def artifact_predictions(self, model_data_url: str, rows: Matrix) -> Matrix:
        """Predictions of the model in ``model.tar.gz``, loaded directly with xgboost."""
        import xgboost as xgb

        location = urlparse(model_data_url)
        archive = self.s3.get_object(Bucket=location.netloc, Key=location.path.lstrip("/"))
        with tarfile.open(fileobj=io.BytesIO(archive["Body"].read())) as tar:
            member = tar.extractfile(layout.MODEL_FILE)
            expect(member is not None, f"{model_data_url} holds no {layout.MODEL_FILE}")
            assert member is not None
            raw = member.read()
        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        matrix = xgb.DMatrix(rows.astype(np.float32), missing=np.nan)
        return np.asarray(booster.predict(matrix), dtype=np.float64)

    def _expect_same_predictions(
        self, step: str, served: Matrix, artifact: Matrix, model_data_url: str
    ) -> None:
        expect(
            served.shape == artifact.shape and np.allclose(served, artifact, rtol=1e-5, atol=1e-6),
            f"{step}: predictions served {served[:5].tolist()}... differ from {model_data_url} "
            f"loaded directly {artifact[:5].tolist()}...",
        )

    def _training_job(self, name: str) -> TrainingJob:
        described = self.sagemaker.describe_training_job(TrainingJobName=name)
        local = self.cloud.sagemaker.describe_training_job(name)["LocalRuntime"]
        log_file = str(local["LogFile"])
        log_text = Path(log_file).read_text(encoding="utf-8", errors="replace")
        resumes = tuple(
            int(m) for m in re.findall(r"resuming from checkpoint round (\d+)", log_text)
        )
        return TrainingJob(
            name=name,
            managed_spot=bool(described.get("EnableManagedSpotTraining")),
            secondary_statuses=tuple(
                str(t["Status"]) for t in described.get("SecondaryStatusTransitions", [])
            ),
            local_interruptions=int(local["Interruptions"]),
            local_attempts=int(local["Attempts"]),
            log_resume_rounds=resumes,
            log_file=log_file,
        )

    def exists(self, resource: str) -> bool:
        kind, _, name = resource.partition("/")
        try:
            if kind == "model":
                self.sagemaker.describe_model(ModelName=name)
            elif kind == "endpoint-config":
                self.sagemaker.describe_endpoint_config(EndpointConfigName=name)
            else:
                raise ValueError(f"unknown resource kind {kind}")
        except ClientError as error:
            if "could not find" in str(error).lower():
                return False
            raise
        return True

    @staticmethod
    def _require(step: StepT | None, name: str) -> StepT:
        if step is None:
            raise ExpectationFailed(f"{name} has not run (or failed): the steps build on it")
        return step


def _parse_predictions(body: bytes) -> Matrix:
    lines = [line for line in body.decode().splitlines() if line.strip()]
    return np.array([float(line) for line in lines], dtype=np.float64)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
