"""refit's data contract: what a data file is, checked alike by PrepareRun and by the job.

PrepareRun (``refit.data.datasets``) checks every uploaded file with :func:`check_stream` before a
run and sets aside what fails; ``train.py`` reads its channels with :func:`read_table`. Both
are this module (PrepareRun loads it from the training code it uploads as the job's
``sourcedir``), so a file PrepareRun accepts is a file the job reads, with the same values, and
a file either refuses gets the same message. Stdlib only at import: PrepareRun's Lambda has no
numpy, so :func:`read_table` imports it when called.

A data file is:

- **text**: ASCII (``DATA_BYTES``), optionally after a UTF-8 byte order mark; lines end with LF
  or CRLF (a CR anywhere else is refused: readers disagree on it); a line of spaces and tabs
  only is blank and holds no row; no line longer than ``MAX_LINE_BYTES``;
- **CSV without a header**: fields separated by commas, no quoting; the label in column 1, then
  at least one feature, at most ``MAX_COLUMNS`` columns, the same count on every row;
- **numbers**: a field is what Python's ``float()`` and numpy's parser both read once only
  ``DATA_BYTES`` remain: a decimal number (``[+-]digits[.digits][e[+-]digits]``, spaces or tabs
  around it) or ``nan`` (any case); a feature may also be empty (both mean missing); every
  value fits float32, which is what XGBoost trains on (``FLOAT32_OVERFLOW``); infinities are
  refused;
- **not a trailing comma**: the last column is not missing on every row;
- **labels the objective can learn** (:func:`label_rule`): finite; 0 or 1 for ``binary:*``;
  class indices 0..K-1 for ``multi:*`` (at most ``MAX_CLASSES``); positive for ``reg:gamma``;
  and so on, judged on the float32 value the job trains on;
- **a path the job reads** (:func:`path_problem`, relative to ``data/train/``): no empty,
  ``.`` or ``..`` segment, at most ``MAX_PATH_BYTES``; a segment starting with ``_`` or ``.``
  is not data (markers such as ``_SUCCESS``, temporary folders): the job skips it
  (:func:`is_ignored`) and PrepareRun does not train on it.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# XGBoost keeps float32: a double at or past this rounds to infinity there (2^128 - 2^103 is
# the midpoint between FLT_MAX and 2^128, which round-to-nearest-even sends up).
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103
MAX_LINE_BYTES = 1024 * 1024
# A matrix wider than this is a wrong file more often than a model (10k float32 features a row).
MAX_COLUMNS = 10_000
# multi:* without a champion takes K from the largest label: one stray 1e6 would ask for a
# million classes. With K trees a round, more classes than this is not what refit is built for.
MAX_CLASSES = 1_000
# refit copies a file to runs/<run>/data/<path> (run names: at most 80 characters) and moves a
# refused one to data/rejected/<path>.reason.json: S3 keys end at 1,024 bytes.
MAX_PATH_BYTES = 900
IGNORED_NAME_PREFIXES = ("_", ".")
BOM = b"\xef\xbb\xbf"
# Every byte a data file may hold (after the BOM): digits, signs, point, exponent, nan, commas,
# spaces, tabs, line ends.
DATA_BYTES = frozenset(b"0123456789+-.eEnNaA,\t \r\n")
_DATA_BYTES = bytes(sorted(DATA_BYTES))  # for bytes.translate: what is left is not data
_CHUNK_BYTES = 1024 * 1024


class InvalidDataFile(ValueError):
    """A data file breaks the contract; the message says where and why."""


@dataclass(frozen=True)
class Shape:
    rows: int
    columns: int


@dataclass(frozen=True)
class ExpectedColumns:
    """The column count a file must have, and where that number comes from (for the message)."""

    count: int
    because: str


def column_count_problem(line: int, found: int, expected: int, because: str) -> str:
    """The contract's message for a line with another column count than the file's or run's."""
    return f"line {line} has {found} columns, expected {expected} ({because})"


