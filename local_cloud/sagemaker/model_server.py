"""Serving a SageMaker model in this process: loading it, invoking it, and an HTTP front.

Loading (:func:`load_model`) follows the framework containers' script mode: download the
CreateModel request's ``ModelDataUrl`` (``model.tar.gz``) and extract it into a model dir;
download and extract ``SAGEMAKER_SUBMIT_DIRECTORY`` (an ``s3://`` sourcedir.tar.gz, or a
container path such as ``/opt/ml/model/code`` inside the model) into a code dir; import
``SAGEMAKER_PROGRAM`` from there under a unique module name (two models with an
``inference.py`` each never share a module); call ``model_fn(model_dir)``.

Invoking (:meth:`LoadedModel.invoke`) is the ``/invocations`` contract, used both by the HTTP
server and in-process by batch transform, so both answer alike: a body larger than 6 MiB is a
413, a response larger than 6 MiB a 500; everything else follows the XGBoost image's serving
toolkit (:mod:`.serving_toolkit`, with the source of each rule): the request's defaults, the
handlers, and its statuses — any exception in a handler is a 500, only a returned response
object answers another status.

The 60 s per-request limit of SageMaker is not enforced (a Python call in a thread cannot be
interrupted).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import importlib.util
import itertools
import json
import logging
import random
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from . import job_logs, s3io, serving_toolkit

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
CONTAINER_MODEL_DIR = PurePosixPath("/opt/ml/model")
TARGET_VARIANT_HEADER = "X-Amzn-SageMaker-Target-Variant"
INVOKED_VARIANT_HEADER = "X-Amzn-Invoked-Production-Variant"
# Local only (SageMaker has no such header): the endpoint config whose deployment answered, so a
# test can tell the blue from the green fleet during a traffic shift.
LOCAL_CONFIG_HEADER = "X-Local-Endpoint-Config"
_module_numbers = itertools.count(1)


class ModelLoadError(Exception):
    """The model could not be fetched, imported or loaded; the message is the FailureReason."""


@dataclass(frozen=True)
class ModelSpec:
    """What serving needs from a CreateModel request (``PrimaryContainer`` or ``Containers[0]``)."""

    name: str
    image: str
    model_data_url: str | None
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_create_model_request(cls, request: Mapping[str, Any]) -> ModelSpec:
        definition = request.get("PrimaryContainer") or (request.get("Containers") or [None])[0]
        if not definition:
            raise ValueError(f"model {request.get('ModelName')}: no PrimaryContainer")
        return cls(
            name=str(request.get("ModelName", "")),
            image=str(definition.get("Image", "")),
            model_data_url=definition.get("ModelDataUrl"),
            environment={str(k): str(v) for k, v in (definition.get("Environment") or {}).items()},
        )

    @property
    def program(self) -> str | None:
        return self.environment.get("SAGEMAKER_PROGRAM")

    @property
    def submit_directory(self) -> str | None:
        return self.environment.get("SAGEMAKER_SUBMIT_DIRECTORY")


class InvocationResult(NamedTuple):
    """``(status, body, content_type)`` of one invocation."""

    status: int
    body: bytes
    content_type: str

    @property
    def ok(self) -> bool:
        return self.status == 200


class LoadedModel:
    """A model loaded through its script's handlers; :meth:`invoke` is thread-safe as long as
    the script's handlers are."""

    def __init__(
        self,
        spec: ModelSpec,
        module: ModuleType,
        model: Any,
        model_dir: Path,
        code_dir: Path,
        log_stream: job_logs.StreamWriter | None = None,
    ) -> None:
        self.spec = spec
        self._log_stream = log_stream
        self.module = module
        self.model = model
        self.model_dir = model_dir
        self.code_dir = code_dir
        self._loaded = True

    def ping(self) -> bool:
        return self._loaded

    def unload(self) -> None:
        """Forget the module (in-flight requests keep their references and finish)."""
        self._loaded = False
        sys.modules.pop(self.module.__name__, None)

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> InvocationResult:
        if len(body) > MAX_PAYLOAD_BYTES:
            return _error(413, f"payload of {len(body)} bytes exceeds {MAX_PAYLOAD_BYTES} bytes")
        content, content_type, accept = serving_toolkit.request_values(
            body, content_type, accept, self.spec.environment
        )
        try:
            result = serving_toolkit.transform(
                self.module, self.model, content, content_type, accept, _DEFAULT_HANDLERS
            )
            status, response, response_type = serving_toolkit.response(result)
        except Exception:
            # As in the image: the traceback goes to the endpoint's log, the client gets a 500.
            log.warning("model %s: exception on /invocations", self.spec.name, exc_info=True)
            if self._log_stream is not None:
                self._log_stream.lines(
                    f"Exception on /invocations [POST]\n{traceback.format_exc()}"
                )
            return InvocationResult(*serving_toolkit.internal_server_error())
        if len(response) > MAX_PAYLOAD_BYTES:
            return _error(500, f"response of {len(response)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        return InvocationResult(status, response, response_type)


def _message(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _error(status: int, message: str) -> InvocationResult:
    body = json.dumps({"code": status, "message": message}).encode()
    return InvocationResult(status, body, "application/json")


# --- Default handlers (for scripts that only define model_fn) ----------------------------
# Simpler than the image's (which decode into a DMatrix): JSON or CSV in, ``model.predict`` or
# ``model(data)``, JSON or CSV out; like the image's, any failure is a 500.


def _default_input_fn(body: bytes | str, content_type: str) -> Any:
    media_type = content_type.split(";", 1)[0].strip().lower()
    text = body if isinstance(body, str) else body.decode("utf-8")
    if media_type == "application/json":
        return json.loads(text)
    if media_type == "text/csv":
        return [[float(v) for v in line.split(",")] for line in text.splitlines() if line.strip()]
    raise ValueError(f"Content type {content_type} is not supported by this framework")


def _default_predict_fn(data: Any, model: Any) -> Any:
    if hasattr(model, "predict"):
        return model.predict(data)
    if callable(model):
        return model(data)
    raise TypeError("the model has no predict() and is not callable: define predict_fn")


def _default_output_fn(prediction: Any, accept: str) -> tuple[str, str]:
    media_type = accept.split(";", 1)[0].strip().lower()
    if hasattr(prediction, "tolist"):
        prediction = prediction.tolist()
    if media_type == "text/csv":
        rows = prediction if isinstance(prediction, list) else [prediction]
        lines = (",".join(map(str, r)) if isinstance(r, list) else str(r) for r in rows)
        return "\n".join(lines), "text/csv"
    if media_type == "application/json":
        return json.dumps(prediction), "application/json"
    raise ValueError(f"Content type {accept} is not supported by this framework")


_DEFAULT_HANDLERS = {
    "input_fn": _default_input_fn,
    "predict_fn": _default_predict_fn,
    "output_fn": _default_output_fn,
}


# --- Loading ---------------------------------------------------------------------------


def load_model(
    s3: S3Client, spec: ModelSpec, directory: Path, log_stream: job_logs.StreamWriter | None = None
) -> LoadedModel:
    """Fetch, import and load ``spec`` under ``directory`` (``model/``, ``code/``); what happens
    goes to ``log_stream`` too (the endpoint's or transform job's CloudWatch stream).

    Raises :class:`ModelLoadError` with a FailureReason-style message.
    """
    if log_stream is not None:
        log_stream.lines(f"loading model {spec.name} ({spec.program}, image {spec.image})")
    try:
        return _load_model(s3, spec, directory, log_stream)
    except ModelLoadError as error:
        if log_stream is not None:
            log_stream.lines(str(error))
        raise


def _load_model(
    s3: S3Client, spec: ModelSpec, directory: Path, log_stream: job_logs.StreamWriter | None
) -> LoadedModel:
    model_dir = directory / "model"
    code_dir = directory / "code"
    scratch = directory / "downloads"
    for path in (model_dir, code_dir, scratch):
        path.mkdir(parents=True, exist_ok=True)
    try:
        if spec.model_data_url:
            if spec.model_data_url.endswith(".tar.gz"):
                s3io.download_and_extract(s3, spec.model_data_url, model_dir, scratch)
            else:
                objects = s3io.list_prefix(s3, s3io.S3Location.parse(spec.model_data_url).folder())
                s3io.download_objects(s3, objects, model_dir)
        code_dir = _fetch_code(s3, spec, model_dir, code_dir, scratch)
    except Exception as error:
        raise ModelLoadError(
            f"ClientError: could not download the artifacts of model {spec.name}: {_message(error)}"
        ) from error
    program = spec.program
    if not program:
        raise ModelLoadError(f"model {spec.name}: environment SAGEMAKER_PROGRAM is not set")
    script = code_dir / s3io.safe_relative_path(program)
    if not script.is_file():
        raise ModelLoadError(f"model {spec.name}: {program} not found in the submit directory")
    module = _import(script, code_dir)
    problem = serving_toolkit.load_problem(module)
    if problem is not None:
        sys.modules.pop(module.__name__, None)
        raise ModelLoadError(f"model {spec.name}: {program} {problem}")
    try:
        model = module.model_fn(str(model_dir))
    except Exception as error:
        sys.modules.pop(module.__name__, None)
        raise ModelLoadError(f"model {spec.name}: model_fn failed: {_message(error)}") from error
    return LoadedModel(spec, module, model, model_dir, code_dir, log_stream)


def _fetch_code(
    s3: S3Client, spec: ModelSpec, model_dir: Path, code_dir: Path, scratch: Path
) -> Path:
    submit = spec.submit_directory
    if submit and submit.startswith("s3://"):
        s3io.download_and_extract(s3, submit, code_dir, scratch)
        return code_dir
    if submit:
        container_path = PurePosixPath(submit)
        if container_path.is_relative_to(CONTAINER_MODEL_DIR):
            return model_dir.joinpath(*container_path.relative_to(CONTAINER_MODEL_DIR).parts)
        raise ValueError(f"SAGEMAKER_SUBMIT_DIRECTORY {submit!r} is neither s3:// nor in the model")
    return model_dir / "code"


def _import(script: Path, code_dir: Path) -> ModuleType:
    """Import ``script`` as a fresh module; its directory is on ``sys.path`` only meanwhile."""
    name = f"local_sagemaker_model_{next(_module_numbers)}_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(code_dir))
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise ModelLoadError(f"importing {script.name} failed: {_message(error)}") from error
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(code_dir))
    return module


# --- HTTP ------------------------------------------------------------------------------


class Route(NamedTuple):
    """Who answers one request: the variant, its model, and (when known) the endpoint config
    whose deployment it belongs to."""

    variant: str
    model: LoadedModel
    config_name: str | None = None


Router = Callable[[str | None], "Route | None"]


@dataclass
class Deployment:
    """The variants an endpoint serves at one time: ``(variant name, weight, model)``, from the
    endpoint config ``config_name``."""

    variants: list[tuple[str, float, LoadedModel]]
    config_name: str | None = None

    def route(self, target_variant: str | None) -> Route | None:
        if target_variant:
            for name, _, model in self.variants:
                if name == target_variant:
                    return Route(name, model, self.config_name)
            return None
        weighted = [(name, weight, model) for name, weight, model in self.variants if weight > 0]
        candidates = weighted or self.variants
        if not candidates:
            return None
        total = sum(weight for _, weight, _ in candidates) if weighted else len(candidates)
        pick = random.uniform(0, total)
        for name, weight, model in candidates:
            pick -= weight if weighted else 1
            if pick <= 0:
                return Route(name, model, self.config_name)
        name, _, model = candidates[-1]
        return Route(name, model, self.config_name)

    def unload(self) -> None:
        for _, _, model in self.variants:
            model.unload()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    router: Router
    healthy: Callable[[], bool]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "LocalSageMaker"
    # Keep-alive, as SageMaker endpoints and the SDKs' connection pools do: every reply carries a
    # Content-Length and every request body is read or discarded, so connections stay usable.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm holds the
    # body until the client's delayed ACK (~40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/ping":
            self._reply(_error(404, f"no route {self.path}"))
            return
        healthy = self.server.healthy()
        self._reply(InvocationResult(200 if healthy else 503, b"", "text/plain"))

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/invocations":
            self._discard_body()
            self._reply(_error(404, f"no route {self.path}"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            self._discard_body()
            self._reply(_error(413, f"payload of {length} bytes exceeds {MAX_PAYLOAD_BYTES}"))
            return
        body = self.rfile.read(length) if length else b""
        routed = self.server.router(self.headers.get(TARGET_VARIANT_HEADER))
        if routed is None:
            self._reply(_error(503, "the endpoint has no model in service"))
            return
        result = routed.model.invoke(
            body, self.headers.get("Content-Type"), self.headers.get("Accept")
        )
        self._reply(result, routed.variant, routed.config_name)

    def _discard_body(self) -> None:
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def _reply(
        self, result: InvocationResult, variant: str | None = None, config_name: str | None = None
    ) -> None:
        self.send_response(result.status)
        self.send_header("Content-Type", result.content_type)
        self.send_header("Content-Length", str(len(result.body)))
        if variant:
            self.send_header(INVOKED_VARIANT_HEADER, variant)
        if config_name:
            self.send_header(LOCAL_CONFIG_HEADER, config_name)
        self.end_headers()
        self.wfile.write(result.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ModelServer:
    """``GET /ping`` and ``POST /invocations`` on ``host``:ephemeral port, in daemon threads.

    ``router(target_variant)`` names the model that serves a request (None: nothing in
    service → 503); swapping what it returns switches traffic atomically. ``healthy()`` answers
    ``/ping`` (default: the router names a loaded model; a router that counts requests should
    pass its own, so health checks do not count). ``/invocations``
    replies carry ``X-Amzn-Invoked-Production-Variant`` (the variant) and, local only,
    ``X-Local-Endpoint-Config`` (the endpoint config of the deployment that answered).
    """

    def __init__(
        self,
        router: Router,
        host: str = "127.0.0.1",
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.router = router
        self._server.healthy = healthy or (lambda: _routes_to_a_live_model(router))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"model-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _routes_to_a_live_model(router: Router) -> bool:
    routed = router(None)
    return routed is not None and routed.model.ping()


def http_invoke(
    host: str,
    port: int,
    body: bytes,
    content_type: str | None,
    accept: str | None,
    target_variant: str | None = None,
    timeout: float = 60.0,
) -> InvocationResult:
    """POST ``body`` to ``/invocations`` (a plain client: no proxies, no retries)."""
    headers = {"Content-Length": str(len(body))}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    if target_variant:
        headers[TARGET_VARIANT_HEADER] = target_variant
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        return InvocationResult(
            response.status,
            response.read(),
            response.getheader("Content-Type") or "application/octet-stream",
        )
    finally:
        connection.close()


def http_ping(host: str, port: int, timeout: float = 2.0) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/ping")
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()
