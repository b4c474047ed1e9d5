"""Checking a large delivery in parallel: the CheckDataFiles map, one CheckDataFile per file.

One PrepareRun streams its files through the data contract one after another (~13 MB/s in pure
Python, bench figure 8) inside a 300 s Lambda: a few GB at most, while a run may hold
``MaxObjectsPerRun`` files of ``MaxFileMB``. So when the files a run must read add up to more
than ``InlineCheckMB``, PrepareRun reads none of them and changes nothing:

1. it writes the list (key, ETag, version, size) to ``runs/<run>/checks/items.json`` and returns
   status ``check-files`` (:func:`plan_checks`);
2. the state machine's ``CheckDataFiles`` state, a Distributed Map reading that list (ItemReader),
   invokes ``CheckDataFile`` once per file, ``CheckConcurrency`` at a time. Each reads its file
   through the same contract (``refit.data.datasets.check_candidate``: read only, nothing moves) and
   writes the verdict to ``runs/<run>/checks/verdicts/<n>.json`` (:func:`check_item`), returning
   only its outcome so the map's own output stays small whatever the file count;
3. ``PrepareCheckedRun`` calls PrepareRun again (``afterChecks``): it takes each file whose
   verdict names its current ETag as checked (:func:`load_verdicts`), applies the rules that need
   every file (one column count per run), then sets refused files aside, pins the accepted ones
   and plans the run exactly as for a small delivery. A file changed since has no verdict for its
   new bytes and is read there.

A check that fails for S3's reasons (throttling, a timeout) is retried by the map's Task; if it
still fails, the map fails and the run is recorded FAILED before anything in the bucket changed:
the files stay in ``data/train/`` for the next run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from refit_data import ExpectedColumns, LabelRule

from refit import layout
from refit.data.datasets import Candidate, FileVerdict, check_candidate

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHECK_FILES_STATUS = "check-files"
_READ_WORKERS = 16  # parallel GetObjects of the verdicts: each is a few hundred bytes


def checks_prefix(run_id: str) -> str:
    return f"{layout.run_prefix(run_id)}checks/"


def items_key(run_id: str) -> str:
    return f"{checks_prefix(run_id)}items.json"


def verdict_key(run_id: str, index: int) -> str:
    return f"{checks_prefix(run_id)}verdicts/{index:06d}.json"


def plan_checks(
    s3: S3Client,
    bucket: str,
    run_id: str,
    to_check: Sequence[Candidate],
    expected: ExpectedColumns | None,
    concurrency: int,
) -> dict[str, Any]:
    """Write the map's item list; PrepareRun's result for the ``check-files`` branch."""
    items = [
        {
            "key": c.key,
            "etag": c.etag,
            "versionId": c.version_id,
            "size": c.size,
            "storageClass": c.storage_class,
            "unreadable": c.unreadable,
        }
        for c in to_check
    ]
    key = items_key(run_id)
    s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(items).encode(), ContentType="application/json"
    )
    return {
        "status": CHECK_FILES_STATUS,
        "runId": run_id,
        "checks": {
            "bucket": bucket,
            "itemsKey": key,
            "files": len(items),
            "bytes": sum(c.size for c in to_check),
            "concurrency": concurrency,
            # The champion's layout, when there is one: a file's own check can apply it.
            "expectedColumns": None
            if expected is None
            else {"count": expected.count, "because": expected.because},
        },
    }


def check_item(
    s3: S3Client,
    bucket: str,
    event: Mapping[str, Any],
    *,
    max_file_bytes: int,
    rule: LabelRule,
) -> FileVerdict:
    """One map iteration: ``{"runId", "index", "item", "expectedColumns"}`` → the verdict, also
    written where :func:`load_verdicts` finds it."""
    item, run_id, index = event["item"], str(event["runId"]), int(event["index"])
    expected_document = event.get("expectedColumns")
    expected = (
        ExpectedColumns(int(expected_document["count"]), str(expected_document["because"]))
        if expected_document
        else None
    )
    candidate = Candidate(
        key=str(item["key"]),
        etag=item.get("etag"),
        version_id=item.get("versionId"),
        size=int(item.get("size") or 0),
        storage_class=item.get("storageClass"),
        unreadable=item.get("unreadable"),
    )
    verdict = check_candidate(s3, bucket, candidate, max_file_bytes, expected, rule)
    s3.put_object(
        Bucket=bucket,
        Key=verdict_key(run_id, index),
        Body=json.dumps(verdict.to_dict()).encode(),
        ContentType="application/json",
    )
    return verdict


def load_verdicts(s3: S3Client, bucket: str, run_id: str) -> dict[str, FileVerdict]:
    """Every verdict the run's map wrote, by key."""
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{checks_prefix(run_id)}verdicts/"
        )
        for item in page.get("Contents", [])
    ]
    if not keys:
        return {}

    def read(key: str) -> FileVerdict:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return FileVerdict.from_dict(json.loads(body))

    with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(keys))) as pool:
        return {verdict.key: verdict for verdict in pool.map(read, keys)}
