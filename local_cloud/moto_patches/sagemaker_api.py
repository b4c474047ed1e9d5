"""SageMaker API in moto, backed by the local runtime (``local_cloud.sagemaker``).

moto keeps the records (ARNs, tags, the requests' configuration); the runtime owns what runs:
statuses, times, artifacts, failure reasons, endpoint deployments. Describe and List merge the
runtime's view into moto's record, and the record is updated from it, so that ``StatusEquals``
filters and summaries agree with Describe.

moto 5.2.5 behaviour this replaces:

- CreateTrainingJob/CreateTransformJob: records were ``Completed`` at once (an artifact URI
  with nothing behind it), duplicate names were accepted, and the training record's
  ``MetricDefinitions`` were overwritten with a fixed ``test:dcg`` definition.
- StopTrainingJob, StopTransformJob, UpdateEndpoint: not implemented. UpdateEndpoint now runs
  a blue/green update in the runtime and honours ``DeploymentConfig`` (traffic shifting,
  baking, auto-rollback on the CloudWatch alarms it names: the runtime reads them through the
  ``alarm_state`` it was built with, see :mod:`.cloudwatch_alarms`) and
  ``RetainDeploymentConfig``; ``RetainAllVariantProperties`` and
  ``ExcludeRetainedVariantProperties`` are accepted and ignored.
- CreateEndpoint: ``InService`` at once; an existing name was silently replaced.
- DescribeModel, DescribeEndpointConfig, DescribeEndpoint: unset configuration (``VpcConfig``,
  ``DataCaptureConfig``...) came back as ``{}`` (AWS omits it; the SDK v3's resources refuse
  the empty one).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker import models as sagemaker_models
from moto.sagemaker import responses as sagemaker_responses
from moto.sagemaker import utils as sagemaker_utils
from moto.sagemaker.exceptions import (
    ResourceInUseException,
    ResourceNotFound,
    SagemakerClientError,
    ValidationError,
)

from local_cloud.sagemaker import LocalSageMakerError
from local_cloud.sagemaker import ResourceNotFound as RuntimeResourceNotFound

from ._context import runtime
from ._patching import Add, Patch, Replace, Require

Backend = Any  # moto.sagemaker.models.SageMakerModelBackend (untyped)
Response = Any  # moto.sagemaker.responses.SageMakerResponse (untyped)

_TRAINING_STATUS_FIELDS = {
    "TrainingJobStatus": "training_job_status",
    "SecondaryStatus": "secondary_status",
    "CreationTime": "creation_time",
    "LastModifiedTime": "last_modified_time",
    "TrainingStartTime": "training_start_time",
    "TrainingEndTime": "training_end_time",
}
_TRANSFORM_STATUS_FIELDS = {
    "TransformJobStatus": "transform_job_status",
    "CreationTime": "creation_time",
    "TransformStartTime": "transform_start_time",
    "TransformEndTime": "transform_end_time",
    "FailureReason": "failure_reason",
}
_ENDPOINT_FIELDS = {
    "EndpointStatus": "endpoint_status",
    "EndpointConfigName": "endpoint_config_name",
    "CreationTime": "creation_time",
    "LastModifiedTime": "last_modified_time",
    "FailureReason": "failure_reason",
    "ProductionVariants": "production_variants",
    "PendingDeploymentSummary": "pending_deployment_summary",
}


# --- errors ------------------------------------------------------------------------------------


class _SageMakerError(SagemakerClientError):
    """A SageMaker error whose code comes from the runtime."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def moto_error(error: LocalSageMakerError) -> ServiceException:
    """The moto exception for a runtime error: same SageMaker code, same message."""
    if error.code == "ValidationException":
        return ValidationError(error.message)
    if error.code == "ResourceNotFound":
        return ResourceNotFound(error.message)
    if error.code == "ResourceInUse":
        return ResourceInUseException(error.message)
    return _SageMakerError(error.code, error.message)


