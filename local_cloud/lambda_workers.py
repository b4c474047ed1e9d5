"""Run the real handlers of ``functions/<x>/app.py`` in warm worker processes, as Lambda does.

Each function gets a pool of long-lived workers (``lambda_worker_main.py``), like warm Lambda
execution environments: a worker imports the handler once (cold start) and then serves one
invocation at a time. Concurrent invocations of a function use further workers, up to
``max_workers_per_function``; beyond that they wait for a free one.

A worker's environment is the function's resolved template environment plus what Lambda and the
emulator add (``AWS_ENDPOINT_URL``, fake credentials, region, ``_HANDLER``,
``AWS_LAMBDA_FUNCTION_*``, ``TRAINING_CODE_DIR`` -> ``<repo>/training``, no X-Ray) and nothing
of this process's environment except ``PATH``/``TMPDIR``/locale. ``PYTHONPATH`` is the code
directory plus the layers built as Python packages (``layers/refit``: ``/opt/python`` in Lambda).

Errors have the Invoke API's shapes (``FunctionError: Unhandled`` and a JSON payload):
the handler's exception (``errorType`` = class name), init failures (``Runtime.ImportModuleError``
or the exception raised at import), ``Sandbox.Timedout`` (the worker is killed at the template's
``Timeout`` and replaced on the next invocation) and ``Runtime.ExitError`` (the worker died).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from local_cloud.lambda_result import UNHANDLED, LambdaResult
from local_cloud.lambda_worker_main import read_frame, write_frame
from local_cloud.stack import REPO_ROOT, FunctionInfo, function_name_from

WORKER_MAIN = Path(__file__).resolve().with_name("lambda_worker_main.py")
TRAINING_CODE_DIR = REPO_ROOT / "training"
LOG_TAIL_MAX_CHARS = 64 * 1024
_REPORT_WAIT_SECONDS = 2.0
_CLOSE_GRACE_SECONDS = 2.0

LogSink = Callable[[str, str], None]
"""``(function logical id, log line)``: every line any worker of the function writes."""


class UnknownFunction(LookupError):
    """The invoked name is none of the stack's functions."""


def _error_result(error_type: str, message: str, log: str = "") -> LambdaResult:
    payload = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return LambdaResult(payload=payload, function_error=UNHANDLED, log_tail=log)


