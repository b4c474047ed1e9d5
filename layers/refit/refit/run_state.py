"""The state document as the states after training read it (see docs/architecture.md).

PrepareRun writes ``$.run``; later states add ``$.training``, ``$.evaluation``, ``$.endpoint``,
``$.endpointPolls``, ``$.transform``, ``$.cleanup``, ``$.cleanupError`` and ``$.error``, and
after a failed training job ``$.spotFailure`` (and ``$.capacityFallback`` when it was retried on
demand). The failure
path hands over whatever existed when something broke, so every section here is optional and a
field of the wrong type reads as absent: RecordRun must be able to record any run, however early
it failed.

Each handler parses its event once (``RunState.parse``) and reads typed fields after. Where a
consumer keeps data verbatim (the cleanup report, a Catch's JSON Cause) the section keeps it too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from refit.config import DEPLOYMENT_MODES, DeploymentMode


def section(document: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = document.get(key)
    return value if isinstance(value, Mapping) else None


def text(document: Mapping[str, Any] | None, key: str) -> str | None:
    value = None if document is None else document.get(key)
    return value if isinstance(value, str) and value else None


def integer(document: Mapping[str, Any] | None, key: str) -> int | None:
    value = None if document is None else document.get(key)
    # bool is an int subclass: a stray true must not read as 1 row or 1 second.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def number(document: Mapping[str, Any] | None, key: str) -> float | None:
    value = None if document is None else document.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def flag(document: Mapping[str, Any] | None, key: str) -> bool | None:
    value = None if document is None else document.get(key)
    return value if isinstance(value, bool) else None


def moment(document: Mapping[str, Any] | None, key: str) -> str | float | None:
    """A point in time as the state holds it: ISO 8601 text (``$$.State.EnteredTime``) or epoch
    seconds/milliseconds (``.sync`` outputs); ``refit.record_run.cost.parse_time`` reads both."""
    value = None if document is None else document.get(key)
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


@dataclass(frozen=True)
class DataSummary:
    accepted: int | None
    rejected: int | None
    rows: int | None
    manifest_uri: str | None
    rejected_files: list[Mapping[str, Any]]

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> DataSummary:
        files = data.get("rejectedFiles")
        return cls(
            accepted=integer(data, "accepted"),
            rejected=integer(data, "rejected"),
            rows=integer(data, "rows"),
            manifest_uri=text(data, "manifestUri"),
            rejected_files=[f for f in files if isinstance(f, Mapping)]
            if isinstance(files, list)
            else [],
        )


def _strings(document: Mapping[str, Any] | None) -> Mapping[str, str] | None:
    """A string-to-string map (a container environment); anything else reads as absent."""
    if not document or not all(isinstance(v, str) for v in document.values()):
        return None
    return dict(document)


@dataclass(frozen=True)
class DeployPlan:
    """``$.run.deploy``: the names the deployment states create."""

    model_name: str | None
    endpoint_config_name: str | None
    endpoint_name: str | None
    transform_job_name: str | None
    transform_output_path: str | None
    # What the deployment pays for (refit.record_run.cost): the endpoint fleet, the transform fleet,
    # and whether the endpoint existed (UpdateEndpoint, blue/green) or was created.
    instance_type: str | None = None
    instance_count: int | None = None
    endpoint_exists: bool | None = None
    transform_instance_type: str | None = None
    transform_instance_count: int | None = None
    # The serving container (refit.registry.lineage registers the model with it).
    image: str | None = None
    environment: Mapping[str, str] | None = None

    @classmethod
    def parse(cls, deploy: Mapping[str, Any]) -> DeployPlan:
        transform = section(deploy, "transform")
        output = section(transform, "TransformOutput") if transform else None
        transform_resources = section(transform, "TransformResources") if transform else None
        return cls(
            model_name=text(deploy, "modelName"),
            endpoint_config_name=text(deploy, "endpointConfigName"),
            endpoint_name=text(deploy, "endpointName"),
            transform_job_name=text(transform, "TransformJobName"),
            transform_output_path=text(output, "S3OutputPath"),
            instance_type=text(deploy, "instanceType"),
            instance_count=integer(deploy, "instanceCount"),
            endpoint_exists=flag(deploy, "endpointExists"),
            transform_instance_type=text(transform_resources, "InstanceType"),
            transform_instance_count=integer(transform_resources, "InstanceCount"),
            image=text(deploy, "image"),
            environment=_strings(section(deploy, "environment")),
        )


@dataclass(frozen=True)
class RunSection:
    """``$.run``, the RunPlan PrepareRun built, reduced to what the later states need."""

    run_id: str | None
    status: str | None
    training_mode: str | None
    deployment_mode: DeploymentMode | None
    metric: str | None
    data: DataSummary | None
    champion_model_name: str | None
    champion_exists: bool
    training_job_name: str | None
    managed_spot: bool | None
    on_demand_job_name: str | None
    deploy: DeployPlan | None
    # trainingJob.ResourceConfig (the on-demand retry uses the same resources).
    training_instance_type: str | None = None
    training_instance_count: int | None = None
    # The gate: a forced verdict from the execution input, and why the champion is not scored.
    forced_decision: Literal["promote", "reject"] | None = None
    champion_problem: str | None = None
    # "rollback" for a rollback run (refit.registry.rollback), which also names the package it
    # replaces.
    kind: str | None = None
    replaced_package_arn: str | None = None
    # When the run started, and the data window it trains in (refit.ledger.run_records.DataWindow).
    started_at: str | None = None
    data_window_since: str | None = None

    @property
    def is_rollback(self) -> bool:
        """A rollback run (refit.registry.rollback): it redeploys a registered model, trains
        nothing."""
        return self.kind == "rollback"

    @classmethod
    def parse(cls, run: Mapping[str, Any]) -> RunSection:
        mode = text(run, "deploymentMode")
        data = section(run, "data")
        champion = section(run, "champion")
        job = section(run, "trainingJob")
        on_demand = section(run, "onDemandTrainingJob")
        deploy = section(run, "deploy")
        resources = section(job, "ResourceConfig") if job else None
        return cls(
            run_id=text(run, "runId"),
            status=text(run, "status"),
            training_mode=text(run, "trainingMode"),
            deployment_mode=next((m for m in DEPLOYMENT_MODES if m == mode), None),
            metric=text(run, "metric"),
            data=DataSummary.parse(data) if data is not None else None,
            champion_model_name=text(champion, "modelName"),
            champion_exists=champion is not None,
            training_job_name=text(job, "TrainingJobName"),
            managed_spot=flag(job, "EnableManagedSpotTraining"),
            on_demand_job_name=text(on_demand, "TrainingJobName"),
            deploy=DeployPlan.parse(deploy) if deploy is not None else None,
            training_instance_type=text(resources, "InstanceType"),
            training_instance_count=integer(resources, "InstanceCount"),
            forced_decision=next(
                (d for d in ("promote", "reject") if d == run.get("forceDecision")), None
            ),
            champion_problem=text(run, "championProblem"),
            kind=text(run, "kind"),
            replaced_package_arn=text(section(run, "rollback"), "replacedModelPackageArn"),
            started_at=text(run, "startedAt"),
            data_window_since=text(section(run, "dataWindow"), "since"),
        )


@dataclass(frozen=True)
class TrainingResult:
    """``$.training``, the Train state's ``ResultSelector``."""

    job_name: str | None
    status: str | None
    model_data_url: str | None
    training_seconds: int | None
    billable_seconds: int | None

    @classmethod
    def parse(cls, training: Mapping[str, Any]) -> TrainingResult:
        return cls(
            job_name=text(training, "TrainingJobName"),
            status=text(training, "TrainingJobStatus"),
            model_data_url=text(training, "modelDataUrl"),
            training_seconds=integer(training, "TrainingTimeInSeconds"),
            billable_seconds=integer(training, "BillableTimeInSeconds"),
        )


