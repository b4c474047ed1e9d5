"""Fixtures for the training code: SageMaker job layouts and the serving module."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.training.training_harness import TRAINING_DIR, Job, regression_rows


def load_training_module(name: str) -> ModuleType:
    """Import ``training/<name>.py`` under a unique name: the scripts are not a package."""
    module_name = f"refit_training_{name}"
    spec = importlib.util.spec_from_file_location(module_name, TRAINING_DIR / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def train_module() -> ModuleType:
    return load_training_module("train")


@pytest.fixture(scope="session")
def inference() -> ModuleType:
    return load_training_module("inference")


@pytest.fixture
def new_job(tmp_path: Path) -> Callable[[], Job]:
    """Make empty job layouts: a test that chains jobs needs more than one."""
    count = 0

    def make() -> Job:
        nonlocal count
        count += 1
        return Job(tmp_path / f"job-{count}")

    return make


@pytest.fixture
def job(new_job: Callable[[], Job]) -> Job:
    """A regression job: train and test data written, 12 rounds."""
    job = new_job()
    job.write_table("train", regression_rows(400, seed=1))
    job.write_table("test", regression_rows(200, seed=2))
    job.set_hyperparameters(num_round=12, max_depth=3, eta=0.3, checkpoint_interval=4)
    return job
