"""Rollback runs: an earlier approved model back on the endpoint, through the promotion path.

``refit rollback`` (or the execution input ``{"rollback": {}}``) starts an ordinary execution.
PrepareRun takes the run lock, finds the target in the Model Registry and plans a deployment
whose model is the target package's container (image, artifact, environment). The state machine
skips training and evaluation (``StartRollback``) and runs the states a promotion runs:
CreateModel, CreateEndpointConfig, UpdateEndpoint with the stack's DeploymentConfig and rollback
alarms, the wait loop, VerifyEndpointConfig, cleanup and RecordRun. So a rollback is as safe as a
promotion: nothing old is deleted before the endpoint is verified on the restored model, and a
rollback that itself fails leaves what serves now serving.

The target is ``toVersion`` if given, else the newest Approved package older than the live one.
RecordRun then points the champion at the target and rejects the package taken off the endpoint
(so the next ``refit rollback`` goes one further back instead of returning to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from refit.registry import lineage
from refit.run_input import RollbackRequest

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

# Pages of Approved packages read looking for one older than the live model. Approved packages
# newer than the live one exist only after rollbacks to a named version: a few at most.
_MAX_PAGES = 5
_PAGE_SIZE = 20


class NoRollbackTarget(RuntimeError):
    """There is no approved model to roll back to (the message says why)."""


@dataclass(frozen=True)
class RollbackTarget:
    package_arn: str
    version: int | None
    trained_by_run: str | None
    image: str
    model_data_url: str
    environment: Mapping[str, str]
    metadata: Mapping[str, str]

    @classmethod
    def from_package(cls, package: Mapping[str, Any]) -> RollbackTarget:
        arn = str(package["ModelPackageArn"])
        containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
        container = containers[0] if containers else {}
        image, artifact = container.get("Image"), container.get("ModelDataUrl")
        if not image or not artifact:
            raise NoRollbackTarget(f"model package {arn} has no image or ModelDataUrl to deploy")
        metadata = package.get("CustomerMetadataProperties") or {}
        return cls(
            package_arn=arn,
            version=package.get("ModelPackageVersion") or lineage.package_version(arn),
            trained_by_run=metadata.get("runId"),
            image=str(image),
            model_data_url=str(artifact),
            environment=dict(container.get("Environment") or {}),
            metadata=dict(metadata),
        )


def find_rollback_target(
    sagemaker: SageMakerClient,
    group: str,
    request: RollbackRequest,
    live_package_arn: str | None,
) -> RollbackTarget:
    """The approved package to redeploy; a bounded number of calls, never a full listing."""
    if request.to_version is not None:
        return _named_version(sagemaker, group, request.to_version, live_package_arn)
    live_version = lineage.package_version(live_package_arn) if live_package_arn else None
    kwargs: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelApprovalStatus": lineage.APPROVED,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": _PAGE_SIZE,
    }
    for _ in range(_MAX_PAGES):
        page = sagemaker.list_model_packages(**kwargs)
        for summary in page.get("ModelPackageSummaryList", []):
            arn = str(summary["ModelPackageArn"])
            version = summary.get("ModelPackageVersion") or lineage.package_version(arn)
            if arn == live_package_arn:
                continue
            if live_version is not None and version is not None and version > live_version:
                continue
            return RollbackTarget.from_package(
                sagemaker.describe_model_package(ModelPackageName=arn)
            )
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    live = f"version {live_version}" if live_version is not None else "the live model"
    raise NoRollbackTarget(
        f"no approved model older than {live} in {group}: nothing to roll back to "
        "(refit models lists the versions; toVersion picks one)"
    )


def _named_version(
    sagemaker: SageMakerClient, group: str, version: int, live_package_arn: str | None
) -> RollbackTarget:
    group_arn = sagemaker.describe_model_package_group(ModelPackageGroupName=group)[
        "ModelPackageGroupArn"
    ]
    # arn:...:model-package-group/<group> -> arn:...:model-package/<group>/<version>
    arn = group_arn.replace(":model-package-group/", ":model-package/", 1) + f"/{version}"
    try:
        package = sagemaker.describe_model_package(ModelPackageName=arn)
    except sagemaker.exceptions.ClientError as error:
        raise NoRollbackTarget(f"{group} has no version {version}: {error}") from None
    status = package.get("ModelApprovalStatus")
    if status != lineage.APPROVED:
        raise NoRollbackTarget(
            f"version {version} of {group} is {status}: only an approved model is rolled back to"
        )
    if package["ModelPackageArn"] == live_package_arn:
        raise NoRollbackTarget(f"version {version} of {group} is already live")
    return RollbackTarget.from_package(package)
