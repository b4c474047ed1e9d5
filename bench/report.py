"""What a benchmark figure is, and how the runner prints and stores them.

Each figure module returns :class:`Row` objects: one measured value against its target, the
verdict and the command that measures it again. A row whose target is missed carries a note
(why, and what would close it), derived from what was measured where the module can tell.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"


@dataclass
class Row:
    figure: int
    name: str
    measured: str
    target: str
    passed: bool | None  # None: could not be measured (see ``note``)
    reproduce: str
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "ERROR"}[self.passed]


def reproduce(figure: int, quick: bool = False) -> str:
    return f"make bench ARGS='--only {figure}{' --quick' if quick else ''}'"


def error_row(figure: int, name: str, target: str, error: BaseException, quick: bool) -> Row:
    return Row(
        figure,
        name,
        "not measured",
        target,
        None,
        reproduce(figure, quick),
        note=f"{type(error).__name__}: {error}",
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with ``fraction`` of the values at or below."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in load] if load else None,
    }


def markdown_table(rows: Iterable[Row]) -> str:
    lines = [
        "| # | figure | measured | target | result | reproduce |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            str(row.figure),
            row.name,
            row.measured,
            row.target,
            "**FAIL**" if row.passed is False else row.verdict,
            f"`{row.reproduce}`",
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def closing_notes(rows: Iterable[Row]) -> list[str]:
    """One line per row that missed its target or could not be measured."""
    return [
        f"- {row.figure} {row.name} ({row.verdict}): {row.note or 'no note'}"
        for row in rows
        if row.passed is not True
    ]


def document(
    rows: Sequence[Row], command: str, started: datetime, seconds: float, quick: bool
) -> dict[str, Any]:
    return {
        "benchmark": "refit make bench",
        "date": started.astimezone(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "quick": quick,
        "command": command,
        "machine": machine(),
        "rows": [asdict(row) | {"verdict": row.verdict} for row in rows],
    }


def markdown(doc: dict[str, Any], rows: Sequence[Row]) -> str:
    info = doc["machine"]
    parts = [
        f"## refit benchmarks — {doc['date']}",
        "",
        f"{info['cpus']} CPUs ({info['processor']}, {info['platform']}), Python {info['python']}, "
        f"load average at start {info['loadavg_at_start']}; took {doc['seconds']:.0f} s"
        + (" (--quick: small sizes, not the issue's)" if doc["quick"] else "")
        + ".",
        "",
        markdown_table(rows),
        "",
        f"Reproduce all: `{doc['command']}`",
    ]
    notes = closing_notes(rows)
    if notes:
        parts += ["", "### Targets missed", "", *notes]
    return "\n".join(parts) + "\n"


def write(doc: dict[str, Any], rows: Sequence[Row], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    path = directory / "latest.md"
    path.write_text(markdown(doc, rows))
    return path
