"""One local cloud per e2e module: the scenario's steps build on each other, in file order.

The cloud runs on a free loopback port. Its logs (training jobs, functions) go to a temporary
state directory that pytest keeps for inspection after a failure; the scenario's progress lines
are printed, so a failing test shows them with its captured output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from refit_cli.scenario import Scenario, local_cloud


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-cloud-state")


@pytest.fixture(scope="module")
def scenario(state_dir: Path) -> Iterator[Scenario]:
    with local_cloud(state_dir=state_dir) as cloud:
        yield Scenario(cloud, progress=lambda line: print(f"scenario: {line}"))
