"""What has been trained on: the cumulative data manifest (``runs/cumulative-manifest.json``).

One JSON object lists, per key under ``data/train/``, the object version refit last trained on:
key, versionId, etag, size, rows, columns, the pinned copy PrepareRun made of it
(``runs/<run>/data/...``), the run and when. A run's own manifest says what that run covered;
this one says what the model lineage has seen, so a full retrain can rebuild from everything.

It is updated by EvaluateModels, i.e. once the training job has completed and scored its
challenger, whether the challenger is then promoted or rejected: the versions were validated and
trained on either way, and the trigger never queues them again, so leaving a rejected run's data
out would lose it for every later full retrain. (Data that trained but should not count, e.g.
wrong labels, is removed the way the user removes any data: delete the key.) A run that failed
before training completed adds nothing: its data is still under ``data/train/`` and the next
full retrain validates it there.

Rules: an overwritten key's newer version replaces the older entry once it has trained; a key
no longer under ``data/train/`` (deleted, or moved to ``data/rejected/``) drops out at the next
update. The manifest is a record, never the only copy of the truth: a full retrain lists what is
current under ``data/train/`` and only *reuses* an entry (its pinned copy and row count, no
re-read) when the current object still has the entry's ETag; anything else is validated as
usual. So a lost update costs a re-validation, not data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from refit import layout

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger(child=True)

FORMAT_VERSION = 1
_GONE_CODES = ("404", "NoSuchKey")


class TrainedDataUnreadable(ValueError):
    """The cumulative or a run manifest is not what refit writes."""


@dataclass(frozen=True)
class TrainedVersion:
    """One object version a completed training job read, and where its pinned copy is."""

    key: str
    version_id: str | None
    etag: str | None
    size: int
    rows: int
    columns: int
    pinned_key: str
    run_id: str
    trained_at: str

    def same_object(self, version_id: str | None, etag: str | None) -> bool:
        """Whether an object version is this one (by version id, else by ETag)."""
        if version_id and self.version_id:
            return version_id == self.version_id
        return bool(etag) and etag == self.etag

    def to_dict(self, bucket: str) -> dict[str, Any]:
        return {
            "key": self.key,
            "versionId": self.version_id,
            "etag": self.etag,
            "size": self.size,
            "rows": self.rows,
            "columns": self.columns,
            "pinnedUri": f"s3://{bucket}/{self.pinned_key}",
            "runId": self.run_id,
            "trainedAt": self.trained_at,
        }

    @classmethod
    def from_dict(cls, item: Mapping[str, Any], bucket: str) -> TrainedVersion:
        try:
            pinned = str(item["pinnedUri"])
            prefix = f"s3://{bucket}/"
            if not pinned.startswith(prefix):
                raise ValueError(f"pinnedUri {pinned!r} is not in {prefix}")
            return cls(
                key=str(item["key"]),
                version_id=item.get("versionId"),
                etag=item.get("etag"),
                size=int(item.get("size") or 0),
                rows=int(item["rows"]),
                columns=int(item["columns"]),
                pinned_key=pinned[len(prefix) :],
                run_id=str(item["runId"]),
                trained_at=str(item["trainedAt"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise TrainedDataUnreadable(f"bad entry {dict(item)!r}: {error}") from None


@dataclass(frozen=True)
class TrainedDataUpdate:
    """What one run changed in the cumulative manifest; goes into ``$.evaluation.trainedData``."""

    manifest_uri: str
    objects: int
    rows: int
    added: int
    replaced: int
    removed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "updated": True,
            "cumulativeManifestUri": self.manifest_uri,
            "objects": self.objects,
            "rows": self.rows,
            "added": self.added,
            "replaced": self.replaced,
            "removed": self.removed,
        }


def load_trained(s3: S3Client, bucket: str) -> dict[str, TrainedVersion]:
    """The cumulative manifest by key; empty before the first run has trained."""
    document = _read_json(s3, bucket, layout.CUMULATIVE_MANIFEST_KEY)
    if document is None:
        return {}
    objects = document.get("objects") if isinstance(document, Mapping) else None
    if not isinstance(objects, list):
        raise TrainedDataUnreadable(
            f"s3://{bucket}/{layout.CUMULATIVE_MANIFEST_KEY} has no objects list"
        )
    entries = (TrainedVersion.from_dict(item, bucket) for item in objects)
    return {entry.key: entry for entry in entries}


def record_trained(s3: S3Client, run_manifest_uri: str, trained_at: str) -> TrainedDataUpdate:
    """Fold a run whose training completed into the cumulative manifest.

    Read-modify-write without a condition is safe because runs never overlap: the stack's run
    lock (``refit.ledger.run_queue``) is held from PrepareRun until the execution has ended, and
    this is called only from inside an execution (EvaluateModels), so no two updates interleave.
    Calling it again for the same run changes nothing (a Lambda retry).
    """
    bucket, _ = _split(run_manifest_uri)
    run_id, accepted = run_versions(s3, run_manifest_uri, trained_at)
    entries = load_trained(s3, bucket)
    added = replaced = 0
    for trained in accepted:
        known = entries.get(trained.key)
        if known is not None and known.same_object(trained.version_id, trained.etag):
            continue  # a full retrain reusing it: the first run that trained it stays on record
        if known is None:
            added += 1
        else:
            replaced += 1  # an overwritten key: its newer version replaces the older one
        entries[trained.key] = trained
    current = set(_current_keys(s3, bucket))
    gone = [key for key in entries if key not in current]
    for key in gone:
        del entries[key]  # deleted (or moved to data/rejected/): never trained on again
    ordered = [entries[key] for key in sorted(entries)]
    rows = sum(entry.rows for entry in ordered)
    document = {
        "formatVersion": FORMAT_VERSION,
        "bucket": bucket,
        "updatedAt": trained_at,
        "updatedBy": run_id,
        "rows": rows,
        "objects": [entry.to_dict(bucket) for entry in ordered],
    }
    s3.put_object(
        Bucket=bucket,
        Key=layout.CUMULATIVE_MANIFEST_KEY,
        Body=json.dumps(document, indent=1).encode(),
        ContentType="application/json",
    )
    update = TrainedDataUpdate(
        manifest_uri=f"s3://{bucket}/{layout.CUMULATIVE_MANIFEST_KEY}",
        objects=len(ordered),
        rows=rows,
        added=added,
        replaced=replaced,
        removed=len(gone),
    )
    logger.info("cumulative manifest updated", extra=update.to_dict())
    return update


def run_versions(
    s3: S3Client, run_manifest_uri: str, trained_at: str
) -> tuple[str, list[TrainedVersion]]:
    """A run manifest's id and accepted versions (``refit.data.datasets.write_manifests``), each
    with its pinned copy; ``trained_at`` stamps them. :class:`TrainedDataUnreadable` if it is not
    one."""
    bucket, manifest_key = _split(run_manifest_uri)
    run = _read_json(s3, bucket, manifest_key)
    if not isinstance(run, Mapping) or not isinstance(run.get("accepted"), list):
        raise TrainedDataUnreadable(f"{run_manifest_uri} is missing or has no accepted list")
    run_id = str(run.get("runId"))
    return run_id, [_trained_version(item, bucket, run_id, trained_at) for item in run["accepted"]]


def _trained_version(item: Any, bucket: str, run_id: str, trained_at: str) -> TrainedVersion:
    if not isinstance(item, Mapping) or not item.get("pinnedUri"):
        raise TrainedDataUnreadable(f"run {run_id}: accepted entry without pinnedUri: {item!r}")
    return TrainedVersion.from_dict(
        {**item, "runId": item.get("pinnedBy") or run_id, "trainedAt": trained_at}, bucket
    )


def _current_keys(s3: S3Client, bucket: str) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=layout.TRAIN_PREFIX):
        for item in page.get("Contents", []):
            yield item["Key"]


def _read_json(s3: S3Client, bucket: str, key: str) -> Any:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.ClientError as error:
        code = str(getattr(error, "response", {}).get("Error", {}).get("Code"))
        if code in _GONE_CODES:
            return None
        raise
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise TrainedDataUnreadable(f"s3://{bucket}/{key} is not JSON: {error}") from None


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise TrainedDataUnreadable(f"{uri!r} is not an s3:// object URI")
    return bucket, key
