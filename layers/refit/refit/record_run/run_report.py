"""RecordRun: the end of every execution, successful or not.

Turns ``{"outcome", "executionName", "state"}`` into the final run record, moves the champion
pointer on promotion, registers whatever SageMaker resources the run may have created for
cleanup, and publishes a notification. This module only orchestrates, in that order; the parts
are the sibling modules: ``outcome`` (the input, typed, and the status), ``usage`` (what the run
used, priced by ``cost``), ``record`` (the record, the champion pointer, the package status) and
``summary`` (the notification, published by ``notify``).

Step Functions retries this Lambda, so every write overwrites: a retry writes the same record,
pointer and index entry again (only ``finishedAt`` moves). The notification is sent last; a
retry after a lost Publish response can deliver it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from refit.config import Settings
from refit.ledger.run_records import RunRecords
from refit.record_run.cost import PriceTable
from refit.record_run.notify import publish
from refit.record_run.outcome import RESTORED, ROLLED_BACK, RunOutcome
from refit.record_run.record import (
    champion,
    endpoint_failure_reason,
    model_package_attributes,
    run_attributes,
)
from refit.record_run.summary import notification
from refit.record_run.usage import run_cost
from refit.timestamps import format_utc

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient

logger = Logger(child=True)

# CloudWatch metric counted once per finished run, by status.
RUN_METRICS: dict[str, str] = {
    "PROMOTED": "RunsPromoted",
    "REJECTED": "RunsRejected",
    "REJECTED_INPUT": "RunsRejectedInput",
    "FAILED": "RunsFailed",
    ROLLED_BACK: "RunsRolledBack",
    RESTORED: "RunsRestored",
}


@dataclass(frozen=True)
class CloudWatchMetric:
    name: str
    unit: str
    value: float


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
    run, evaluation = outcome.state.run, outcome.state.evaluation
    if limit < 1 or run is None or (evaluation is not None and evaluation.forced):
        if outcome.outcome == "promoted" and limit >= 1:
            records.reset_rejections()
        return
    if outcome.outcome == "promoted":
        records.reset_rejections()
    elif outcome.outcome == "rejected":
        planned, _ = outcome.training_mode
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
    pointer = champion(outcome) if outcome.outcome == "promoted" else None
    priced = run_cost(outcome, region or sns.meta.region_name, settings.stack_name, prices)
    record = run_attributes(outcome, finished_at, priced)
    rollback_reason = None
    deploy, evaluation = outcome.state.deploy, outcome.state.evaluation
    if outcome.rolled_back:
        rollback_reason = endpoint_failure_reason(
            sagemaker, deploy.endpoint_name if deploy else None
        )
        record["rollbackReason"] = rollback_reason
    record.update(model_package_attributes(outcome, sagemaker, rollback_reason))
    records.finish(outcome.run_id, record)
    if pointer is not None:
        records.set_champion(pointer, promoted_at=finished_at)
    _update_rejection_streak(outcome, records, settings.full_retrain_after_rejections)
    if outcome.decided_to_promote and deploy and deploy.model_name:
        # From the promote decision on, CreateModel (and CreateEndpointConfig) may have run,
        # even if a later state failed: cleanup must learn about them or they leak.
        records.register_resources(
            outcome.run_id,
            deploy.model_name,
            deploy.endpoint_config_name if outcome.endpoint_mode else None,
            created_at=finished_at,
            promoted=outcome.outcome == "promoted",
            model_package_arn=evaluation.model_package_arn if evaluation else None,
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
