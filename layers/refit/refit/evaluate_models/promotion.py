"""Champion/challenger: read the training job's evaluation and decide whether to promote.

The training script scores both models on the same held-out test set and writes
``evaluation.json`` into ``/opt/ml/output/data``; SageMaker tars that directory to
``<output>/<job>/output/output.tar.gz`` beside ``model.tar.gz``. The decision is direction-aware
(``refit.metrics``) and needs a minimum gain, so noise never replaces a good model.

The gate has two thresholds, both in metric units and direction-aware: the challenger must beat
the champion on the fresh test set by at least ``MIN_IMPROVEMENT``, and, when the job also
scored both on retained older test data (channel ``test_retained``), it must not be worse there
by more than ``MAX_RETAINED_REGRESSION``: a model that learns the new data by forgetting the old
is rejected. A manual run may force the verdict (``forceDecision``); the record keeps what the
gate said.

A readable evaluation also proves the job completed on its data: EvaluateModels then folds the
run's pinned versions into the cumulative data manifest (``refit.data.trained_data``) before it
decides, so promoted and rejected runs alike are on record for the next full retrain.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger

from refit import layout
from refit import metrics as metric_rules
from refit.data import trained_data
from refit.run_state import RunState, integer, section, text
from refit.timestamps import format_utc

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MODEL_ARCHIVE = "output/model.tar.gz"
OUTPUT_ARCHIVE = "output/output.tar.gz"
# output.tar.gz holds whatever the script left in /opt/ml/output/data. We only want a few-KB
# JSON file, so reading stops after these many bytes rather than paying for a stray big file.
MAX_ARCHIVE_READ_BYTES = 64 * 1024 * 1024
MAX_EVALUATION_BYTES = 1024 * 1024

Verdict = Literal["promote", "reject"]

logger = Logger(child=True)


class EvaluationUnavailable(RuntimeError):
    """No trustworthy evaluation for this job: nothing may be promoted on it."""


@dataclass(frozen=True)
class Evaluation:
    """``evaluation.json`` as the training code contract defines it."""

    metric: str
    challenger: float
    champion: float | None
    test_rows: int
    train_rows: int
    mode: str | None
    champion_rounds: int | None
    challenger_rounds: int | None
    resumed_from_round: int | None
    features: int | None
    # The forgetting check: both models on retained older test data (None without such data).
    retained_challenger: float | None = None
    retained_champion: float | None = None
    retained_test_rows: int | None = None
    objective: str | None = None
    # Why an incremental job trained from scratch, and why the champion has no score.
    mode_fallback: str | None = None
    champion_problem: str | None = None
    # How an incremental job learnt (replay, leaf refresh, rounds added, early stop) and the
    # drift check: recorded as train.py wrote them (training/refit_incremental.py).
    incremental: Mapping[str, Any] | None = None
    drift: Mapping[str, Any] | None = None
    # The replay sample the model carries (rows, seenRows, baseRows): its data window's size.
    replay_sample: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, data: Any, source: str) -> Evaluation:
        if not isinstance(data, Mapping):
            raise EvaluationUnavailable(f"{source}: evaluation must be a JSON object")
        metric = text(data, "metric")
        if metric is None:
            raise EvaluationUnavailable(f"{source}: 'metric' is missing")
        test_rows = integer(data, "testRows")
        if test_rows is None or test_rows < 1:
            raise EvaluationUnavailable(f"{source}: 'testRows' must be a positive integer")
        train_rows = integer(data, "trainRows")
        if train_rows is None or train_rows < 0:
            raise EvaluationUnavailable(f"{source}: 'trainRows' must be a non-negative integer")
        return cls(
            metric=metric,
            challenger=_score(data, "challenger", source),
            champion=None if data.get("champion") is None else _score(data, "champion", source),
            test_rows=test_rows,
            train_rows=train_rows,
            mode=text(data, "mode"),
            champion_rounds=integer(data, "championRounds"),
            challenger_rounds=integer(data, "challengerRounds"),
            resumed_from_round=integer(data, "resumedFromRound"),
            features=integer(data, "features"),
            retained_challenger=_optional_score(data, "retainedChallenger", source),
            retained_champion=_optional_score(data, "retainedChampion", source),
            retained_test_rows=integer(data, "retainedTestRows"),
            objective=text(data, "objective"),
            mode_fallback=text(data, "modeFallback"),
            champion_problem=text(data, "championProblem"),
            incremental=section(data, "incremental"),
            drift=section(data, "drift"),
            replay_sample=section(data, "replaySample"),
        )


def _optional_score(data: Mapping[str, Any], key: str, source: str) -> float | None:
    return None if data.get(key) is None else _score(data, key, source)


def _score(data: Mapping[str, Any], key: str, source: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationUnavailable(f"{source}: {key!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        # A diverged model scores NaN/inf; comparing with it would promote or reject at random.
        raise EvaluationUnavailable(f"{source}: {key!r} is not a finite number ({value!r})")
    return float(value)


def output_archive_url(model_data_url: str) -> str:
    """``s3://b/models/<job>/output/model.tar.gz`` -> ``.../output/output.tar.gz``."""
    if not model_data_url.startswith("s3://") or not model_data_url.endswith(MODEL_ARCHIVE):
        raise EvaluationUnavailable(
            f"model artifact {model_data_url!r} is not s3://.../{MODEL_ARCHIVE}"
        )
    return model_data_url[: -len(MODEL_ARCHIVE)] + OUTPUT_ARCHIVE


