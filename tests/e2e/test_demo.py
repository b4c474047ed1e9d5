"""The demo's exit codes and failure report (the scenario itself runs in test_scenario.py)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_cloud.cloud import PortInUse
from refit_cli import demo
from refit_cli.scenario import ExpectationFailed


def test_a_step_that_did_not_happen_fails_the_demo_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    @contextlib.contextmanager
    def fake_cloud(**_: Any) -> Iterator[Any]:
        class Info:
            endpoint_url, stack_name, bucket, endpoint_name = "http://x", "s", "b", "e"

        class Cloud:
            def connection_info(self) -> Info:
                return Info()

        yield Cloud()

    class FailingScenario:
        def __init__(self, *_: Any, **__: Any) -> None:
            self.runs: list[Any] = []

        def upload_test_set(self) -> None:
            raise ExpectationFailed("step 1: endpoint refit-endpoint is Failed, expected InService")

    monkeypatch.setattr(demo, "local_cloud", fake_cloud)
    monkeypatch.setattr(demo, "Scenario", FailingScenario)
    out = io.StringIO()
    assert demo.main(["--state-dir", str(tmp_path)], out=out) == 1
    assert "DEMO FAILED: step 1: endpoint refit-endpoint is Failed" in out.getvalue()


def test_a_cloud_that_cannot_start_fails_the_demo_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def busy(**_: Any) -> Any:
        raise PortInUse("port 4566 is in use: is another `refit local up` running?")

    monkeypatch.setattr(demo, "local_cloud", busy)
    out = io.StringIO()
    assert demo.main(["--port", "4566", "--state-dir", str(tmp_path)], out=out) == 2
    assert "the local cloud cannot start: port 4566 is in use" in out.getvalue()
