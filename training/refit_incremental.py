"""What an incremental job adds to the champion: replay, leaf refresh, drift check (train.py's).

Continuing a booster on the new batch alone fits that batch's noise (bench figure 1 before this
module: the holdout RMSE rose with every delivery). What practitioners and the literature use
instead (../shared/notes/incremental-training.md), and what this module does:

- **Replay.** A bounded, uniform sample of every row the champion's lineage trained on travels
  with each model: ``replay/replay.npy`` in the job's ``output.tar.gz`` (beside
  ``evaluation.json``). The next incremental job gets the champion's archive as its ``replay``
  channel, fits its new trees on new + replay rows and writes the updated sample: reservoir
  sampling over batches (the number of new rows kept is hypergeometric), so the sample stays
  uniform over all history while each job reads O(sample) old rows. A full job samples its own
  training data. The sample is float32 ``.npy`` (label first): exact, compact, and read without
  parsing; refit writes and reads it, nobody else.
- **Leaf refresh, blended.** Before trees are appended, every existing tree's leaf values are
  re-estimated on the new rows *and* the statistics the leaf already holds: the new value is the
  Newton step over old and new data together, ``w = (w_old (H_old + lambda) - eta G_new) /
  (H_old + H_new + lambda)``, with ``H`` the leaf's cover (``sum_hessian``) and ``G`` the
  gradient sum, tree after tree as boosting computes them. So the champion's trees keep what
  they learnt and sharpen with each delivery (XGBoost's own ``updater=refresh`` replaces leaves
  with the new batch's estimate alone; LightGBM's ``refit_decay_rate`` blends by a constant).
  Its cost is one leaf lookup per row and tree (``pred_leaf``); past ``refresh_budget`` lookups
  it reads a seeded uniform sample of the new rows, each weighted (``row_weight``) for the rows
  it stands for, so the new data weighs as much in the blend. Supported for
  ``reg:squarederror``, ``reg:logistic`` and ``binary:logistic`` with one tree per round; any
  other model skips the refresh and says so.
- **Drift.** Each sample also carries its model's score on the held-out test data when it was
  trained (out of sample, unlike the replay rows, which that model was fit on). When the
  champion scores much worse on the new rows than that (the ``drift_threshold`` fraction,
  direction-aware), the old relationship no longer holds and replay would teach it again: the
  job trains from scratch on the new rows only and restarts the sample from them (``drift`` in
  ``evaluation.json`` says so, with both scores).

Hyperparameter ``refit_tree_etas`` is not one: the booster attribute ``refit_tree_etas`` (JSON
``[[trees, eta], ...]``) records the learning rate of each run of trees, which the blend needs;
a champion without it used the eta in its saved config for every tree.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

REPLAY_DIR = "replay"
REPLAY_DATA = "replay.npy"
REPLAY_INFO = "replay.json"
OUTPUT_ARCHIVE = "output.tar.gz"
# Keeps the sample (and so the next job's download and EvaluateModels' read of output.tar.gz,
# which streams past it) small whatever the feature count.
REPLAY_MAX_BYTES = 32 * 1024 * 1024
TREE_ETAS_ATTRIBUTE = "refit_tree_etas"
DEFAULT_ETA = 0.3  # xgboost's
REFRESHABLE_OBJECTIVES = frozenset({"reg:squarederror", "reg:logistic", "binary:logistic"})
HESSIAN_FLOOR = 1e-16  # xgboost's own floor for the logistic hessian

Matrix = npt.NDArray[np.float32]
log = logging.getLogger("refit.train")


class ReplayUnreadable(ValueError):
    """The replay channel holds something refit did not write: the job trains without it."""


@dataclass(frozen=True)
class ReplaySample:
    rows: Matrix  # label first, float32
    seen_rows: int  # rows of history it is a uniform sample of
    # The score of the model this sample travels with on the test data, and its metric.
    reference_score: float | None = None
    metric: str | None = None
    # Rows the lineage's first trees were grown on (its last from-scratch job): PrepareRun's
    # growth rule retrains in full once seen_rows outgrows them (refit.prepare_run.warm_start).
    # None: a sample written before refit recorded it.
    base_rows: int | None = None

    def info(self) -> dict[str, Any]:
        return {
            "rows": len(self.rows),
            "seenRows": self.seen_rows,
            "baseRows": self.base_rows,
            "columns": self.rows.shape[1],
        }


# --- Replay sample -------------------------------------------------------------------------


def read_replay(directory: Path) -> ReplaySample | None:
    """The sample in the ``replay`` channel: the champion's ``output.tar.gz`` or its two files."""
    if not directory.is_dir():
        return None
    archive = directory / OUTPUT_ARCHIVE
    try:
        if archive.is_file():
            members = _archive_members(archive, (REPLAY_DATA, REPLAY_INFO))
            if members is None:
                return None  # a champion trained before replay existed
            data, info = members
        elif (directory / REPLAY_DIR / REPLAY_DATA).is_file():
            data = (directory / REPLAY_DIR / REPLAY_DATA).read_bytes()
            info = (directory / REPLAY_DIR / REPLAY_INFO).read_bytes()
        else:
            return None
        rows = np.load(io.BytesIO(data), allow_pickle=False)
        document = json.loads(info)
        seen = int(document["seenRows"])
        reference = document.get("referenceScore")
        metric = document.get("metric")
        base = document.get("baseRows")
    except (OSError, tarfile.TarError, ValueError, KeyError, TypeError) as error:
        raise ReplayUnreadable(f"the replay sample is unreadable: {error}") from None
    if rows.ndim != 2 or rows.dtype != np.float32 or seen < len(rows):
        raise ReplayUnreadable(f"the replay sample has shape {rows.shape}, dtype {rows.dtype}")
    return ReplaySample(
        rows,
        seen,
        float(reference) if isinstance(reference, int | float) else None,
        metric if isinstance(metric, str) else None,
        base if isinstance(base, int) and not isinstance(base, bool) and base > 0 else None,
    )