# --- Labels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRule:
    """What a label must be for an objective; None bounds are open."""

    minimum: float | None = None
    minimum_included: bool = True
    maximum: float | None = None
    maximum_included: bool = True
    integer: bool = False
    objective: str = ""

    def allows(self, value: float) -> bool:
        """Whether ``value`` (as float32, what the job trains on) is a label for the objective."""
        if not math.isfinite(value):
            return False
        if self.integer and value != math.floor(value):
            return False
        low, high = self.minimum, self.maximum
        if low is not None and (value < low or (value == low and not self.minimum_included)):
            return False
        return high is None or not (value > high or (value == high and not self.maximum_included))

    def allows_all(self, labels: npt.NDArray[np.float32]) -> bool:
        """:meth:`allows` for every label of a column, vectorised (the job's path)."""
        import numpy as np

        valid = np.isfinite(labels)
        if self.integer:
            valid &= labels == np.floor(labels)
        if self.minimum is not None:
            valid &= labels >= self.minimum if self.minimum_included else labels > self.minimum
        if self.maximum is not None:
            valid &= labels <= self.maximum if self.maximum_included else labels < self.maximum
        return bool(valid.all())

    def describe(self) -> str:
        if self.integer and self.minimum == 0 and self.maximum == 1:
            return f"0 or 1 for {self.objective}"
        if self.integer and self.minimum == 0 and self.maximum is not None:
            classes = int(self.maximum) + (1 if self.maximum_included else 0)
            return f"a class index 0..{classes - 1} for {self.objective}"
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'≥' if self.minimum_included else '>'} {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"{'≤' if self.maximum_included else '<'} {self.maximum:g}")
        kind = "a finite number"
        return f"{kind} {' and '.join(bounds)} for {self.objective}" if bounds else kind


def label_rule(objective: str, num_class: int | None = None) -> LabelRule:
    """The labels ``objective`` can learn (XGBoost's own checks, made before any training).

    ``num_class``: the class count of a ``multi:*`` model when it is fixed (the stack passes it,
    or the champion has it); without one, any class below ``MAX_CLASSES``.
    """
    if objective.startswith("binary:"):
        return LabelRule(0, True, 1, True, integer=True, objective=objective)
    if objective.startswith("multi:"):
        classes = min(num_class, MAX_CLASSES) if num_class else MAX_CLASSES
        return LabelRule(0, True, classes - 1, True, integer=True, objective=objective)
    if objective == "reg:logistic":
        return LabelRule(0, True, 1, True, objective=objective)
    if objective == "reg:gamma":
        return LabelRule(0, False, objective=objective)
    if objective in ("reg:tweedie", "count:poisson"):
        return LabelRule(0, True, objective=objective)
    if objective == "reg:squaredlogerror":
        return LabelRule(-1, False, objective=objective)
    return LabelRule(objective=objective)


# --- Paths -----------------------------------------------------------------------------------


def is_ignored(relative_path: str) -> bool:
    """A path the job does not read: a segment (folder or name) starts with ``_`` or ``.``.
    (``.`` and ``..`` are no names but a broken path: :func:`path_problem`.)"""
    return any(
        segment.startswith(IGNORED_NAME_PREFIXES) and segment not in (".", "..")
        for segment in relative_path.split("/")
    )


def path_problem(relative_path: str) -> str | None:
    """Why a data file's path (relative to ``data/train/``) is refused, or None."""
    segments = relative_path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        # S3 keys are opaque, file paths are not: the job would read such a key under another
        # name (a//b.csv is a/b.csv) or outside its channel (..).
        return (
            "outside the expected layout data/train/[folder/...]<name>: the key has an empty, "
            "'.' or '..' path segment"
        )
    size = len(relative_path.encode("utf-8"))
    if size > MAX_PATH_BYTES:
        return (
            f"the path after data/train/ is {size} bytes, the limit is {MAX_PATH_BYTES} "
            "(refit's copies of the file must fit S3's 1,024-byte keys)"
        )
    return None


# --- Checking a file as a stream (PrepareRun) ------------------------------------------------


