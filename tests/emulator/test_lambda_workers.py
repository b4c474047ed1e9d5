"""Warm Lambda workers: real handlers, the function's environment, errors, timeouts, concurrency."""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local_cloud.deploy import deploy
from local_cloud.lambda_result import UNHANDLED
from local_cloud.lambda_workers import LambdaWorkers, UnknownFunction
from local_cloud.stack import REPO_ROOT, DeployedStack, FunctionInfo

REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def stack() -> Iterator[DeployedStack]:
    """template.yaml deployed into a moto server of this process (no patches needed here)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    url = f"http://127.0.0.1:{port}"
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset).close()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_PORT", str(port))
        yield deploy(url)
    urllib.request.urlopen(reset).close()
    server.stop()


def handler_dir(root: Path, name: str, source: str) -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "app.py").write_text(textwrap.dedent(source))
    return directory


def function(code_dir: Path, *, name: str = "Probe", timeout: int = 5) -> FunctionInfo:
    return FunctionInfo(
        logical_id=name,
        name=f"refit-{name}-TEST",
        arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:refit-{name}-TEST",
        code_dir=code_dir,
        handler="app.lambda_handler",
        runtime="python3.13",
        timeout=timeout,
        memory_size=256,
        environment={"GREETING": "hello"},
        layers=(),
        role_arn=f"arn:aws:iam::{ACCOUNT}:role/probe",
        log_group=f"/aws/lambda/refit-{name}-TEST",
    )


@pytest.fixture
def workers_for(tmp_path: Path) -> Iterator[Any]:
    """``workers_for(*functions, **options)``: LambdaWorkers closed at the end of the test."""
    created: list[LambdaWorkers] = []

    def make(*functions: FunctionInfo, **options: Any) -> LambdaWorkers:
        options.setdefault("endpoint_url", "http://127.0.0.1:9")
        options.setdefault("region", REGION)
        workers = LambdaWorkers(functions, **options)
        created.append(workers)
        return workers

    yield make
    for workers in created:
        workers.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_start_retrain_runs_for_real_and_starts_an_execution(
    stack: DeployedStack, workers_for: Any
) -> None:
    # Given the sample SQS event of two uploads to the stack's bucket
    event = json.loads((REPO_ROOT / "events" / "sqs-s3-object-created.json").read_text())
    for record in event["Records"]:
        record["body"] = record["body"].replace("refit-test-data", stack.bucket)
    start_retrain = stack.functions["StartRetrainFunction"]
    workers = workers_for(*stack.functions.values(), endpoint_url=stack.endpoint_url)

    # When the real handler runs in a worker, invoked by its function name
    result = workers.invoke(start_retrain.name, json.dumps(event).encode())

    # Then it succeeded, reported no failed item, and started one execution for both objects
    assert result.function_error is None, result.payload
    assert json.loads(result.payload) == {"batchItemFailures": []}
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=stack.endpoint_url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    (execution,) = sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    document = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert document["source"] == "s3"
    assert [o["key"] for o in document["objects"]] == [
        "data/train/2026/11/28/sales-0001.csv",
        "data/train/2026/11/28/sales-0002.csv",
    ]
    # and the invocation's logs carry Lambda's framing and the handler's Powertools lines
    assert "START RequestId: " in result.log_tail
    assert "REPORT RequestId: " in result.log_tail
    assert '"message":"dispatched the queued objects"' in result.log_tail


def test_worker_environment_is_the_functions_plus_lambdas(
    stack: DeployedStack, tmp_path: Path, workers_for: Any
) -> None:
    # Given PrepareRun's deployed configuration with a probe handler as its code
    probe = handler_dir(
        tmp_path,
        "probe",
        """
        import os, sys
        import refit

        def lambda_handler(event, context):
            return {
                "env": dict(os.environ),
                "path": sys.path,
                "refit": refit.__file__,
                "cwd": os.getcwd(),
                "context": {
                    "function_name": context.function_name,
                    "arn": context.invoked_function_arn,
                    "memory": context.memory_limit_in_mb,
                    "request_id": context.aws_request_id,
                    "remaining": context.get_remaining_time_in_millis(),
                    "log_group": context.log_group_name,
                },
            }
        """,
    )
    prepare = dataclasses.replace(stack.functions["PrepareRunFunction"], code_dir=probe)
    workers = workers_for(prepare, endpoint_url=stack.endpoint_url)

    # When it is invoked
    result = workers.invoke(prepare.arn, b"{}")

    # Then the environment is the template's, resolved, plus what Lambda and the emulator add
    assert result.function_error is None, result.payload
    seen = json.loads(result.payload)
    env = seen["env"]
    assert {k: env[k] for k in prepare.environment if k != "TRAINING_CODE_DIR"} == {
        k: v for k, v in prepare.environment.items() if k != "TRAINING_CODE_DIR"
    }
    assert env["DATA_BUCKET"] == stack.bucket
    assert env["RUNS_TABLE"] == stack.runs_table
    assert env["TRAINING_CODE_DIR"] == str(REPO_ROOT / "training")
    assert env["AWS_ENDPOINT_URL"] == stack.endpoint_url
    assert env["AWS_ACCESS_KEY_ID"] == "test"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == REGION
    assert env["_HANDLER"] == "app.lambda_handler"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == prepare.name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024"
    assert env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert "AWS_PROFILE" not in env
    # the layer is importable as in /opt/python, the code dir comes first, cwd is the task root
    assert seen["refit"] == str(REPO_ROOT / "layers" / "refit" / "refit" / "__init__.py")
    assert seen["path"][0] == str(probe)
    assert not any(p.rstrip("/").endswith("local_cloud") for p in seen["path"])
    assert seen["cwd"] == str(probe)
    context = seen["context"]
    assert context["function_name"] == prepare.name
    assert context["arn"] == prepare.arn
    assert context["memory"] == 1024
    assert 0 < context["remaining"] <= prepare.timeout * 1000
    assert context["log_group"] == "/aws/lambda/refit-functions"


def test_a_raising_handler_returns_the_runtime_error_shape(
    tmp_path: Path, workers_for: Any
) -> None:
    # Given a handler that prints, then raises
    code = handler_dir(
        tmp_path,
        "fails",
        """
        def lambda_handler(event, context):
            print("about to fail")
            raise ValueError(f"boom {event['n']}")
        """,
    )
    workers = workers_for(function(code))

    # When it is invoked twice
    first = workers.invoke("refit-Probe-TEST", b'{"n": 1}')
    pid = workers.worker_pids()
    second = workers.invoke("refit-Probe-TEST", b'{"n": 2}')

    # Then each is an Unhandled error with AWS's payload, the trace starting in app.py
    assert first.function_error == UNHANDLED
    error = json.loads(first.payload)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "boom 1"
    assert error["stackTrace"][0].startswith(f'  File "{code / "app.py"}", line 4')
    assert "about to fail" in first.log_tail
    assert "[ERROR] ValueError: boom 1" in first.log_tail
    # and the environment stays warm, as Lambda keeps it after a handler error
    assert json.loads(second.payload)["errorMessage"] == "boom 2"
    assert workers.worker_pids() == pid


@pytest.mark.parametrize(
    ("source", "error_type", "message"),
    [
        ("import not_a_module\n", "Runtime.ImportModuleError", "Unable to import module 'app'"),
        ("raise RuntimeError('no config')\n", "RuntimeError", "no config"),
        ("x = 1\n", "Runtime.HandlerNotFound", "Handler 'lambda_handler' missing"),
    ],
)
def test_init_failures_are_reported_on_the_invocation(
    tmp_path: Path, workers_for: Any, source: str, error_type: str, message: str
) -> None:
    code = handler_dir(tmp_path, "broken", source)
    workers = workers_for(function(code))
    result = workers.invoke("Probe", b"{}")
    assert result.function_error == UNHANDLED
    error = json.loads(result.payload)
    assert error["errorType"] == error_type
    assert message in error["errorMessage"]


def test_timeout_kills_the_worker_and_the_next_invocation_gets_a_fresh_one(
    tmp_path: Path, workers_for: Any
) -> None:
    # Given a function with Timeout 1 whose handler sleeps as long as it is told
    code = handler_dir(
        tmp_path,
        "sleeper",
        """
        import os, time

        def lambda_handler(event, context):
            time.sleep(event["seconds"])
            return os.getpid()
        """,
    )
    workers = workers_for(function(code, timeout=1))
    first_pid = workers.invoke("Probe", b'{"seconds": 0}').payload

    # When an invocation runs past the timeout
    started = time.monotonic()
    result = workers.invoke("Probe", b'{"seconds": 30}')

    # Then it ends at the timeout with Lambda's error, and the worker process is gone
    assert time.monotonic() - started < 3
    assert result.function_error == UNHANDLED
    error = json.loads(result.payload)
    assert error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in error["errorMessage"]
    assert "Task timed out after 1.00 seconds" in result.log_tail
    assert not pid_alive(int(first_pid))
    # and the next invocation runs in a new worker
    again = workers.invoke("Probe", b'{"seconds": 0}')
    assert again.function_error is None
    assert again.payload != first_pid


def test_a_crashed_worker_is_reported_and_replaced(tmp_path: Path, workers_for: Any) -> None:
    code = handler_dir(
        tmp_path,
        "crasher",
        """
        import os

        def lambda_handler(event, context):
            if event.get("crash"):
                os._exit(3)
            return os.getpid()
        """,
    )
    workers = workers_for(function(code))
    before = workers.invoke("Probe", b"{}").payload
    crashed = workers.invoke("Probe", b'{"crash": true}')
    assert crashed.function_error == UNHANDLED
    error = json.loads(crashed.payload)
    assert error["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in error["errorMessage"]
    after = workers.invoke("Probe", b"{}")
    assert after.function_error is None and after.payload != before


def test_concurrent_invocations_use_more_workers_up_to_the_bound(
    tmp_path: Path, workers_for: Any
) -> None:
    # Given a handler that takes 0.6 s and two pools: 3 workers, and 1 worker
    code = handler_dir(
        tmp_path,
        "slow",
        """
        import os, time

        def lambda_handler(event, context):
            time.sleep(0.6)
            return os.getpid()
        """,
    )
    wide = workers_for(function(code), max_workers_per_function=3)
    narrow = workers_for(function(code), max_workers_per_function=1)
    wide.warm()
    narrow.warm()

    def run_three(workers: LambdaWorkers) -> tuple[float, set[bytes]]:
        pids: list[bytes] = []
        threads = [
            threading.Thread(target=lambda: pids.append(workers.invoke("Probe", b"{}").payload))
            for _ in range(3)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - started, set(pids)

    # When three invocations arrive at once
    wide_seconds, wide_pids = run_three(wide)
    narrow_seconds, narrow_pids = run_three(narrow)

    # Then three workers run them in parallel, and one worker runs them one at a time
    assert len(wide_pids) == 3 and len(narrow_pids) == 1
    assert narrow_seconds >= 1.8
    assert wide_seconds < narrow_seconds - 0.6


def test_logs_go_to_the_log_file_and_sink(tmp_path: Path, workers_for: Any) -> None:
    code = handler_dir(
        tmp_path,
        "talker",
        """
        import logging

        def lambda_handler(event, context):
            print("from print")
            logging.getLogger().warning("from logging")
            return None
        """,
    )
    lines: list[tuple[str, str]] = []
    workers = workers_for(
        function(code), log_dir=tmp_path / "logs", log_sink=lambda f, line: lines.append((f, line))
    )
    result = workers.invoke("Probe", b"{}")
    assert result.payload == b"null"
    assert "from print" in result.log_tail
    assert "[WARNING]" in result.log_tail and "from logging" in result.log_tail
    assert ("Probe", "from print") in lines
    assert "from logging" in (tmp_path / "logs" / "Probe.log").read_text()


def test_bad_payload_and_unknown_function(tmp_path: Path, workers_for: Any) -> None:
    code = handler_dir(tmp_path, "echo", "def lambda_handler(event, context):\n    return event\n")
    workers = workers_for(function(code))
    bad = workers.invoke("Probe", b"{not json")
    assert json.loads(bad.payload)["errorType"] == "Runtime.UnmarshalError"
    with pytest.raises(UnknownFunction):
        workers.invoke("refit-Nope", b"{}")


def test_close_kills_every_worker(tmp_path: Path) -> None:
    code = handler_dir(tmp_path, "idle", "def lambda_handler(event, context):\n    return 1\n")
    workers = LambdaWorkers(
        [function(code), function(code, name="Other")],
        endpoint_url="http://127.0.0.1:9",
        region=REGION,
    )
    workers.warm()
    pids = workers.worker_pids()
    assert len(pids) == 2
    workers.close()
    assert not any(pid_alive(pid) for pid in pids)
    assert workers.worker_pids() == []