@dataclass(frozen=True)
class TrainedData:
    """``$.evaluation.trainedData``: EvaluateModels' update of the cumulative data manifest
    (refit.data.trained_data), or why it failed."""

    updated: bool | None
    cumulative_manifest_uri: str | None
    objects: int | None
    rows: int | None
    added: int | None
    replaced: int | None
    removed: int | None
    error: str | None

    @classmethod
    def parse(cls, trained: Mapping[str, Any]) -> TrainedData:
        return cls(
            updated=flag(trained, "updated"),
            cumulative_manifest_uri=text(trained, "cumulativeManifestUri"),
            objects=integer(trained, "objects"),
            rows=integer(trained, "rows"),
            added=integer(trained, "added"),
            replaced=integer(trained, "replaced"),
            removed=integer(trained, "removed"),
            error=text(trained, "error"),
        )


@dataclass(frozen=True)
class IncrementalDetails:
    """``$.evaluation.incremental``: how an incremental job learnt, as train.py wrote it."""

    new_rows: int | None
    replay_rows: int | None
    replay_seen_rows: int | None
    replay_problem: str | None
    validation_rows: int | None
    leaf_refresh: str | None
    leaf_refresh_skipped: str | None
    leaf_refresh_rows: int | None
    eta: float | None
    max_rounds: int | None
    rounds_added: int | None
    early_stopped_round: int | None

    @classmethod
    def parse(cls, details: Mapping[str, Any]) -> IncrementalDetails:
        return cls(
            new_rows=integer(details, "newRows"),
            replay_rows=integer(details, "replayRows"),
            replay_seen_rows=integer(details, "replaySeenRows"),
            replay_problem=text(details, "replayProblem"),
            validation_rows=integer(details, "validationRows"),
            leaf_refresh=text(details, "leafRefresh"),
            leaf_refresh_skipped=text(details, "leafRefreshSkipped"),
            leaf_refresh_rows=integer(details, "leafRefreshRows"),
            eta=number(details, "eta"),
            max_rounds=integer(details, "maxRounds"),
            rounds_added=integer(details, "roundsAdded"),
            early_stopped_round=integer(details, "earlyStoppedRound"),
        )


