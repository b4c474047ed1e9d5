"""Batch transform jobs, served in process through the same model code as endpoints.

For each input object (``S3Prefix`` listing order, or the ``ManifestFile`` order):

- ``SplitType=None``: the whole object is one request (it must fit ``MaxPayloadInMB``);
- ``SplitType=Line``: records are non-blank lines; ``BatchStrategy=SingleRecord`` sends one line
  (without its terminator) per request, ``MultiRecord`` packs consecutive lines (each with its
  ``\\n``) into requests of at most ``MaxPayloadInMB`` (default 6); one line larger than that
  fails the object;
- responses are assembled in order: ``AssembleWith=None`` concatenates them, ``Line`` ends each
  with exactly one newline;
- the result goes to ``<S3OutputPath>/<name relative to the input prefix>.out``.

An object whose request fails (non-200) produces no output; the other objects still run, and
the job ends ``Failed`` with a FailureReason naming the failed objects. ``StopTransformJob``
takes effect between requests. The model's container ``Environment`` plus the request's
``Environment`` and ``SAGEMAKER_BATCH``/``SAGEMAKER_MAX_PAYLOAD_IN_MB``/
``SAGEMAKER_BATCH_STRATEGY`` are recorded on the loaded model's spec (in-process serving cannot
give one model its own ``os.environ``).
"""

from __future__ import annotations

import contextlib
import copy
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    BotoCoreError,
    ClientError,
)

from . import job_logs, model_server, s3io
from .errors import ResourceInUse, ResourceNotFound, ValidationError
from .model_server import LoadedModel, ModelSpec
from .settings import RuntimeSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MIB = 1024 * 1024
IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"
STOPPING = "Stopping"
STOPPED = "Stopped"
FAILURE_REASON_MAX = 1024


class _ObjectFailed(Exception):
    pass


def validate_request(request: Mapping[str, Any]) -> None:
    name = request.get("TransformJobName")
    if not isinstance(name, str) or not JOB_NAME.match(name):
        raise ValidationError(f"TransformJobName {name!r} must match [a-zA-Z0-9](-*[a-zA-Z0-9])*")
    transform_input = request.get("TransformInput") or {}
    source = transform_input.get("DataSource", {}).get("S3DataSource") or {}
    if source.get("S3DataType") not in ("S3Prefix", "ManifestFile"):
        raise ValidationError("TransformInput S3DataType must be S3Prefix or ManifestFile")
    _location(source.get("S3Uri"), "TransformInput S3Uri")
    _location(
        (request.get("TransformOutput") or {}).get("S3OutputPath"), "TransformOutput.S3OutputPath"
    )
    if transform_input.get("SplitType", "None") not in ("None", "Line"):
        raise ValidationError("SplitType must be None or Line (RecordIO/TFRecord unsupported)")
    if transform_input.get("CompressionType", "None") != "None":
        raise ValidationError("CompressionType must be None")
    if (request.get("TransformOutput") or {}).get("AssembleWith", "None") not in ("None", "Line"):
        raise ValidationError("AssembleWith must be None or Line")
    if request.get("BatchStrategy", "MultiRecord") not in ("SingleRecord", "MultiRecord"):
        raise ValidationError("BatchStrategy must be SingleRecord or MultiRecord")
    payload = request.get("MaxPayloadInMB", 6)
    if not isinstance(payload, int) or not 0 <= payload <= 100:
        raise ValidationError("MaxPayloadInMB must be an integer from 0 to 100")


def _location(value: Any, what: str) -> s3io.S3Location:
    try:
        return s3io.S3Location.parse(str(value))
    except ValueError:
        raise ValidationError(f"{what} must be an s3:// URI, got {value!r}") from None


def batch_environment(request: Mapping[str, Any], spec: ModelSpec) -> dict[str, str]:
    """The container environment of a transform job's model."""
    env = dict(spec.environment)
    env.update({str(k): str(v) for k, v in (request.get("Environment") or {}).items()})
    env.update(
        {
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(request.get("MaxPayloadInMB", 6)),
            "SAGEMAKER_BATCH_STRATEGY": str(request.get("BatchStrategy", "MultiRecord")).upper(),
        }
    )
    return env


def split_lines(body: bytes) -> list[bytes]:
    """Records of a ``SplitType=Line`` object, each without its line terminator; blank
    lines are skipped (they are no records)."""
    return [line for line in body.splitlines() if line.strip()]


