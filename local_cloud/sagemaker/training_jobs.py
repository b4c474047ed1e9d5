"""Training jobs: a CreateTrainingJob request run as a local subprocess, the way SageMaker would.

One :class:`TrainingJob` per request, run on its own thread:

1. ``Starting``: for a managed-spot job, wait for "spot capacity" (``spot_capacity_delay``, or
   forever with the capacity-never-arrives injection, until ``MaxWaitTimeInSeconds``).
2. ``Downloading``: a fresh ``/opt/ml`` tree (:class:`.container.TrainingLayout`) under
   ``<work_dir>/training-jobs/<job>/attempt-<n>``; every channel (``S3Prefix`` or
   ``ManifestFile``), the checkpoints from ``CheckpointConfig.S3Uri``, and the sourcedir.
3. ``Training``: ``python <sagemaker_program> --hp value ...`` in the code dir (script mode),
   or the request's ``ContainerEntrypoint`` + ``ContainerArguments`` in a private mount
   namespace where the tree is ``/opt/ml`` (``unshare -m``, root on Linux; elsewhere the job
   fails saying so), with the runtime's python as ``python3`` first on PATH; in its own
   process group, output appended to ``<job>/training.log``; checkpoints synced to S3 every
   ``checkpoint_sync_interval_seconds``; limits, StopTrainingJob, injected spot interruptions
   and injected failures checked every ``poll_interval_seconds``. SIGTERM, then SIGKILL after
   the grace period; an injected failure SIGKILLs at once, as the kernel's OOM killer does, and
   the job ends ``Failed`` with the injected FailureReason.
4. A spot interruption goes ``Interrupted`` and back to 1 with a new attempt directory: the
   script finds the checkpoints re-downloaded from S3 and resumes.
5. ``Uploading``: ``model/`` → ``<S3OutputPath>/<job>/output/model.tar.gz``, ``output/data/`` →
   ``output.tar.gz`` (also after a stop or a limit, as SageMaker keeps what the script saved).

Time and billing model (all wall-clock, via the injected monotonic clock):

- ``TrainingTimeInSeconds`` = job start → end: capacity waits, downloads, every attempt,
  interruptions and uploads included (≥ 1).
- ``BillableTimeInSeconds``: on-demand = ``TrainingTimeInSeconds``; managed spot = the seconds
  the training process actually ran, summed over attempts, times ``spot_price_fraction``
  (capacity waits, downloads, uploads and restarts are not billed). So spot savings
  ``1 - billable / training`` grow with waiting and interruptions, and with the price fraction.
- ``MaxRuntimeInSeconds`` counts attempt time (downloading → process exit), not capacity waits;
  ``MaxWaitTimeInSeconds`` (spot) counts everything since the job started.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
    BotoCoreError,
    ClientError,
)

from . import container, job_logs, s3io
from .errors import ResourceInUse, ResourceNotFound, ValidationError
from .settings import RuntimeSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

log = logging.getLogger(__name__)

JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
RUNTIME_LOG_PREFIX = "[local-sagemaker]"

IN_PROGRESS = "InProgress"
COMPLETED = "Completed"
FAILED = "Failed"
STOPPING = "Stopping"
STOPPED = "Stopped"

MESSAGES = {
    "launching": "Launching requested ML instances",
    "spot_wait": "Waiting for spot capacity",
    "downloading": "Downloading input data",
    "training": "Training image download completed. Training in progress.",
    "uploading": "Uploading generated training model",
    "completed": "Training job completed",
    "failed": "Training job failed",
    "stopping": "Stopping the training job",
    "stopped": "Training job stopped",
    "max_runtime": "Training job runtime exceeded MaxRuntimeInSeconds provided",
    "max_wait": "Training job exceeded MaxWaitTimeInSeconds provided",
}
#: The FailureReason SageMaker gives a job whose instance ran out of memory.
OUT_OF_MEMORY_FAILURE = (
    "OutOfMemoryError: Please use an instance type with more memory, or reduce the size of "
    "job data processed on an instance."
)


class Outcome(Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    MAX_RUNTIME = "max_runtime"
    MAX_WAIT = "max_wait"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class SpotInterruption:
    """An armed interruption: fires once, ``after_checkpoints`` checkpoint files uploaded in the
    current attempt, or ``after_seconds`` into the attempt's ``Training`` phase."""

    after_checkpoints: int | None = None
    after_seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.after_checkpoints is None) == (self.after_seconds is None):
            raise ValidationError("give exactly one of after_checkpoints and after_seconds")
        if self.after_checkpoints is not None and self.after_checkpoints < 1:
            raise ValidationError("after_checkpoints must be at least 1")
        if self.after_seconds is not None and self.after_seconds < 0:
            raise ValidationError("after_seconds must not be negative")