@dataclass(frozen=True)
class DriftCheck:
    """``$.evaluation.drift``: did the champion fail on the new data (the job then restarted)."""

    detected: bool | None
    champion_new: float | None
    champion_reference: float | None
    threshold: float | None
    rows: int | None

    @classmethod
    def parse(cls, drift: Mapping[str, Any]) -> DriftCheck:
        return cls(
            detected=flag(drift, "detected"),
            champion_new=number(drift, "championNew"),
            champion_reference=number(drift, "championReference"),
            threshold=number(drift, "threshold"),
            rows=integer(drift, "rows"),
        )


@dataclass(frozen=True)
class ReplaySample:
    """``$.evaluation.replaySample``: the replay sample the model carries (its data window)."""

    rows: int | None
    seen_rows: int | None
    base_rows: int | None

    @classmethod
    def parse(cls, sample: Mapping[str, Any]) -> ReplaySample:
        return cls(
            rows=integer(sample, "rows"),
            seen_rows=integer(sample, "seenRows"),
            base_rows=integer(sample, "baseRows"),
        )


@dataclass(frozen=True)
class EvaluationResult:
    """``$.evaluation``: EvaluateModels' decision and the registry's keys
    (refit.evaluate_models.promotion.Decision, refit.registry.lineage.register), or a rollback
    run's stand-in from PrepareRun (``decision: promote``, ``trainedByRun``)."""

    decision: str | None
    reason: str | None
    metric: str | None
    higher_is_better: bool | None
    challenger: float | None
    champion: float | None
    improvement: float | None
    test_rows: int | None
    train_rows: int | None
    features: int | None
    challenger_rounds: int | None
    champion_rounds: int | None
    resumed_from_round: int | None
    # The forgetting check: both models on retained older test data.
    retained_challenger: float | None
    retained_champion: float | None
    retained_improvement: float | None
    retained_test_rows: int | None
    max_retained_regression: float | None
    # forceDecision: the verdict was the execution input's; gate_decision is what the gate said.
    forced: bool | None
    gate_decision: str | None
    champion_problem: str | None
    # The mode the job really trained in, and why it differs from the plan (train.py fell back).
    mode: str | None
    mode_fallback: str | None
    objective: str | None
    model_package_arn: str | None
    model_package_error: str | None
    # A restored model's training run (rollback runs).
    trained_by_run: str | None
    trained_data: TrainedData | None
    incremental: IncrementalDetails | None
    drift: DriftCheck | None
    replay_sample: ReplaySample | None

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    @classmethod
    def parse(cls, evaluation: Mapping[str, Any]) -> EvaluationResult:
        trained = section(evaluation, "trainedData")
        incremental = section(evaluation, "incremental")
        drift = section(evaluation, "drift")
        sample = section(evaluation, "replaySample")
        return cls(
            decision=text(evaluation, "decision"),
            reason=text(evaluation, "reason"),
            metric=text(evaluation, "metric"),
            higher_is_better=flag(evaluation, "higherIsBetter"),
            challenger=number(evaluation, "challenger"),
            champion=number(evaluation, "champion"),
            improvement=number(evaluation, "improvement"),
            test_rows=integer(evaluation, "testRows"),
            train_rows=integer(evaluation, "trainRows"),
            features=integer(evaluation, "features"),
            challenger_rounds=integer(evaluation, "challengerRounds"),
            champion_rounds=integer(evaluation, "championRounds"),
            resumed_from_round=integer(evaluation, "resumedFromRound"),
            retained_challenger=number(evaluation, "retainedChallenger"),
            retained_champion=number(evaluation, "retainedChampion"),
            retained_improvement=number(evaluation, "retainedImprovement"),
            retained_test_rows=integer(evaluation, "retainedTestRows"),
            max_retained_regression=number(evaluation, "maxRetainedRegression"),
            forced=flag(evaluation, "forced"),
            gate_decision=text(evaluation, "gateDecision"),
            champion_problem=text(evaluation, "championProblem"),
            mode=text(evaluation, "mode"),
            mode_fallback=text(evaluation, "modeFallback"),
            objective=text(evaluation, "objective"),
            model_package_arn=text(evaluation, "modelPackageArn"),
            model_package_error=text(evaluation, "modelPackageError"),
            trained_by_run=text(evaluation, "trainedByRun"),
            trained_data=TrainedData.parse(trained) if trained is not None else None,
            incremental=IncrementalDetails.parse(incremental) if incremental is not None else None,
            drift=DriftCheck.parse(drift) if drift is not None else None,
            replay_sample=ReplaySample.parse(sample) if sample is not None else None,
        )


