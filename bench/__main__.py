"""``python -m bench`` (``make bench``): refit's performance and quality figures, each a ratio
measured side by side.

1 incremental vs full retraining (CPU s, holdout metric)      bench.incremental
2 orchestration overhead (upload → serving / train.py alone)   bench.local_cloud_figures
3 trigger latency (last upload → execution start − window)     bench.local_cloud_figures
4 Lambda cold start and unzipped size per handler              bench.cold_start
5 API calls of champion lookup and cleanup, 10 vs 10,000       bench.lookups
6 serving: endpoint latency, batch transform vs raw xgboost    bench.local_cloud_figures
7 state transitions per successful run                         bench.local_cloud_figures
8 data validation: a run of 1,000 files x 100 MB                bench.validation
9 training on 2 hosts vs 1: memory per host, rows read          bench.distributed

Figures without the local cloud run first; 2, 3, 6 and 7 share one local cloud. The table
(figure, measured, target, pass/FAIL, reproduce) is printed and written to
``bench/results/latest.md`` (committed: the README quotes it) and ``latest.json`` (git-ignored:
every detail, per machine). ``--quick`` uses small sizes to develop with: its figures are not
the issue's. The exit status is 0 when every figure was measured (missed targets included) and
1 when one could not be.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench import cold_start, distributed, incremental, local_cloud_figures, lookups, validation
from bench.report import Row, closing_notes, document, error_row, markdown_table, write

LOCAL_CLOUD = {2, 3, 6, 7}
NAMES = {
    1: ("incremental vs full", "≤ 25 % compute, metric within 1 %"),
    4: ("Lambda cold start and size", "≤ 250 ms, ≤ 15 MB"),
    5: ("lookup API calls", "constant / proportional"),
    8: ("data validation", "a run of 1,000 files x 100 MB fits"),
    9: ("training on 2 hosts vs 1", "≤ 0.6x data memory per host"),
}
STANDALONE: dict[int, Callable[..., list[Row]]] = {
    1: incremental.measure,
    4: cold_start.measure,
    5: lookups.measure,
    8: validation.measure,
    9: distributed.measure,
}


def parse_figures(text: str | None) -> set[int]:
    if not text:
        return set(range(1, 10))
    chosen = {int(part) for part in text.replace(" ", "").split(",") if part}
    unknown = chosen - set(range(1, 10))
    if unknown:
        raise argparse.ArgumentTypeError(f"no figure {sorted(unknown)}: choose from 1-9")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="figures to run, e.g. 3 or 1,4 (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to develop with")
    args = parser.parse_args(argv)
    figures = parse_figures(args.only)
    command = "make bench" + (
        f" ARGS='{' '.join(argv or sys.argv[1:])}'" if (argv or sys.argv[1:]) else ""
    )
    started, clock = datetime.now(UTC), time.monotonic()
    rows: list[Row] = []

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - clock:6.1f} s] {message}", flush=True)

    for number in sorted(figures - LOCAL_CLOUD):
        progress(f"figure {number}: {NAMES[number][0]}")
        try:
            rows += STANDALONE[number](quick=args.quick, progress=progress)
        except Exception as error:
            rows.append(error_row(number, NAMES[number][0], NAMES[number][1], error, args.quick))
    if figures & LOCAL_CLOUD:
        progress(f"figures {sorted(figures & LOCAL_CLOUD)}: local cloud")
        try:
            rows += local_cloud_figures.measure(
                figures & LOCAL_CLOUD, quick=args.quick, progress=progress
            )
        except Exception as error:
            for number in sorted(figures & LOCAL_CLOUD):
                rows.append(error_row(number, "local cloud", "-", error, args.quick))
    rows.sort(key=lambda row: row.figure)
    doc = document(rows, command, started, time.monotonic() - clock, args.quick)
    path = write(doc, rows)
    print(f"\n## refit benchmarks ({doc['date']}, {doc['machine']['cpus']} CPUs)\n")
    print(markdown_table(rows))
    notes = closing_notes(rows)
    if notes:
        print("\nTargets missed (why, and what would close it):")
        print("\n".join(notes))
    print(f"\nReproduce: `{command}`; results in {path.parent.relative_to(path.parents[2])}/")
    return 1 if any(row.passed is None for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
