"""The train channel a job reads: the run's pinned copies, shaped for its hosts and input mode.

One host in ``File`` mode reads the pinned copies through the run's ``train.manifest``
(ManifestFile). Two cases need objects of their own:

- **Several hosts** (``TrainingInstanceCount`` > 1): ``ShardedByS3Key`` hands each host whole
  objects ("SageMaker does not split the files any further"; for M objects and N hosts each gets
  about M/N, and none if M < N), so one big file would leave every other host idle.
- **FastFile**, which streams the channel instead of copying it to the volume first: it "supports
  S3 prefixes only (it does not support manifest and augmented manifest)" (both: SageMaker
  Developer Guide, "Access Training Data" and the ``TrainingInputMode`` API reference).

Then PrepareRun writes the channel under ``runs/<run>/channel/train/``: each pinned copy as one
or more parts, each part a byte range of it that ends at a line end, copied server-side
(``UploadPartCopy``: no byte passes through the Lambda). With N hosts no part is larger than
1/N of the data, so there are at least N parts and the hosts' shares are roughly equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger

from refit import layout
from refit.config import TrainInputMode
from refit.data.datasets import DataFile

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger(child=True)

# A part boundary moves to the next line end: looked for this far, then the next boundary is
# tried (a file of very long lines is split less, never in the middle of a line).
LINE_END_SEARCH_BYTES = 1024 * 1024
_SEARCH_CHUNK_BYTES = 64 * 1024
# UploadPartCopy copies at most 5 GiB per part; every part but the last must be >= 5 MiB.
_COPY_PART_MAX_BYTES = 5 * 1024**3
COPY_WORKERS = 16


@dataclass(frozen=True)
class Part:
    """Bytes ``[start, end)`` of a pinned copy: one object of the channel."""

    source_key: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class TrainChannel:
    """What CreateTrainingJob's ``train`` channel reads."""

    s3_uri: str
    data_type: Literal["ManifestFile", "S3Prefix"]
    distribution: Literal["FullyReplicated", "ShardedByS3Key"]
    input_mode: TrainInputMode
    objects: int  # how many objects the hosts share

    @classmethod
    def of_manifest(cls, manifest_uri: str, objects: int) -> TrainChannel:
        """One host in File mode: the pinned copies, listed by the run's ``train.manifest``."""
        return cls(manifest_uri, "ManifestFile", "FullyReplicated", "File", objects)

    def request(self) -> dict[str, Any]:
        channel: dict[str, Any] = {
            "ChannelName": layout.CHANNEL_TRAIN,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": self.data_type,
                    "S3Uri": self.s3_uri,
                    "S3DataDistributionType": self.distribution,
                }
            },
            "ContentType": "text/csv",
        }
        if self.input_mode != "File":
            # Per channel: the other channels (manifests among them) stay in File mode.
            channel["InputMode"] = self.input_mode
        return channel


def train_channel(
    s3: S3Client,
    bucket: str,
    run_id: str,
    accepted: Sequence[DataFile],
    manifest_uri: str,
    hosts: int,
    input_mode: TrainInputMode,
) -> TrainChannel:
    """The run's train channel for ``hosts`` hosts reading in ``input_mode`` (module docstring)."""
    if hosts == 1 and input_mode == "File":
        return TrainChannel.of_manifest(manifest_uri, len(accepted))
    prefix = layout.train_channel_prefix(run_id)
    parts = plan_parts(s3, bucket, accepted, hosts)
    keys = [f"{prefix}part-{index:05d}.csv" for index in range(len(parts))]
    if parts:
        with ThreadPoolExecutor(max_workers=min(COPY_WORKERS, len(parts))) as pool:
            list(pool.map(lambda item: _copy(s3, bucket, *item), zip(parts, keys, strict=True)))
    logger.info(
        "train channel written",
        extra={"parts": len(parts), "files": len(accepted), "hosts": hosts, "mode": input_mode},
    )
    return TrainChannel(
        f"s3://{bucket}/{prefix}",
        "S3Prefix",
        "ShardedByS3Key" if hosts > 1 else "FullyReplicated",
        input_mode,
        len(parts),
    )


def plan_parts(s3: S3Client, bucket: str, accepted: Sequence[DataFile], hosts: int) -> list[Part]:
    """Each pinned copy cut at line ends into parts of at most 1/``hosts`` of all the bytes."""
    total = sum(f.size for f in accepted)
    parts: list[Part] = []
    for data_file in accepted:
        key = str(data_file.pinned_key)
        if data_file.size == 0:
            continue
        pieces = max(1, math.ceil(data_file.size * hosts / total)) if hosts > 1 else 1
        starts = [0]
        for index in range(1, pieces):
            start = _next_line_start(s3, bucket, key, data_file.size * index // pieces)
            if start is not None and starts[-1] < start < data_file.size:
                starts.append(start)
        ends = [*starts[1:], data_file.size]
        parts.extend(Part(key, start, end) for start, end in zip(starts, ends, strict=True))
    return parts


def _next_line_start(s3: S3Client, bucket: str, key: str, offset: int) -> int | None:
    """The offset just after the first line end at or after ``offset`` (None: none close by)."""
    searched = 0
    while searched < LINE_END_SEARCH_BYTES:
        first = offset + searched
        last = first + _SEARCH_CHUNK_BYTES - 1
        body: bytes = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")[
            "Body"
        ].read()
        found = body.find(b"\n")
        if found >= 0:
            return first + found + 1
        if len(body) < _SEARCH_CHUNK_BYTES:
            return None  # the end of the file: the last line has no line end
        searched += len(body)
    return None


def _copy(s3: S3Client, bucket: str, part: Part, key: str) -> None:
    """The part's bytes into ``key``, server-side, in copy chunks of at most 5 GiB."""
    source = {"Bucket": bucket, "Key": part.source_key}
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="text/csv")
    try:
        completed = []
        chunks = max(1, math.ceil(part.size / _COPY_PART_MAX_BYTES))
        for number in range(1, chunks + 1):
            first = part.start + (number - 1) * part.size // chunks
            last = part.start + number * part.size // chunks - 1
            copied = s3.upload_part_copy(
                Bucket=bucket,
                Key=key,
                UploadId=upload["UploadId"],
                PartNumber=number,
                CopySource=source,  # type: ignore[arg-type]
                CopySourceRange=f"bytes={first}-{last}",
            )
            completed.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": completed},  # type: ignore[typeddict-item]
        )
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
        raise
