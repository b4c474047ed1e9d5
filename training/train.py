"""Train a refit challenger in the SageMaker XGBoost container (script mode, image 3.0-5).

With ``refit_mode=incremental`` the script keeps boosting the champion from the ``model`` channel;
with ``full`` it trains from scratch. A warm start that is unsafe (the champion is unreadable, has
another feature count or objective) becomes a full training of ``full_num_round`` rounds, with the
reason in ``modeFallback``. Either way it scores challenger and champion on the same fresh test set
(``test``) and, when the optional ``test_retained`` channel holds older test data, on that too
(the gate's forgetting check), and writes:

- ``<model dir>/xgboost-model``: the challenger (UBJSON); SageMaker tars it to ``model.tar.gz``;
- ``<output data dir>/evaluation.json``: the scores EvaluateModels compares;
- log lines ``test-<metric>: <value>`` and ``champion-test-<metric>: <value>`` (MetricDefinitions),
  ``retained-test-<metric>`` and ``champion-retained-test-<metric>`` with a retained set,
  plus xgboost's per-round ``train-<metric>`` / ``validation-<metric>``.

Where things are. Each path comes from SageMaker's environment variable, else from a path under
``SM_ROOT`` (default ``/opt/ml``), so a local run can put the whole layout in a temp dir:

- hyperparameters: ``SM_HPS`` (JSON), else ``input/config/hyperparameters.json``
- channels: ``SM_CHANNEL_<NAME>``, else ``input/data/<name>``
- model dir: ``SM_MODEL_DIR``, else ``model``
- output data dir: ``SM_OUTPUT_DATA_DIR``, else ``output/data``
- checkpoints: ``SM_CHECKPOINT_DIR``, else ``LocalPath`` in ``input/config/checkpointconfig.json``,
  else ``checkpoints``
- failure file: ``SM_OUTPUT_FAILURE``, else ``output/failure``

``SM_ROOT``, ``SM_CHECKPOINT_DIR`` and ``SM_OUTPUT_FAILURE`` are refit's own: SageMaker never sets
them. Test hook: ``REFIT_TEST_ROUND_DELAY`` (seconds) sleeps after every boosting round so a test
can interrupt training midway; a real job never sets it.

Every ``checkpoint_interval`` rounds the booster is saved as ``xgboost-checkpoint.<rounds>.ubj``,
where rounds counts all of its boosting rounds, the champion's included. A restarted job resumes
from the newest checkpoint and boosts only the rounds still missing.

Exit status: 0 done; 1 failed (the reason is in the failure file, SageMaker's FailureReason);
143 stopped by SIGTERM (the newest checkpoint is where a restarted job resumes).

This file is the job itself: where things are, the channels, the champion, boosting and the
outputs. Script mode ships it with its sibling modules (training/Makefile's RUNTIME_SCRIPTS,
``refit.layout.TRAINING_MODULES``), which it imports:

- ``refit_hyperparameters``: the hyperparameters, parsed and checked into a ``TrainingConfig``;
- ``refit_data``: refit's data contract, which reads the channels;
- ``refit_checkpoints``: checkpoint files and the SIGTERM that stops a job;
- ``refit_incremental``: what an incremental job adds: replay, leaf refresh, drift check;
- ``refit_scoring``: the test metrics, the same for challenger and champion;
- ``refit_errors``: ``TrainingError`` and ``TrainingStopped``, which ``main`` turns into the exit
  status.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# xgboost imports scikit-learn and pandas when they are installed (the SageMaker XGBoost image
# has both) for APIs this script never uses: ~0.6 CPU s of every job. None in sys.modules makes
# that import fail, which xgboost.compat handles as "not installed". Only when run as the job:
# a process that imports this module (a test) keeps its own packages.
if __name__ == "__main__":
    for _unused in ("sklearn", "pandas"):
        if _unused not in sys.modules:
            sys.modules[_unused] = None  # type: ignore[assignment]

import numpy as np
import numpy.typing as npt
import refit_data as data
import refit_distributed as distributed
import refit_incremental as incremental
import xgboost as xgb

# The SageMaker Python SDK's estimator.deploy() and .transformer() serve with the training entry
# point (SAGEMAKER_PROGRAM=train.py): the image imports this module and needs its model_fn.
# These are refit's own serving handlers, those of every model refit deploys.
from inference import model_fn, transform_fn  # noqa: F401
from refit_checkpoints import (
    CheckpointCallback,
    Checkpoints,
    StopSignal,
    checkpoint_dir,
    write_atomically,
)
from refit_errors import TrainingError, TrainingStopped, first_line
from refit_hyperparameters import TrainingConfig, load_hyperparameters, training_config
from refit_scoring import collective_score, format_metric, score

# Shared with layers/refit/refit/layout.py, their source: this script runs in the SageMaker image,
# which does not have the refit package.
CHANNEL_TRAIN = "train"
CHANNEL_VALIDATION = "validation"
CHANNEL_TEST = "test"
CHANNEL_TEST_RETAINED = "test_retained"
CHANNEL_MODEL = "model"
CHANNEL_REPLAY = "replay"
MODEL_FILE = "xgboost-model"
EVALUATION_FILE = "evaluation.json"

DEFAULT_SM_ROOT = "/opt/ml"
MODEL_ARCHIVE = "model.tar.gz"
# Incremental jobs: appended rounds stop after this many without a better validation score.
# Bench figure 1 (2026-12-07): 5 instead of 10 kept every chain's quality (final stationary and
# drifting scores within 0.0001) and cut the drifting stream's last job ~10 % of its CPU.
INCREMENTAL_EARLY_STOPPING_ROUNDS = 5
EXIT_FAILED = 1
EXIT_STOPPED = 128 + signal.SIGTERM

Matrix = npt.NDArray[np.float32]
log = logging.getLogger("refit.train")


@dataclass(frozen=True)
class JobPaths:
    train: Path
    validation: Path
    test: Path
    test_retained: Path
    champion: Path
    replay: Path
    model_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    hyperparameters_file: Path


@dataclass(frozen=True)
class ChannelData:
    rows: Matrix  # label first
    columns: data.ExpectedColumns  # what the other channels must have, and why

    @property
    def matrix(self) -> xgb.DMatrix:
        return incremental.matrix(self.rows)


# --- Job layout ----------------------------------------------------------------------------


def failure_file(env: Mapping[str, str]) -> Path:
    return Path(env.get("SM_OUTPUT_FAILURE") or sm_root(env) / "output" / "failure")


def sm_root(env: Mapping[str, str]) -> Path:
    return Path(env.get("SM_ROOT") or DEFAULT_SM_ROOT)


def job_paths(env: Mapping[str, str]) -> JobPaths:
    root = sm_root(env)

    def channel(name: str) -> Path:
        return Path(env.get(f"SM_CHANNEL_{name.upper()}") or root / "input" / "data" / name)

    return JobPaths(
        train=channel(CHANNEL_TRAIN),
        validation=channel(CHANNEL_VALIDATION),
        test=channel(CHANNEL_TEST),
        test_retained=channel(CHANNEL_TEST_RETAINED),
        champion=channel(CHANNEL_MODEL),
        replay=channel(CHANNEL_REPLAY),
        model_dir=Path(env.get("SM_MODEL_DIR") or root / "model"),
        output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR") or root / "output" / "data"),
        checkpoint_dir=checkpoint_dir(env, root),
        hyperparameters_file=root / "input" / "config" / "hyperparameters.json",
    )


# --- Data ----------------------------------------------------------------------------------


def load_channel(
    channel: str, directory: Path, expected: data.ExpectedColumns | None, rule: data.LabelRule
) -> ChannelData:
    """The channel's files as one table, read by refit's data contract (``refit_data``):
    every file must have the ``expected`` columns and labels ``rule`` allows."""
    files = data.data_files(directory) if directory.is_dir() else []
    if not files:
        raise TrainingError(f"channel {channel} has no data files (looked in {directory})")
    names = [f"{channel}/{path.relative_to(directory).as_posix()}" for path in files]
    blocks: list[Matrix] = []
    for path, name in zip(files, names, strict=True):
        try:
            rows = data.read_table(path, rule, expected)
        except data.InvalidDataFile as error:
            # The file's name first: refit finds it in the FailureReason
            # (refit.start_retrain.quarantine).
            raise TrainingError(f"{name}: {error}") from None
        expected = expected or data.ExpectedColumns(rows.shape[1], f"as in {name}")
        blocks.append(rows)
    table = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    del blocks  # only ``table`` from here: the channel is in memory once, then once in a DMatrix
    log.info(
        "channel %s: %d rows, %d features, %d files",
        channel,
        len(table),
        table.shape[1] - 1,
        len(files),
    )
    return ChannelData(table, data.ExpectedColumns(table.shape[1], f"as in {names[0]}"))


def load_train(directory: Path, rule: data.LabelRule, cluster: distributed.Cluster) -> ChannelData:
    """The train channel: on a multi-host job this host's shard (``ShardedByS3Key``), which may
    be empty; every host's files must have the same columns."""
    if cluster.world == 1:
        return load_channel(CHANNEL_TRAIN, directory, None, rule)
    own = load_channel(CHANNEL_TRAIN, directory, None, rule) if has_data(directory) else None
    mine = own.columns.count if own is not None else 0
    columns = distributed.largest(mine)
    fewest = -distributed.largest(-(mine or columns))
    if columns == 0:
        raise TrainingError(
            f"channel {CHANNEL_TRAIN} has no data files on any of the job's {cluster.world} hosts"
        )
    if fewest != columns:
        raise TrainingError(
            f"the hosts' {CHANNEL_TRAIN} files differ: {fewest} and {columns} columns "
            "(label included)"
        )
    if own is None:
        log.warning("host %s has no train files: it joins with none", cluster.current_host)
        return ChannelData(
            np.empty((0, columns), dtype=np.float32),
            data.ExpectedColumns(columns, "as on the job's other hosts"),
        )
    return own


