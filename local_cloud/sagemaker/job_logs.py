"""A job's container output in CloudWatch Logs, where SageMaker puts it and clients read it.

SageMaker writes each training container's stdout/stderr to log group
``/aws/sagemaker/TrainingJobs``, one stream per host and container start:
``<job name>/algo-<i>-<epoch seconds>`` (``algo-1`` .. ``algo-N`` for ``InstanceCount`` = N; a
spot job resumed on new capacity starts a new stream per host).
Endpoints log to ``/aws/sagemaker/Endpoints/<endpoint>`` (stream ``<variant>/<instance id>``)
and batch transforms to ``/aws/sagemaker/TransformJobs`` (``<job>/<instance id>``): here the
model server's own lines (loading, and each failed invocation's traceback, which the image's
Flask logs), not the user script's prints, which share this process's stdout.

The SageMaker Python SDK's ``fit(logs=True)`` / ``logs_for_job`` lists the streams with prefix
``<job name>/`` and reads them with GetLogEvents; the AWS CLI's ``logs filter-log-events``
(v2: ``logs tail``) reads them too.

:class:`CloudWatchLogs` writes through any CloudWatch Logs client (the local cloud passes one
for its own moto); lines are batched (PutLogEvents per second or per 500 lines, and at the end).
A failure to write is logged and never fails the job.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_logs import CloudWatchLogsClient
else:
    CloudWatchLogsClient = Any

log = logging.getLogger(__name__)

TRAINING_JOBS_GROUP = "/aws/sagemaker/TrainingJobs"
TRANSFORM_JOBS_GROUP = "/aws/sagemaker/TransformJobs"
ENDPOINTS_GROUP = "/aws/sagemaker/Endpoints/{endpoint}"  # stream <variant>/<instance id>
FLUSH_SECONDS = 1.0
FLUSH_LINES = 500


class CloudWatchLogs:
    """Creates groups and streams on first use and puts batches of events into them."""

    def __init__(self, client: CloudWatchLogsClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._groups: set[str] = set()

    def create_stream(self, group: str, stream: str) -> None:
        with self._lock:
            if group not in self._groups:
                self._ignore_existing(lambda: self._client.create_log_group(logGroupName=group))
                self._groups.add(group)
        self._ignore_existing(
            lambda: self._client.create_log_stream(logGroupName=group, logStreamName=stream)
        )

    def put(self, group: str, stream: str, events: list[tuple[int, str]]) -> None:
        self._client.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[{"timestamp": ms, "message": message} for ms, message in events],
        )

    def _ignore_existing(self, create: Callable[[], Any]) -> None:
        with contextlib.suppress(self._client.exceptions.ResourceAlreadyExistsException):
            create()


class StreamWriter:
    """Lines into one stream of ``group`` at a time (:meth:`start` opens the next)."""

    def __init__(self, sink: CloudWatchLogs | None, group: str) -> None:
        self._sink = sink
        self._group = group
        self._lock = threading.Lock()
        self._put_lock = threading.Lock()
        self._stream: str | None = None
        self._pending: list[tuple[int, str]] = []
        self._last_flush = time.monotonic()

    @property
    def stream(self) -> str | None:
        return self._stream

    def start(self, stream: str) -> None:
        """Flush the current stream and write to ``stream`` from now on."""
        self.flush()
        if self._sink is None:
            return
        try:
            self._sink.create_stream(self._group, stream)
        except Exception:
            log.warning("cannot create log stream %s/%s", self._group, stream, exc_info=True)
            return
        with self._lock:
            self._stream = stream

    def line(self, message: str) -> None:
        if self._sink is None or not message:  # CloudWatch events need a message
            return
        with self._lock:
            if self._stream is None:
                return
            self._pending.append((int(time.time() * 1000), message))
            due = (
                len(self._pending) >= FLUSH_LINES
                or time.monotonic() - self._last_flush >= FLUSH_SECONDS
            )
        if due:
            self.flush()

    def lines(self, text: str) -> None:
        """Each line of ``text``, written at once (a traceback must not wait for more)."""
        for message in text.splitlines():
            self.line(message)
        self.flush()

    def flush(self) -> None:
        # Batches go out one at a time, in order (the reader and the job's poll both flush).
        with self._put_lock:
            with self._lock:
                events, self._pending = self._pending, []
                stream = self._stream
                self._last_flush = time.monotonic()
            if not events or stream is None or self._sink is None:
                return
            try:
                self._sink.put(self._group, stream, events)
            except Exception:
                log.warning("cannot write %d log events to %s", len(events), stream, exc_info=True)


def training_stream(job_name: str, previous: str | None, host: str = "algo-1") -> str:
    """``<job>/<host>-<epoch>``: SageMaker's stream of one container start (never ``previous``,
    even when a restart falls within the same second)."""
    epoch = int(time.time())
    if previous is not None and previous.startswith(f"{job_name}/{host}-"):
        epoch = max(epoch, int(previous.rsplit("-", 1)[1]) + 1)
    return f"{job_name}/{host}-{epoch}"


def instance_stream(prefix: str) -> str:
    """``<prefix>/i-<17 hex digits>``: an endpoint variant's or transform job's instance."""
    return f"{prefix}/i-{secrets.token_hex(9)[:17]}"
