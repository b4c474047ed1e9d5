"""What a run used, read from the state document: training jobs, endpoint rollout, transform.

RecordRun prices a run from these usages; the arithmetic is ``refit.record_run.cost``'s. A run
may pay for more than ``$.training`` shows: a spot job before the on-demand retry
(``$.capacityFallback``, its Describe in ``$.spotFailure``), or a job whose failure only its
Describe in ``$.error`` reports. Spending the state cannot show makes the total unknown, never a
guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from refit.record_run import cost
from refit.record_run.cost import PriceTable
from refit.record_run.outcome import RunOutcome
from refit.run_state import RunState, TrainingJobDescription


@dataclass(frozen=True)
class SpotFallback:
    """The record's ``capacityFallback``: spot capacity never came and the job was retried once
    on demand; why, and what the spot job ran and billed (its Describe in ``$.spotFailure``)."""

    from_capacity: str
    to_capacity: str
    reason: str | None
    spot_job_name: str | None
    on_demand_job_name: str | None
    spot_job_status: str | None
    spot_failure_reason: str | None
    spot_training_seconds: int | None
    spot_billable_seconds: int | None

    def to_record(self) -> dict[str, Any]:
        found = {
            "from": self.from_capacity,
            "to": self.to_capacity,
            "reason": self.reason,
            "spotJobName": self.spot_job_name,
            "onDemandJobName": self.on_demand_job_name,
            "spotJobStatus": self.spot_job_status,
            "spotFailureReason": self.spot_failure_reason,
            "spotTrainingTimeInSeconds": self.spot_training_seconds,
            "spotBillableTimeInSeconds": self.spot_billable_seconds,
        }
        return {k: v for k, v in found.items() if v is not None}


def spot_fallback(state: RunState) -> SpotFallback | None:
    """``$.capacityFallback`` with the spot job's reason and times, if the retry ran."""
    fallback = state.capacity_fallback
    if fallback is None:
        return None
    described = state.spot_failure.training_job if state.spot_failure else None
    spot = described or TrainingJobDescription.parse({})
    secondary = spot.secondary_status
    reason = secondary if secondary == "MaxWaitTimeExceeded" else spot.failure_reason or secondary
    run = state.run
    return SpotFallback(
        from_capacity=fallback.from_capacity or "spot",
        to_capacity=fallback.to_capacity or "on-demand",
        reason=reason,
        spot_job_name=fallback.spot_job_name or spot.job_name,
        on_demand_job_name=fallback.on_demand_job_name or (run.on_demand_job_name if run else None),
        spot_job_status=spot.status,
        spot_failure_reason=spot.failure_reason,
        spot_training_seconds=spot.training_seconds,
        spot_billable_seconds=spot.billable_seconds,
    )


def _described_training(
    describe: TrainingJobDescription, fallback_fleet: cost.Fleet, managed_spot: bool | None
) -> cost.TrainingJobUsage:
    return cost.TrainingJobUsage(
        job_name=describe.job_name,
        fleet=cost.Fleet(
            describe.instance_type or fallback_fleet.instance_type,
            describe.instance_count or fallback_fleet.instance_count,
        ),
        training_seconds=describe.training_seconds,
        # SageMaker reports billable time only once a job ran on instances: a job that never
        # got capacity billed nothing.
        billable_seconds=describe.billable_seconds or 0,
        managed_spot=describe.managed_spot if describe.managed_spot is not None else managed_spot,
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
    fallback = spot_fallback(state)
    if fallback is not None:
        jobs.append(
            cost.TrainingJobUsage(
                job_name=fallback.spot_job_name,
                fleet=fleet,
                training_seconds=fallback.spot_training_seconds,
                billable_seconds=fallback.spot_billable_seconds or 0,
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
    failed = state.error.failed_training_job if state.error else None
    if failed is not None and failed.job_name not in {j.job_name for j in jobs}:
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
            window=cost.Window.parse(polls.started_at, polls.last_polled_at),
        )
    transform = None
    described = state.transform
    if described is None and state.error is not None:
        described = state.error.failed_transform_job
    if described is not None:
        transform = cost.TransformUsage(
            job_name=described.job_name or deploy.transform_job_name,
            fleet=cost.Fleet(deploy.transform_instance_type, deploy.transform_instance_count),
            window=cost.Window.parse(described.start_time, described.end_time),
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