def _split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


class _BoundedReader:
    """A read-only stream that refuses to deliver more than ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int, source: str) -> None:
        self._stream = stream
        self._left = limit
        self._source = source

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise EvaluationUnavailable(
                f"{self._source}: no {layout.EVALUATION_FILE} in the first "
                f"{MAX_ARCHIVE_READ_BYTES} bytes"
            )
        want = self._left if size is None or size < 0 else min(size, self._left)
        chunk = self._stream.read(want)
        self._left -= len(chunk)
        return chunk


def _is_evaluation_member(member: tarfile.TarInfo) -> bool:
    # Tools write either "evaluation.json" or "./evaluation.json"; only the top level counts.
    parts = [p for p in PurePosixPath(member.name).parts if p != "."]
    return member.isfile() and parts == [layout.EVALUATION_FILE]


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid score")


def load_evaluation(s3: S3Client, model_data_url: str) -> Evaluation:
    """Stream the job's ``output.tar.gz`` and parse its ``evaluation.json``."""
    url = output_archive_url(model_data_url)
    bucket, key = _split_s3_url(url)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise EvaluationUnavailable(f"cannot read {url}: {code or error}") from error
    try:
        reader = _BoundedReader(body, MAX_ARCHIVE_READ_BYTES, url)
        # "r|gz" reads the archive as a stream: no seeking, nothing buffered but one member.
        # Stream mode only ever calls read(); typeshed wants a full IO[bytes], hence the ignore.
        with tarfile.open(fileobj=reader, mode="r|gz") as archive:  # type: ignore[call-overload]
            for member in archive:
                if not _is_evaluation_member(member):
                    continue
                if member.size > MAX_EVALUATION_BYTES:
                    raise EvaluationUnavailable(
                        f"{url}: {layout.EVALUATION_FILE} is {member.size} bytes, "
                        f"more than {MAX_EVALUATION_BYTES}"
                    )
                extracted = archive.extractfile(member)
                raw = extracted.read() if extracted else b""
                break
            else:
                raise EvaluationUnavailable(f"{url} holds no {layout.EVALUATION_FILE}")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise EvaluationUnavailable(f"{url} is not a readable tar.gz archive: {error}") from error
    finally:
        body.close()
    return read_evaluation(raw, f"{url}!{layout.EVALUATION_FILE}")


