"""close(): no child process, listening port or runtime thread survives it."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from local_cloud.sagemaker import LocalSageMaker, ValidationError
from tests.emulator.local_sagemaker_harness import (
    FAST_SETTINGS,
    child_processes,
    endpoint_config,
    model_request,
    put,
    tar_gz,
    training_request,
    upload_code,
    wait_for_endpoint,
    wait_until,
)

SLEEPER = """
    import os, time
    from pathlib import Path
    (Path(os.environ["SM_OUTPUT_DATA_DIR"]) / "pid").write_text(str(os.getpid()))
    while True:
        time.sleep(0.05)
"""

INFERENCE = """
    def model_fn(model_dir):
        return 1
"""


def test_close_stops_jobs_servers_and_threads(s3: Any, tmp_path: Path) -> None:
    # Given a runtime with a running training job and a live endpoint
    threads_before = set(threading.enumerate())
    runtime = LocalSageMaker(s3, tmp_path / "rt", settings=FAST_SETTINGS)
    code = upload_code(s3, "code/sleeper.tar.gz", {"train.py": SLEEPER})
    runtime.start_training_job(training_request("job-sleeps", code))
    model = model_request(
        put(s3, "models/m/model.tar.gz", tar_gz({"x": "1"})),
        upload_code(s3, "code/m.tar.gz", {"inference.py": INFERENCE}),
    )
    runtime.create_endpoint("ep", endpoint_config("cfg", "m"), {"m": model})
    assert wait_for_endpoint(runtime, "ep")["EndpointStatus"] == "InService"
    host, port = runtime.endpoint_address("ep")
    job_dir = Path(runtime.describe_training_job("job-sleeps")["LocalRuntime"]["JobDirectory"])
    pid_file = job_dir / "attempt-1" / "output" / "data" / "pid"
    wait_until(pid_file.exists)
    assert int(pid_file.read_text()) in child_processes()

    # When it is closed
    runtime.close()

    # Then the job is Stopped and its process gone, the port closed, the threads ended
    assert runtime.describe_training_job("job-sleeps")["TrainingJobStatus"] == "Stopped"
    assert child_processes() == []
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass
    wait_until(lambda: set(threading.enumerate()) <= threads_before, timeout=5)

    # And it accepts no new work; closing again is harmless
    with pytest.raises(ValidationError, match="closed"):
        runtime.start_training_job(training_request("job-late", code))
    runtime.close()


def test_context_manager_closes(s3: Any, tmp_path: Path) -> None:
    code = upload_code(s3, "code/sleeper.tar.gz", {"train.py": SLEEPER})
    with LocalSageMaker(s3, tmp_path / "rt", settings=FAST_SETTINGS) as runtime:
        runtime.start_training_job(training_request("job-sleeps", code))
        wait_until(
            lambda: runtime.describe_training_job("job-sleeps")["SecondaryStatus"] == "Training"
        )
    assert child_processes() == []
    description = runtime.describe_training_job("job-sleeps")
    assert description["TrainingJobStatus"] == "Stopped"
    assert json.dumps(description["LocalRuntime"])  # extras stay JSON-friendly
