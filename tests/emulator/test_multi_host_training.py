"""Multi-instance training jobs: one process per host, as SageMaker runs ``InstanceCount`` > 1.

Each host ``algo-<i>`` has its own ``/opt/ml`` tree under ``attempt-<k>/algo-<i>``, its own
``resourceconfig.json`` and toolkit environment, its share of the channels
(``S3DataDistributionType``) and its CloudWatch stream; the job completes when every host exits
0 and fails with the first failing host's reason.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from local_cloud.sagemaker import LocalSageMaker, RuntimeSettings, ValidationError, container
from refit import layout
from tests.emulator.local_sagemaker_harness import (
    BUCKET,
    finished_training,
    get,
    put,
    statuses,
    tar_gz,
    training_request,
    untar,
    upload_code,
    wait_until,
)
from tests.toolkits.test_training_toolkit import REFIT_ONLY, toolkit_view
from tests.toolkits.test_training_toolkit import training_request as toolkit_request

HOSTS = ["algo-1", "algo-2"]

FAKE_TRAIN = """
    import json, os, signal, sys, time
    from pathlib import Path

    env = os.environ
    host = env["SM_CURRENT_HOST"]
    hps = json.loads(env["SM_HPS"])
    behaviour = hps.get("behaviour", "report")
    model_dir = Path(env["SM_MODEL_DIR"])
    output_dir = Path(env["SM_OUTPUT_DATA_DIR"])
    (output_dir / "pid").write_text(str(os.getpid()))

    if behaviour == "report":
        channels = {}
        for name in json.loads(env["SM_CHANNELS"]):
            root = Path(env["SM_CHANNEL_" + name.upper()])
            channels[name] = {
                "exists": root.is_dir(),
                "files": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()),
            }
        config_dir = Path(env["SM_INPUT_DIR"]) / "config"
        report = {
            "channels": channels,
            "inputdataconfig": json.loads((config_dir / "inputdataconfig.json").read_text()),
            "resourceconfig": json.loads((config_dir / "resourceconfig.json").read_text()),
            "env": {k: v for k, v in env.items() if k.startswith("SM_")},
            "tracker": env.get("REFIT_TRACKER"),
            "cwd": os.getcwd(),
        }
        (output_dir / f"report-{host}.json").write_text(json.dumps(report))
        (model_dir / "model.txt").write_text(f"from {host}")
        (model_dir / f"{host}.txt").write_text(host)
        print(f"{host} says loss: {0.25 if host == 'algo-1' else 0.75}", flush=True)
        release = env.get("RELEASE_FILE")
        if release and host != "algo-1":
            print("waiting for release", flush=True)
            while not Path(release).exists():
                time.sleep(0.05)
    elif behaviour == "fail-on-algo-2":
        if host == "algo-2":
            time.sleep(0.3)
            Path(env["SM_OUTPUT_FAILURE"]).write_text("ClientError: algo-2 found bad rows")
            sys.exit(1)
        def on_term(signum, frame):
            print("algo-1 got SIGTERM", flush=True)
            sys.exit(143)
        signal.signal(signal.SIGTERM, on_term)
        print("algo-1 waiting", flush=True)
        while True:
            time.sleep(0.05)
    elif behaviour == "count":
        # Only the first host writes checkpoints (as refit's train.py: its leader); every host
        # resumes from what it finds in its own checkpoint directory.
        checkpoints = Path(env["SM_CHECKPOINT_DIR"])
        counter = checkpoints / "counter.txt"
        start = int(counter.read_text()) if counter.exists() else 0
        print(f"starting at {start}", flush=True)
        target = int(hps["target"])
        for i in range(start + 1, target + 1):
            time.sleep(0.1)
            if host == "algo-1":
                partial = checkpoints / ".counter.partial"
                partial.write_text(str(i))
                os.replace(partial, counter)
            print(f"count {i}", flush=True)
        (model_dir / "count.txt").write_text(str(target))
        (output_dir / f"run-{host}.json").write_text(json.dumps({"started_at": start}))
