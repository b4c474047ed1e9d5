"""training/Makefile: what SAM puts in TrainingCodeLayer."""

from __future__ import annotations

import subprocess
from pathlib import Path

from training_harness import TRAINING_DIR


def test_layer_holds_only_the_runtime_scripts(tmp_path: Path) -> None:
    target = ["build-TrainingCodeLayer", f"ARTIFACTS_DIR={tmp_path}"]
    subprocess.run(["make", "-s", "-C", str(TRAINING_DIR), *target], check=True)

    shipped = tmp_path / "refit_training"
    assert sorted(path.name for path in shipped.iterdir()) == [
        "inference.py",
        "refit_data.py",
        "refit_incremental.py",
        "train.py",
    ]
    for script in shipped.iterdir():
        assert script.read_bytes() == (TRAINING_DIR / script.name).read_bytes()