def read_evaluation(raw: bytes, source: str) -> Evaluation:
    """Parse ``evaluation.json``; NaN and Infinity, which json accepts, are refused."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as error:
        raise EvaluationUnavailable(f"{source} is not valid JSON: {error}") from error
    return Evaluation.parse(data, source)


@dataclass(frozen=True)
class Decision:
    """``$.evaluation``: the verdict and everything the run record reports about it."""

    evaluation: Evaluation
    higher_is_better: bool
    improvement: float | None
    verdict: Verdict
    reason: str
    # The forgetting check (positive = better on retained data) and its limit.
    retained_improvement: float | None = None
    max_retained_regression: float | None = None
    # forceDecision: the verdict was the execution input's; gate_verdict is what the gate said.
    forced: bool = False
    gate_verdict: Verdict | None = None
    # ``$.evaluation.trainedData``: the cumulative manifest update (refit.data.trained_data).
    trained_data: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def promote(self) -> bool:
        return self.verdict == "promote"

    @property
    def cloudwatch_metric(self) -> str:
        """The CloudWatch count this decision adds to."""
        return "ChallengersAccepted" if self.promote else "ChallengersRejected"

    def to_dict(self) -> dict[str, Any]:
        e = self.evaluation
        return {
            "metric": e.metric,
            "higherIsBetter": self.higher_is_better,
            "challenger": e.challenger,
            "champion": e.champion,
            "improvement": self.improvement,
            "decision": self.verdict,
            "reason": self.reason,
            "testRows": e.test_rows,
            "trainRows": e.train_rows,
            # Beyond the minimum contract: what the run record and the champion pointer want.
            "mode": e.mode,
            "features": e.features,
            "championRounds": e.champion_rounds,
            "challengerRounds": e.challenger_rounds,
            "resumedFromRound": e.resumed_from_round,
            # The forgetting check and the forced-decision audit (docs/architecture.md).
            "retainedChallenger": e.retained_challenger,
            "retainedChampion": e.retained_champion,
            "retainedImprovement": self.retained_improvement,
            "retainedTestRows": e.retained_test_rows,
            "maxRetainedRegression": self.max_retained_regression,
            "forced": self.forced,
            "gateDecision": self.gate_verdict or self.verdict,
            "objective": e.objective,
            "modeFallback": e.mode_fallback,
            "championProblem": e.champion_problem,
            "incremental": dict(e.incremental) if e.incremental is not None else None,
            "drift": dict(e.drift) if e.drift is not None else None,
            "replaySample": dict(e.replay_sample) if e.replay_sample is not None else None,
            "trainedData": dict(self.trained_data) if self.trained_data is not None else None,
        }


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _meets(improvement: float, minimum: float) -> bool:
    # Scores are floats: 0.36 - 0.35 is 0.00999...; a gain equal to the minimum must pass.
    return improvement >= minimum or math.isclose(improvement, minimum, abs_tol=1e-12)


def decide(
    evaluation: Evaluation,
    metric: str,
    min_improvement: float,
    *,
    max_retained_regression: float = 0.0,
    forced: Verdict | None = None,
) -> Decision:
    """The gate, then the execution input's forced verdict (if any) over it."""
    gate = _gate(evaluation, metric, min_improvement, max_retained_regression)
    if forced is None:
        return gate
    reason = f"forced {forced} by the execution input; the gate said {gate.verdict}: {gate.reason}"
    return dataclasses.replace(
        gate, verdict=forced, reason=reason, forced=True, gate_verdict=gate.verdict
    )


def _gate(
    evaluation: Evaluation, metric: str, min_improvement: float, max_retained_regression: float
) -> Decision:
    decision = _gate_on_fresh_data(evaluation, metric, min_improvement)
    retained = _retained_improvement(evaluation, metric)
    if retained is None:
        return decision
    decision = dataclasses.replace(
        decision, retained_improvement=retained, max_retained_regression=max_retained_regression
    )
    regression = -retained
    limit = f"limit {_fmt(max_retained_regression)}"
    if not decision.promote:
        return decision
    if not _meets(max_retained_regression, regression):  # float noise at the limit passes
        reason = (
            f"challenger {metric} improves new data by {_fmt(decision.improvement or 0.0)} but "
            f"regresses retained data by {_fmt(regression)} > {limit} "
            f"(retained: challenger {_fmt(evaluation.retained_challenger or 0.0)}, "
            f"champion {_fmt(evaluation.retained_champion or 0.0)})"
        )
        return dataclasses.replace(decision, verdict="reject", reason=reason)
    change = f"better by {_fmt(retained)}" if retained >= 0 else f"worse by {_fmt(regression)}"
    reason = f"{decision.reason}; on retained data {change} ({limit})"
    return dataclasses.replace(decision, reason=reason)


def _retained_improvement(evaluation: Evaluation, metric: str) -> float | None:
    if evaluation.retained_challenger is None or evaluation.retained_champion is None:
        return None
    return metric_rules.improvement(
        metric, evaluation.retained_challenger, evaluation.retained_champion
    )