def shard(rows: Matrix, cluster: distributed.Cluster) -> Matrix:
    """This host's share of a table every host holds (validation, replay): every
    ``world``-th row from its rank on, so each row counts once across the hosts."""
    return rows if cluster.world == 1 else rows[cluster.rank :: cluster.world]


def has_data(directory: Path) -> bool:
    return directory.is_dir() and bool(data.data_files(directory))


# --- Champion ----------------------------------------------------------------------------


def load_champion(directory: Path) -> xgb.Booster | None:
    """The champion from the model channel (``model.tar.gz`` or an extracted ``xgboost-model``)."""
    archive, extracted = directory / MODEL_ARCHIVE, directory / MODEL_FILE
    if archive.is_file():
        source = archive
    elif extracted.is_file():
        source = extracted
    elif has_data(directory):
        raise TrainingError(f"channel {CHANNEL_MODEL} has neither {MODEL_ARCHIVE} nor {MODEL_FILE}")
    else:
        return None
    try:
        raw = archive_member(archive, MODEL_FILE) if source == archive else extracted.read_bytes()
        champion = xgb.Booster()
        champion.load_model(bytearray(raw))
    except (OSError, tarfile.TarError, LookupError, xgb.core.XGBoostError) as error:
        raise TrainingError(
            f"the champion's {source.name} (channel {CHANNEL_MODEL}) is unreadable: "
            f"{first_line(error)}"
        ) from None
    log.info(
        "champion: %d rounds, %d features", champion.num_boosted_rounds(), champion.num_features()
    )
    return champion


