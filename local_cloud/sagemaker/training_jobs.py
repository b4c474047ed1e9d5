"""Training jobs: a CreateTrainingJob request run as local subprocesses, the way SageMaker would.

One :class:`TrainingJob` per request, run on its own thread:

1. ``Starting``: for a managed-spot job, wait for "spot capacity" (``spot_capacity_delay``, or
   forever with the capacity-never-arrives injection, until ``MaxWaitTimeInSeconds``).
2. ``Downloading``: a fresh ``/opt/ml`` tree (:class:`.container.TrainingLayout`) per host
   under ``<work_dir>/training-jobs/<job>/attempt-<n>`` (the tree itself for a single-instance
   job, ``attempt-<n>/algo-<i>`` for each host of an ``InstanceCount`` = N job); every channel
   (``S3Prefix`` or ``ManifestFile``, ``File`` or ``FastFile`` input mode: both downloaded),
   replicated to every host or split between them (``ShardedByS3Key``,
   :func:`.container.channel_shares`), the checkpoints from ``CheckpointConfig.S3Uri`` (to
   every host), the sourcedir, and each host's config files (``resourceconfig.json`` names it).
3. ``Training``: on every host, ``python <sagemaker_program> --hp value ...`` in its code dir
   (script mode), or the request's ``ContainerEntrypoint`` + ``ContainerArguments`` in a
   private mount namespace where the host's tree is ``/opt/ml`` (``unshare -m``, root on Linux;
   elsewhere the job fails saying so), with the runtime's python as ``python3`` first on PATH;
   each in its own process group, output appended to ``<job>/training.log`` (prefixed with the
   host when there are several) and to one CloudWatch stream per host; each host's checkpoint
   directory synced to the same S3 prefix every ``checkpoint_sync_interval_seconds``; limits,
   StopTrainingJob, injected spot interruptions and injected failures checked every
   ``poll_interval_seconds``. SIGTERM to every host, then SIGKILL after the grace period; an
   injected failure SIGKILLs them at once, as the kernel's OOM killer does, and the job ends
   ``Failed`` with the injected FailureReason. A host that exits non-zero fails the job with its
   FailureReason (its failure file, else its exit code and last lines), the others are
   SIGTERMed; the job completes when every host exits 0. The hosts of a multi-instance job
   share 127.0.0.1: ``REFIT_TRACKER=127.0.0.1:<free port>`` (a new port per attempt) tells
   them where the first host's XGBoost tracker listens, which SageMaker never sets (its
   hosts reach ``algo-1`` by name).
4. A spot interruption goes ``Interrupted`` and back to 1 with a new attempt directory: every
   host finds the checkpoints re-downloaded from S3 and resumes.
5. ``Uploading``: the hosts' ``model/`` directories, merged (the first host's file wins a name
   clash) → ``<S3OutputPath>/<job>/output/model.tar.gz``, their ``output/data/`` →
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
- Both are per instance, whatever ``InstanceCount`` is (the hosts run side by side): AWS
  "Multiply BillableTimeInSeconds by the number of instances (InstanceCount) in your training
  cluster to get the total compute time" (DescribeTrainingJob).
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
import socket
import subprocess
import threading
import time
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
# Refit's own (training/refit_distributed.py), never set by SageMaker: where the hosts of a
# multi-instance job find the first host's XGBoost tracker, as address:port.
TRACKER_VARIABLE = "REFIT_TRACKER"

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


@dataclass(eq=False)
class _HostRun:
    """One host of an attempt: its tree, its checkpoint sync and, once started, its process.
    ``exit_code`` is set (under the job's lock) by the thread that waits for the process."""

    name: str
    layout: container.TrainingLayout
    uploader: s3io.TreeUploader | None = None
    process: subprocess.Popen[bytes] | None = None
    log_stream: str | None = None
    exit_code: int | None = None
    threads: list[threading.Thread] = field(default_factory=list)


@dataclass(frozen=True)
class _Metric:
    name: str
    pattern: re.Pattern[str]


class _JobLog:
    """The job's log file (all attempts, every host), each host's tail and CloudWatch stream,
    and metrics parsed as lines arrive.

    With one host the file holds the script's lines as they are; with several each line is
    prefixed ``algo-<i> | `` (as the SageMaker Python SDK's local mode, docker compose, shows
    them) while each host's stream holds its own lines unprefixed, as on AWS. Metrics
    (``MetricDefinitions``) are read from the first host's lines only: AWS does not document
    which hosts' output ``FinalMetricDataList`` is parsed from, and a distributed script prints
    its job-wide metrics on its leader (refit's ``train.py`` scores the test sets on algo-1).
    """

    def __init__(
        self,
        path: Path,
        metrics: list[_Metric],
        tail_lines: int,
        now: Callable[[], datetime],
        sink: job_logs.CloudWatchLogs | None,
        job_name: str,
        hosts: list[str],
    ) -> None:
        self.path = path
        self._hosts = list(hosts)
        self._prefixed = len(hosts) > 1
        self._metrics_host = hosts[0]
        self._streams = {
            host: job_logs.StreamWriter(sink, job_logs.TRAINING_JOBS_GROUP) for host in hosts
        }
        self._job_name = job_name
        self._metrics = metrics
        self._now = now
        self._lock = threading.Lock()
        self._tails: dict[str, collections.deque[str]] = {
            host: collections.deque(maxlen=tail_lines) for host in hosts
        }
        self._values: dict[str, tuple[float, datetime]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def script_line(self, host: str, line: str) -> None:
        line = line.rstrip("\r\n")
        with self._lock:
            self._write(f"{host} | {line}" if self._prefixed else line)
            self._tails[host].append(line)
            self._streams[host].line(line)
            if host != self._metrics_host:
                return
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

    def tail(self, host: str) -> list[str]:
        with self._lock:
            return list(self._tails[host])

    def stream(self, host: str) -> str | None:
        """The host's current CloudWatch stream (None without a sink)."""
        return self._streams[host].stream

    def start_attempt(self) -> None:
        """New containers: empty tails and a new CloudWatch stream per host
        (``<job>/algo-<i>-<epoch>``)."""
        with self._lock:
            for tail in self._tails.values():
                tail.clear()
        for host, stream in self._streams.items():
            stream.start(job_logs.training_stream(self._job_name, stream.stream, host))

    def final_metrics(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"MetricName": name, "Value": value, "Timestamp": when}
                for name, (value, when) in sorted(self._values.items())
            ]

    def flush_stream(self) -> None:
        """Send what CloudWatch has not got yet (the job polls this: a quiet script's last
        lines must not wait for its next one)."""
        for stream in self._streams.values():
            stream.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
        self.flush_stream()


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
    _validate_resources(request)
    _enum(
        algorithm.get("TrainingInputMode"),
        container.INPUT_MODES,
        "algorithmSpecification.trainingInputMode",
    )
    _s3_uri(
        request.get("OutputDataConfig", {}).get("S3OutputPath"), "OutputDataConfig.S3OutputPath"
    )
    seen: set[str] = set()
    for index, channel in enumerate(request.get("InputDataConfig") or [], start=1):
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
        where = f"inputDataConfig.{index}.member"
        _enum(channel.get("InputMode"), container.INPUT_MODES, f"{where}.inputMode")
        _enum(
            source.get("S3DataDistributionType"),
            container.DISTRIBUTION_TYPES,
            f"{where}.dataSource.s3DataSource.s3DataDistributionType",
        )
        _validate_input_mode(request, channel, source)
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


def _enum(value: Any, allowed: tuple[str, ...], where: str) -> None:
    """AWS's message for a value outside a field's enum (absent is fine: it has a default)."""
    if value is not None and value not in allowed:
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(allowed)}]"
        )