@dataclass
class Injections:
    """Faults armed for one job."""

    interruptions: list[SpotInterruption] = field(default_factory=list)
    capacity_never_arrives: bool = False
    failure: str | None = None  # FailureReason of an injected failure during Training


@dataclass(frozen=True)
class _Result:
    outcome: Outcome
    failure_reason: str | None = None


@dataclass(frozen=True)
class _Metric:
    name: str
    pattern: re.Pattern[str]


class _JobLog:
    """The job's log file (all attempts), its tail, and metrics parsed from it as lines arrive."""

    def __init__(
        self,
        path: Path,
        metrics: list[_Metric],
        tail_lines: int,
        now: Callable[[], datetime],
        stream: job_logs.StreamWriter,
        job_name: str,
    ) -> None:
        self.path = path
        self._stream = stream
        self._job_name = job_name
        self._metrics = metrics
        self._now = now
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._values: dict[str, tuple[float, datetime]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def script_line(self, line: str) -> None:
        line = line.rstrip("\r\n")
        with self._lock:
            self._write(line)
            self._tail.append(line)
            self._stream.line(line)
            for metric in self._metrics:
                match = metric.pattern.search(line)
                if match is None:
                    continue
                text = match.group(1) if match.groups() else match.group(0)
                try:
                    value = float(text)
                except ValueError:
                    continue
                if math.isfinite(value):
                    self._values[metric.name] = (value, self._now())

    def note(self, message: str) -> None:
        with self._lock:
            self._write(f"{RUNTIME_LOG_PREFIX} {message}")

    def _write(self, line: str) -> None:
        if not self._file.closed:  # a straggling reader or a late note after the job ended
            self._file.write(line + "\n")
            self._file.flush()

    def tail(self) -> list[str]:
        with self._lock:
            return list(self._tail)

    def start_attempt(self) -> None:
        """A new container: an empty tail and a new CloudWatch stream."""
        with self._lock:
            self._tail.clear()
        self._stream.start(job_logs.training_stream(self._job_name, self._stream.stream))

    def final_metrics(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"MetricName": name, "Value": value, "Timestamp": when}
                for name, (value, when) in sorted(self._values.items())
            ]

    def flush_stream(self) -> None:
        """Send what CloudWatch has not got yet (the job polls this: a quiet script's last
        lines must not wait for its next one)."""
        self._stream.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
        self._stream.flush()


def _validate_script_mode(request: dict[str, Any]) -> None:
    program, submit_directory = container.script_mode_program(request)
    for required, value in (
        (container.PROGRAM_HYPERPARAMETER, program),
        (container.SUBMIT_DIRECTORY_HYPERPARAMETER, submit_directory),
    ):
        if not value:
            raise ValidationError(
                f"hyperparameter {required} is required: the local runtime runs script mode "
                "or AlgorithmSpecification.ContainerEntrypoint"
            )
    try:
        s3io.safe_relative_path(program)
    except ValueError as error:
        raise ValidationError(f"{container.PROGRAM_HYPERPARAMETER}: {error}") from None
    _s3_uri(submit_directory, container.SUBMIT_DIRECTORY_HYPERPARAMETER)