def _archive_members(archive: Path, names: tuple[str, str]) -> tuple[bytes, bytes] | None:
    wanted = {f"{REPLAY_DIR}/{name}": name for name in names}
    found: dict[str, bytes] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isfile() and name in wanted:
                content = tar.extractfile(member)
                assert content is not None  # regular files always have content
                found[wanted[name]] = content.read()
    if not found:
        return None
    return found[names[0]], found[names[1]]


def replay_capacity(capacity: int, columns: int) -> int:
    """Rows the replay sample keeps: ``capacity``, within ``REPLAY_MAX_BYTES``."""
    return min(capacity, max(1, REPLAY_MAX_BYTES // (4 * columns)))


def updated_replay(
    previous: ReplaySample | None,
    new_rows: Matrix,
    capacity: int,
    seed: int,
    new_count: int | None = None,
) -> ReplaySample:
    """A uniform sample of ``capacity`` rows of history + ``new_rows`` (reservoir, by batch).

    ``previous`` None starts a lineage: its base is ``new_rows`` (what the job trained from
    scratch on); otherwise the lineage keeps its base. Of the next sample, the number of new
    rows is hypergeometric: ``capacity`` draws without replacement from ``seen`` old rows and
    ``len(new_rows)`` new ones; the old rows kept are a uniform subset of the old sample, which
    is itself uniform over the old history.

    ``new_count``: how many new rows ``new_rows`` stands for when it is itself a uniform sample
    of them (a multi-host job gathers one from each host); default ``len(new_rows)``.
    """
    capacity = replay_capacity(capacity, new_rows.shape[1])
    rng = np.random.default_rng(seed)
    arrived = len(new_rows) if new_count is None else new_count
    seen = previous.seen_rows if previous is not None else 0
    total = seen + arrived
    if previous is None or total <= capacity:
        kept_new = min(arrived, capacity)
    else:
        kept_new = int(rng.hypergeometric(arrived, seen, min(capacity, total)))
    kept_new = min(kept_new, len(new_rows))
    parts = [new_rows[rng.choice(len(new_rows), kept_new, replace=False)]]
    if previous is not None:
        kept_old = min(capacity - kept_new, len(previous.rows))
        parts.insert(0, previous.rows[rng.choice(len(previous.rows), kept_old, replace=False)])
    base = previous.base_rows if previous is not None else arrived
    sample = np.concatenate(parts).astype(np.float32)
    # In a canonical order (by label, then each feature): the rows arrive in the order of the
    # channel's file names, which hold run ids, and the next job's validation split is seeded by
    # position, so the same rows must give the same sample whatever the files were called.
    sample = sample[np.lexsort(sample.T[::-1])]
    return ReplaySample(np.ascontiguousarray(sample), total, base_rows=base)


def write_replay(output_data_dir: Path, sample: ReplaySample, score: float, metric: str) -> None:
    directory = output_data_dir / REPLAY_DIR
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, sample.rows, allow_pickle=False)
    (directory / REPLAY_DATA).write_bytes(buffer.getvalue())
    document = {**sample.info(), "referenceScore": score, "metric": metric}
    (directory / REPLAY_INFO).write_text(json.dumps(document) + "\n")


# --- Validation split ----------------------------------------------------------------------


def split_rows(rows: Matrix, fraction: float, seed: int) -> tuple[Matrix, Matrix]:
    """(fit, validation): a seeded random split, the same on a resumed job."""
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = max(1, round(len(rows) * fraction))
    return rows[order[cut:]], rows[order[:cut]]


def matrix(rows: Matrix) -> xgb.DMatrix:
    return xgb.DMatrix(rows[:, 1:], label=rows[:, 0], missing=np.nan)


# --- Learning rates per tree ---------------------------------------------------------------


def tree_etas(booster: xgb.Booster) -> npt.NDArray[np.float64]:
    """The learning rate each tree was boosted with (see the module docstring)."""
    trees = booster.num_boosted_rounds() * trees_per_round(booster)
    recorded = booster.attr(TREE_ETAS_ATTRIBUTE)
    if recorded:
        etas = np.concatenate([np.full(int(n), float(eta)) for n, eta in json.loads(recorded)])
        if len(etas) == trees:
            return etas
        log.warning(
            "%s covers %d of %d trees; using the config", TREE_ETAS_ATTRIBUTE, len(etas), trees
        )
    config = json.loads(booster.save_config())["learner"]["gradient_booster"]
    eta = float(config.get("tree_train_param", {}).get("eta", DEFAULT_ETA))
    return np.full(trees, eta)


def record_tree_etas(booster: xgb.Booster, etas: npt.NDArray[np.float64]) -> None:
    runs: list[list[float]] = []
    for eta in etas.tolist():
        if runs and runs[-1][1] == eta:
            runs[-1][0] += 1
        else:
            runs.append([1, eta])
    booster.set_attr(**{TREE_ETAS_ATTRIBUTE: json.dumps([[int(n), e] for n, e in runs])})


def trees_per_round(booster: xgb.Booster) -> int:
    """Trees one boosting round adds: one per class, times ``num_parallel_tree``."""
    learner = json.loads(booster.save_config())["learner"]
    classes = max(1, int(learner["learner_model_param"].get("num_class", 0)))
    forest = learner["gradient_booster"].get("gbtree_model_param", {}).get("num_parallel_tree", 1)
    return classes * max(1, int(forest))


# --- Blended leaf refresh ------------------------------------------------------------------


def refresh_problem(booster: xgb.Booster, objective: str) -> str | None:
    """Why the leaves of ``booster`` cannot be refreshed, or None."""
    if objective not in REFRESHABLE_OBJECTIVES:
        return f"leaf refresh supports {', '.join(sorted(REFRESHABLE_OBJECTIVES))}, not {objective}"
    booster_type = json.loads(booster.save_config())["learner"]["gradient_booster"]["name"]
    if booster_type != "gbtree":
        return f"leaf refresh needs a gbtree booster, not {booster_type}"
    if trees_per_round(booster) != 1:
        # A forest's trees share one round's gradient (and its eta): not a sequence of steps.
        return "leaf refresh needs one tree per round (num_parallel_tree=1)"
    return None


def refresh_sample(rows: Matrix, booster: xgb.Booster, budget: int, seed: int) -> Matrix:
    """``rows``, or a seeded uniform sample of them within ``budget`` rows x trees lookups."""
    trees = booster.num_boosted_rounds() * trees_per_round(booster)
    if not budget:
        return rows
    return uniform_sample(rows, max(1, budget // trees), seed)


def uniform_sample(rows: Matrix, keep: int, seed: int) -> Matrix:
    """``rows`` if there are at most ``keep``, else ``keep`` of them, seeded, in their order."""
    if len(rows) <= keep:
        return rows
    return rows[np.sort(np.random.default_rng(seed).choice(len(rows), keep, replace=False))]


def refresh_leaves(
    booster: xgb.Booster,
    rows: xgb.DMatrix,
    objective: str,
    reg_lambda: float,
    row_weight: float = 1.0,
    reduce: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]] | None = None,
) -> xgb.Booster:
    """``booster`` with every leaf re-estimated on old statistics + ``rows`` (module docstring).

    ``row_weight``: how many new rows each of ``rows`` stands for (a sample of them), so the
    new data weighs in the blend as much as if every row had been read. ``reduce``: on a
    multi-host job, sums each tree's new gradient statistics over the hosts (each reads its own
    rows; the trees are refreshed in order, so one sum per tree), else None.
    """
    # The model as UBJSON, its per-tree arrays written in place (the JSON round trip of a
    # ~340-tree model cost ~0.35 CPU s, a tenth of an incremental job).
    model = bytearray(booster.save_raw("ubj"))
    trees = ubjson_trees(model)
    etas = tree_etas(booster)
    # One leaf index per row and tree, as (trees, rows) int32: each tree's column contiguous.
    leaves = np.ascontiguousarray(
        booster.predict(rows, pred_leaf=True).reshape(rows.num_row(), len(trees)).T, dtype=np.int32
    )
    labels = rows.get_label().astype(np.float64)
    old_values = [tree["split_conditions"].astype(np.float64) for tree in trees]
    # The margin before the first tree: after it (one cheap predict), minus its contribution.
    margin = booster.predict(rows, output_margin=True, iteration_range=(0, 1)).astype(np.float64)
    margin -= old_values[0][leaves[0]]
    for t, tree in enumerate(trees):
        nodes = leaves[t]
        gradient, hessian = _gradients(objective, margin, labels)
        value = old_values[t]
        size = len(value)
        g_new = row_weight * np.bincount(nodes, gradient, minlength=size).astype(np.float64)
        h_new = row_weight * np.bincount(nodes, hessian, minlength=size).astype(np.float64)
        if reduce is not None:
            g_new, h_new = np.split(reduce(np.concatenate([g_new, h_new])), 2)
        h_old = tree["sum_hessian"].astype(np.float64)
        is_leaf = tree["left_children"] == -1
        blended = (value * (h_old + reg_lambda) - etas[t] * g_new) / (h_old + h_new + reg_lambda)
        value = np.where(is_leaf, blended, value)
        tree["split_conditions"][:] = value
        tree["base_weights"][is_leaf] = value[is_leaf]  # a leaf's weight is its value
        tree["sum_hessian"][:] = _covers(tree["parents"], h_old, h_new, is_leaf)
        # What the model now predicts: the stored float32 value, not the float64 one.
        margin += tree["split_conditions"][nodes]
    refreshed = xgb.Booster()
    refreshed.load_model(model)
    record_tree_etas(refreshed, etas)
    return refreshed


def _gradients(
    objective: str, margin: npt.NDArray[np.float64], labels: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if objective == "reg:squarederror":
        return margin - labels, np.ones_like(margin)
    probability = 1.0 / (1.0 + np.exp(-margin))
    return probability - labels, np.maximum(probability * (1.0 - probability), HESSIAN_FLOOR)


def _covers(
    parents: npt.NDArray[np.int32],
    h_old: npt.NDArray[np.float64],
    h_new: npt.NDArray[np.float64],
    is_leaf: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]:
    """Each node's cover after the refresh: leaves add the new hessian, parents their children's."""
    covers = np.where(is_leaf, h_old + h_new, 0.0)
    parent_of = parents.tolist()
    # Children come after their parent in xgboost's node order: sum up from the end.
    for node in range(len(covers) - 1, 0, -1):
        covers[parent_of[node]] += covers[node]
    return covers


# --- The model's trees in UBJSON -------------------------------------------------------------

# UBJSON (ubjson.org, as xgboost's UBJWriter writes it: big-endian, keys without the "S"
# marker, arrays counted with "#", numeric arrays typed with "$"). Typed arrays are read as
# numpy views of the buffer, so writing into one edits the model in place.
_UBJ_NUMBERS: dict[int, np.dtype[Any]] = {
    ord("i"): np.dtype("i1"),
    ord("U"): np.dtype("u1"),
    ord("I"): np.dtype(">i2"),
    ord("l"): np.dtype(">i4"),
    ord("L"): np.dtype(">i8"),
    ord("d"): np.dtype(">f4"),
    ord("D"): np.dtype(">f8"),
}
# Scalars (counts, lengths, single numbers) through struct: a numpy view per scalar cost most of
# the reader's time on a 300-tree model.
_UBJ_SCALARS = {
    ord(marker): struct.Struct(f">{code}")
    for marker, code in (("i", "b"), ("U", "B"), ("I", "h"), ("l", "i"), ("L", "q"), ("d", "f"))
} | {ord("D"): struct.Struct(">d")}
_UBJ_CONSTANTS = {ord("T"): True, ord("F"): False, ord("Z"): None}
TREE_ARRAYS = ("base_weights", "split_conditions", "sum_hessian", "left_children", "parents")


class ModelFormatError(ValueError):
    """The booster's UBJSON is not what this reader knows (another xgboost's layout)."""


def ubjson_trees(model: bytearray) -> list[dict[str, npt.NDArray[Any]]]:
    """Each tree's ``TREE_ARRAYS`` as writable numpy views into ``model`` (xgboost UBJSON)."""
    document, end = _ubj_value(model, 0)
    if end != len(model):
        raise ModelFormatError(f"{len(model) - end} bytes after the model document")
    try:
        trees = document["learner"]["gradient_booster"]["model"]["trees"]
        found = [{name: tree[name] for name in TREE_ARRAYS} for tree in trees]
    except (KeyError, TypeError) as error:
        raise ModelFormatError(f"no tree array {error} in the model") from None
    for tree in found:
        sizes = {len(array) for array in tree.values()}
        if len(sizes) != 1 or not all(isinstance(a, np.ndarray) for a in tree.values()):
            raise ModelFormatError("a tree's arrays are not typed arrays of one length")
    return found


def _ubj_value(data: bytearray, position: int) -> tuple[Any, int]:
    marker = data[position]
    position += 1
    scalar = _UBJ_SCALARS.get(marker)
    if scalar is not None:
        return scalar.unpack_from(data, position)[0], position + scalar.size
    if marker in _UBJ_CONSTANTS:
        return _UBJ_CONSTANTS[marker], position
    if marker == ord("S"):
        length, position = _ubj_value(data, position)
        return bytes(data[position : position + length]).decode(), position + length
    if marker == ord("{"):
        document: dict[str, Any] = {}
        while data[position] != ord("}"):
            length, position = _ubj_value(data, position)
            key = bytes(data[position : position + length]).decode()
            document[key], position = _ubj_value(data, position + length)
        return document, position + 1
    if marker == ord("["):
        return _ubj_array(data, position)
    raise ModelFormatError(f"unknown UBJSON marker {chr(marker)!r} at byte {position - 1}")


def _ubj_array(data: bytearray, position: int) -> tuple[Any, int]:
    dtype = None
    if data[position] == ord("$"):
        dtype = _UBJ_NUMBERS.get(data[position + 1])
        if dtype is None or data[position + 2] != ord("#"):
            raise ModelFormatError(f"unsupported typed array at byte {position}")
        position += 2
    if data[position] == ord("#"):
        count, position = _ubj_value(data, position + 1)
        if dtype is not None:
            view = np.frombuffer(data, dtype, count, position)
            return view, position + count * dtype.itemsize
        items = []
        for _ in range(count):
            item, position = _ubj_value(data, position)
            items.append(item)
        return items, position
    items = []
    while data[position] != ord("]"):
        item, position = _ubj_value(data, position)
        items.append(item)
    return items, position + 1


# --- Drift ---------------------------------------------------------------------------------

# New rows the drift check scores the champion on (a seeded sample past it): a metric's
# standard error on 10k rows is ~1 %, against a threshold of 50 %; the whole batch cost ~8 %
# of an incremental job (bench figure 1, 50k rows).
DRIFT_CHECK_ROWS = 10_000


@dataclass(frozen=True)
class DriftCheck:
    detected: bool
    champion_new: float  # the champion on this job's new rows
    champion_reference: float  # the champion on the test data when it was trained
    threshold: float
    rows: int  # new rows scored: a seeded sample of at most DRIFT_CHECK_ROWS

    def to_dict(self) -> dict[str, Any]:
        return {
            "detected": self.detected,
            "championNew": self.champion_new,
            "championReference": self.champion_reference,
            "threshold": self.threshold,
            "rows": self.rows,
        }

    @property
    def reason(self) -> str:
        return (
            f"drift: the champion scores {self.champion_new:.6g} on the new rows, "
            f"{self.champion_reference:.6g} on the test data when it was trained (more than "
            f"{self.threshold:.0%} worse): trained from scratch on the new rows"
        )


def degradation(on_new: float, reference: float, higher_is_better: bool) -> float:
    """How much worse the new rows score than the reference, as a fraction of it."""
    worse = reference - on_new if higher_is_better else on_new - reference
    return worse / abs(reference) if reference else (float("inf") if worse > 0 else 0.0)
