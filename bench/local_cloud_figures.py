"""Figures 2, 3, 6 and 7: one local cloud, driven only through uploads and AWS APIs.

One :class:`local_cloud.cloud.LocalCloud` (template.yaml deployed, the local defaults of
``refit local up`` except ``BatchingWindowSeconds=1``, the template's minimum, so the window
is a small known part of every figure) serves all four, in this order:

3. trigger latency: a small upload to ``data/train/`` → the execution's ``startDate``, minus
   the batching window; ``SAMPLES`` times, each run stopped once started (training is not what
   this measures) and the run lock released before the next upload.
2. orchestration overhead: ``train.py`` alone on the data (a subprocess, same hyperparameters,
   same holdout: the physical limit), then the same CSV uploaded: wall time from the start of
   the upload until the endpoint answers on the new model's config, divided by the script's
   own wall time. The execution history splits the overhead by phase.
7. state transitions: ``*StateEntered`` events of the two runs that succeeded (the first one
   creates the endpoint; a second, incremental one updates it), without the endpoint wait
   loop's repeated polls (one pass of the loop is counted).
6. serving: on the live endpoint, single-record ``/invocations`` latency (an HTTP request to
   the endpoint's model server, as a client in the VPC would send it) and the same through
   ``sagemaker-runtime InvokeEndpoint`` (moto's API in front), against ``Booster.predict`` on
   the same row in this process; then a batch transform job over the data's features against
   ``Booster.predict`` on the same rows in memory.
"""

from __future__ import annotations

import http.client
import io
import json
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from bench import data
from bench.incremental import hyperparameters
from bench.report import Row, percentile, reproduce
from bench.template import template_defaults
from bench.training_jobs import run_job

WINDOW_SECONDS = 1
POLL = 0.05
SAMPLES = {False: 3, True: 2}
ROWS = {False: 200_000, True: 20_000}  # the orchestration upload (issue: >= 200k rows)
UPDATE_ROWS = {False: 20_000, True: 2_000}
HOLDOUT_ROWS = {False: 20_000, True: 2_000}
REQUESTS = {False: 500, True: 100}
RUN_TIMEOUT = 300.0
# The endpoint wait loop (statemachine/retrain.asl.json): repeated while the endpoint settles.
WAIT_LOOP = ("WaitForEndpoint", "DescribeEndpoint", "CountEndpointPoll", "EndpointStatus")
TRIGGER_TARGET_S = 1.0
OVERHEAD_TARGET = 1.5
TRANSITIONS_TARGET = 30
BATCH_TARGET = 0.5
ENDPOINT_P50_TARGET_MS = 5.0


