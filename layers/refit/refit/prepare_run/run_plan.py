"""The RunPlan (``$.run``): every request the state machine sends, built once, in one place.

``trainingJob`` is a CreateTrainingJob request whose top-level keys the ASL passes verbatim;
``onDemandTrainingJob`` (spot stacks only, else null) is the same request on on-demand capacity,
which the workflow runs once when spot capacity never came, resuming from the same checkpoints;
``deploy`` holds the names and settings of the model, endpoint config, endpoint and batch
transform. Numbers the states need (poll interval, poll limit) live here too, so the ASL stays
plain JSON. The plan is kept small (Step Functions refuses states over 256 KiB with an error
no Catch handles): object lists stay in the run manifest, and only the first few rejected files
are inlined for the notification.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Literal

from refit import layout
from refit.config import DeploymentMode, Settings
from refit.data.datasets import DataSelection, RunManifests
from refit.metrics import higher_is_better
from refit.prepare_run.holdout import HoldoutSplit
from refit.prepare_run.warm_start import WarmStart
from refit.registry.champion import Champion, ChampionState
from refit.registry.rollback import RollbackTarget
from refit.run_input import RunRequest, TrainingMode

Mode = Literal["full", "incremental"]
PlanStatus = Literal["ready", "rejected-input", "rollback"]

# Inlined rejected files share this budget; the rest are in the manifest.
INLINE_REJECTED_MAX_BYTES = 16 * 1024
_INLINE_REASON_MAX_CHARS = 300
_VOLUME_SIZE_GB = 30
# A number as the training script prints it, e.g. 0.41, 1e-05, -3.2E+2.
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


@dataclass(frozen=True)
class PlanInputs:
    run_id: str
    request: RunRequest
    selection: DataSelection
    manifests: RunManifests
    champion: ChampionState
    code_uri: str
    has_validation_data: bool
    has_batch_input: bool
    region: str
    # The gate (refit.prepare_run.warm_start, refit.prepare_run.holdout); None: warm start as
    # planned, data/test/ whole.
    warm_start: WarmStart | None = None
    test_sets: HoldoutSplit | None = None
    started_at: str | None = None
    # The data window the run trains in (refit.ledger.run_records.DataWindow.since); None: all data.
    data_window_since: str | None = None


def choose_training_mode(
    requested: TrainingMode, champion: Champion | None, source: str = "manual"
) -> tuple[Mode, str]:
    """Full or incremental, and why (recorded with the run)."""
    if requested == "full":
        if source == "schedule":
            return "full", "scheduled full retrain (FullRetrainSchedule)"
        return "full", "full retraining requested"
    if champion is None:
        if requested == "incremental":
            return "full", "incremental requested but there is no champion to continue from"
        return "full", "no champion yet"
    if requested == "incremental":
        return "incremental", f"incremental requested: continuing {champion.model_name}"
    return "incremental", f"continuing the champion {champion.model_name}"


def metric_definitions(metric: str) -> list[dict[str, str]]:
    """CloudWatch metrics from the script's log lines ``test-<m>: v`` and ``champion-test-<m>: v``.

    The challenger's pattern must not match inside the champion's line, hence the anchor; the
    same goes for the retained-data lines ``retained-test-<m>`` and ``champion-retained-test-<m>``.
    """
    return [
        {"Name": f"test-{metric}", "Regex": rf"(?:^|\s)test-{metric}: {_NUMBER}"},
        {"Name": f"champion-test-{metric}", "Regex": rf"champion-test-{metric}: {_NUMBER}"},
        {
            "Name": f"retained-test-{metric}",
            "Regex": rf"(?:^|\s)retained-test-{metric}: {_NUMBER}",
        },
        {
            "Name": f"champion-retained-test-{metric}",
            "Regex": rf"champion-retained-test-{metric}: {_NUMBER}",
        },
    ]


def build_run_plan(inputs: PlanInputs, settings: Settings) -> dict[str, Any]:
    champion = inputs.champion.champion
    mode, reason = choose_training_mode(
        inputs.request.training_mode, champion, inputs.request.source
    )
    mode, reason = _unless_warm_start_is_unsafe(mode, reason, inputs.warm_start)
    since = inputs.data_window_since
    if mode == "full" and since is not None:
        reason += (
            f"; on the data trained since {since}, when drift was detected "
            f"({inputs.selection.outside_window} older files left out)"
        )
    deployment_mode: DeploymentMode = inputs.request.deployment_mode or settings.deployment_mode
    status: PlanStatus = "ready" if inputs.selection.accepted else "rejected-input"
    job_name = layout.sagemaker_name(inputs.run_id)
    training_job = _training_job(inputs, settings, job_name, mode)
    return {
        "runId": inputs.run_id,
        "status": status,
        "source": inputs.request.source,
        "trainingMode": mode,
        "trainingModeReason": reason,
        "startedAt": inputs.started_at,
        "dataWindow": {"since": since, "outsideWindow": inputs.selection.outside_window},
        "deploymentMode": deployment_mode,
        "metric": settings.evaluation_metric,
        # Fails here (before an hour of training) if the metric is not one refit can gate on.
        "higherIsBetter": higher_is_better(settings.evaluation_metric),
        "data": _data_summary(inputs),
        "champion": champion.to_dict() if champion else None,
        "trainingJob": training_job,
        "onDemandTrainingJob": _on_demand_training_job(training_job, inputs.run_id, settings),
        "deploy": _deploy(
            settings,
            inputs.run_id,
            endpoint_exists=inputs.champion.endpoint_exists,
            image=settings.training_image_uri,
            environment=_serving_environment(inputs.code_uri, inputs.region),
            has_batch_input=inputs.has_batch_input,
        ),
        # The gate: EvaluateModels reads these (refit.run_state.RunSection).
        "forceDecision": inputs.request.force_decision,
        "championProblem": inputs.warm_start.champion_problem if inputs.warm_start else None,
        "testSets": inputs.test_sets.to_dict() if inputs.test_sets else None,
    }


def _unless_warm_start_is_unsafe(
    mode: Mode, reason: str, warm_start: WarmStart | None
) -> tuple[Mode, str]:
    if mode == "incremental" and warm_start is not None and warm_start.full_retrain_reason:
        return "full", warm_start.full_retrain_reason
    return mode, reason


def _test_channels(inputs: PlanInputs, settings: Settings) -> list[dict[str, Any]]:
    """``test`` (fresh) and, when PrepareRun split data/test/, ``test_retained`` (older)."""
    split = inputs.test_sets
    if split is None or split.fresh_manifest_uri is None or split.retained_manifest_uri is None:
        return [_prefix_channel(layout.CHANNEL_TEST, _s3(settings, layout.TEST_PREFIX))]
    return [
        _manifest_channel(layout.CHANNEL_TEST, split.fresh_manifest_uri),
        _manifest_channel(layout.CHANNEL_TEST_RETAINED, split.retained_manifest_uri),
    ]


def _manifest_channel(name: str, uri: str) -> dict[str, Any]:
    channel = _prefix_channel(name, uri)
    channel["DataSource"]["S3DataSource"]["S3DataType"] = "ManifestFile"
    return channel


def plan_size(plan: dict[str, Any]) -> int:
    return len(json.dumps(plan, separators=(",", ":")).encode())


def _data_summary(inputs: PlanInputs) -> dict[str, Any]:
    selection = inputs.selection
    inline: list[dict[str, Any]] = []
    used = 0
    for rejected in selection.rejected[: layout.INLINE_KEYS_MAX]:
        entry = rejected.to_dict()
        entry["reason"] = entry["reason"][:_INLINE_REASON_MAX_CHARS]
        used += len(json.dumps(entry).encode())
        if used > INLINE_REJECTED_MAX_BYTES:
            break
        inline.append(entry)
    return {
        "accepted": len(selection.accepted),
        "rejected": len(selection.rejected),
        "skipped": len(selection.skipped),
        "rows": selection.rows,
        "columns": selection.columns,
        "manifestUri": inputs.manifests.manifest_uri,
        "trainManifestUri": inputs.manifests.train_manifest_uri,
        "rejectedFiles": inline,
        "rejectedFilesInline": len(inline),
    }


def _tags(settings: Settings, run_id: str, role: str | None = None) -> list[dict[str, str]]:
    tags = [
        {"Key": layout.TAG_STACK, "Value": settings.stack_name},
        {"Key": layout.TAG_RUN, "Value": run_id},
    ]
    if role:
        tags.append({"Key": layout.TAG_ROLE, "Value": role})
    return tags


def _s3(settings: Settings, key: str) -> str:
    return f"s3://{settings.data_bucket}/{key}"


def _prefix_channel(name: str, uri: str, content_type: str = "text/csv") -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "ContentType": content_type,
    }


def _training_job(
    inputs: PlanInputs, settings: Settings, job_name: str, mode: Mode
) -> dict[str, Any]:
    champion = inputs.champion.champion
    channels: list[dict[str, Any]] = [
        {
            "ChannelName": layout.CHANNEL_TRAIN,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "ManifestFile",
                    "S3Uri": inputs.manifests.train_manifest_uri,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": "text/csv",
        }
    ]
    if inputs.has_validation_data:
        channels.append(
            _prefix_channel(layout.CHANNEL_VALIDATION, _s3(settings, layout.VALIDATION_PREFIX))
        )
    channels.extend(_test_channels(inputs, settings))
    unscorable = inputs.warm_start is not None and inputs.warm_start.champion_problem is not None
    if champion is not None and not unscorable:
        # Also in full mode: the script scores the champion on the same test set.
        channels.append(
            _prefix_channel(
                layout.CHANNEL_MODEL, champion.model_data_url, "application/x-sagemaker-model"
            )
        )
    replay_uri = inputs.warm_start.replay_uri if inputs.warm_start else None
    if mode == "incremental" and replay_uri is not None:
        # The champion's output.tar.gz: train.py reads its replay/ sample (old rows to learn with).
        channels.append(_prefix_channel(layout.CHANNEL_REPLAY, replay_uri, "application/x-tar"))
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
    if settings.use_spot_training:
        stopping["MaxWaitTimeInSeconds"] = settings.max_wait_seconds
    rounds = settings.num_rounds_incremental if mode == "incremental" else settings.num_rounds_full
    return {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": settings.training_image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions(settings.evaluation_metric),
        },
        # SageMaker hands hyperparameters to the script as strings.
        "HyperParameters": {
            "sagemaker_program": layout.TRAINING_ENTRY_POINT,
            "sagemaker_submit_directory": inputs.code_uri,
            "objective": settings.objective,
            "num_round": str(rounds),
            # Full rounds' eta; the rounds an incremental job appends use incremental_eta.
            "eta": str(settings.learning_rate),
            # If train.py finds the warm start unsafe after all, it trains from scratch this long.
            "full_num_round": str(settings.num_rounds_full),
            "eval_metric": settings.evaluation_metric,
            "refit_mode": mode,
            "checkpoint_interval": str(settings.checkpoint_interval_rounds),
            # Incremental jobs: the appended rounds' eta (early-stopped, at most num_round), and
            # the rows of replay sample every job writes for the next one.
            "incremental_eta": str(settings.incremental_learning_rate),
            "replay_rows": str(settings.replay_sample_rows),
        },
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": _s3(settings, layout.MODELS_PREFIX)},
        "ResourceConfig": {
            "InstanceType": settings.training_instance_type,
            "InstanceCount": settings.training_instance_count,
            "VolumeSizeInGB": _VOLUME_SIZE_GB,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": settings.use_spot_training,
        # Always on: a spot interruption resumes from it, and so does an on-demand job that
        # SageMaker restarts after a host failure.
        "CheckpointConfig": {
            "S3Uri": _s3(settings, f"{layout.CHECKPOINTS_PREFIX}{job_name}/"),
            "LocalPath": layout.CHECKPOINT_LOCAL_PATH,
        },
        "RoleArn": settings.sagemaker_role_arn,
        "Tags": _tags(settings, inputs.run_id),
    }


def _on_demand_training_job(
    spot_job: dict[str, Any], run_id: str, settings: Settings
) -> dict[str, Any] | None:
    """The spot request on on-demand capacity: the workflow's one retry when spot never came.

    Same data, code, hyperparameters and output, and the same ``CheckpointConfig.S3Uri``: the
    script resumes from whatever the spot job checkpointed. Its own name (job names are unique),
    no ``MaxWaitTimeInSeconds`` (on-demand only) and a tag saying which capacity it ran on.
    None when the stack trains on demand anyway: there is nothing to fall back to.
    """
    if not spot_job["EnableManagedSpotTraining"]:
        return None
    job = copy.deepcopy(spot_job)
    job["TrainingJobName"] = layout.sagemaker_name(run_id, layout.ON_DEMAND_JOB_SUFFIX)
    job["EnableManagedSpotTraining"] = False
    job["StoppingCondition"] = {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
    job["Tags"] = [*job["Tags"], {"Key": layout.TAG_CAPACITY, "Value": "on-demand"}]
    return job


def build_rollback_plan(
    run_id: str,
    target: RollbackTarget,
    champion: ChampionState,
    deployment_mode: DeploymentMode,
    settings: Settings,
) -> dict[str, Any]:
    """The plan of a rollback run (refit.registry.rollback): no training job, the target's
    container.

    ``rollback.training`` and ``rollback.evaluation`` become ``$.training`` and ``$.evaluation``
    (state StartRollback), which is what CreateModel and RecordRun read after a promotion.
    """
    live = champion.champion
    version = target.version
    reason = (
        f"rollback to model package version {version}"
        + (f" (trained by run {target.trained_by_run})" if target.trained_by_run else "")
        + (f", replacing {live.model_name}" if live else "")
    )
    metadata = target.metadata
    return {
        "runId": run_id,
        "status": "rollback",
        "kind": "rollback",
        "source": "manual",
        "trainingMode": None,
        "trainingModeReason": None,
        "deploymentMode": deployment_mode,
        "metric": settings.evaluation_metric,
        "data": None,
        "champion": live.to_dict() if live else None,
        "trainingJob": None,
        "onDemandTrainingJob": None,
        "deploy": _deploy(
            settings,
            run_id,
            endpoint_exists=champion.endpoint_exists,
            image=target.image,
            environment=dict(target.environment),
            # A batch stack's rollback moves the champion; the next batch transform uses it.
            has_batch_input=False,
        ),
        "forceDecision": None,
        "championProblem": None,
        "testSets": None,
        "rollback": {
            "modelPackageArn": target.package_arn,
            "modelPackageVersion": version,
            "trainedByRun": target.trained_by_run,
            "replacedModelPackageArn": live.model_package_arn if live else None,
            "replacedModelName": live.model_name if live else None,
            "training": {"modelDataUrl": target.model_data_url},
            "evaluation": {
                "decision": "promote",
                "reason": reason,
                "rollback": True,
                "modelPackageArn": target.package_arn,
                "modelPackageVersion": version,
                "trainedByRun": target.trained_by_run,
                "metric": metadata.get("metric"),
                "challenger": metadata.get("challenger"),
                "features": _int_or_none(metadata.get("features")),
                "objective": metadata.get("objective"),
            },
        },
    }


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _serving_environment(code_uri: str, region: str) -> dict[str, str]:
    # Script mode serves with the training image, importing inference.py from the sourcedir.
    return {
        "SAGEMAKER_PROGRAM": layout.INFERENCE_ENTRY_POINT,
        "SAGEMAKER_SUBMIT_DIRECTORY": code_uri,
        # What a request without Accept (or with */*) gets: CSV, like the data refit trains on
        # (the toolkit's own default is JSON).
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": region,
    }


def _deploy(
    settings: Settings,
    run_id: str,
    *,
    endpoint_exists: bool,
    image: str,
    environment: dict[str, str],
    has_batch_input: bool,
) -> dict[str, Any]:
    job_name = layout.sagemaker_name(run_id)
    return {
        "modelName": job_name,
        "endpointConfigName": job_name,
        "endpointName": settings.endpoint_name,
        "endpointExists": endpoint_exists,
        "image": image,
        "environment": environment,
        "instanceType": settings.endpoint_instance_type,
        "instanceCount": settings.endpoint_instance_count,
        "tags": _tags(settings, run_id),
        "modelTags": _tags(settings, run_id, "model"),
        "endpointConfigTags": _tags(settings, run_id, "endpoint-config"),
        "pollSeconds": settings.endpoint_poll_seconds,
        # Polls for provisioning only: WaitForRollout sleeps through the shifts and the bake of
        # an update (refit.rollout) in one transition before the first poll.
        "maxPolls": settings.endpoint_max_polls,
        "deploymentConfig": settings.rollout.deployment_config(),
        "rolloutSeconds": settings.rollout.shifting_seconds if endpoint_exists else 0,
        "transform": {
            "hasInput": has_batch_input,
            "TransformJobName": job_name,
            "ModelName": job_name,
            "TransformInput": {
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": _s3(settings, layout.BATCH_INPUT_PREFIX),
                    }
                },
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            "TransformOutput": {
                "S3OutputPath": _s3(settings, f"{layout.BATCH_OUTPUT_PREFIX}{run_id}/"),
                "AssembleWith": "Line",
                "Accept": "text/csv",
            },
            "TransformResources": {
                "InstanceType": settings.endpoint_instance_type,
                "InstanceCount": 1,
            },
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 6,
            "Tags": _tags(settings, run_id, "transform"),
            # Written once the job has succeeded: consumers of the run's output prefix wait for it.
            "successMarker": {
                "Bucket": settings.data_bucket,
                "Key": f"{layout.BATCH_OUTPUT_PREFIX}{run_id}/{layout.SUCCESS_MARKER}",
            },
        },
    }
