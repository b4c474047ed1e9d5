"""Burst benchmark: 1,000 files uploaded within the batching window, through the real trigger path.

S3 → EventBridge rule → SQS → StartRetrain (the local cloud's SQS poller gathers batches as
Lambda's does) → Step Functions. For each configuration it reports files uploaded, the upload
span, runs started, files covered (and duplicates), seconds from the last upload to the first
and last execution start, and the size of the largest SQS event StartRetrain was invoked with
(Lambda's synchronous payload limit is 6 MB).

Run: ``make bench`` or ``.venv/bin/python -m bench.burst [--files N] [--window S]``. Results go to
``bench/results/burst.json`` (git-ignored). Not a test: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/burst.py` as well as `python -m bench.burst`
    sys.path.insert(0, str(ROOT))

from local_cloud.cloud import LocalCloud  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "burst.json"
COMMAND = "make bench  # or: .venv/bin/python -m bench.burst"
TRAIN_PREFIX = "data/train/bench-burst/"
TEST_KEY = "data/test/bench-burst-holdout.csv"
UPLOAD_THREADS = 16
TIMEOUT_SECONDS = 240.0
# A small valid CSV: label in column 0, no header.
CSV_BODY = b"1.5,0.1,0.2,0.3\n0.5,0.4,0.5,0.6\n2.5,0.7,0.8,0.9\n"


def template_defaults() -> dict[str, Any]:
    class Loader(yaml.SafeLoader):
        pass

    def any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        return None

    Loader.add_multi_constructor("!", any_tag)  # type: ignore[no-untyped-call]
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    return {name: p.get("Default") for name, p in template["Parameters"].items()}


def executions(sfn: Any, state_machine_arn: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        found.extend(page["executions"])
    return found


def run_burst(label: str, parameters: dict[str, Any], files: int) -> dict[str, Any]:
    print(f"\n== {label}: {parameters}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="refit-bench-") as state,
        LocalCloud(state_dir=Path(state), parameters=parameters) as cloud,
    ):
        info = cloud.connection_info()
        s3 = cloud.client("s3")
        sfn = cloud.client("stepfunctions")
        (poller,) = [
            p for p in cloud.event_sources.pollers if p.mapping.queue_url == info.queue_url
        ]
        names = ("BatchingWindowSeconds", "TriggerBatchSize", "MaxObjectsPerRun")
        effective = {k: cloud.stack.parameters[k] for k in names}

        # The held-out set first (not counted; outside data/train/, so it starts nothing).
        s3.put_object(Bucket=info.bucket, Key=TEST_KEY, Body=CSV_BODY)
        time.sleep(1.0)
        baseline_batches = len(poller.outcomes)

        keys = [f"{TRAIN_PREFIX}part-{i:05d}.csv" for i in range(files)]

        def upload(key: str) -> float:
            s3.put_object(Bucket=info.bucket, Key=key, Body=CSV_BODY)
            return time.time()

        first_upload = time.time()
        with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
            finished = list(pool.map(upload, keys))
        last_upload = max(finished)
        upload_span = last_upload - first_upload
        print(f"uploaded {files} files in {upload_span:.2f} s", flush=True)

        # Runs never overlap: uploads that arrive during a run are queued for one follow-up run.
        # Training is not what this measures, so each run is stopped as soon as it starts (its
        # end releases the run lock and starts the follow-up); wait until every upload is
        # covered by a run.
        deadline = time.monotonic() + TIMEOUT_SECONDS
        timed_out = False
        inputs: dict[str, str] = {}
        stopped: set[str] = set()
        uploaded = set(keys)
        while True:
            runs = [
                e
                for e in executions(sfn, info.state_machine_arn)
                if e["startDate"].timestamp() >= first_upload
            ]
            for execution in runs:
                arn = execution["executionArn"]
                if arn not in inputs:
                    inputs[arn] = sfn.describe_execution(executionArn=arn)["input"]
                if execution["status"] == "RUNNING" and arn not in stopped:
                    sfn.stop_execution(
                        executionArn=arn, error="Bench", cause="burst bench: training not measured"
                    )
                    stopped.add(arn)
            covered_now = {
                o["key"] for text in inputs.values() for o in json.loads(text).get("objects") or []
            }
            if uploaded <= covered_now:
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.5)

        runs = [
            e
            for e in executions(sfn, info.state_machine_arn)
            if e["startDate"].timestamp() >= first_upload
        ]
        covered: list[str] = []
        starts: list[float] = []
        objects_per_run: list[int] = []
        input_bytes: list[int] = []
        for execution in runs:
            text = (
                inputs.get(execution["executionArn"])
                or sfn.describe_execution(executionArn=execution["executionArn"])["input"]
            )
            run_keys = [o["key"] for o in json.loads(text).get("objects") or []]
            covered.extend(run_keys)
            objects_per_run.append(len(run_keys))
            input_bytes.append(len(text.encode()))
            starts.append(execution["startDate"].timestamp())

        batches = poller.outcomes[baseline_batches:]
        distinct = set(covered) & uploaded
        result = {
            "label": label,
            "parameters": {k: str(v) for k, v in parameters.items()},
            "effective_parameters": effective,
            "files_uploaded": files,
            "upload_span_s": round(upload_span, 2),
            "runs_started": len(runs),
            "objects_per_run": sorted(objects_per_run, reverse=True),
            "files_covered": len(covered),
            "distinct_keys_covered": len(distinct),
            "duplicates": len(covered) - len(set(covered)),
            "missing": len(uploaded - distinct),
            "last_upload_to_first_start_s": (
                round(min(starts) - last_upload, 2) if starts else None
            ),
            "last_upload_to_last_start_s": round(max(starts) - last_upload, 2) if starts else None,
            "trigger_invocations": len(batches),
            "messages_per_invocation": [len(b.message_ids) for b in batches],
            "largest_sqs_event_bytes": max((b.payload_bytes for b in batches), default=0),
            "largest_execution_input_bytes": max(input_bytes, default=0),
            "function_errors": sum(1 for b in batches if b.function_error),
            "timed_out": timed_out,
        }
        print(json.dumps(result, indent=2), flush=True)
        return result


def table(results: list[dict[str, Any]]) -> str:
    columns: list[tuple[str, Callable[[dict[str, Any]], object]]] = [
        ("configuration", lambda r: r["label"]),
        ("files uploaded", lambda r: r["files_uploaded"]),
        ("upload span s", lambda r: r["upload_span_s"]),
        ("runs started", lambda r: r["runs_started"]),
        (
            "files covered (distinct)",
            lambda r: f"{r['files_covered']} ({r['distinct_keys_covered']})",
        ),
        ("duplicates", lambda r: r["duplicates"]),
        (
            "last upload → first / last run start s",
            lambda r: f"{r['last_upload_to_first_start_s']} / {r['last_upload_to_last_start_s']}",
        ),
        ("largest SQS event", lambda r: f"{r['largest_sqs_event_bytes'] / 1e6:.2f} MB"),
        (
            "largest execution input",
            lambda r: f"{r['largest_execution_input_bytes'] / 1024:.0f} KiB",
        ),
    ]
    lines = [
        "| " + " | ".join(name for name, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for result in results:
        lines.append("| " + " | ".join(str(get(result)) for _, get in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help="BatchingWindowSeconds (default: the template's; 1,000 local uploads take ~30 s)",
    )
    args = parser.parse_args(argv)

    defaults = template_defaults()
    window_s = args.window or int(defaults["BatchingWindowSeconds"])
    window = {"BatchingWindowSeconds": window_s}
    configurations = [
        (
            f"TriggerBatchSize=100 (previous default), window {window_s} s",
            {**window, "TriggerBatchSize": 100},
        ),
        (
            f"template defaults (TriggerBatchSize={defaults['TriggerBatchSize']}, "
            f"MaxObjectsPerRun={defaults['MaxObjectsPerRun']}), window {window_s} s",
            dict(window),
        ),
    ]
    results = [run_burst(label, parameters, args.files) for label, parameters in configurations]
    document = {
        "benchmark": "burst",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": " ".join([".venv/bin/python -m bench.burst", *(argv or sys.argv[1:])]),
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\n## Burst benchmark ({document['date']}, {os.cpu_count()} CPUs)\n")
    print(table(results))
    print(f"\nReproduce: `{COMMAND}`; results in {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
