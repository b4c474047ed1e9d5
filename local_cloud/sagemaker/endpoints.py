"""Endpoints: a real HTTP server per endpoint, serving its current deployment.

Each endpoint gets one :class:`~local_cloud.sagemaker.model_server.ModelServer` on
``127.0.0.1:<ephemeral port>`` for its whole life, so its address never changes (as a real
endpoint's URL does not). What the server answers with is the endpoint's current *deployment*:
the models of one endpoint config's production variants, loaded in this process.

- Create: ``Creating`` while the models load on a background thread (``/ping`` answers 503),
  then ``InService``; ``Failed`` with a FailureReason when a model cannot load.
- Update (blue/green): ``Updating`` while the new config's (green) models load; the old (blue)
  deployment keeps answering. A failed load (a model that does not load, or an injected
  failure) leaves the endpoint ``InService`` on the OLD config with ``FailureReason`` set, as
  SageMaker does. Then traffic shifts as the update's ``DeploymentConfig`` says
  (:mod:`.rollout`): without one, all at once (the router swaps atomically); with
  ``BlueGreenUpdatePolicy``, ALL_AT_ONCE / CANARY / LINEAR steps of ``WaitIntervalInSeconds``,
  each request routed to blue or green deterministically by the green share; then the baking
  period (``TerminationWaitInSeconds``) at 100 % green with blue still loaded; then blue is
  unloaded and the endpoint is ``InService`` on the new config. Throughout: ``Updating``,
  ``EndpointConfigName`` = the old config, ``PendingDeploymentSummary`` = the new one (its
  variants' ``VariantStatus``: ``Creating``, ``ActivatingTraffic``, ``Baking``).
- Auto-rollback: while shifting and baking, every ``poll_interval_seconds`` each alarm of
  ``AutoRollbackConfiguration`` is read through the injected ``alarm_state`` callable; one in
  ``ALARM``, or ``MaximumExecutionTimeoutInSeconds`` exceeded (counted from UpdateEndpoint), →
  ``RollingBack`` (all traffic to blue at once, green unloaded) → ``InService`` on the OLD
  config with a FailureReason naming the alarm(s) or the timeout. Describe's
  ``LocalRuntime.Rollout`` records the phases (``Loading``, ``ShiftingTraffic`` with its
  ``GreenTrafficPercent``, ``Baking``, ``RollingBack``, ``RolledBack``, ``Completed``).
- Every ``/invocations`` reply carries the local-only header ``X-Local-Endpoint-Config``: the
  endpoint config whose deployment answered.
- Delete: the server stops at once; a load or rollout still running is discarded.

Deployment files live under ``<work_dir>/endpoints/<name>/deployment-<n>/<variant>/``.
"""

from __future__ import annotations

import copy
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import job_logs, model_server
from .errors import ResourceNotFound, ValidationError
from .model_server import Deployment, InvocationResult, ModelServer, ModelSpec, Route
from .rollout import AlarmState, RolloutPlan, TrafficSplit, alarms_in_alarm, plan
from .settings import RuntimeSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
CREATING = "Creating"
UPDATING = "Updating"
ROLLING_BACK = "RollingBack"
IN_SERVICE = "InService"
FAILED = "Failed"
DEFAULT_UPDATE_FAILURE = "Update failed: the new production variant did not pass health checks"
# Rollout phases (Describe's LocalRuntime.Rollout) and the pending variants' VariantStatus.
LOADING = "Loading"
SHIFTING = "ShiftingTraffic"
BAKING = "Baking"
ROLLED_BACK = "RolledBack"
COMPLETED = "Completed"
_VARIANT_STATUS = {
    LOADING: "Creating",
    SHIFTING: "ActivatingTraffic",
    BAKING: "Baking",
    ROLLING_BACK: "Deleting",
}


