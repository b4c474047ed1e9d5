"""Bad input in ``data/train/``: refused before any training is paid for, set aside with the
reason, reported, and never blocking the good files uploaded with it.

One LocalCloud for the module (``MaxFileMB=1`` so that "too large" costs a 1 MiB upload). After a
first upload makes a champion with 4 features, two bursts go through the real trigger path:

1. every kind of bad file together with two good ones (one with CRLF line endings), an object in
   GLACIER, one encrypted with a customer key refit lacks (SSE-C), one with a disabled KMS key
   and one in a ``_temporary/`` folder: one run, whose files the CheckDataFiles map checks
   (``InlineCheckMB=0``), which trains on the good files only;
2. bad files only: the run ends ``REJECTED_INPUT`` without a training job or an endpoint change.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from local_cloud.cloud import LocalCloud
from local_cloud.event_source import s3_event_for
from refit import layout
from refit.ledger.run_queue import execution_name
from refit.run_input import DataObject
from tests.integration.cloud_harness import (
    TEST_KEY,
    TRIGGER_TIMEOUT,
    CloudRuns,
    Notifications,
    Run,
    csv,
    fast_cloud,
    rows,
    wait_for,
)

pytestmark = pytest.mark.slow

MAX_FILE_MB = 1
BURST = f"{layout.TRAIN_PREFIX}burst/"
GOOD_ROWS, CRLF_ROWS = 60, 30


def with_line(table_csv: bytes, number: int, line: str) -> bytes:
    """``table_csv`` with its line ``number`` (1-based) replaced."""
    lines = table_csv.decode().splitlines()
    lines[number - 1] = line
    return ("\n".join(lines) + "\n").encode()


def big_csv() -> bytes:
    line = b"1.5,0.25,-0.75,2.125,0.5\n"
    return line * (MAX_FILE_MB * 1024 * 1024 // len(line) + 1)


GOOD = {
    f"{BURST}good.csv": csv(rows(GOOD_ROWS, seed=10)),
    f"{BURST}crlf.csv": csv(rows(CRLF_ROWS, seed=11), newline="\r\n"),
}
#: Each bad file and a piece of the reason it must be rejected with.
BAD: dict[str, tuple[bytes, str]] = {
    f"{BURST}header.csv": (
        b"label,f1,f2,f3,f4\n" + csv(rows(5, seed=12)),
        "looks like a header row",
    ),
    f"{BURST}three-features.csv": (
        csv(rows(5, seed=13, features=3)),
        "line 1 has 4 columns, expected 5 (the champion's 4 features + label)",
    ),
    f"{BURST}text.csv": (
        with_line(csv(rows(5, seed=14)), 3, "1.0,0.5,abc,0.1,0.2"),
        "line 3, column 3: 'abc' is not a number",
    ),
    f"{BURST}nan-label.csv": (
        with_line(csv(rows(5, seed=15)), 2, "nan,0.5,0.1,0.1,0.2"),
        "line 2, column 1 (the label) is 'nan'",
    ),
    f"{BURST}empty-label.csv": (
        with_line(csv(rows(5, seed=16)), 2, ",0.5,0.1,0.1,0.2"),
        "line 2, column 1 (the label) is empty",
    ),
    f"{BURST}zero-bytes.csv": (b"", "empty file (0 bytes)"),
    f"{BURST}blank-lines.csv": (b"\n\r\n\n", "no data rows"),
    f"{BURST}gzipped.csv": (gzip.compress(csv(rows(5, seed=17))), "is not UTF-8 text"),
    f"{BURST}too-big.csv": (big_csv(), f"over the limit of {MAX_FILE_MB * 1024 * 1024} bytes"),
    f"{BURST}notes.txt": (csv(rows(5, seed=18)), "unsupported file type"),
    f"{BURST}odd/../dot-dot.csv": (csv(rows(5, seed=19)), "outside the expected layout"),
    f"{BURST}odd//empty-segment.csv": (csv(rows(5, seed=20)), "outside the expected layout"),
    # Each of these was accepted once and then failed the whole run in the job (refit_data).
    f"{BURST}beyond-float32.csv": (
        with_line(csv(rows(5, seed=21)), 2, "1.0,0.5,1e39,0.1,0.2"),
        "line 2, column 3: 1e39 is beyond float32's range",
    ),
    f"{BURST}bare-cr.csv": (
        with_line(csv(rows(5, seed=22)), 4, "1.0,0.5,\r0.1,0.1,0.2"),
        "line 4, column 3: a carriage return (CR) inside the line",
    ),
    f"{BURST}form-feed-line.csv": (csv(rows(5, seed=23)) + b"\x0c\n", "line 6, column 1"),
    f"{BURST}nel.csv": (
        with_line(csv(rows(5, seed=24)), 3, "1.0,0.5,0.1,0.1,0.2\u0085"),
        "line 3, column 5: '0.2\\x85' is not a number ('\\x85', U+0085",
    ),
    f"{BURST}fullwidth-digit.csv": (
        with_line(csv(rows(5, seed=25)), 2, "1.0,0.5,\uff12,0.1,0.2"),
        "line 2, column 3: '\uff12' is not a number",
    ),
    f"{BURST}arabic-digit.csv": (
        with_line(csv(rows(5, seed=26)), 2, "1.0,0.5,0.1,\u0662,0.2"),
        "line 2, column 4: '\u0662' is not a number",
    ),
    f"{BURST}trailing-comma.csv": (
        csv(rows(5, seed=27, features=3)).replace(b"\n", b",\n"),
        "column 5 is missing on every row",
    ),
    f"{BURST}{'k' * 980}.csv": (csv(rows(5, seed=28)), "the limit is 900"),
}
#: Refused where they are: S3 will not hand them to refit (not movable either).
ARCHIVED = f"{BURST}archived.csv"
CUSTOMER_KEY_ENCRYPTED = f"{BURST}sse-c.csv"
DISABLED_KMS_KEY = f"{BURST}sse-kms.csv"
#: Deleted before its run: skipped (nothing to read or refuse).
VANISHED = f"{BURST}vanished.csv"
#: Not data for refit or the job (Spark's temporary output): neither trained nor rejected.
IGNORED = f"{BURST}_temporary/0/part-0.csv"


@dataclass
class BadInput:
    cloud: LocalCloud
    runs: CloudRuns
    notifications: Notifications
    champion_config: str


@pytest.fixture(scope="module")
def bad_input(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BadInput]:
    # InlineCheckMB=0: every file is checked by the CheckDataFiles map (refit.data.file_checks).
    with fast_cloud(
        tmp_path_factory, "bad-input", MaxFileMB=str(MAX_FILE_MB), InlineCheckMB="0"
    ) as cloud:
        runs = CloudRuns(cloud)
        notifications = Notifications(cloud)
        runs.put(TEST_KEY, csv(rows(80, seed=1)))
        # Enough rows that the bursts stay increments (FullRetrainGrowth: 3x would retrain all)
        first = runs.upload_run({"data/train/first.csv": csv(rows(60, seed=2))})
        assert first.status == "PROMOTED", first.record
        yield BadInput(cloud, runs, notifications, runs.endpoint_config_name())


def rejected_key(key: str) -> str:
    return layout.REJECTED_PREFIX + key.removeprefix(layout.TRAIN_PREFIX)


def assert_set_aside(runs: CloudRuns, run: Run, key: str, reason: str) -> None:
    """``key`` left data/train/ for data/rejected/, with ``reason`` in metadata and sidecar."""
    target = rejected_key(key)
    assert not runs.exists(key), f"{key} is still in {layout.TRAIN_PREFIX}"
    assert runs.exists(target), f"{key} was not moved to {target}"
    metadata = runs.s3.head_object(Bucket=runs.bucket, Key=target)["Metadata"]
    # (S3 metadata is ASCII: the reason travels escaped, as Python's unicode_escape writes it)
    assert reason.encode("unicode_escape").decode("ascii") in metadata["refit-reason"], metadata
    assert metadata["refit-run"] == run.name
    sidecar = runs.json_object(f"{target}.reason.json")
    assert (sidecar["key"], sidecar["runId"], sidecar["movedTo"]) == (key, run.name, target)
    assert reason in sidecar["reason"], (key, sidecar)


def rejected_in(document: dict[str, Any]) -> dict[str, str]:
    return {f["key"]: f["reason"] for f in document["data"]["rejectedFiles"]}


def test_each_bad_file_is_set_aside_with_its_reason_and_the_good_ones_train(
    bad_input: BadInput,
) -> None:
    runs = bad_input.runs
    jobs_before = runs.training_job_names()

    # When the bad files and two good ones are uploaded together, with one in GLACIER and one
    # in a temporary folder
    known = runs.execution_arns()
    uploads = {**GOOD, **{key: body for key, (body, _) in BAD.items()}}
    refused = [ARCHIVED, CUSTOMER_KEY_ENCRYPTED, DISABLED_KMS_KEY]
    burst = {*uploads, *refused, VANISHED, IGNORED}
    # (their S3 events are held and released together: on a loaded machine the uploads may
    # outlast the 1 s batching window, and the burst would start two runs)
    delayed = bad_input.cloud.event_sources.delayed
    for _ in burst:
        delayed.arm(lambda body: any(s3_event_for(key)(body) for key in burst))
    runs.s3.put_object(
        Bucket=runs.bucket, Key=ARCHIVED, Body=csv(rows(5, seed=29)), StorageClass="GLACIER"
    )
    runs.put(IGNORED, csv(rows(5, seed=30)))
    kms = bad_input.cloud.client("kms")
    key_id = kms.create_key(Description="a key later disabled")["KeyMetadata"]["KeyId"]
    runs.s3.put_object(
        Bucket=runs.bucket,
        Key=DISABLED_KMS_KEY,
        Body=csv(rows(5, seed=32)),
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=key_id,
    )
    kms.disable_key(KeyId=key_id)
    runs.s3.put_object(
        Bucket=runs.bucket,
        Key=CUSTOMER_KEY_ENCRYPTED,
        Body=csv(rows(5, seed=31)),
        SSECustomerAlgorithm="AES256",
        SSECustomerKey=base64.b64encode(b"a key refit does not have, 32 B").decode(),
    )
    for key, body in uploads.items():
        runs.put(key, body)
    # (and one deleted again before its run reads it: the version the event names is gone)
    runs.put(VANISHED, csv(rows(5, seed=33)))
    runs.s3.delete_object(Bucket=runs.bucket, Key=VANISHED)
    wait_for(lambda: delayed.held == len(burst), TRIGGER_TIMEOUT, "the burst's S3 events")
    assert delayed.release() == len(burst)
    run = runs.finished(runs.triggered([*uploads, *refused, VANISHED], known))

    # Then one run covered them all (upload_run waits for exactly that), each file checked by
    # its own CheckDataFile in the CheckDataFiles map, and trained on exactly the good files
    assert runs.states_entered(run.arn).count("CheckDataFiles") == 1
    verdicts = runs.keys(f"{layout.RUNS_PREFIX}{run.name}/checks/verdicts/")
    assert len(verdicts) == len(uploads) + len(refused), verdicts
    manifest = runs.json_object(run.record["manifestUri"])
    assert manifest["runId"] == run.name
    assert sorted(f["key"] for f in manifest["accepted"]) == sorted(GOOD)
    assert run.record["data"]["accepted"] == len(GOOD)
    assert run.record["data"]["rows"] == GOOD_ROWS + CRLF_ROWS
    train_manifest = runs.json_object(f"{layout.RUNS_PREFIX}{run.name}/train.manifest")
    # (the job reads the validated versions, pinned under runs/<run>/data/, not the live keys)
    assert sorted(train_manifest[1:]) == sorted(
        layout.pinned_data_key(run.name, key) for key in GOOD
    )
    # (the CRLF file's rows reached XGBoost: the job read every accepted row)
    assert run.record["metrics"]["trainRows"] == GOOD_ROWS + CRLF_ROWS
    assert run.status in ("PROMOTED", "REJECTED"), run.record
    assert runs.training_job_names() - jobs_before == {layout.sagemaker_name(run.name)}
    for key in GOOD:
        assert runs.exists(key), f"good file {key} was moved"

    # And each bad file was refused for its own reason and set aside
    recorded = rejected_in(run.record)
    assert set(recorded) == {*BAD, *refused}, recorded
    assert run.record["data"]["rejected"] == len(BAD) + len(refused)
    for key, (_, reason) in BAD.items():
        assert reason in recorded[key], (key, recorded[key])
        assert_set_aside(runs, run, key, reason)
    # And the archived one where it is, saying how to train on it
    assert recorded[ARCHIVED].startswith("stored in GLACIER: restore it"), recorded[ARCHIVED]
    assert runs.exists(ARCHIVED) and not runs.exists(rejected_key(ARCHIVED))
    # And the one encrypted with a customer key (SSE-C) refit lacks, where it is, saying so
    assert recorded[CUSTOMER_KEY_ENCRYPTED].startswith("S3 refused to read it: 400"), recorded
    assert "SSE-C" in recorded[CUSTOMER_KEY_ENCRYPTED]
    assert runs.exists(CUSTOMER_KEY_ENCRYPTED)
    # And the one whose KMS key is disabled, where it is, with KMS's reason
    assert recorded[DISABLED_KMS_KEY].startswith("S3 refused to read it: KMS.DisabledException"), (
        recorded
    )
    assert runs.exists(DISABLED_KMS_KEY)
    # And the vanished one is skipped, not trained and not refused, with what happened to it
    assert {s["key"]: s["reason"] for s in manifest["skipped"]} == {
        VANISHED: "no longer exists (deleted before the run)"
    }
    # And the temporary file started nothing and is left alone, as the job would leave it
    assert IGNORED not in recorded and runs.exists(IGNORED)

    # And the notification reports them
    notification = bad_input.notifications.for_run(run.name)
    rejected = len(BAD) + len(refused)
    assert f"{len(GOOD)} file(s) accepted, {rejected} rejected" in notification["message"]
    assert rejected_in(Notifications.record_in(notification)) == recorded


def test_a_run_with_nothing_valid_ends_rejected_input_without_training(
    bad_input: BadInput,
) -> None:
    runs = bad_input.runs
    jobs, models, configs = (
        runs.training_job_names(),
        runs.model_names(),
        runs.endpoint_config_names(),
    )
    config = runs.endpoint_config_name()
    only_bad = {
        f"{layout.TRAIN_PREFIX}all-bad/header.csv": BAD[f"{BURST}header.csv"],
        f"{layout.TRAIN_PREFIX}all-bad/zero-bytes.csv": BAD[f"{BURST}zero-bytes.csv"],
    }

    # When only bad files arrive
    run = runs.upload_run({key: body for key, (body, _) in only_bad.items()})

    # Then the run ends REJECTED_INPUT before any training, the endpoint untouched
    assert (run.execution_status, run.status) == ("SUCCEEDED", "REJECTED_INPUT")
    assert "Train" not in runs.states_entered(run.arn)
    assert runs.training_job_names() == jobs
    assert (runs.model_names(), runs.endpoint_config_names()) == (models, configs)
    assert runs.endpoint_config_name() == config
    # And both files are set aside with their reasons, in the record and the notification
    assert set(rejected_in(run.record)) == set(only_bad)
    for key, (_, reason) in only_bad.items():
        assert_set_aside(runs, run, key, reason)
    notification = bad_input.notifications.for_run(run.name)
    assert notification["attributes"]["status"] == "REJECTED_INPUT"
    assert "0 file(s) accepted, 2 rejected" in notification["message"]


def test_a_job_that_fails_on_one_accepted_file_sets_it_aside_and_trains_the_rest(
    bad_input: BadInput,
) -> None:
    """Defence in depth (refit.start_retrain.quarantine): should the job still fail on a file
    PrepareRun accepted, its FailureReason names the file; refit sets it aside and retries the rest
    once."""
    runs, cloud = bad_input.runs, bad_input.cloud
    files = {
        f"{layout.TRAIN_PREFIX}defence/{name}": csv(rows(20, seed=40 + n))
        for n, name in enumerate(("a.csv", "b.csv", "c.csv"))
    }
    bad_key = f"{layout.TRAIN_PREFIX}defence/b.csv"
    known = runs.execution_arns()
    uploaded = {key: runs.put(key, body) for key, body in files.items()}
    # Given a job that fails on b.csv the way train.py reports a bad file (its pinned copy first)
    first_name = execution_name(
        [DataObject(k, r["ETag"].strip('"'), r.get("VersionId")) for k, r in uploaded.items()]
    )
    pinned = layout.pinned_data_key(first_name, bad_key)
    cloud.inject_training_failure(
        layout.sagemaker_name(first_name),
        f"AlgorithmError: ExecuteUserScriptError: exit code 1\nlast output:\n"
        f"ERROR training failed: train/{pinned}: line 2, column 3: a value train.py refused",
    )
    first = runs.finished(runs.triggered(list(files), known))
    assert (first.name, first.status) == (first_name, "FAILED"), first.record

    # Then b.csv is set aside with the job's reason, and the other two train in one more run
    second = runs.finished(runs.triggered(sorted(set(files) - {bad_key}), known | {first.arn}))
    assert second.execution_input["retryOf"] == first.name
    assert second.record["request"]["retryOf"] == first.name
    assert second.status in ("PROMOTED", "REJECTED"), second.record
    assert_set_aside(runs, first, bad_key, "a value train.py refused")
    record = runs.records.get_run(first.name)
    assert record is not None
    assert record["quarantine"]["key"] == bad_key
    assert record["quarantine"]["requeuedObjects"] == 2
    (notification,) = wait_for(
        lambda: [
            n
            for n in bad_input.notifications.about(first.name)
            if n["attributes"].get("status") == "QUARANTINED"
        ],
        10,
        "the quarantine notification",
    )
    assert "other 2 file(s) are queued again" in notification["message"]