@dataclass
class Session:
    quick: bool
    progress: Any
    cloud: Any = None
    info: Any = None
    clients: dict[str, Any] = field(default_factory=dict)
    dataset: data.Dataset | None = None

    def client(self, name: str) -> Any:
        if name not in self.clients:
            self.clients[name] = self.cloud.client(name)
        return self.clients[name]

    # -- waiting ------------------------------------------------------------------------------
    def executions(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        pages = self.client("stepfunctions").get_paginator("list_executions")
        for page in pages.paginate(stateMachineArn=self.info.state_machine_arn):
            found.extend(page["executions"])
        return found

    def new_execution(self, known: set[str], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for execution in self.executions():
                if execution["executionArn"] not in known:
                    return execution
            time.sleep(POLL)
        raise TimeoutError(f"no execution started within {timeout:.0f} s of the upload")

    def finished(self, arn: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        sfn = self.client("stepfunctions")
        while time.monotonic() < deadline:
            described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.2)
        raise TimeoutError(f"execution {arn} still RUNNING after {timeout:.0f} s")

    def idle(self, timeout: float = 60.0) -> None:
        """Wait until no run holds the lock and nothing is queued."""
        from refit.ledger.run_queue import RunQueue

        queue = RunQueue(self.client("dynamodb"), self.info.runs_table, self.info.stack_name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if queue.current_lock() is None and queue.queued_count() == 0:
                return
            time.sleep(0.2)
        raise TimeoutError("the run lock was not released")

    def history(self, arn: str) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def put(self, key: str, body: bytes) -> float:
        self.client("s3").put_object(Bucket=self.info.bucket, Key=key, Body=body)
        return time.time()


# --- figure 3 ----------------------------------------------------------------------------------


def stop(session: Session, arn: str) -> None:
    """StopExecution; moto refuses it for a moment right after the start, so retry briefly."""
    sfn = session.client("stepfunctions")
    for _ in range(20):
        try:
            sfn.stop_execution(executionArn=arn, error="Bench", cause="trigger latency sample")
            return
        except Exception:
            if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
                return
            time.sleep(0.25)
    raise RuntimeError(f"could not stop {arn}")


def trigger_latency(session: Session) -> list[Row]:
    assert session.dataset is not None
    small = data.csv_bytes(session.dataset.batches[0][:100])
    samples: list[float] = []
    for number in range(SAMPLES[session.quick]):
        session.idle()
        known = {e["executionArn"] for e in session.executions()}
        uploaded = session.put(f"data/train/bench/trigger-{number}.csv", small)
        execution = session.new_execution(known)
        started = execution["startDate"].timestamp()
        samples.append(started - uploaded - WINDOW_SECONDS)
        stop(session, execution["executionArn"])
        session.progress(f"  trigger sample {number}: {samples[-1]:.2f} s after the window")
    session.idle()
    worst = max(samples)
    return [
        Row(
            3,
            f"trigger latency: last upload → execution start − window ({WINDOW_SECONDS} s), "
            f"worst of {len(samples)}",
            f"{worst:.2f} s (samples {', '.join(f'{s:.2f}' for s in samples)})",
            f"≤ {TRIGGER_TARGET_S:.0f} s",
            worst <= TRIGGER_TARGET_S,
            reproduce(3, session.quick),
            ""
            if worst <= TRIGGER_TARGET_S
            else "the SQS poller's receive wait and StartRetrain's ledger/queue/lock writes "
            "(moto DynamoDB) come after the window; see bench.burst for 1,000 files",
            {"samples_s": [round(s, 3) for s in samples], "window_s": WINDOW_SECONDS},
        )
    ]


# --- figure 2 ----------------------------------------------------------------------------------


def _events_by_state(events: list[dict[str, Any]]) -> dict[str, tuple[datetime, datetime | None]]:
    """First entry and the matching exit time of each state."""
    spans: dict[str, tuple[datetime, datetime | None]] = {}
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        if entered and entered["name"] not in spans:
            spans[entered["name"]] = (event["timestamp"], None)
        elif exited and exited["name"] in spans and spans[exited["name"]][1] is None:
            spans[exited["name"]] = (spans[exited["name"]][0], event["timestamp"])
    return spans


def orchestration(session: Session) -> tuple[list[Row], str]:
    """Returns the rows and the execution ARN of the run (for figure 7)."""
    assert session.dataset is not None
    defaults = template_defaults()
    rows_count = ROWS[session.quick]
    table = np.concatenate(session.dataset.batches)[:rows_count]
    body = data.csv_bytes(table)
    holdout = data.csv_bytes(session.dataset.holdout)
    with tempfile.TemporaryDirectory(prefix="refit-bench-alone-") as temp:
        alone = run_job(
            Path(temp) / "job",
            train=[body],
            test=holdout,
            hyperparameters={**hyperparameters("full", defaults), "refit_mode": "full"},
        )
    session.progress(f"  train.py alone on {rows_count:,} rows: {alone.wall_seconds:.2f} s wall")

    session.idle()
    known = {e["executionArn"] for e in session.executions()}
    endpoint = session.info.endpoint_name
    sagemaker = session.client("sagemaker")
    started = time.time()
    uploaded = session.put("data/train/bench/orchestration.csv", body)
    execution = session.new_execution(known, timeout=120)
    arn = execution["executionArn"]
    job_name = None
    serving_at = None
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        try:
            described = sagemaker.describe_endpoint(EndpointName=endpoint)
        except sagemaker.exceptions.ClientError:
            described = None
        if described and described["EndpointStatus"] == "InService":
            job_name = described["EndpointConfigName"]
            if _answers(session, endpoint, table[:1, 1:]):
                serving_at = time.time()
                break
        time.sleep(POLL)
    if serving_at is None:
        raise TimeoutError(f"the endpoint did not serve a new model within {RUN_TIMEOUT:.0f} s")
    final = session.finished(arn)
    wall = serving_at - started
    ratio = wall / alone.wall_seconds
    overhead = wall - alone.wall_seconds
    spans = _events_by_state(session.history(arn))
    local_job = session.cloud.sagemaker.describe_training_job(job_name)
    job_times = local_job.get("TrainingStartTime"), local_job.get("TrainingEndTime")

    def seconds(state: str) -> float | None:
        span = spans.get(state)
        return (span[1] - span[0]).total_seconds() if span and span[1] else None

    start = execution["startDate"].timestamp()
    breakdown = {
        "upload_put_s": round(uploaded - started, 2),
        "upload_to_execution_start_s": round(start - uploaded, 2),
        "window_s": WINDOW_SECONDS,
        "PrepareRun_s": seconds("PrepareRun"),
        "Train_state_s": seconds("Train"),
        "training_job_s": (
            round((job_times[1] - job_times[0]).total_seconds(), 2) if all(job_times) else None
        ),
        "EvaluateModels_s": seconds("EvaluateModels"),
        "CreateModel_s": seconds("CreateModel"),
        "CreateEndpointConfig_s": seconds("CreateEndpointConfig"),
        "CreateEndpoint_s": seconds("CreateEndpoint"),
        "Train_exit_to_serving_s": (
            round(serving_at - spans["Train"][1].timestamp(), 2)
            if spans.get("Train") and spans["Train"][1]
            else None
        ),
        "train_py_alone_s": round(alone.wall_seconds, 2),
        "execution_status": final["status"],
    }
    session.progress(f"  upload → serving {wall:.2f} s; breakdown {breakdown}")
    passed = ratio <= OVERHEAD_TARGET and final["status"] == "SUCCEEDED"
    note = ""
    if not passed:
        parts = {k: v for k, v in breakdown.items() if isinstance(v, float | int) and v}
        note = (
            f"fixed overhead {overhead:.1f} s on {alone.wall_seconds:.1f} s of training; by phase "
            f"(s): {json.dumps(parts)}. The training job itself runs train.py in a subprocess "
            "after syncing channels and code from S3 (moto), and the endpoint loads the model "
            "from S3 after CreateEndpoint; the endpoint poll interval (EndpointPollSeconds) adds "
            "up to one interval"
        )
    return [
        Row(
            2,
            f"orchestration: upload → new model serving / train.py alone ({rows_count:,} rows)",
            f"{ratio:.2f}× ({wall:.1f} s / {alone.wall_seconds:.1f} s); fixed overhead "
            f"{overhead:.1f} s",
            f"≤ {OVERHEAD_TARGET}×",
            passed,
            reproduce(2, session.quick),
            note,
            breakdown,
        )
    ], arn


def _answers(session: Session, endpoint: str, features: np.ndarray[Any, Any]) -> bool:
    try:
        response = session.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=endpoint,
            ContentType="text/csv",
            Accept="text/csv",
            Body=data.csv_bytes(features),
        )
        response["Body"].read()
    except Exception:
        return False
    return True


# --- figure 7 ----------------------------------------------------------------------------------


def path_of(names: list[str]) -> str:
    """Which way the run went, from the states it entered."""
    for state, label in (
        ("UpdateEndpoint", "promoted, UpdateEndpoint"),
        ("CreateEndpoint", "promoted, CreateEndpoint"),
        ("RunBatchTransform", "promoted, batch transform"),
        ("RecordRejected", "rejected (challenger lost)"),
    ):
        if state in names:
            return label
    return "other"


def count_transitions(events: list[dict[str, Any]]) -> dict[str, Any]:
    entered = [e for e in events if e["type"].endswith("StateEntered")]
    names = [e["stateEnteredEventDetails"]["name"] for e in entered]
    loop_passes = names.count(WAIT_LOOP[0])
    in_loop = sum(1 for name in names if name in WAIT_LOOP)
    repeated = in_loop - (in_loop // loop_passes if loop_passes else 0)
    return {
        "path": path_of(names),
        "entered": len(names),
        "wait_loop_passes": loop_passes,
        "excluding_wait_polls": len(names) - repeated,
    }


def update_run(session: Session) -> str:
    """A second upload: incremental training from the champion, UpdateEndpoint."""
    assert session.dataset is not None
    session.idle()
    known = {e["executionArn"] for e in session.executions()}
    rows = UPDATE_ROWS[session.quick]
    session.put("data/train/bench/update.csv", data.csv_bytes(session.dataset.batches[-1][:rows]))
    arn: str = session.new_execution(known, timeout=120)["executionArn"]
    final = session.finished(arn)
    session.progress(f"  update run: {final['status']}")
    return arn


def transitions(session: Session, runs: dict[str, str]) -> list[Row]:
    counted = {label: count_transitions(session.history(arn)) for label, arn in runs.items()}
    statuses = {
        label: session.client("stepfunctions").describe_execution(executionArn=arn)["status"]
        for label, arn in runs.items()
    }
    worst = max(c["excluding_wait_polls"] for c in counted.values())
    ok = worst <= TRANSITIONS_TARGET and all(s == "SUCCEEDED" for s in statuses.values())
    return [
        Row(
            7,
            "state transitions per successful run, excluding endpoint wait polls",
            "; ".join(
                f"{label} run, {c['path']}: {c['excluding_wait_polls']} ({c['entered']} with "
                f"{c['wait_loop_passes']} wait-loop passes)"
                for label, c in counted.items()
            ),
            f"≤ {TRANSITIONS_TARGET}",
            ok,
            reproduce(7, session.quick),
            "" if ok else f"statuses {statuses}",
            {"counts": counted, "statuses": statuses},
        )
    ]


# --- figure 6 ----------------------------------------------------------------------------------


def live_booster(session: Session) -> tuple[Any, str]:
    import xgboost as xgb

    sagemaker = session.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=session.info.endpoint_name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model_name = config["ProductionVariants"][0]["ModelName"]
    url = sagemaker.describe_model(ModelName=model_name)["PrimaryContainer"]["ModelDataUrl"]
    location = urlparse(url)
    archive = session.client("s3").get_object(Bucket=location.netloc, Key=location.path[1:])
    with tarfile.open(fileobj=io.BytesIO(archive["Body"].read())) as tar:
        member = tar.extractfile("xgboost-model")
        assert member is not None
        raw = member.read()
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    return booster, model_name


def serving(session: Session) -> list[Row]:
    import xgboost as xgb

    assert session.dataset is not None
    booster, model_name = live_booster(session)
    features = np.concatenate(session.dataset.batches)[: ROWS[session.quick], 1:]
    # Rows as the CSV holds them (float32 in the container, as in xgboost).
    requests = REQUESTS[session.quick]
    sample = features[:requests]
    host, port = session.cloud.sagemaker.endpoint_address(session.info.endpoint_name)
    runtime = session.client("sagemaker-runtime")
    bodies = [data.csv_bytes(row[None, :]) for row in sample]

    direct, via_api, raw = [], [], []
    answers = []
    # One kept-alive connection, as a client's connection pool would hold.
    connection = http.client.HTTPConnection(host, port, timeout=30)
    for index, body in enumerate(bodies):
        begin = time.perf_counter()
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
        answer = connection.getresponse().read()
        direct.append(time.perf_counter() - begin)
        answers.append(float(answer))
        begin = time.perf_counter()
        runtime.invoke_endpoint(
            EndpointName=session.info.endpoint_name, ContentType="text/csv", Body=body
        )["Body"].read()
        via_api.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        booster.predict(xgb.DMatrix(sample[index : index + 1].astype(np.float32)))
        raw.append(time.perf_counter() - begin)
    connection.close()
    expected = booster.predict(xgb.DMatrix(sample.astype(np.float32)))
    same = bool(np.allclose(answers, expected, rtol=1e-5, atol=1e-5))

    # Batch transform over every row's features vs predict on the same rows in memory.
    bucket = session.info.bucket
    session.put("batch/input/bench/records.csv", data.csv_bytes(features))
    sagemaker = session.client("sagemaker")
    job = f"bench-transform-{int(time.time())}"
    begin = time.perf_counter()
    sagemaker.create_transform_job(
        TransformJobName=job,
        ModelName=model_name,
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=6,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/batch/input/"}
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={
            "S3OutputPath": f"s3://{bucket}/batch/output/{job}/",
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    while True:
        status = sagemaker.describe_transform_job(TransformJobName=job)["TransformJobStatus"]
        if status not in ("InProgress", "Stopping"):
            break
        time.sleep(POLL)
    transform_s = time.perf_counter() - begin
    if status != "Completed":
        raise RuntimeError(f"transform job {job} ended {status}")
    matrix_rows = features.astype(np.float32)
    raw_batch = []
    for _ in range(3):
        begin = time.perf_counter()
        booster.predict(xgb.DMatrix(matrix_rows))
        raw_batch.append(time.perf_counter() - begin)
    raw_s = min(raw_batch)
    begin = time.perf_counter()
    parsed = np.loadtxt(io.BytesIO(data.csv_bytes(features)), delimiter=",", dtype=np.float32)
    booster.predict(xgb.DMatrix(parsed))
    parse_and_predict_s = time.perf_counter() - begin
    n = len(features)
    batch_ratio = (n / transform_s) / (n / raw_s)
    p50, p99 = percentile(direct, 0.5) * 1000, percentile(direct, 0.99) * 1000
    api50, api99 = percentile(via_api, 0.5) * 1000, percentile(via_api, 0.99) * 1000
    raw50, raw99 = percentile(raw, 0.5) * 1000, percentile(raw, 0.99) * 1000
    details = {
        "requests": requests,
        "endpoint_http_ms": {"p50": round(p50, 3), "p99": round(p99, 3)},
        "invoke_endpoint_api_ms": {"p50": round(api50, 3), "p99": round(api99, 3)},
        "raw_predict_ms": {"p50": round(raw50, 3), "p99": round(raw99, 3)},
        "endpoint_matches_raw": same,
        "batch_rows": n,
        "transform_wall_s": round(transform_s, 3),
        "raw_predict_s": round(raw_s, 4),
        "raw_parse_and_predict_s": round(parse_and_predict_s, 3),
    }
    session.progress(f"  serving: {details}")
    return [
        Row(
            6,
            f"endpoint single-record latency p50 / p99 ({requests} requests) vs raw predict",
            f"{p50:.2f} / {p99:.2f} ms (raw {raw50:.2f} / {raw99:.2f} ms; via InvokeEndpoint "
            f"{api50:.1f} / {api99:.1f} ms)",
            f"p50 ≤ {ENDPOINT_P50_TARGET_MS:.0f} ms",
            p50 <= ENDPOINT_P50_TARGET_MS and same,
            reproduce(6, session.quick),
            ""
            if p50 <= ENDPOINT_P50_TARGET_MS and same
            else f"answers match raw predict: {same}; a new TCP connection and a Python "
            "http.server thread per request",
            details,
        ),
        Row(
            6,
            f"batch transform rows/s vs raw predict ({n:,} rows)",
            f"{batch_ratio:.2f}× ({n / transform_s:,.0f} vs {n / raw_s:,.0f} rows/s)",
            f"≥ {BATCH_TARGET}× raw",
            batch_ratio >= BATCH_TARGET,
            reproduce(6, session.quick),
            ""
            if batch_ratio >= BATCH_TARGET
            else f"raw predict on a matrix in memory takes {raw_s:.3f} s; parsing the same CSV "
            f"text first already takes {parse_and_predict_s:.2f} s: the transform downloads the "
            "object, splits it into 6 MB payloads, parses each CSV payload (inference.py), "
            "formats and uploads the output. CSV parsing bounds it, not the model",
        ),
    ]


# --- the session -------------------------------------------------------------------------------


def measure(figures: set[int], quick: bool = False, progress: Any = print) -> list[Row]:
    from local_cloud.cloud import LocalCloud

    session = Session(quick, progress)
    session.dataset = data.deliveries(
        initial=ROWS[quick], batch=UPDATE_ROWS[quick], count=1, holdout=HOLDOUT_ROWS[quick]
    )
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="refit-bench-cloud-") as state,
        LocalCloud(
            state_dir=Path(state),
            parameters={
                "BatchingWindowSeconds": WINDOW_SECONDS,
                # The canary's waits are a chosen safety margin, not orchestration overhead.
                "RolloutMode": "AllAtOnce",
                "RolloutBakeSeconds": "0",
            },
        ) as cloud,
    ):
        session.cloud = cloud
        session.info = cloud.connection_info()
        session.put("data/test/bench-holdout.csv", data.csv_bytes(session.dataset.holdout))
        if 3 in figures:
            rows += _guarded(
                3,
                "trigger latency",
                f"≤ {TRIGGER_TARGET_S:.0f} s",
                quick,
                lambda: trigger_latency(session),
            )
        if figures & {2, 6, 7}:
            created: list[str] = []

            def create() -> list[Row]:
                found, arn = orchestration(session)
                created.append(arn)
                return found

            two = _guarded(2, "orchestration overhead", f"≤ {OVERHEAD_TARGET}×", quick, create)
            rows += [r for r in two if 2 in figures]
            if created and 7 in figures:

                def seven() -> list[Row]:
                    update = update_run(session)
                    return transitions(session, {"first": created[0], "second": update})

                rows += _guarded(7, "state transitions", f"≤ {TRANSITIONS_TARGET}", quick, seven)
            if created and 6 in figures:
                rows += _guarded(
                    6, "serving", "p50 ≤ 5 ms; batch ≥ 0.5× raw", quick, lambda: serving(session)
                )
    return rows


def _guarded(figure: int, name: str, target: str, quick: bool, run: Any) -> list[Row]:
    from bench.report import error_row

    try:
        found: list[Row] = run()
        return found
    except Exception as error:  # the other figures still run; the row says what broke
        return [error_row(figure, name, target, error, quick)]