"""

LOSS = {"Name": "train:loss", "Regex": r"loss: ([0-9.]+)"}


@pytest.fixture
def code(s3: Any) -> str:
    return upload_code(s3, "code/multi-host.tar.gz", {"train.py": FAKE_TRAIN})


def on_hosts(request: dict[str, Any], count: int = 2) -> dict[str, Any]:
    request["ResourceConfig"]["InstanceCount"] = count
    return request


def shard(request: dict[str, Any], *channels: str) -> dict[str, Any]:
    for channel in request["InputDataConfig"]:
        if channel["ChannelName"] in channels:
            channel["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    return request


def attempt_dir(description: dict[str, Any], attempt: int = 1) -> Path:
    return Path(description["LocalRuntime"]["JobDirectory"]) / f"attempt-{attempt}"


def host_lines(log: str, host: str) -> list[str]:
    """The script lines of ``host`` in the job's log file (``algo-<i> | line``)."""
    prefix = f"{host} | "
    return [line[len(prefix) :] for line in log.splitlines() if line.startswith(prefix)]


def pid_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_each_host_gets_its_own_tree_config_environment_share_and_stream(
    s3: Any, tmp_path: Path, settings: RuntimeSettings, code: str
) -> None:
    # Given a 2-host job: a channel of 4 objects and one of 1 object, sharded; one replicated
    for name in ("d.csv", "a.csv", "c.csv", "b.csv"):
        put(s3, f"data/train/{name}", f"{name}\n")
    put(s3, "data/one/only.csv", "1\n")
    put(s3, "data/test/t1.csv", "t1\n")
    put(s3, "data/test/t2.csv", "t2\n")
    listed = put(
        s3,
        "runs/listed.manifest",  # in no particular order: the hosts share the sorted keys
        json.dumps([{"prefix": f"s3://{BUCKET}/data/train/"}, "d.csv", "b.csv", "a.csv"]),
    )
    release = tmp_path / "release"
    request = on_hosts(
        shard(
            training_request(
                "job-two-hosts",
                code,
                channels={
                    "train": ("S3Prefix", f"s3://{BUCKET}/data/train/"),
                    "one": ("S3Prefix", f"s3://{BUCKET}/data/one/"),
                    "test": ("S3Prefix", f"s3://{BUCKET}/data/test/"),
                    "listed": ("ManifestFile", listed),
                },
                metrics=[LOSS],
                environment={"RELEASE_FILE": str(release)},
            ),
            "train",
            "one",
            "listed",
        )
    )
    logs = boto3.client("logs", region_name="us-east-1")
    runtime = LocalSageMaker(s3, tmp_path / "sm", settings=settings, logs=logs)
    try:
        # When it runs, and algo-1 is done while algo-2 still waits
        runtime.start_training_job(request)
        log_file = Path(runtime.describe_training_job("job-two-hosts")["LocalRuntime"]["LogFile"])
        wait_until(lambda: "algo-1: training process exited" in _notes_or_empty(log_file))
        wait_until(lambda: "waiting for release" in log_file.read_text())
        waiting = runtime.describe_training_job("job-two-hosts")
        # Then the job is still training: it completes only when every host has exited 0
        assert (waiting["TrainingJobStatus"], waiting["SecondaryStatus"]) == (
            "InProgress",
            "Training",
        )
        codes = {h["Host"]: h["ExitCode"] for h in waiting["LocalRuntime"]["Hosts"]}
        assert codes == {"algo-1": 0, "algo-2": None}
        release.write_text("go")
        description = finished_training(runtime, "job-two-hosts")
    finally:
        runtime.close()
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert statuses(description) == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]

    # And each host wrote its report from its own tree, merged into output.tar.gz
    output = untar(get(s3, "models/job-two-hosts/output/output.tar.gz"))
    assert sorted(output) == ["pid", "report-algo-1.json", "report-algo-2.json"]
    reports = {host: json.loads(output[f"report-{host}.json"]) for host in HOSTS}
    root = attempt_dir(description)
    trackers = set()
    for index, host in enumerate(HOSTS):
        report, env = reports[host], reports[host]["env"]
        assert report["resourceconfig"]["current_host"] == host
        assert report["resourceconfig"]["hosts"] == HOSTS
        assert report["resourceconfig"]["network_interface_name"] == "eth0"
        assert report["resourceconfig"]["instance_groups"][0]["hosts"] == HOSTS
        assert env["SM_CURRENT_HOST"] == host
        assert json.loads(env["SM_HOSTS"]) == HOSTS
        training_env = json.loads(env["SM_TRAINING_ENV"])
        assert training_env["is_master"] is (index == 0)
        assert training_env["master_hostname"] == "algo-1"
        assert Path(env["SM_MODEL_DIR"]) == root / host / "model"
        assert Path(env["SM_CHANNEL_TRAIN"]) == root / host / "input" / "data" / "train"
        assert Path(report["cwd"]) == root / host / "code"
        assert report["inputdataconfig"]["train"]["S3DistributionType"] == "ShardedByS3Key"
        assert report["inputdataconfig"]["test"]["S3DistributionType"] == "FullyReplicated"
        trackers.add(report["tracker"])
        # FullyReplicated: every host gets every object
        assert report["channels"]["test"]["files"] == ["t1.csv", "t2.csv"]
    # And both hosts were given the same loopback tracker address, on a real port
    (tracker,) = trackers
    address, _, port = tracker.rpartition(":")
    assert address == "127.0.0.1" and 1024 <= int(port) <= 65535

    # And ShardedByS3Key dealt the sorted objects between the hosts: disjoint halves
    train = {host: reports[host]["channels"]["train"]["files"] for host in HOSTS}
    assert train == {"algo-1": ["a.csv", "c.csv"], "algo-2": ["b.csv", "d.csv"]}
    listed_files = {host: reports[host]["channels"]["listed"]["files"] for host in HOSTS}
    assert listed_files == {"algo-1": ["a.csv", "d.csv"], "algo-2": ["b.csv"]}
    # (fewer objects than hosts: the last host's channel directory exists and is empty)
    one = {host: reports[host]["channels"]["one"] for host in HOSTS}
    assert one == {
        "algo-1": {"exists": True, "files": ["only.csv"]},
        "algo-2": {"exists": True, "files": []},
    }

    # And model.tar.gz merges the hosts' model directories, algo-1 winning a name clash
    model = untar(get(s3, "models/job-two-hosts/output/model.tar.gz"))
    assert model == {"model.txt": b"from algo-1", "algo-1.txt": b"algo-1", "algo-2.txt": b"algo-2"}
    log = Path(description["LocalRuntime"]["LogFile"]).read_text()
    assert "several hosts wrote model.txt" in log

    # And the log file keeps every host's lines, prefixed; the metrics come from algo-1 only
    assert "algo-1 says loss: 0.25" in host_lines(log, "algo-1")
    assert "algo-2 says loss: 0.75" in host_lines(log, "algo-2")
    metrics = {m["MetricName"]: m["Value"] for m in description["FinalMetricDataList"]}
    assert metrics == {"train:loss": 0.25}

    # And each host's output is its own CloudWatch stream, <job>/algo-<i>-<epoch>, unprefixed
    group = "/aws/sagemaker/TrainingJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix="job-two-hosts/")
    names = sorted(stream["logStreamName"] for stream in streams["logStreams"])
    assert [re.sub(r"-\d{10}$", "", name) for name in names] == [
        "job-two-hosts/algo-1",
        "job-two-hosts/algo-2",
    ]
    for host, name in zip(HOSTS, names, strict=True):
        events = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)
        messages = [event["message"] for event in events["events"]]
        assert messages[0] == f"{host} says loss: {0.25 if host == 'algo-1' else 0.75}"
    assert [h["LogStream"] for h in description["LocalRuntime"]["Hosts"]] == names

    # And time is billed per instance: BillableTimeInSeconds is not multiplied by the hosts
    assert description["BillableTimeInSeconds"] == description["TrainingTimeInSeconds"]
    assert description["TrainingTimeInSeconds"] >= 1