def _gate_on_fresh_data(evaluation: Evaluation, metric: str, min_improvement: float) -> Decision:
    """Promote iff the challenger beats the champion by at least ``min_improvement``."""
    if evaluation.metric != metric:
        raise EvaluationUnavailable(
            f"evaluation scored {evaluation.metric!r} but the run gates on {metric!r}"
        )
    higher = metric_rules.higher_is_better(metric)
    challenger = f"challenger {metric} {_fmt(evaluation.challenger)}"
    if evaluation.champion is None:
        if evaluation.champion_problem:
            # A champion that cannot be read or scored can neither be continued nor compared;
            # a scored challenger trained from scratch replaces it (forceDecision can refuse).
            reason = (
                f"{challenger}; the champion has no score ({evaluation.champion_problem}): "
                "promoted without a comparison"
            )
            return Decision(evaluation, higher, None, "promote", reason)
        return Decision(evaluation, higher, None, "promote", "no champion: first model")
    gain = metric_rules.improvement(metric, evaluation.challenger, evaluation.champion)
    champion = f"champion {_fmt(evaluation.champion)}"
    minimum = f"minimum {_fmt(min_improvement)}"
    if gain > 0 and _meets(gain, min_improvement):
        reason = f"{challenger} beats {champion} by {_fmt(gain)} ({minimum})"
        return Decision(evaluation, higher, gain, "promote", reason)
    if gain > 0:
        reason = f"{challenger} beats {champion} by only {_fmt(gain)} ({minimum})"
    elif gain == 0:
        reason = f"{challenger} ties {champion}: no improvement ({minimum})"
    else:
        direction = "higher" if higher else "lower"
        reason = f"{challenger} is worse than {champion} ({direction} is better; {minimum})"
    return Decision(evaluation, higher, gain, "reject", reason)


def evaluate(
    s3: S3Client,
    parsed: RunState,
    min_improvement: float,
    max_retained_regression: float = 0.0,
    now: datetime | None = None,
) -> Decision:
    """EvaluateModels: ``{"run", "training"}`` (parsed) in, the decision out."""
    metric = parsed.run.metric if parsed.run else None
    model_data_url = parsed.training.model_data_url if parsed.training else None
    if metric is None or model_data_url is None:
        raise EvaluationUnavailable("input needs run.metric and training.modelDataUrl")
    evaluation = load_evaluation(s3, model_data_url)
    manifest_uri = parsed.run.data.manifest_uri if parsed.run and parsed.run.data else None
    recorded = record_trained_data(s3, manifest_uri, now or datetime.now(UTC))
    if parsed.run and parsed.run.champion_problem and evaluation.champion_problem is None:
        # PrepareRun left the champion out of the job (e.g. its artifact is gone): say why.
        evaluation = dataclasses.replace(evaluation, champion_problem=parsed.run.champion_problem)
    unscored = evaluation.champion is None and evaluation.champion_problem is None
    if parsed.run and parsed.run.champion_exists and unscored:
        # Promoting unscored over a live champion would skip the gate entirely.
        raise EvaluationUnavailable(
            f"the run has a champion ({parsed.run.champion_model_name}) "
            "but the evaluation did not score it"
        )
    decision = decide(
        evaluation,
        metric,
        min_improvement,
        max_retained_regression=max_retained_regression,
        forced=parsed.run.forced_decision if parsed.run else None,
    )
    return dataclasses.replace(decision, trained_data=recorded)


def record_trained_data(
    s3: S3Client, run_manifest_uri: str | None, now: datetime
) -> dict[str, Any]:
    """Fold the run into the cumulative manifest; a failure is reported, never fatal.

    The challenger is trained and scored: a bookkeeping error must not throw it away. The
    manifest is a record a full retrain *reuses*, not its only source (it lists what is current
    under data/train/), so a missed update costs a re-validation of those files, never data. The
    error is logged and kept in ``$.evaluation.trainedData`` (and so in the run record).
    """
    if run_manifest_uri is None:
        return {"updated": False, "error": "the run plan names no run manifest"}
    try:
        update = trained_data.record_trained(s3, run_manifest_uri, format_utc(now, "seconds"))
    except Exception as error:  # reported, not raised: see the docstring
        logger.exception("cumulative manifest not updated", extra={"manifest": run_manifest_uri})
        return {"updated": False, "error": f"{type(error).__name__}: {error}"[:1024]}
    return update.to_dict()
