"""``python -m refit_cli.demo`` (``make demo``): refit's whole loop on this machine, checked.

Starts the local cloud (moto on 127.0.0.1 with the real template deployed, the real handlers,
the real state machine, a local SageMaker that really trains and serves XGBoost), then plays
:mod:`refit_cli.scenario`: initial data → endpoint; new data → incremental spot training with
one interruption → endpoint updated in place, stale resources deleted; a corrupted batch →
rejected; a batch-mode run → prediction files; `refit rollback` → the first model back. It
prints progress, a table of the runs and where to look next, and exits 1 if any step did not
happen as described (2 if the cloud cannot start).

Options: ``--port`` (default: a free one), ``--state-dir`` (default: a new temporary directory,
kept: job and function logs), ``--keep-running`` (serve the cloud after the scenario until
Ctrl-C, to try the commands printed at the end).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from local_cloud.cloud import ConnectionInfo, LocalCloudError, usage
from refit_cli.scenario import (
    RUNTIME_SETTINGS,
    SEED,
    STACK_PARAMETERS,
    ExpectationFailed,
    Run,
    Scenario,
    load_data,
    local_cloud,
)

STEPS: Sequence[tuple[str, Callable[[Scenario], object]]] = (
    ("initial data → full training → endpoint created", Scenario.step_initial),
    (
        "new data → incremental spot training (1 interruption) → endpoint updated in place",
        Scenario.step_update,
    ),
    ("corrupted labels → challenger rejected, endpoint unchanged", Scenario.step_corrupted),
    ("batch mode (started by hand) → prediction files", Scenario.step_batch),
    ("refit rollback → step 1's model back on the endpoint", Scenario.step_rollback),
)


class Clock:
    """Progress lines stamped with the seconds since the demo started."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def __call__(self, message: str) -> None:
        self._out.write(f"[{self.elapsed:6.1f}s] {message}\n")
        self._out.flush()


