"""Figure 1: incremental vs full retraining — CPU seconds of train.py and the holdout metric.

Data (``bench.data``): an initial batch, then ``count`` more batches, delivered in order.

- incremental: the initial batch trained in full (``NumRoundsFull``), then each new batch
  continues the previous model (``refit_mode=incremental``, the ``model`` channel,
  ``NumRoundsIncremental`` rounds), exactly what the stack does on each upload;
- full: one job on every batch from scratch (``NumRoundsFull``), what a retrain-everything
  pipeline does on the last delivery.

Compute = CPU seconds (user + system) of the train.py process, read with ``os.wait4``; the
figure compares the last delivery's incremental job with the full job on all data. Metric =
``evaluation.json``'s challenger score on the same holdout (the stack's ``EvaluationMetric``).
Hyperparameters are the template's defaults, as PrepareRun passes them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench import data
from bench.report import Row, reproduce
from bench.template import template_defaults
from bench.training_jobs import JobResult, run_job

HIGHER_IS_BETTER = {"auc", "aucpr", "accuracy"}
COMPUTE_TARGET = 0.25
METRIC_TARGET = 0.01
REPEATS = 1  # extra samples of the two jobs the ratio compares
SIZES = {  # initial rows, rows per new batch, new batches, holdout rows
    False: (100_000, 50_000, 6, 20_000),
    True: (10_000, 5_000, 3, 5_000),
}


def hyperparameters(mode: str, defaults: dict[str, Any]) -> dict[str, Any]:
    rounds = defaults["NumRoundsFull"] if mode == "full" else defaults["NumRoundsIncremental"]
    return {
        "sagemaker_program": "train.py",
        "objective": defaults["Objective"],
        "num_round": rounds,
        "eval_metric": defaults["EvaluationMetric"],
        "refit_mode": mode,
        "checkpoint_interval": defaults["CheckpointIntervalRounds"],
    }


def relative_gap(metric: str, incremental: float, full: float) -> float:
    """How much worse incremental is than full, as a fraction of full (negative: better)."""
    worse = full - incremental if metric in HIGHER_IS_BETTER else incremental - full
    return worse / abs(full) if full else float("inf")


def measure(quick: bool = False, progress: Any = print) -> list[Row]:
    initial, batch, count, holdout = SIZES[quick]
    dataset = data.deliveries(initial, batch, count, holdout)
    defaults = template_defaults()
    metric = str(defaults["EvaluationMetric"])
    test = data.csv_bytes(dataset.holdout)
    files = [data.csv_bytes(b) for b in dataset.batches]
    chain: list[JobResult] = []
    with tempfile.TemporaryDirectory(prefix="refit-bench-incremental-") as temp:
        work = Path(temp)
        champion: bytes | None = None
        replay: bytes | None = None
        for number, body in enumerate(files):
            mode = "full" if champion is None else "incremental"
            result = run_job(
                work / f"chain-{number}",
                train=[body],
                test=test,
                hyperparameters=hyperparameters(mode, defaults),
                champion_archive=champion,
                replay_archive=replay,
            )
            chain.append(result)
            champion, replay = result.archive(), result.output
            progress(
                f"  batch {number} ({mode}, {len(dataset.batches[number])} rows): "
                f"{result.cpu_seconds:.2f} CPU s, {metric} {result.evaluation['challenger']:.4f}"
            )
        full = run_job(
            work / "full",
            train=files,
            test=test,
            hyperparameters=hyperparameters("full", defaults),
        )
        progress(
            f"  full on all {dataset.train_rows} rows: {full.cpu_seconds:.2f} CPU s, "
            f"{metric} {full.evaluation['challenger']:.4f}"
        )
        # The other engineers' load on 2 shared cores makes one sample noisy: the last
        # incremental job and the full job run again, alternately, and each keeps its minimum.
        previous = chain[-2].archive() if len(chain) > 1 else None
        previous_replay = chain[-2].output if len(chain) > 1 else None
        last_samples, full_samples = [chain[-1].cpu_seconds], [full.cpu_seconds]
        for repeat in range(REPEATS):
            again = run_job(
                work / f"last-again-{repeat}",
                train=[files[-1]],
                test=test,
                hyperparameters=hyperparameters("incremental", defaults),
                champion_archive=previous,
                replay_archive=previous_replay,
            )
            last_samples.append(again.cpu_seconds)
            full_samples.append(
                run_job(
                    work / f"full-again-{repeat}",
                    train=files,
                    test=test,
                    hyperparameters=hyperparameters("full", defaults),
                ).cpu_seconds
            )
        progress(f"  repeats: incremental {last_samples}, full {full_samples} CPU s")

    last = chain[-1]
    last_cpu, full_cpu = min(last_samples), min(full_samples)
    compute = last_cpu / full_cpu
    incremental_score = float(last.evaluation["challenger"])
    full_score = float(full.evaluation["challenger"])
    gap = relative_gap(metric, incremental_score, full_score)
    details = {
        "dataset": "make_friedman1(noise=1.0, seed 7), label first",
        "initial_rows": initial,
        "batch_rows": batch,
        "new_batches": count,
        "holdout_rows": holdout,
        "train_rows_total": dataset.train_rows,
        "metric": metric,
        "num_rounds_full": defaults["NumRoundsFull"],
        "num_rounds_incremental": defaults["NumRoundsIncremental"],
        "chain": [
            {
                "mode": r.evaluation["mode"],
                "train_rows": r.evaluation["trainRows"],
                "rounds": r.evaluation["challengerRounds"],
                "cpu_s": round(r.cpu_seconds, 3),
                "wall_s": round(r.wall_seconds, 3),
                "max_rss_mb": round(r.max_rss_mb, 1),
                metric: incremental_score if r is last else r.evaluation["challenger"],
            }
            for r in chain
        ],
        "full": {
            "train_rows": full.evaluation["trainRows"],
            "rounds": full.evaluation["challengerRounds"],
            "cpu_s": round(full.cpu_seconds, 3),
            "wall_s": round(full.wall_seconds, 3),
            "max_rss_mb": round(full.max_rss_mb, 1),
            metric: full_score,
        },
        "incremental_chain_cpu_s": round(sum(r.cpu_seconds for r in chain), 3),
        "last_incremental_cpu_samples": [round(x, 3) for x in last_samples],
        "full_cpu_samples": [round(x, 3) for x in full_samples],
    }
    compute_note = ""
    if compute > COMPUTE_TARGET:
        ideal = (int(defaults["NumRoundsIncremental"]) * batch) / (
            int(defaults["NumRoundsFull"]) * dataset.train_rows
        )
        compute_note = (
            f"rounds x rows alone would give {ideal:.1%}; the rest is each job's fixed cost "
            "(interpreter start and the numpy/xgboost import, ~1.3 CPU s on this machine, CSV "
            "parsing, loading and scoring the champion on the holdout) and per-round cost that "
            "does not shrink with rows (OpenMP threads of 2 cores spinning under load). Larger "
            "deliveries or fewer, larger full retrains move it toward the ideal"
        )
    metric_note = ""
    if gap > METRIC_TARGET:
        metric_note = (
            f"after {count} incremental deliveries the model holds "
            f"{last.evaluation['challengerRounds']} trees, each later batch's "
            f"{defaults['NumRoundsIncremental']} trees fitted to that batch alone; full retraining "
            f"fits {defaults['NumRoundsFull']} trees to all rows. Closing it is a product change "
            "(a lower eta for incremental rounds, or a periodic full retrain), not a bench change"
        )
    rows_text = f"{dataset.train_rows:,} rows, {count} deliveries"
    return [
        Row(
            1,
            f"incremental / full compute (CPU s, last of {rows_text})",
            f"{compute:.1%} ({last_cpu:.2f} / {full_cpu:.2f} CPU s, min of {REPEATS + 1})",
            f"≤ {COMPUTE_TARGET:.0%}",
            compute <= COMPUTE_TARGET,
            reproduce(1, quick),
            compute_note,
            details,
        ),
        Row(
            1,
            f"incremental vs full holdout {metric}",
            f"{incremental_score:.4f} vs {full_score:.4f} ({gap:+.2%})",
            f"within {METRIC_TARGET:.0%} of full",
            gap <= METRIC_TARGET,
            reproduce(1, quick),
            metric_note,
        ),
    ]