def alarm_rollback_reason(alarms: list[str], config_name: str) -> str:
    """The FailureReason of an update rolled back by CloudWatch alarms."""
    return (
        f"Endpoint update to {config_name} was rolled back: CloudWatch alarm(s) "
        f"[{', '.join(alarms)}] went into ALARM state during the deployment."
    )


def timeout_rollback_reason(timeout: float, config_name: str) -> str:
    return (
        f"Endpoint update to {config_name} was rolled back: the deployment did not complete "
        f"within MaximumExecutionTimeoutInSeconds ({timeout:g} s)."
    )


class _Deleted(Exception):
    """The endpoint was deleted while its worker ran."""


@dataclass(frozen=True)
class _Variant:
    name: str
    model_name: str
    weight: float
    instance_count: int
    instance_type: str


def _variants(config: Mapping[str, Any], models: Mapping[str, Mapping[str, Any]]) -> list[_Variant]:
    name = config.get("EndpointConfigName")
    if not isinstance(name, str) or not name:
        raise ValidationError("the endpoint config has no EndpointConfigName")
    variants = []
    for variant in config.get("ProductionVariants") or []:
        model_name = variant.get("ModelName")
        if model_name not in models:
            raise ValidationError(
                f"endpoint config {name}: model {model_name!r} of variant "
                f"{variant.get('VariantName')!r} was not passed in models"
            )
        variants.append(
            _Variant(
                name=str(variant.get("VariantName") or "AllTraffic"),
                model_name=str(model_name),
                weight=float(variant.get("InitialVariantWeight", 1.0)),
                instance_count=int(variant.get("InitialInstanceCount", 1)),
                instance_type=str(variant.get("InstanceType", "local")),
            )
        )
    if not variants:
        raise ValidationError(f"endpoint config {name} has no ProductionVariants")
    return variants


class _Endpoint:
    """One endpoint's state; mutated under ``lock``."""

    def __init__(self, name: str, server: ModelServer, config: Mapping[str, Any], now: datetime):
        self.name = name
        self.server = server
        self.lock = threading.Lock()
        self.status = CREATING
        self.config_name = str(config["EndpointConfigName"])
        self.variants: list[_Variant] = []
        self.images: dict[str, str] = {}
        self.failure_reason: str | None = None
        self.creation_time = now
        self.last_modified = now
        self.deployment: Deployment | None = None  # blue: the deployment of config_name
        self.green: Deployment | None = None  # loaded, not yet the endpoint's deployment
        self.traffic: Deployment | TrafficSplit | None = None  # what the router reads
        self.pending_config: str | None = None
        self.pending_since: datetime | None = None
        self.pending_variants: list[_Variant] = []
        self.pending_images: dict[str, str] = {}
        self.deployment_config: Mapping[str, Any] | None = None  # of the last update
        self.rollout: dict[str, Any] | None = None  # the last update's phases (LocalRuntime)
        self.generation = 0
        self.deleted = False
        self.worker: threading.Thread | None = None
        self.wake = threading.Event()  # set on delete: a rollout's waits end at once

    def route(self, target_variant: str | None) -> Route | None:
        traffic = self.traffic  # one read: a request sees the old, the split or the new
        return traffic.route(target_variant) if traffic is not None else None

    def healthy(self) -> bool:
        traffic = self.traffic
        if isinstance(traffic, TrafficSplit):
            return traffic.healthy()
        return traffic is not None and any(m.ping() for _, _, m in traffic.variants)

    def phase(self, phase: str, share: float, now: datetime) -> None:
        """Record a rollout phase (call with ``lock`` held)."""
        if self.rollout is None:
            return
        percent = round(share * 100, 6)
        self.rollout.update(Phase=phase, GreenTrafficPercent=percent, PhaseStartTime=now)
        self.rollout["History"].append(
            {"Phase": phase, "GreenTrafficPercent": percent, "StartTime": now}
        )


