"""refit's data contract (training/refit_data.py) through both of its sides.

Every case goes through :func:`refit_data.check_stream` (PrepareRun streams each upload through
it, in small chunks here so that lines straddle chunk boundaries) and :func:`refit_data.read_table`
(train.py reads its channels with it): both accept it or both refuse it with the same message,
and what is accepted reads as the values a plain reading of the text gives, in float32.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import refit_data
from refit_data import ExpectedColumns, InvalidDataFile, label_rule

REGRESSION = "reg:squarederror"


def chunked(data: bytes, size: int = 3) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def expected_values(data: bytes) -> np.ndarray:
    """The rows a person reads in the text: empty or nan = missing, float32 as XGBoost keeps."""
    text = data.decode("utf-8").removeprefix("\ufeff")
    rows = [
        [float(field) if field.strip(" \t") else math.nan for field in line.split(",")]
        for line in text.replace("\r\n", "\n").split("\n")
        if line.strip(" \t")
    ]
    return np.asarray(rows, dtype=np.float32)


def both_sides(
    data: bytes,
    tmp_path: Path,
    objective: str = REGRESSION,
    expected: ExpectedColumns | None = None,
) -> tuple[str | None, np.ndarray | None]:
    """What PrepareRun and the job make of ``data``: (message or None, matrix or None)."""
    rule = label_rule(objective)
    try:
        shape = refit_data.check_stream(chunked(data), rule, expected)
        streamed = None
    except InvalidDataFile as error:
        shape, streamed = None, str(error)
    path = tmp_path / "part.csv"
    path.write_bytes(data)
    try:
        table = refit_data.read_table(path, rule, expected)
        read = None
    except InvalidDataFile as error:
        table, read = None, str(error)
    assert streamed == read, "PrepareRun and the job disagree"
    if table is not None:
        assert shape == refit_data.Shape(*table.shape)
    return streamed, table


ACCEPTED = {
    "plain": b"1,2,3\n0,-1e-3,4.5\n",
    "CRLF": b"1,2,3\r\n0,-1e-3,4.5\r\n",
    "no final newline": b"1,2\n3,4",
    "BOM, blank lines of spaces and tabs, missing values": b"\xef\xbb\xbf1,2.5,nan\n  \n0,,3\n\t\n",
    "blank CRLF lines": b"1,2\r\n\r\n \r\n3,4\r\n",
    "spaces and tabs around fields": b" 1 ,\t2\t, 3\n",
    "signs, bare points, exponents": b"+1.,.5,-2E+3\n-0,1e-2,3.\n",
    "nan in any case and sign": b"1,NaN,-nan,1\n2,+NAN,nAn,2\n",
    "an empty first feature": b"1,,2\n3,4,5\n",
    "a value that underflows float32 to 0": b"1,1e-50\n",
    "the largest value float32 rounds to finite": b"1,3.4028235e38\n",
}


@pytest.mark.parametrize("data", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_what_prepare_run_accepts_the_job_reads_with_the_same_values(
    data: bytes, tmp_path: Path
) -> None:
    problem, table = both_sides(data, tmp_path)
    assert problem is None
    assert table is not None and table.dtype == np.float32
    np.testing.assert_array_equal(table, expected_values(data))


REFUSED = {
    "empty": (b"", "no data rows"),
    "blank lines only": (b"\n \n\r\n", "no data rows"),
    "a header row": (b"price,sqft,rooms\n1,2,3\n", "line 1 looks like a header row"),
    "a quoted header": (b'"1","2","3"\n', "line 1 looks like a header row"),
    "a column count that changes": (b"1,2,3\n1,2\n", "line 2 has 2 columns, expected 3"),
    "one column": (b"1\n2\n", "line 1 has 1 column: expected the label"),
    "a word": (b"1,2,3\n1,2,x\n", "line 2, column 3: 'x' is not a number"),
    "digit separators": (b"1,2,3\n1,2,1_000\n", "line 2, column 3: '1_000' is not a number"),
    "hex": (b"1,0x10\n", "line 1, column 2: '0x10' is not a number"),
    "two numbers in a field": (b"1,2 3\n", "line 1, column 2: '2 3' is not a number"),
    "an empty label": (b"1,2,3\n,2,3\n", "line 2, column 1 (the label) is empty"),
    "a nan label": (b"1,2,3\nnan,2,3\n", "line 2, column 1 (the label) is 'nan'"),
    "an infinite feature": (b"1,2,3\n1,inf,3\n", "line 2, column 2 is infinite"),
    "Infinity": (b"1,-Infinity\n", "line 1, column 2 is infinite"),
    "an infinite label": (b"1,2\ninf,2\n", "line 2, column 1 (the label) is infinite"),
    "a feature beyond float32": (b"1,2\n1,1e39\n", "line 2, column 2: 1e39 is beyond float32"),
    "a label beyond float32": (b"1,2\n-4e38,2\n", "line 2, column 1: -4e38 is beyond float32"),
    "not UTF-8": (b"1,2,3\n1,\xff\xfe,3\n", "line 2 is not UTF-8 text"),
    "a bare CR inside a line": (b"1,\r2\n", "line 1, column 2: a carriage return (CR) inside"),
    "CR line ends": (b"1,2\r3,4\r", "line 1, column 2: a carriage return (CR) inside"),
    "a form feed line": (b"1,2\n\x0c\n", "line 2, column 1"),
    "a vertical tab": (b"1,2\x0b\n", "line 1, column 2: '2\\x0b' is not a number"),
    "NEL (U+0085)": (b"1,2\xc2\x85\n", "U+0085"),
    "a fullwidth digit": ("１,2\n".encode(), "line 1, column 1: '１' is not a number"),
    "an Arabic-Indic digit": ("1,٢\n".encode(), "line 1, column 2: '٢' is not a number"),
    "trailing commas": (b"1,2,\n3,4,\n", "column 3 is missing on every row"),
}


@pytest.mark.parametrize(("data", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_what_either_side_refuses_both_refuse_with_the_same_message(
    data: bytes, message: str, tmp_path: Path
) -> None:
    problem, table = both_sides(data, tmp_path)
    assert table is None
    assert problem is not None and message in problem, problem


LABELS = {
    "binary 2": (
        "binary:logistic",
        b"0,1\n2,1\n",
        "line 2, column 1 (the label) is 2: labels must be 0 or 1 for binary:logistic",
    ),
    "binary -1": ("binary:hinge", b"-1,1\n", "must be 0 or 1 for binary:hinge"),
    "binary 0.5": ("binary:logistic", b"0.5,1\n", "must be 0 or 1"),
    "a fractional class": ("multi:softmax", b"0,1\n1.5,1\n", "a class index 0..999 for"),
    "a negative class": ("multi:softprob", b"-1,1\n", "a class index 0..999"),
    "a million classes": ("multi:softmax", b"0,1\n1e6,1\n", "line 2, column 1 (the label) is 1e6"),
    "a gamma label of 0": ("reg:gamma", b"1,1\n0,1\n", "a finite number > 0 for reg:gamma"),
    "a gamma label that is 0 in float32": ("reg:gamma", b"1e-50,1\n", "> 0 for reg:gamma"),
    "a negative count": ("count:poisson", b"-1,1\n", "≥ 0 for count:poisson"),
    "a probability past 1": ("reg:logistic", b"1.01,1\n", "≤ 1 for reg:logistic"),
    "squared log error at -1": ("reg:squaredlogerror", b"-1,1\n", "> -1"),
}


@pytest.mark.parametrize(("objective", "data", "message"), LABELS.values(), ids=LABELS.keys())
def test_labels_are_what_the_objective_can_learn(
    objective: str, data: bytes, message: str, tmp_path: Path
) -> None:
    problem, _ = both_sides(data, tmp_path, objective)
    assert problem is not None and message in problem, problem


@pytest.mark.parametrize(
    ("objective", "data"),
    [
        ("binary:logistic", b"0,1\n1,1\n1.0,2\n"),
        ("multi:softmax", b"0,1\n7,1\n999,1\n"),
        ("reg:logistic", b"0.25,1\n1,1\n"),
        ("reg:gamma", b"0.1,1\n"),
        ("count:poisson", b"0,1\n3,1\n"),
        (REGRESSION, b"-1e30,1\n"),
        ("survival:aft", b"-5,1\n"),  # no rule of refit's: any finite label
    ],
)
def test_labels_the_objective_learns_are_accepted(
    objective: str, data: bytes, tmp_path: Path
) -> None:
    problem, table = both_sides(data, tmp_path, objective)
    assert problem is None and table is not None


def test_a_class_count_the_stack_fixes_bounds_the_labels() -> None:
    rule = label_rule("multi:softmax", num_class=3)
    assert rule.allows(2.0) and not rule.allows(3.0)
    assert rule.describe() == "a class index 0..2 for multi:softmax"


def test_the_champion_fixes_the_column_count(tmp_path: Path) -> None:
    expected = ExpectedColumns(4, "the champion's 3 features + label")
    problem, _ = both_sides(b"1,2,3\n", tmp_path, expected=expected)
    assert problem == "line 1 has 3 columns, expected 4 (the champion's 3 features + label)"


def test_at_most_max_columns(tmp_path: Path) -> None:
    wide = ",".join(["1"] * (refit_data.MAX_COLUMNS + 1)).encode() + b"\n"
    problem, _ = both_sides(wide, tmp_path)
    assert problem is not None and f"at most {refit_data.MAX_COLUMNS}" in problem
    fits = ",".join(["1"] * refit_data.MAX_COLUMNS).encode() + b"\n"
    assert both_sides(fits, tmp_path)[0] is None


@pytest.mark.parametrize("data", [b"1," * 1000, b"1,2\n" + b"3," * 1000 + b"4\n5,6\n"])
def test_a_line_over_the_limit_is_refused_on_both_sides_wherever_it_is(
    data: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refit_data, "MAX_LINE_BYTES", 64)
    problem, _ = both_sides(data, tmp_path)
    assert problem is not None and "is longer than" in problem


def test_a_long_line_inside_one_chunk_is_caught_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # A complete long line in the middle of a chunk, not only an unfinished tail
    monkeypatch.setattr(refit_data, "MAX_LINE_BYTES", 64)
    data = b"1,2\n" + b"3," * 100 + b"4\n5,6\n"
    with pytest.raises(InvalidDataFile, match="line 2 is longer than"):
        refit_data.check_stream([data], label_rule(REGRESSION))


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("a.csv", False),
        ("2026/12/a.csv", False),
        ("_SUCCESS", True),
        (".keep", True),
        ("_temporary/0/part-0.csv", True),
        ("clinic/.hidden/a.csv", True),
        ("clinic/a_b.csv", False),
    ],
)
def test_names_and_folders_starting_with_underscore_or_dot_are_not_data(
    path: str, ignored: bool, tmp_path: Path
) -> None:
    assert refit_data.is_ignored(path) is ignored
    # And the job's reader skips exactly those
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text("1,2\n")
    read = [p.relative_to(tmp_path).as_posix() for p in refit_data.data_files(tmp_path)]
    assert (path in read) is not ignored


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a.csv", None),
        ("a//b.csv", "empty, '.' or '..' path segment"),
        ("../b.csv", "empty, '.' or '..' path segment"),
        ("x" * 896 + ".csv", None),
        ("x" * 897 + ".csv", "901 bytes, the limit is 900"),
        ("é" * 449 + ".csv", "902 bytes"),  # bytes, not characters
    ],
)
def test_paths_must_fit_refits_copies(path: str, problem: str | None) -> None:
    found = refit_data.path_problem(path)
    assert (found is None) if problem is None else (found is not None and problem in found)