def pack_records(records: list[bytes], limit: int) -> Iterator[bytes]:
    """Consecutive records, each ending in ``\\n``, in payloads of at most ``limit`` bytes."""
    batch: list[bytes] = []
    size = 0
    for record in records:
        line = record + b"\n"
        if len(line) > limit:
            raise _ObjectFailed(f"a record of {len(line)} bytes exceeds MaxPayloadInMB")
        if batch and size + len(line) > limit:
            yield b"".join(batch)
            batch, size = [], 0
        batch.append(line)
        size += len(line)
    if batch:
        yield b"".join(batch)


def assemble(responses: list[bytes], assemble_with: str) -> bytes:
    if assemble_with != "Line":
        return b"".join(responses)
    parts = []
    for response in responses:
        if response.endswith(b"\r\n"):
            response = response[:-2]
        elif response.endswith(b"\n"):
            response = response[:-1]
        parts.append(response + b"\n")
    return b"".join(parts)


class TransformJob:
    """One transform job and the thread that runs it."""

    def __init__(
        self,
        request: Mapping[str, Any],
        model: Mapping[str, Any],
        s3: S3Client,
        job_dir: Path,
        settings: RuntimeSettings,
        now: Callable[[], datetime],
        logs: job_logs.CloudWatchLogs | None = None,
    ) -> None:
        self.request = copy.deepcopy(dict(request))
        self.name: str = str(request["TransformJobName"])
        model_name = str(request.get("ModelName") or model.get("ModelName") or "")
        base_spec = ModelSpec.from_create_model_request({"ModelName": model_name, **model})
        self._spec = ModelSpec(
            base_spec.name,
            base_spec.image,
            base_spec.model_data_url,
            batch_environment(request, base_spec),
        )
        self._s3 = s3
        self._job_dir = job_dir
        self._settings = settings
        self._now = now
        self._log_stream = job_logs.StreamWriter(logs, job_logs.TRANSFORM_JOBS_GROUP)
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        created = now()
        self._status = IN_PROGRESS
        self._creation_time = created
        self._start_time = created
        self._end_time: datetime | None = None
        self._failure_reason: str | None = None
        self._outputs: list[str] = []
        self._failed_objects: list[str] = []
        self._thread = threading.Thread(
            target=self._run, name=f"transform-{self.name}", daemon=True
        )

    def start(self) -> None:
        shutil.rmtree(self._job_dir, ignore_errors=True)  # a reused work_dir: start from nothing
        self._thread.start()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            description: dict[str, Any] = {
                "TransformJobName": self.name,
                "TransformJobStatus": self._status,
                "ModelName": self._spec.name,
                "CreationTime": self._creation_time,
                "TransformStartTime": self._start_time,
                "TransformInput": copy.deepcopy(self.request.get("TransformInput")),
                "TransformOutput": copy.deepcopy(self.request.get("TransformOutput")),
                "BatchStrategy": self.request.get("BatchStrategy", "MultiRecord"),
                "MaxPayloadInMB": self.request.get("MaxPayloadInMB", 6),
                "LocalRuntime": {
                    "Outputs": list(self._outputs),
                    "FailedObjects": list(self._failed_objects),
                    "JobDirectory": str(self._job_dir),
                },
            }
            if self._end_time is not None:
                description["TransformEndTime"] = self._end_time
            if self._failure_reason is not None:
                description["FailureReason"] = self._failure_reason
            return description

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def stop(self) -> None:
        with self._lock:
            if self._status != IN_PROGRESS:
                raise ValidationError(f"transform job {self.name} is in status {self._status}")
            self._status = STOPPING
        self._stop_requested.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        model: LoadedModel | None = None
        try:
            self._log_stream.start(job_logs.instance_stream(self.name))
            model = model_server.load_model(
                self._s3, self._spec, self._job_dir / "model", self._log_stream
            )
            self._transform_all(model)
        except model_server.ModelLoadError as error:
            self._end(FAILED, str(error))
        except (ClientError, BotoCoreError, ValueError, OSError) as error:
            self._end(FAILED, f"ClientError: {error}")
        except Exception as error:  # never leave the job InProgress
            self._end(FAILED, f"InternalServerError: {type(error).__name__}: {error}")
        finally:
            if model is not None:
                model.unload()

    def _transform_all(self, model: LoadedModel) -> None:
        transform_input = self.request["TransformInput"]
        source = transform_input["DataSource"]["S3DataSource"]
        objects = s3io.resolve_objects(self._s3, source["S3Uri"], source["S3DataType"])
        output = s3io.S3Location.parse(self.request["TransformOutput"]["S3OutputPath"])
        failures: list[str] = []
        for obj in objects:
            if self._stop_requested.is_set():
                self._end(STOPPED, None)
                return
            try:
                body = self._transform_object(model, s3io.get_bytes(self._s3, obj.location))
            except _ObjectFailed as error:
                failures.append(f"{obj.location}: {error}")
                self._log_stream.lines(f"{obj.location}: {error}")
                with self._lock:
                    self._failed_objects.append(str(obj.location))
                continue
            if body is None:  # stopped midway: no partial output
                self._end(STOPPED, None)
                return
            target = output.join(obj.relative_name + ".out")
            s3io.put_bytes(self._s3, target, body, self.request["TransformOutput"].get("Accept"))
            with self._lock:
                self._outputs.append(str(target))
        if failures:
            reason = f"ClientError: {len(failures)} of {len(objects)} objects failed: " + "; ".join(
                failures
            )
            self._end(FAILED, reason)
        else:
            self._end(COMPLETED, None)

    def _transform_object(self, model: LoadedModel, body: bytes) -> bytes | None:
        transform_input = self.request["TransformInput"]
        limit = int(self.request.get("MaxPayloadInMB", 6)) * MIB or model_server.MAX_PAYLOAD_BYTES
        if transform_input.get("SplitType", "None") == "Line":
            records = split_lines(body)
            if self.request.get("BatchStrategy", "MultiRecord") == "SingleRecord":
                payloads: Iterator[bytes] = iter(records)
            else:
                payloads = pack_records(records, limit)
        else:
            if len(body) > limit:
                raise _ObjectFailed(f"object of {len(body)} bytes exceeds MaxPayloadInMB")
            payloads = iter([body])
        responses: list[bytes] = []
        content_type = transform_input.get("ContentType")
        accept = self.request.get("TransformOutput", {}).get("Accept")
        for payload in payloads:
            if self._stop_requested.is_set():
                return None
            result = model.invoke(payload, content_type, accept)
            if not result.ok:
                message = result.body.decode("utf-8", errors="replace")
                if result.content_type.startswith("text/html"):  # Flask's error page
                    message = f"see the job's log stream in {job_logs.TRANSFORM_JOBS_GROUP}"
                raise _ObjectFailed(f"model answered {result.status}: {message}")
            responses.append(result.body)
        return assemble(
            responses, self.request.get("TransformOutput", {}).get("AssembleWith", "None")
        )

    def _end(self, status: str, reason: str | None) -> None:
        with self._lock:
            self._status = status
            self._end_time = self._now()
            if reason is not None:
                self._failure_reason = reason[:FAILURE_REASON_MAX]


