"""Lineage: every trained model is a package in the stack's SageMaker Model Registry group.

EvaluateModels registers the challenger (``PendingManualApproval``) as soon as its evaluation is
read: it is the first step that knows the job succeeded, and it holds the artifact, the metrics
and the run's data manifest. RecordRun then approves the package of a promoted run (after the
endpoint was verified or the batch transform ran) and rejects every other registered package,
with the reason as ``ApprovalDescription``. The package ARN travels in ``$.evaluation`` (no ASL
change), lands in the run record and, on promotion, in the champion pointer: the champion's
package is found without listing the registry.

Registration is idempotent: the run record is read first (a retried EvaluateModels finds the ARN
it stored), and ``ClientToken`` (derived from the run id) covers a crash between CreateModelPackage
and that write on AWS.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from refit.ledger.run_records import RunRecords
from refit.registry.champion import EndpointBusy, EndpointFailed, resolve_champion
from refit.run_state import RunState

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

logger = Logger(child=True)

ApprovalStatus = Literal["Approved", "Rejected"]
PENDING = "PendingManualApproval"
APPROVED: ApprovalStatus = "Approved"
REJECTED: ApprovalStatus = "Rejected"
CONTENT_TYPES = ["text/csv"]
# SageMaker limits: metadata values 256 characters, ApprovalDescription 1024.
METADATA_VALUE_MAX = 256
DESCRIPTION_MAX = 1024
# A fixed namespace: the same run id always gives the same ClientToken (36 characters).
_TOKEN_NAMESPACE = uuid.UUID("5b0c6a54-7c1f-4f5e-9a53-2f1f8d0e6a11")
# Evaluation keys copied into the package's customer metadata, when present.
_METRIC_KEYS = (
    "metric",
    "challenger",
    "champion",
    "improvement",
    "retainedChallenger",
    "retainedChampion",
    "testRows",
    "trainRows",
    "features",
    "objective",
    "decision",
)


def client_token(run_id: str) -> str:
    return str(uuid.uuid5(_TOKEN_NAMESPACE, run_id))


def package_version(arn: str) -> int | None:
    """``arn:...:model-package/<group>/<version>`` -> version."""
    tail = arn.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _metadata(values: Mapping[str, Any]) -> dict[str, str]:
    return {
        key: str(value)[:METADATA_VALUE_MAX]
        for key, value in values.items()
        if value is not None and value != ""
    }


def package_request(group: str, state: RunState, evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """CreateModelPackage for the challenger of ``{"run", "training"}`` scored as ``evaluation``."""
    run, training = state.run, state.training
    deploy = run.deploy if run else None
    run_id = str(run.run_id if run else None)
    container: dict[str, Any] = {
        "Image": deploy.image if deploy else None,
        "ModelDataUrl": training.model_data_url if training else None,
    }
    if deploy and deploy.environment:
        container["Environment"] = dict(deploy.environment)
    metadata = _metadata(
        {
            "runId": run_id,
            "manifestUri": run.data.manifest_uri if run and run.data else None,
            "trainingMode": evaluation.get("mode") or (run.training_mode if run else None),
            "trainingJobName": training.job_name if training else None,
            **{key: evaluation.get(key) for key in _METRIC_KEYS},
        }
    )
    return {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": f"refit run {run_id}"[:DESCRIPTION_MAX],
        "InferenceSpecification": {
            "Containers": [container],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": CONTENT_TYPES,
        },
        "ModelApprovalStatus": PENDING,
        "CustomerMetadataProperties": metadata,
        "ClientToken": client_token(run_id),
    }


def register(
    sagemaker: SageMakerClient,
    records: RunRecords,
    group: str,
    state: RunState,
    evaluation: Mapping[str, Any],
) -> dict[str, Any]:
    """Register the run's model once; ``$.evaluation`` keys ``modelPackageArn`` (or ``...Error``).

    A registry failure does not fail the run (the model is trained and scored): it is logged and
    kept as ``modelPackageError``, like a failed cumulative manifest update.
    """
    run_id = str(state.run.run_id if state.run else None)
    try:
        known = records.get_run(run_id) or {}
        arn = known.get("modelPackageArn")
        if not arn:
            arn = sagemaker.create_model_package(**package_request(group, state, evaluation))[
                "ModelPackageArn"
            ]
            records.annotate(run_id, {"modelPackageArn": arn})
    except (ClientError, BotoCoreError) as error:
        logger.warning("model not registered", extra={"runId": run_id, "error": str(error)})
        return {"modelPackageArn": None, "modelPackageError": str(error)[:DESCRIPTION_MAX]}
    return {"modelPackageArn": arn, "modelPackageVersion": package_version(str(arn))}


def set_approval(
    sagemaker: SageMakerClient, arn: str, status: ApprovalStatus, reason: str
) -> str | None:
    """Approve or reject a registered package; returns an error text instead of raising.

    The package's metadata is passed back unchanged: moto's UpdateModelPackage replaces it with
    nothing when the request leaves it out (AWS keeps it), and re-sending it is harmless on AWS.
    A retry that finds the status already set changes nothing.
    """
    try:
        package = sagemaker.describe_model_package(ModelPackageName=arn)
        if package.get("ModelApprovalStatus") == status:
            return None
        request: dict[str, Any] = {
            "ModelPackageArn": arn,
            "ModelApprovalStatus": status,
            "ApprovalDescription": reason[:DESCRIPTION_MAX],
        }
        if package.get("CustomerMetadataProperties"):
            request["CustomerMetadataProperties"] = package["CustomerMetadataProperties"]
        sagemaker.update_model_package(**request)
    except (ClientError, BotoCoreError) as error:
        logger.warning("package status not updated", extra={"arn": arn, "error": str(error)})
        return str(error)[:DESCRIPTION_MAX]
    return None


def decide(
    sagemaker: SageMakerClient | None, arn: str, status: ApprovalStatus, reason: str
) -> dict[str, Any]:
    """Set a package's approval (without a client: record only) and return the run record's
    package keys: ``modelPackageArn``, ``modelPackageVersion``, ``modelPackageStatus`` (None when
    not set) and ``modelPackageError``. RecordRun and StartRetrain (run_ended) both use it."""
    problem = set_approval(sagemaker, arn, status, reason) if sagemaker is not None else None
    return {
        "modelPackageArn": arn,
        "modelPackageVersion": package_version(arn),
        "modelPackageStatus": None if problem or sagemaker is None else status,
        "modelPackageError": problem,
    }


@dataclass(frozen=True)
class LineageEntry:
    """One row of ``refit models``: the package joined with its run record."""

    version: int | None
    arn: str
    status: str
    created_at: str
    run_id: str | None
    metadata: Mapping[str, str]
    run: Mapping[str, Any] | None
    live: bool

    def to_dict(self) -> dict[str, Any]:
        run = self.run or {}
        data = run.get("data") if isinstance(run.get("data"), Mapping) else {}
        return {
            "version": self.version,
            "modelPackageArn": self.arn,
            "status": self.status,
            "createdAt": self.created_at,
            "runId": self.run_id,
            "live": self.live,
            "trainingMode": self.metadata.get("trainingMode"),
            "manifestUri": self.metadata.get("manifestUri"),
            "metric": self.metadata.get("metric"),
            "challenger": self.metadata.get("challenger"),
            "champion": self.metadata.get("champion"),
            "runStatus": run.get("status"),
            "startedAt": run.get("startedAt"),
            "dataFiles": (data or {}).get("accepted"),
            "dataRows": (data or {}).get("rows"),
            "reason": run.get("reason"),
        }


def lineage(
    sagemaker: SageMakerClient,
    records: RunRecords,
    group: str,
    limit: int,
    live_package_arn: str | None,
) -> list[LineageEntry]:
    """The newest ``limit`` packages of the group (an operator listing), each with its run."""
    summaries: list[Mapping[str, Any]] = []
    kwargs: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": min(limit, 100),
    }
    while len(summaries) < limit:
        page = sagemaker.list_model_packages(**kwargs)
        summaries.extend(page.get("ModelPackageSummaryList", []))
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    entries = []
    for summary in summaries[:limit]:
        arn = str(summary["ModelPackageArn"])
        described = sagemaker.describe_model_package(ModelPackageName=arn)
        metadata = described.get("CustomerMetadataProperties") or {}
        run_id = metadata.get("runId")
        entries.append(
            LineageEntry(
                version=summary.get("ModelPackageVersion") or package_version(arn),
                arn=arn,
                status=str(summary.get("ModelApprovalStatus", "")),
                created_at=str(summary.get("CreationTime", "")),
                run_id=run_id,
                metadata=metadata,
                run=records.get_run(run_id) if run_id else None,
                live=live_package_arn is not None and arn == live_package_arn,
            )
        )
    return entries


def live_package_arn(
    sagemaker: SageMakerClient, records: RunRecords, endpoint_name: str
) -> str | None:
    """The champion's package: what the endpoint serves (else the pointer), constant cost.

    An endpoint serving a model refit did not promote has no known package (None). A busy or
    broken endpoint falls back to the pointer: the listing is informational.
    """
    try:
        state = resolve_champion(sagemaker, records, endpoint_name, "endpoint")
    except (EndpointBusy, EndpointFailed):
        pointer = records.get_champion()
        return pointer.model_package_arn if pointer else None
    return state.champion.model_package_arn if state.champion else None
