"""A run whose training job failed on one file: set that file aside, train the others once more.

PrepareRun accepts only what the job can read (``training/refit_data.py`` is both sides' one
contract), so this is defence in depth: should a job still fail because of one accepted file, its
``FailureReason`` names the file (``train.py`` puts the channel path first, e.g.
``train/runs/<run>/data/a.csv: line 3 ...``; the toolkit's "last output" carries that line too).
When the run has ended, the trigger (StartRetrain, before it dispatches the queue) calls
:func:`retry_without_failed_file`, which

1. finds the accepted file whose pinned copy the reason names (``runs/<run>/manifest.json``,
   read by :func:`refit.data.trained_data.run_versions`);
2. moves that version to ``data/rejected/`` with the reason, like any refused upload
   (:func:`refit.data.rejected.set_aside`, copying the pinned bytes, so an overwrite since is kept);
3. for a run the trigger started (``source`` ``s3``), queues its other accepted objects once
   more, noting the failed run (``retryOf``): the next dispatch starts a run for them like for
   any upload. A run started by hand or by the schedule is not repeated (queued as uploads, its
   files would train incrementally): the notification says to start it again;
4. records what it did on the failed run (``quarantine``) and notifies.

A run that itself retried a failed run's files (its request has ``retryOf``) is not retried
again: the file is still set aside, the others stay trained on by nobody, and the record and
the notification say so and how to train them (``refit start --full``). A reason that names no
file of the run (a script error, out of memory, a bad hyperparameter) changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from refit.data.rejected import set_aside
from refit.data.trained_data import TrainedDataUnreadable, TrainedVersion, run_versions
from refit.record_run.notify import Notification, publish
from refit.run_input import DataObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

    from refit.ledger.run_queue import RunQueue
    from refit.ledger.run_records import RunRecords

logger = Logger(child=True)

FAILED = "FAILED"


@dataclass(frozen=True)
class Quarantine:
    """What :func:`retry_without_failed_file` did for a failed run."""

    key: str
    reason: str
    moved_to: str | None
    requeued: int
    not_retried: str | None  # why the others were not queued again

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "reason": self.reason,
            "movedTo": self.moved_to,
            "requeuedObjects": self.requeued,
            "notRetried": self.not_retried,
        }


def failed_file(failure_reason: str, accepted: Sequence[TrainedVersion]) -> TrainedVersion | None:
    """The accepted file the job's failure names: its pinned copy's path, then a colon."""
    named = [entry for entry in accepted if f"{entry.pinned_key}:" in failure_reason]
    return max(named, key=lambda entry: len(entry.pinned_key)) if named else None


def retry_without_failed_file(
    run_id: str,
    *,
    records: RunRecords,
    queue: RunQueue,
    s3: S3Client,
    bucket: str,
    sns: SNSClient,
    topic: str,
    stack_name: str,
    now: str,
) -> Quarantine | None:
    """Set aside the file a failed run's job failed on and queue the rest once (module doc)."""
    record = records.get_run(run_id)
    if record is None or record.get("status") != FAILED or record.get("quarantine"):
        return None  # not failed, or handled by an earlier delivery of the end event
    error = record.get("error")
    failure_reason = error.get("FailureReason") if isinstance(error, Mapping) else None
    manifest_uri = record.get("manifestUri")
    if not isinstance(failure_reason, str) or not isinstance(manifest_uri, str):
        return None
    try:
        _, accepted = run_versions(s3, manifest_uri, now)
    except TrainedDataUnreadable as error:
        logger.warning("failed run's manifest unreadable", extra={"error": str(error)})
        return None
    bad = failed_file(failure_reason, accepted)
    if bad is None:
        return None
    reason = f"the training job of run {run_id} failed on it: {failure_reason}"
    moved = set_aside(
        s3, bucket, bad.key, bad.version_id, bad.etag, reason, run_id, copy_from=bad.pinned_key
    )
    others = [
        DataObject(e.key, e.etag, e.version_id, e.size, retry_of=run_id)
        for e in accepted
        if e != bad
    ]
    request = record.get("request")
    request = request if isinstance(request, Mapping) else {}
    requeued, not_retried = 0, None
    if request.get("retryOf"):
        not_retried = (
            f"this run already retried run {request['retryOf']}'s files: the other "
            f"{len(others)} file(s) are not queued again; fix the cause, then "
            "`refit start --full`"
        )
    elif request.get("source") != "s3":
        # Queued as uploads they would train incrementally: start the same run again instead.
        not_retried = (
            f"a run started by hand or by the schedule is not repeated automatically: start it "
            f"again (the file is set aside, so it trains on the other {len(others)} file(s))"
        )
    else:
        requeued = queue.requeue(run_id, others, now)
    outcome = Quarantine(bad.key, reason, moved.moved_to, requeued, not_retried)
    records.finish(run_id, {"quarantine": outcome.to_dict()})
    logger.warning("failed file set aside", extra={"runId": run_id, **outcome.to_dict()})
    publish(sns, topic, _notification(run_id, stack_name, outcome))
    return outcome


def _notification(run_id: str, stack_name: str, outcome: Quarantine) -> Notification:
    lines = [
        f"Run {run_id}'s training job failed on {outcome.key}, which data validation had accepted.",
        f"It was moved to {outcome.moved_to or '(not moved)'} with the reason: {outcome.reason}",
        outcome.not_retried
        or f"The run's other {outcome.requeued} file(s) are queued again for the next run.",
    ]
    return Notification(
        subject=f"refit {stack_name}: run {run_id} failed on {outcome.key.rsplit('/', 1)[-1]}",
        message="\n".join(lines),
        attributes={"status": "QUARANTINED", "stack": stack_name},
    )