def _notes_or_empty(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_a_host_that_fails_fails_the_job_and_the_others_do_not_outlive_it(
    runtime: LocalSageMaker, s3: Any, code: str
) -> None:
    # Given a 2-host job whose algo-2 writes a failure file and exits 1 while algo-1 waits
    request = on_hosts(
        training_request("job-host-fails", code, hyperparameters={"behaviour": "fail-on-algo-2"})
    )

    # When it runs
    runtime.start_training_job(request)
    description = finished_training(runtime, "job-host-fails")

    # Then the job failed with algo-2's FailureReason, not algo-1's exit after SIGTERM
    assert description["TrainingJobStatus"] == "Failed"
    assert statuses(description)[-2:] == ["Training", "Failed"]
    assert description["FailureReason"] == "ClientError: algo-2 found bad rows"
    assert "ModelArtifacts" not in description
    codes = {h["Host"]: h["ExitCode"] for h in description["LocalRuntime"]["Hosts"]}
    assert codes == {"algo-1": 143, "algo-2": 1}
    log = Path(description["LocalRuntime"]["LogFile"]).read_text()
    assert "algo-2 failed (exit code 1): sending SIGTERM to the other hosts" in log
    assert "algo-1 got SIGTERM" in host_lines(log, "algo-1")

    # And no host's process outlived the job
    root = attempt_dir(description)
    for host in HOSTS:
        assert pid_is_gone(int((root / host / "output" / "data" / "pid").read_text()))


def test_a_spot_interruption_stops_every_host_and_all_resume_from_the_checkpoint(
    runtime: LocalSageMaker, s3: Any, code: str
) -> None:
    # Given a 2-host spot job whose first host checkpoints a counter, interrupted once
    runtime.inject_spot_interruption("job-spot-hosts", after_checkpoints=3)
    request = on_hosts(
        training_request(
            "job-spot-hosts",
            code,
            hyperparameters={"behaviour": "count", "target": "10"},
            spot=True,
            checkpoint_uri=f"s3://{BUCKET}/checkpoints/job-spot-hosts/",
        )
    )

    # When it runs
    runtime.start_training_job(request)
    description = finished_training(runtime, "job-spot-hosts")

    # Then it was interrupted once and completed on its second attempt
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert description["LocalRuntime"]["Interruptions"] == 1
    assert "Interrupted" in statuses(description)
    # And both hosts of the first attempt were stopped
    for host in HOSTS:
        first = attempt_dir(description, 1) / host
        assert pid_is_gone(int((first / "output" / "data" / "pid").read_text()))
    # And both hosts of the second attempt resumed from the checkpoint algo-1 uploaded
    output = untar(get(s3, "models/job-spot-hosts/output/output.tar.gz"))
    started = {host: json.loads(output[f"run-{host}.json"])["started_at"] for host in HOSTS}
    assert started["algo-1"] >= 3
    assert started["algo-2"] == started["algo-1"]
    second = attempt_dir(description, 2)
    assert (second / "algo-2" / "checkpoints" / "counter.txt").read_text() == str(started["algo-1"])
    assert get(s3, "checkpoints/job-spot-hosts/counter.txt") == b"10"
    log = Path(description["LocalRuntime"]["LogFile"]).read_text()
    for host in HOSTS:
        assert host_lines(log, host).count("starting at 0") == 1
        assert f"starting at {started[host]}" in host_lines(log, host)
    # And billing stays per instance: the spot job bills the seconds its hosts ran, once
    assert 1 <= description["BillableTimeInSeconds"] <= description["TrainingTimeInSeconds"]


def test_an_injected_failure_kills_every_host(runtime: LocalSageMaker, code: str) -> None:
    runtime.inject_training_failure("job-oom-hosts")
    runtime.start_training_job(
        on_hosts(
            training_request(
                "job-oom-hosts", code, hyperparameters={"behaviour": "count", "target": "100"}
            )
        )
    )
    description = finished_training(runtime, "job-oom-hosts")

    assert description["TrainingJobStatus"] == "Failed"
    assert description["FailureReason"].startswith("OutOfMemoryError")
    root = attempt_dir(description)
    for host in HOSTS:
        pid_file = root / host / "output" / "data" / "pid"
        assert not pid_file.exists() or pid_is_gone(int(pid_file.read_text()))


def test_stop_terminates_every_host(runtime: LocalSageMaker, code: str) -> None:
    runtime.start_training_job(
        on_hosts(
            training_request(
                "job-stop-hosts", code, hyperparameters={"behaviour": "count", "target": "100"}
            ),
            3,
        )
    )
    log_file = Path(runtime.describe_training_job("job-stop-hosts")["LocalRuntime"]["LogFile"])
    wait_until(lambda: all(f"algo-{i} | count 1" in log_file.read_text() for i in (1, 2, 3)))

    runtime.stop_training_job("job-stop-hosts")
    description = finished_training(runtime, "job-stop-hosts")

    assert description["TrainingJobStatus"] == "Stopped"
    assert "sending SIGTERM to every host (stopped)" in log_file.read_text()
    root = attempt_dir(description)
    for host in ("algo-1", "algo-2", "algo-3"):
        assert pid_is_gone(int((root / host / "output" / "data" / "pid").read_text()))


def test_a_single_host_job_keeps_its_tree_and_gets_no_tracker(
    runtime: LocalSageMaker, s3: Any, code: str
) -> None:
    runtime.start_training_job(training_request("job-one-host", code))
    description = finished_training(runtime, "job-one-host")

    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    report = json.loads(
        untar(get(s3, "models/job-one-host/output/output.tar.gz"))["report-algo-1.json"]
    )
    assert report["tracker"] is None
    assert Path(report["env"]["SM_MODEL_DIR"]) == attempt_dir(description) / "model"
    assert report["resourceconfig"]["hosts"] == ["algo-1"]
    log = Path(description["LocalRuntime"]["LogFile"]).read_text()
    assert "algo-1 says loss: 0.25" in log.splitlines()  # unprefixed, as before
    assert [h["Host"] for h in description["LocalRuntime"]["Hosts"]] == ["algo-1"]


def test_fast_file_channels(runtime: LocalSageMaker, s3: Any, code: str) -> None:
    put(s3, "data/train/a.csv", "1\n")
    manifest = put(
        s3, "runs/train.manifest", json.dumps([{"prefix": f"s3://{BUCKET}/data/train/"}, "a.csv"])
    )

    # FastFile refuses a ManifestFile channel, set on the job or on the channel
    request = training_request("job-ff", code, channels={"train": ("ManifestFile", manifest)})
    request["AlgorithmSpecification"]["TrainingInputMode"] = "FastFile"
    with pytest.raises(ValidationError, match="FastFile input mode supports only S3DataType"):
        runtime.start_training_job(request)
    request["AlgorithmSpecification"]["TrainingInputMode"] = "File"
    request["InputDataConfig"][0]["InputMode"] = "FastFile"
    with pytest.raises(ValidationError, match="Channel train: FastFile"):
        runtime.start_training_job(request)
    # Pipe is not emulated; an unknown mode gets AWS's enum message
    request["InputDataConfig"][0]["InputMode"] = "Pipe"
    with pytest.raises(ValidationError, match="Pipe input mode is not supported"):
        runtime.start_training_job(request)
    request["InputDataConfig"][0]["InputMode"] = "Stream"
    with pytest.raises(ValidationError, match=r"enum value set: \[Pipe, File, FastFile\]"):
        runtime.start_training_job(request)

    # FastFile with an S3Prefix channel runs, and the container is told the channel's mode
    request = training_request(
        "job-ff",
        code,
        channels={
            "train": ("S3Prefix", f"s3://{BUCKET}/data/train/"),
            "test": ("ManifestFile", manifest),
        },
    )
    request["AlgorithmSpecification"]["TrainingInputMode"] = "FastFile"
    request["InputDataConfig"][1]["InputMode"] = "File"  # a channel overrides the job's mode
    runtime.start_training_job(request)
    description = finished_training(runtime, "job-ff")
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    report = json.loads(untar(get(s3, "models/job-ff/output/output.tar.gz"))["report-algo-1.json"])
    assert report["inputdataconfig"]["train"]["TrainingInputMode"] == "FastFile"
    assert report["inputdataconfig"]["test"]["TrainingInputMode"] == "File"
    assert report["channels"]["train"]["files"] == ["a.csv"]


def test_instance_count_is_validated(runtime: LocalSageMaker, code: str) -> None:
    bad_counts: list[Any] = [0, -1, 1.5, True]
    for bad in bad_counts:
        request = training_request("job-bad", code)
        request["ResourceConfig"]["InstanceCount"] = bad
        with pytest.raises(ValidationError, match="InstanceCount"):
            runtime.start_training_job(request)
    request = training_request("job-bad", code)
    request["ResourceConfig"]["InstanceGroups"] = [{"InstanceGroupName": "g"}]
    with pytest.raises(ValidationError, match="InstanceGroups"):
        runtime.start_training_job(request)


def test_every_host_gets_what_the_toolkit_would_give_it(tmp_path: Path) -> None:
    # The XGBoost image's toolkit reads each host's tree: our environment must equal its own
    request = toolkit_request("job-contract", {"num_round": "25"})
    request["ResourceConfig"]["InstanceCount"] = 3
    for host in ("algo-1", "algo-3"):
        tree = container.TrainingLayout(tmp_path / host / "opt" / "ml")
        tree.create(container.channel_names(request))
        container.write_config_files(tree, request, host)
        ours = container.training_environment(tree, request, {}, current_host=host)
        theirs = toolkit_view(tree.root, "job-contract")
        assert {
            k: v for k, v in ours.items() if k.startswith("SM_") and k not in REFIT_ONLY
        } == theirs["env"]
        assert theirs["env"]["SM_CURRENT_HOST"] == host
        assert json.loads(theirs["env"]["SM_HOSTS"]) == ["algo-1", "algo-2", "algo-3"]


# --- refit's own training code on two hosts ------------------------------------------------

TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
ROWS_PER_FILE = 150


def table(rows: int, seed: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=rows)
    return np.column_stack([y, x])


def csv(rows: np.ndarray[Any, Any]) -> str:
    buffer = io.StringIO()
    np.savetxt(buffer, rows, delimiter=",", fmt="%.6g")
    return buffer.getvalue()


@pytest.mark.slow
def test_the_real_train_py_on_two_hosts(runtime: LocalSageMaker, s3: Any) -> None:
    pytest.importorskip("xgboost")
    # Given refit's training code, two train files sharded between two hosts, a replicated test,
    # on spot capacity that is reclaimed once a checkpoint is in S3
    code = put(
        s3,
        "code/refit.tar.gz",
        tar_gz({name: (TRAINING_DIR / name).read_text() for name in layout.TRAINING_MODULES}),
    )
    put(s3, "data/train/part-0.csv", csv(table(ROWS_PER_FILE, seed=1)))
    put(s3, "data/train/part-1.csv", csv(table(ROWS_PER_FILE, seed=2)))
    put(s3, "data/test/test.csv", csv(table(60, seed=3)))
    request = on_hosts(
        shard(
            training_request(
                "refit-two-hosts",
                code,
                hyperparameters={
                    "objective": "reg:squarederror",
                    "num_round": "12",
                    "eval_metric": "rmse",
                    "refit_mode": "full",
                    "max_depth": "3",
                    "checkpoint_interval": "4",
                },
                channels={
                    "train": ("S3Prefix", f"s3://{BUCKET}/data/train/"),
                    "test": ("S3Prefix", f"s3://{BUCKET}/data/test/"),
                },
                checkpoint_uri=f"s3://{BUCKET}/checkpoints/refit-two-hosts/",
                max_runtime=120,
                spot=True,
                max_wait=240,
                environment={"REFIT_TEST_ROUND_DELAY": "0.1"},
            ),
            "train",
        )
    )

    # When the job runs, interrupted once
    runtime.start_training_job(request)
    runtime.inject_spot_interruption("refit-two-hosts", after_checkpoints=1)
    description = finished_training(runtime, "refit-two-hosts", timeout=180)

    # Then it completes with one model of every planned round, trained on every row
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert description["LocalRuntime"]["Interruptions"] == 1
    with tarfile.open(
        fileobj=io.BytesIO(get(s3, "models/refit-two-hosts/output/model.tar.gz"))
    ) as tar:
        assert tar.getnames() == ["xgboost-model"]
    evaluation = json.loads(
        untar(get(s3, "models/refit-two-hosts/output/output.tar.gz"))["evaluation.json"]
    )
    assert evaluation["trainRows"] == 2 * ROWS_PER_FILE
    assert evaluation["challengerRounds"] == 12
    # And each host read its own half of the train channel
    log = Path(description["LocalRuntime"]["LogFile"]).read_text()
    for host in HOSTS:
        loaded = [
            line for line in host_lines(log, host) if f"channel train: {ROWS_PER_FILE} rows" in line
        ]
        assert len(loaded) == 2, host_lines(log, host)  # once per attempt
    # And after the interruption both hosts resumed from the same checkpoint round
    resumed = {
        host: [line for line in host_lines(log, host) if "resuming from checkpoint round" in line]
        for host in HOSTS
    }
    rounds = {host: [line.rsplit(" ", 1)[-1] for line in lines] for host, lines in resumed.items()}
    assert len(rounds["algo-1"]) == 1 and rounds["algo-1"] == rounds["algo-2"], resumed
    assert {h["Host"]: h["ExitCode"] for h in description["LocalRuntime"]["Hosts"]} == {
        "algo-1": 0,
        "algo-2": 0,
    }
    # And its holdout score is the one-host job's on the same data, within the 5 % the merged
    # quantile sketches allow (tests/training/test_distributed_training.py)
    alone = copy.deepcopy(request)
    alone["TrainingJobName"] = "refit-one-host"
    alone["ResourceConfig"]["InstanceCount"] = 1
    alone["EnableManagedSpotTraining"] = False
    alone["CheckpointConfig"]["S3Uri"] = f"s3://{BUCKET}/checkpoints/refit-one-host/"
    runtime.start_training_job(alone)
    one_host = finished_training(runtime, "refit-one-host", timeout=120)
    assert one_host["TrainingJobStatus"] == "Completed", one_host.get("FailureReason")
    single = json.loads(
        untar(get(s3, "models/refit-one-host/output/output.tar.gz"))["evaluation.json"]
    )
    gap = abs(evaluation["challenger"] - single["challenger"]) / single["challenger"]
    assert gap <= 0.05, (evaluation["challenger"], single["challenger"])
