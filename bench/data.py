"""The benchmark's data: Friedman #1 regression rows, generated deterministically.

scikit-learn's bundled real data sets are a few hundred rows (the demo uses breast cancer, 569
rows), far too small for compute ratios: at that size a job is all interpreter start-up. The
benchmark therefore uses ``sklearn.datasets.make_friedman1`` (Friedman 1991, the standard
regression benchmark function: 10 uniform features, 5 of them irrelevant, target
``10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5`` plus N(0, 1) noise) with a fixed seed,
so every run sees the same rows. Files are refit's format: headerless CSV, label first.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SEED = 7
FEATURES = 10
NOISE = 1.0

Table = npt.NDArray[np.float64]  # label in column 0, then the features


@dataclass(frozen=True)
class Dataset:
    holdout: Table
    batches: tuple[Table, ...]  # delivered in this order; batches[0] is the initial data

    @property
    def train(self) -> Table:
        return np.concatenate(self.batches)

    @property
    def train_rows(self) -> int:
        return sum(len(batch) for batch in self.batches)


def friedman(rows: int, seed: int = SEED) -> Table:
    from sklearn.datasets import make_friedman1  # type: ignore[import-untyped]

    features, target = make_friedman1(
        n_samples=rows, n_features=FEATURES, noise=NOISE, random_state=seed
    )
    # Rounded to what the CSV holds: in-process predictions then see the script's inputs.
    return np.round(np.column_stack([target, features]), 4)


def deliveries(initial: int, batch: int, count: int, holdout: int, seed: int = SEED) -> Dataset:
    """``initial`` rows, then ``count`` batches of ``batch`` rows, and a separate holdout."""
    table = friedman(holdout + initial + batch * count, seed)
    cuts = np.cumsum([holdout, initial] + [batch] * count)[:-1]
    parts = np.split(table, cuts)
    return Dataset(holdout=parts[0], batches=tuple(parts[1:]))


def csv_bytes(table: Table) -> bytes:
    buffer = io.StringIO()
    np.savetxt(buffer, table, delimiter=",", fmt="%.10g")
    return buffer.getvalue().encode()


def features_csv(table: Table) -> bytes:
    """Records to score: the features only, no label column."""
    return csv_bytes(table[:, 1:])


def friedman_features(features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Friedman #1 of the first five columns (the same function make_friedman1 uses)."""
    x = features
    return np.asarray(
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4],
        dtype=np.float64,
    )


# The drift: the five relevant features become the five irrelevant ones, as river's
# FriedmanDrift does in its global abrupt modes (Ikonomovska et al. 2011).
DRIFTED_ORDER = [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]


def drifting_deliveries(
    initial: int, batch: int, count: int, holdout: int, drift_at: int, seed: int = SEED
) -> Dataset:
    """Like :func:`deliveries`, but from batch ``drift_at`` on the label follows the drifted
    relationship; the holdout is drawn from the drifted one (what serving sees after it).
    ``before_drift_holdout`` gives the test data of the batches before it."""
    rng = np.random.default_rng(seed)
    sizes = [initial] + [batch] * count
    batches = []
    for number, size in enumerate(sizes):
        x = rng.uniform(size=(size, FEATURES))
        drifted = number >= drift_at
        y = friedman_features(x[:, DRIFTED_ORDER] if drifted else x) + NOISE * rng.normal(size=size)
        batches.append(_table(y, x))
    x = rng.uniform(size=(holdout, FEATURES))
    y = friedman_features(x[:, DRIFTED_ORDER]) + NOISE * rng.normal(size=holdout)
    return Dataset(holdout=_table(y, x), batches=tuple(batches))


def before_drift_holdout(rows: int, seed: int = SEED + 1) -> Table:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(rows, FEATURES))
    return _table(friedman_features(x) + NOISE * rng.normal(size=rows), x)


def _table(labels: npt.NDArray[np.float64], features: npt.NDArray[np.float64]) -> Table:
    return np.asarray(np.round(np.column_stack([labels, features]), 4), dtype=np.float64)
