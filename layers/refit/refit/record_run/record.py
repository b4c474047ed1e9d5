"""What RecordRun writes: the final run record, the champion pointer, the model package status.

The run record is the per-run audit trail (data -> job -> artifact -> metrics -> decision ->
endpoint config -> cost, and the on-demand retry when spot capacity never came); absent sections
leave their attributes out. A promotion moves the champion pointer (with the model's data
window), and the registry learns the verdict: the promoted package approved, any other rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from refit import layout
from refit.ledger.run_records import ChampionPointer, DataWindow
from refit.record_run.cost import spot_savings_percent
from refit.record_run.outcome import (
    ROLLED_BACK_ERROR,
    InvalidRunOutcome,
    RunOutcome,
    describe_error,
)
from refit.record_run.usage import spot_fallback
from refit.registry import lineage
from refit.run_state import DriftCheck, EvaluationResult, IncrementalDetails, TrainedData

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

logger = Logger(child=True)


def _trained_data(trained: TrainedData | None) -> dict[str, Any] | None:
    if trained is None:
        return None
    return {
        "updated": trained.updated,
        "cumulativeManifestUri": trained.cumulative_manifest_uri,
        "objects": trained.objects,
        "rows": trained.rows,
        "added": trained.added,
        "replaced": trained.replaced,
        "removed": trained.removed,
        "error": trained.error,
    }


def _incremental(details: IncrementalDetails | None) -> dict[str, Any] | None:
    if details is None:
        return None
    return {
        "newRows": details.new_rows,
        "replayRows": details.replay_rows,
        "replaySeenRows": details.replay_seen_rows,
        "replayProblem": details.replay_problem,
        "validationRows": details.validation_rows,
        "leafRefresh": details.leaf_refresh,
        "leafRefreshSkipped": details.leaf_refresh_skipped,
        "leafRefreshRows": details.leaf_refresh_rows,
        "eta": details.eta,
        "maxRounds": details.max_rounds,
        "roundsAdded": details.rounds_added,
        "earlyStoppedRound": details.early_stopped_round,
    }


def _drift(drift: DriftCheck | None) -> dict[str, Any] | None:
    if drift is None:
        return None
    return {
        "detected": drift.detected,
        "championNew": drift.champion_new,
        "championReference": drift.champion_reference,
        "threshold": drift.threshold,
        "rows": drift.rows,
    }


def _evaluation_metrics(evaluation: EvaluationResult) -> dict[str, Any]:
    return {
        "metric": evaluation.metric,
        "higherIsBetter": evaluation.higher_is_better,
        "challenger": evaluation.challenger,
        "champion": evaluation.champion,
        "improvement": evaluation.improvement,
        "testRows": evaluation.test_rows,
        "trainRows": evaluation.train_rows,
        "features": evaluation.features,
        "challengerRounds": evaluation.challenger_rounds,
        "championRounds": evaluation.champion_rounds,
        "resumedFromRound": evaluation.resumed_from_round,
        # The forgetting check: both models on retained older test data.
        "retainedChallenger": evaluation.retained_challenger,
        "retainedChampion": evaluation.retained_champion,
        "retainedImprovement": evaluation.retained_improvement,
        "retainedTestRows": evaluation.retained_test_rows,
        "maxRetainedRegression": evaluation.max_retained_regression,
    }


def run_attributes(
    outcome: RunOutcome, finished_at: str, run_cost: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The final run record; absent sections simply leave their attributes out (None)."""
    state = outcome.state
    run, training, deploy = state.run, state.training, state.deploy
    evaluation, endpoint, transform = state.evaluation, state.endpoint, state.transform
    data = run.data if run else None
    promoted = outcome.outcome == "promoted"
    batch = bool(run and run.deployment_mode == "batch")
    training_seconds = training.training_seconds if training else None
    billable_seconds = training.billable_seconds if training else None
    fallback = spot_fallback(state)
    # After a fallback, $.training (if any) is the on-demand job's: no spot savings on it.
    managed_spot = False if fallback is not None else (run.managed_spot if run else None)
    planned_job = None
    if run is not None:
        planned_job = run.on_demand_job_name if fallback is not None else run.training_job_name
    trained_mode, mode_reason = outcome.training_mode
    return {
        "runId": outcome.run_id,
        "executionName": outcome.execution_name,
        "status": outcome.status,
        "finishedAt": finished_at,
        "trainingMode": trained_mode,
        # Set only when train.py overrode the plan; PrepareRun wrote the planned reason.
        "trainingModeReason": mode_reason,
        "decisionForced": evaluation.forced if evaluation else None,
        "gateDecision": evaluation.gate_decision if evaluation else None,
        "championProblem": evaluation.champion_problem if evaluation else None,
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
        "trainedData": _trained_data(evaluation.trained_data if evaluation else None),
        # How the challenger learnt: replay rows, leaf refresh, rounds added, early stop, drift.
        "incremental": _incremental(evaluation.incremental if evaluation else None),
        "drift": _drift(evaluation.drift if evaluation else None),
        "previousChampion": run.champion_model_name if run else None,
        "trainingJobName": (training.job_name if training else None) or planned_job,
        "trainingJobStatus": training.status if training else None,
        "modelDataUrl": training.model_data_url if training else None,
        "metrics": _evaluation_metrics(evaluation) if evaluation else None,
        "decision": evaluation.decision if evaluation else None,
        "reason": evaluation.reason if evaluation else None,
        "endpointName": (deploy.endpoint_name if deploy else None)
        if promoted and outcome.endpoint_mode
        else None,
        "endpointConfigName": outcome.endpoint_config_name
        if promoted and outcome.endpoint_mode
        else None,
        "endpointStatus": endpoint.status if endpoint else None,
        "transformJobName": (
            (transform.job_name if transform else None)
            or (deploy.transform_job_name if deploy else None)
        )
        if batch and (promoted or transform is not None)
        else None,
        "transformJobStatus": transform.status if transform else None,
        "transformOutputPath": (deploy.transform_output_path if deploy else None)
        if batch and promoted
        else None,
        "managedSpotTraining": managed_spot,
        "trainingTimeInSeconds": training_seconds,
        "billableTimeInSeconds": billable_seconds,
        "spotSavingsPercent": spot_savings_percent(
            training_seconds, billable_seconds, managed_spot
        ),
        "capacityFallback": fallback.to_record() if fallback is not None else None,
        "cost": dict(run_cost) if run_cost is not None else None,
        "error": describe_error(state.error),
        "cleanup": dict(state.cleanup.raw) if state.cleanup is not None else None,
        "cleanupError": describe_error(state.cleanup_error),
    }


