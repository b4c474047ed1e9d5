"""A local SageMaker runtime: really runs what the SageMaker API asks, with no AWS and no Docker.

moto records SageMaker resources but runs nothing. :class:`LocalSageMaker` does the running,
in process, against an injected boto3 S3 client (moto in-process, a moto server, or real S3):

- **training jobs** run the script-mode program (``sagemaker_program`` from
  ``sagemaker_submit_directory``) in a subprocess per host (``InstanceCount``), each inside its
  own local ``/opt/ml`` tree, with the training toolkit's ``SM_*`` environment (or
  ``AlgorithmSpecification.ContainerEntrypoint``, in a private mount namespace that sees the
  tree at ``/opt/ml``), channels replicated or sharded between the hosts, checkpoint sync,
  managed-spot emulation (capacity waits, injected interruptions with resume from S3
  checkpoints, MaxWait/MaxRuntime limits)
  and SageMaker's statuses, secondary-status transitions, times and metrics;
- **endpoints** are real HTTP servers on 127.0.0.1 (``GET /ping``, ``POST /invocations``)
  loading models through their ``inference.py`` handlers, with blue/green updates (traffic
  shifting ALL_AT_ONCE/CANARY/LINEAR, baking, CloudWatch-alarm auto-rollback);
- **transform jobs** push S3 objects through the same model code, record by record.

API (all methods thread-safe; names and request dicts are SageMaker's)::

    rt = LocalSageMaker(s3_client, work_dir, settings=RuntimeSettings(...),
                        clock=time.monotonic, now=lambda: datetime.now(UTC),
                        alarm_state=lambda alarm_name: "OK" | "ALARM" | ... | None)

    rt.start_training_job(create_training_job_request) -> dict   # first Describe
    rt.describe_training_job(name) -> dict
    rt.stop_training_job(name) -> None
    rt.wait_for_training_job(name, timeout=60.0) -> dict
    rt.list_training_jobs() -> list[str]
    rt.inject_spot_interruption(job_name=None, *, after_checkpoints=N | after_seconds=S)
    rt.inject_spot_capacity_never_arrives(job_name=None)
    rt.inject_training_failure(job_name=None, reason=OUT_OF_MEMORY_FAILURE)

    rt.create_endpoint(name, endpoint_config_request, {model_name: create_model_request})
    rt.update_endpoint(name, endpoint_config_request, {model_name: create_model_request},
                       deployment_config=None, retain_deployment_config=False)
    rt.delete_endpoint(name) -> None
    rt.describe_endpoint(name) -> dict
    rt.list_endpoints() -> list[str]
    rt.endpoint_address(name) -> (host, port)
    rt.invoke(name, body, content_type=None, accept=None, *, target_variant=None)
        -> InvocationResult(status, body, content_type)
    rt.inject_endpoint_update_failure(endpoint_name=None, reason=...)

    rt.start_transform_job(create_transform_job_request, create_model_request) -> dict
    rt.describe_transform_job(name) -> dict
    rt.stop_transform_job(name) -> None
    rt.wait_for_transform_job(name, timeout=60.0) -> dict
    rt.list_transform_jobs() -> list[str]

    rt.close()        # SIGTERM/SIGKILL every job, stop every server, join threads

Describe dicts carry the SageMaker fields the runtime owns (statuses, transitions, times,
FailureReason, artifacts, metrics) with ``datetime`` values, plus a ``LocalRuntime`` dict of
extras (interruptions, attempts, log file, endpoint URL...) that an API layer should drop.
Errors are :class:`ValidationError`, :class:`ResourceNotFound` and :class:`ResourceInUse`,
whose ``code`` is the SageMaker error code.

Modules: ``container`` (the ``/opt/ml`` contract), ``s3io`` (S3 and tar helpers),
``training_jobs``, ``model_server`` (loading + invoking + HTTP), ``endpoints``, ``rollout``
(DeploymentConfig: validation, traffic plan, blue/green split),
``transform_jobs``, ``runtime`` (this facade), ``settings``, ``errors``.
"""

from .errors import LocalSageMakerError, ResourceInUse, ResourceNotFound, ValidationError
from .model_server import InvocationResult
from .rollout import AlarmState
from .runtime import LocalSageMaker
from .settings import RuntimeSettings
from .training_jobs import OUT_OF_MEMORY_FAILURE

__all__ = [
    "OUT_OF_MEMORY_FAILURE",
    "AlarmState",
    "InvocationResult",
    "LocalSageMaker",
    "LocalSageMakerError",
    "ResourceInUse",
    "ResourceNotFound",
    "RuntimeSettings",
    "ValidationError",
]
