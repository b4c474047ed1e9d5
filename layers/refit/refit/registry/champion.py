"""Which model a new run must beat and may warm-start from: the one that is live and known good.

In endpoint mode the endpoint is the truth: whatever model its current config serves is the
champion, even if the ledger's pointer says otherwise (a rollback, a manual change, a failed
update that rolled back). Without an endpoint, and in batch mode, the ledger's champion pointer
(written only after a verified promotion) decides. The lookup costs the same few calls however
many models exist: never a listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from refit import layout
from refit.config import DeploymentMode
from refit.ledger.run_records import ChampionPointer, RunRecords

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

logger = Logger(child=True)

# An update or creation is in flight: deploying now would race it.
BUSY_STATUSES = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
# SageMaker cannot update an endpoint in these states: a person has to delete or fix it.
BROKEN_STATUSES = ("Failed", "UpdateRollbackFailed", "OutOfService")


class EndpointBusy(RuntimeError):
    """The endpoint is being created, updated or deleted: start again once it settles."""


class EndpointFailed(RuntimeError):
    """The endpoint is in a state refit cannot deploy to."""


@dataclass(frozen=True)
class Champion:
    model_name: str
    model_data_url: str
    endpoint_config_name: str | None
    feature_count: int | None
    source: Literal["endpoint", "pointer"]
    # Its Model Registry package, when refit promoted it (the pointer knows; no extra call).
    model_package_arn: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "modelName": self.model_name,
            "modelDataUrl": self.model_data_url,
            "endpointConfigName": self.endpoint_config_name,
            "featureCount": self.feature_count,
            "source": self.source,
        }


@dataclass(frozen=True)
class ChampionState:
    champion: Champion | None
    endpoint_exists: bool


def resolve_champion(
    sagemaker: SageMakerClient,
    records: RunRecords,
    endpoint_name: str,
    deployment_mode: DeploymentMode,
) -> ChampionState:
    pointer = records.get_champion()
    if deployment_mode == "batch":
        return ChampionState(_from_pointer(pointer), endpoint_exists=False)
    endpoint = _describe_endpoint(sagemaker, endpoint_name)
    if endpoint is None:
        return ChampionState(_from_pointer(pointer), endpoint_exists=False)
    status = endpoint["EndpointStatus"]
    if status in BUSY_STATUSES:
        raise EndpointBusy(
            f"endpoint {endpoint_name} is {status}: another deployment is in flight; "
            "run again once it is InService"
        )
    if status in BROKEN_STATUSES:
        raise EndpointFailed(
            f"endpoint {endpoint_name} is {status} ({endpoint.get('FailureReason') or 'no reason'})"
            f": delete it (aws sagemaker delete-endpoint --endpoint-name {endpoint_name}) and the "
            "next run creates it again"
        )
    return ChampionState(_live_model(sagemaker, records, endpoint, pointer), endpoint_exists=True)


def _live_model(
    sagemaker: SageMakerClient,
    records: RunRecords,
    endpoint: Any,
    pointer: ChampionPointer | None,
) -> Champion | None:
    config_name = endpoint["EndpointConfigName"]
    config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    model_name = config["ProductionVariants"][0]["ModelName"]
    known = pointer if pointer is not None and pointer.model_name == model_name else None
    feature_count = known.feature_count if known else None
    package_arn = known.model_package_arn if known else None
    try:
        model = sagemaker.describe_model(ModelName=model_name)
    except sagemaker.exceptions.ClientError as error:
        if not _not_found(error):
            raise
        # An endpoint keeps serving a model whose definition was deleted; the pointer still
        # knows its artifact if refit promoted it.
        if known is None:
            logger.warning("live model is gone and unknown to refit", extra={"model": model_name})
            return None
        return Champion(
            model_name, known.model_data_url, config_name, feature_count, "endpoint", package_arn
        )
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    model_data_url = container.get("ModelDataUrl")
    if not model_data_url:
        logger.warning("live model has no ModelDataUrl: no warm start", extra={"model": model_name})
        return None
    if known is None and model.get("ModelArn"):
        # The pointer moved elsewhere (a batch-mode run of an endpoint stack): the live model's
        # own refit:run tag still leads to its run and package (two calls, this case only).
        package_arn = _package_of_model(sagemaker, records, str(model["ModelArn"]))
    return Champion(model_name, model_data_url, config_name, feature_count, "endpoint", package_arn)


def _package_of_model(
    sagemaker: SageMakerClient, records: RunRecords, model_arn: str
) -> str | None:
    """The package of the run that created a model refit tagged, else None (never raises)."""
    try:
        tags = sagemaker.list_tags(ResourceArn=model_arn).get("Tags", [])
        run_id = next((t["Value"] for t in tags if t.get("Key") == layout.TAG_RUN), None)
        run = records.get_run(run_id) if run_id else None
    except (ClientError, BotoCoreError) as error:
        logger.warning(
            "live model's package unknown", extra={"model": model_arn, "error": str(error)}
        )
        return None
    arn = (run or {}).get("modelPackageArn")
    return str(arn) if arn else None


def _describe_endpoint(sagemaker: SageMakerClient, name: str) -> Any | None:
    try:
        return sagemaker.describe_endpoint(EndpointName=name)
    except sagemaker.exceptions.ClientError as error:
        if _not_found(error):
            return None
        raise


def _from_pointer(pointer: ChampionPointer | None) -> Champion | None:
    if pointer is None:
        return None
    return Champion(
        pointer.model_name,
        pointer.model_data_url,
        pointer.endpoint_config_name,
        pointer.feature_count,
        "pointer",
        pointer.model_package_arn,
    )


def _not_found(error: Exception) -> bool:
    # SageMaker reports a missing endpoint/model as ValidationException "Could not find ...".
    details = getattr(error, "response", {}).get("Error", {})
    return details.get("Code") == "ValidationException" and "Could not find" in str(
        details.get("Message", "")
    )
