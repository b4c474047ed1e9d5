"""The state document as the states after training read it (see docs/architecture.md).

PrepareRun writes ``$.run``; later states add ``$.training``, ``$.evaluation``, ``$.endpoint``,
``$.endpointPolls``, ``$.transform``, ``$.cleanup``, ``$.cleanupError`` and ``$.error``, and
after a failed training job ``$.spotFailure`` (and ``$.capacityFallback`` when it was retried on
demand). The failure
path hands over whatever existed when something broke, so every section here is optional and a
field of the wrong type reads as absent: RecordRun must be able to record any run, however early
it failed.
"""

from __future__ import annotations

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
class RunState:
    """The whole state document, each section present only if its state ran."""

    run: RunSection | None
    training: TrainingResult | None
    evaluation: Mapping[str, Any] | None
    endpoint: Mapping[str, Any] | None
    transform: Mapping[str, Any] | None
    cleanup: Mapping[str, Any] | None
    cleanup_error: Mapping[str, Any] | None
    error: Mapping[str, Any] | None
    # Train's States.TaskFailed ({Error, Cause}); capacityFallback once retried on demand.
    spot_failure: Mapping[str, Any] | None = None
    capacity_fallback: Mapping[str, Any] | None = None
    # InitEndpointPolls/CountEndpointPoll: {count, startedAt, lastPolledAt}.
    endpoint_polls: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> RunState:
        run = section(document, "run")
        training = section(document, "training")
        return cls(
            run=RunSection.parse(run) if run is not None else None,
            training=TrainingResult.parse(training) if training is not None else None,
            evaluation=section(document, "evaluation"),
            endpoint=section(document, "endpoint"),
            transform=section(document, "transform"),
            cleanup=section(document, "cleanup"),
            cleanup_error=section(document, "cleanupError"),
            error=section(document, "error"),
            spot_failure=section(document, "spotFailure"),
            capacity_fallback=section(document, "capacityFallback"),
            endpoint_polls=section(document, "endpointPolls"),
        )

    @property
    def deploy(self) -> DeployPlan | None:
        return self.run.deploy if self.run else None

    def deployment_mode(self, default: DeploymentMode) -> DeploymentMode:
        """The run's mode (an execution may override the stack's), else the stack's."""
        mode = self.run.deployment_mode if self.run else None
        return mode or default