class _Worker:
    """One worker process: a frame reader thread and a log reader thread."""

    def __init__(
        self,
        function: FunctionInfo,
        environment: Mapping[str, str],
        python: str,
        on_log: Callable[[str], None],
    ) -> None:
        self.function = function
        self.process = subprocess.Popen(  # our own interpreter and worker script
            [python, str(WORKER_MAIN)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(environment),
            cwd=function.code_dir,
            start_new_session=True,
        )
        self.ready = False
        self.used = False
        self._frames: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._on_log = on_log
        self._lines: list[str] = []
        self._lines_lock = threading.Lock()
        self._reports: set[str] = set()
        self._report_seen = threading.Condition(self._lines_lock)
        assert self.process.stdout is not None and self.process.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_frames, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self._read_logs, args=(self.process.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def _read_frames(self, stream: IO[bytes]) -> None:
        try:
            while (frame := read_frame(stream)) is not None:  # type: ignore[arg-type]
                self._frames.put(frame)
        except (OSError, ValueError):
            pass
        self._frames.put(None)

    def _read_logs(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self._on_log(line)
            with self._lines_lock:
                self._lines.append(line)
                if line.startswith("REPORT RequestId: "):
                    self._reports.add(line.split()[2])
                    self._report_seen.notify_all()

    def next_frame(self, timeout: float) -> dict[str, Any] | None:
        """The next frame; None when the worker died; raises ``queue.Empty`` on timeout."""
        return self._frames.get(timeout=max(0.0, timeout))

    def send(self, frame: dict[str, Any]) -> bool:
        try:
            assert self.process.stdin is not None
            write_frame(self.process.stdin, frame)  # type: ignore[arg-type]
            return True
        except (OSError, ValueError):
            return False

    def take_logs(self, request_id: str | None = None) -> str:
        """The lines since the last call; first waits briefly for ``request_id``'s REPORT."""
        with self._report_seen:
            if request_id is not None:
                self._report_seen.wait_for(
                    lambda: request_id in self._reports or not self.alive(),
                    timeout=_REPORT_WAIT_SECONDS,
                )
                self._reports.discard(request_id)
            lines, self._lines = self._lines, []
        return "\n".join(lines) + ("\n" if lines else "")

    def exit_description(self) -> str:
        code = self.process.poll()
        if code is None:
            return "Runtime exited without providing a reason"
        if code < 0:
            return f"Runtime exited with error: signal: {signal.Signals(-code).name.lower()}"
        return f"Runtime exited with error: exit status {code}"

    def close_input(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        self.join()

    def join(self, timeout: float = 2.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


class _Pool:
    """The workers of one function: idle ones are reused, busy ones counted against the bound."""

    def __init__(self, spawn: Callable[[], _Worker], max_workers: int) -> None:
        self._spawn = spawn
        self._max = max_workers
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._reserved = 0
        self._closed = False
        self._changed = threading.Condition()

    def acquire(self) -> _Worker:
        with self._changed:
            while True:
                if self._closed:
                    raise RuntimeError("the Lambda workers are closed")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    self._discard_locked(worker)
                if len(self._all) + self._reserved < self._max:
                    self._reserved += 1
                    break
                self._changed.wait()
        try:
            worker = self._spawn()
        except BaseException:
            with self._changed:
                self._reserved -= 1
                self._changed.notify_all()
            raise
        with self._changed:
            self._reserved -= 1
            self._all.add(worker)
            if self._closed:
                worker.kill()
                raise RuntimeError("the Lambda workers are closed")
        return worker

    def release(self, worker: _Worker, healthy: bool) -> None:
        with self._changed:
            if healthy and worker.alive() and not self._closed:
                self._idle.append(worker)
            else:
                self._discard_locked(worker)
            self._changed.notify_all()

    def _discard_locked(self, worker: _Worker) -> None:
        self._all.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        threading.Thread(target=worker.kill, daemon=True).start()

    def workers(self) -> list[_Worker]:
        with self._changed:
            return list(self._all)

    def close(self) -> list[_Worker]:
        with self._changed:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._changed.notify_all()
        return workers


class LambdaWorkers:
    """Warm worker pools for a stack's functions; :meth:`invoke` is moto_patches' invoker."""

    def __init__(
        self,
        functions: Iterable[FunctionInfo],
        *,
        endpoint_url: str,
        region: str,
        environment_overrides: Mapping[str, str] | None = None,
        training_code_dir: Path = TRAINING_CODE_DIR,
        max_workers_per_function: int = 4,
        log_dir: Path | None = None,
        log_sink: LogSink | None = None,
        python: str = sys.executable,
    ) -> None:
        if max_workers_per_function < 1:
            raise ValueError("max_workers_per_function must be >= 1")
        self._functions = {f.logical_id: f for f in functions}
        self._endpoint_url = endpoint_url
        self._region = region
        self._overrides = dict(environment_overrides or {})
        self._training_code_dir = training_code_dir
        self._python = python
        self._log_sink = log_sink
        self._log_dir = log_dir
        self._log_lock = threading.Lock()
        self._log_files: dict[str, IO[str]] = {}
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
        self._pools = {
            logical_id: _Pool(self._spawner(function), max_workers_per_function)
            for logical_id, function in self._functions.items()
        }
        self._closed = False

    # -- public API ------------------------------------------------------------------------
    def function(self, name_or_arn: str) -> FunctionInfo:
        if name_or_arn in self._functions:
            return self._functions[name_or_arn]
        name = function_name_from(name_or_arn)
        for function in self._functions.values():
            if function.name == name:
                return function
        raise UnknownFunction(f"Function not found: {name_or_arn}")

    def environment(self, function: FunctionInfo) -> dict[str, str]:
        """The worker environment of ``function`` (see the module docstring)."""
        python_path = [str(function.code_dir)] + [
            str(layer.content_dir) for layer in function.layers if layer.on_python_path
        ]
        now = datetime.now(UTC)
        stream = f"{now:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        inherited = {k: v for k, v in os.environ.items() if k in ("PATH", "TMPDIR", "LANG")}
        return {
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            **inherited,
            **function.environment,
            "TRAINING_CODE_DIR": str(self._training_code_dir),
            "AWS_ENDPOINT_URL": self._endpoint_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_SESSION_TOKEN": "test",
            "AWS_REGION": self._region,
            "AWS_DEFAULT_REGION": self._region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            "_HANDLER": function.handler,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "PYTHONPATH": os.pathsep.join(python_path),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self._overrides,
        }

    def invoke(self, function_name_or_arn: str, payload: bytes) -> LambdaResult:
        """Run one invocation synchronously (``InvocationType=RequestResponse``)."""
        function = self.function(function_name_or_arn)
        pool = self._pools[function.logical_id]
        request_id = str(uuid.uuid4())
        worker = pool.acquire()
        deadline = time.time() + function.timeout
        healthy = False
        try:
            result, healthy = self._run(worker, function, request_id, payload, deadline)
            return result
        finally:
            pool.release(worker, healthy)

    def warm(self, *logical_ids: str) -> None:
        """Start (and wait for) one initialised worker per function: no cold start later.

        A function whose initialisation fails is left cold; its next invocation reports it.
        """
        targets = logical_ids or tuple(self._functions)
        threads = [
            threading.Thread(target=self._warm_one, args=(logical_id,), daemon=True)
            for logical_id in targets
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def worker_pids(self) -> list[int]:
        return [w.pid for pool in self._pools.values() for w in pool.workers() if w.alive()]

    def close(self) -> None:
        """Stop every worker (stdin closed, then SIGKILL of its process group)."""
        if self._closed:
            return
        self._closed = True
        workers = [w for pool in self._pools.values() for w in pool.close()]
        for worker in workers:
            worker.close_input()
        deadline = time.monotonic() + _CLOSE_GRACE_SECONDS
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            worker.kill()
        with self._log_lock:
            for handle in self._log_files.values():
                handle.close()
            self._log_files.clear()

    def __enter__(self) -> LambdaWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _spawner(self, function: FunctionInfo) -> Callable[[], _Worker]:
        def spawn() -> _Worker:
            return _Worker(
                function,
                self.environment(function),
                self._python,
                lambda line: self._log(function.logical_id, line),
            )

        return spawn

    def _log(self, logical_id: str, line: str) -> None:
        if self._log_dir is not None:
            with self._log_lock:
                handle = self._log_files.get(logical_id)
                if handle is None and not self._closed:
                    path = self._log_dir / f"{logical_id}.log"
                    handle = self._log_files[logical_id] = path.open("a", encoding="utf-8")
                if handle is not None:
                    handle.write(line + "\n")
                    handle.flush()
        if self._log_sink is not None:
            self._log_sink(logical_id, line)

    def _warm_one(self, logical_id: str) -> None:
        pool = self._pools[logical_id]
        function = self._functions[logical_id]
        try:
            worker = pool.acquire()
        except RuntimeError:
            return
        healthy = False
        try:
            if not worker.ready:
                frame = worker.next_frame(float(max(function.timeout, 10)))
                healthy = frame is not None and frame.get("type") == "ready"
                worker.ready = healthy
            else:
                healthy = True
        except queue.Empty:
            healthy = False
        finally:
            pool.release(worker, healthy)

    def _run(
        self,
        worker: _Worker,
        function: FunctionInfo,
        request_id: str,
        payload: bytes,
        deadline: float,
    ) -> tuple[LambdaResult, bool]:
        try:
            if not worker.ready:
                frame = worker.next_frame(deadline - time.time())
                if frame is None:
                    message = f"RequestId: {request_id} Error: {worker.exit_description()}"
                    return _error_result("Runtime.ExitError", message, worker.take_logs()), False
                if frame.get("type") == "init_error":
                    error = json.dumps(frame["error"]).encode()
                    log = worker.take_logs()
                    return LambdaResult(error, UNHANDLED, log[-LOG_TAIL_MAX_CHARS:]), False
                worker.ready = True
            sent = worker.send(
                {
                    "id": request_id,
                    "payload": payload.decode("utf-8", errors="replace"),
                    "deadlineMs": int(deadline * 1000),
                    "functionArn": function.arn,
                }
            )
            frame = worker.next_frame(deadline - time.time()) if sent else None
        except queue.Empty:
            message = f"Task timed out after {function.timeout:.2f} seconds"
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            self._log(function.logical_id, f"{stamp} {request_id} {message}")
            worker.kill()
            log = worker.take_logs() + f"{stamp} {request_id} {message}\n"
            result = _error_result(
                "Sandbox.Timedout", f"RequestId: {request_id} Error: {message}", log
            )
            return result, False
        if frame is None or frame.get("id") != request_id:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=_CLOSE_GRACE_SECONDS)
            message = f"RequestId: {request_id} Error: {worker.exit_description()}"
            return _error_result("Runtime.ExitError", message, worker.take_logs()), False
        log = worker.take_logs(request_id)[-LOG_TAIL_MAX_CHARS:]
        body = str(frame["payload"]).encode()
        return LambdaResult(body, None if frame["ok"] else UNHANDLED, log), True
