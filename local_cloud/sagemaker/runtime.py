"""The facade: one object that runs what the SageMaker API asks for."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import job_logs
from .endpoints import DEFAULT_UPDATE_FAILURE, Endpoints
from .model_server import InvocationResult
from .rollout import AlarmState
from .settings import RuntimeSettings
from .training_jobs import OUT_OF_MEMORY_FAILURE, SpotInterruption, TrainingJobs
from .transform_jobs import TransformJobs

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_s3 import S3Client
else:
    CloudWatchLogsClient = S3Client = Any


def utc_now() -> datetime:
    return datetime.now(UTC)


class LocalSageMaker:
    """Runs SageMaker training jobs, endpoints and transform jobs on this machine.

    Args:
        s3: a boto3 S3 client (moto in-process, a moto server, or real S3); used from the
            runtime's threads too, which boto3 clients allow.
        work_dir: where job trees, logs and model files go (created if missing).
        settings: time knobs; see :class:`RuntimeSettings`.
        clock: monotonic seconds, for durations and limits.
        now: wall-clock datetimes, for the timestamps Describe* returns.
        alarm_state: ``alarm_state(alarm_name)`` → the CloudWatch alarm's ``StateValue``
            (``OK``, ``ALARM``, ``INSUFFICIENT_DATA``) or None when it does not exist; read by
            endpoint updates whose DeploymentConfig has an ``AutoRollbackConfiguration``.
            None: no alarm exists (naming one is a ValidationError). The runtime never
            imports moto: the API layer passes a reader of its CloudWatch.
        logs: a boto3 CloudWatch Logs client: each training container's output goes to
            ``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-<i>-<epoch>`` per host;
            endpoints and transform jobs log the model server's lines to their groups
            (:mod:`.job_logs`).
            None: the output stays in the job's local log file only.

    Thread-safe. Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        s3: S3Client,
        work_dir: Path,
        *,
        settings: RuntimeSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        alarm_state: AlarmState | None = None,
        logs: CloudWatchLogsClient | None = None,
    ) -> None:
        self.settings = settings or RuntimeSettings()
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # Training output also goes to CloudWatch Logs when a client is given (job_logs).
        sink = job_logs.CloudWatchLogs(logs) if logs is not None else None
        self._training = TrainingJobs(s3, self.work_dir, self.settings, clock, now, sink)
        self._endpoints = Endpoints(
            s3, self.work_dir, self.settings, now, clock=clock, alarm_state=alarm_state, logs=sink
        )
        self._transforms = TransformJobs(s3, self.work_dir, self.settings, now, sink)
        self._close_lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> LocalSageMaker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- Training jobs -------------------------------------------------------------------

    def start_training_job(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a CreateTrainingJob request and run it on a background thread.

        Returns the first Describe (``InProgress``/``Starting``). Raises ``ValidationError``
        for a bad request and ``ResourceInUse`` for a duplicate name.
        """
        return self._training.start(dict(request))

    def describe_training_job(self, name: str) -> dict[str, Any]:
        return self._training.get(name).describe()

    def stop_training_job(self, name: str) -> None:
        """``Stopping`` now; ``Stopped`` once the process is gone (SIGTERM, grace, SIGKILL)."""
        self._training.get(name).stop()

    def list_training_jobs(self) -> list[str]:
        return self._training.names()

    def wait_for_training_job(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the job ends (for tests and scripts); returns its Describe."""
        job = self._training.get(name)
        job.join(timeout)
        return job.describe()

    def inject_spot_interruption(
        self,
        job_name: str | None = None,
        *,
        after_checkpoints: int | None = None,
        after_seconds: float | None = None,
    ) -> None:
        """Arm one spot interruption for ``job_name`` (running or not yet created) or, with
        None, for the next managed-spot job created. Give exactly one trigger: after that many
        checkpoint files were uploaded in the current attempt, or that many seconds into its
        ``Training`` phase. Call again to arm further interruptions (they fire in order)."""
        injection = SpotInterruption(
            after_checkpoints=after_checkpoints, after_seconds=after_seconds
        )
        self._training.inject_spot_interruption(job_name, injection)

    def inject_spot_capacity_never_arrives(self, job_name: str | None = None) -> None:
        """The named (or next managed-spot) job waits for capacity until MaxWaitTimeInSeconds:
        it ends ``Stopped``/``MaxWaitTimeExceeded``."""
        self._training.inject_capacity_never_arrives(job_name)

    def inject_training_failure(
        self, job_name: str | None = None, reason: str = OUT_OF_MEMORY_FAILURE
    ) -> None:
        """Make ``job_name`` (running or not yet created) or, with None, the next training job
        created (spot or not) fail once its script runs: the process is SIGKILLed at the next
        poll, as by the OOM killer, and the job ends ``Failed`` with ``reason`` as its
        FailureReason (default: SageMaker's out-of-memory message). Billed like any failure:
        the seconds the process ran. Not a capacity failure: no on-demand retry follows."""
        self._training.inject_failure(job_name, reason)

    # --- Endpoints -----------------------------------------------------------------------

    def create_endpoint(
        self,
        name: str,
        config: Mapping[str, Any],
        models: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Any]:
        """Start an endpoint for a CreateEndpointConfig request ``config``; ``models`` maps
        each variant's ModelName to its CreateModel request. ``Creating`` → ``InService`` |
        ``Failed`` in the background."""
        return self._endpoints.create(name, config, models)

    def update_endpoint(
        self,
        name: str,
        config: Mapping[str, Any],
        models: Mapping[str, Mapping[str, Any]],
        deployment_config: Mapping[str, Any] | None = None,
        retain_deployment_config: bool = False,
    ) -> dict[str, Any]:
        """Blue/green update to ``config``: ``Updating``, old config serving until the new one
        is ready; a failure returns to ``InService`` on the old config with FailureReason.

        ``deployment_config`` is UpdateEndpoint's ``DeploymentConfig`` (None: all traffic at
        once): ``BlueGreenUpdatePolicy`` shifts traffic ALL_AT_ONCE, CANARY or LINEAR, then
        bakes; an alarm of ``AutoRollbackConfiguration`` in ``ALARM`` (or the maximum
        execution time exceeded) rolls back (``RollingBack`` → ``InService`` on the old
        config, FailureReason naming the alarms). With ``retain_deployment_config`` and no
        ``deployment_config``, the endpoint's last one is reused. An invalid config, or an
        alarm that does not exist, raises ``ValidationError`` and changes nothing."""
        return self._endpoints.update(
            name, config, models, deployment_config, retain_deployment_config
        )

    def delete_endpoint(self, name: str) -> None:
        self._endpoints.delete(name)

    def describe_endpoint(self, name: str) -> dict[str, Any]:
        return self._endpoints.describe(name)

    def list_endpoints(self) -> list[str]:
        return self._endpoints.names()

    def endpoint_address(self, name: str) -> tuple[str, int]:
        """``(host, port)`` of the endpoint's HTTP server (``/ping``, ``/invocations``)."""
        return self._endpoints.address(name)

    def invoke(
        self,
        name: str,
        body: bytes,
        content_type: str | None = None,
        accept: str | None = None,
        *,
        target_variant: str | None = None,
    ) -> InvocationResult:
        """InvokeEndpoint over HTTP: ``(status, body, content_type)`` (a NamedTuple).

        Raises ``ValidationError`` when the endpoint is not InService or Updating."""
        return self._endpoints.invoke(name, body, content_type, accept, target_variant)

    def inject_endpoint_update_failure(
        self, endpoint_name: str | None = None, reason: str = DEFAULT_UPDATE_FAILURE
    ) -> None:
        """Make the next update of ``endpoint_name`` (or of any endpoint) fail after loading."""
        self._endpoints.inject_update_failure(endpoint_name, reason)

    # --- Transform jobs ------------------------------------------------------------------

    def start_transform_job(
        self, request: Mapping[str, Any], model: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Run a CreateTransformJob request with ``model`` (the CreateModel request of its
        ModelName) on a background thread."""
        return self._transforms.start(request, model)

    def describe_transform_job(self, name: str) -> dict[str, Any]:
        return self._transforms.get(name).describe()

    def stop_transform_job(self, name: str) -> None:
        self._transforms.get(name).stop()

    def list_transform_jobs(self) -> list[str]:
        return self._transforms.names()

    def wait_for_transform_job(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        job = self._transforms.get(name)
        job.join(timeout)
        return job.describe()

    # --- Lifecycle -----------------------------------------------------------------------

    def close(self, *, remove_work_dir: bool = False) -> None:
        """Stop every job (SIGTERM, then SIGKILL after ``close_grace_seconds``) and endpoint
        server, and join the runtime's threads. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._training.close()
        self._transforms.close()
        self._endpoints.close()
        if remove_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
