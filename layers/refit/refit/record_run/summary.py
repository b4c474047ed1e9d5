"""The notification RecordRun publishes: a short human summary, then the run record as JSON.

The summary is written from the run record (and its ``cost`` block), not from the state: it
says what was recorded, in the order a person asks (what ran, what was decided, where it is
served, what it cost, what went wrong). Publishing within SNS's limits is
``refit.record_run.notify``'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from refit.record_run import cost
from refit.record_run.notify import Notification
from refit.record_run.outcome import ROLLED_BACK, RunOutcome


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
