"""``LocalCloud``: the whole application on this machine, no AWS account, no Docker.

Start order (each step needs the previous ones)::

    port check -> moto server on 127.0.0.1:<port> (MOTO_PORT) -> reset moto's state
    -> Step Functions executes ASL -> LocalSageMaker runtime -> moto_patches.install
    -> deploy template.yaml (local_cloud.deploy) -> warm Lambda workers -> SQS pollers

``close()`` undoes it in reverse: pollers, workers, patches, runtime (training processes and
endpoint servers), moto's state, the server; no child process or port is left behind.

**What persists.** moto keeps every AWS resource (bucket objects, table items, executions, the
stack) in this process's memory only: it is gone when the cloud stops, with or without a state
directory. ``state_dir`` keeps the files the local runtimes write: training job trees and logs
(``sagemaker/``) and every function's log (``lambda-logs/<LogicalId>.log``). Without it they go
to a temporary directory removed at close.

One ``LocalCloud`` per process: moto's backends, its configuration and the patches are global.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import boto3

from local_cloud.deploy import DEFAULT_REGION, DEFAULT_STACK_NAME, deploy
from local_cloud.event_source import EventSources, s3_event_for
from local_cloud.lambda_result import UNHANDLED, LambdaResult
from local_cloud.lambda_workers import LambdaWorkers, LogSink, UnknownFunction
from local_cloud.stack import FAKE_CREDENTIALS, DeployedStack

if TYPE_CHECKING:
    from local_cloud.sagemaker import LocalSageMaker, RuntimeSettings

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 4566
# Local resources are ready within seconds: AWS-sized waits only slow a local run down.
# Anything given explicitly (LocalCloud(parameters=...), `refit local up --parameter`) wins.
LOCAL_PARAMETER_DEFAULTS: Mapping[str, str] = {
    "BatchingWindowSeconds": "5",
    "EndpointPollSeconds": "2",
    # A canary you can watch: a quarter of the traffic for 2 s, then all of it, 1 s of baking.
    "RolloutStepPercent": "25",
    "RolloutWaitSeconds": "2",
    "RolloutBakeSeconds": "1",
}

_active_lock = threading.Lock()
_active: LocalCloud | None = None


class LocalCloudError(RuntimeError):
    """The local cloud cannot start."""


class PortInUse(LocalCloudError):
    pass


def ensure_port_free(port: int, host: str = HOST) -> None:
    """Raise :class:`PortInUse` when something listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise PortInUse(
                f"port {port} is in use: is another `refit local up` running? "
                "(stop it, or choose another port with --port)"
            ) from None


@dataclass(frozen=True)
class ConnectionInfo:
    """How to reach the local cloud from a shell, the AWS CLI, boto3 or ``refit``."""

    endpoint_url: str
    region: str
    stack_name: str
    bucket: str
    state_machine_arn: str
    endpoint_name: str
    runs_table: str
    topic_arn: str
    queue_url: str
    access_key_id: str = FAKE_CREDENTIALS["aws_access_key_id"]
    secret_access_key: str = FAKE_CREDENTIALS["aws_secret_access_key"]

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "REFIT_STACK": self.stack_name,
        }

    def export_line(self) -> str:
        return "export " + " ".join(f"{k}={v}" for k, v in self.environment().items())