class TransformJobs:
    """All transform jobs of one runtime."""

    def __init__(
        self,
        s3: S3Client,
        work_dir: Path,
        settings: RuntimeSettings,
        now: Callable[[], datetime],
        logs: job_logs.CloudWatchLogs | None = None,
    ) -> None:
        self._s3 = s3
        self._work_dir = work_dir
        self._settings = settings
        self._now = now
        self._logs = logs
        self._lock = threading.Lock()
        self._jobs: dict[str, TransformJob] = {}
        self._closed = False

    def start(self, request: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
        validate_request(request)
        name = str(request["TransformJobName"])
        try:
            job = TransformJob(
                request,
                model,
                self._s3,
                self._work_dir / "transform-jobs" / name,
                self._settings,
                self._now,
                self._logs,
            )
        except ValueError as error:
            raise ValidationError(str(error)) from None
        with self._lock:
            if self._closed:
                raise ValidationError("the local SageMaker runtime is closed")
            if name in self._jobs:
                raise ResourceInUse(f"Transform job names must be unique: {name} already exists")
            self._jobs[name] = job
        description = job.describe()  # before the thread can move on
        job.start()
        return description

    def get(self, name: str) -> TransformJob:
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            raise ResourceNotFound(f"Could not find transform job {name}")
        return job

    def names(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.status == IN_PROGRESS:
                with contextlib.suppress(ValidationError):
                    job.stop()
        for job in jobs:
            job.join(timeout=self._settings.close_grace_seconds + 10)