def _cell(value: object, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def runs_table(runs: Sequence[Run]) -> str:
    """The final table: one line per run."""
    header = (
        "step",
        "run",
        "mode",
        "rows",
        "challenger",
        "champion",
        "decision",
        "train s",
        "billable s",
        "spot savings",
    )
    rows = [header]
    for run in runs:
        savings = run.spot_savings_percent
        rows.append(
            (
                run.step,
                run.run_id if len(run.run_id) <= 16 else run.run_id[:15] + "…",
                f"{run.training_mode} → {run.deployment_mode}",
                _cell(run.rows),
                _cell(run.challenger),
                _cell(run.champion),
                run.status,
                _cell(run.training_seconds),
                _cell(run.billable_seconds),
                "-" if savings is None else f"{savings:.0f} %",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {3, 4, 5, 7, 8, 9}
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column in numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def where_to_look(
    info: ConnectionInfo, state_dir: Path, scenario: Scenario, *, keep_running: bool = False
) -> str:
    lines = [
        "Where to look next:",
        f"  job logs         {state_dir}/sagemaker/training-jobs/<job>/training.log",
    ]
    if scenario.update is not None:
        lines.append(
            f"                   step 2, interrupted and resumed: {scenario.update.job.log_file}"
        )
    lines.append(f"  function logs    {state_dir}/lambda-logs/<Function>.log")
    if scenario.batch is not None:
        kept = "served below" if keep_running else "in memory, gone with the cloud"
        lines.append(
            f"  batch output     s3://{info.bucket}/batch/output/{scenario.batch.run.run_id}/ "
            f"({kept})"
        )
    lines += [
        "  try it yourself  .venv/bin/python -m refit_cli.demo --keep-running  (then serves)",
        "                   .venv/bin/refit local up  (make local-up: an empty stack, port 4566)",
        "                   then, in a shell with the export line either prints:",
        "                     refit runs                       # run records (DynamoDB)",
        "                     refit run <run id>               # one run: data, job, metrics, cost",
        "                     refit predict rows.csv           # the endpoint (CSV, no label)",
        "                     refit start --full --mode batch  # batch mode for one run",
        "                     refit rollback                   # the previous approved model back",
        "                     aws stepfunctions list-executions --state-machine-arn <arn>",
        "                     aws stepfunctions get-execution-history --execution-arn <arn>",
        "                     aws s3 ls s3://<bucket>/ --recursive",
        "                   (refit is .venv/bin/refit; DeploymentMode=batch makes every run batch)",
        "  the scenario     refit_cli/scenario.py, also run by tests/e2e/",
    ]
    return "\n".join(lines)


def serve_until_stopped() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM; the caller then closes the cloud."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, request_stop) for sig in signals}
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m refit_cli.demo", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, default=None, help="emulator port (default: free)")
    parser.add_argument("--state-dir", type=Path, help="keep job and function logs here")
    parser.add_argument(
        "--keep-running", action="store_true", help="serve the cloud afterwards until Ctrl-C"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # moto logs every failed state with its parse tree; the checks below say what went wrong.
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    # The parameters below AWS's minimums are deliberate and printed here.
    logging.getLogger("local_cloud.cloud").setLevel(logging.ERROR)

    clock = Clock(out)
    state_dir: Path = args.state_dir or Path(tempfile.mkdtemp(prefix="refit-demo-"))
    data = load_data()
    print(
        "refit demo: the whole application on this machine (moto + a local SageMaker), "
        "runs started by S3 uploads",
        file=out,
    )
    print(
        f"data: scikit-learn's Wisconsin breast cancer set, 569 rows x 30 features, seed {SEED}: "
        f"held-out {data.test.rows}, initial {data.initial.rows}, update "
        f"{sum(b.rows for b in data.update)} (2 files), corrupted {data.corrupted.rows}, "
        f"to score {data.to_score.rows}",
        file=out,
    )
    print(
        "stack parameters: " + ", ".join(f"{k}={v}" for k, v in STACK_PARAMETERS.items()),
        file=out,
    )
    print(f"state directory (logs): {state_dir}", file=out, flush=True)
    clock("starting the local cloud...")
    scenario: Scenario | None = None
    try:
        with local_cloud(port=args.port, state_dir=state_dir) as cloud:
            info = cloud.connection_info()
            clock(
                f"local cloud up on {info.endpoint_url}: stack {info.stack_name}, bucket "
                f"{info.bucket}, endpoint {info.endpoint_name}"
            )
            scenario = Scenario(cloud, data, progress=clock)
            scenario.upload_test_set()
            for number, (title, step) in enumerate(STEPS, start=1):
                print(f"\nStep {number}/{len(STEPS)}: {title}", file=out, flush=True)
                step(scenario)
            print(f"\n{runs_table(scenario.runs)}\n", file=out)
            print(
                "logloss on the held-out set (lower is better). Spot training is billed for "
                "the seconds the training process ran, at "
                f"{RUNTIME_SETTINGS.spot_price_fraction:.0%} of the on-demand price (the local "
                "runtime's model of a typical spot discount).\n",
                file=out,
            )
            print(
                where_to_look(info, state_dir, scenario, keep_running=args.keep_running), file=out
            )
            clock(f"all {len(STEPS)} steps happened as described")
            if args.keep_running:
                print(f"\n{usage(info, f'in memory; logs under {state_dir}')}", file=out)
                out.flush()
                serve_until_stopped()
                print("stopping the local cloud...", file=out, flush=True)
    except ExpectationFailed as failure:
        if scenario is not None and scenario.runs:
            print(f"\n{runs_table(scenario.runs)}\n", file=out)
        print(f"\nDEMO FAILED: {failure}", file=out)
        print(f"logs: {state_dir}", file=out, flush=True)
        return 1
    except LocalCloudError as error:
        print(f"\nDEMO FAILED: the local cloud cannot start: {error}", file=out, flush=True)
        return 2
    clock("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