class LocalCloud:
    """moto + the local SageMaker runtime + Lambda workers + SQS pollers, with the stack deployed.

    ``port=None`` picks a free port (tests); a given port must be free. ``parameters`` override
    template parameters on top of :data:`LOCAL_PARAMETER_DEFAULTS`. ``runtime_settings`` tunes
    the SageMaker runtime (``local_cloud.sagemaker.RuntimeSettings``).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        state_dir: Path | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = DEFAULT_REGION,
        parameters: Mapping[str, object] | None = None,
        runtime_settings: RuntimeSettings | None = None,
        max_workers_per_function: int = 4,
        warm_functions: bool = True,
        log_sink: LogSink | None = None,
        poll_wait_seconds: int = 1,
    ) -> None:
        self._requested_port = port
        self._state_dir = state_dir
        self.stack_name = stack_name
        self.region = region
        self._explicit_parameters = {k: str(v) for k, v in (parameters or {}).items()}
        self.parameters = {**LOCAL_PARAMETER_DEFAULTS, **self._explicit_parameters}
        self._runtime_settings = runtime_settings
        self._max_workers = max_workers_per_function
        self._warm = warm_functions
        self._log_sink = log_sink
        self._poll_wait = poll_wait_seconds
        self._server: Any = None
        self._port: int | None = None
        self._temp_dir: Path | None = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_config: Any = None
        self._patched = False
        self._stack: DeployedStack | None = None
        self._sagemaker: LocalSageMaker | None = None
        self._workers: LambdaWorkers | None = None
        self._event_sources: EventSources | None = None
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LocalCloud:
        global _active
        if self._started:
            return self
        if self._requested_port is not None:
            ensure_port_free(self._requested_port)
        with _active_lock:
            if _active is not None:
                raise LocalCloudError(
                    "a LocalCloud is already running in this process (moto's state and "
                    "patches are per process): close it first"
                )
            _active = self
        self._started = True
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        work_dir = self._work_dir()
        self._start_server()
        self._configure_moto()
        from local_cloud import moto_patches
        from local_cloud.sagemaker import LocalSageMaker, RuntimeSettings

        settings = self._runtime_settings or RuntimeSettings()
        self._sagemaker = LocalSageMaker(
            self.client("s3"),
            work_dir / "sagemaker",
            settings=settings,
            # UpdateEndpoint's auto-rollback alarms: read from this process's moto CloudWatch.
            alarm_state=moto_patches.cloudwatch_alarm_state(self.region),
            # Job output in CloudWatch Logs, where the SDKs and `aws logs tail` read it.
            logs=self.client("logs"),
        )
        moto_patches.install(sagemaker=self._sagemaker, invoke_lambda=self.invoke_lambda)
        self._patched = True
        self._stack = deploy(
            self.endpoint_url,
            stack_name=self.stack_name,
            region=self.region,
            parameters=self.parameters,
        )
        for warning in self._stack.warnings:
            if any(f"parameter {name}=" in warning for name in self._explicit_parameters):
                logger.warning(warning)
        self._workers = LambdaWorkers(
            self._stack.functions.values(),
            endpoint_url=self.endpoint_url,
            region=self.region,
            max_workers_per_function=self._max_workers,
            log_dir=work_dir / "lambda-logs",
            log_sink=self._log_sink,
        )
        if self._warm:
            self._workers.warm()
        self._event_sources = EventSources(
            self._stack.event_source_mappings,
            self.client("sqs"),
            self.invoke_lambda,
            region=self.region,
            poll_wait_seconds=self._poll_wait,
        ).start()

    def _work_dir(self) -> Path:
        if self._state_dir is not None:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            return self._state_dir.resolve()
        self._temp_dir = Path(tempfile.mkdtemp(prefix="refit-local-"))
        return self._temp_dir

    def _start_server(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=HOST, port=self._requested_port or 0, verbose=False)
        # start() waits forever if the bind fails (a port taken since the check): bound it.
        starter = threading.Thread(target=server.start, daemon=True)
        starter.start()
        starter.join(timeout=15)
        if starter.is_alive():
            raise PortInUse(
                f"port {self._requested_port} is in use: is another `refit local up` running?"
            )
        self._server = server
        self._port = int(server.get_host_and_port()[1])
        self._set_env("MOTO_PORT", str(self._port))
        # Fresh state: an earlier LocalCloud of this process left its resources in moto.
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):  # loopback URL we built
            pass

    def _configure_moto(self) -> None:
        from moto.core.config import default_user_config

        # Before the state machine is created: the flag selects the backend that stores it.
        self._saved_config = json.loads(json.dumps(default_user_config.get("stepfunctions", {})))
        default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True

    def _set_env(self, name: str, value: str) -> None:
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def close(self) -> None:
        """Stop everything this cloud started. Idempotent; safe after a failed start."""
        global _active
        if self._closed or not self._started:
            return
        self._closed = True
        steps: list[tuple[str, Callable[[], None]]] = []
        if self._stack is not None:
            steps.append(("running executions", self._stop_executions))
        if self._event_sources is not None:
            sources = self._event_sources
            steps.append(("signal pollers", lambda: sources.request_stop()))
        if self._workers is not None:
            steps.append(("Lambda workers", self._workers.close))
        if self._event_sources is not None:
            steps.append(("SQS pollers", self._event_sources.stop))
        if self._patched:
            steps.append(("moto patches", self._uninstall_patches))
        if self._sagemaker is not None:
            steps.append(("SageMaker runtime", self._sagemaker.close))
        if self._server is not None:
            steps.append(("moto state", self._reset_moto))
            steps.append(("moto server", self._server.stop))
        steps.append(("moto config", self._restore_config))
        for description, step in steps:
            try:
                step()
            except Exception:  # keep closing the rest
                logger.exception("closing the local cloud: %s failed", description)
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
        with _active_lock:
            if _active is self:
                _active = None

    def _stop_executions(self) -> None:
        """Abort running executions first: nothing should call into what is being closed."""
        sfn = self.client("stepfunctions")
        listed = sfn.list_executions(
            stateMachineArn=self.stack.state_machine_arn, statusFilter="RUNNING"
        )
        for execution in listed["executions"]:
            sfn.stop_execution(
                executionArn=execution["executionArn"],
                error="LocalCloud.Shutdown",
                cause="refit local cloud stopped",
            )

    def _uninstall_patches(self) -> None:
        from local_cloud import moto_patches

        moto_patches.uninstall()

    def _reset_moto(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):  # loopback URL we built
            pass

    def _restore_config(self) -> None:
        if self._saved_config is None:
            return
        from moto.core.config import default_user_config

        default_user_config["stepfunctions"] = self._saved_config

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the running cloud offers --------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise LocalCloudError("the local cloud is not started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def stack(self) -> DeployedStack:
        if self._stack is None:
            raise LocalCloudError("the stack is not deployed (start() first)")
        return self._stack

    @property
    def sagemaker(self) -> LocalSageMaker:
        """The :class:`local_cloud.sagemaker.LocalSageMaker` runtime behind moto's SageMaker."""
        if self._sagemaker is None:
            raise LocalCloudError("the local cloud is not started")
        return self._sagemaker

    @property
    def workers(self) -> LambdaWorkers:
        if self._workers is None:
            raise LocalCloudError("the Lambda workers are not started")
        return self._workers

    @property
    def event_sources(self) -> EventSources:
        if self._event_sources is None:
            raise LocalCloudError("the event sources are not started")
        return self._event_sources

    def connection_info(self) -> ConnectionInfo:
        stack = self.stack
        return ConnectionInfo(
            endpoint_url=self.endpoint_url,
            region=self.region,
            stack_name=stack.stack_name,
            bucket=stack.bucket,
            state_machine_arn=stack.state_machine_arn,
            endpoint_name=stack.endpoint_name,
            runs_table=stack.runs_table,
            topic_arn=stack.topic_arn,
            queue_url=stack.queue_url,
        )

    def client(self, service: str) -> Any:
        """A boto3 client of ``service`` talking to this cloud."""
        return boto3.client(
            service, endpoint_url=self.endpoint_url, region_name=self.region, **FAKE_CREDENTIALS
        )

    def invoke_lambda(self, function_name: str, payload: bytes) -> LambdaResult:
        """What moto's Lambda runs (``moto_patches``' invoker): the stack's real handlers."""
        workers = self._workers
        try:
            if workers is None:
                raise UnknownFunction(function_name)
            return workers.invoke(function_name, payload)
        except UnknownFunction:
            message = (
                f"{function_name} is not a function of stack {self.stack_name}: the local cloud "
                "runs only the deployed template's functions"
            )
        except RuntimeError as error:  # workers closed while shutting down
            message = str(error)
        body = json.dumps({"errorType": "Runtime.Unavailable", "errorMessage": message})
        return LambdaResult(body.encode(), UNHANDLED, message)

    # -- fault injection (demos and tests) ----------------------------------------------------
    def inject_spot_interruption(
        self,
        job_name: str | None = None,
        *,
        after_checkpoints: int | None = None,
        after_seconds: float | None = None,
    ) -> None:
        """Interrupt the named (or next) managed-spot training job once; call again for more."""
        self.sagemaker.inject_spot_interruption(
            job_name, after_checkpoints=after_checkpoints, after_seconds=after_seconds
        )

    def inject_spot_capacity_never_arrives(self, job_name: str | None = None) -> None:
        """The named (or next) managed-spot job waits for capacity until MaxWaitTimeInSeconds
        and ends Stopped/MaxWaitTimeExceeded (armed on a running job: from its next attempt)."""
        self.sagemaker.inject_spot_capacity_never_arrives(job_name)

    def inject_training_failure(
        self, job_name: str | None = None, reason: str | None = None
    ) -> None:
        """The named (or next) training job fails once its script runs, with ``reason`` as its
        FailureReason (default: SageMaker's out-of-memory message)."""
        if reason is None:
            self.sagemaker.inject_training_failure(job_name)
        else:
            self.sagemaker.inject_training_failure(job_name, reason)

    def delay_s3_event(self, key: str, *, duplicate: bool = False) -> None:
        """Hold the next S3 event for ``key`` back from StartRetrain until
        :meth:`release_delayed_events` (``duplicate``: deliver it now and hold a copy)."""
        self.event_sources.delayed.arm(s3_event_for(key), duplicate=duplicate)

    def release_delayed_events(self) -> int:
        """Put the held S3 events back on the trigger queue; returns how many."""
        return self.event_sources.delayed.release()

    def inject_endpoint_update_failure(
        self, endpoint_name: str | None = None, reason: str | None = None
    ) -> None:
        """Make the next update of ``endpoint_name`` (default: the stack's endpoint) fail."""
        name = endpoint_name or self.stack.endpoint_name
        if reason is None:
            self.sagemaker.inject_endpoint_update_failure(name)
        else:
            self.sagemaker.inject_endpoint_update_failure(name, reason)


