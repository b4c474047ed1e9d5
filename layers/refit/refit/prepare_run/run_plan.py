"""The RunPlan (``$.run``): every request the state machine sends, built once, in one place.

``trainingJob`` is a CreateTrainingJob request whose top-level keys the ASL passes verbatim;
``onDemandTrainingJob`` (spot stacks only, else null) is the same request on on-demand capacity,
which the workflow runs once when spot capacity never came, resuming from the same checkpoints;
``deploy`` holds the names and settings of the model, endpoint config, endpoint and batch
transform. Numbers the states need (poll interval, poll limit) live here too, so the ASL stays
plain JSON. The plan is kept small (Step Functions refuses states over 256 KiB with an error
no Catch handles): object lists stay in the run manifest, and only the first few rejected files
are inlined for the notification.

:class:`RunPlan` is the plan as refit's code reads it; :meth:`RunPlan.to_document` renders the
JSON document the state machine receives (the keys the ASL and refit.run_state read). The AWS
requests in it (CreateTrainingJob, CreateTransformJob, DeploymentConfig) stay dicts: the ASL
passes them verbatim.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from refit import layout
from refit.config import DeploymentMode, Settings
from refit.data.datasets import DataSelection, RunManifests
from refit.data.rejected import RejectedFile
from refit.data.train_channel import TrainChannel
from refit.metrics import higher_is_better
from refit.prepare_run.holdout import HoldoutSplit
from refit.prepare_run.warm_start import WarmStart
from refit.registry.champion import Champion, ChampionState
from refit.registry.rollback import RollbackTarget
from refit.run_input import ForcedDecision, RunRequest, Source, TrainingMode

Mode = Literal["full", "incremental"]
PlanStatus = Literal["ready", "rejected-input", "rollback"]

# Inlined rejected files share this budget; the rest are in the manifest.
INLINE_REJECTED_MAX_BYTES = 16 * 1024
_INLINE_REASON_MAX_CHARS = 300
_VOLUME_SIZE_GB = 30
# A number as the training script prints it, e.g. 0.41, 1e-05, -3.2E+2.
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

# An AWS resource tag, {"Key": ..., "Value": ...}.
Tag = dict[str, str]


@dataclass(frozen=True)
class PlanDataWindow:
    """``dataWindow``: the data the run trains on (refit.ledger.run_records.DataWindow)."""

    since: str | None  # None: all data
    outside_window: int  # listed files left out because they trained before ``since``

    def to_document(self) -> dict[str, Any]:
        return {"since": self.since, "outsideWindow": self.outside_window}


@dataclass(frozen=True)
class PlanData:
    """``data``: what the run selected; the lists stay in the run manifest."""

    accepted: int
    rejected: int
    skipped: int
    rows: int
    columns: int | None
    manifest_uri: str
    train_manifest_uri: str
    # The first few rejected files (reasons cut short), for the notification.
    rejected_files: tuple[RejectedFile, ...]

    def summary(self) -> dict[str, Any]:
        """The document without the inlined files: what the run record keeps."""
        return {**self._counts(), "rejectedFilesInline": len(self.rejected_files)}

    def to_document(self) -> dict[str, Any]:
        return {
            **self._counts(),
            "rejectedFiles": [f.to_dict() for f in self.rejected_files],
            "rejectedFilesInline": len(self.rejected_files),
        }

    def _counts(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "rows": self.rows,
            "columns": self.columns,
            "manifestUri": self.manifest_uri,
            "trainManifestUri": self.train_manifest_uri,
        }


@dataclass(frozen=True)
class PlanTransform:
    """``deploy.transform``: a CreateTransformJob request the ASL passes verbatim, plus whether
    there is input to transform and the marker written once the job has succeeded."""

    has_input: bool
    request: dict[str, Any]
    success_marker_bucket: str
    success_marker_key: str

    @property
    def job_name(self) -> str:
        return str(self.request["TransformJobName"])

    def to_document(self) -> dict[str, Any]:
        return {
            "hasInput": self.has_input,
            **self.request,
            "successMarker": {"Bucket": self.success_marker_bucket, "Key": self.success_marker_key},
        }


@dataclass(frozen=True)
class PlanDeploy:
    """``deploy``: the names and settings of the model, endpoint config, endpoint and transform."""

    model_name: str
    endpoint_config_name: str
    endpoint_name: str
    endpoint_exists: bool
    image: str
    environment: dict[str, str]
    instance_type: str
    instance_count: int
    tags: tuple[Tag, ...]
    model_tags: tuple[Tag, ...]
    endpoint_config_tags: tuple[Tag, ...]
    poll_seconds: int
    # Polls for provisioning only: WaitForRollout sleeps through the shifts and the bake of
    # an update (refit.rollout) in one transition before the first poll.
    max_polls: int
    deployment_config: dict[str, Any]  # UpdateEndpoint's DeploymentConfig
    rollout_seconds: int
    transform: PlanTransform

    def to_document(self) -> dict[str, Any]:
        return {
            "modelName": self.model_name,
            "endpointConfigName": self.endpoint_config_name,
            "endpointName": self.endpoint_name,
            "endpointExists": self.endpoint_exists,
            "image": self.image,
            "environment": self.environment,
            "instanceType": self.instance_type,
            "instanceCount": self.instance_count,
            "tags": list(self.tags),
            "modelTags": list(self.model_tags),
            "endpointConfigTags": list(self.endpoint_config_tags),
            "pollSeconds": self.poll_seconds,
            "maxPolls": self.max_polls,
            "deploymentConfig": self.deployment_config,
            "rolloutSeconds": self.rollout_seconds,
            "transform": self.transform.to_document(),
        }


@dataclass(frozen=True)
class PlanRollback:
    """``rollback``: the registered model a rollback run redeploys, and the ``$.training`` and
    ``$.evaluation`` that state StartRollback hands on (what a promotion would have)."""

    model_package_arn: str
    model_package_version: int | None
    trained_by_run: str | None
    replaced_model_package_arn: str | None
    replaced_model_name: str | None
    model_data_url: str
    reason: str
    # From the package's metadata, as the promotion that registered it recorded them.
    metric: str | None
    challenger: str | None
    features: int | None
    objective: str | None

    def summary(self) -> dict[str, Any]:
        """The document without ``training`` and ``evaluation``: what the run record keeps."""
        return {
            "modelPackageArn": self.model_package_arn,
            "modelPackageVersion": self.model_package_version,
            "trainedByRun": self.trained_by_run,
            "replacedModelPackageArn": self.replaced_model_package_arn,
            "replacedModelName": self.replaced_model_name,
        }

    def to_document(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "training": {"modelDataUrl": self.model_data_url},
            "evaluation": {
                "decision": "promote",
                "reason": self.reason,
                "rollback": True,
                "modelPackageArn": self.model_package_arn,
                "modelPackageVersion": self.model_package_version,
                "trainedByRun": self.trained_by_run,
                "metric": self.metric,
                "challenger": self.challenger,
                "features": self.features,
                "objective": self.objective,
            },
        }


@dataclass(frozen=True)
class RunPlan:
    """``$.run``: a training run's plan, or a rollback run's (``rollback`` set: no training)."""

    run_id: str
    status: PlanStatus
    source: Source
    deployment_mode: DeploymentMode
    metric: str
    champion: Champion | None
    deploy: PlanDeploy
    # None for a rollback.
    training_mode: Mode | None = None
    training_mode_reason: str | None = None
    data: PlanData | None = None
    training_job: dict[str, Any] | None = None  # a CreateTrainingJob request
    # The same request on on-demand capacity; None for a stack that trains on demand anyway.
    on_demand_training_job: dict[str, Any] | None = None
    # The gate: EvaluateModels reads these (refit.run_state.RunSection).
    force_decision: ForcedDecision | None = None
    champion_problem: str | None = None
    test_sets: HoldoutSplit | None = None
    # A training run's only: a rollback's document leaves these keys out.
    started_at: str | None = None
    data_window: PlanDataWindow | None = None
    higher_is_better: bool | None = None
    rollback: PlanRollback | None = None

    @property
    def is_rollback(self) -> bool:
        return self.rollback is not None

    @property
    def training_job_name(self) -> str | None:
        return None if self.training_job is None else str(self.training_job["TrainingJobName"])

    def to_document(self) -> dict[str, Any]:
        """The JSON document the state machine receives as ``$.run``.

        A rollback's has ``kind`` and ``rollback`` and no ``startedAt``, ``dataWindow`` or
        ``higherIsBetter``; a training run's the other way round. A fresh copy: changing it
        leaves the plan as it was.
        """
        rollback = self.rollback
        document: dict[str, Any] = {"runId": self.run_id, "status": self.status}
        if rollback is not None:
            document["kind"] = "rollback"
        document |= {
            "source": self.source,
            "trainingMode": self.training_mode,
            "trainingModeReason": self.training_mode_reason,
        }
        if rollback is None:
            document |= {
                "startedAt": self.started_at,
                "dataWindow": _rendered(self.data_window),
            }
        document |= {"deploymentMode": self.deployment_mode, "metric": self.metric}
        if rollback is None:
            document["higherIsBetter"] = self.higher_is_better
        document |= {
            "data": _rendered(self.data),
            "champion": self.champion.to_dict() if self.champion else None,
            "trainingJob": self.training_job,
            "onDemandTrainingJob": self.on_demand_training_job,
            "deploy": self.deploy.to_document(),
            "forceDecision": self.force_decision,
            "championProblem": self.champion_problem,
            "testSets": self.test_sets.to_dict() if self.test_sets else None,
        }
        if rollback is not None:
            document["rollback"] = rollback.to_document()
        return copy.deepcopy(document)


def _rendered(part: PlanDataWindow | PlanData | None) -> dict[str, Any] | None:
    return None if part is None else part.to_document()


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
    # The train channel (refit.data.train_channel); None: the pinned copies' manifest, one host.
    train_channel: TrainChannel | None = None


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


def build_run_plan(inputs: PlanInputs, settings: Settings) -> RunPlan:
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
    return RunPlan(
        run_id=inputs.run_id,
        status=status,
        source=inputs.request.source,
        training_mode=mode,
        training_mode_reason=reason,
        started_at=inputs.started_at,
        data_window=PlanDataWindow(since, inputs.selection.outside_window),
        deployment_mode=deployment_mode,
        metric=settings.evaluation_metric,
        # Fails here (before an hour of training) if the metric is not one refit can gate on.
        higher_is_better=higher_is_better(settings.evaluation_metric),
        data=_data_summary(inputs),
        champion=champion,
        training_job=training_job,
        on_demand_training_job=_on_demand_training_job(training_job, inputs.run_id, settings),
        deploy=_deploy(
            settings,
            inputs.run_id,
            endpoint_exists=inputs.champion.endpoint_exists,
            image=settings.training_image_uri,
            environment=_serving_environment(inputs.code_uri, inputs.region),
            has_batch_input=inputs.has_batch_input,
        ),
        force_decision=inputs.request.force_decision,
        champion_problem=inputs.warm_start.champion_problem if inputs.warm_start else None,
        test_sets=inputs.test_sets,
    )


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


def plan_size(plan: RunPlan) -> int:
    """The bytes of the rendered document, compact (what Step Functions counts)."""
    return len(json.dumps(plan.to_document(), separators=(",", ":")).encode())


def _data_summary(inputs: PlanInputs) -> PlanData:
    selection = inputs.selection
    inline: list[RejectedFile] = []
    used = 0
    for rejected in selection.rejected[: layout.INLINE_KEYS_MAX]:
        entry = replace(rejected, reason=rejected.reason[:_INLINE_REASON_MAX_CHARS])
        used += len(json.dumps(entry.to_dict()).encode())
        if used > INLINE_REJECTED_MAX_BYTES:
            break
        inline.append(entry)
    return PlanData(
        accepted=len(selection.accepted),
        rejected=len(selection.rejected),
        skipped=len(selection.skipped),
        rows=selection.rows,
        columns=selection.columns,
        manifest_uri=inputs.manifests.manifest_uri,
        train_manifest_uri=inputs.manifests.train_manifest_uri,
        rejected_files=tuple(inline),
    )


def _tags(settings: Settings, run_id: str, role: str | None = None) -> list[Tag]:
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
    train = inputs.train_channel or TrainChannel.of_manifest(
        inputs.manifests.train_manifest_uri, len(inputs.selection.accepted)
    )
    channels: list[dict[str, Any]] = [train.request()]
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
) -> RunPlan:
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
    return RunPlan(
        run_id=run_id,
        status="rollback",
        source="manual",
        deployment_mode=deployment_mode,
        metric=settings.evaluation_metric,
        champion=live,
        deploy=_deploy(
            settings,
            run_id,
            endpoint_exists=champion.endpoint_exists,
            image=target.image,
            environment=dict(target.environment),
            # A batch stack's rollback moves the champion; the next batch transform uses it.
            has_batch_input=False,
        ),
        rollback=PlanRollback(
            model_package_arn=target.package_arn,
            model_package_version=version,
            trained_by_run=target.trained_by_run,
            replaced_model_package_arn=live.model_package_arn if live else None,
            replaced_model_name=live.model_name if live else None,
            model_data_url=target.model_data_url,
            reason=reason,
            metric=metadata.get("metric"),
            challenger=metadata.get("challenger"),
            features=_int_or_none(metadata.get("features")),
            objective=metadata.get("objective"),
        ),
    )


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
) -> PlanDeploy:
    job_name = layout.sagemaker_name(run_id)
    return PlanDeploy(
        model_name=job_name,
        endpoint_config_name=job_name,
        endpoint_name=settings.endpoint_name,
        endpoint_exists=endpoint_exists,
        image=image,
        environment=environment,
        instance_type=settings.endpoint_instance_type,
        instance_count=settings.endpoint_instance_count,
        tags=tuple(_tags(settings, run_id)),
        model_tags=tuple(_tags(settings, run_id, "model")),
        endpoint_config_tags=tuple(_tags(settings, run_id, "endpoint-config")),
        poll_seconds=settings.endpoint_poll_seconds,
        max_polls=settings.endpoint_max_polls,
        deployment_config=settings.rollout.deployment_config(),
        rollout_seconds=settings.rollout.shifting_seconds if endpoint_exists else 0,
        transform=PlanTransform(
            has_input=has_batch_input,
            request={
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
            },
            # Written once the job has succeeded: consumers of the run's output prefix wait for it.
            success_marker_bucket=settings.data_bucket,
            success_marker_key=f"{layout.BATCH_OUTPUT_PREFIX}{run_id}/{layout.SUCCESS_MARKER}",
        ),
    )
