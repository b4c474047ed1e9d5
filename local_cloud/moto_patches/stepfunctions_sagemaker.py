"""The optimized SageMaker integration (``arn:aws:states:::sagemaker:*``) for moto's interpreter.

moto 5.2.5 lists ``sagemaker`` among its unsupported services: request-response calls are
forwarded as they are, and ``.sync`` fails ("Unsupported .sync callback procedure").
:class:`StateTaskServiceSageMaker` follows moto's Glue integration
(``state_task_service_glue.py``):

- request-response: ``createModel``, ``createEndpointConfig``, ``createEndpoint``,
  ``updateEndpoint``, ``createTrainingJob``, ``createTransformJob``; the output is the API
  response (``{ModelArn}``, ``{EndpointConfigArn}``, ``{EndpointArn}``...);
- ``.sync`` for ``createTrainingJob`` and ``createTransformJob``: the output is the job's
  Describe once ``Completed``; ``Failed``/``Stopped`` raise ``States.TaskFailed`` with the
  Describe JSON as Cause. Timestamps become epoch milliseconds (JSON numbers), so the output
  stays serialisable;
- when the execution stops (StopExecution, TimeoutSeconds, a failed Parallel branch) while a
  ``.sync`` job runs, the job is stopped (StopTrainingJob/StopTransformJob), as AWS does;
- API errors become ``SageMaker.<Java SDK exception>`` (``SageMaker.AmazonSageMakerException``
  for ValidationException and the other unmodelled codes, ``SageMaker.ResourceInUseException``,
  ``SageMaker.ResourceLimitExceededException``, ``SageMaker.ResourceNotFoundException``) with
  AWS's "(Service: AmazonSageMaker; Status Code: ...)" Cause;
- a Parameters key the API does not have (``trainingJobName``) fails the task with
  ``States.Runtime`` naming it, instead of being dropped silently. ``.waitForTaskToken`` (not
  offered by AWS for SageMaker) and ``.sync`` on a non-job action are rejected when the state
  machine is created (InvalidDefinition).

The interpreter picks service classes through ``state_task_service_for`` as imported into
``state_task_factory`` (a ``from ... import``), so that module's binding is what is wrapped.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Final

import botocore.session
from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
    state_task_factory,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service,
    state_task_service_callback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import StateTask
from moto.stepfunctions.parser.asl.utils import boto_client, encoding

from ._patching import Patch, Replace, Require

_ENV_PARAMS = ("self", "env", "resource_runtime_part", "normalised_parameters", "state_credentials")

_REQUEST_RESPONSE_ACTIONS: Final[dict[str, str]] = {
    # ASL action (lower-cased) -> API operation name
    "createmodel": "CreateModel",
    "createendpointconfig": "CreateEndpointConfig",
    "createendpoint": "CreateEndpoint",
    "updateendpoint": "UpdateEndpoint",
    "createtrainingjob": "CreateTrainingJob",
    "createtransformjob": "CreateTransformJob",
}


class _SyncJob:
    """How ``.sync`` follows one kind of job."""

    def __init__(self, kind: str) -> None:
        self.name_key = f"{kind}JobName"
        self.status_key = f"{kind}JobStatus"
        snake = kind.lower()
        self.describe = f"describe_{snake}_job"
        self.stop = f"stop_{snake}_job"


_SYNC_JOBS: Final[dict[str, _SyncJob]] = {
    "createtrainingjob": _SyncJob("Training"),
    "createtransformjob": _SyncJob("Transform"),
}
_RUNNING_STATUSES: Final[frozenset[str]] = frozenset({"InProgress", "Stopping"})

# SageMaker error codes that the Java SDK (which Step Functions reports) models as exceptions.
_MODELLED_ERRORS: Final[dict[str, str]] = {
    "ResourceInUse": "ResourceInUseException",
    "ResourceLimitExceeded": "ResourceLimitExceededException",
    "ResourceNotFound": "ResourceNotFoundException",
    "ConflictException": "ConflictException",
}
GENERIC_ERROR: Final[str] = "SageMaker.AmazonSageMakerException"


def error_name(code: str) -> str:
    """The Step Functions error name of a SageMaker API error code."""
    modelled = _MODELLED_ERRORS.get(code)
    return f"SageMaker.{modelled}" if modelled else GENERIC_ERROR


def json_ready(value: Any) -> Any:
    """Timestamps as epoch milliseconds (how the integration's JSON carries them)."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


@functools.cache
def api_parameters(operation: str) -> frozenset[str]:
    """The request members of a SageMaker API operation (from botocore's service model)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    return frozenset(model.operation_model(operation).input_shape.members)


def task_failed_details(service: Any, error: str, cause: str) -> Any:
    """``EventDetails`` of a TaskFailed event (a TypedDict moto fills partially)."""
    details: dict[str, Any] = {
        "taskFailedEventDetails": TaskFailedEventDetails(
            error=error,
            cause=cause,
            resource=service._get_sfn_resource(),
            resourceType=service._get_sfn_resource_type(),
        )
    }
    return details


class _JobPoller:
    """The ``.sync`` resolver: None while the job runs, its Describe when Completed, raises
    States.TaskFailed when Failed/Stopped. ``stop()`` stops a job still running."""

    def __init__(
        self, service: StateTaskServiceSageMaker, env: Any, client: Any, job: _SyncJob, name: str
    ) -> None:
        self._service = service
        self._env = env
        self._client = client
        self._job = job
        self._name = name
        self._finished = False

    def __call__(self) -> Any:
        describe: Callable[..., dict[str, Any]] = getattr(self._client, self._job.describe)
        description = describe(**{self._job.name_key: self._name})
        description.pop("ResponseMetadata", None)
        output = json_ready(description)
        status = output.get(self._job.status_key)
        if status in _RUNNING_STATUSES:
            return None
        self._finished = True
        if status == "Completed":
            return output
        failed = StatesErrorNameType.StatesTaskFailed
        raise FailureEventException(
            FailureEvent(
                env=self._env,
                error_name=StatesErrorName(typ=failed),
                event_type=HistoryEventType.TaskFailed,
                event_details=task_failed_details(
                    self._service, failed.to_name(), encoding.to_json_str(output)
                ),
            )
        )

    def stop(self) -> None:
        if self._finished:
            return
        self._finished = True
        with contextlib.suppress(ClientError):  # already ending: nothing to stop
            getattr(self._client, self._job.stop)(**{self._job.name_key: self._name})


class StateTaskServiceSageMaker(state_task_service_callback.StateTaskServiceCallback):
    def __init__(self) -> None:
        # WaitForTaskToken is declared only because moto's _eval_integration_pattern calls
        # interrupt_all() on the callback endpoint it creates for it; it is rejected below.
        super().__init__(
            supported_integration_patterns={
                ResourceCondition(ResourceCondition.Sync),
                ResourceCondition(ResourceCondition.WaitForTaskToken),
            }
        )

    @property
    def _action(self) -> str:
        return str(self.resource.api_action).lower()

    def _get_supported_parameters(self) -> set[str] | None:
        operation = _REQUEST_RESPONSE_ACTIONS.get(self._action)
        return None if operation is None else set(api_parameters(operation))

    def _validate_service_integration_is_supported(self) -> None:
        condition = self.resource.condition
        sync_job = condition == ResourceCondition.Sync and self._action in _SYNC_JOBS
        supported = self._get_supported_parameters() is not None and (condition is None or sync_job)
        if not supported:
            raise ValueError(
                f"The resource provided {self.resource.resource_arn} not recognized. The value "
                "is not a valid resource ARN, or the resource is not available in this region."
            )

    def _eval_parameters(self, env: Any) -> dict[str, Any]:
        parameters: dict[str, Any] = {}
        if self.parargs is not None:
            self.parargs.eval(env=env)
            parameters = env.stack.pop()
        unknown = sorted(set(parameters) - (self._get_supported_parameters() or set()))
        if unknown:
            raise ValueError(
                f"The field(s) {', '.join(repr(key) for key in unknown)} are not supported by "
                f"Step Functions for {self.resource.resource_arn}"
            )
        return parameters

    def _client(self, resource_runtime_part: Any, state_credentials: Any) -> Any:
        return boto_client.boto_client_for(
            region=resource_runtime_part.region,
            service="sagemaker",
            state_credentials=state_credentials,
        )

    def _eval_service_task(
        self,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> None:
        client = self._client(resource_runtime_part, state_credentials)
        response = getattr(client, self._get_boto_service_action())(**normalised_parameters)
        response.pop("ResponseMetadata", None)
        env.stack.append(json_ready(response))

    def _build_sync_resolver(
        self,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> _JobPoller:
        job = _SYNC_JOBS[self._action]
        env.stack.pop()  # the Create* response: .sync outputs the Describe instead
        client = self._client(resource_runtime_part, state_credentials)
        return _JobPoller(self, env, client, job, str(normalised_parameters[job.name_key]))

    def _eval_sync(
        self,
        env: Any,
        sync_resolver: Callable[[], Any] | None,
        timeout_seconds: int | None,
        callback_endpoint: Any,
        heartbeat_endpoint: Any,
    ) -> Any:
        try:
            return super()._eval_sync(
                env=env,
                sync_resolver=sync_resolver,
                timeout_seconds=timeout_seconds,
                callback_endpoint=callback_endpoint,
                heartbeat_endpoint=heartbeat_endpoint,
            )
        finally:
            # The polling loop also ends when the execution stops or this task times out:
            # AWS then stops the job.
            if isinstance(sync_resolver, _JobPoller) and not env.is_running():
                sync_resolver.stop()

    def _from_error(self, env: Any, ex: Exception) -> Any:
        if isinstance(ex, ClientError):
            error = ex.response.get("Error", {})
            metadata = ex.response.get("ResponseMetadata", {})
            code = str(error.get("Code", "Unknown"))
            name = error_name(code)
            cause = (
                f"{error.get('Message', '')} (Service: AmazonSageMaker; "
                f"Status Code: {metadata.get('HTTPStatusCode', 400)}; Error Code: {code}; "
                f"Request ID: {metadata.get('RequestId', '')}; Proxy: null)"
            )
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(name),
                event_type=HistoryEventType.TaskFailed,
                event_details=task_failed_details(self, name, cause),
            )
        return super()._from_error(env=env, ex=ex)


def _build_state_task_service_for(original: Callable[[str], Any]) -> Callable[[str], Any]:
    def state_task_service_for(service_name: str) -> Any:
        if service_name == "sagemaker":
            return StateTaskServiceSageMaker()
        return original(service_name)

    return state_task_service_for


def patches() -> list[Patch]:
    callback = state_task_service_callback.StateTaskServiceCallback
    service = state_task_service.StateTaskService
    return [
        Require(callback, "__init__", ("self", "supported_integration_patterns")),
        Require(
            callback,
            "_eval_sync",
            (
                "self",
                "env",
                "sync_resolver",
                "timeout_seconds",
                "callback_endpoint",
                "heartbeat_endpoint",
            ),
        ),
        Require(callback, "_eval_integration_pattern", _ENV_PARAMS),
        Require(callback, "_build_sync_resolver", _ENV_PARAMS),
        Require(callback, "_from_error", ("self", "env", "ex")),
        Require(service, "_eval_service_task", _ENV_PARAMS),
        Require(service, "_validate_service_integration_is_supported", ("self",)),
        Require(service, "_get_boto_service_action", ("self", "service_action_name")),
        Require(service, "_get_sfn_resource", ("self",)),
        Require(service, "_get_sfn_resource_type", ("self",)),
        Require(StateTask, "_eval_parameters", ("self", "env")),
        Require(StateTask, "_get_supported_parameters", ("self",)),
        Require(boto_client, "boto_client_for", ("region", "service", "state_credentials")),
        Require(encoding, "to_json_str", ("obj", "separators")),
        Replace(
            state_task_factory,
            "state_task_service_for",
            ("service_name",),
            _build_state_task_service_for,
        ),
    ]