def validate_request(request: dict[str, Any]) -> None:
    """Reject what SageMaker (or this runtime: script mode or a ContainerEntrypoint) would
    reject, up front."""
    name = request.get("TrainingJobName")
    if not isinstance(name, str) or not JOB_NAME.match(name):
        raise ValidationError(
            f"TrainingJobName {name!r} must be 1-63 characters of [a-zA-Z0-9](-*[a-zA-Z0-9])*"
        )
    algorithm = request.get("AlgorithmSpecification") or {}
    for field_name in ("ContainerEntrypoint", "ContainerArguments"):
        values = algorithm.get(field_name)
        if values is not None and (
            not isinstance(values, list)
            or not 1 <= len(values) <= 100
            or not all(isinstance(v, str) and 1 <= len(v) <= 256 for v in values)
        ):
            raise ValidationError(
                f"AlgorithmSpecification.{field_name} must be 1-100 strings of 1-256 characters"
            )
    if container.container_command(request) is None:
        _validate_script_mode(request)
    _s3_uri(
        request.get("OutputDataConfig", {}).get("S3OutputPath"), "OutputDataConfig.S3OutputPath"
    )
    seen: set[str] = set()
    for channel in request.get("InputDataConfig") or []:
        channel_name = channel.get("ChannelName")
        if not isinstance(channel_name, str) or not re.fullmatch(
            r"[A-Za-z0-9\.\-_]{1,64}", channel_name
        ):
            raise ValidationError(f"invalid ChannelName {channel_name!r}")
        if channel_name in seen:
            raise ValidationError(f"duplicate channel {channel_name}")
        seen.add(channel_name)
        source = channel.get("DataSource", {}).get("S3DataSource")
        if not source:
            raise ValidationError(f"channel {channel_name}: only S3DataSource is supported")
        if source.get("S3DataType") not in ("S3Prefix", "ManifestFile"):
            raise ValidationError(
                f"channel {channel_name}: S3DataType {source.get('S3DataType')!r} is not "
                "supported (S3Prefix, ManifestFile)"
            )
        _s3_uri(source.get("S3Uri"), f"channel {channel_name} S3Uri")
    stopping = request.get("StoppingCondition") or {}
    max_runtime = stopping.get("MaxRuntimeInSeconds", 86400)
    if not isinstance(max_runtime, int | float) or max_runtime <= 0:
        raise ValidationError("StoppingCondition.MaxRuntimeInSeconds must be a positive number")
    if request.get("EnableManagedSpotTraining"):
        max_wait = stopping.get("MaxWaitTimeInSeconds")
        if not isinstance(max_wait, int | float) or max_wait < max_runtime:
            raise ValidationError(
                "managed spot training needs StoppingCondition.MaxWaitTimeInSeconds >= "
                "MaxRuntimeInSeconds"
            )
    checkpoint = request.get("CheckpointConfig")
    if checkpoint:
        _s3_uri(checkpoint.get("S3Uri"), "CheckpointConfig.S3Uri")
    _metric_definitions(request)


def _s3_uri(value: Any, what: str) -> s3io.S3Location:
    try:
        return s3io.S3Location.parse(str(value))
    except ValueError:
        raise ValidationError(f"{what} must be an s3:// URI, got {value!r}") from None


def _metric_definitions(request: dict[str, Any]) -> list[_Metric]:
    metrics: list[_Metric] = []
    for definition in request.get("AlgorithmSpecification", {}).get("MetricDefinitions") or []:
        try:
            metrics.append(_Metric(str(definition["Name"]), re.compile(definition["Regex"])))
        except (KeyError, re.error) as error:
            raise ValidationError(f"invalid metric definition {definition!r}: {error}") from None
    return metrics


