"""Setting a data file aside: ``data/train/<rel>`` moves to ``data/rejected/<rel>`` with the reason.

The reason travels in the copy's metadata (``refit-reason``, ASCII-escaped: S3 metadata is an
HTTP header) and in full in a ``<target>.reason.json`` sidecar; then that exact version leaves
``data/train/`` (a newer upload of the same key stays live). PrepareRun (``refit.data.datasets``)
does this for files that break the data contract, the trigger (``refit.start_retrain.quarantine``)
for a file a training job failed on. No dependency on the data contract itself: the trigger's Lambda
does not carry the training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from refit import layout

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

_REASON_MAX_CHARS = 1024
_GONE_CODES = ("404", "NoSuchKey", "NoSuchVersion")


@dataclass(frozen=True)
class RejectedFile:
    key: str
    reason: str
    moved_to: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "reason": self.reason, "movedTo": self.moved_to}


def set_aside(
    s3: S3Client,
    bucket: str,
    key: str,
    version: str | None,
    etag: str | None,
    reason: str,
    run_id: str,
    copy_from: str | None = None,
) -> RejectedFile:
    """Move version ``version`` of ``key`` to ``data/rejected/`` with the reason in its metadata
    and a ``.reason.json`` sidecar; ``copy_from``: another key with the same bytes (a pinned
    copy) to copy instead, when the version may be gone."""
    target = layout.REJECTED_PREFIX + key[len(layout.TRAIN_PREFIX) :]
    source: CopySourceTypeDef = {"Bucket": bucket, "Key": copy_from or key}
    if version and copy_from is None:
        source["VersionId"] = version
    try:
        s3.copy_object(
            Bucket=bucket,
            Key=target,
            CopySource=source,
            MetadataDirective="REPLACE",
            Metadata={"refit-reason": _header_safe(reason), "refit-run": run_id},
        )
    except s3.exceptions.ClientError as error:
        if gone(error):  # another run moved it first
            return RejectedFile(key, reason, None)
        raise
    sidecar = {
        "key": key,
        "versionId": version,
        "etag": etag,
        "reason": reason,
        "runId": run_id,
        "movedTo": target,
    }
    s3.put_object(
        Bucket=bucket,
        Key=f"{target}.reason.json",
        Body=json.dumps(sidecar, indent=2).encode(),
        ContentType="application/json",
    )
    try:
        if version:
            # Deleting this exact version: a newer upload of the same key stays live.
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as error:
        if not gone(error):
            raise
    return RejectedFile(key, reason, target)


def gone(error: Exception) -> bool:
    """Whether an S3 error says the object (version) does not exist."""
    response: Any = getattr(error, "response", {})
    return str(response.get("Error", {}).get("Code")) in _GONE_CODES


def _header_safe(reason: str) -> str:
    # S3 user metadata travels in HTTP headers: ASCII only, and the whole set is limited to 2 KB.
    return reason.encode("unicode_escape").decode("ascii")[:_REASON_MAX_CHARS]
