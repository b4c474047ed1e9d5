"""RecordRun: the end of every execution, successful or not.

Turns ``{"outcome", "executionName", "state"}`` into the final run record (the per-run audit
trail: data -> job -> artifact -> metrics -> decision -> endpoint config -> cost, and the
on-demand retry when spot capacity never came), moves the
champion pointer on promotion, registers whatever SageMaker resources the run may have created
for cleanup, and publishes a notification.

Step Functions retries this Lambda, so every write overwrites: a retry writes the same record,
pointer and index entry again (only ``finishedAt`` moves). The notification is sent last; a
retry after a lost Publish response can deliver it twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from refit import layout
from refit.config import Settings
from refit.ledger.run_records import ChampionPointer, DataWindow, RunRecords
from refit.record_run import cost
from refit.record_run.cost import PriceTable, spot_savings_percent
from refit.record_run.notify import Notification, publish
from refit.registry import lineage
from refit.run_state import RunState, flag, integer, number, section, text
from refit.timestamps import format_utc

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient

logger = Logger(child=True)

Outcome = Literal["promoted", "rejected", "rejected-input", "failed"]
STATUSES: dict[Outcome, str] = {
    "promoted": "PROMOTED",
    "rejected": "REJECTED",
    "rejected-input": "REJECTED_INPUT",
    "failed": "FAILED",
}
# Two outcomes are told apart further: a failed run whose endpoint update SageMaker rolled back
# (an alarm or a failed health check; the champion keeps serving), and a rollback run that put
# an earlier model back (refit.registry.rollback).
ROLLED_BACK = "ROLLED_BACK"
RESTORED = "RESTORED"
ROLLED_BACK_ERROR = "Refit.EndpointRolledBack"
# CloudWatch metric counted once per finished run, by status.
RUN_METRICS: dict[str, str] = {
    "PROMOTED": "RunsPromoted",
    "REJECTED": "RunsRejected",
    "REJECTED_INPUT": "RunsRejectedInput",
    "FAILED": "RunsFailed",
    ROLLED_BACK: "RunsRolledBack",
    RESTORED: "RunsRestored",
}
# A .sync failure's Cause is the whole Describe*Job response: enough to find the reason, but a
# record (400 KB item limit) and an e-mail only need its start.
CAUSE_MAX_CHARS = 4000
# Keys worth lifting out of a Cause: SageMaker Describe*Job responses and Lambda error payloads.
_CAUSE_KEYS = (
    "FailureReason",
    "TrainingJobStatus",
    "SecondaryStatus",
    "TransformJobStatus",
    "errorType",
    "errorMessage",
)


class InvalidRunOutcome(ValueError):
    """RecordRun's input does not follow the contract; nothing was written."""


@dataclass(frozen=True)
class CloudWatchMetric:
    name: str
    unit: str
    value: float


@dataclass(frozen=True)
class RunOutcome:
    """RecordRun's input, typed."""

    outcome: Outcome
    execution_name: str
    state: RunState

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> RunOutcome:
        outcome = event.get("outcome")
        known = next((o for o in STATUSES if o == outcome), None)
        if known is None:
            raise InvalidRunOutcome(
                f"outcome must be one of {', '.join(STATUSES)}, got {outcome!r}"
            )
        execution_name = text(event, "executionName")
        if execution_name is None:
            raise InvalidRunOutcome("executionName is required")
        state = event.get("state")
        return cls(
            outcome=known,
            execution_name=execution_name,
            state=RunState.parse(state if isinstance(state, Mapping) else {}),
        )

    @property
    def run_id(self) -> str:
        # Without $.run (PrepareRun failed) the execution name is the run id by construction.
        run = self.state.run
        return run.run_id if run and run.run_id else self.execution_name

    @property
    def is_rollback_run(self) -> bool:
        return bool(self.state.run and self.state.run.is_rollback)

    @property
    def rolled_back(self) -> bool:
        """The endpoint update was rolled back: InService on the old config."""
        return self.outcome == "failed" and text(self.state.error, "Error") == ROLLED_BACK_ERROR

    @property
    def status(self) -> str:
        if self.outcome == "promoted" and self.is_rollback_run:
            return RESTORED
        if self.rolled_back:
            return ROLLED_BACK
        return STATUSES[self.outcome]

    @property
    def endpoint_mode(self) -> bool:
        run = self.state.run
        return bool(run and run.deployment_mode == "endpoint")

    @property
    def decided_to_promote(self) -> bool:
        return text(self.state.evaluation, "decision") == "promote"

    @property
    def endpoint_config_name(self) -> str | None:
        """The config the endpoint was verified on, else the one the run planned."""
        deploy = self.state.deploy
        verified = text(self.state.endpoint, "configName")
        return verified or (deploy.endpoint_config_name if deploy else None)