def check_stream(
    chunks: Iterable[bytes], rule: LabelRule, expected: ExpectedColumns | None = None
) -> Shape:
    """Check a whole file, chunk by chunk, in bounded memory; raise at the first problem."""
    columns = expected.count if expected else None
    because = expected.because if expected else "as on the lines before it"
    rows = 0
    last_column_seen = False
    for number, line in enumerate(_lines(chunks), start=1):
        if number == 1:
            line = line.removeprefix(BOM)
        if line.endswith(b"\r"):
            line = line[:-1]
        bad = line.translate(None, _DATA_BYTES)
        if bad or b"\r" in line:
            raise InvalidDataFile(_byte_problem(number, line, rows == 0))
        text = line.decode("ascii")
        if not text.strip(" \t"):
            continue
        fields = text.split(",")
        if rows == 0 and fields[0].strip() and _number(fields[0]) is None:
            raise InvalidDataFile(_header_problem(number, text))
        if columns is None:
            if len(fields) < 2:
                raise InvalidDataFile(
                    f"line {number} has 1 column: expected the label, then at least one feature"
                )
            columns = len(fields)
            because = f"as on line {number}"
        if len(fields) != columns:
            raise InvalidDataFile(column_count_problem(number, len(fields), columns, because))
        if columns > MAX_COLUMNS:
            raise InvalidDataFile(
                f"line {number} has {columns} columns: at most {MAX_COLUMNS} (label + features)"
            )
        _check_label(number, fields[0], rule)
        for column, field in enumerate(fields[1:], start=2):
            _check_feature(number, column, field)
        last_column_seen = last_column_seen or _present(fields[-1])
        rows += 1
    if rows == 0:
        raise InvalidDataFile("no data rows (the file is empty)")
    if not last_column_seen:
        raise InvalidDataFile(
            f"column {columns} is missing on every row: a comma at the end of each line adds "
            "an empty feature (remove the trailing commas)"
        )
    assert columns is not None
    return Shape(rows, columns)


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a byte stream at LF without ever holding more than one line of at most the limit."""
    pending = b""
    count = 0
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            count += 1
            if len(line) > MAX_LINE_BYTES:
                raise InvalidDataFile(_long_line(count))
            yield line
        if len(pending) > MAX_LINE_BYTES:
            raise InvalidDataFile(_long_line(count + 1))
    if pending:
        yield pending


def _long_line(number: int) -> str:
    return f"line {number} is longer than {MAX_LINE_BYTES // 1024} KiB: not a CSV file?"


def _byte_problem(number: int, line: bytes, first_row: bool) -> str:
    position = next(i for i, byte in enumerate(line) if byte not in DATA_BYTES or byte == 13)
    column = line[:position].count(b",") + 1
    if line[position] == 13:
        return (
            f"line {number}, column {column}: a carriage return (CR) inside the line: lines "
            "must end with LF or CRLF"
        )
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return f"line {number} is not UTF-8 text (byte {position + 1})"
    field = text.split(",")[column - 1]
    if first_row and column == 1 and _number(field) is None:
        return _header_problem(number, text)
    if field.strip().lower().lstrip("+-") in ("inf", "infinity"):
        return _infinite(number, column)
    character = line[position : position + 4].decode("utf-8", "replace")[0]
    return (
        f"line {number}, column {column}: {field[:40]!r} is not a number "
        f"({character!r}, U+{ord(character):04X}: only ASCII digits, signs, '.', 'e' and nan "
        "make a number)"
    )


def _header_problem(number: int, text: str) -> str:
    return (
        f"line {number} looks like a header row ({text[:80]!r}): refit expects CSV without a "
        "header, the label in column 1 and numeric features after it"
    )


def _infinite(number: int, column: int) -> str:
    if column == 1:
        return f"line {number}, column 1 (the label) is infinite: every row needs a finite label"
    return (
        f"line {number}, column {column} is infinite (write nan or leave it empty for a "
        "missing value)"
    )


def _number(field: str) -> float | None:
    """The field's value, NaN for nan; None if it is no number (an empty field included).

    Only ``DATA_BYTES`` reach here (outside :func:`_byte_problem`): ``float()`` then reads
    exactly what numpy's parser reads (no ``_``, ``inf``, hex or non-ASCII digits are left).
    """
    try:
        return float(field)
    except ValueError:
        return None


def _present(field: str) -> bool:
    value = _number(field)
    return value is not None and not math.isnan(value)


def _float32(value: float) -> float:
    """``value`` as the job holds it; OverflowError past float32's range."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def _check_label(number: int, field: str, rule: LabelRule) -> None:
    value = _number(field)
    if value is None or math.isnan(value):
        shown = "empty" if not field.strip() else repr(field.strip()[:40])
        raise InvalidDataFile(
            f"line {number}, column 1 (the label) is {shown}: every row needs a numeric label"
        )
    if abs(value) >= FLOAT32_OVERFLOW:
        raise InvalidDataFile(_too_large(number, 1, field))
    if not rule.allows(_float32(value)):
        raise InvalidDataFile(
            f"line {number}, column 1 (the label) is {field.strip()[:40]}: labels must be "
            f"{rule.describe()}"
        )