@dataclass(frozen=True)
class EndpointResult:
    """``$.endpoint``, DescribeEndpoint's ``ResultSelector``: the status and the config it
    serves."""

    status: str | None
    config_name: str | None

    @classmethod
    def parse(cls, endpoint: Mapping[str, Any]) -> EndpointResult:
        return cls(status=text(endpoint, "status"), config_name=text(endpoint, "configName"))


@dataclass(frozen=True)
class EndpointPolls:
    """``$.endpointPolls`` (InitEndpointPolls/CountEndpointPoll): when the rollout started and
    was last polled, the window a blue/green update ran both fleets."""

    count: int | None
    started_at: str | float | None
    last_polled_at: str | float | None

    @classmethod
    def parse(cls, polls: Mapping[str, Any]) -> EndpointPolls:
        return cls(
            count=integer(polls, "count"),
            started_at=moment(polls, "startedAt"),
            last_polled_at=moment(polls, "lastPolledAt"),
        )


@dataclass(frozen=True)
class TransformResult:
    """``$.transform``, the transform job's ``ResultSelector``; also a failed transform job's
    Describe (the same keys) read from a Catch's Cause."""

    job_name: str | None
    status: str | None
    start_time: str | float | None
    end_time: str | float | None

    @classmethod
    def parse(cls, transform: Mapping[str, Any]) -> TransformResult:
        return cls(
            job_name=text(transform, "TransformJobName"),
            status=text(transform, "TransformJobStatus"),
            start_time=moment(transform, "TransformStartTime"),
            end_time=moment(transform, "TransformEndTime"),
        )


@dataclass(frozen=True)
class CleanupResult:
    """``$.cleanup``, CleanupResources' report (refit.cleanup_resources.cleanup.CleanupReport):
    the run record keeps it as it is."""

    raw: Mapping[str, Any]


@dataclass(frozen=True)
class TrainingJobDescription:
    """A training job's DescribeTrainingJob, as a ``.sync`` failure's Cause carries it."""

    job_name: str | None
    status: str | None
    secondary_status: str | None
    failure_reason: str | None
    training_seconds: int | None
    billable_seconds: int | None
    managed_spot: bool | None
    instance_type: str | None
    instance_count: int | None

    @classmethod
    def parse(cls, describe: Mapping[str, Any]) -> TrainingJobDescription:
        resources = section(describe, "ResourceConfig")
        return cls(
            job_name=text(describe, "TrainingJobName"),
            status=text(describe, "TrainingJobStatus"),
            secondary_status=text(describe, "SecondaryStatus"),
            failure_reason=text(describe, "FailureReason"),
            training_seconds=integer(describe, "TrainingTimeInSeconds"),
            billable_seconds=integer(describe, "BillableTimeInSeconds"),
            managed_spot=flag(describe, "EnableManagedSpotTraining"),
            instance_type=text(resources, "InstanceType"),
            instance_count=integer(resources, "InstanceCount"),
        )