def cause_details(error: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A Catch's JSON Cause (a ``.sync`` job's Describe, a Lambda error payload), parsed."""
    cause = None if error is None else error.get("Cause")
    if not isinstance(cause, str):
        return None
    try:
        details = json.loads(cause)
    except ValueError:
        return None
    return details if isinstance(details, Mapping) else None


def describe_error(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A Catch's ``{"Error", "Cause"}``, with the reason lifted out of a JSON Cause."""
    if error is None:
        return None
    cause = error.get("Cause")
    described: dict[str, Any] = {"Error": text(error, "Error")}
    if isinstance(cause, str):
        described["Cause"] = cause[:CAUSE_MAX_CHARS]
        details = cause_details(error)
        if details is not None:
            described.update({k: text(details, k) for k in _CAUSE_KEYS})
    return {k: v for k, v in described.items() if v is not None}


def capacity_fallback(state: RunState) -> dict[str, Any] | None:
    """``$.capacityFallback`` (spot capacity never came: retried once on demand), with why and
    what the spot job cost, from the spot job's Describe in ``$.spotFailure``."""
    fallback = state.capacity_fallback
    if fallback is None:
        return None
    spot = cause_details(state.spot_failure) or {}
    secondary = text(spot, "SecondaryStatus")
    failure_reason = text(spot, "FailureReason")
    reason = secondary if secondary == "MaxWaitTimeExceeded" else failure_reason or secondary
    run = state.run
    found = {
        "from": text(fallback, "from") or "spot",
        "to": text(fallback, "to") or "on-demand",
        "reason": reason,
        "spotJobName": text(fallback, "spotJobName") or text(spot, "TrainingJobName"),
        "onDemandJobName": text(fallback, "onDemandJobName")
        or (run.on_demand_job_name if run else None),
        "spotJobStatus": text(spot, "TrainingJobStatus"),
        "spotFailureReason": failure_reason,
        "spotTrainingTimeInSeconds": integer(spot, "TrainingTimeInSeconds"),
        "spotBillableTimeInSeconds": integer(spot, "BillableTimeInSeconds"),
    }
    return {k: v for k, v in found.items() if v is not None}


def _failed_job(error: Mapping[str, Any] | None, name_key: str) -> Mapping[str, Any] | None:
    """The Describe of a ``.sync`` job that failed the run (a Catch's JSON Cause), if any."""
    details = cause_details(error)
    return details if details is not None and text(details, name_key) else None


def _described_training(
    describe: Mapping[str, Any], fallback_fleet: cost.Fleet, managed_spot: bool | None
) -> cost.TrainingJobUsage:
    resources = describe.get("ResourceConfig")
    resources = resources if isinstance(resources, Mapping) else {}
    spot = flag(describe, "EnableManagedSpotTraining")
    return cost.TrainingJobUsage(
        job_name=text(describe, "TrainingJobName"),
        fleet=cost.Fleet(
            text(resources, "InstanceType") or fallback_fleet.instance_type,
            integer(resources, "InstanceCount") or fallback_fleet.instance_count,
        ),
        training_seconds=integer(describe, "TrainingTimeInSeconds"),
        # SageMaker reports billable time only once a job ran on instances: a job that never
        # got capacity billed nothing.
        billable_seconds=integer(describe, "BillableTimeInSeconds") or 0,
        managed_spot=spot if spot is not None else managed_spot,
    )


