"""PrepareRun: from an execution input to a RunPlan and a RUNNING run record.

Order matters: everything that can refuse the run without side effects (input, endpoint state,
test data) comes before anything that changes the bucket (moving rejected files, pinning the
accepted versions under ``runs/<runId>/data/``, manifests, code upload). Failures are
exceptions whose class names read well as ``$.error.Error`` in Step Functions:
``InvalidRunInput``, ``RunInProgress``, ``EndpointBusy``, ``EndpointFailed``, ``NoTestData``,
``TrainingCodeMissing``, ``UnsupportedMetricError``, ``NoRollbackTarget``.

A rollback run (``{"rollback": ...}``, refit.registry.rollback) stops after the champion: it finds
its target in the Model Registry and plans the deployment only; the bucket is not touched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import refit_data
from aws_lambda_powertools import Logger

from refit import layout
from refit.config import Settings
from refit.data import datasets, file_checks
from refit.data.train_channel import train_channel
from refit.data.trained_data import load_trained
from refit.ledger.run_queue import RunQueue, StepFunctionsExecutions, hold_run_lock
from refit.ledger.run_records import ChampionPointer, RunRecords
from refit.metrics import higher_is_better
from refit.prepare_run.holdout import champion_run_started_at, split_holdout
from refit.prepare_run.run_plan import PlanInputs, build_rollback_plan, build_run_plan, plan_size
from refit.prepare_run.training_code import publish_training_code
from refit.prepare_run.warm_start import WarmStart, check_warm_start, known_pointer
from refit.registry.champion import ChampionState, resolve_champion
from refit.registry.rollback import find_rollback_target
from refit.run_input import InvalidRunInput, RollbackRequest, RunRequest, parse_run_input
from refit.timestamps import format_utc

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_stepfunctions import SFNClient

logger = Logger(child=True)


@dataclass(frozen=True)
class PrepareRunEvent:
    """The Lambda payload the state machine sends: the execution input and who is running.

    ASL: ``"Payload": {"input.$": "$", "executionName.$": "$$.Execution.Name",
    "executionArn.$": "$$.Execution.Id", "startTime.$": "$$.Execution.StartTime"}``.
    """

    execution_input: Any
    execution_name: str
    execution_arn: str
    start_time: str | None = None
    # The second call, after the CheckDataFiles map: take its verdicts, never fan out again.
    after_checks: bool = False

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> PrepareRunEvent:
        name = event.get("executionName")
        arn = event.get("executionArn")
        if not isinstance(name, str) or not name or not isinstance(arn, str) or not arn:
            # A wiring mistake in the ASL, not a user error.
            raise ValueError("PrepareRun expects {input, executionName, executionArn}")
        start = event.get("startTime")
        return cls(
            event.get("input"),
            name,
            arn,
            start if isinstance(start, str) else None,
            after_checks=event.get("afterChecks") is True,
        )


def prepare_run(
    event: PrepareRunEvent,
    *,
    s3: S3Client,
    sagemaker: SageMakerClient,
    records: RunRecords,
    queue: RunQueue,
    settings: Settings,
    now: datetime,
    sfn: Callable[[], SFNClient] | None = None,
) -> dict[str, Any]:
    run_id = event.execution_name
    try:
        request = parse_run_input(event.execution_input)
    except InvalidRunInput as error:
        raise InvalidRunInput(f"execution {run_id}: {error}") from None
    # The execution's own start time survives Lambda retries; ``now`` is for direct calls.
    started_at = event.start_time or format_utc(now, "auto")
    # One run at a time trains and deploys the stack's model: a dispatched run holds the lock
    # already, a manual one takes it here or is refused before touching anything.
    hold_run_lock(
        queue,
        records,
        run_id,
        started_at,
        executions=(
            None
            if sfn is None
            else lambda: StepFunctionsExecutions.of_execution(sfn(), event.execution_arn)
        ),
    )
    higher_is_better(settings.evaluation_metric)  # a bad EVALUATION_METRIC fails before any move
    deployment_mode = request.deployment_mode or settings.deployment_mode
    state = resolve_champion(sagemaker, records, settings.endpoint_name, deployment_mode)
    if request.rollback is not None:
        return _prepare_rollback(
            event,
            request.rollback,
            request,
            state,
            sagemaker=sagemaker,
            records=records,
            settings=settings,
            started_at=started_at,
        )
    champion = state.champion
    bucket = settings.data_bucket
    datasets.require_test_data(s3, bucket)
    pointer = known_pointer(records, champion)
    since = data_window_since(request, pointer)
    # The labels the stack's objective can learn, as the job will check them.
    rule = refit_data.label_rule(settings.objective)
    trained = functools.cache(lambda: load_trained(s3, bucket))  # read at most once
    # Many bytes to read: the CheckDataFiles map checks the files in parallel, then this runs
    # again with its verdicts (refit.data.file_checks).
    verdicts = file_checks.load_verdicts(s3, bucket, run_id) if event.after_checks else None
    features = champion.feature_count if champion is not None else None
    expected = datasets.champion_columns(features) if features is not None else None

    def fan_out(to_check: tuple[datasets.Candidate, ...]) -> dict[str, Any]:
        return file_checks.plan_checks(
            s3, bucket, run_id, to_check, expected, settings.check_concurrency
        )

    def select(
        covered: RunRequest,
        checked: tuple[datasets.DataFile, ...] = (),
        refused: frozenset[str] = frozenset(),
    ) -> datasets.DataSelection:
        return datasets.select_data(
            s3,
            bucket,
            covered,
            run_id=run_id,
            max_file_bytes=settings.max_file_mb * 1024 * 1024,
            champion_features=features,
            rule=rule,
            # A listing run (a full retrain, a prefix) reuses what earlier runs validated and
            # pinned.
            trained=None if covered.objects else trained(),
            since=since,
            already_checked=checked,
            already_rejected=refused,
            verdicts=verdicts,
            fan_out_bytes=None if event.after_checks else settings.inline_check_mb * 1024**2,
        )

    selection = select(request)
    if selection.to_check:
        return fan_out(selection.to_check)
    # The gate: may this run warm-start (HeadObjects and one GetItem, nothing changed).
    warm_start = check_warm_start(
        s3,
        records,
        champion,
        pointer,
        objective=settings.objective,
        data_columns=selection.columns,
        new_rows=selection.rows,
        full_retrain_after_rejections=settings.full_retrain_after_rejections,
        full_retrain_growth=settings.full_retrain_growth,
    )
    if _retrains_on_all_data(request, warm_start):
        # A full retrain instead of this delivery's increment: on every file in the window (the
        # delivery's own files as just checked, not read again).
        everything = select(
            replace(request, objects=(), prefix=None),
            selection.accepted,
            selection.rejected_keys,
        )
        if everything.to_check:
            return fan_out(everything.to_check)
        selection = selection.merged(everything)
    # Every check is done: now the bucket changes. Refused files leave data/train/, and the job
    # reads pinned copies, not the keys: nothing after this line changes its data.
    selection = datasets.set_aside_rejected(s3, bucket, run_id, selection)
    selection = datasets.pin_accepted(s3, bucket, run_id, selection)
    if request.source != "s3":
        # A manual run trains on files it listed itself: record them in the intake ledger so an
        # S3 event arriving late for one of them is a duplicate, and a queued one is not
        # trained again by the next run.
        queue.take(run_id, [f.data_object() for f in selection.accepted], started_at)
    manifests = datasets.write_manifests(s3, bucket, run_id, request, selection, started_at)
    channel = (
        train_channel(
            s3,
            bucket,
            run_id,
            selection.accepted,
            manifests.train_manifest_uri,
            settings.training_instance_count,
            settings.training_input_mode,
        )
        if selection.accepted
        else None
    )
    code_uri = publish_training_code(s3, bucket, settings.training_code_dir)
    # Which test data is fresh vs retained.
    test_sets = split_holdout(s3, bucket, run_id, champion_run_started_at(records, champion))
    plan = build_run_plan(
        PlanInputs(
            run_id=run_id,
            request=request,
            selection=selection,
            manifests=manifests,
            train_channel=channel,
            champion=state,
            code_uri=code_uri,
            has_validation_data=datasets.has_objects(
                s3, bucket, layout.VALIDATION_PREFIX, data_only=True
            ),
            has_batch_input=datasets.has_objects(s3, bucket, layout.BATCH_INPUT_PREFIX),
            region=s3.meta.region_name,
            warm_start=warm_start,
            test_sets=test_sets,
            started_at=started_at,
            data_window_since=since,
        ),
        settings,
    )
    records.put_started(
        run_id,
        {
            "executionArn": event.execution_arn,
            "startedAt": started_at,
            "request": request.summary(),
            "planStatus": plan.status,
            "trainingMode": plan.training_mode,
            "trainingModeReason": plan.training_mode_reason,
            "dataWindow": plan.data_window.to_document() if plan.data_window else None,
            "deploymentMode": plan.deployment_mode,
            "data": plan.data.summary() if plan.data else None,
            "manifestUri": manifests.manifest_uri,
            "jobName": plan.training_job_name,
            "champion": plan.champion.to_dict() if plan.champion else None,
            "codeUri": code_uri,
            "testSets": plan.test_sets.to_dict() if plan.test_sets else None,
            "forceDecision": plan.force_decision,
        },
    )
    logger.info(
        "run prepared",
        extra={
            "runId": run_id,
            "status": plan.status,
            "trainingMode": plan.training_mode,
            "planBytes": plan_size(plan),
        },
    )
    return plan.to_document()


def data_window_since(request: RunRequest, pointer: ChampionPointer | None) -> str | None:
    """The data window a run trains in: the champion's (a drift restarted it), except for a
    full retrain asked for by hand, which trains on everything (the way back from a drift that
    was none, or from any window)."""
    if request.training_mode == "full" and request.source != "schedule":
        return None
    window = pointer.data_window if pointer is not None else None
    return window.since if window is not None else None


def _retrains_on_all_data(request: RunRequest, warm_start: WarmStart) -> bool:
    """A warm start refused for a run that selected less than all of ``data/train/``."""
    partial = bool(request.objects) or request.data_prefix != layout.TRAIN_PREFIX
    return (
        request.training_mode != "full"
        and warm_start.full_retrain_reason is not None
        and not warm_start.delivery_only
        and partial
    )


def _prepare_rollback(
    event: PrepareRunEvent,
    rollback: RollbackRequest,
    request: RunRequest,
    state: ChampionState,
    *,
    sagemaker: SageMakerClient,
    records: RunRecords,
    settings: Settings,
    started_at: str,
) -> dict[str, Any]:
    run_id = event.execution_name
    live = state.champion
    target = find_rollback_target(
        sagemaker,
        layout.model_package_group_name(settings.stack_name),
        rollback,
        live.model_package_arn if live else None,
    )
    deployment_mode = request.deployment_mode or settings.deployment_mode
    plan = build_rollback_plan(run_id, target, state, deployment_mode, settings)
    records.put_started(
        run_id,
        {
            "executionArn": event.execution_arn,
            "startedAt": started_at,
            "kind": "rollback",
            "request": request.summary(),
            "planStatus": plan.status,
            "deploymentMode": plan.deployment_mode,
            "champion": plan.champion.to_dict() if plan.champion else None,
            "rollback": plan.rollback.summary() if plan.rollback else None,
        },
    )
    logger.info(
        "rollback prepared",
        extra={
            "runId": run_id,
            "target": target.package_arn,
            "replacing": live.model_name if live else None,
        },
    )
    return plan.to_document()
