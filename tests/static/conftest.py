"""Session fixtures for the static tests (loaders live in static_helpers.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.static.static_helpers import ASL_PATH, TEMPLATE_PATH, load_template


@pytest.fixture(scope="session")
def template_text() -> str:
    return TEMPLATE_PATH.read_text()


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


@pytest.fixture(scope="session")
def asl() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ASL_PATH.read_text())
    return data


@pytest.fixture(scope="session")
def states(asl: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = asl["States"]
    return found


@pytest.fixture(scope="session")
def asl_text() -> str:
    return ASL_PATH.read_text()