def _check_feature(number: int, column: int, field: str) -> None:
    if not field.strip(" \t"):
        return  # a missing value
    value = _number(field)
    if value is None:
        raise InvalidDataFile(f"line {number}, column {column}: {field[:40]!r} is not a number")
    if abs(value) >= FLOAT32_OVERFLOW:
        raise InvalidDataFile(_too_large(number, column, field))


def _too_large(number: int, column: int, field: str) -> str:
    return (
        f"line {number}, column {column}: {field.strip()[:40]} is beyond float32's range "
        f"(about ±3.4e38), which XGBoost trains on"
    )


# --- Reading a file into a matrix (train.py) -------------------------------------------------

_LOADTXT_OPTIONS: dict[str, Any] = {"delimiter": ",", "ndmin": 2, "comments": None}
# Each pattern starts with a literal character: Python's re then skips ahead fast (10x faster
# than ^/lookbehind variants on a 40 MB file). A newline goes in front of the text so the first
# line matches like the others.
_BLANK_LINE = re.compile(r"\n[ \t]+(?=\r?\n|\Z)")
_EMPTY_FIRST_FIELD = re.compile(r"\n[ \t]*,")
_EMPTY_OTHER_FIELD = re.compile(r",[ \t]*(?=,|\r?\n|\Z)")


def read_table(
    path: Path, rule: LabelRule, expected: ExpectedColumns | None = None
) -> npt.NDArray[np.float32]:
    """The file's rows as float32 (label first, NaN = missing), or :class:`InvalidDataFile`.

    numpy's C parser reads a file that only holds ``DATA_BYTES`` and well-ended lines; the
    matrix is then checked as :func:`check_stream` checks the text. Whatever fails is explained
    by :func:`check_stream` itself, so both give the same message for the same file.
    """
    import numpy as np

    data = path.read_bytes().removeprefix(BOM)
    rows = _parse(data) if _readable(data) else None
    if rows is None or not _valid(rows, rule, expected):
        check_stream(_chunked(data), rule, expected)  # raises, saying where and why
        raise InvalidDataFile("the file was refused by the fast reader only (a refit bug)")
    return np.ascontiguousarray(rows)


def _readable(data: bytes) -> bool:
    """Only contract bytes, CR only before LF, no line over the limit (all at C speed)."""
    import numpy as np

    if data.translate(None, _DATA_BYTES) or data.count(b"\r") != data.count(b"\r\n"):
        return False
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends, [len(data)]])
    return bool((stops - starts).max(initial=0) <= MAX_LINE_BYTES)


def _parse(data: bytes) -> npt.NDArray[np.float32] | None:
    text = data.decode("ascii")
    rows = _loadtxt(text)
    if rows is None:
        # The fast path takes no empty fields or blank lines with spaces: fill them in.
        filled = _BLANK_LINE.sub("\n", "\n" + text)
        filled = _EMPTY_FIRST_FIELD.sub("\nnan,", filled)
        rows = _loadtxt(_EMPTY_OTHER_FIELD.sub(",nan", filled)[1:])
    return rows


def _loadtxt(text: str) -> npt.NDArray[np.float32] | None:
    import warnings

    import numpy as np

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            rows: npt.NDArray[np.float32] = np.loadtxt(
                io.StringIO(text), dtype=np.float32, **_LOADTXT_OPTIONS
            )
    except ValueError:
        return None
    return rows


def _valid(
    rows: npt.NDArray[np.float32], rule: LabelRule, expected: ExpectedColumns | None
) -> bool:
    import numpy as np

    count = rows.shape[1]
    if rows.shape[0] == 0 or count < 2 or count > MAX_COLUMNS:
        return False
    if expected is not None and count != expected.count:
        return False
    # Only contract bytes were read, so no "inf" was written: an infinity is a float32 overflow.
    if np.isinf(rows[:, 1:]).any() or not rule.allows_all(rows[:, 0]):
        return False
    return not bool(np.isnan(rows[:, -1]).all())


def _chunked(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), _CHUNK_BYTES):
        yield data[start : start + _CHUNK_BYTES]


def data_files(directory: Path) -> list[Path]:
    """Every file under ``directory`` the job reads, in a stable order (:func:`is_ignored`)."""
    found: list[Path] = []
    for root, subdirectories, files in os.walk(directory):
        subdirectories[:] = sorted(
            d for d in subdirectories if not d.startswith(IGNORED_NAME_PREFIXES)
        )
        found.extend(
            Path(root) / name
            for name in sorted(files)
            if not name.startswith(IGNORED_NAME_PREFIXES)
        )
    return found
