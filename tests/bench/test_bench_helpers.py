"""The benchmark's pure helpers: no local cloud, no training, no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench import cold_start
from bench.__main__ import parse_figures
from bench.incremental import relative_gap
from bench.local_cloud_figures import count_transitions
from bench.report import Row, closing_notes, markdown_table, percentile


def entered(*names: str) -> list[dict[str, object]]:
    start = datetime(2026, 11, 28, tzinfo=UTC)
    return [
        {
            "type": "TaskStateEntered",
            "timestamp": start + timedelta(seconds=n),
            "stateEnteredEventDetails": {"name": name},
        }
        for n, name in enumerate(names)
    ]


def test_wait_loop_polls_beyond_the_first_pass_are_not_counted() -> None:
    # Given a run whose endpoint wait loop went round three times
    loop = ("WaitForEndpoint", "DescribeEndpoint", "CountEndpointPoll", "EndpointStatus")
    events = entered("PrepareRun", "CreateEndpoint", *loop * 3, "RecordPromoted")
    # When its transitions are counted
    counted = count_transitions(events)
    # Then one pass of the loop counts, the two repeats do not
    assert counted["entered"] == 15
    assert counted["wait_loop_passes"] == 3
    assert counted["excluding_wait_polls"] == 7
    assert counted["path"] == "promoted, CreateEndpoint"


def test_relative_gap_is_direction_aware() -> None:
    assert relative_gap("rmse", 1.01, 1.0) == pytest.approx(0.01)
    assert relative_gap("rmse", 0.9, 1.0) == pytest.approx(-0.1)
    assert relative_gap("auc", 0.9, 1.0) == pytest.approx(0.1)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0


def test_parse_figures() -> None:
    assert parse_figures(None) == set(range(1, 10))
    assert parse_figures("3, 1") == {1, 3}
    with pytest.raises(Exception, match="no figure"):
        parse_figures("10")


def test_table_marks_misses_and_notes_say_why() -> None:
    rows = [
        Row(1, "a", "1", "≤ 2", True, "make bench"),
        Row(2, "b", "3", "≤ 2", False, "make bench", note="too slow"),
    ]
    table = markdown_table(rows)
    assert "**FAIL**" in table and "| pass |" in table
    assert closing_notes(rows) == ["- 2 b (FAIL): too slow"]


def test_every_function_variable_of_the_template_has_a_cold_start_stand_in() -> None:
    # Given every function's environment as template.yaml sets it (intrinsics read as None)
    for function in cold_start.function_environments().values():
        # Then figure 4 can give each variable a plausible value (a new one needs a stand-in)
        for name, value in function["env"].items():
            assert cold_start.stand_in(name, value), name