class TrainingJob:
    """One training job: its describable state (guarded by a lock) and the thread running it."""

    def __init__(
        self,
        request: dict[str, Any],
        s3: S3Client,
        job_dir: Path,
        settings: RuntimeSettings,
        injections: Injections,
        clock: Callable[[], float],
        now: Callable[[], datetime],
        logs: job_logs.CloudWatchLogs | None = None,
    ) -> None:
        self.request = copy.deepcopy(request)
        self.name: str = request["TrainingJobName"]
        self._s3 = s3
        self._job_dir = job_dir
        self._settings = settings
        self._injections = injections
        self._clock = clock
        self._now = now
        self._spot = bool(request.get("EnableManagedSpotTraining"))
        stopping = request.get("StoppingCondition") or {}
        self._max_runtime = float(stopping.get("MaxRuntimeInSeconds", 86400))
        self._max_wait = float(stopping.get("MaxWaitTimeInSeconds") or math.inf)
        checkpoint = request.get("CheckpointConfig") or {}
        self._checkpoint_uri = (
            _s3_uri(checkpoint["S3Uri"], "CheckpointConfig.S3Uri").folder()
            if checkpoint.get("S3Uri")
            else None
        )
        self._checkpoint_local_path = str(
            checkpoint.get("LocalPath") or container.DEFAULT_CHECKPOINT_PATH
        )
        shutil.rmtree(job_dir, ignore_errors=True)  # a reused work_dir: start from nothing
        self._log = _JobLog(
            job_dir / "training.log",
            _metric_definitions(request),
            settings.log_tail_lines,
            now,
            job_logs.StreamWriter(logs, job_logs.TRAINING_JOBS_GROUP),
            self.name,
        )

        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._abort = False  # close(): short grace, no uploads
        self._thread = threading.Thread(target=self._run, name=f"training-{self.name}", daemon=True)
        self._process: subprocess.Popen[bytes] | None = None

        created = now()
        self._status = IN_PROGRESS
        self._secondary = "Starting"
        self._transitions: list[dict[str, Any]] = []
        self._creation_time = created
        self._last_modified = created
        self._training_start = created
        self._training_end: datetime | None = None
        self._failure_reason: str | None = None
        self._model_artifact: str | None = None
        self._output_artifact: str | None = None
        self._training_seconds: int | None = None
        self._billable_seconds: int | None = None
        self._interruptions = 0
        self._attempts = 0
        self._run_seconds = 0.0  # training process time, all attempts
        self._attempt_seconds = 0.0  # finished attempts, downloading → exit
        self._attempt_started: float | None = None
        self._job_started = clock()
        self._layout: container.TrainingLayout | None = None
        self._add_transition(
            "Starting", MESSAGES["spot_wait"] if self._spot else MESSAGES["launching"]
        )

    # --- API ---------------------------------------------------------------------------

    def start(self) -> None:
        self._log.note(f"training job {self.name} created")
        self._thread.start()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            description: dict[str, Any] = {
                "TrainingJobName": self.name,
                "TrainingJobStatus": self._status,
                "SecondaryStatus": self._secondary,
                "SecondaryStatusTransitions": copy.deepcopy(self._transitions),
                "CreationTime": self._creation_time,
                "LastModifiedTime": self._last_modified,
                "TrainingStartTime": self._training_start,
                "EnableManagedSpotTraining": self._spot,
                "FinalMetricDataList": self._log.final_metrics(),
                "LocalRuntime": {
                    "Interruptions": self._interruptions,
                    "Attempts": self._attempts,
                    "ProcessSeconds": round(self._run_seconds, 3),
                    "LogFile": str(self._log.path),
                    "JobDirectory": str(self._job_dir),
                    "PendingSpotInterruptions": len(self._injections.interruptions),
                },
            }
            if self._training_end is not None:
                description["TrainingEndTime"] = self._training_end
            if self._training_seconds is not None:
                description["TrainingTimeInSeconds"] = self._training_seconds
                description["BillableTimeInSeconds"] = self._billable_seconds
            if self._failure_reason is not None:
                description["FailureReason"] = self._failure_reason
            if self._model_artifact is not None:
                description["ModelArtifacts"] = {"S3ModelArtifacts": self._model_artifact}
            if self._output_artifact is not None:
                description["LocalRuntime"]["OutputDataS3Uri"] = self._output_artifact
            return description

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    @property
    def is_spot(self) -> bool:
        return self._spot

    def stop(self) -> None:
        """StopTrainingJob: ``Stopping`` now, ``Stopped`` once the process is gone."""
        with self._lock:
            if self._status != IN_PROGRESS:
                raise ValidationError(
                    f"The request was rejected because the training job is in status "
                    f"{self._status}."
                )
            self._status = STOPPING
            self._set_secondary_locked("Stopping", MESSAGES["stopping"])
        self._log.note("StopTrainingJob received")
        self._stop_requested.set()

    def arm(self, injection: SpotInterruption) -> None:
        with self._lock:
            if self._status not in (IN_PROGRESS,):
                raise ValidationError(f"training job {self.name} is not running")
            self._injections.interruptions.append(injection)

    def arm_capacity_never_arrives(self) -> None:
        with self._lock:
            self._injections.capacity_never_arrives = True

    def arm_failure(self, reason: str) -> None:
        with self._lock:
            if self._status != IN_PROGRESS:
                raise ValidationError(f"training job {self.name} is not running")
            self._injections.failure = reason

    def abort(self) -> None:
        """For close(): stop fast (``close_grace_seconds``) and skip uploads."""
        with self._lock:
            self._abort = True
            if self._status == IN_PROGRESS:
                self._status = STOPPING
                self._set_secondary_locked("Stopping", MESSAGES["stopping"])
        self._stop_requested.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- State helpers -------------------------------------------------------------------

    def _add_transition(self, status: str, message: str) -> None:
        """A progress transition; once Stopping, only the final status (``_end``) follows."""
        with self._lock:
            if self._status != STOPPING:
                self._set_secondary_locked(status, message)

    def _set_secondary_locked(self, status: str, message: str) -> None:
        now = self._now()
        if self._transitions and "EndTime" not in self._transitions[-1]:
            self._transitions[-1]["EndTime"] = now
        self._transitions.append({"Status": status, "StartTime": now, "StatusMessage": message})
        self._secondary = status
        self._last_modified = now

    def _aborting(self) -> bool:
        with self._lock:
            return self._abort

    def _grace(self) -> float:
        if self._aborting():
            return min(self._settings.close_grace_seconds, self._settings.stop_grace_seconds)
        return self._settings.stop_grace_seconds

    def _runtime(self) -> float:
        running = 0.0 if self._attempt_started is None else self._clock() - self._attempt_started
        return self._attempt_seconds + running

    def _limit_reached(self) -> Outcome | None:
        if self._stop_requested.is_set():
            return Outcome.STOPPED
        if self._spot and self._clock() - self._job_started >= self._max_wait:
            return Outcome.MAX_WAIT
        if self._runtime() >= self._max_runtime:
            return Outcome.MAX_RUNTIME
        return None

    # --- The job thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            result = self._run_attempts()
        except Exception as error:  # a runtime bug or an S3 outage: report, never hang InProgress
            log.exception("training job %s: internal error", self.name)
            result = _Result(Outcome.FAILED, f"InternalServerError: {error}")
        try:
            self._finish(result)
        except Exception as error:
            log.exception("training job %s: could not finish", self.name)
            self._end(FAILED, "Failed", MESSAGES["failed"], f"InternalServerError: {error}")
        finally:
            self._log.close()

    def _run_attempts(self) -> _Result:
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                self._add_transition(
                    "Starting",
                    f"Restarting training after spot interruption {self._interruptions}; "
                    f"{MESSAGES['spot_wait'].lower()}",
                )
            waited = self._wait_for_capacity()
            if waited is not None:
                return waited
            result = self._run_attempt(attempt)
            if result.outcome is not Outcome.INTERRUPTED:
                return result
            with self._lock:
                self._interruptions += 1
                count = self._interruptions
            message = f"Training job interrupted: spot capacity reclaimed (interruption {count})"
            self._log.note(message)
            self._add_transition("Interrupted", message)

    def _wait_for_capacity(self) -> _Result | None:
        if not self._spot:
            return None
        with self._lock:
            never = self._injections.capacity_never_arrives
        delay = math.inf if never else self._settings.spot_capacity_delay_seconds
        ready_at = self._clock() + delay
        while True:
            limit = self._limit_reached()
            if limit in (Outcome.STOPPED, Outcome.MAX_WAIT):
                return _Result(limit)
            if self._clock() >= ready_at:
                return None
            self._stop_requested.wait(
                min(self._settings.poll_interval_seconds, max(0.0, ready_at - self._clock()))
            )

    def _run_attempt(self, attempt: int) -> _Result:
        with self._lock:
            self._attempts = attempt
        self._attempt_started = self._clock()
        try:
            return self._attempt(attempt)
        finally:
            self._attempt_seconds += self._clock() - self._attempt_started
            self._attempt_started = None

    def _attempt(self, attempt: int) -> _Result:
        layout = container.TrainingLayout(
            self._job_dir / f"attempt-{attempt}", self._checkpoint_local_path
        )
        self._layout = layout
        self._add_transition(
            "Downloading",
            MESSAGES["downloading"]
            if attempt == 1
            else f"{MESSAGES['downloading']} (attempt {attempt})",
        )
        self._log.note(f"attempt {attempt}: downloading into {layout.root}")
        try:
            stopped = self._download(layout)
        except (ClientError, BotoCoreError, ValueError, OSError) as error:
            return _Result(Outcome.FAILED, f"ClientError: Data download failed: {error}")
        if stopped is not None:
            return _Result(stopped)
        command = container.container_command(self.request)
        if command is not None:
            problem = container.namespace_problem()
            if problem is not None:
                return _Result(
                    Outcome.FAILED,
                    "AlgorithmError: ContainerEntrypoint needs the job's tree at /opt/ml: the "
                    f"local runtime runs it in a private mount namespace, but {problem}",
                )
            args = container.namespace_command(layout.root, command)
        else:
            program, _ = container.script_mode_program(self.request)
            script = layout.code_dir / s3io.safe_relative_path(program)
            if not script.is_file():
                return _Result(
                    Outcome.FAILED,
                    f"AlgorithmError: ExecuteUserScriptError: {program} not found in "
                    f"{container.SUBMIT_DIRECTORY_HYPERPARAMETER}",
                )
            args = [self._settings.python_executable, str(script)]
            if self._settings.pass_hyperparameters_as_args:
                args += container.user_args(container.decoded_hyperparameters(self.request))
        uploader = (
            s3io.TreeUploader(self._s3, layout.checkpoint_dir, self._checkpoint_uri)
            if self._checkpoint_uri is not None
            else None
        )
        if uploader is not None:
            uploader.mark_current()
        self._add_transition("Training", MESSAGES["training"])
        return self._train(layout, args, uploader)

    def _download(self, layout: container.TrainingLayout) -> Outcome | None:
        layout.create(container.channel_names(self.request))
        for channel in self.request.get("InputDataConfig") or []:
            source = channel["DataSource"]["S3DataSource"]
            objects = s3io.resolve_objects(self._s3, source["S3Uri"], source["S3DataType"])
            if not objects:  # SageMaker fails a job whose channel designates no object
                raise ValueError(
                    f'No S3 objects found under S3 URL "{source["S3Uri"]}" given in input '
                    f"data source (channel {channel['ChannelName']})"
                )
            s3io.download_objects(self._s3, objects, layout.channel_dir(channel["ChannelName"]))
            self._log.note(f"channel {channel['ChannelName']}: {len(objects)} objects")
            limit = self._limit_reached()
            if limit is not None:
                return limit
        if self._checkpoint_uri is not None:
            checkpoints = s3io.list_prefix(self._s3, self._checkpoint_uri)
            s3io.download_objects(self._s3, checkpoints, layout.checkpoint_dir)
            if checkpoints:
                self._log.note(f"checkpoints: {len(checkpoints)} files from {self._checkpoint_uri}")
        submit_directory = container.script_mode_program(self.request)[1]
        if submit_directory:  # script mode; a ContainerEntrypoint brings its code in channels
            s3io.download_and_extract(self._s3, submit_directory, layout.code_dir, layout.root)
        container.write_config_files(layout, self.request)
        return self._limit_reached()

    def _train(
        self,
        layout: container.TrainingLayout,
        args: list[str],
        uploader: s3io.TreeUploader | None,
    ) -> _Result:
        env = container.training_environment(layout, self.request)
        # The image's python3 is the runtime's interpreter (xgboost, numpy: what the XGBoost
        # image has), first on PATH for a ContainerEntrypoint's shell.
        python_bin = str(Path(self._settings.python_executable).parent)
        env["PATH"] = os.pathsep.join([python_bin, env.get("PATH", os.defpath)])
        self._log.start_attempt()
        process = subprocess.Popen(
            args,
            cwd=layout.code_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._process = process
        reader = threading.Thread(
            target=self._read_output, args=(process,), name=f"training-log-{self.name}", daemon=True
        )
        reader.start()
        started = self._clock()
        next_sync = started + self._settings.checkpoint_sync_interval_seconds
        checkpoints_uploaded = 0
        ended_by: Outcome | None = None
        injected_failure: str | None = None
        try:
            while process.poll() is None:
                injected_failure = self._take_failure()
                if injected_failure is not None:
                    self._log.note(f"injected failure: sending SIGKILL ({injected_failure})")
                    break
                ended_by = self._limit_reached()
                if ended_by is None and uploader is not None and self._clock() >= next_sync:
                    checkpoints_uploaded += _count_checkpoints(uploader.sync())
                    next_sync = self._clock() + self._settings.checkpoint_sync_interval_seconds
                if ended_by is None and self._interruption_due(started, checkpoints_uploaded):
                    ended_by = Outcome.INTERRUPTED
                if ended_by is not None:
                    self._log.note(f"sending SIGTERM ({ended_by.value})")
                    self._terminate(process)
                    break
                self._log.flush_stream()
                self._stop_requested.wait(self._settings.poll_interval_seconds)
        finally:
            _kill_group(process.pid, signal.SIGKILL)  # whatever the script left behind
            process.wait()
            with self._lock:
                self._run_seconds += self._clock() - started
            reader.join(timeout=5)
            self._process = None
        if uploader is not None and not self._aborting():
            uploader.sync()
        code = process.returncode
        self._log.note(f"training process exited with code {code}")
        if injected_failure is not None:
            return _Result(Outcome.FAILED, injected_failure)
        if ended_by is not None:
            return _Result(ended_by)
        if self._stop_requested.is_set():
            return _Result(Outcome.STOPPED)
        if code == 0:
            return _Result(Outcome.COMPLETED)
        reason = container.failure_reason_from_file(layout.failure_file)
        return _Result(Outcome.FAILED, reason or self._fallback_reason(code))

    def _take_failure(self) -> str | None:
        with self._lock:
            reason, self._injections.failure = self._injections.failure, None
            return reason

    def _interruption_due(self, training_started: float, checkpoints_uploaded: int) -> bool:
        if not self._spot:
            return False
        with self._lock:
            if not self._injections.interruptions:
                return False
            armed = self._injections.interruptions[0]
            due = (
                armed.after_checkpoints is not None
                and checkpoints_uploaded >= armed.after_checkpoints
            ) or (
                armed.after_seconds is not None
                and self._clock() - training_started >= armed.after_seconds
            )
            if due:
                self._injections.interruptions.pop(0)
            return due

    def _read_output(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for raw in process.stdout:
                self._log.script_line(raw.decode("utf-8", errors="replace"))

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process group; SIGKILL once the grace period is over."""
        _kill_group(process.pid, signal.SIGTERM)
        signalled = self._clock()
        while process.poll() is None:
            if self._clock() - signalled >= self._grace():
                self._log.note("grace period over: sending SIGKILL")
                _kill_group(process.pid, signal.SIGKILL)
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=min(0.05, self._settings.poll_interval_seconds))

    def _fallback_reason(self, code: int) -> str:
        header = f"AlgorithmError: ExecuteUserScriptError: exit code {code}"
        tail = "\n".join(self._log.tail())
        if not tail:
            return header
        room = container.FAILURE_REASON_MAX - len(header) - len("\nlast output:\n")
        return f"{header}\nlast output:\n{tail[-room:]}" if room > 0 else header

    # --- Ending --------------------------------------------------------------------------

    def _finish(self, result: _Result) -> None:
        outcome = result.outcome
        if outcome is Outcome.COMPLETED:
            self._add_transition("Uploading", MESSAGES["uploading"])
        if outcome is not Outcome.FAILED and not self._aborting():
            try:
                self._upload_artifacts()
            except (ClientError, BotoCoreError, OSError) as error:
                outcome = Outcome.FAILED
                result = _Result(
                    outcome, f"InternalServerError: uploading artifacts failed: {error}"
                )
        if outcome is Outcome.COMPLETED:
            self._end(COMPLETED, "Completed", MESSAGES["completed"], None)
        elif outcome is Outcome.FAILED:
            self._end(FAILED, "Failed", MESSAGES["failed"], result.failure_reason)
        elif outcome is Outcome.MAX_RUNTIME:
            self._end(
                STOPPED,
                "MaxRuntimeExceeded",
                MESSAGES["max_runtime"],
                f"MaxRuntimeExceeded: {MESSAGES['max_runtime']} ({self._max_runtime:g} s)",
            )
        elif outcome is Outcome.MAX_WAIT:
            self._end(
                STOPPED,
                "MaxWaitTimeExceeded",
                MESSAGES["max_wait"],
                f"MaxWaitTimeExceeded: {MESSAGES['max_wait']} ({self._max_wait:g} s)",
            )
        else:
            self._end(STOPPED, "Stopped", MESSAGES["stopped"], None)

    def _upload_artifacts(self) -> None:
        layout = self._layout
        if layout is None or not layout.model_dir.is_dir():
            return  # never reached an instance: nothing to keep
        output = s3io.S3Location.parse(self.request["OutputDataConfig"]["S3OutputPath"]).join(
            self.name, "output"
        )
        archives = self._job_dir / "archives"
        model_archive = archives / "model.tar.gz"
        s3io.tar_directory(layout.model_dir, model_archive)
        s3io.upload_file(self._s3, model_archive, output.join("model.tar.gz"))
        output_archive = archives / "output.tar.gz"
        s3io.tar_directory(layout.output_data_dir, output_archive)
        s3io.upload_file(self._s3, output_archive, output.join("output.tar.gz"))
        with self._lock:
            self._model_artifact = str(output.join("model.tar.gz"))
            self._output_artifact = str(output.join("output.tar.gz"))
        self._log.note(f"uploaded {self._model_artifact} and {self._output_artifact}")

    def _end(self, status: str, secondary: str, message: str, reason: str | None) -> None:
        elapsed = self._clock() - self._job_started
        training_seconds = max(1, round(elapsed))
        if self._spot:
            billable = round(self._run_seconds * self._settings.spot_price_fraction)
            if self._run_seconds > 0:
                billable = max(1, billable)
            billable = min(billable, training_seconds)
        else:
            billable = training_seconds
        with self._lock:
            self._set_secondary_locked(secondary, message)
            end = self._transitions[-1]["StartTime"]
            self._transitions[-1]["EndTime"] = end
            self._status = status
            self._training_end = end
            self._training_seconds = training_seconds
            self._billable_seconds = billable
            if reason is not None:
                self._failure_reason = reason[: container.FAILURE_REASON_MAX]
        self._log.note(f"{status} ({secondary}) after {training_seconds} s, billable {billable} s")


def _count_checkpoints(uploaded: list[str]) -> int:
    """Checkpoint files among uploaded names; hidden temporaries (``.x.partial``) do not count."""
    return sum(1 for name in uploaded if not Path(name).name.startswith("."))


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class TrainingJobs:
    """All training jobs of one runtime, and the faults armed for jobs not yet created."""

    def __init__(
        self,
        s3: S3Client,
        work_dir: Path,
        settings: RuntimeSettings,
        clock: Callable[[], float],
        now: Callable[[], datetime],
        logs: job_logs.CloudWatchLogs | None = None,
    ) -> None:
        self._s3 = s3
        self._work_dir = work_dir
        self._settings = settings
        self._clock = clock
        self._now = now
        self._logs = logs
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}
        self._next_spot = Injections()
        self._next_failure: str | None = None  # for the next job created, spot or not
        self._named: dict[str, Injections] = {}
        self._closed = False

    def start(self, request: dict[str, Any]) -> dict[str, Any]:
        validate_request(request)
        name: str = request["TrainingJobName"]
        with self._lock:
            if self._closed:
                raise ValidationError("the local SageMaker runtime is closed")
            if name in self._jobs:
                raise ResourceInUse(f"Training job names must be unique: {name} already exists")
            injections = self._named.pop(name, Injections())
            if request.get("EnableManagedSpotTraining"):
                injections.interruptions += self._next_spot.interruptions
                injections.capacity_never_arrives |= self._next_spot.capacity_never_arrives
                self._next_spot = Injections()
            if self._next_failure is not None:
                injections.failure = injections.failure or self._next_failure
                self._next_failure = None
            job = TrainingJob(
                request,
                self._s3,
                self._work_dir / "training-jobs" / name,
                self._settings,
                injections,
                self._clock,
                self._now,
                self._logs,
            )
            self._jobs[name] = job
        description = job.describe()  # before the thread can move on
        job.start()
        return description

    def get(self, name: str) -> TrainingJob:
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            raise ResourceNotFound(f"Requested resource not found: training job {name}")
        return job

    def names(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def inject_spot_interruption(self, job_name: str | None, injection: SpotInterruption) -> None:
        with self._lock:
            job = self._jobs.get(job_name) if job_name is not None else None
            if job is None:
                target = (
                    self._next_spot
                    if job_name is None
                    else self._named.setdefault(job_name, Injections())
                )
                target.interruptions.append(injection)
                return
        if not job.is_spot:
            raise ValidationError(f"training job {job_name} does not use managed spot training")
        job.arm(injection)

    def inject_capacity_never_arrives(self, job_name: str | None) -> None:
        with self._lock:
            job = self._jobs.get(job_name) if job_name is not None else None
            if job is None:
                target = (
                    self._next_spot
                    if job_name is None
                    else self._named.setdefault(job_name, Injections())
                )
                target.capacity_never_arrives = True
                return
        job.arm_capacity_never_arrives()

    def inject_failure(self, job_name: str | None, reason: str) -> None:
        with self._lock:
            job = self._jobs.get(job_name) if job_name is not None else None
            if job is None:
                if job_name is None:
                    self._next_failure = reason
                else:
                    self._named.setdefault(job_name, Injections()).failure = reason
                return
        job.arm_failure(reason)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.abort()
        for job in jobs:
            job.join(timeout=self._settings.close_grace_seconds + 10)
