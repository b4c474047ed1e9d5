"""Run training/train.py the way SageMaker does: a job layout in a temp dir, one subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_DIR = REPO_ROOT / "training"
TRAIN_SCRIPT = TRAINING_DIR / "train.py"
FEATURES = 6
RUN_TIMEOUT_SECONDS = 60

Table = npt.NDArray[np.float64]  # label in column 0, then the features


def regression_rows(rows: int, seed: int, features: int = FEATURES) -> Table:
    """A linear-ish target with a bend and a little noise: boosting has something to learn."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    y = x @ np.linspace(1.0, 3.0, features) + np.sin(2 * x[:, 0]) + 0.1 * rng.normal(size=rows)
    return as_written(np.column_stack([y, x]))


def binary_rows(rows: int, seed: int) -> Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + 0.3 * rng.normal(size=rows) > 0).astype(float)
    return as_written(np.column_stack([y, x]))


def multiclass_rows(rows: int, seed: int, classes: int = 3) -> Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    y = np.digitize(x[:, 0] + 0.3 * rng.normal(size=rows), np.linspace(-0.7, 0.7, classes - 1))
    return as_written(np.column_stack([y.astype(float), x]))


def as_written(table: Table) -> Table:
    """Rounded so that the CSV text holds exactly these numbers: in-test predictions then see
    the same inputs as the script."""
    return np.round(table, 4)


def csv_text(table: Table, newline: str = "\n") -> str:
    buffer = io.StringIO()
    np.savetxt(buffer, table, delimiter=",", fmt="%.10g", newline=newline)
    return buffer.getvalue()


def train_booster(
    table: Table,
    rounds: int,
    params: dict[str, Any] | None = None,
    start: xgb.Booster | None = None,
) -> xgb.Booster:
    """A booster trained in-process (``start``: the one to continue), e.g. to be a champion."""
    matrix = xgb.DMatrix(table[:, 1:], label=table[:, 0])
    settings = {"objective": "reg:squarederror", "max_depth": 3, **(params or {})}
    return xgb.train(settings, matrix, num_boost_round=rounds, xgb_model=start)


def model_archive(raw: bytes) -> bytes:
    """``model.tar.gz`` bytes as SageMaker packs a model dir: ``xgboost-model`` at the root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        member = tarfile.TarInfo("xgboost-model")
        member.size = len(raw)
        tar.addfile(member, io.BytesIO(raw))
    return buffer.getvalue()


def predict(booster: xgb.Booster, table: Table, **options: Any) -> npt.NDArray[np.float32]:
    result: npt.NDArray[np.float32] = booster.predict(xgb.DMatrix(table[:, 1:]), **options)
    return result


def rmse(predictions: npt.NDArray[Any], labels: npt.NDArray[Any]) -> float:
    return float(np.sqrt(np.mean((predictions.astype(np.float64) - labels) ** 2)))


def logged_metric(output: str, name: str) -> float:
    """The value of the one ``<name>: <value>`` log line (what MetricDefinitions pick up)."""
    values = [
        line.split(": ", 1)[1] for line in output.splitlines() if line.startswith(f"{name}: ")
    ]
    assert len(values) == 1, f"expected one {name} line in:\n{output}"
    return float(values[0])


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str  # stdout and stderr, interleaved as the job's log would be


class Job:
    """One training job's ``/opt/ml`` (``SM_ROOT``) plus a failure file and checkpoint dir."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "opt" / "ml"
        self.failure_file = base / "failure-reason.txt"  # via SM_OUTPUT_FAILURE
        self.checkpoint_dir = base / "checkpoints"  # via checkpointconfig.json, as SageMaker does
        self.log_file = base / "job.log"
        config = self.root / "input" / "config"
        config.mkdir(parents=True)
        (config / "checkpointconfig.json").write_text(
            json.dumps({"LocalPath": str(self.checkpoint_dir)})
        )

    # --- inputs ---------------------------------------------------------------------------

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    def write_text(self, channel: str, name: str, text: str, newline: str = "\n") -> Path:
        path = self.channel(channel) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline=newline) as file:
            file.write(text)
        return path

    def write_table(self, channel: str, table: Table, name: str = "part-0.csv") -> Path:
        return self.write_text(channel, name, csv_text(table))

    def set_hyperparameters(self, **values: Any) -> None:
        """Strings, as SageMaker writes hyperparameters.json."""
        path = self.root / "input" / "config" / "hyperparameters.json"
        path.write_text(json.dumps({key: str(value) for key, value in values.items()}))

    def add_champion(self, booster: xgb.Booster) -> None:
        self.add_champion_archive(model_archive(bytes(booster.save_raw("ubj"))))

    def add_champion_archive(self, archive: bytes) -> None:
        path = self.channel("model") / "model.tar.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(archive)

    def add_replay_archive(self, archive: bytes) -> None:
        """The champion's ``output.tar.gz`` in the ``replay`` channel, as PrepareRun plans it."""
        path = self.channel("replay") / "output.tar.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(archive)

    # --- running --------------------------------------------------------------------------

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "REFIT_"))}
        return {
            **inherited,
            "SM_ROOT": str(self.root),
            "SM_OUTPUT_FAILURE": str(self.failure_file),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        """Start train.py in the background; its log goes to ``log_file``."""
        with self.log_file.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, str(TRAIN_SCRIPT)],
                env=self.env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def run(self, **env: str) -> Run:
        process = self.start(**env)
        returncode = process.wait(timeout=RUN_TIMEOUT_SECONDS)
        return Run(returncode, self.log_file.read_text())

    def wait_for_checkpoint(self, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.checkpoints():
            assert process.poll() is None, f"train.py ended early:\n{self.log_file.read_text()}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)

    # --- outputs --------------------------------------------------------------------------

    def checkpoints(self) -> list[int]:
        """Rounds of the checkpoints on disk, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        names = (path.name for path in self.checkpoint_dir.glob("xgboost-checkpoint.*.ubj"))
        return sorted(int(name.split(".")[1]) for name in names)

    @property
    def model_file(self) -> Path:
        return self.root / "model" / "xgboost-model"

    def model(self) -> xgb.Booster:
        return xgb.Booster(model_file=str(self.model_file))

    def model_archive(self) -> bytes:
        """This job's model as SageMaker uploads it: the next job's champion."""
        return model_archive(self.model_file.read_bytes())

    def output_archive(self) -> bytes:
        """``output.tar.gz`` as SageMaker packs ``/opt/ml/output/data``: the next job's replay."""
        buffer = io.BytesIO()
        data = self.root / "output" / "data"
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(data.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=path.relative_to(data).as_posix())
        return buffer.getvalue()

    def evaluation(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            (self.root / "output" / "data" / "evaluation.json").read_text()
        )
        return result

    def failure(self) -> str:
        return self.failure_file.read_text() if self.failure_file.exists() else ""


def split_structure(booster: xgb.Booster) -> list[list[tuple[int, float]]]:
    """Per tree, the (feature, threshold) of each split node: what a leaf refresh must keep."""
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    return [
        [
            (feature, threshold)
            for feature, threshold, left in zip(
                tree["split_indices"], tree["split_conditions"], tree["left_children"], strict=True
            )
            if left != -1
        ]
        for tree in trees
    ]