def training_usage(state: RunState) -> tuple[list[cost.TrainingJobUsage], list[str]]:
    """Every training job the run paid for, oldest first, and any it may have paid for unseen."""
    run, training = state.run, state.training
    if run is not None and run.is_rollback:
        # $.training of a rollback run is the restored package's artifact: no job ran.
        return [], []
    fleet = cost.Fleet(
        run.training_instance_type if run else None, run.training_instance_count if run else None
    )
    jobs: list[cost.TrainingJobUsage] = []
    fallback = capacity_fallback(state)
    if fallback is not None:
        jobs.append(
            cost.TrainingJobUsage(
                job_name=fallback.get("spotJobName"),
                fleet=fleet,
                training_seconds=fallback.get("spotTrainingTimeInSeconds"),
                billable_seconds=fallback.get("spotBillableTimeInSeconds", 0),
                managed_spot=True,
            )
        )
    if training is not None:
        jobs.append(
            cost.TrainingJobUsage(
                job_name=training.job_name,
                fleet=fleet,
                training_seconds=training.training_seconds,
                billable_seconds=training.billable_seconds,
                managed_spot=False if fallback is not None else (run.managed_spot if run else None),
            )
        )
        return jobs, []
    failed = _failed_job(state.error, "TrainingJobName")
    if failed is not None and text(failed, "TrainingJobName") not in {j.job_name for j in jobs}:
        spot = None if run is None else (False if fallback is not None else run.managed_spot)
        jobs.append(_described_training(failed, fleet, spot))
        return jobs, []
    if failed is None and run is not None and run.status == "ready" and state.evaluation is None:
        # Failed in or around Train without the job's Describe (an API error, a timeout).
        job = (run.on_demand_job_name if fallback is not None else None) or run.training_job_name
        if state.error is not None and job:
            return jobs, [f"training job {job} may have run; the state holds no billable time"]
    return jobs, []


def deployment_usage(
    state: RunState,
) -> tuple[cost.EndpointRollout | None, cost.TransformUsage | None]:
    """The endpoint rollout ($.endpointPolls) or the batch transform this run paid for."""
    deploy, polls = state.deploy, state.endpoint_polls
    if deploy is None:
        return None, None
    rollout = None
    if polls is not None and state.run and state.run.deployment_mode == "endpoint":
        rollout = cost.EndpointRollout(
            kind="update" if deploy.endpoint_exists else "create",
            fleet=cost.Fleet(deploy.instance_type, deploy.instance_count),
            window=cost.Window.parse(polls.get("startedAt"), polls.get("lastPolledAt")),
        )
    transform = None
    described = state.transform or _failed_job(state.error, "TransformJobName")
    if described is not None:
        transform = cost.TransformUsage(
            job_name=text(described, "TransformJobName") or deploy.transform_job_name,
            fleet=cost.Fleet(deploy.transform_instance_type, deploy.transform_instance_count),
            window=cost.Window.parse(
                described.get("TransformStartTime"), described.get("TransformEndTime")
            ),
        )
    return rollout, transform


def cost_model_name(state: RunState, stack_name: str) -> str | None:
    """What ``refit cost`` totals a run under: the serving target its challenger competes for,
    i.e. the endpoint (the lineage of champions it serves), or the stack's batch transform."""
    run = state.run
    if run is None or run.deployment_mode is None:
        return None
    if run.deployment_mode == "batch":
        return f"{stack_name}/batch"
    return run.deploy.endpoint_name if run.deploy else None


def run_cost(
    outcome: RunOutcome, region: str, stack_name: str, prices: PriceTable | None = None
) -> dict[str, Any]:
    """The record's ``cost`` block (refit.record_run.cost does the arithmetic)."""
    jobs, unknown = training_usage(outcome.state)
    rollout, transform = deployment_usage(outcome.state)
    return cost.run_cost(
        region=region,
        model=cost_model_name(outcome.state, stack_name),
        jobs=jobs,
        rollout=rollout,
        transform=transform,
        unknown_usage=unknown,
        table=prices,
    )