def _validate_resources(request: dict[str, Any]) -> None:
    resources = request.get("ResourceConfig") or {}
    if resources.get("InstanceGroups"):
        raise ValidationError(
            "ResourceConfig.InstanceGroups (heterogeneous clusters) is not supported by the "
            "local runtime: give InstanceType and InstanceCount"
        )
    count = resources.get("InstanceCount", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValidationError(
            f"ResourceConfig.InstanceCount must be a whole number of at least 1, got {count!r}"
        )


def _validate_input_mode(
    request: dict[str, Any], channel: dict[str, Any], source: dict[str, Any]
) -> None:
    """The channel's input mode (its InputMode, else the job's TrainingInputMode).

    ``File`` and ``FastFile`` both present the objects as files under
    ``/opt/ml/input/data/<channel>``; FastFile streams them on read on AWS, the local runtime
    downloads them first, which is the same contract for the script. AWS: "Fast file
    currently supports S3 prefixes only (it does not support manifest and augmented
    manifest)" (SageMaker Developer Guide, "Setting up training jobs to access datasets",
    model-access-training-data). ``Pipe`` (a FIFO per channel and epoch) is not emulated.
    """
    mode = container.channel_input_mode(request, channel)
    name = channel.get("ChannelName")
    data_type = source.get("S3DataType")
    if mode == container.FAST_FILE_MODE and data_type != "S3Prefix":
        raise ValidationError(
            f"Channel {name}: FastFile input mode supports only S3DataType S3Prefix, not "
            f"{data_type}. Use File input mode for a {data_type} channel."
        )
    if mode == container.PIPE_MODE:
        raise ValidationError(
            f"Channel {name}: Pipe input mode is not supported by the local SageMaker runtime, "
            "which presents every channel as files under /opt/ml/input/data/<channel>: use "
            "File or FastFile."
        )


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
        self._hosts = container.hosts(request)
        shutil.rmtree(job_dir, ignore_errors=True)  # a reused work_dir: start from nothing
        self._log = _JobLog(
            job_dir / "training.log",
            _metric_definitions(request),
            settings.log_tail_lines,
            now,
            logs,
            self.name,
            self._hosts,
        )

        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._abort = False  # close(): short grace, no uploads
        self._thread = threading.Thread(target=self._run, name=f"training-{self.name}", daemon=True)
        self._runs: list[_HostRun] = []  # the current (or last) attempt's hosts

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
        self._layouts: list[container.TrainingLayout] = []  # the current attempt's, host order
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
                    "Hosts": [
                        {
                            "Host": run.name,
                            "Directory": str(run.layout.root),
                            "ExitCode": run.exit_code,
                            "LogStream": run.log_stream,
                        }
                        for run in self._runs
                    ],
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
        # One host keeps the historical tree, attempt-<k>/; several get attempt-<k>/algo-<i>/.
        attempt_dir = self._job_dir / f"attempt-{attempt}"
        layouts = [
            container.TrainingLayout(
                attempt_dir if len(self._hosts) == 1 else attempt_dir / host,
                self._checkpoint_local_path,
            )
            for host in self._hosts
        ]
        self._layouts = layouts
        self._add_transition(
            "Downloading",
            MESSAGES["downloading"]
            if attempt == 1
            else f"{MESSAGES['downloading']} (attempt {attempt})",
        )
        where = layouts[0].root if len(layouts) == 1 else f"{attempt_dir}/<host>"
        self._log.note(f"attempt {attempt}: downloading into {where}")
        try:
            stopped = self._download(layouts)
        except (ClientError, BotoCoreError, ValueError, OSError) as error:
            return _Result(Outcome.FAILED, f"ClientError: Data download failed: {error}")
        if stopped is not None:
            return _Result(stopped)
        command = container.container_command(self.request)
        if command is None:
            program, _ = container.script_mode_program(self.request)
            if not (layouts[0].code_dir / s3io.safe_relative_path(program)).is_file():
                return _Result(
                    Outcome.FAILED,
                    f"AlgorithmError: ExecuteUserScriptError: {program} not found in "
                    f"{container.SUBMIT_DIRECTORY_HYPERPARAMETER}",
                )
        else:
            problem = container.namespace_problem()
            if problem is not None:
                return _Result(
                    Outcome.FAILED,
                    "AlgorithmError: ContainerEntrypoint needs the job's tree at /opt/ml: the "
                    f"local runtime runs it in a private mount namespace, but {problem}",
                )
        runs = []
        for host, layout in zip(self._hosts, layouts, strict=True):
            # Every host syncs its checkpoint directory with the same CheckpointConfig.S3Uri.
            uploader = (
                s3io.TreeUploader(self._s3, layout.checkpoint_dir, self._checkpoint_uri)
                if self._checkpoint_uri is not None
                else None
            )
            if uploader is not None:
                uploader.mark_current()
            runs.append(_HostRun(host, layout, uploader))
        self._add_transition("Training", MESSAGES["training"])
        return self._train(runs, command)

    def _download(self, layouts: list[container.TrainingLayout]) -> Outcome | None:
        """Every host's channels (its share: :func:`.container.channel_shares`), checkpoints,
        sourcedir and config files."""
        for layout in layouts:
            layout.create(container.channel_names(self.request))
        for channel in self.request.get("InputDataConfig") or []:
            name = channel["ChannelName"]
            source = channel["DataSource"]["S3DataSource"]
            objects = s3io.resolve_objects(self._s3, source["S3Uri"], source["S3DataType"])
            if not objects:  # SageMaker fails a job whose channel designates no object
                raise ValueError(
                    f'No S3 objects found under S3 URL "{source["S3Uri"]}" given in input '
                    f"data source (channel {name})"
                )
            distribution = container.distribution_type(channel)
            objects = sorted(objects, key=lambda obj: (obj.location.bucket, obj.location.key))
            shares = container.channel_shares(objects, len(layouts), distribution)
            for layout, share in zip(layouts, shares, strict=True):
                s3io.download_objects(self._s3, share, layout.channel_dir(name))
            if len(layouts) == 1:
                self._log.note(f"channel {name}: {len(objects)} objects")
            else:
                counts = ", ".join(
                    f"{host} {len(share)}" for host, share in zip(self._hosts, shares, strict=True)
                )
                self._log.note(f"channel {name}: {len(objects)} objects, {distribution}: {counts}")
            limit = self._limit_reached()
            if limit is not None:
                return limit
        if self._checkpoint_uri is not None:
            # AWS: "Existing checkpoints in S3 are written to the SageMaker container at the
            # start of the job" (model-checkpoints): to every host's container.
            checkpoints = s3io.list_prefix(self._s3, self._checkpoint_uri)
            for layout in layouts:
                s3io.download_objects(self._s3, checkpoints, layout.checkpoint_dir)
            if checkpoints:
                self._log.note(f"checkpoints: {len(checkpoints)} files from {self._checkpoint_uri}")
        submit_directory = container.script_mode_program(self.request)[1]
        for host, layout in zip(self._hosts, layouts, strict=True):
            if submit_directory:  # script mode; a ContainerEntrypoint brings its code in channels
                s3io.download_and_extract(self._s3, submit_directory, layout.code_dir, layout.root)
            container.write_config_files(layout, self.request, host)
        return self._limit_reached()

    def _command(self, run: _HostRun, command: list[str] | None) -> list[str]:
        if command is not None:
            return container.namespace_command(run.layout.root, command)
        program, _ = container.script_mode_program(self.request)
        args = [
            self._settings.python_executable,
            str(run.layout.code_dir / s3io.safe_relative_path(program)),
        ]
        if self._settings.pass_hyperparameters_as_args:
            args += container.user_args(container.decoded_hyperparameters(self.request))
        return args

    def _environment(self, run: _HostRun, tracker: str | None) -> dict[str, str]:
        env = container.training_environment(run.layout, self.request, current_host=run.name)
        # The image's python3 is the runtime's interpreter (xgboost, numpy: what the XGBoost
        # image has), first on PATH for a ContainerEntrypoint's shell.
        python_bin = str(Path(self._settings.python_executable).parent)
        env["PATH"] = os.pathsep.join([python_bin, env.get("PATH", os.defpath)])
        if tracker is not None:
            # Not SageMaker's: its hosts reach algo-1 by name (the XGBoost container's tracker
            # listens there on port 9099). The local hosts share 127.0.0.1, where one fixed
            # port would clash between jobs, so they are given a free port of the loopback
            # address instead (training/refit_distributed.py reads it).
            env[TRACKER_VARIABLE] = tracker
        return env

    def _train(self, runs: list[_HostRun], command: list[str] | None) -> _Result:
        """Run every host's process to the end: all exit 0, one fails (the others are
        terminated), or the job is stopped, limited, interrupted or killed by an injection."""
        tracker = f"127.0.0.1:{_free_port()}" if len(runs) > 1 else None
        single = len(runs) == 1
        exit_order: list[_HostRun] = []
        self._log.start_attempt()
        started = self._clock()
        next_sync = started + self._settings.checkpoint_sync_interval_seconds
        checkpoints_uploaded = 0
        ended_by: Outcome | None = None
        injected_failure: str | None = None
        first_failure: _HostRun | None = None
        noted: set[str] = set()  # hosts whose exit is in the log
        with self._lock:
            self._runs = runs
        try:
            for run in runs:
                run.log_stream = self._log.stream(run.name)
                self._start_process(run, self._command(run, command), tracker, exit_order)
            while True:
                with self._lock:
                    exited = list(exit_order)
                for run in exited:
                    if not single and run.name not in noted:
                        self._note_exit(run, single)
                        noted.add(run.name)
                first_failure = next((run for run in exited if run.exit_code != 0), None)
                if first_failure is not None and not single:
                    self._log.note(
                        f"{first_failure.name} failed (exit code {first_failure.exit_code}): "
                        "sending SIGTERM to the other hosts"
                    )
                    self._terminate(runs)
                    break
                if len(exited) == len(runs):
                    break
                injected_failure = self._take_failure()
                if injected_failure is not None:
                    self._log.note(f"injected failure: sending SIGKILL ({injected_failure})")
                    break
                ended_by = self._limit_reached()
                if ended_by is None and self._clock() >= next_sync:
                    for run in runs:
                        if run.uploader is not None:
                            checkpoints_uploaded += _count_checkpoints(run.uploader.sync())
                    next_sync = self._clock() + self._settings.checkpoint_sync_interval_seconds
                if ended_by is None and self._interruption_due(started, checkpoints_uploaded):
                    ended_by = Outcome.INTERRUPTED
                if ended_by is not None:
                    self._log.note(
                        f"sending SIGTERM ({ended_by.value})"
                        if single
                        else f"sending SIGTERM to every host ({ended_by.value})"
                    )
                    self._terminate(runs)
                    break
                self._log.flush_stream()
                self._stop_requested.wait(self._settings.poll_interval_seconds)
        finally:
            for run in runs:  # whatever the scripts left behind
                if run.process is not None:
                    _kill_group(run.process.pid, signal.SIGKILL)
            for run in runs:
                if run.process is not None:
                    run.process.wait()
            with self._lock:
                self._run_seconds += self._clock() - started
            for run in runs:
                for thread in run.threads:
                    thread.join(timeout=5)
        if not self._aborting():
            for run in runs:
                if run.uploader is not None:
                    run.uploader.sync()
        for run in runs:
            if run.name not in noted:
                self._note_exit(run, single)
        if injected_failure is not None:
            return _Result(Outcome.FAILED, injected_failure)
        if ended_by is not None:
            return _Result(ended_by)
        if self._stop_requested.is_set():
            return _Result(Outcome.STOPPED)
        with self._lock:
            failures = [run for run in exit_order if run.exit_code != 0]
        if first_failure is None and failures:
            first_failure = failures[0]
        if first_failure is None:
            return _Result(Outcome.COMPLETED)
        reason = container.failure_reason_from_file(first_failure.layout.failure_file)
        return _Result(
            Outcome.FAILED,
            reason or self._fallback_reason(first_failure.name, first_failure.exit_code),
        )

    def _note_exit(self, run: _HostRun, single: bool) -> None:
        code = run.process.returncode if run.process is not None else None
        self._log.note(
            f"training process exited with code {code}"
            if single
            else f"{run.name}: training process exited with code {code}"
        )

    def _start_process(
        self,
        run: _HostRun,
        args: list[str],
        tracker: str | None,
        exit_order: list[_HostRun],
    ) -> None:
        process = subprocess.Popen(
            args,
            cwd=run.layout.code_dir,
            env=self._environment(run, tracker),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        run.process = process
        suffix = "" if len(self._hosts) == 1 else f"-{run.name}"
        run.threads = [
            threading.Thread(
                target=self._read_output,
                args=(run.name, process),
                name=f"training-log-{self.name}{suffix}",
                daemon=True,
            ),
            threading.Thread(
                target=self._await_exit,
                args=(run, exit_order),
                name=f"training-wait-{self.name}{suffix}",
                daemon=True,
            ),
        ]
        for thread in run.threads:
            thread.start()

    def _await_exit(self, run: _HostRun, exit_order: list[_HostRun]) -> None:
        """Record the host's exit code, and the order the hosts exit in (the first to fail
        gives the job its FailureReason)."""
        assert run.process is not None
        code = run.process.wait()
        with self._lock:
            run.exit_code = code
            exit_order.append(run)

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

    def _read_output(self, host: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for raw in process.stdout:
                self._log.script_line(host, raw.decode("utf-8", errors="replace"))

    def _terminate(self, runs: list[_HostRun]) -> None:
        """SIGTERM every host's process group; SIGKILL those still running once the grace
        period is over."""
        for run in runs:
            if run.process is not None:
                _kill_group(run.process.pid, signal.SIGTERM)
        signalled = self._clock()
        while True:
            with self._lock:
                running = [run for run in runs if run.process is not None and run.exit_code is None]
            if not running:
                return
            if self._clock() - signalled >= self._grace():
                self._log.note("grace period over: sending SIGKILL")
                for run in running:
                    assert run.process is not None
                    _kill_group(run.process.pid, signal.SIGKILL)
                return
            time.sleep(min(0.05, self._settings.poll_interval_seconds))

    def _fallback_reason(self, host: str, code: int | None) -> str:
        header = f"AlgorithmError: ExecuteUserScriptError: exit code {code}"
        tail = "\n".join(self._log.tail(host))
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
        """``model.tar.gz`` and ``output.tar.gz``, each from every host's directory: AWS "If
        multiple containers in a single training job write to this directory they should
        ensure no file/directory names clash. SageMaker aggregates the result in a TAR file"
        (your-algorithms-training-algo-output). What wins a clash is not documented: here the
        hosts are merged in host order and the first host's file wins (the clash is logged)."""
        layouts = self._layouts
        if not layouts or not layouts[0].model_dir.is_dir():
            return  # never reached an instance: nothing to keep
        output = s3io.S3Location.parse(self.request["OutputDataConfig"]["S3OutputPath"]).join(
            self.name, "output"
        )
        archives = self._job_dir / "archives"
        for archive_name, directories in (
            ("model.tar.gz", [layout.model_dir for layout in layouts]),
            ("output.tar.gz", [layout.output_data_dir for layout in layouts]),
        ):
            archive = archives / archive_name
            clashes = s3io.tar_directories(directories, archive)
            if clashes:
                self._log.note(
                    f"{archive_name}: several hosts wrote {', '.join(clashes)}; kept "
                    f"{self._hosts[0]}'s (or the first host's that has it)"
                )
            s3io.upload_file(self._s3, archive, output.join(archive_name))
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


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the job's tracker binds it moments later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
