"""Whether an incremental run may warm-start from the champion, or must retrain from scratch.

PrepareRun asks before it plans an incremental run. A full retrain replaces it when:

1. the champion's artifact is missing (HeadObject on its ``model.tar.gz`` finds nothing): it can
   be neither continued nor scored, so the job gets no ``model`` channel and the gate promotes on
   the challenger's own score, saying why (``championProblem``);
2. the stack's objective differs from the one the champion was trained with (recorded on the
   champion pointer at promotion);
3. the data's feature count differs from the champion's;
4. the last ``FULL_RETRAIN_AFTER_REJECTIONS`` incremental challengers of this champion were all
   rejected by the gate (0 turns this off): one GetItem on the streak item RecordRun keeps;
5. **the data has outgrown the champion's trees** (``FULL_RETRAIN_GROWTH``, default 3, 0 = off):
   its lineage, with this delivery, has trained on at least that many times the rows its first
   trees were grown on (:func:`outgrown`).

Why 5 is measured in rows: the gap between an incremental chain and a full retrain on the same
data cannot be observed without paying for that full retrain, but it follows the share of the
data the champion's tree structure never saw. In bench figure 1 a chain closes about half of
the gap a full retrain on the new rows would close, delivery after delivery, so its distance
from a full retrain grows with rows seen / base rows. Retraining once that ratio reaches
``growth`` keeps the distance bounded, and, the full retrains' sizes growing geometrically,
costs over a whole stream at most ``growth / (growth - 1)`` times one full retrain on all of it
(1.5x at 3), where retraining on every delivery costs that once per delivery.

Every reason but the feature count retrains on **all trained data** in the champion's data
window (:class:`refit.ledger.run_records.DataWindow`: since a detected drift, else everything), also
when the run was started for one delivery; a new feature count trains on the delivery alone, as
the older files have the old layout.

Otherwise the run continues the champion, and its job's ``replay`` channel is the champion's
``output.tar.gz``: the replay sample of the data behind the champion (one HeadObject; see
``training/refit_incremental.py``).

The reason becomes ``trainingModeReason`` in the plan and the run record. What PrepareRun cannot
see without reading the model (an unreadable artifact, a champion without a recorded objective)
``train.py`` checks again: it trains from scratch instead and says why (``modeFallback``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from refit.evaluate_models.promotion import output_archive_url
from refit.ledger.run_records import ChampionPointer, DataWindow, RunRecords
from refit.registry.champion import Champion

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_GONE = ("404", "NoSuchKey", "NotFound")


@dataclass(frozen=True)
class WarmStart:
    """None everywhere: continue the champion as planned."""

    full_retrain_reason: str | None = None
    champion_problem: str | None = None  # the champion cannot be scored at all: leave it out
    # The champion's output.tar.gz (its replay sample): the job's replay channel. None when the
    # archive is gone: the job then trains on the new data alone and says so.
    replay_uri: str | None = None
    # A full retrain on the data as selected (a new feature count), not on all trained data.
    delivery_only: bool = False


def known_pointer(records: RunRecords, champion: Champion | None) -> ChampionPointer | None:
    """The champion pointer, if it describes this champion (one GetItem)."""
    if champion is None:
        return None
    pointer = records.get_champion()
    return pointer if pointer is not None and pointer.model_name == champion.model_name else None


def outgrown(window: DataWindow | None, new_rows: int, growth: float) -> str | None:
    """Why to retrain in full because the data outgrew the champion's trees, or None."""
    if growth <= 0 or window is None or window.base_rows is None or window.seen_rows is None:
        return None
    total = window.seen_rows + new_rows
    if total < growth * window.base_rows:
        return None
    return (
        f"full retrain: the champion's trees were grown on {window.base_rows:,} rows, its "
        f"lineage has {total:,} with this delivery (FullRetrainGrowth {growth:g})"
    )


def check_warm_start(
    s3: S3Client,
    records: RunRecords,
    champion: Champion | None,
    pointer: ChampionPointer | None,
    *,
    objective: str,
    data_columns: int | None,
    new_rows: int,
    full_retrain_after_rejections: int,
    full_retrain_growth: float,
) -> WarmStart:
    """``pointer``: :func:`known_pointer` of this champion."""
    if champion is None:
        return WarmStart()
    if not _artifact_exists(s3, champion.model_data_url):
        problem = f"its artifact {champion.model_data_url} is missing"
        return WarmStart(
            f"full retrain: the champion {champion.model_name} cannot be used: {problem}", problem
        )
    if pointer is not None and pointer.objective is not None and pointer.objective != objective:
        return WarmStart(
            f"full retrain: the champion {champion.model_name} was trained with objective "
            f"{pointer.objective}, the stack now asks for {objective}"
        )
    features = None if data_columns is None else data_columns - 1
    known_features = champion.feature_count
    if known_features is not None and features is not None and known_features != features:
        return WarmStart(
            f"full retrain: the champion {champion.model_name} has "
            f"{known_features} features, the data has {features}",
            delivery_only=True,
        )
    limit = full_retrain_after_rejections
    if limit > 0:
        streak = records.rejection_streak(champion.model_name)
        if streak >= limit:
            return WarmStart(
                f"full retrain: the last {streak} incremental challengers of "
                f"{champion.model_name} were rejected (FullRetrainAfterRejections {limit})"
            )
    grown = outgrown(pointer.data_window if pointer else None, new_rows, full_retrain_growth)
    if grown is not None:
        return WarmStart(grown)
    replay = output_archive_url(champion.model_data_url)
    return WarmStart(replay_uri=replay if _artifact_exists(s3, replay) else None)


def _artifact_exists(s3: S3Client, url: str) -> bool:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _GONE:
            return False
        raise  # access denied, throttling: not evidence that the model is gone
    return True