class Endpoints:
    """All endpoints of one runtime."""

    def __init__(
        self,
        s3: S3Client,
        work_dir: Path,
        settings: RuntimeSettings,
        now: Callable[[], datetime],
        *,
        clock: Callable[[], float] = time.monotonic,
        alarm_state: AlarmState | None = None,
        logs: job_logs.CloudWatchLogs | None = None,
    ) -> None:
        self._s3 = s3
        self._work_dir = work_dir
        self._settings = settings
        self._now = now
        self._clock = clock
        self._logs = logs
        self._alarm_state = alarm_state
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Endpoint] = {}
        self._update_failures: dict[str | None, list[str]] = {}
        self._closed = False

    # --- API -------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        config: Mapping[str, Any],
        models: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Any]:
        if not ENDPOINT_NAME.match(name):
            raise ValidationError(f"EndpointName {name!r} must match [a-zA-Z0-9](-*[a-zA-Z0-9])*")
        variants = _variants(config, models)
        specs = self._specs(models)
        with self._lock:
            if self._closed:
                raise ValidationError("the local SageMaker runtime is closed")
            if name in self._endpoints:
                raise ValidationError(f"Cannot create already existing endpoint {name}")
            holder: list[_Endpoint] = []
            server = ModelServer(
                lambda variant: holder[0].route(variant),
                self._settings.host,
                healthy=lambda: holder[0].healthy(),
            )
            endpoint = _Endpoint(name, server, config, self._now())
            holder.append(endpoint)
            endpoint.variants = variants
            self._endpoints[name] = endpoint
            self._start_worker(endpoint, config, variants, specs, RolloutPlan(), update=False)
        return self.describe(name)

    def update(
        self,
        name: str,
        config: Mapping[str, Any],
        models: Mapping[str, Mapping[str, Any]],
        deployment_config: Mapping[str, Any] | None = None,
        retain_deployment_config: bool = False,
    ) -> dict[str, Any]:
        variants = _variants(config, models)
        specs = self._specs(models)
        endpoint = self._get(name)
        if deployment_config is None and retain_deployment_config:
            with endpoint.lock:
                deployment_config = endpoint.deployment_config
        green_instances = sum(variant.instance_count for variant in variants)
        rollout = plan(deployment_config, green_instances, self._alarm_state)
        with self._lock, endpoint.lock:
            if endpoint.status != IN_SERVICE:
                raise ValidationError(
                    f"Cannot update endpoint {name}: it is in status {endpoint.status}"
                )
            now = self._now()
            endpoint.status = UPDATING
            endpoint.pending_config = str(config["EndpointConfigName"])
            endpoint.pending_since = endpoint.last_modified = now
            endpoint.pending_variants = variants
            endpoint.pending_images = {v.name: specs[v.model_name].image for v in variants}
            endpoint.deployment_config = copy.deepcopy(deployment_config)
            endpoint.rollout = {
                "EndpointConfigName": endpoint.pending_config,
                "TrafficRoutingType": rollout.routing_type,
                "Alarms": list(rollout.alarms),
                "History": [],
            }
            endpoint.phase(LOADING, 0.0, now)
            self._start_worker(endpoint, config, variants, specs, rollout, update=True)
        return self.describe(name)

    def delete(self, name: str) -> None:
        with self._lock:
            endpoint = self._endpoints.pop(name, None)
        if endpoint is None:
            raise ResourceNotFound(f"Could not find endpoint {name}")
        self._dispose(endpoint)

    def describe(self, name: str) -> dict[str, Any]:
        endpoint = self._get(name)
        with endpoint.lock:
            local: dict[str, Any] = {
                "Url": f"http://{endpoint.server.host}:{endpoint.server.port}",
                "Host": endpoint.server.host,
                "Port": endpoint.server.port,
            }
            if endpoint.rollout is not None:
                local["Rollout"] = endpoint.rollout
            description: dict[str, Any] = {
                "EndpointName": endpoint.name,
                "EndpointConfigName": endpoint.config_name,
                "EndpointStatus": endpoint.status,
                "CreationTime": endpoint.creation_time,
                "LastModifiedTime": endpoint.last_modified,
                "LocalRuntime": local,
            }
            if endpoint.deployment is not None:
                description["ProductionVariants"] = [
                    {
                        "VariantName": variant.name,
                        "DeployedImages": [
                            {"SpecifiedImage": endpoint.images.get(variant.name, "")}
                        ],
                        "CurrentWeight": variant.weight,
                        "DesiredWeight": variant.weight,
                        "CurrentInstanceCount": variant.instance_count,
                        "DesiredInstanceCount": variant.instance_count,
                    }
                    for variant in endpoint.variants
                ]
            if endpoint.failure_reason is not None:
                description["FailureReason"] = endpoint.failure_reason
            if endpoint.pending_config is not None:
                description["PendingDeploymentSummary"] = {
                    "EndpointConfigName": endpoint.pending_config,
                    "StartTime": endpoint.pending_since,
                    "ProductionVariants": self._pending_variants(endpoint),
                }
            return copy.deepcopy(description)

    def address(self, name: str) -> tuple[str, int]:
        endpoint = self._get(name)
        return endpoint.server.host, endpoint.server.port

    def invoke(
        self,
        name: str,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        target_variant: str | None = None,
    ) -> InvocationResult:
        endpoint = self._get(name)
        with endpoint.lock:
            status = endpoint.status
        if status not in (IN_SERVICE, UPDATING, ROLLING_BACK):
            raise ValidationError(f"Endpoint {name} is not in service (status {status})")
        return model_server.http_invoke(
            endpoint.server.host, endpoint.server.port, body, content_type, accept, target_variant
        )

    def inject_update_failure(self, endpoint_name: str | None, reason: str) -> None:
        with self._lock:
            self._update_failures.setdefault(endpoint_name, []).append(reason)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._endpoints)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            endpoints = list(self._endpoints.values())
            self._endpoints.clear()
        for endpoint in endpoints:
            self._dispose(endpoint)

    # --- Internals -------------------------------------------------------------------------

    def _get(self, name: str) -> _Endpoint:
        with self._lock:
            endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise ResourceNotFound(f"Could not find endpoint {name}")
        return endpoint

    @staticmethod
    def _pending_variants(endpoint: _Endpoint) -> list[dict[str, Any]]:
        rollout = endpoint.rollout or {}
        status = _VARIANT_STATUS.get(str(rollout.get("Phase")))
        summaries = []
        for variant in endpoint.pending_variants:
            summary: dict[str, Any] = {
                "VariantName": variant.name,
                "DeployedImages": [
                    {"SpecifiedImage": endpoint.pending_images.get(variant.name, "")}
                ],
                "CurrentWeight": variant.weight,
                "DesiredWeight": variant.weight,
                "CurrentInstanceCount": variant.instance_count,
                "DesiredInstanceCount": variant.instance_count,
                "InstanceType": variant.instance_type,
            }
            if status is not None:
                summary["VariantStatus"] = [
                    {"Status": status, "StartTime": rollout.get("PhaseStartTime")}
                ]
            summaries.append(summary)
        return summaries

    @staticmethod
    def _specs(models: Mapping[str, Mapping[str, Any]]) -> dict[str, ModelSpec]:
        try:
            return {
                name: ModelSpec.from_create_model_request({"ModelName": name, **request})
                for name, request in models.items()
            }
        except ValueError as error:
            raise ValidationError(str(error)) from None

    def _start_worker(
        self,
        endpoint: _Endpoint,
        config: Mapping[str, Any],
        variants: list[_Variant],
        specs: dict[str, ModelSpec],
        rollout: RolloutPlan,
        *,
        update: bool,
    ) -> None:
        endpoint.generation += 1
        endpoint.wake.clear()
        directory = (
            self._work_dir / "endpoints" / endpoint.name / f"deployment-{endpoint.generation}"
        )
        injected = self._take_update_failure(endpoint.name) if update else None
        worker = threading.Thread(
            target=self._deploy,
            args=(
                endpoint,
                str(config["EndpointConfigName"]),
                variants,
                specs,
                directory,
                injected,
                rollout,
                self._clock(),
            ),
            name=f"endpoint-{endpoint.name}-{endpoint.generation}",
            daemon=True,
        )
        endpoint.worker = worker
        worker.start()

    def _take_update_failure(self, name: str) -> str | None:
        for key in (name, None):
            queue = self._update_failures.get(key)
            if queue:
                return queue.pop(0)
        return None

    def _deploy(
        self,
        endpoint: _Endpoint,
        config_name: str,
        variants: list[_Variant],
        specs: dict[str, ModelSpec],
        directory: Path,
        injected_failure: str | None,
        rollout: RolloutPlan,
        started: float,
    ) -> None:
        loaded: list[tuple[str, float, model_server.LoadedModel]] = []
        failure: str | None = None
        try:
            for variant in variants:
                stream = job_logs.StreamWriter(
                    self._logs, job_logs.ENDPOINTS_GROUP.format(endpoint=endpoint.name)
                )
                stream.start(job_logs.instance_stream(variant.name))
                model = model_server.load_model(
                    self._s3, specs[variant.model_name], directory / variant.name, stream
                )
                loaded.append((variant.name, variant.weight, model))
                if not model.ping():
                    failure = f"variant {variant.name}: the model did not answer /ping"
                    break
        except model_server.ModelLoadError as error:
            failure = str(error)
        except Exception as error:  # a bug in the runtime must not leave the endpoint Creating
            failure = f"InternalServerError: {type(error).__name__}: {error}"
        if failure is None and injected_failure is not None:
            failure = injected_failure
        new = Deployment(loaded, config_name)
        with endpoint.lock:
            if endpoint.deleted:
                retired: Deployment | None = new
            elif failure is not None:
                retired = new
                endpoint.failure_reason = failure
                endpoint.status = IN_SERVICE if endpoint.deployment is not None else FAILED
                endpoint.phase(ROLLED_BACK, 0.0, self._now())
                self._settle(endpoint)
            elif endpoint.deployment is None:  # CreateEndpoint: nothing to shift from
                retired = None
                endpoint.deployment = endpoint.traffic = new
                endpoint.config_name = config_name
                endpoint.variants = variants
                endpoint.images = {v.name: specs[v.model_name].image for v in variants}
                endpoint.failure_reason = None
                endpoint.status = IN_SERVICE
                self._settle(endpoint)
            else:
                retired = None
                endpoint.green = new
        if retired is not None:
            retired.unload()
        if endpoint.green is new:
            self._roll_out(endpoint, new, variants, specs, rollout, started)

    def _roll_out(
        self,
        endpoint: _Endpoint,
        green: Deployment,
        variants: list[_Variant],
        specs: dict[str, ModelSpec],
        rollout: RolloutPlan,
        started: float,
    ) -> None:
        """Shift traffic to ``green`` step by step, bake, then finish or roll back."""
        blue = endpoint.deployment
        assert blue is not None
        split = TrafficSplit(blue, green, 0.0)
        reason: str | None = None
        try:
            last = len(rollout.shares) - 1
            for step, share in enumerate(rollout.shares):
                with endpoint.lock:
                    if endpoint.deleted:
                        raise _Deleted
                    split.set_share(share)
                    endpoint.traffic = split
                    endpoint.phase(SHIFTING, share, self._now())
                reason = self._watch(
                    endpoint, rollout, rollout.wait_seconds if step < last else 0.0, started
                )
                if reason is not None:
                    break
            if reason is None:
                with endpoint.lock:
                    endpoint.phase(BAKING, 1.0, self._now())
                reason = self._watch(endpoint, rollout, rollout.baking_seconds, started)
        except _Deleted:
            return  # _dispose unloaded both deployments
        except Exception as error:  # a bug (or a failing alarm source) must not strand it
            reason = f"InternalServerError: {type(error).__name__}: {error}"
        if reason is None:
            self._complete(endpoint, green, variants, specs)
        else:
            self._roll_back(endpoint, blue, green, reason)

    def _watch(
        self, endpoint: _Endpoint, rollout: RolloutPlan, seconds: float, started: float
    ) -> str | None:
        """Hold the current step ``seconds``, checking the alarms and the timeout every poll;
        returns the rollback reason, if any."""
        deadline = self._clock() + seconds
        config_name = str(endpoint.pending_config)
        while True:
            if endpoint.deleted:
                raise _Deleted
            tripped = alarms_in_alarm(rollout.alarms, self._alarm_state)
            if tripped:
                return alarm_rollback_reason(tripped, config_name)
            now = self._clock()
            if rollout.timeout_seconds is not None and now - started > rollout.timeout_seconds:
                return timeout_rollback_reason(rollout.timeout_seconds, config_name)
            remaining = deadline - now
            if remaining <= 0:
                return None
            if rollout.timeout_seconds is not None:
                remaining = min(remaining, started + rollout.timeout_seconds - now + 1e-3)
            endpoint.wake.wait(max(min(self._settings.poll_interval_seconds, remaining), 1e-3))

    def _complete(
        self,
        endpoint: _Endpoint,
        green: Deployment,
        variants: list[_Variant],
        specs: dict[str, ModelSpec],
    ) -> None:
        with endpoint.lock:
            if endpoint.deleted:
                return
            retired = endpoint.deployment
            endpoint.deployment = endpoint.traffic = green  # the router reads this attribute
            endpoint.green = None
            endpoint.config_name = str(green.config_name)
            endpoint.variants = variants
            endpoint.images = {v.name: specs[v.model_name].image for v in variants}
            endpoint.failure_reason = None
            endpoint.status = IN_SERVICE
            endpoint.phase(COMPLETED, 1.0, self._now())
            self._settle(endpoint)
        if retired is not None:
            retired.unload()

    def _roll_back(
        self, endpoint: _Endpoint, blue: Deployment, green: Deployment, reason: str
    ) -> None:
        with endpoint.lock:
            if endpoint.deleted:
                return
            endpoint.status = ROLLING_BACK
            endpoint.traffic = blue  # all traffic back at once
            endpoint.green = None
            endpoint.last_modified = self._now()
            endpoint.phase(ROLLING_BACK, 0.0, endpoint.last_modified)
        green.unload()
        with endpoint.lock:
            if endpoint.deleted:
                return
            endpoint.status = IN_SERVICE
            endpoint.failure_reason = reason
            endpoint.phase(ROLLED_BACK, 0.0, self._now())
            self._settle(endpoint)

    def _settle(self, endpoint: _Endpoint) -> None:
        """The update (or creation) is over: no pending deployment (``lock`` held)."""
        endpoint.pending_config = None
        endpoint.pending_since = None
        endpoint.pending_variants = []
        endpoint.pending_images = {}
        endpoint.last_modified = self._now()

    def _dispose(self, endpoint: _Endpoint) -> None:
        with endpoint.lock:
            endpoint.deleted = True
            deployments = [endpoint.deployment, endpoint.green]
            endpoint.deployment = endpoint.green = endpoint.traffic = None
        endpoint.wake.set()
        endpoint.server.close()
        for deployment in deployments:
            if deployment is not None:
                deployment.unload()
        worker = endpoint.worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=self._settings.close_grace_seconds)
        shutil.rmtree(self._work_dir / "endpoints" / endpoint.name, ignore_errors=True)