def champion(outcome: RunOutcome) -> ChampionPointer:
    """The pointer a promotion moves to the run's model."""
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
        run_id=(evaluation.trained_by_run if evaluation else None) or outcome.run_id,
        feature_count=evaluation.features if evaluation else None,
        objective=evaluation.objective if evaluation else None,
        model_package_arn=evaluation.model_package_arn if evaluation else None,
        data_window=_data_window(outcome),
    )


def _data_window(outcome: RunOutcome) -> DataWindow | None:
    """The promoted model's data window: the run's, or from its start after a drift restart."""
    run, evaluation = outcome.state.run, outcome.state.evaluation
    if run is None or outcome.is_rollback_run:
        return None  # a restored model: its window is not known any more
    sample = evaluation.replay_sample if evaluation else None
    drift = evaluation.drift if evaluation else None
    restarted = drift is not None and drift.detected is True
    window = DataWindow(
        since=run.started_at if restarted else run.data_window_since,
        base_rows=sample.base_rows if sample else None,
        seen_rows=sample.seen_rows if sample else None,
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
    if evaluation is None or evaluation.model_package_arn is None:
        return {"modelPackageError": evaluation.model_package_error if evaluation else None}
    arn = evaluation.model_package_arn
    if outcome.is_rollback_run:
        return _rollback_package_attributes(outcome, sagemaker, arn)
    status: lineage.ApprovalStatus
    if outcome.outcome == "promoted":
        status, reason = lineage.APPROVED, evaluation.reason or "promoted"
    else:
        status = lineage.REJECTED
        reason = evaluation.reason or "rejected"
        error = outcome.state.error
        if outcome.rolled_back:
            why = rollback_reason or "no reason given"
            reason = f"{ROLLED_BACK_ERROR}: the endpoint update was rolled back ({why})"
        elif outcome.outcome == "failed":
            cause = error.name if error else None
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
