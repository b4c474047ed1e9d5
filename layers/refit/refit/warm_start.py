"""Whether an incremental run may warm-start from the champion, or must retrain from scratch.

PrepareRun asks before it plans an incremental run. A full retrain replaces it when:

1. the champion's artifact is missing (HeadObject on its ``model.tar.gz`` finds nothing): it can
   be neither continued nor scored, so the job gets no ``model`` channel and the gate promotes on
   the challenger's own score, saying why (``championProblem``);
2. the stack's objective differs from the one the champion was trained with (recorded on the
   champion pointer at promotion);
3. the data's feature count differs from the champion's;
4. the last ``FULL_RETRAIN_AFTER_REJECTIONS`` incremental challengers of this champion were all
   rejected by the gate (0 turns this off): one GetItem on the streak item RecordRun keeps.

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

from refit.champion import Champion
from refit.promotion import output_archive_url
from refit.run_records import RunRecords

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


def check_warm_start(
    s3: S3Client,
    records: RunRecords,
    champion: Champion | None,
    *,
    objective: str,
    data_columns: int | None,
    full_retrain_after_rejections: int,
) -> WarmStart:
    if champion is None:
        return WarmStart()
    if not _artifact_exists(s3, champion.model_data_url):
        problem = f"its artifact {champion.model_data_url} is missing"
        return WarmStart(
            f"full retrain: the champion {champion.model_name} cannot be used: {problem}", problem
        )
    pointer = records.get_champion()
    known = pointer if pointer is not None and pointer.model_name == champion.model_name else None
    if known is not None and known.objective is not None and known.objective != objective:
        return WarmStart(
            f"full retrain: the champion {champion.model_name} was trained with objective "
            f"{known.objective}, the stack now asks for {objective}"
        )
    features = None if data_columns is None else data_columns - 1
    known_features = champion.feature_count
    if known_features is not None and features is not None and known_features != features:
        return WarmStart(
            f"full retrain: the champion {champion.model_name} has "
            f"{known_features} features, the data has {features}"
        )
    limit = full_retrain_after_rejections
    if limit > 0:
        streak = records.rejection_streak(champion.model_name)
        if streak >= limit:
            return WarmStart(
                f"full retrain: the last {streak} incremental challengers of "
                f"{champion.model_name} were rejected (FullRetrainAfterRejections {limit})"
            )
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
