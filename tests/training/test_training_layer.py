"""training/Makefile: what SAM puts in TrainingCodeLayer."""

from __future__ import annotations

import subprocess
from pathlib import Path

from refit import layout
from tests.training.training_harness import TRAINING_DIR


def test_layer_holds_only_the_runtime_scripts(tmp_path: Path) -> None:
    target = ["build-TrainingCodeLayer", f"ARTIFACTS_DIR={tmp_path}"]
    subprocess.run(["make", "-s", "-C", str(TRAINING_DIR), *target], check=True)

    shipped = tmp_path / "refit_training"
    # refit.layout.TRAINING_MODULES is the list: PrepareRun refuses a layer without one of them
    assert sorted(path.name for path in shipped.iterdir()) == sorted(layout.TRAINING_MODULES)
    for script in shipped.iterdir():
        assert script.read_bytes() == (TRAINING_DIR / script.name).read_bytes()


def test_every_module_of_the_training_code_is_listed() -> None:
    # The local cloud ships training/ whole, so a module missing from the list (and the
    # Makefile) would pass every local run and fail every job in AWS.
    modules = sorted(path.name for path in TRAINING_DIR.glob("*.py"))

    assert modules == sorted(layout.TRAINING_MODULES)
