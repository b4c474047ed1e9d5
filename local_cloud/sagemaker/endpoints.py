"""Endpoints: a real HTTP server per endpoint, serving its current deployment.

Each endpoint gets one :class:`~local_cloud.sagemaker.model_server.ModelServer` on
``127.0.0.1:<ephemeral port>`` for its whole life, so its address never changes (as a real
endpoint's URL does not). What the server answers with is the endpoint's current *deployment*:
the models of one endpoint config's production variants, loaded in this process.

- Create: ``Creating`` while the models load on a background thread (``/ping`` answers 503),
  then ``InService``; ``Failed`` with a FailureReason when a model cannot load.
- Update (blue/green, all at once): ``Updating`` while the new config's models load; the old
  deployment keeps answering; when every new model loaded and answers ping, the router swaps to
  the new deployment atomically and the old one is unloaded. A failed update (a model that does
  not load, or an injected failure) leaves the endpoint ``InService`` on the OLD config with
  ``FailureReason`` set, as SageMaker does.
- Delete: the server stops at once; a load still running is discarded when it ends.

Deployment files live under ``<work_dir>/endpoints/<name>/deployment-<n>/<variant>/``.
"""

from __future__ import annotations

import copy
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import model_server
from .errors import ResourceNotFound, ValidationError
from .model_server import Deployment, InvocationResult, LoadedModel, ModelServer, ModelSpec
from .settings import RuntimeSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
CREATING = "Creating"
UPDATING = "Updating"
IN_SERVICE = "InService"
FAILED = "Failed"
DEFAULT_UPDATE_FAILURE = "Update failed: the new production variant did not pass health checks"


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
        self.deployment: Deployment | None = None
        self.pending_config: str | None = None
        self.pending_since: datetime | None = None
        self.generation = 0
        self.deleted = False
        self.worker: threading.Thread | None = None

    def route(self, target_variant: str | None) -> tuple[str, LoadedModel] | None:
        deployment = self.deployment  # one read: a request sees the old or the new, never a mix
        return deployment.route(target_variant) if deployment is not None else None


class Endpoints:
    """All endpoints of one runtime."""

    def __init__(
        self,
        s3: S3Client,
        work_dir: Path,
        settings: RuntimeSettings,
        now: Callable[[], datetime],
    ) -> None:
        self._s3 = s3
        self._work_dir = work_dir
        self._settings = settings
        self._now = now
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
            server = ModelServer(lambda variant: holder[0].route(variant), self._settings.host)
            endpoint = _Endpoint(name, server, config, self._now())
            holder.append(endpoint)
            endpoint.variants = variants
            self._endpoints[name] = endpoint
            self._start_worker(endpoint, config, variants, specs, update=False)
        return self.describe(name)

    def update(
        self,
        name: str,
        config: Mapping[str, Any],
        models: Mapping[str, Mapping[str, Any]],
    ) -> dict[str, Any]:
        variants = _variants(config, models)
        specs = self._specs(models)
        endpoint = self._get(name)
        with self._lock, endpoint.lock:
            if endpoint.status != IN_SERVICE:
                raise ValidationError(
                    f"Cannot update endpoint {name}: it is in status {endpoint.status}"
                )
            endpoint.status = UPDATING
            endpoint.pending_config = str(config["EndpointConfigName"])
            endpoint.pending_since = endpoint.last_modified = self._now()
            self._start_worker(endpoint, config, variants, specs, update=True)
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
            description: dict[str, Any] = {
                "EndpointName": endpoint.name,
                "EndpointConfigName": endpoint.config_name,
                "EndpointStatus": endpoint.status,
                "CreationTime": endpoint.creation_time,
                "LastModifiedTime": endpoint.last_modified,
                "LocalRuntime": {
                    "Url": f"http://{endpoint.server.host}:{endpoint.server.port}",
                    "Host": endpoint.server.host,
                    "Port": endpoint.server.port,
                },
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
        if status not in (IN_SERVICE, UPDATING):
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
        *,
        update: bool,
    ) -> None:
        endpoint.generation += 1
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
    ) -> None:
        loaded: list[tuple[str, float, LoadedModel]] = []
        failure: str | None = None
        try:
            for variant in variants:
                model = model_server.load_model(
                    self._s3, specs[variant.model_name], directory / variant.name
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
        new = Deployment(loaded)
        with endpoint.lock:
            if endpoint.deleted:
                retired: Deployment | None = new
            elif failure is not None:
                retired = new
                endpoint.failure_reason = failure
                endpoint.status = IN_SERVICE if endpoint.deployment is not None else FAILED
            else:
                retired = endpoint.deployment
                endpoint.deployment = new  # the atomic switch: the router reads this attribute
                endpoint.config_name = config_name
                endpoint.variants = variants
                endpoint.images = {v.name: specs[v.model_name].image for v in variants}
                endpoint.failure_reason = None
                endpoint.status = IN_SERVICE
            endpoint.pending_config = None
            endpoint.pending_since = None
            endpoint.last_modified = self._now()
        if retired is not None:
            retired.unload()

    def _dispose(self, endpoint: _Endpoint) -> None:
        with endpoint.lock:
            endpoint.deleted = True
            deployment, endpoint.deployment = endpoint.deployment, None
        endpoint.server.close()
        if deployment is not None:
            deployment.unload()
        worker = endpoint.worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=self._settings.close_grace_seconds)
        shutil.rmtree(self._work_dir / "endpoints" / endpoint.name, ignore_errors=True)
