"""Fresh and retained test data: what the gate scores challenger and champion on.

``data/test/`` is one growing holdout: people add test files as new data arrives, like training
files, and refit never deletes them. The champion was gated on the test files that existed when
its run started; everything uploaded since is **fresh** (the new distribution). So PrepareRun
splits ``data/test/`` at the start time of the champion's run:

- fresh = test files last modified at or after that time: channel ``test``, on which the
  challenger must beat the champion by ``MIN_IMPROVEMENT``;
- retained = the older test files: channel ``test_retained``, on which the challenger may be worse
  than the champion by at most ``MAX_RETAINED_REGRESSION`` (the forgetting check).

Each side becomes a SageMaker ManifestFile under ``runs/<runId>/`` (``test.manifest``,
``test_retained.manifest``), so the job reads exactly the split PrepareRun made. When there is
nothing to split (no champion, a champion refit does not know the run of, no test file newer than
it, or none older), the ``test`` channel reads the whole prefix as before and there is no
retained set: with no fresh file, every test file is old data and the ``MIN_IMPROVEMENT`` gate on
all of them already guards against forgetting. An overwritten key counts as fresh (its old content
is gone from the prefix). Reading the split costs one listing of ``data/test/``: no data is read
or copied.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from refit import layout
from refit.ledger.run_records import RunRecords
from refit.registry.champion import Champion
from refit.timestamps import parse_utc

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FRESH_MANIFEST = "test.manifest"
RETAINED_MANIFEST = "test_retained.manifest"


@dataclass(frozen=True)
class HoldoutSplit:
    """How this run's test data is split; ``$.run.testSets`` and the run record keep it."""

    cutoff: str | None  # the champion's run start; None when there is nothing to split
    fresh_files: int
    retained_files: int
    fresh_manifest_uri: str | None  # None: channel test reads data/test/ whole
    retained_manifest_uri: str | None  # None: no test_retained channel
    reason: str

    @property
    def split(self) -> bool:
        return self.retained_manifest_uri is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff,
            "freshFiles": self.fresh_files,
            "retainedFiles": self.retained_files,
            "freshManifestUri": self.fresh_manifest_uri,
            "retainedManifestUri": self.retained_manifest_uri,
            "reason": self.reason,
        }


def champion_run_started_at(records: RunRecords, champion: Champion | None) -> str | None:
    """When the champion's run started (its record), if refit promoted that champion."""
    if champion is None:
        return None
    pointer = records.get_champion()
    if pointer is None or pointer.model_name != champion.model_name:
        return None
    run = records.get_run(pointer.run_id)
    started = run.get("startedAt") if run else None
    return started if isinstance(started, str) and started else None


def split_holdout(
    s3: S3Client, bucket: str, run_id: str, champion_started_at: str | None
) -> HoldoutSplit:
    """Split ``data/test/`` at ``champion_started_at`` and write both manifests (see above)."""
    files = list(_test_files(s3, bucket))
    if champion_started_at is None:
        return HoldoutSplit(
            None, len(files), 0, None, None, "no champion with a known run: all of data/test/"
        )
    cutoff = parse_utc(champion_started_at)
    fresh = [key for key, modified in files if modified >= cutoff]
    retained = [key for key, modified in files if modified < cutoff]
    if not fresh or not retained:
        why = "no test file is newer" if not fresh else "every test file is newer"
        return HoldoutSplit(
            champion_started_at,
            len(files),
            0,
            None,
            None,
            f"{why} than the champion's run ({champion_started_at}): all of data/test/",
        )
    base = f"{layout.RUNS_PREFIX}{run_id}/"
    return HoldoutSplit(
        cutoff=champion_started_at,
        fresh_files=len(fresh),
        retained_files=len(retained),
        fresh_manifest_uri=_write_manifest(s3, bucket, base + FRESH_MANIFEST, fresh),
        retained_manifest_uri=_write_manifest(s3, bucket, base + RETAINED_MANIFEST, retained),
        reason=(
            f"{len(fresh)} test file(s) since the champion's run ({champion_started_at}) are "
            f"fresh, {len(retained)} older one(s) retained"
        ),
    )


def _test_files(s3: S3Client, bucket: str) -> Iterator[tuple[str, datetime]]:
    """Every file the test channel would read: names starting with _ or . are ignored."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=layout.TEST_PREFIX):
        for item in page.get("Contents", []):
            key = item["Key"]
            relative = key[len(layout.TEST_PREFIX) :]
            if key.endswith("/") or layout.is_ignored(relative):
                continue
            yield key, item["LastModified"]


def _write_manifest(s3: S3Client, bucket: str, key: str, keys: list[str]) -> str:
    """A SageMaker ManifestFile: the prefix, then each object relative to it."""
    body = [
        {"prefix": f"s3://{bucket}/{layout.TEST_PREFIX}"},
        *(k[len(layout.TEST_PREFIX) :] for k in sorted(keys)),
    ]
    s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(body).encode(), ContentType="application/json"
    )
    return f"s3://{bucket}/{key}"