def archive_member(archive: Path, member_name: str) -> bytes:
    """One file's bytes from a tarball, without extracting anything to disk."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and os.path.normpath(member.name) == member_name:
                content = tar.extractfile(member)
                assert content is not None  # regular files always have content
                return content.read()
    raise LookupError(f"{archive.name} holds no {member_name}")


def objective_of(booster: xgb.Booster) -> str:
    return str(json.loads(booster.save_config())["learner"]["objective"]["name"])


# --- Training ------------------------------------------------------------------------------


def with_class_count(
    config: TrainingConfig, champion: xgb.Booster | None, labels: list[npt.NDArray[np.float32]]
) -> TrainingConfig:
    """Fill in ``num_class`` for multi:* objectives when the stack did not pass it.

    Labels are class indices 0..K-1: K is the champion's count, or one more than the largest
    label when that is larger (or there is no champion).
    """
    if not config.multiclass or "num_class" in config.extra_params:
        return config
    count = champion_classes(champion) if champion is not None else 0
    # A class the champion does not know (unknown_class) makes the job train from scratch.
    count = max(count, 1 + largest_class(labels))
    return dataclasses.replace(config, extra_params={**config.extra_params, "num_class": count})


def largest_class(labels: list[npt.NDArray[np.float32]]) -> int:
    """The largest label of any host (a host's train shard may be empty)."""
    return distributed.largest(int(max((float(c.max()) for c in labels if len(c)), default=0)))


def champion_classes(champion: xgb.Booster) -> int:
    learner = json.loads(champion.save_config())["learner"]
    return int(learner["learner_model_param"].get("num_class", 0))


def unknown_class(
    config: TrainingConfig, champion: xgb.Booster | None, labels: list[npt.NDArray[np.float32]]
) -> str | None:
    """Why the champion's classes cannot hold the data's (a new class appeared), or None."""
    if not config.multiclass or champion is None or "num_class" in config.extra_params:
        return None
    known = champion_classes(champion)
    largest = largest_class(labels)
    if known < 1 or largest < known:
        return None
    return f"the data has class {largest}, the champion knows {known} classes (0..{known - 1})"


def read_champion(directory: Path) -> tuple[xgb.Booster | None, str | None]:
    """The champion, or None and why it cannot be used (a missing channel is no problem)."""
    try:
        return load_champion(directory), None
    except TrainingError as error:
        log.warning("champion not usable: %s", error)
        return None, str(error)


def resolve_mode(
    config: TrainingConfig, champion: xgb.Booster | None, problem: str | None, features: int
) -> tuple[str, str | None]:
    """Full or incremental, and why an incremental job trains from scratch instead (or None).

    A warm start is unsafe when the champion is unreadable, has another feature count or was
    trained with another objective: the job then trains from scratch (``full_num_round``
    rounds) rather than fail, and ``evaluation.json`` says why (``modeFallback``).
    """
    if config.requested_mode == "full":
        return "full", None
    if champion is None:
        if problem is not None:
            return "full", f"no warm start: {problem}"
        if config.requested_mode == "incremental":
            raise TrainingError(
                f"refit_mode=incremental needs a champion in channel {CHANNEL_MODEL}; found none"
            )
        return "full", None
    if champion.num_features() != features:
        return "full", (
            f"no warm start: the champion has {champion.num_features()} features, "
            f"the data has {features}"
        )
    if objective_of(champion) != config.objective:
        return "full", (
            f"no warm start: the champion was trained with objective {objective_of(champion)}, "
            f"this job asks for {config.objective}"
        )
    return "incremental", None


class RoundDelay(xgb.callback.TrainingCallback):
    """Test hook (``REFIT_TEST_ROUND_DELAY``): slows each round so tests can interrupt training."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def after_iteration(
        self, model: xgb.Booster, epoch: int, evals_log: xgb.callback.TrainingCallback.EvalsLog
    ) -> bool:
        time.sleep(self.seconds)
        return False


def boost(
    job: Job,
    params: dict[str, Any],
    train: xgb.DMatrix,
    validation: xgb.DMatrix | None,
    start: xgb.Booster | None,
    rounds: int,
    base_rounds: int,
    early_stopping_rounds: int | None,
) -> xgb.Booster:
    """Add up to ``rounds`` rounds to ``start`` (a fresh booster when None), checkpointing every
    ``checkpoint_interval`` rounds counted from ``base_rounds`` (the warm start's)."""
    config, stop = job.config, job.stop
    evals = [(train, "train")]
    callbacks: list[xgb.callback.TrainingCallback] = []
    if job.round_delay > 0:
        callbacks.append(RoundDelay(job.round_delay))
    callbacks.append(
        CheckpointCallback(
            job.checkpoints,
            config.checkpoint_interval,
            base_rounds,
            stop,
            save=job.cluster.is_leader,
        )
    )  # before EarlyStopping, whose stop skips later callbacks
    if validation is not None:
        evals.append((validation, "validation"))
        if early_stopping_rounds:
            callbacks.append(
                xgb.callback.EarlyStopping(
                    rounds=early_stopping_rounds,
                    metric_name=config.xgboost_metric,
                    data_name="validation",
                    save_best=True,
                )
            )
    elif early_stopping_rounds:
        log.warning("early_stopping_rounds ignored: there is no validation channel")
    stop.defer = True
    try:
        booster = xgb.train(
            params,
            train,
            num_boost_round=rounds,
            evals=evals,
            xgb_model=start,
            callbacks=callbacks,
            verbose_eval=True,
        )
    finally:
        stop.defer = False
    if stop.requested:
        raise TrainingStopped(f"received SIGTERM; stopped at round {booster.num_boosted_rounds()}")
    return booster


# --- Job -----------------------------------------------------------------------------------


def starting_point(
    checkpoints: Checkpoints, initial: xgb.Booster | None, planned_rounds: int, features: int
) -> tuple[xgb.Booster | None, int]:
    """The booster to continue (the newest checkpoint, else ``initial``) and its checkpoint round.

    A checkpoint already holds the champion's trees, so it replaces the warm start: the champion
    is never boosted on twice.
    """
    newest = checkpoints.newest()
    # Every host resumes from the same round: the leader's checkpoint, synced to all of them.
    own = newest[0] if newest is not None else 0
    leaders = distributed.from_leader(own)
    if own != leaders:
        raise TrainingError(
            f"this host's newest checkpoint is round {own}, the leader's {leaders}: every host "
            f"must start from the same checkpoints ({checkpoints.directory})"
        )
    if newest is None:
        return initial, 0
    rounds, booster = newest
    if rounds > planned_rounds or booster.num_features() != features:
        raise TrainingError(
            f"checkpoint round {rounds} ({booster.num_features()} features) does not fit this "
            f"job ({planned_rounds} rounds, {features} features): clear {checkpoints.directory}"
        )
    log.info("resuming from checkpoint round %d", rounds)
    return booster, rounds


def write_outputs(
    paths: JobPaths, challenger: xgb.Booster, evaluation: dict[str, Any], metric: str
) -> None:
    paths.model_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(paths.model_dir / MODEL_FILE, challenger.save_raw("ubj"))
    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    (paths.output_data_dir / EVALUATION_FILE).write_text(json.dumps(evaluation, indent=2) + "\n")
    print(f"test-{metric}: {format_metric(evaluation['challenger'])}", flush=True)
    if evaluation["champion"] is not None:
        print(f"champion-test-{metric}: {format_metric(evaluation['champion'])}", flush=True)
    if evaluation["retainedChallenger"] is not None:
        value = format_metric(evaluation["retainedChallenger"])
        print(f"retained-test-{metric}: {value}", flush=True)
    if evaluation["retainedChampion"] is not None:
        value = format_metric(evaluation["retainedChampion"])
        print(f"champion-retained-test-{metric}: {value}", flush=True)


def score_champion(
    champion: xgb.Booster | None, test: xgb.DMatrix, config: TrainingConfig
) -> tuple[float | None, str | None]:
    """The champion's score, or None and why: a champion of another kind (e.g. another number
    of classes) cannot be scored, which the gate must hear about rather than a failed job."""
    if champion is None:
        return None, None
    try:
        return score(champion, test, config), None
    except (TrainingError, xgb.core.XGBoostError) as error:
        return None, f"the champion cannot be scored on this data: {first_line(error)}"


@dataclass(frozen=True)
class Job:
    """What every training path needs: inputs, settings and the checkpoint machinery."""

    config: TrainingConfig
    checkpoints: Checkpoints
    stop: StopSignal
    round_delay: float
    features: int
    cluster: distributed.Cluster = distributed.SINGLE_HOST


@dataclass(frozen=True)
class Trained:
    challenger: xgb.Booster
    resumed_from: int
    tree_etas: npt.NDArray[np.float64]
    details: dict[str, Any]  # evaluation.json's "incremental" section, or {}


def train_from_scratch(
    job: Job, train: xgb.DMatrix, validation: xgb.DMatrix | None, rounds: int
) -> Trained:
    start, resumed_from = starting_point(job.checkpoints, None, rounds, job.features)
    remaining = rounds - (start.num_boosted_rounds() if start is not None else 0)
    log.info("training from scratch: %d rounds, %d to boost", rounds, remaining)
    if start is not None and remaining == 0:
        challenger = start  # the job was stopped after its last checkpoint
    else:
        challenger = boost(
            job,
            job.config.booster_params,
            train,
            validation,
            start,
            remaining,
            base_rounds=0,
            early_stopping_rounds=job.config.early_stopping_rounds,
        )
    trees = challenger.num_boosted_rounds() * incremental.trees_per_round(challenger)
    return Trained(challenger, resumed_from, np.full(trees, job.config.eta), {})


def train_incremental(
    job: Job,
    champion: xgb.Booster,
    new_rows: Matrix,
    replay: incremental.ReplaySample | None,
    replay_problem: str | None,
) -> Trained:
    """Refresh the champion's leaves, then append early-stopped rounds at ``incremental_eta``.

    New and replay rows are split alike into fit and validation rows (seeded: a resumed job
    splits the same way). The challenger is the best of the refreshed champion alone and the
    refreshed champion plus the appended rounds, on that validation set: a delivery that adds
    nothing adds no trees.
    """
    config = job.config
    seed = len(new_rows)
    new_fit, new_validation = incremental.split_rows(new_rows, config.validation_fraction, seed)
    fit_parts, validation_parts = [new_fit], [new_validation]
    if replay is not None:
        old_fit, old_validation = incremental.split_rows(
            shard(replay.rows, job.cluster), config.validation_fraction, seed + 1
        )
        fit_parts.append(old_fit)
        validation_parts.append(old_validation)
    fit = incremental.matrix(np.concatenate(fit_parts))
    validation = incremental.matrix(np.concatenate(validation_parts))
    base_rounds = champion.num_boosted_rounds()
    planned_rounds = base_rounds + config.num_round
    champion_etas = incremental.tree_etas(champion)
    refresh = (
        incremental.refresh_problem(champion, config.objective)
        if config.refresh_leaves
        else "leaf refresh switched off (refresh_leaves=0)"
    )
    checkpoint, resumed_from = starting_point(job.checkpoints, None, planned_rounds, job.features)
    refresh_rows: int | None = None  # new rows the refresh read (a resumed job reads none)
    if checkpoint is not None:
        # The checkpoint holds the refreshed champion's trees first: no second refresh.
        start = checkpoint
        refreshed = start[:base_rounds] if base_rounds else champion
    else:
        refreshed = champion
        if refresh is None:
            sample = incremental.refresh_sample(new_fit, champion, config.refresh_budget, seed)
            try:
                refreshed = incremental.refresh_leaves(
                    champion,
                    incremental.matrix(sample),
                    config.objective,
                    config.reg_lambda,
                    row_weight=len(new_fit) / max(1, len(sample)),
                    reduce=distributed.totals,
                )
                refresh_rows = int(distributed.total(len(sample)))
            except incremental.ModelFormatError as error:
                refresh = f"the model's layout is unknown to the refresh: {error}"
                log.warning("leaf refresh skipped: %s", refresh)
        start = refreshed
    remaining = planned_rounds - start.num_boosted_rounds()
    log.info(
        "incremental: %d new + %d replay rows (%d for validation), leaf refresh %s, "
        "up to %d rounds at eta %g, %d to boost",
        len(new_rows),
        len(replay.rows) if replay is not None else 0,
        validation.num_row(),
        "done" if refresh is None else f"skipped ({refresh})",
        config.num_round,
        config.incremental_eta,
        remaining,
    )
    boosted = start
    if remaining > 0:
        boosted = boost(
            job,
            {**config.booster_params, "eta": config.incremental_eta},
            fit,
            validation,
            start,
            remaining,
            base_rounds=base_rounds,
            early_stopping_rounds=config.early_stopping_rounds or INCREMENTAL_EARLY_STOPPING_ROUNDS,
        )
    # Not the champion itself: the replay rows of the validation set are rows it was fit on.
    appended = boosted.num_boosted_rounds() - base_rounds
    scores = validation_scores(refreshed, boosted, base_rounds, validation, config, job.cluster)
    gain = scores["boostedValidation"] - scores["refreshedValidation"]
    improved = gain > 0 if config.higher_is_better else gain < 0
    challenger = boosted if appended and improved else refreshed
    rounds_added = challenger.num_boosted_rounds() - base_rounds
    added_trees = rounds_added * incremental.trees_per_round(challenger)
    etas = np.concatenate([champion_etas, np.full(added_trees, config.incremental_eta)])
    details = {
        "newRows": int(distributed.total(len(new_rows))),
        "replayRows": len(replay.rows) if replay is not None else 0,
        "replaySeenRows": replay.seen_rows if replay is not None else None,
        "replayProblem": replay_problem,
        "fitRows": int(distributed.total(fit.num_row())),
        "validationRows": int(distributed.total(validation.num_row())),
        "leafRefresh": "blended" if refresh is None else None,
        "leafRefreshSkipped": refresh,
        "leafRefreshRows": refresh_rows,
        "eta": config.incremental_eta,
        "maxRounds": config.num_round,
        "roundsBoosted": appended,
        "roundsAdded": rounds_added,
        # Fewer rounds kept than allowed: early stopping (or the no-gain rule) ended them.
        "earlyStoppedRound": rounds_added if rounds_added < config.num_round else None,
        **scores,
    }
    return Trained(challenger, resumed_from, etas, details)


def validation_scores(
    refreshed: xgb.Booster,
    boosted: xgb.Booster,
    base_rounds: int,
    validation: xgb.DMatrix,
    config: TrainingConfig,
    cluster: distributed.Cluster = distributed.SINGLE_HOST,
) -> dict[str, float]:
    """The refreshed champion and the boosted model on the validation rows. ``boosted`` is
    ``refreshed`` plus rounds from ``base_rounds`` on: its margin is the refreshed margin (the
    DMatrix's base margin) plus the appended trees, so the champion's trees are read once.
    On several hosts the rows are sharded: xgboost's own metric, summed across the hosts."""
    scorer = collective_score if cluster.world > 1 else score
    refreshed_score = scorer(refreshed, validation, config)
    appended = boosted.num_boosted_rounds() - base_rounds
    if appended <= 0:
        return {"refreshedValidation": refreshed_score, "boostedValidation": refreshed_score}
    margin = refreshed.predict(validation, output_margin=True)
    on_refreshed = validation.slice(np.arange(validation.num_row()))
    on_refreshed.set_base_margin(margin.reshape(-1))
    boosted_score = scorer(
        boosted, on_refreshed, config, iteration_range=(base_rounds, boosted.num_boosted_rounds())
    )
    return {"refreshedValidation": refreshed_score, "boostedValidation": boosted_score}


def load_replay(
    directory: Path, features: int
) -> tuple[incremental.ReplaySample | None, str | None]:
    """The champion's replay sample, or None and why not (a missing channel is no problem)."""
    try:
        replay = incremental.read_replay(directory)
    except incremental.ReplayUnreadable as error:
        log.warning("training without replay: %s", error)
        return None, str(error)
    if replay is not None and replay.rows.shape[1] - 1 != features:
        problem = (
            f"the replay sample has {replay.rows.shape[1] - 1} features, the data has {features}"
        )
        log.warning("training without replay: %s", problem)
        return None, problem
    return replay, None


def check_drift(
    champion: xgb.Booster,
    new_rows: Matrix,
    replay: incremental.ReplaySample,
    config: TrainingConfig,
    cluster: distributed.Cluster = distributed.SINGLE_HOST,
) -> incremental.DriftCheck | None:
    """The champion on the new rows vs on the test data when it was trained (both unseen). On
    several hosts each samples its share of the new rows and every host scores them all."""
    reference = replay.reference_score
    if reference is None or replay.metric != config.metric:
        return None  # a sample from another metric (or none recorded): nothing to compare with
    share = incremental.DRIFT_CHECK_ROWS // cluster.world
    scored = distributed.gathered(incremental.uniform_sample(new_rows, share, len(new_rows)))
    try:
        on_new = score(champion, incremental.matrix(scored), config)
    except TrainingError as error:
        log.warning("no drift check: %s", error)
        return None
    worse = incremental.degradation(on_new, reference, config.higher_is_better)
    return incremental.DriftCheck(
        worse > config.drift_threshold, on_new, reference, config.drift_threshold, len(scored)
    )


def run(env: Mapping[str, str], stop: StopSignal) -> dict[str, Any]:
    """The job on this host; on a multi-host job every host runs it inside one collective."""
    paths = job_paths(env)
    cluster = distributed.cluster_of(env, paths.hyperparameters_file.parent)
    with distributed.joined(cluster):
        return train_and_score(env, paths, stop, cluster)


def train_and_score(
    env: Mapping[str, str], paths: JobPaths, stop: StopSignal, cluster: distributed.Cluster
) -> dict[str, Any]:
    """Train the challenger and, on the leader, score both models and write the outputs.

    Every step that calls the collective (training, and the totals and samples the hosts
    combine) runs on every host in the same order; only the leader scores and writes.
    """
    config = training_config(load_hyperparameters(env, paths.hyperparameters_file))
    champion, champion_problem = read_champion(paths.champion)
    # The labels the objective can learn (refit_data.label_rule): PrepareRun checked the train
    # files by the same rule; a class count the stack fixed bounds multi:* labels.
    rule = data.label_rule(config.objective, config.extra_params.get("num_class"))
    train = load_train(paths.train, rule, cluster)
    test = load_channel(CHANNEL_TEST, paths.test, train.columns, rule).matrix
    # Older test data (see docs/architecture.md, "The gate"): optional, same columns.
    retained = (
        load_channel(CHANNEL_TEST_RETAINED, paths.test_retained, train.columns, rule).matrix
        if has_data(paths.test_retained)
        else None
    )
    # Every host holds the whole validation channel: each evaluates its share of the rows.
    validation = (
        incremental.matrix(
            shard(
                load_channel(CHANNEL_VALIDATION, paths.validation, train.columns, rule).rows,
                cluster,
            )
        )
        if has_data(paths.validation)
        else None
    )
    features = train.columns.count - 1
    mode, mode_fallback = resolve_mode(config, champion, champion_problem, features)
    new_class = unknown_class(config, champion, [train.rows[:, 0], test.get_label()])
    if mode == "incremental" and new_class is not None:
        mode, mode_fallback = "full", f"no warm start: {new_class}"
    if mode_fallback is not None:
        log.warning("training from scratch: %s", mode_fallback)
    if champion is not None and champion.num_features() != features:
        champion_problem = (
            f"the champion has {champion.num_features()} features, the data has {features}: "
            "it cannot be scored on this data"
        )
        champion = None
    config = with_class_count(config, champion, [train.rows[:, 0], test.get_label()])

    replay, replay_problem = (None, None)
    drift = None
    if mode == "incremental":
        assert champion is not None
        replay, replay_problem = load_replay(paths.replay, features)
        drift = (
            check_drift(champion, train.rows, replay, config, cluster)
            if replay is not None
            else None
        )
        if drift is not None and drift.detected:
            mode, mode_fallback = "full", drift.reason
            log.warning("%s", drift.reason)
    job = Job(
        config,
        Checkpoints(paths.checkpoint_dir),
        stop,
        float(env.get("REFIT_TEST_ROUND_DELAY") or 0),
        features,
        cluster,
    )
    if mode == "incremental":
        assert champion is not None
        trained = train_incremental(job, champion, train.rows, replay, replay_problem)
        history = replay
    else:
        rounds = config.full_num_round if mode_fallback is not None else config.num_round
        # A drift restart learns the new relationship alone: no validation of the old one.
        trained = train_from_scratch(
            job, train.matrix, None if drift is not None else validation, rounds
        )
        history = None
    challenger = trained.challenger
    incremental.record_tree_etas(challenger, trained.tree_etas)
    train_rows = int(distributed.total(len(train.rows)))
    next_replay = incremental.updated_replay(
        history,
        replay_candidates(train.rows, train_rows, config.replay_rows, cluster),
        config.replay_rows,
        seed=train_rows,
        new_count=train_rows,
    )
    if mode == "incremental" and history is None:
        # Continued without the champion's sample: the trees' base is not known.
        next_replay = dataclasses.replace(next_replay, base_rows=None)

    if not cluster.is_leader:
        log.info("host %s done: the leader scores and writes the outputs", cluster.current_host)
        return {"host": cluster.current_host, "trainRows": len(train.rows)}
    champion_score, unscored = score_champion(champion, test, config)
    retained_champion, _ = (
        score_champion(champion, retained, config) if retained is not None else (None, None)
    )
    challenger_score = score(challenger, test, config)
    evaluation = {
        "metric": config.metric,
        "challenger": challenger_score,
        "champion": champion_score,
        "testRows": test.num_row(),
        "retainedChallenger": score(challenger, retained, config) if retained is not None else None,
        "retainedChampion": retained_champion if champion_score is not None else None,
        "retainedTestRows": retained.num_row() if retained is not None else None,
        "objective": config.objective,
        "modeFallback": mode_fallback,
        "championProblem": champion_problem or unscored,
        "trainRows": train_rows,
        "mode": mode,
        "championRounds": champion.num_boosted_rounds() if champion is not None else None,
        "challengerRounds": challenger.num_boosted_rounds(),
        "resumedFromRound": trained.resumed_from,
        "features": features,
        "incremental": trained.details or None,
        "drift": drift.to_dict() if drift is not None else None,
        "replaySample": next_replay.info(),
    }
    incremental.write_replay(paths.output_data_dir, next_replay, challenger_score, config.metric)
    write_outputs(paths, challenger, evaluation, config.metric)
    return evaluation


def replay_candidates(
    rows: Matrix, total_rows: int, capacity: int, cluster: distributed.Cluster
) -> Matrix:
    """The new rows the next replay sample draws from: all of them on one host; on several, a
    uniform sample from each host in proportion to its rows, gathered (every host's rows would
    not fit on one)."""
    if cluster.world == 1:
        return rows
    keep = incremental.replay_capacity(capacity, rows.shape[1])
    share = -(-keep * len(rows) // max(1, total_rows))  # rounded up: never fewer than needed
    return distributed.gathered(incremental.uniform_sample(rows, share, len(rows)))


def report_failure(path: Path, message: str) -> None:
    """Log ``message`` and write it where SageMaker reads the FailureReason (first 1024 chars)."""
    log.error("training failed: %s", message)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message + "\n")
    except OSError as error:
        log.error("cannot write the failure file %s: %s", path, error)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    env = os.environ
    stop = StopSignal()
    stop.install()
    try:
        evaluation = run(env, stop)
    except TrainingStopped as stopped:
        log.warning("%s; a restarted job resumes from the newest checkpoint", stopped)
        return EXIT_STOPPED
    except TrainingError as error:
        report_failure(failure_file(env), str(error))
        distributed.abandon(EXIT_FAILED)
        return EXIT_FAILED
    except Exception as error:
        log.exception("unexpected error")
        report_failure(
            failure_file(env), f"unexpected error: {type(error).__name__}: {first_line(error)}"
        )
        distributed.abandon(EXIT_FAILED)
        return EXIT_FAILED
    log.info("done: %s", json.dumps(evaluation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
