"""How a job survives interruption: checkpoints on disk and the SIGTERM that asks for one.

Managed spot training stops a job with SIGTERM and later restarts it with the same checkpoint
directory, which SageMaker syncs with S3. ``StopSignal`` turns SIGTERM into an orderly stop,
``CheckpointCallback`` saves the booster every ``checkpoint_interval`` rounds and on that stop,
and ``Checkpoints`` finds the newest readable one for the restarted job (``train.starting_point``
decides whether it fits). Files are written atomically: a SIGKILL never leaves half a file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import refit_distributed as distributed
import xgboost as xgb
from refit_errors import TrainingStopped, first_line

CHECKPOINT_NAME = re.compile(r"xgboost-checkpoint\.(\d+)\.ubj")
CHECKPOINTS_TO_KEEP = 3

log = logging.getLogger("refit.train")


class StopSignal:
    """Turns SIGTERM into a prompt, orderly exit.

    Outside training the handler raises at once. During training it only sets a flag: the
    checkpoint callback saves the booster and stops after the current round.
    """

    def __init__(self) -> None:
        self.requested = False
        self.defer = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if not self.defer:
            raise TrainingStopped("received SIGTERM")


def checkpoint_dir(env: Mapping[str, str], root: Path) -> Path:
    if env.get("SM_CHECKPOINT_DIR"):
        return Path(env["SM_CHECKPOINT_DIR"])
    config_file = root / "input" / "config" / "checkpointconfig.json"
    if config_file.is_file():
        local_path = json.loads(config_file.read_text()).get("LocalPath")
        if local_path:
            return Path(local_path)
    return root / "checkpoints"


class Checkpoints:
    """``xgboost-checkpoint.<rounds>.ubj`` files in one directory, newest few kept."""

    def __init__(self, directory: Path, keep: int = CHECKPOINTS_TO_KEEP) -> None:
        self.directory = directory
        self.keep = keep

    def saved(self) -> list[tuple[int, Path]]:
        """(rounds, path) of every checkpoint, newest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = CHECKPOINT_NAME.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def newest(self) -> tuple[int, xgb.Booster] | None:
        """The newest readable checkpoint; an unreadable one (a torn copy) falls back to older."""
        for rounds, path in self.saved():
            booster = xgb.Booster()
            try:
                booster.load_model(bytearray(path.read_bytes()))
            except (OSError, xgb.core.XGBoostError) as error:
                log.warning(
                    "checkpoint %s is unreadable, trying an older one: %s",
                    path.name,
                    first_line(error),
                )
                continue
            if booster.num_boosted_rounds() == rounds:
                return rounds, booster
            log.warning(
                "checkpoint %s holds %d rounds; skipped", path.name, booster.num_boosted_rounds()
            )
        return None

    def save(self, booster: xgb.Booster) -> None:
        rounds = booster.num_boosted_rounds()
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(
            self.directory / f"xgboost-checkpoint.{rounds}.ubj", booster.save_raw("ubj")
        )
        for _, old in self.saved()[self.keep :]:
            old.unlink(missing_ok=True)


def write_atomically(path: Path, content: bytes | bytearray) -> None:
    """Write then rename: a reader (or a SIGKILL) never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(content)
    os.replace(partial, path)


class CheckpointCallback(xgb.callback.TrainingCallback):
    """Saves a checkpoint every ``interval`` rounds of this run; on SIGTERM saves one and stops.

    On a multi-host job only the leader saves (``save``; SageMaker syncs each host's checkpoint
    directory with the same S3 prefix) and the hosts stop after the same round: a SIGTERM any of
    them received stops all of them, else one would wait forever in the next round's collective.
    """

    def __init__(
        self,
        checkpoints: Checkpoints,
        interval: int,
        base_rounds: int,
        stop: StopSignal,
        save: bool = True,
    ) -> None:
        super().__init__()
        self.checkpoints = checkpoints
        self.interval = interval
        self.base_rounds = base_rounds
        self.stop = stop
        self.save = save

    def after_iteration(
        self, model: xgb.Booster, epoch: int, evals_log: xgb.callback.TrainingCallback.EvalsLog
    ) -> bool:
        rounds = model.num_boosted_rounds()
        self.stop.requested = bool(distributed.largest(int(self.stop.requested)))
        due = self.stop.requested or (rounds - self.base_rounds) % self.interval == 0
        if due and self.save:
            self.checkpoints.save(model)
            log.info("checkpoint saved at round %d", rounds)
        return self.stop.requested
