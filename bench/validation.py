"""Figure 8: how fast the data contract checks data, and the largest run one PrepareRun fits.

PrepareRun streams every file of a run through ``refit_data.check_stream`` (pure Python: its
Lambda has no numpy), one file after another, inside one invocation of at most the template's
``PrepareRunFunction`` timeout. This measures that check in process on label-first CSV as the
other figures write it (``bench.data``), best of three (S3's streaming comes on top on AWS), and
``read_table``, the job's reader of the same file, for scale. The target is the issue's: a run of
1,000 files of 100 MB fits the limits.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench import data
from bench.report import ROOT, Row, reproduce
from bench.template import template, template_defaults

sys.path.insert(0, str(ROOT / "training"))
import refit_data  # (training/ is the job's code, not a package)

SIZES = {False: 64 * 1024 * 1024, True: 4 * 1024 * 1024}  # bytes of CSV checked
TARGET_RUN_BYTES = 1_000 * 100 * 1024 * 1024
REPEATS = 3
CHUNK = 1024 * 1024  # refit.datasets reads S3 bodies in 1 MiB chunks


def csv_of_size(size: int) -> bytes:
    """Friedman-like rows (label + 10 features, ``%.10g``) until at least ``size`` bytes."""
    rng = np.random.default_rng(8)
    block = data.csv_bytes(np.column_stack([rng.normal(size=50_000), rng.random((50_000, 10))]))
    return block * (size // len(block) + 1)


def chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]


def best_seconds(action: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def measure(quick: bool = False, progress: Any = print) -> list[Row]:
    body = csv_of_size(SIZES[quick])
    rule = refit_data.label_rule(str(template_defaults()["Objective"]))
    megabytes = len(body) / 1024**2
    checked = best_seconds(lambda: refit_data.check_stream(chunks(body), rule))
    with tempfile.TemporaryDirectory(prefix="refit-bench-validation-") as temp:
        path = Path(temp) / "part.csv"
        path.write_bytes(body)
        read = best_seconds(lambda: refit_data.read_table(path, rule))
    timeout = int(template()["Resources"]["PrepareRunFunction"]["Properties"]["Timeout"])
    check_rate, read_rate = megabytes / checked, megabytes / read
    fits = check_rate * 1024**2 * timeout
    progress(
        f"  {megabytes:.0f} MB: check_stream {check_rate:.1f} MB/s, read_table {read_rate:.0f} MB/s"
    )
    return [
        Row(
            8,
            "data validation: PrepareRun's check of one file, and the largest run one "
            "invocation fits",
            f"{check_rate:.1f} MB/s (train.py's reader of the same file: {read_rate:.0f} MB/s); "
            f"one {timeout} s PrepareRun checks at most {fits / 1024**3:.1f} GB",
            "a run of 1,000 files × 100 MB (97.7 GB) fits",
            fits >= TARGET_RUN_BYTES,
            reproduce(8, quick),
            ""
            if fits >= TARGET_RUN_BYTES
            else (
                "PrepareRun checks the files one after another in one invocation; a Step "
                "Functions Map over the files (one check per file, in parallel) would spread "
                "it: not built yet (issue 13)"
            ),
            {"bytes": len(body), "check_seconds": checked, "read_seconds": read},
        )
    ]
