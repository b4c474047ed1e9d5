"""Figure 8: how fast the data contract checks data, and the largest run refit's checks fit.

Every file is streamed through ``refit_data.check_stream`` (pure Python: the Lambdas have no
numpy). Up to ``InlineCheckMB`` of a run PrepareRun does it itself; beyond, the CheckDataFiles
map gives each file its own CheckDataFile invocation, ``CheckConcurrency`` at a time
(``refit.data.file_checks``). This measures the check in process on label-first CSV as the other
figures write it (``bench.data``), best of three (S3's streaming comes on top on AWS), and
``read_table``, the job's reader of the same file, for scale; then it works out, from the
template's timeouts and defaults, what one invocation fits and how long the issue's target run
(1,000 files of 100 MB) spends checking.
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
TARGET_FILES = 1_000
TARGET_RUN_BYTES = TARGET_FILES * 100 * 1024 * 1024
REPEATS = 3
CHUNK = 1024 * 1024  # refit.data.datasets reads S3 bodies in 1 MiB chunks


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
    resources, defaults = template()["Resources"], template_defaults()
    check_timeout = int(resources["CheckDataFileFunction"]["Properties"]["Timeout"])
    prepare_timeout = int(resources["PrepareRunFunction"]["Properties"]["Timeout"])
    inline_mb, concurrency = int(defaults["InlineCheckMB"]), int(defaults["CheckConcurrency"])
    max_file_mb = int(defaults["MaxFileMB"])
    check_rate, read_rate = megabytes / checked, megabytes / read
    per_invocation_mb = check_rate * check_timeout  # the largest file one CheckDataFile reads
    target_file_mb = TARGET_RUN_BYTES / TARGET_FILES / 1024**2
    waves = -(-TARGET_FILES // concurrency)
    target_seconds = waves * target_file_mb / check_rate
    inline_seconds = inline_mb / check_rate
    fits = (
        per_invocation_mb >= max(max_file_mb, target_file_mb)
        and inline_seconds <= prepare_timeout / 2  # PrepareRun's own checks leave it headroom
    )
    progress(
        f"  {megabytes:.0f} MB: check_stream {check_rate:.1f} MB/s, read_table {read_rate:.0f} MB/s"
    )
    return [
        Row(
            8,
            "data validation: one file's check, what one CheckDataFile fits, and the checking "
            "time of 1,000 files × 100 MB",
            f"{check_rate:.1f} MB/s (train.py's reader of the same file: {read_rate:.0f} MB/s); "
            f"one {check_timeout} s CheckDataFile checks ≤ {per_invocation_mb / 1024:.1f} GB "
            f"(MaxFileMB {max_file_mb}); 1,000 × 100 MB: {waves} waves of {concurrency} files, "
            f"~{target_seconds:.0f} s of checking; PrepareRun's own ≤ {inline_mb} MB take "
            f"~{inline_seconds:.0f} s of its {prepare_timeout} s",
            "a run of 1,000 files × 100 MB (97.7 GB) fits",
            fits,
            reproduce(8, quick),
            "" if fits else "a file of MaxFileMB, or InlineCheckMB, does not fit its Lambda",
            {
                "bytes": len(body),
                "check_seconds": checked,
                "read_seconds": read,
                "check_timeout_s": check_timeout,
                "check_concurrency": concurrency,
                "inline_check_mb": inline_mb,
                "target_checking_s": round(target_seconds, 1),
            },
        )
    ]