def _trained_data(evaluation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    trained = section(evaluation, "trainedData") if evaluation is not None else None
    if trained is None:
        return None
    return {
        "updated": flag(trained, "updated"),
        "cumulativeManifestUri": text(trained, "cumulativeManifestUri"),
        "objects": integer(trained, "objects"),
        "rows": integer(trained, "rows"),
        "added": integer(trained, "added"),
        "replaced": integer(trained, "replaced"),
        "removed": integer(trained, "removed"),
        "error": text(trained, "error"),
    }


def _incremental(evaluation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    details = section(evaluation, "incremental") if evaluation is not None else None
    if details is None:
        return None
    return {
        "newRows": integer(details, "newRows"),
        "replayRows": integer(details, "replayRows"),
        "replaySeenRows": integer(details, "replaySeenRows"),
        "replayProblem": text(details, "replayProblem"),
        "validationRows": integer(details, "validationRows"),
        "leafRefresh": text(details, "leafRefresh"),
        "leafRefreshSkipped": text(details, "leafRefreshSkipped"),
        "leafRefreshRows": integer(details, "leafRefreshRows"),
        "eta": number(details, "eta"),
        "maxRounds": integer(details, "maxRounds"),
        "roundsAdded": integer(details, "roundsAdded"),
        "earlyStoppedRound": integer(details, "earlyStoppedRound"),
    }


def _drift(evaluation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    drift = section(evaluation, "drift") if evaluation is not None else None
    if drift is None:
        return None
    return {
        "detected": flag(drift, "detected"),
        "championNew": number(drift, "championNew"),
        "championReference": number(drift, "championReference"),
        "threshold": number(drift, "threshold"),
        "rows": integer(drift, "rows"),
    }


def _evaluation_metrics(evaluation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    higher = evaluation.get("higherIsBetter")
    return {
        "metric": text(evaluation, "metric"),
        "higherIsBetter": higher if isinstance(higher, bool) else None,
        "challenger": number(evaluation, "challenger"),
        "champion": number(evaluation, "champion"),
        "improvement": number(evaluation, "improvement"),
        "testRows": integer(evaluation, "testRows"),
        "trainRows": integer(evaluation, "trainRows"),
        "features": integer(evaluation, "features"),
        "challengerRounds": integer(evaluation, "challengerRounds"),
        "championRounds": integer(evaluation, "championRounds"),
        "resumedFromRound": integer(evaluation, "resumedFromRound"),
        # The forgetting check: both models on retained older test data.
        "retainedChallenger": number(evaluation, "retainedChallenger"),
        "retainedChampion": number(evaluation, "retainedChampion"),
        "retainedImprovement": number(evaluation, "retainedImprovement"),
        "retainedTestRows": integer(evaluation, "retainedTestRows"),
        "maxRetainedRegression": number(evaluation, "maxRetainedRegression"),
    }


def _training_mode(state: RunState) -> tuple[str | None, str | None]:
    """The mode the job really trained in, and why it differs from the plan (train.py fell back)."""
    planned = state.run.training_mode if state.run else None
    fallback = text(state.evaluation, "modeFallback")
    if fallback is not None:
        return text(state.evaluation, "mode") or planned, fallback
    return planned, None


def run_attributes(
    outcome: RunOutcome, finished_at: str, run_cost: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The final run record; absent sections simply leave their attributes out (None)."""
    state = outcome.state
    run, training, deploy = state.run, state.training, state.deploy
    data = run.data if run else None
    promoted = outcome.outcome == "promoted"
    batch = bool(run and run.deployment_mode == "batch")
    training_seconds = training.training_seconds if training else None
    billable_seconds = training.billable_seconds if training else None
    fallback = capacity_fallback(state)
    # After a fallback, $.training (if any) is the on-demand job's: no spot savings on it.
    managed_spot = False if fallback is not None else (run.managed_spot if run else None)
    planned_job = None
    if run is not None:
        planned_job = run.on_demand_job_name if fallback is not None else run.training_job_name
    return {
        "runId": outcome.run_id,
        "executionName": outcome.execution_name,
        "status": outcome.status,
        "finishedAt": finished_at,
        "trainingMode": _training_mode(state)[0],
        # Set only when train.py overrode the plan; PrepareRun wrote the planned reason.
        "trainingModeReason": _training_mode(state)[1],
        "decisionForced": flag(state.evaluation, "forced"),
        "gateDecision": text(state.evaluation, "gateDecision"),
        "championProblem": text(state.evaluation, "championProblem"),
        "deploymentMode": run.deployment_mode if run else None,
        "metric": run.metric if run else None,
        "data": None
        if data is None
        else {
            "accepted": data.accepted,
            "rejected": data.rejected,
            "rows": data.rows,
            "rejectedFiles": data.rejected_files[: layout.INLINE_KEYS_MAX],
        },
        "manifestUri": data.manifest_uri if data else None,
        # EvaluateModels' update of the cumulative data manifest (refit.data.trained_data).
        "trainedData": _trained_data(state.evaluation),
        # How the challenger learnt: replay rows, leaf refresh, rounds added, early stop, drift.
        "incremental": _incremental(state.evaluation),
        "drift": _drift(state.evaluation),
        "previousChampion": run.champion_model_name if run else None,
        "trainingJobName": (training.job_name if training else None) or planned_job,
        "trainingJobStatus": training.status if training else None,
        "modelDataUrl": training.model_data_url if training else None,
        "metrics": _evaluation_metrics(state.evaluation),
        "decision": text(state.evaluation, "decision"),
        "reason": text(state.evaluation, "reason"),
        "endpointName": (deploy.endpoint_name if deploy else None)
        if promoted and outcome.endpoint_mode
        else None,
        "endpointConfigName": outcome.endpoint_config_name
        if promoted and outcome.endpoint_mode
        else None,
        "endpointStatus": text(state.endpoint, "status"),
        "transformJobName": (
            text(state.transform, "TransformJobName")
            or (deploy.transform_job_name if deploy else None)
        )
        if batch and (promoted or state.transform is not None)
        else None,
        "transformJobStatus": text(state.transform, "TransformJobStatus"),
        "transformOutputPath": (deploy.transform_output_path if deploy else None)
        if batch and promoted
        else None,
        "managedSpotTraining": managed_spot,
        "trainingTimeInSeconds": training_seconds,
        "billableTimeInSeconds": billable_seconds,
        "spotSavingsPercent": spot_savings_percent(
            training_seconds, billable_seconds, managed_spot
        ),
        "capacityFallback": fallback,
        "cost": dict(run_cost) if run_cost is not None else None,
        "error": describe_error(state.error),
        "cleanup": dict(state.cleanup) if state.cleanup is not None else None,
        "cleanupError": describe_error(state.cleanup_error),
    }


def _champion(outcome: RunOutcome) -> ChampionPointer:
    deploy, training = outcome.state.deploy, outcome.state.training
    model_name = deploy.model_name if deploy else None
    model_data_url = training.model_data_url if training else None
    if model_name is None or model_data_url is None:
        raise InvalidRunOutcome(
            "a promoted run needs run.deploy.modelName and training.modelDataUrl"
        )
    evaluation = outcome.state.evaluation
    return ChampionPointer(
        model_name=model_name,
        model_data_url=model_data_url,
        endpoint_config_name=outcome.endpoint_config_name if outcome.endpoint_mode else None,
        # A restored model keeps its training run: its test data split and warm start use it.
        run_id=text(evaluation, "trainedByRun") or outcome.run_id,
        feature_count=integer(outcome.state.evaluation, "features"),
        objective=text(outcome.state.evaluation, "objective"),
        model_package_arn=text(outcome.state.evaluation, "modelPackageArn"),
        data_window=_data_window(outcome),
    )


def _data_window(outcome: RunOutcome) -> DataWindow | None:
    """The promoted model's data window: the run's, or from its start after a drift restart."""
    run, evaluation = outcome.state.run, outcome.state.evaluation or {}
    if run is None or outcome.is_rollback_run:
        return None  # a restored model: its window is not known any more
    sample = section(evaluation, "replaySample")
    restarted = flag(section(evaluation, "drift"), "detected") is True
    window = DataWindow(
        since=run.started_at if restarted else run.data_window_since,
        base_rows=integer(sample, "baseRows"),
        seen_rows=integer(sample, "seenRows"),
    )
    return None if window == DataWindow(None, None, None) else window


def model_package_attributes(
    outcome: RunOutcome, sagemaker: SageMakerClient | None, rollback_reason: str | None = None
) -> dict[str, Any]:
    """Approve the promoted run's package, reject any other run's; the record's package keys.

    Only a promoted run (endpoint verified / transform done) is approved; a rejected, failed or
    rolled-back run's package is rejected with the reason. A rollback run leaves its target as
    it is (approved) and, once restored, rejects the package it took off the endpoint. A
    registry error is recorded, never fatal.
    """
    evaluation = outcome.state.evaluation
    arn = text(evaluation, "modelPackageArn")
    if arn is None:
        return {"modelPackageError": text(evaluation, "modelPackageError")}
    if outcome.is_rollback_run:
        return _rollback_package_attributes(outcome, sagemaker, arn)
    status: lineage.ApprovalStatus
    if outcome.outcome == "promoted":
        status, reason = lineage.APPROVED, text(evaluation, "reason") or "promoted"
    else:
        status = lineage.REJECTED
        reason = text(evaluation, "reason") or "rejected"
        error = outcome.state.error
        if outcome.rolled_back:
            why = rollback_reason or "no reason given"
            reason = f"{ROLLED_BACK_ERROR}: the endpoint update was rolled back ({why})"
        elif outcome.outcome == "failed":
            cause = text(error, "Error") if error else None
            reason = f"run failed after training: {cause or 'unknown error'}"
    return lineage.decide(sagemaker, arn, status, reason)


def _rollback_package_attributes(
    outcome: RunOutcome, sagemaker: SageMakerClient | None, arn: str
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "modelPackageArn": arn,
        "modelPackageVersion": lineage.package_version(arn),
        "modelPackageStatus": lineage.APPROVED,
    }
    replaced = outcome.state.run.replaced_package_arn if outcome.state.run else None
    if outcome.outcome != "promoted" or replaced is None or replaced == arn:
        return attributes
    reason = (
        f"taken off the endpoint by rollback run {outcome.run_id} "
        f"(back to version {lineage.package_version(arn)})"
    )
    decided = lineage.decide(sagemaker, replaced, lineage.REJECTED, reason)
    attributes.update(
        replacedModelPackageArn=replaced,
        replacedModelPackageVersion=decided["modelPackageVersion"],
        replacedModelPackageStatus=decided["modelPackageStatus"],
        modelPackageError=decided["modelPackageError"],
    )
    return attributes


def endpoint_failure_reason(
    sagemaker: SageMakerClient | None, endpoint_name: str | None
) -> str | None:
    """Why SageMaker rolled an update back (DescribeEndpoint's FailureReason), if it says."""
    if sagemaker is None or endpoint_name is None:
        return None
    try:
        reason = sagemaker.describe_endpoint(EndpointName=endpoint_name).get("FailureReason")
    except (ClientError, BotoCoreError) as error:
        logger.warning("endpoint not described", extra={"error": str(error)})
        return None
    return str(reason) if reason else None


def _fleet(block: Mapping[str, Any]) -> str:
    return f"{block.get('instanceCount', '?')} × {block.get('instanceType', '?')}"


def cost_summary(run_cost: Mapping[str, Any]) -> str:
    """One line of the notification: the estimate, its parts and where the prices come from."""
    parts = []
    training = run_cost.get("training")
    if isinstance(training, Mapping):
        part = f"training {cost.format_usd(training.get('costUSD'))} on {_fleet(training)}"
        if training.get("savingsUSD"):
            part += (
                f" (on demand {cost.format_usd(training.get('onDemandCostUSD'))}, "
                f"spot saved {cost.format_usd(training.get('savingsUSD'))})"
            )
        parts.append(part)
    rollout = run_cost.get("endpointRollout")
    if isinstance(rollout, Mapping):
        if rollout.get("kind") == "create":
            parts.append(
                f"new endpoint on {_fleet(rollout)} costs "
                f"{cost.format_usd(rollout.get('endpointUSDPerHour'))}/h from now on"
            )
        else:
            parts.append(
                f"endpoint update ran both fleets for {rollout.get('seconds', '?')} s: "
                f"{rollout.get('addedInstanceHours', '?')} extra instance-hours on "
                f"{_fleet(rollout)}, {cost.format_usd(rollout.get('costUSD'))}"
            )
    transform = run_cost.get("transform")
    if isinstance(transform, Mapping):
        parts.append(
            f"batch transform {transform.get('instanceHours', '?')} instance-hours on "
            f"{_fleet(transform)}, {cost.format_usd(transform.get('costUSD'))}"
        )
    total = run_cost.get("totalUSD")
    head = (
        f"Estimated cost {cost.format_usd(total)}"
        if total is not None
        else "Estimated cost unknown (" + "; ".join(run_cost.get("unpriced") or ["?"]) + ")"
    )
    bases = [
        str(block.get("priceBasis"))
        for block in (training, rollout, transform)
        if isinstance(block, Mapping) and block.get("priceBasis")
    ]
    kind = next((b for b in bases if b != "list"), "list prices" if bases else "prices")
    source = (
        f"{run_cost.get('region')} {kind}, from {run_cost.get('priceSource')} "
        f"as of {run_cost.get('pricesRetrievedOn')}"
    )
    return f"{head}: {', '.join(parts) or 'nothing billed'}. ({source}.)"


def _summary(outcome: RunOutcome, record: Mapping[str, Any]) -> str:
    lines = [f"Run {outcome.run_id} finished {outcome.status}."]
    data = record.get("data")
    if isinstance(data, Mapping):
        lines.append(
            f"Data: {data.get('accepted', '?')} file(s) accepted, "
            f"{data.get('rejected', '?')} rejected, {data.get('rows', '?')} rows."
        )
    if record.get("trainingJobName"):
        mode = record.get("trainingMode") or "unknown"
        lines.append(f"Training job: {record['trainingJobName']} ({mode} training).")
    fallback = record.get("capacityFallback")
    if isinstance(fallback, Mapping):
        spent = fallback.get("spotBillableTimeInSeconds")
        lines.append(
            f"No spot capacity for {fallback.get('spotJobName')} "
            f"({fallback.get('reason') or 'capacity'}): retried once on on-demand capacity as "
            f"{fallback.get('onDemandJobName')}, resuming from its checkpoints"
            + (f" (the spot job billed {spent} s)." if spent else ".")
        )
    if record.get("reason"):
        forced = " (forced by the execution input)" if record.get("decisionForced") else ""
        lines.append(f"Decision: {record.get('decision')}{forced}: {record['reason']}.")
    if record.get("status") == ROLLED_BACK:
        why = record.get("rollbackReason") or "no reason given"
        serving = record.get("previousChampion") or "the previous model"
        lines.append(f"The endpoint update was rolled back ({why}): {serving} keeps serving.")
    if record.get("endpointConfigName"):
        lines.append(
            f"Endpoint {record.get('endpointName')} serves config {record['endpointConfigName']}."
        )
    if record.get("transformOutputPath"):
        lines.append(f"Batch predictions: {record['transformOutputPath']}.")
    if record.get("modelPackageArn"):
        lines.append(
            f"Model package: version {record.get('modelPackageVersion')} "
            f"({record.get('modelPackageStatus') or 'status not updated'})."
        )
    if record.get("replacedModelPackageArn"):
        lines.append(
            f"Taken off the endpoint: version {record.get('replacedModelPackageVersion')} "
            f"({record.get('replacedModelPackageStatus') or 'status not updated'})."
        )
    if record.get("billableTimeInSeconds") is not None:
        savings = record.get("spotSavingsPercent")
        lines.append(
            f"Training time {record.get('trainingTimeInSeconds')} s, billed "
            f"{record['billableTimeInSeconds']} s"
            + (f" (spot savings {savings}%)." if savings is not None else ".")
        )
    run_cost = record.get("cost")
    if isinstance(run_cost, Mapping):
        lines.append(cost_summary(run_cost))
    error = record.get("error")
    if isinstance(error, Mapping):
        reason = error.get("FailureReason") or error.get("errorMessage") or error.get("Cause")
        lines.append(f"Error: {error.get('Error')}: {reason}")
    if record.get("cleanupError"):
        lines.append("Cleanup failed; the new model is live and old resources remain.")
    return "\n".join(lines)


def notification(outcome: RunOutcome, stack_name: str, record: Mapping[str, Any]) -> Notification:
    """A short human summary, then the record as JSON for machines and the curious."""
    body = json.dumps({k: v for k, v in record.items() if v is not None}, indent=2, sort_keys=True)
    return Notification(
        subject=f"refit {stack_name}: run {outcome.run_id} {outcome.status}",
        message=f"{_summary(outcome, record)}\n\nRun record:\n{body}\n",
        attributes={"status": outcome.status, "stack": stack_name},
    )


@dataclass(frozen=True)
class RunReport:
    run_id: str
    status: str
    record: Mapping[str, Any]
    message_id: str
    metrics: list[CloudWatchMetric]

    def to_dict(self) -> dict[str, Any]:
        return {"runId": self.run_id, "status": self.status}


def _cloudwatch_metrics(outcome: RunOutcome, record: Mapping[str, Any]) -> list[CloudWatchMetric]:
    found = [CloudWatchMetric(RUN_METRICS[outcome.status], "Count", 1)]
    if record.get("capacityFallback") is not None:
        found.append(CloudWatchMetric("SpotCapacityFallbacks", "Count", 1))
    billable = record.get("billableTimeInSeconds")
    if billable is not None:
        found.append(CloudWatchMetric("TrainingBillableSeconds", "Seconds", billable))
    savings = record.get("spotSavingsPercent")
    if savings is not None:
        found.append(CloudWatchMetric("SpotSavingsPercent", "Percent", savings))
    run_cost = record.get("cost")
    total = run_cost.get("totalUSD") if isinstance(run_cost, Mapping) else None
    if total is not None:
        found.append(CloudWatchMetric("RunCostUSD", "None", total))
    return found


def _update_rejection_streak(outcome: RunOutcome, records: RunRecords, limit: int) -> None:
    """Count gate rejections of incremental challengers in a row (refit.prepare_run.warm_start reads
    it).

    A promotion or a rejected full retrain ends the streak; failed runs and forced decisions
    (a person's, not the gate's) leave it as it is. Off (never written) when the limit is 0.
    """
    run = outcome.state.run
    if limit < 1 or run is None or flag(outcome.state.evaluation, "forced"):
        if outcome.outcome == "promoted" and limit >= 1:
            records.reset_rejections()
        return
    if outcome.outcome == "promoted":
        records.reset_rejections()
    elif outcome.outcome == "rejected":
        planned, _ = _training_mode(outcome.state)
        if planned == "incremental" and run.champion_model_name:
            records.count_rejection(run.champion_model_name, outcome.run_id)
        else:
            records.reset_rejections()


def record_run(
    event: Mapping[str, Any],
    records: RunRecords,
    sns: SNSClient,
    topic: str,
    settings: Settings,
    now: datetime | None = None,
    region: str | None = None,
    prices: PriceTable | None = None,
    sagemaker: SageMakerClient | None = None,
) -> RunReport:
    """Write the final record, move the champion, register resources, notify.

    ``region`` prices the run (default: the SNS client's, i.e. the function's region).
    ``sagemaker`` approves/rejects the run's model package (refit.registry.lineage); without it the
    package ARN is still recorded.
    """
    outcome = RunOutcome.parse(event)
    finished_at = format_utc(now or datetime.now(UTC))
    champion = _champion(outcome) if outcome.outcome == "promoted" else None
    priced = run_cost(outcome, region or sns.meta.region_name, settings.stack_name, prices)
    record = run_attributes(outcome, finished_at, priced)
    rollback_reason = None
    if outcome.rolled_back:
        deploy = outcome.state.deploy
        rollback_reason = endpoint_failure_reason(
            sagemaker, deploy.endpoint_name if deploy else None
        )
        record["rollbackReason"] = rollback_reason
    record.update(model_package_attributes(outcome, sagemaker, rollback_reason))
    records.finish(outcome.run_id, record)
    if champion is not None:
        records.set_champion(champion, promoted_at=finished_at)
    _update_rejection_streak(outcome, records, settings.full_retrain_after_rejections)
    deploy = outcome.state.deploy
    if outcome.decided_to_promote and deploy and deploy.model_name:
        # From the promote decision on, CreateModel (and CreateEndpointConfig) may have run,
        # even if a later state failed: cleanup must learn about them or they leak.
        records.register_resources(
            outcome.run_id,
            deploy.model_name,
            deploy.endpoint_config_name if outcome.endpoint_mode else None,
            created_at=finished_at,
            promoted=outcome.outcome == "promoted",
            model_package_arn=text(outcome.state.evaluation, "modelPackageArn"),
        )
    message_id = publish(sns, topic, notification(outcome, settings.stack_name, record))
    logger.info("run recorded", extra={"runId": outcome.run_id, "status": outcome.status})
    return RunReport(
        run_id=outcome.run_id,
        status=outcome.status,
        record=record,
        message_id=message_id,
        metrics=_cloudwatch_metrics(outcome, record),
    )