@dataclass(frozen=True)
class StateError:
    """A Catch's ``{"Error", "Cause"}``: ``$.error``, ``$.cleanupError``, ``$.spotFailure``.

    A ``.sync`` job's Cause is its Describe as JSON, a Lambda's its error payload: ``details``
    keeps that object as it is, ``training_job``/``transform_job`` read it as either Describe
    (each field absent when it is not that one).
    """

    name: str | None
    # Any string, verbatim (even empty): the record keeps its start.
    cause: str | None
    details: Mapping[str, Any] | None
    training_job: TrainingJobDescription | None
    transform_job: TransformResult | None

    @property
    def failed_training_job(self) -> TrainingJobDescription | None:
        """The Describe of the training job that failed the run, if the Cause is one."""
        job = self.training_job
        return job if job is not None and job.job_name else None

    @property
    def failed_transform_job(self) -> TransformResult | None:
        """The Describe of the transform job that failed the run, if the Cause is one."""
        job = self.transform_job
        return job if job is not None and job.job_name else None

    @classmethod
    def parse(cls, error: Mapping[str, Any]) -> StateError:
        cause = error.get("Cause")
        details = _json_object(cause) if isinstance(cause, str) else None
        return cls(
            name=text(error, "Error"),
            cause=cause if isinstance(cause, str) else None,
            details=details,
            training_job=TrainingJobDescription.parse(details) if details is not None else None,
            transform_job=TransformResult.parse(details) if details is not None else None,
        )


def _json_object(raw: str) -> Mapping[str, Any] | None:
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, Mapping) else None


@dataclass(frozen=True)
class CapacityFallback:
    """``$.capacityFallback`` (FallBackOnDemand): no spot capacity came, the job was retried once
    on demand."""

    from_capacity: str | None
    to_capacity: str | None
    spot_job_name: str | None
    on_demand_job_name: str | None

    @classmethod
    def parse(cls, fallback: Mapping[str, Any]) -> CapacityFallback:
        return cls(
            from_capacity=text(fallback, "from"),
            to_capacity=text(fallback, "to"),
            spot_job_name=text(fallback, "spotJobName"),
            on_demand_job_name=text(fallback, "onDemandJobName"),
        )


@dataclass(frozen=True)
class RunState:
    """The whole state document, each section present only if its state ran."""

    run: RunSection | None
    training: TrainingResult | None
    evaluation: EvaluationResult | None
    endpoint: EndpointResult | None
    transform: TransformResult | None
    cleanup: CleanupResult | None
    cleanup_error: StateError | None
    error: StateError | None
    # Train's States.TaskFailed; capacityFallback once retried on demand.
    spot_failure: StateError | None = None
    capacity_fallback: CapacityFallback | None = None
    endpoint_polls: EndpointPolls | None = None

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> RunState:
        run = section(document, "run")
        training = section(document, "training")
        evaluation = section(document, "evaluation")
        endpoint = section(document, "endpoint")
        transform = section(document, "transform")
        cleanup = section(document, "cleanup")
        fallback = section(document, "capacityFallback")
        polls = section(document, "endpointPolls")
        return cls(
            run=RunSection.parse(run) if run is not None else None,
            training=TrainingResult.parse(training) if training is not None else None,
            evaluation=EvaluationResult.parse(evaluation) if evaluation is not None else None,
            endpoint=EndpointResult.parse(endpoint) if endpoint is not None else None,
            transform=TransformResult.parse(transform) if transform is not None else None,
            cleanup=CleanupResult(cleanup) if cleanup is not None else None,
            cleanup_error=_error(document, "cleanupError"),
            error=_error(document, "error"),
            spot_failure=_error(document, "spotFailure"),
            capacity_fallback=CapacityFallback.parse(fallback) if fallback is not None else None,
            endpoint_polls=EndpointPolls.parse(polls) if polls is not None else None,
        )

    @property
    def deploy(self) -> DeployPlan | None:
        return self.run.deploy if self.run else None

    def deployment_mode(self, default: DeploymentMode) -> DeploymentMode:
        """The run's mode (an execution may override the stack's), else the stack's."""
        mode = self.run.deployment_mode if self.run else None
        return mode or default


def _error(document: Mapping[str, Any], key: str) -> StateError | None:
    error = section(document, key)
    return StateError.parse(error) if error is not None else None
