"""Figure 9: one training job on 1 vs 2 hosts (``TrainingInstanceCount``) — memory per host.

The same data and hyperparameters (the template's full-training defaults, with 20 rounds: memory
does not depend on the round count, and the figure stays cheap), run by ``training/train.py`` as
one host and as two hosts meeting on loopback, the train data as 6 files (6 deliveries), each
host reading half of them (what ``ShardedByS3Key`` over PrepareRun's channel parts hands it).
Per host:

- **data memory** = the host process's peak RSS (``os.wait4``) minus the peak of the same job on a
  tiny data set (the interpreter, numpy, xgboost: what every host pays whatever its share). Each
  of 2 hosts should need about half of what one host needs: target ≤ 0.6×.
- **rows read**: from each host's log (``channel train: <rows> rows``); together all of them.
- the holdout metric of both models (the 2-host one within 5 % of the 1-host one) and wall time,
  reported only: this machine's 2 cores are shared by the 2 hosts, so it measures the hosts'
  exchange, not a speed-up.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench import data
from bench.incremental import hyperparameters
from bench.report import Row, reproduce
from bench.template import template_defaults
from bench.training_jobs import run_hosts

MEMORY_TARGET = 0.6
METRIC_TOLERANCE = 0.05
ROUNDS = 20
SIZES = {False: (600_000, 20_000), True: (60_000, 5_000)}  # train rows, holdout rows
BASELINE_ROWS = 1_000
FILES = 6


def measure(quick: bool = False, progress: Any = print) -> list[Row]:
    rows, holdout = SIZES[quick]
    table = data.friedman(rows + holdout)
    test = data.csv_bytes(table[:holdout])
    # The data as it arrived: FILES uploads, each host reading whole files (a file's parse needs
    # a few times its size for a moment, so one host reading one big file would measure that).
    files = [data.csv_bytes(part) for part in np.array_split(table[holdout:], FILES)]
    halves = [files[: FILES // 2], files[FILES // 2 :]]
    params = {**hyperparameters("full", template_defaults()), "num_round": ROUNDS}
    with tempfile.TemporaryDirectory(prefix="refit-bench-hosts-") as temp:
        work = Path(temp)
        progress(f"  baseline: one host, {BASELINE_ROWS} rows")
        (base,), _, _ = run_hosts(
            work / "baseline",
            shards=[[data.csv_bytes(table[holdout : holdout + BASELINE_ROWS])]],
            test=test,
            hyperparameters=params,
        )
        progress(f"  one host: {rows} rows")
        (alone,), alone_wall, alone_eval = run_hosts(
            work / "one", shards=[files], test=test, hyperparameters=params
        )
        progress(f"  two hosts: {rows // 2} rows each")
        pair, pair_wall, pair_eval = run_hosts(
            work / "two", shards=halves, test=test, hyperparameters=params
        )
    baseline = base.max_rss_mb
    alone_data = alone.max_rss_mb - baseline
    pair_data = max(host.max_rss_mb for host in pair) - baseline
    ratio = pair_data / alone_data
    one_metric, two_metric = float(alone_eval["challenger"]), float(pair_eval["challenger"])
    metric_gap = abs(two_metric - one_metric) / abs(one_metric)
    rows_read = [host.train_rows for host in pair]
    passed = ratio <= MEMORY_TARGET and sum(rows_read) == rows and metric_gap <= METRIC_TOLERANCE
    measured = (
        f"data memory per host {pair_data:.0f} vs {alone_data:.0f} MB ({ratio:.2f}x); rows "
        f"{rows_read[0]}+{rows_read[1]} of {rows}; {params['eval_metric']} {two_metric:.4f} vs "
        f"{one_metric:.4f}; wall {pair_wall:.1f} vs {alone_wall:.1f} s"
    )
    return [
        Row(
            9,
            "training on 2 hosts vs 1",
            measured,
            f"≤ {MEMORY_TARGET}x data memory per host, every row read once, metric within 5 %",
            passed,
            reproduce(9, quick),
            details={
                "rows": rows,
                "baselineRssMB": baseline,
                "oneHost": {
                    "maxRssMB": alone.max_rss_mb,
                    "cpuSeconds": alone.cpu_seconds,
                    "wallSeconds": alone_wall,
                    "metric": one_metric,
                },
                "twoHosts": {
                    "hosts": [
                        {
                            "host": host.host,
                            "maxRssMB": host.max_rss_mb,
                            "cpuSeconds": host.cpu_seconds,
                            "trainRows": host.train_rows,
                        }
                        for host in pair
                    ],
                    "wallSeconds": pair_wall,
                    "metric": two_metric,
                },
            },
        )
    ]