# ---------------------------------------------------------------------------- `refit local up`


def usage(info: ConnectionInfo, state: str) -> str:
    """What `refit local up` prints once the cloud is ready."""
    endpoint = info.endpoint_name
    return "\n".join(
        [
            f"refit local cloud is up: stack {info.stack_name} on {info.endpoint_url} "
            f"({info.region})",
            f"  bucket         {info.bucket}",
            f"  state machine  {info.state_machine_arn}",
            f"  endpoint name  {endpoint}",
            f"  runs table     {info.runs_table}",
            f"  state          {state}",
            "",
            "In another shell:",
            f"  {info.export_line()}",
            f"  aws s3 cp test.csv s3://{info.bucket}/data/test/   # holdout set (once)",
            f"  aws s3 cp new.csv s3://{info.bucket}/data/train/   # starts a run",
            "  refit runs",
            f"  aws stepfunctions list-executions --state-machine-arn {info.state_machine_arn}",
            "  refit predict rows.csv",
            f"  aws sagemaker-runtime invoke-endpoint --endpoint-name {endpoint} "
            "--content-type text/csv --body fileb://rows.csv /dev/stdout",
            "",
            "Ctrl-C stops it (moto's state is in memory and ends with it).",
        ]
    )


def main_local_up(args: Any, stack_name: str) -> int:
    """``refit local up`` (parsed by ``refit_cli.cli``)."""
    if args.local_command != "up":
        raise SystemExit(f"unknown local command {args.local_command}")
    try:
        parameters = parse_parameters(args.parameter)
    except LocalCloudError as error:
        print(f"refit local up: {error}", file=sys.stderr)
        return 2
    return up(
        port=args.port,
        state_dir=args.state_dir,
        spot_interruptions=args.spot_interruptions,
        stack_name=stack_name,
        parameters=parameters,
    )


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LocalCloudError(f"--parameter wants KEY=VALUE, got {pair!r}")
        parameters[key] = value
    return parameters