def _call(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except LocalSageMakerError as error:
        raise moto_error(error) from None


def _live(function: Callable[[str], dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The runtime's Describe without ``LocalRuntime``; None when the runtime does not know
    the name (a resource created in moto before the patches were installed)."""
    try:
        description = function(name)
    except RuntimeResourceNotFound:
        return None
    description.pop("LocalRuntime", None)
    return description


def _sync(record: Any, live: Mapping[str, Any], fields: Mapping[str, str]) -> None:
    """Copy the runtime's values onto moto's record; a field the runtime omits becomes None
    (moto's response_object drops None values)."""
    for key, attribute in fields.items():
        setattr(record, attribute, copy.deepcopy(live.get(key)))


def _arn(kind: str, name: str, backend: Backend) -> str:
    return str(sagemaker_utils.arn_formatter(kind, name, backend.account_id, backend.region_name))


# --- request reconstruction (what CreateModel / CreateEndpointConfig received) -------------------


def model_request(model: Any) -> dict[str, Any]:
    """A CreateModel request rebuilt from moto's record."""
    request: dict[str, Any] = {
        "ModelName": model.model_name,
        "ExecutionRoleArn": model.execution_role_arn,
    }
    if model.primary_container:
        request["PrimaryContainer"] = copy.deepcopy(model.primary_container)
    if model.containers:
        request["Containers"] = copy.deepcopy(model.containers)
    if model.vpc_config:
        request["VpcConfig"] = copy.deepcopy(model.vpc_config)
    if model.tags:
        request["Tags"] = copy.deepcopy(model.tags)
    return request


def endpoint_config_request(config: Any) -> dict[str, Any]:
    """A CreateEndpointConfig request rebuilt from moto's record."""
    request: dict[str, Any] = {
        "EndpointConfigName": config.endpoint_config_name,
        "ProductionVariants": copy.deepcopy(config.production_variants),
    }
    optional = {
        "DataCaptureConfig": config.data_capture_config,
        "AsyncInferenceConfig": config.async_inference_config,
        "KmsKeyId": config.kms_key_id,
        "Tags": config.tags,
    }
    request.update({key: copy.deepcopy(value) for key, value in optional.items() if value})
    return request


def _model(backend: Backend, name: str) -> Any:
    model = backend._models.get(name)
    if model is None:
        raise ValidationError(f"Could not find model '{_arn('model', name, backend)}'.")
    return model


def _config_and_models(
    backend: Backend, config_name: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    config = backend.endpoint_configs.get(config_name)
    if config is None:
        arn = _arn("endpoint-config", config_name, backend)
        raise ValidationError(f"Could not find endpoint configuration '{arn}'.")
    models = {
        variant["ModelName"]: model_request(_model(backend, variant["ModelName"]))
        for variant in config.production_variants
    }
    return endpoint_config_request(config), models


# --- training jobs ------------------------------------------------------------------------------


def _refresh_training_job(backend: Backend, name: str) -> dict[str, Any] | None:
    record = backend.training_jobs.get(name)
    live = _live(runtime().describe_training_job, name) if record is not None else None
    if live is not None:
        _sync(record, live, _TRAINING_STATUS_FIELDS)
    return live


def _build_create_training_job_response(original: Callable[[Response], Any]) -> Any:
    def create_training_job(self: Response) -> Any:
        request = copy.deepcopy(dict(self._get_params()))
        backend = self.sagemaker_backend
        name = str(request.get("TrainingJobName"))
        if name in backend.training_jobs:
            raise ResourceInUseException(
                "Training job names must be unique within an AWS account and region, and a "
                f"training job with this name already exists "
                f"({_arn('training-job', name, backend)})"
            )
        _call(runtime().start_training_job, request)
        try:
            result = original(self)
        except Exception:
            with contextlib.suppress(LocalSageMakerError):
                runtime().stop_training_job(name)
            raise
        record = backend.training_jobs[name]
        # moto's record is "Completed" with a fake artifact, transitions and metric data, and
        # it replaced the request's MetricDefinitions: clear what the runtime owns.
        record.algorithm_specification = copy.deepcopy(request.get("AlgorithmSpecification"))
        record.model_artifacts = None
        record.final_metric_data_list = None
        record.secondary_status_transitions = None
        _refresh_training_job(backend, name)
        return result

    return create_training_job


def _build_describe_training_job(original: Callable[[Backend, str], dict[str, Any]]) -> Any:
    def describe_training_job(self: Backend, training_job_name: str) -> dict[str, Any]:
        live = _refresh_training_job(self, training_job_name)
        response = original(self, training_job_name)
        if live is not None:
            response.update(live)
        return response

    return describe_training_job


def _build_list_training_jobs(original: Callable[..., Any]) -> Any:
    def list_training_jobs(self: Backend, *args: Any, **kwargs: Any) -> Any:
        for name in list(self.training_jobs):
            _refresh_training_job(self, name)
        return original(self, *args, **kwargs)

    return list_training_jobs


def stop_training_job(self: Backend, training_job_name: str) -> None:
    if training_job_name not in self.training_jobs:
        raise ResourceNotFound(
            f"Could not find training job '{_arn('training-job', training_job_name, self)}'."
        )
    if _refresh_training_job(self, training_job_name) is None:
        status = self.training_jobs[training_job_name].training_job_status
        raise ValidationError(
            f"The request was rejected because the training job is in status {status}."
        )
    _call(runtime().stop_training_job, training_job_name)
    _refresh_training_job(self, training_job_name)


def stop_training_job_response(self: Response) -> Any:
    self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
    return EmptyResult()


# --- transform jobs -----------------------------------------------------------------------------


def _refresh_transform_job(backend: Backend, name: str) -> dict[str, Any] | None:
    record = backend.transform_jobs.get(name)
    live = _live(runtime().describe_transform_job, name) if record is not None else None
    if live is not None:
        _sync(record, live, _TRANSFORM_STATUS_FIELDS)
        record.last_modified_time = live.get("TransformEndTime") or live.get("CreationTime")
    return live


def _build_create_transform_job_response(original: Callable[[Response], Any]) -> Any:
    def create_transform_job(self: Response) -> Any:
        request = copy.deepcopy(dict(self._get_params()))
        backend = self.sagemaker_backend
        name = str(request.get("TransformJobName"))
        if name in backend.transform_jobs:
            raise ResourceInUseException(
                "Transform job names must be unique within an AWS account and region, and a "
                f"transform job with this name already exists "
                f"({_arn('transform-job', name, backend)})"
            )
        model = model_request(_model(backend, str(request.get("ModelName"))))
        _call(runtime().start_transform_job, request, model)
        try:
            result = original(self)
        except Exception:
            with contextlib.suppress(LocalSageMakerError):
                runtime().stop_transform_job(name)
            raise
        record = backend.transform_jobs[name]
        record.labeling_job_arn = None  # moto sets empty strings AWS never returns
        record.auto_ml_job_arn = None
        _refresh_transform_job(backend, name)
        return result

    return create_transform_job


def _build_describe_transform_job(original: Callable[[Backend, str], dict[str, Any]]) -> Any:
    def describe_transform_job(self: Backend, transform_job_name: str) -> dict[str, Any]:
        live = _refresh_transform_job(self, transform_job_name)
        response = original(self, transform_job_name)
        if live is not None:
            response.update(live)
        return response

    return describe_transform_job


def _build_list_transform_jobs(original: Callable[..., Any]) -> Any:
    def list_transform_jobs(self: Backend, *args: Any, **kwargs: Any) -> Any:
        for name in list(self.transform_jobs):
            _refresh_transform_job(self, name)
        return original(self, *args, **kwargs)

    return list_transform_jobs


def stop_transform_job(self: Backend, transform_job_name: str) -> None:
    if transform_job_name not in self.transform_jobs:
        raise ResourceNotFound(
            f"Could not find transform job '{_arn('transform-job', transform_job_name, self)}'."
        )
    if _refresh_transform_job(self, transform_job_name) is None:
        status = self.transform_jobs[transform_job_name].transform_job_status
        raise ValidationError(f"transform job {transform_job_name} is in status {status}")
    _call(runtime().stop_transform_job, transform_job_name)
    _refresh_transform_job(self, transform_job_name)


def stop_transform_job_response(self: Response) -> Any:
    self.sagemaker_backend.stop_transform_job(self._get_param("TransformJobName"))
    return EmptyResult()


# --- endpoints ----------------------------------------------------------------------------------


def _refresh_endpoint(backend: Backend, name: str) -> dict[str, Any] | None:
    record = backend.endpoints.get(name)
    live = _live(runtime().describe_endpoint, name) if record is not None else None
    if live is not None:
        _sync(record, live, _ENDPOINT_FIELDS)
    return live


def _build_create_endpoint(original: Callable[..., Any]) -> Any:
    def create_endpoint(
        self: Backend, endpoint_name: str, endpoint_config_name: str, tags: Any
    ) -> Any:
        if endpoint_name in self.endpoints:
            arn = _arn("endpoint", endpoint_name, self)
            raise ValidationError(f'Cannot create already existing endpoint "{arn}".')
        config, models = _config_and_models(self, endpoint_config_name)
        _call(runtime().create_endpoint, endpoint_name, config, models)
        try:
            endpoint = original(self, endpoint_name, endpoint_config_name, tags)
        except Exception:
            with contextlib.suppress(LocalSageMakerError):
                runtime().delete_endpoint(endpoint_name)
            raise
        _refresh_endpoint(self, endpoint_name)
        return endpoint

    return create_endpoint


def update_endpoint(
    self: Backend,
    endpoint_name: str,
    endpoint_config_name: str,
    retain_all_variant_properties: bool | None = None,
    exclude_retained_variant_properties: list[dict[str, Any]] | None = None,
    deployment_config: dict[str, Any] | None = None,
    retain_deployment_config: bool | None = None,
) -> Any:
    """UpdateEndpoint: a blue/green update in the runtime, shifting traffic as
    ``deployment_config`` says (None: all at once); ``retain_deployment_config`` reuses the
    endpoint's last one. The variant-property options are accepted and ignored."""
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = _arn("endpoint", endpoint_name, self)
        raise ValidationError(f"Could not find endpoint '{arn}'.")
    config, models = _config_and_models(self, endpoint_config_name)
    _call(
        runtime().update_endpoint,
        endpoint_name,
        config,
        models,
        deployment_config,
        bool(retain_deployment_config),
    )
    _refresh_endpoint(self, endpoint_name)
    return endpoint


def update_endpoint_response(self: Response) -> Any:
    endpoint = self.sagemaker_backend.update_endpoint(
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        retain_all_variant_properties=self._get_param("RetainAllVariantProperties"),
        exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties"),
        deployment_config=self._get_param("DeploymentConfig"),
        retain_deployment_config=self._get_param("RetainDeploymentConfig"),
    )
    return ActionResult({"EndpointArn": endpoint.arn})


def _build_describe_endpoint(original: Callable[[Backend, str], dict[str, Any]]) -> Any:
    def describe_endpoint(self: Backend, endpoint_name: str) -> dict[str, Any]:
        _refresh_endpoint(self, endpoint_name)
        return original(self, endpoint_name)

    return describe_endpoint


def _build_delete_endpoint(original: Callable[[Backend, str], None]) -> Any:
    def delete_endpoint(self: Backend, endpoint_name: str) -> None:
        original(self, endpoint_name)
        with contextlib.suppress(RuntimeResourceNotFound):
            runtime().delete_endpoint(endpoint_name)

    return delete_endpoint


def _build_list_endpoints(original: Callable[..., Any]) -> Any:
    def list_endpoints(self: Backend, *args: Any, **kwargs: Any) -> Any:
        for name in list(self.endpoints):
            _refresh_endpoint(self, name)
        return original(self, *args, **kwargs)

    return list_endpoints


def _without_empty(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` without the ``{}`` moto puts for configuration that was never set: AWS
    leaves such fields out, and the SDK v3's resources refuse an empty one (its shapes'
    required members are missing)."""
    return {key: value for key, value in document.items() if value != {}}


def _build_describe_model(_original: Callable[..., Any]) -> Any:
    def describe_model(self: Any) -> ActionResult:
        model = self.sagemaker_backend.describe_model(self._get_param("ModelName"))
        return ActionResult(_without_empty(model.response_object))

    return describe_model


def _build_describe_endpoint_response(_original: Callable[..., Any]) -> Any:
    def describe_endpoint(self: Any) -> ActionResult:
        name = self._get_param("EndpointName")
        return ActionResult(_without_empty(self.sagemaker_backend.describe_endpoint(name)))

    return describe_endpoint


def _build_describe_endpoint_config(_original: Callable[..., Any]) -> Any:
    # The response, not the backend method: moto's CreateEndpoint reads the backend's.
    def describe_endpoint_config(self: Any) -> ActionResult:
        name = self._get_param("EndpointConfigName")
        return ActionResult(_without_empty(self.sagemaker_backend.describe_endpoint_config(name)))

    return describe_endpoint_config


# --- the patch list -----------------------------------------------------------------------------


def patches() -> list[Patch]:
    backend = sagemaker_models.SageMakerModelBackend
    response = sagemaker_responses.SageMakerResponse
    list_params = (
        "self",
        "next_token",
        "max_results",
        "creation_time_after",
        "creation_time_before",
        "last_modified_time_after",
        "last_modified_time_before",
        "name_contains",
        "status_equals",
    )
    return [
        # moto internals read or written here (record attributes are set in __init__).
        Require(sagemaker_utils, "arn_formatter", ("_type", "_id", "account_id", "region_name")),
        Require(
            sagemaker_models.FakeTrainingJob,
            "__init__",
            (
                "self",
                "account_id",
                "region_name",
                "training_job_name",
                "hyper_parameters",
                "algorithm_specification",
                "role_arn",
                "input_data_config",
                "output_data_config",
                "resource_config",
                "vpc_config",
                "stopping_condition",
                "tags",
                "enable_network_isolation",
                "enable_inter_container_traffic_encryption",
                "enable_managed_spot_training",
                "checkpoint_config",
                "debug_hook_config",
                "debug_rule_configurations",
                "tensor_board_output_config",
                "experiment_config",
            ),
        ),
        Require(
            sagemaker_models.Model,
            "__init__",
            (
                "self",
                "account_id",
                "region_name",
                "model_name",
                "execution_role_arn",
                "primary_container",
                "vpc_config",
                "containers",
                "tags",
            ),
        ),
        Require(
            sagemaker_models.FakeEndpointConfig,
            "__init__",
            (
                "self",
                "account_id",
                "region_name",
                "endpoint_config_name",
                "production_variants",
                "async_inference_config",
                "data_capture_config",
                "tags",
                "kms_key_id",
            ),
        ),
        Require(response, "sagemaker_backend"),
        Require(response, "_get_params", ("self",)),
        # Training jobs.
        Replace(response, "create_training_job", ("self",), _build_create_training_job_response),
        Replace(
            backend,
            "describe_training_job",
            ("self", "training_job_name"),
            _build_describe_training_job,
        ),
        Replace(backend, "list_training_jobs", list_params, _build_list_training_jobs),
        Add(backend, "stop_training_job", stop_training_job),
        Add(response, "stop_training_job", stop_training_job_response),
        # Transform jobs.
        Replace(response, "create_transform_job", ("self",), _build_create_transform_job_response),
        Replace(
            backend,
            "describe_transform_job",
            ("self", "transform_job_name"),
            _build_describe_transform_job,
        ),
        Replace(backend, "list_transform_jobs", list_params, _build_list_transform_jobs),
        Add(backend, "stop_transform_job", stop_transform_job),
        Add(response, "stop_transform_job", stop_transform_job_response),
        # Models.
        Require(sagemaker_models.Model, "response_object"),
        Replace(response, "describe_model", ("self",), _build_describe_model),
        Require(backend, "describe_endpoint_config", ("self", "endpoint_config_name")),
        Replace(response, "describe_endpoint_config", ("self",), _build_describe_endpoint_config),
        # Endpoints.
        Replace(
            backend,
            "create_endpoint",
            ("self", "endpoint_name", "endpoint_config_name", "tags"),
            _build_create_endpoint,
        ),
        Add(backend, "update_endpoint", update_endpoint),
        Add(response, "update_endpoint", update_endpoint_response),
        Replace(backend, "describe_endpoint", ("self", "endpoint_name"), _build_describe_endpoint),
        Replace(response, "describe_endpoint", ("self",), _build_describe_endpoint_response),
        Replace(backend, "delete_endpoint", ("self", "endpoint_name"), _build_delete_endpoint),
        Replace(
            backend,
            "list_endpoints",
            (
                "self",
                "sort_by",
                "sort_order",
                "name_contains",
                "creation_time_before",
                "creation_time_after",
                "last_modified_time_before",
                "last_modified_time_after",
                "status_equals",
            ),
            _build_list_endpoints,
        ),
    ]
