"""Intake: every way an object lands in (or leaves) ``data/train/``, and late S3 events.

One LocalCloud for the module, in batch deployment mode (no endpoint: only what each run covers
matters here), its runs in file order. Uploads go through the real trigger path; the cloud's
``delay_s3_event`` holds chosen events back on their way from SQS to StartRetrain, as
EventBridge/SQS may deliver an event late, or a second time late.

1. A multipart upload, a copy into the prefix, a plain PUT, and a PUT deleted before its run
   reads it, together: one run; it trains on the first three, skips the deleted one. The event
   of one file is held back entirely, a copy of the plain PUT's event is held back.
2. The held events are delivered after that run finished, together with an overwrite of the
   plain file: one run, for the late file and the overwrite's new version; the late duplicate
   of the already-trained version starts nothing.
3. A key deleted since is not part of a later full retrain; the overwritten key is, as its
   newest version; every version trained before is reused from the cumulative manifest.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local_cloud.cloud import LocalCloud
from refit import layout
from refit_cli.cli import build_execution_input, manual_execution_name
from tests.integration.cloud_harness import (
    TEST_KEY,
    CloudRuns,
    csv,
    fast_cloud,
    rows,
    wait_for,
)

pytestmark = pytest.mark.slow

PREFIX = f"{layout.TRAIN_PREFIX}intake/"
MULTIPART = f"{PREFIX}multipart.csv"
COPIED = f"{PREFIX}copied.csv"
PLAIN = f"{PREFIX}plain.csv"
DELETED = f"{PREFIX}deleted.csv"
LATE = f"{PREFIX}late.csv"
PART_BYTES = 5 * 1024 * 1024  # S3's minimum size of every part but the last


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with fast_cloud(tmp_path_factory, "upload-kinds", DeploymentMode="batch") as started:
        yield started


@pytest.fixture(scope="module")
def runs(cloud: LocalCloud) -> CloudRuns:
    runs = CloudRuns(cloud)
    runs.put(TEST_KEY, csv(rows(60, seed=1)))
    return runs


def multipart_upload(runs: CloudRuns, key: str) -> tuple[dict[str, Any], int]:
    """Two parts (the first of S3's minimum size); returns the completion and the row count."""
    first = csv(rows(60_000, seed=2), fmt="%.15g")[:PART_BYTES]
    first = first[: first.rindex(b"\n") + 1]
    second = csv(rows(100, seed=3))
    upload = runs.s3.create_multipart_upload(Bucket=runs.bucket, Key=key)
    parts = []
    for number, body in enumerate((first.ljust(PART_BYTES, b"\n"), second), start=1):
        part = runs.s3.upload_part(
            Bucket=runs.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    completed: dict[str, Any] = runs.s3.complete_multipart_upload(
        Bucket=runs.bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    return completed, first.count(b"\n") + second.count(b"\n")


def accepted(runs: CloudRuns, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    manifest = runs.json_object(record["manifestUri"])
    return {f["key"]: f for f in manifest["accepted"]}


def test_multipart_copy_and_plain_uploads_trigger_one_run_and_a_deleted_key_is_skipped(
    cloud: LocalCloud, runs: CloudRuns
) -> None:
    # Given the event of LATE is held back, and a second delivery of PLAIN's event too
    cloud.delay_s3_event(LATE)
    cloud.delay_s3_event(PLAIN, duplicate=True)
    runs.put("staging/source.csv", csv(rows(30, seed=4)))
    known = runs.execution_arns()

    # When, within one batching window, a multipart upload completes, an object is copied in,
    # one is PUT, one is PUT and deleted at once, and LATE is PUT
    completed, multipart_rows = multipart_upload(runs, MULTIPART)
    copied = runs.s3.copy_object(
        Bucket=runs.bucket,
        Key=COPIED,
        CopySource={"Bucket": runs.bucket, "Key": "staging/source.csv"},
    )
    plain = runs.put(PLAIN, csv(rows(20, seed=5)))
    runs.put(DELETED, csv(rows(10, seed=6)))
    runs.s3.delete_object(Bucket=runs.bucket, Key=DELETED)
    runs.put(LATE, csv(rows(15, seed=7)))

    # Then one run covers the four objects whose events arrived (the multipart upload once)
    arn = runs.triggered([COPIED, DELETED, MULTIPART, PLAIN], known)
    run = runs.finished(arn)
    assert runs.execution_arns() - known == {arn}
    assert run.status == "PROMOTED", run.record
    # And it trained on each uploaded version, except the deleted object's
    trained = accepted(runs, run.record)
    assert sorted(trained) == [COPIED, MULTIPART, PLAIN]
    assert trained[MULTIPART]["versionId"] == completed["VersionId"]
    assert trained[MULTIPART]["etag"] == completed["ETag"].strip('"')
    assert trained[MULTIPART]["rows"] == multipart_rows
    assert trained[COPIED]["versionId"] == copied["VersionId"]
    assert trained[PLAIN]["versionId"] == plain["VersionId"]
    manifest = runs.json_object(run.record["manifestUri"])
    assert manifest["skipped"] == [
        {"key": DELETED, "reason": "no longer exists (deleted before the run)"}
    ]
    assert run.record["metrics"]["trainRows"] == multipart_rows + 30 + 20
    # And the two events are still held
    assert cloud.event_sources.delayed.held == 2


def test_late_events_start_no_second_run_for_trained_data_and_an_overwrite_is_new_data(
    cloud: LocalCloud, runs: CloudRuns
) -> None:
    (poller,) = [
        p for p in cloud.event_sources.pollers if p.mapping.queue_url == cloud.stack.queue_url
    ]
    handled_before = sum(len(o.message_ids) for o in poller.outcomes)
    previous_plain = runs.s3.head_object(Bucket=runs.bucket, Key=PLAIN)["VersionId"]
    known = runs.execution_arns()

    # When PLAIN is overwritten and the held events arrive, after PLAIN's run finished
    overwrite = runs.put(PLAIN, csv(rows(25, seed=8)))
    assert cloud.release_delayed_events() == 2

    # Then one run covers the late file and the overwrite's new version, and nothing else:
    # the late second delivery of PLAIN's first version was dropped (trained once, already)
    arn = runs.triggered([LATE, PLAIN], known)
    run = runs.finished(arn)
    objects = {o["key"]: o for o in run.execution_input["objects"]}
    assert objects[PLAIN]["versionId"] == overwrite["VersionId"] != previous_plain
    trained = accepted(runs, run.record)
    assert sorted(trained) == [LATE, PLAIN]
    assert (trained[PLAIN]["versionId"], trained[PLAIN]["rows"]) == (overwrite["VersionId"], 25)
    assert run.record["trainingMode"] == "incremental"
    assert run.status in ("PROMOTED", "REJECTED"), run.record
    # And every message was consumed: three (two late, one new), and no other run started
    wait_for(
        lambda: sum(len(o.message_ids) for o in poller.outcomes) - handled_before >= 3,
        10,
        "the poller to hand the three events to StartRetrain",
    )
    assert all(o.deleted == len(o.message_ids) for o in poller.outcomes)
    sqs = cloud.client("sqs")
    assert not sqs.receive_message(QueueUrl=cloud.stack.queue_url, WaitTimeSeconds=0).get(
        "Messages"
    )
    assert runs.execution_arns() - known == {arn}
    assert cloud.event_sources.delayed.held == 0


def test_a_full_retrain_skips_deleted_keys_and_reads_the_newest_version(
    runs: CloudRuns,
) -> None:
    # Given COPIED is deleted after it was trained on
    runs.s3.delete_object(Bucket=runs.bucket, Key=COPIED)
    newest_plain = runs.s3.head_object(Bucket=runs.bucket, Key=PLAIN)["VersionId"]

    # When a full retrain is started by hand (= refit start --full)
    document = build_execution_input(
        argparse.Namespace(full=True, incremental=False, prefix=None, mode=None)
    )
    name = manual_execution_name(time.time())
    arn = runs.sfn.start_execution(
        stateMachineArn=runs.info.state_machine_arn, name=name, input=json.dumps(document)
    )["executionArn"]
    run = runs.finished(arn)

    # Then it trained from scratch on what is in data/train/ now: not the deleted key, and
    # the overwritten key's newest version only
    assert run.record["trainingMode"] == "full"
    trained = accepted(runs, run.record)
    assert sorted(trained) == [LATE, MULTIPART, PLAIN]
    assert trained[PLAIN]["versionId"] == newest_plain
    # And versions trained before came from the cumulative manifest: their pinned copies, as
    # validated by the run that first trained them (no re-read)
    assert all(trained[key]["pinnedBy"] not in (None, run.name) for key in trained)
    assert trained[PLAIN]["pinnedUri"].endswith(
        layout.pinned_data_key(trained[PLAIN]["pinnedBy"], PLAIN)
    )
