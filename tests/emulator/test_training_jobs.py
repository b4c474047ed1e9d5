"""Training jobs in the local SageMaker runtime, driven by a small fake script."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from local_cloud.sagemaker import (
    OUT_OF_MEMORY_FAILURE,
    LocalSageMaker,
    ResourceInUse,
    RuntimeSettings,
    ValidationError,
    container,
)
from tests.emulator.local_sagemaker_harness import (
    BUCKET,
    finished_training,
    get,
    keys,
    put,
    statuses,
    training_request,
    untar,
    upload_code,
    wait_until,
)

FAKE_TRAIN = """
    import json, os, signal, sys, time
    from pathlib import Path

    env = os.environ
    hps = json.loads(env["SM_HPS"])
    behaviour = hps.get("behaviour", "succeed")
    model_dir = Path(env["SM_MODEL_DIR"])
    output_dir = Path(env["SM_OUTPUT_DATA_DIR"])
    (output_dir / "pid").write_text(str(os.getpid()))

    if behaviour == "succeed":
        channels = {}
        for name in json.loads(env["SM_CHANNELS"]):
            root = Path(env["SM_CHANNEL_" + name.upper()])
            channels[name] = sorted(
                str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
            )
        config_dir = Path(env["SM_INPUT_DIR"]) / "config"
        report = {
            "channels": channels,
            "configs": sorted(p.name for p in config_dir.iterdir()),
            "hyperparameters": json.loads((config_dir / "hyperparameters.json").read_text()),
            "inputdataconfig": json.loads((config_dir / "inputdataconfig.json").read_text()),
            "resourceconfig": json.loads((config_dir / "resourceconfig.json").read_text()),
            "env": {k: v for k, v in env.items() if k.startswith("SM_")},
            "argv": sys.argv[1:],
            "cwd": os.getcwd(),
            "train_csv": (
                (Path(env["SM_CHANNEL_TRAIN"]) / "a.csv").read_text()
                if "SM_CHANNEL_TRAIN" in env
                else None
            ),
        }
        (output_dir / "report.json").write_text(json.dumps(report))
        (model_dir / "model.txt").write_text("the model")
        for epoch, loss in enumerate([0.9, 0.5, 0.25]):
            print(f"epoch {epoch} train-loss: {loss}", flush=True)
        print("validation accuracy=0.875", flush=True)
        print("stderr line", file=sys.stderr, flush=True)
    elif behaviour == "failure-file":
        Path(env["SM_OUTPUT_FAILURE"]).write_text("ClientError: bad data " + "x" * 2000)
        sys.exit(1)
    elif behaviour == "crash":
        for i in range(100):
            print(f"noise {i}")
        print("something went badly wrong", flush=True)
        sys.exit(3)
    elif behaviour == "sleep":
        def on_term(signum, frame):
            (model_dir / "saved-on-sigterm.txt").write_text("partial")
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term)
        print("sleeping", flush=True)
        while True:
            time.sleep(0.05)
    elif behaviour == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        while True:
            time.sleep(0.05)
    elif behaviour == "count":
        # Checkpoints a counter; a restarted job resumes from the newest checkpoint.
        checkpoints = Path(env["SM_CHECKPOINT_DIR"])
        counter = checkpoints / "counter.txt"
        start = int(counter.read_text()) if counter.exists() else 0
        print(f"starting at {start}", flush=True)
        target = int(hps["target"])
        for i in range(start + 1, target + 1):
            time.sleep(0.1)
            partial = checkpoints / ".counter.partial"
            partial.write_text(str(i))
            os.replace(partial, counter)
            print(f"count {i}", flush=True)
        (model_dir / "count.txt").write_text(str(target))
        (output_dir / "run.json").write_text(json.dumps({"started_at": start}))
