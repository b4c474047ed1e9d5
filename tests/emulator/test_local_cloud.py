"""LocalCloud: starts, deploys, serves the CLI and the trigger path, refuses a busy port, and
leaves nothing behind.

The module shares one LocalCloud (one per process: moto's state is global); the last test
closes it and checks the machine is as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local_cloud import moto_patches
from local_cloud.cloud import LocalCloud, LocalCloudError, PortInUse, ensure_port_free
from local_cloud.stack import REPO_ROOT, DeployError
from refit_cli import cli

CSV = b"1.0,0.5,2.0\n0.0,0.1,0.2\n1.5,0.7,2.5\n"


def child_pids() -> set[int]:
    """Live (non-zombie) direct children of this process."""
    children: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, parent = fields[0], int(fields[1])
        if parent == os.getpid() and state != "Z":
            children.add(int(stat.parent.name))
    return children


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def test_a_failed_start_cleans_up_after_itself() -> None:
    # Given no cloud, and a parameter the template does not allow
    before = child_pids()
    moto_port = os.environ.get("MOTO_PORT")
    # When a cloud starts with it
    with pytest.raises(DeployError, match="UseSpotTraining"):
        LocalCloud(parameters={"UseSpotTraining": "maybe"}, warm_functions=False).start()
    # Then nothing of it is left: processes, MOTO_PORT, patches
    assert child_pids() == before
    assert os.environ.get("MOTO_PORT") == moto_port
    assert not moto_patches.is_installed()


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def cloud(state_dir: Path) -> Iterator[LocalCloud]:
    with LocalCloud(state_dir=state_dir, parameters={"BatchingWindowSeconds": 1}) as started:
        yield started


def test_stack_outputs_resolve_for_the_refit_cli(cloud: LocalCloud) -> None:
    # Given the running cloud
    info = cloud.connection_info()
    # When the CLI reads the stack the way `refit runs` does
    outputs = cli.StackOutputs.load(cloud.client("cloudformation"), info.stack_name)
    # Then its outputs are the deployed resources
    assert outputs.bucket == info.bucket
    assert outputs.state_machine_arn == info.state_machine_arn
    assert outputs.runs_table == info.runs_table
    assert outputs.endpoint_name == info.endpoint_name == "refit-endpoint"
    assert info.endpoint_url == f"http://127.0.0.1:{cloud.port}"
    assert f"AWS_ENDPOINT_URL={info.endpoint_url}" in info.export_line()
    assert os.environ["MOTO_PORT"] == str(cloud.port)


def test_a_second_cloud_on_the_same_port_fails_clearly(cloud: LocalCloud) -> None:
    # In this process
    with pytest.raises(
        PortInUse, match=f"port {cloud.port} is in use: is another `refit local up`"
    ):
        LocalCloud(port=cloud.port).start()
    # and from the command line
    result = subprocess.run(
        [sys.executable, "-m", "refit_cli", "local", "up", "--port", str(cloud.port)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert f"port {cloud.port} is in use: is another `refit local up` running?" in result.stderr


def test_only_one_cloud_per_process(cloud: LocalCloud) -> None:
    with pytest.raises(LocalCloudError, match="already running in this process"):
        LocalCloud().start()


def test_lambda_invoke_api_runs_the_real_handler(cloud: LocalCloud) -> None:
    # When EvaluateModels is invoked through the Lambda API with an incomplete input
    function = cloud.stack.functions["EvaluateModelsFunction"]
    response = cloud.client("lambda").invoke(
        FunctionName=function.name, Payload=b'{"run": {}}', LogType="Tail"
    )
    # Then the real handler's error comes back the way Lambda reports it
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "EvaluationUnavailable"


def test_an_upload_starts_an_execution_through_the_trigger_path(
    cloud: LocalCloud, state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # Given a holdout set in data/test/
    info = cloud.connection_info()
    s3 = cloud.client("s3")
    sfn = cloud.client("stepfunctions")
    s3.put_object(Bucket=info.bucket, Key="data/test/holdout.csv", Body=CSV)

    # When a CSV lands in data/train/
    s3.put_object(Bucket=info.bucket, Key="data/train/2026/11/28/a.csv", Body=CSV)

    # Then S3 -> EventBridge -> SQS -> poller -> StartRetrain -> StartExecution starts a run
    executions = wait_for(
        lambda: sfn.list_executions(stateMachineArn=info.state_machine_arn)["executions"]
    )
    (execution,) = executions
    assert execution["name"].startswith("s3-")
    document = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert document["source"] == "s3"
    assert [o["key"] for o in document["objects"]] == ["data/train/2026/11/28/a.csv"]
    (poller,) = [p for p in cloud.event_sources.pollers if p.mapping.queue_url == info.queue_url]
    wait_for(lambda: poller.outcomes)  # recorded once the invocation returned
    assert [(len(o.message_ids), o.deleted) for o in poller.outcomes] == [(1, 1)]
    log = (state_dir / "lambda-logs" / "StartRetrainFunction.log").read_text()
    assert '"message":"dispatched the queued objects"' in log

    # and the run record PrepareRun writes is visible to `refit runs` with the printed settings
    wait_for(lambda: _runs_listed(info.environment(), monkeypatch, capsys), timeout=20)


def _runs_listed(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: Any) -> bool:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    return bool(runs) and runs[0]["runId"].startswith("s3-")


def test_fault_injection_passes_through(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the cloud's runtime replaced by one that records what it is asked to arm
    armed: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    class Recorder:
        def __getattr__(self, name: str) -> Any:
            return lambda *args, **kwargs: armed.append((name, args, kwargs))

    monkeypatch.setattr(cloud, "_sagemaker", Recorder())
    # When faults are injected through the facade
    cloud.inject_spot_interruption(after_checkpoints=1)
    cloud.inject_endpoint_update_failure(reason="injected by the test")
    cloud.inject_spot_capacity_never_arrives("a-job-this-module-never-creates")
    cloud.inject_training_failure("job-x", "AlgorithmError: bad")
    # Then each reaches the runtime with its arguments (the stack's endpoint by default)
    assert armed == [
        ("inject_spot_interruption", (None,), {"after_checkpoints": 1, "after_seconds": None}),
        ("inject_endpoint_update_failure", (cloud.stack.endpoint_name, "injected by the test"), {}),
        ("inject_spot_capacity_never_arrives", ("a-job-this-module-never-creates",), {}),
        ("inject_training_failure", ("job-x", "AlgorithmError: bad"), {}),
    ]


def test_close_leaves_no_process_port_or_patch_behind(cloud: LocalCloud, state_dir: Path) -> None:
    # Given the running cloud with its warm workers
    port = cloud.port
    workers = set(cloud.workers.worker_pids())
    assert workers and workers <= child_pids()
    # When it is closed
    cloud.close()
    # Then no child process, no listener, no patch remains; the logs stay in the state dir
    assert child_pids() == set()
    ensure_port_free(port)
    assert not moto_patches.is_installed()
    assert "MOTO_PORT" not in os.environ or os.environ["MOTO_PORT"] != str(port)
    assert (state_dir / "lambda-logs" / "StartRetrainFunction.log").is_file()