def up(
    *,
    port: int = DEFAULT_PORT,
    state_dir: Path | None = None,
    spot_interruptions: int = 0,
    stack_name: str = DEFAULT_STACK_NAME,
    parameters: Mapping[str, str] | None = None,
    out: Any = None,
) -> int:
    """`refit local up`: start, print how to connect, serve until Ctrl-C or SIGTERM."""
    stream = out or sys.stdout
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    lock = threading.Lock()

    def print_log(function: str, line: str) -> None:
        with lock:
            stream.write(f"[{function}] {line}\n")
            stream.flush()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # moto logs every failed state of an execution with its whole parse tree; the execution
    # history says the same (aws stepfunctions get-execution-history).
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    try:
        ensure_port_free(port)
        print(f"starting the local cloud on {HOST}:{port}...", file=stream, flush=True)
        cloud = LocalCloud(
            port=port,
            state_dir=state_dir,
            stack_name=stack_name,
            parameters=parameters,
            log_sink=print_log,
        )
        with cloud:
            for _ in range(spot_interruptions):
                cloud.inject_spot_interruption(after_checkpoints=1)
            state = (
                f"in memory; logs and job files under {state_dir}"
                if state_dir
                else "in memory only (use --state-dir to keep logs and job files)"
            )
            print(usage(cloud.connection_info(), state), file=stream, flush=True)
            if spot_interruptions:
                print(
                    f"  armed: {spot_interruptions} spot interruption(s) for the next spot job",
                    file=stream,
                    flush=True,
                )
            stop.wait()
            print("stopping the local cloud...", file=stream, flush=True)
    except LocalCloudError as error:
        print(f"refit local up: {error}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
    print("stopped.", file=stream, flush=True)
    return 0