"""

LOSS = {"Name": "train:loss", "Regex": r"train-loss: ([0-9.]+)"}
ACCURACY = {"Name": "validation:accuracy", "Regex": r"accuracy=([0-9.]+)"}


@pytest.fixture
def code(s3: Any) -> str:
    return upload_code(s3, "code/sourcedir.tar.gz", {"train.py": FAKE_TRAIN})


def job_file(description: dict[str, Any], attempt: int, relative: str) -> Path:
    return Path(description["LocalRuntime"]["JobDirectory"]) / f"attempt-{attempt}" / relative


def test_successful_job_downloads_channels_runs_script_and_uploads_artifacts(
    runtime: LocalSageMaker, s3: Any, code: str
) -> None:
    # Given a prefix channel, a manifest channel and a model channel holding a model.tar.gz
    put(s3, "data/train/a.csv", "1,2,3\n")
    put(s3, "data/train/sub/b.csv", "4,5,6\n")
    put(s3, "data/other/c.csv", "7,8,9\n")
    put(s3, "data/other/d.csv", "not listed")
    manifest = put(
        s3,
        "runs/r1/train.manifest",
        json.dumps([{"prefix": f"s3://{BUCKET}/data/other/"}, "c.csv"]),
    )
    put(s3, "models/champion/output/model.tar.gz", b"tarball")
    request = training_request(
        "job-ok",
        code,
        hyperparameters={"num_round": "10", "eta": "0.3"},
        channels={
            "train": ("S3Prefix", f"s3://{BUCKET}/data/train/"),
            "test": ("ManifestFile", manifest),
            "model": ("S3Prefix", f"s3://{BUCKET}/models/champion/output/model.tar.gz"),
        },
        metrics=[LOSS, ACCURACY],
    )

    # When the job runs
    first = runtime.start_training_job(request)
    description = finished_training(runtime, "job-ok")

    # Then it starts InProgress/Starting and completes through SageMaker's secondary statuses
    assert (first["TrainingJobStatus"], first["SecondaryStatus"]) == ("InProgress", "Starting")
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert description["SecondaryStatus"] == "Completed"
    assert statuses(description) == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    for transition in description["SecondaryStatusTransitions"]:
        assert transition["StartTime"] <= transition["EndTime"]
        assert transition["StatusMessage"]
    assert description["TrainingStartTime"] <= description["TrainingEndTime"]
    assert description["TrainingTimeInSeconds"] >= 1
    assert description["BillableTimeInSeconds"] == description["TrainingTimeInSeconds"]
    assert "FailureReason" not in description

    # And the metrics are the last values the log printed
    metrics = {m["MetricName"]: m["Value"] for m in description["FinalMetricDataList"]}
    assert metrics == {"train:loss": 0.25, "validation:accuracy": 0.875}

    # And model.tar.gz and output.tar.gz are where SageMaker puts them
    artifact = description["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"s3://{BUCKET}/models/job-ok/output/model.tar.gz"
    assert keys(s3, "models/job-ok/") == [
        "models/job-ok/output/model.tar.gz",
        "models/job-ok/output/output.tar.gz",
    ]
    assert untar(get(s3, "models/job-ok/output/model.tar.gz")) == {"model.txt": b"the model"}
    output = untar(get(s3, "models/job-ok/output/output.tar.gz"))
    report = json.loads(output["report.json"])

    # And the script saw the channels, config files, environment and arguments of the contract
    assert report["channels"] == {
        "train": ["a.csv", "sub/b.csv"],
        "test": ["c.csv"],
        "model": ["model.tar.gz"],
    }
    assert report["train_csv"] == "1,2,3\n"
    assert report["configs"] == [
        "hyperparameters.json",
        "inputdataconfig.json",
        "resourceconfig.json",
    ]
    assert report["hyperparameters"]["sagemaker_program"] == "train.py"
    assert report["hyperparameters"]["num_round"] == "10"
    assert report["inputdataconfig"]["train"]["ContentType"] == "text/csv"
    assert report["resourceconfig"]["current_host"] == "algo-1"
    env = report["env"]
    root = job_file(description, 1, "")
    assert json.loads(env["SM_HPS"]) == {"eta": 0.3, "num_round": 10}  # decoded, as the toolkit
    assert json.loads(env["SM_CHANNELS"]) == ["model", "test", "train"]
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"]
    assert env["SM_CURRENT_HOST"] == "algo-1"
    assert Path(env["SM_MODEL_DIR"]) == root / "model"
    assert Path(env["SM_CHANNEL_TRAIN"]) == root / "input" / "data" / "train"
    assert Path(env["SM_OUTPUT_DATA_DIR"]) == root / "output" / "data"
    assert Path(env["SM_INPUT_DIR"]) == root / "input"
    assert Path(env["SM_OUTPUT_FAILURE"]) == root / "output" / "failure"
    assert Path(env["SM_ROOT"]) == root
    assert int(env["SM_NUM_CPUS"]) >= 1
    assert report["argv"] == ["--eta", "0.3", "--num_round", "10"]
    assert Path(report["cwd"]) == root / "code"

    # And the log holds stdout and stderr
    log = Path(description["LocalRuntime"]["LogFile"]).read_text()
    assert "epoch 2 train-loss: 0.25" in log
    assert "stderr line" in log


def test_failure_file_becomes_the_failure_reason(
    runtime: LocalSageMaker, code: str, s3: Any
) -> None:
    # Given a script that writes a long failure message and exits 1
    request = training_request("job-fails", code, hyperparameters={"behaviour": "failure-file"})

    # When it runs
    runtime.start_training_job(request)
    description = finished_training(runtime, "job-fails")

    # Then the job failed with the first 1024 characters of the failure file
    assert description["TrainingJobStatus"] == "Failed"
    assert statuses(description)[-1] == "Failed"
    reason = description["FailureReason"]
    assert reason.startswith("ClientError: bad data xxx")
    assert len(reason) == 1024
    assert "ModelArtifacts" not in description
    assert keys(s3, "models/job-fails/") == []


def test_crash_without_failure_file_reports_exit_code_and_log_tail(
    runtime: LocalSageMaker, code: str
) -> None:
    runtime.start_training_job(
        training_request("job-crash", code, hyperparameters={"behaviour": "crash"})
    )
    description = finished_training(runtime, "job-crash")

    assert description["TrainingJobStatus"] == "Failed"
    reason = description["FailureReason"]
    assert reason.startswith("AlgorithmError: ExecuteUserScriptError: exit code 3")
    assert reason.endswith("something went badly wrong")
    assert len(reason) <= 1024


def test_missing_program_fails_the_job(runtime: LocalSageMaker, code: str) -> None:
    runtime.start_training_job(training_request("job-noprog", code, program="nope.py"))
    description = finished_training(runtime, "job-noprog")
    assert description["TrainingJobStatus"] == "Failed"
    assert "nope.py not found" in description["FailureReason"]


def test_missing_channel_data_fails_in_downloading(runtime: LocalSageMaker, code: str) -> None:
    manifest = f"s3://{BUCKET}/runs/missing.manifest"
    runtime.start_training_job(
        training_request("job-nodata", code, channels={"train": ("ManifestFile", manifest)})
    )
    description = finished_training(runtime, "job-nodata")
    assert description["TrainingJobStatus"] == "Failed"
    assert description["FailureReason"].startswith("ClientError: Data download failed")
    assert statuses(description) == ["Starting", "Downloading", "Failed"]


def test_empty_channel_fails_like_sagemaker(runtime: LocalSageMaker, code: str) -> None:
    runtime.start_training_job(
        training_request(
            "job-empty", code, channels={"validation": ("S3Prefix", f"s3://{BUCKET}/nothing/")}
        )
    )
    description = finished_training(runtime, "job-empty")
    assert description["TrainingJobStatus"] == "Failed"
    assert "No S3 objects found" in description["FailureReason"]


def test_stop_terminates_the_process_and_keeps_what_it_saved(
    runtime: LocalSageMaker, code: str, s3: Any
) -> None:
    # Given a running job
    runtime.start_training_job(
        training_request("job-stop", code, hyperparameters={"behaviour": "sleep"})
    )
    wait_until(lambda: runtime.describe_training_job("job-stop")["SecondaryStatus"] == "Training")
    pid_file = job_file(runtime.describe_training_job("job-stop"), 1, "output/data/pid")
    wait_until(pid_file.exists)
    pid = int(pid_file.read_text())

    # When it is stopped
    runtime.stop_training_job("job-stop")
    stopping = runtime.describe_training_job("job-stop")
    description = finished_training(runtime, "job-stop")

    # Then it went Stopping → Stopped, the process is gone, and the model dir was uploaded
    assert stopping["TrainingJobStatus"] in ("Stopping", "Stopped")
    assert description["TrainingJobStatus"] == "Stopped"
    assert description["SecondaryStatus"] == "Stopped"
    assert statuses(description)[-2:] == ["Stopping", "Stopped"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    model = untar(get(s3, "models/job-stop/output/model.tar.gz"))
    assert model == {"saved-on-sigterm.txt": b"partial"}

    # And a stopped job cannot be stopped again
    with pytest.raises(ValidationError, match="status Stopped"):
        runtime.stop_training_job("job-stop")


def test_sigkill_after_the_grace_period(s3: Any, tmp_path: Path, code: str) -> None:
    from local_cloud.sagemaker import RuntimeSettings
    from tests.emulator.local_sagemaker_harness import FAST_SETTINGS

    settings = RuntimeSettings(**{**FAST_SETTINGS.__dict__, "stop_grace_seconds": 0.3})
    with LocalSageMaker(s3, tmp_path / "rt", settings=settings) as runtime:
        runtime.start_training_job(
            training_request("job-stubborn", code, hyperparameters={"behaviour": "ignore-sigterm"})
        )
        log_file = Path(runtime.describe_training_job("job-stubborn")["LocalRuntime"]["LogFile"])
        wait_until(lambda: "ignoring SIGTERM" in log_file.read_text())
        runtime.stop_training_job("job-stubborn")
        description = finished_training(runtime, "job-stubborn", timeout=10)
        assert description["TrainingJobStatus"] == "Stopped"
        assert "SIGKILL" in log_file.read_text()


def test_max_runtime_exceeded_stops_the_job(runtime: LocalSageMaker, code: str) -> None:
    runtime.start_training_job(
        training_request("job-slow", code, hyperparameters={"behaviour": "sleep"}, max_runtime=1)
    )
    description = finished_training(runtime, "job-slow")

    assert description["TrainingJobStatus"] == "Stopped"
    assert description["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert statuses(description)[-1] == "MaxRuntimeExceeded"
    assert "MaxRuntimeInSeconds" in description["FailureReason"]


def test_spot_interruption_restarts_and_resumes_from_s3_checkpoints(
    runtime: LocalSageMaker, code: str, s3: Any
) -> None:
    # Given a managed-spot job that checkpoints a counter, and an interruption armed for it
    checkpoints = f"s3://{BUCKET}/checkpoints/job-spot/"
    runtime.inject_spot_interruption(after_checkpoints=3)
    request = training_request(
        "job-spot",
        code,
        hyperparameters={"behaviour": "count", "target": "12"},
        spot=True,
        checkpoint_uri=checkpoints,
    )

    # When it runs
    runtime.start_training_job(request)
    description = finished_training(runtime, "job-spot")

    # Then it was interrupted once, restarted, and completed
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert statuses(description) == [
        "Starting",
        "Downloading",
        "Training",
        "Interrupted",
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert description["LocalRuntime"]["Interruptions"] == 1
    assert description["LocalRuntime"]["Attempts"] == 2
    interrupted = description["SecondaryStatusTransitions"][3]
    assert "interruption 1" in interrupted["StatusMessage"]

    # And the second attempt ran in a fresh directory seeded from S3, resuming past zero
    run = json.loads(untar(get(s3, "models/job-spot/output/output.tar.gz"))["run.json"])
    assert run["started_at"] >= 3
    first_attempt_counter = job_file(description, 1, "checkpoints/counter.txt").read_text()
    assert int(first_attempt_counter) == run["started_at"]
    assert get(s3, "checkpoints/job-spot/counter.txt") == b"12"
    log = Path(description["LocalRuntime"]["LogFile"]).read_text()
    assert "starting at 0" in log
    assert f"starting at {run['started_at']}" in log

    # And only the time the process ran is billed
    assert 1 <= description["BillableTimeInSeconds"] <= description["TrainingTimeInSeconds"]
    assert description["LocalRuntime"]["ProcessSeconds"] > 1.0


def test_the_output_of_each_container_start_is_a_cloudwatch_log_stream(
    s3: Any, tmp_path: Path, settings: RuntimeSettings, code: str
) -> None:
    # Given a runtime that writes to CloudWatch Logs, and a spot job interrupted once
    logs = boto3.client("logs", region_name="us-east-1")
    runtime = LocalSageMaker(s3, tmp_path / "sm", settings=settings, logs=logs)
    try:
        runtime.inject_spot_interruption(after_checkpoints=3)
        request = training_request(
            "job-logs",
            code,
            hyperparameters={"behaviour": "count", "target": "8"},
            spot=True,
            checkpoint_uri=f"s3://{BUCKET}/checkpoints/job-logs/",
        )
        runtime.start_training_job(request)
        assert finished_training(runtime, "job-logs")["TrainingJobStatus"] == "Completed"
    finally:
        runtime.close()

    # Then each attempt has its stream in /aws/sagemaker/TrainingJobs, as SageMaker names them
    group = "/aws/sagemaker/TrainingJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix="job-logs/")
    names = sorted(stream["logStreamName"] for stream in streams["logStreams"])
    assert len(names) == 2
    assert all(re.fullmatch(r"job-logs/algo-1-\d{10}", name) for name in names)
    # And holds the script's own lines, in order (the runtime's notes stay in its file)
    first, second = (
        [e["message"] for e in logs.get_log_events(logGroupName=group, logStreamName=name,
                                                  startFromHead=True)["events"]]
        for name in names
    )  # fmt: skip
    assert first[0] == "starting at 0"
    assert second[0].startswith("starting at ") and second[-1] == "count 8"
    assert not any(line.startswith("[local-sagemaker]") for line in first + second)


# What the SDK v3 does: a driver script in an input channel, run by ContainerEntrypoint.
ENTRYPOINT_SCRIPT = """
cp /opt/ml/input/data/train/a.csv /opt/ml/model/
echo $TRAINING_JOB_NAME > /opt/ml/output/data/name.txt
cat /opt/ml/input/config/hyperparameters.json > /opt/ml/output/data/hps.json
echo $SM_CHANNEL_TRAIN $SM_MODEL_DIR > /opt/ml/output/data/paths.txt
python3 -c 'import xgboost; print("python3 has xgboost", xgboost.__version__)'
"""


def test_a_running_jobs_lines_reach_cloudwatch_while_it_runs(
    s3: Any, tmp_path: Path, settings: RuntimeSettings, code: str
) -> None:
    # Given a job that prints one line and then stays quiet (as a long boosting round does)
    logs = boto3.client("logs", region_name="us-east-1")
    runtime = LocalSageMaker(s3, tmp_path / "sm", settings=settings, logs=logs)
    try:
        runtime.start_training_job(
            training_request("job-quiet", code, hyperparameters={"behaviour": "sleep"})
        )

        def logged() -> list[str]:
            group = "/aws/sagemaker/TrainingJobs"
            if not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
                return []  # the container has not started yet
            streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
            return [
                event["message"]
                for stream in streams
                for event in logs.get_log_events(
                    logGroupName=group, logStreamName=stream["logStreamName"]
                )["events"]
            ]

        # Then its line is there before the job ends (SDK clients follow the stream live)
        wait_until(lambda: "sleeping" in logged(), timeout=10, interval=0.2)
        assert runtime.describe_training_job("job-quiet")["TrainingJobStatus"] == "InProgress"
    finally:
        runtime.close()


def test_a_container_entrypoint_runs_with_the_jobs_tree_at_opt_ml(
    runtime: LocalSageMaker, s3: Any
) -> None:
    # Given a job that brings its own command (as the SageMaker Python SDK v3 does), no script
    put(s3, "data/a.csv", "1,2,3\n")
    put(s3, "drivers/run.sh", ENTRYPOINT_SCRIPT)
    request = training_request(
        "job-entrypoint",
        "unused",
        channels={
            "train": ("S3Prefix", f"s3://{BUCKET}/data/"),
            "sm_drivers": ("S3Prefix", f"s3://{BUCKET}/drivers/"),
        },
    )
    request["HyperParameters"] = {"depth": "3"}  # no sagemaker_program
    request["AlgorithmSpecification"]["ContainerEntrypoint"] = [
        "/bin/sh",
        "-c",
        "chmod +x /opt/ml/input/data/sm_drivers/run.sh && /opt/ml/input/data/sm_drivers/run.sh",
    ]
    namespace_problem = container.namespace_problem()

    runtime.start_training_job(request)
    description = finished_training(runtime, "job-entrypoint")

    if namespace_problem is not None:  # not root on Linux: a clear reason, not a wrong run
        assert description["TrainingJobStatus"] == "Failed"
        assert namespace_problem in description["FailureReason"]
        return
    # Then it ran at the absolute paths of the container contract, in its own namespace
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert untar(get(s3, "models/job-entrypoint/output/model.tar.gz")) == {"a.csv": b"1,2,3\n"}
    output = untar(get(s3, "models/job-entrypoint/output/output.tar.gz"))
    assert output["name.txt"] == b"job-entrypoint\n"
    assert json.loads(output["hps.json"]) == {"depth": "3"}
    # (SM_* name the paths as the job sees them: under /opt/ml)
    assert output["paths.txt"] == b"/opt/ml/input/data/train /opt/ml/model\n"
    log = Path(description["LocalRuntime"]["LogFile"]).read_text()
    assert "python3 has xgboost 3.0.5" in log
    # And nothing stayed mounted on this machine
    assert not Path("/opt/ml/model").exists()


def test_spot_capacity_delay_is_not_billed(s3: Any, tmp_path: Path, code: str) -> None:
    from local_cloud.sagemaker import RuntimeSettings
    from tests.emulator.local_sagemaker_harness import FAST_SETTINGS

    settings = RuntimeSettings(**{**FAST_SETTINGS.__dict__, "spot_capacity_delay_seconds": 1.5})
    with LocalSageMaker(s3, tmp_path / "rt", settings=settings) as runtime:
        runtime.start_training_job(training_request("job-wait", code, spot=True))
        description = finished_training(runtime, "job-wait")
    assert description["TrainingJobStatus"] == "Completed"
    assert description["TrainingTimeInSeconds"] >= 2
    assert description["BillableTimeInSeconds"] < description["TrainingTimeInSeconds"]
    assert description["SecondaryStatusTransitions"][0]["StatusMessage"] == (
        "Waiting for spot capacity"
    )


def test_spot_capacity_never_arrives_exceeds_max_wait(runtime: LocalSageMaker, code: str) -> None:
    runtime.inject_spot_capacity_never_arrives("job-nocapacity")
    runtime.start_training_job(
        training_request("job-nocapacity", code, spot=True, max_runtime=1, max_wait=1)
    )
    description = finished_training(runtime, "job-nocapacity")

    assert description["TrainingJobStatus"] == "Stopped"
    assert description["SecondaryStatus"] == "MaxWaitTimeExceeded"
    assert statuses(description) == ["Starting", "MaxWaitTimeExceeded"]
    assert "MaxWaitTimeInSeconds" in description["FailureReason"]
    assert description["BillableTimeInSeconds"] == 0
    assert "ModelArtifacts" not in description


def test_injected_training_failure_kills_the_script_and_fails_the_job(
    runtime: LocalSageMaker, code: str, s3: Any
) -> None:
    # Given the next job (on demand) will run out of memory, and a running job is told to
    runtime.inject_training_failure()
    runtime.start_training_job(
        training_request("job-oom", code, hyperparameters={"behaviour": "sleep"})
    )
    runtime.start_training_job(
        training_request("job-oom-later", code, hyperparameters={"behaviour": "sleep"})
    )
    wait_until(
        lambda: runtime.describe_training_job("job-oom-later")["SecondaryStatus"] == "Training"
    )
    runtime.inject_training_failure("job-oom-later", "AlgorithmError: script ran out of luck")

    # Then both end Failed with their reason, killed (no SIGTERM handler ran), no artifacts
    for name, reason in (
        ("job-oom", OUT_OF_MEMORY_FAILURE),
        ("job-oom-later", "AlgorithmError: script ran out of luck"),
    ):
        description = finished_training(runtime, name)
        assert description["TrainingJobStatus"] == "Failed"
        assert description["FailureReason"] == reason
        assert statuses(description)[-2:] == ["Training", "Failed"]
        assert description["BillableTimeInSeconds"] >= 1
        assert "ModelArtifacts" not in description
        assert keys(s3, f"models/{name}/") == []
        log = Path(description["LocalRuntime"]["LogFile"]).read_text()
        assert "injected failure: sending SIGKILL" in log
    # And the injection was used up: the job after them succeeds
    runtime.start_training_job(training_request("job-fine", code))
    assert finished_training(runtime, "job-fine")["TrainingJobStatus"] == "Completed"


def test_requests_are_validated(runtime: LocalSageMaker, code: str) -> None:
    with pytest.raises(ValidationError, match="TrainingJobName"):
        runtime.start_training_job(training_request("bad_name", code))
    with pytest.raises(ValidationError, match="MaxWaitTimeInSeconds"):
        runtime.start_training_job(training_request("spot", code, spot=True, max_wait=1))
    request = training_request("no-program", code)
    del request["HyperParameters"]["sagemaker_program"]
    with pytest.raises(ValidationError, match="sagemaker_program"):
        runtime.start_training_job(request)
    request["AlgorithmSpecification"]["ContainerEntrypoint"] = ["/bin/sh", "-c", "x" * 257]
    with pytest.raises(ValidationError, match="1-100 strings of 1-256 characters"):
        runtime.start_training_job(request)  # SageMaker's limits on each element
    with pytest.raises(ValidationError, match=r"after_checkpoints"):
        runtime.inject_spot_interruption()

    runtime.start_training_job(training_request("twice", code))
    with pytest.raises(ResourceInUse):
        runtime.start_training_job(training_request("twice", code))
