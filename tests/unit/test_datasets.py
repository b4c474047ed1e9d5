from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from refit_data import label_rule

from refit.data import datasets
from refit.data.datasets import NoTestData
from refit.run_input import DataObject, RunRequest
from tests.unit.builders import csv_rows, keys_under, put
from tests.unit.moto_stack import BUCKET, Aws

MB = 1024 * 1024


def select(
    aws: Aws,
    request: RunRequest,
    max_file_bytes: int = MB,
    champion_features: int | None = None,
    s3: Any = None,
    objective: str = "reg:squarederror",
) -> datasets.DataSelection:
    """What PrepareRun selects (run ``run-1``), its refused files then set aside as it does."""
    client = s3 or aws.s3
    selection = datasets.select_data(
        client,
        BUCKET,
        request,
        run_id="run-1",
        max_file_bytes=max_file_bytes,
        champion_features=champion_features,
        rule=label_rule(objective),
    )
    return datasets.set_aside_rejected(client, BUCKET, "run-1", selection)


class FaultyS3:
    """The real (moto) client, except that S3 refuses the named (operation, key) pairs with an
    error, as it does for a KMS key or SSE-C key refit lacks, or a denied object."""

    def __init__(self, s3: Any, faults: dict[tuple[str, str], tuple[str, str, int]]) -> None:
        self._s3 = s3
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._s3, name)
        if name not in ("get_object", "head_object", "copy_object"):
            return attribute
        operation = "".join(part.title() for part in name.split("_"))

        def call(**params: Any) -> Any:
            source = params.get("CopySource")
            key = source["Key"] if isinstance(source, dict) else params.get("Key")
            fault = self._faults.get((operation, str(key)))
            if fault is None:
                return attribute(**params)
            code, message, status = fault
            error = {"Error": {"Code": code, "Message": message}}
            raise ClientError({**error, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)

        return call


# --- selecting the run's files ------------------------------------------------------------------


def test_a_prefix_run_takes_good_files_and_moves_bad_ones_aside(aws: Aws) -> None:
    # Given two good files, a broken one, a marker and an unsupported type under the prefix
    good = put(aws.s3, "data/train/2026/a.csv", csv_rows(10))
    put(aws.s3, "data/train/2026/b.csv", csv_rows(5))
    put(aws.s3, "data/train/2026/bad.csv", b"1,2,3,4\n1,2,oops,4\n")
    put(aws.s3, "data/train/2026/_SUCCESS", b"")
    put(aws.s3, "data/train/2026/notes.txt", b"hello")
    put(aws.s3, "data/train/other/c.csv", csv_rows(3))
    # When a run covers data/train/2026/
    selection = select(aws, RunRequest(prefix="data/train/2026/"))
    # Then the good files are accepted with their shape and version
    assert [f.key for f in selection.accepted] == ["data/train/2026/a.csv", "data/train/2026/b.csv"]
    first = selection.accepted[0]
    assert (first.rows, first.columns, first.size) == (10, 4, good["size"])
    assert (first.version_id, first.etag) == (good["versionId"], good["etag"])
    assert selection.rows == 15
    # And the bad ones are moved to data/rejected/ with their reason
    assert {(r.key, r.moved_to) for r in selection.rejected} == {
        ("data/train/2026/bad.csv", "data/rejected/2026/bad.csv"),
        ("data/train/2026/notes.txt", "data/rejected/2026/notes.txt"),
    }
    assert keys_under(aws.s3, "data/train/2026/") == [
        "data/train/2026/_SUCCESS",
        "data/train/2026/a.csv",
        "data/train/2026/b.csv",
    ]


def test_a_rejected_file_keeps_its_bytes_and_reason(aws: Aws) -> None:
    # Given a file with a non-numeric value, named with non-ASCII characters
    body = "1,2,3\n1,2,é\n".encode()
    put(aws.s3, "data/train/bad.csv", body)
    # When a run rejects it
    selection = select(aws, RunRequest())
    # Then the moved copy holds the same bytes, an ASCII reason and the run id in its metadata
    moved = aws.s3.get_object(Bucket=BUCKET, Key="data/rejected/bad.csv")
    assert moved["Body"].read() == body
    assert moved["Metadata"]["refit-run"] == "run-1"
    assert moved["Metadata"]["refit-reason"].isascii()
    assert "line 2, column 3" in moved["Metadata"]["refit-reason"]
    # And a sidecar explains it in full
    sidecar = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key="data/rejected/bad.csv.reason.json")["Body"].read()
    )
    assert sidecar["reason"] == selection.rejected[0].reason
    assert "'é' is not a number" in sidecar["reason"]
    assert sidecar["key"] == "data/train/bad.csv"


def test_files_must_match_the_first_good_files_columns(aws: Aws) -> None:
    put(aws.s3, "data/train/a.csv", csv_rows(4, features=3))
    put(aws.s3, "data/train/b.csv", csv_rows(4, features=2))
    selection = select(aws, RunRequest())
    assert [f.key for f in selection.accepted] == ["data/train/a.csv"]
    assert selection.rejected[0].reason == (
        "line 1 has 3 columns, expected 4 (as in data/train/a.csv)"
    )


def test_with_a_known_champion_every_file_must_fit_it(aws: Aws) -> None:
    put(aws.s3, "data/train/a.csv", csv_rows(4, features=2))
    put(aws.s3, "data/train/b.csv", csv_rows(4, features=3))
    selection = select(aws, RunRequest(), champion_features=3)
    assert [f.key for f in selection.accepted] == ["data/train/b.csv"]
    assert "expected 4 (the champion's 3 features + label)" in selection.rejected[0].reason


def test_an_oversized_or_empty_file_is_refused_without_reading_it(aws: Aws) -> None:
    put(aws.s3, "data/train/big.csv", csv_rows(200))
    put(aws.s3, "data/train/empty.csv", b"")
    selection = select(aws, RunRequest(), max_file_bytes=100)
    reasons = {r.key: r.reason for r in selection.rejected}
    assert "is over the limit of 100 bytes (MAX_FILE_MB)" in reasons["data/train/big.csv"]
    assert reasons["data/train/empty.csv"] == "empty file (0 bytes)"
    assert selection.accepted == ()


def test_named_objects_skip_deleted_and_superseded_versions(aws: Aws) -> None:
    # Given one key overwritten after its event, one deleted, and one unchanged
    old = put(aws.s3, "data/train/over.csv", csv_rows(2))
    put(aws.s3, "data/train/over.csv", csv_rows(3))
    gone = put(aws.s3, "data/train/gone.csv", csv_rows(2))
    aws.s3.delete_object(Bucket=BUCKET, Key="data/train/gone.csv")
    same = put(aws.s3, "data/train/same.csv", csv_rows(4))
    request = RunRequest(
        source="s3",
        objects=tuple(
            DataObject(o["key"], o["etag"], o["versionId"], o["size"]) for o in (old, gone, same)
        ),
    )
    # When the run for those events starts
    selection = select(aws, request)
    # Then only the unchanged object is read; the newer upload is left to its own run
    assert [f.key for f in selection.accepted] == ["data/train/same.csv"]
    assert {s.key: s.reason for s in selection.skipped} == {
        "data/train/gone.csv": "no longer exists (deleted before the run)",
        "data/train/over.csv": "superseded by a newer upload of the same key",
    }


def test_a_key_named_twice_in_one_run_is_trained_on_once(aws: Aws) -> None:
    # Given the events of two uploads of one key in one run
    first = put(aws.s3, "data/train/a.csv", csv_rows(2))
    second = put(aws.s3, "data/train/a.csv", csv_rows(3))
    request = RunRequest(
        objects=tuple(DataObject(o["key"], o["etag"], o["versionId"]) for o in (first, second))
    )
    # Then the run reads the current version once
    selection = select(aws, request)
    assert [(f.key, f.version_id, f.rows) for f in selection.accepted] == [
        ("data/train/a.csv", second["versionId"], 3)
    ]


def test_objects_outside_the_training_prefix_are_refused_in_place(aws: Aws) -> None:
    put(aws.s3, "data/test/holdout.csv", csv_rows(3))
    selection = select(aws, RunRequest(objects=(DataObject("data/test/holdout.csv"),)))
    assert selection.rejected[0].moved_to is None
    assert "not under data/train/" in selection.rejected[0].reason
    assert keys_under(aws.s3, "data/test/") == ["data/test/holdout.csv"]


@pytest.mark.parametrize(
    "key",
    ["data/train/a/../b.csv", "data/train/a//b.csv", "data/train/./b.csv", "data/train//b.csv"],
)
def test_a_key_that_is_no_clean_path_is_set_aside(aws: Aws, key: str) -> None:
    # Given a good file whose key the job could not read under its own name
    put(aws.s3, key, csv_rows(2))
    put(aws.s3, "data/train/good.csv", csv_rows(2))
    for request in (
        RunRequest(objects=(DataObject(key), DataObject("data/train/good.csv"))),
        RunRequest(),
    ):
        # When a run names it, or a run lists the prefix
        selection = select(aws, request)
        # Then it is refused and moved aside; the good file trains
        assert [f.key for f in selection.accepted] == ["data/train/good.csv"]
        (rejected,) = selection.rejected
        assert rejected.key == key
        assert "outside the expected layout" in rejected.reason
        assert rejected.moved_to == "data/rejected/" + key.removeprefix("data/train/")
        put(aws.s3, key, csv_rows(2))


def test_files_under_folders_starting_with_underscore_or_dot_are_not_data(aws: Aws) -> None:
    # Given Spark's temporary output and a hidden folder beside a good file
    put(aws.s3, "data/train/_temporary/0/part-0.csv", csv_rows(2))
    put(aws.s3, "data/train/.cache/a.csv", csv_rows(2))
    put(aws.s3, "data/train/good.csv", csv_rows(2))
    named = RunRequest(
        objects=tuple(
            DataObject(k) for k in ("data/train/_temporary/0/part-0.csv", "data/train/.cache/a.csv")
        )
    )
    # When a run lists the prefix, only the good file is trained on: the job skips the others
    listed = select(aws, RunRequest())
    assert [f.key for f in listed.accepted] == ["data/train/good.csv"]
    assert listed.rejected == ()
    # And a run that names them skips them, saying why
    selection = select(aws, named)
    assert selection.accepted == selection.rejected == ()
    assert {s.reason for s in selection.skipped} == {datasets.IGNORED_REASON}


def test_labels_must_suit_the_stacks_objective(aws: Aws) -> None:
    put(aws.s3, "data/train/a.csv", b"0,1\n1,2\n")
    put(aws.s3, "data/train/b.csv", b"0,1\n2,2\n")
    selection = select(aws, RunRequest(), objective="binary:logistic")
    assert [f.key for f in selection.accepted] == ["data/train/a.csv"]
    assert selection.rejected[0].reason == (
        "line 2, column 1 (the label) is 2: labels must be 0 or 1 for binary:logistic"
    )


def test_a_key_too_long_for_refits_copies_is_set_aside(aws: Aws) -> None:
    long_key = "data/train/" + "x" * 950 + ".csv"
    put(aws.s3, long_key, csv_rows(2))
    put(aws.s3, "data/train/good.csv", csv_rows(2))
    selection = select(aws, RunRequest())
    assert [f.key for f in selection.accepted] == ["data/train/good.csv"]
    (rejected,) = selection.rejected
    assert "the limit is 900" in rejected.reason
    # Moved under a key that fits (data/rejected/ is 3 bytes longer than data/train/)
    assert rejected.moved_to == "data/rejected/" + "x" * 950 + ".csv"


def test_an_archived_object_is_refused_in_place_and_the_rest_trains(aws: Aws) -> None:
    # Given a file in GLACIER among good files (GetObject would fail: InvalidObjectState)
    aws.s3.put_object(
        Bucket=BUCKET, Key="data/train/old.csv", Body=csv_rows(2), StorageClass="GLACIER"
    )
    put(aws.s3, "data/train/good.csv", csv_rows(2))
    for request in (RunRequest(), RunRequest(objects=(DataObject("data/train/old.csv"),))):
        selection = select(aws, request)
        (rejected,) = selection.rejected
        assert rejected.key == "data/train/old.csv"
        assert rejected.reason.startswith("stored in GLACIER: restore it")
        assert rejected.moved_to is None
    assert "data/train/old.csv" in keys_under(aws.s3, "data/train/")
    assert [f.key for f in select(aws, RunRequest()).accepted] == ["data/train/good.csv"]


@pytest.mark.parametrize(
    ("operation", "fault", "reason"),
    [
        (
            "GetObject",
            ("AccessDenied", "User is not authorized to perform: kms:Decrypt", 403),
            "S3 refused to read it: AccessDenied (User is not authorized to perform: kms:Decrypt)",
        ),
        (
            "GetObject",
            ("InvalidRequest", "The object was stored using a form of Server Side Encryption", 400),
            "S3 refused to read it: InvalidRequest (The object was stored using a form",
        ),
        (
            "HeadObject",
            ("403", "Forbidden", 403),
            "S3 refused to read it: 403 (Forbidden: refit may not read it, or may not use its KMS",
        ),
        (
            "HeadObject",
            ("400", "Bad Request", 400),
            "S3 refused to read it: 400 (Bad Request: HeadObject's answer for an object encrypted "
            "with a customer-provided key (SSE-C)",
        ),
    ],
)
def test_an_object_s3_will_not_hand_over_is_refused_alone(
    aws: Aws, operation: str, fault: tuple[str, str, int], reason: str
) -> None:
    # Given three uploads of one delivery, one of which S3 will not give refit
    keys = ["data/train/a.csv", "data/train/locked.csv", "data/train/z.csv"]
    for key in keys:
        put(aws.s3, key, csv_rows(2))
    s3 = FaultyS3(aws.s3, {(operation, "data/train/locked.csv"): fault})
    request = RunRequest(source="s3", objects=tuple(DataObject(k) for k in keys))
    # When the run for that delivery checks them
    selection = select(aws, request, s3=s3)
    # Then the other two train, and the locked one is refused where it is, with S3's reason
    assert [f.key for f in selection.accepted] == ["data/train/a.csv", "data/train/z.csv"]
    (rejected,) = selection.rejected
    assert rejected.key == "data/train/locked.csv"
    assert rejected.reason.startswith(reason)
    assert rejected.moved_to is None
    assert "data/train/locked.csv" in keys_under(aws.s3, "data/train/")


def test_s3_trouble_that_is_not_the_objects_fails_the_step_for_a_retry(aws: Aws) -> None:
    put(aws.s3, "data/train/a.csv", csv_rows(2))
    s3 = FaultyS3(aws.s3, {("GetObject", "data/train/a.csv"): ("SlowDown", "Reduce", 503)})
    with pytest.raises(ClientError, match="SlowDown"):
        select(aws, RunRequest(), s3=s3)


def test_a_version_s3_will_not_copy_is_skipped_with_its_reason(aws: Aws) -> None:
    for key in ("data/train/a.csv", "data/train/b.csv"):
        put(aws.s3, key, csv_rows(2))
    selection = select(aws, RunRequest())
    denied = ("AccessDenied", "Access Denied", 403)
    s3 = FaultyS3(aws.s3, {("CopyObject", "data/train/b.csv"): denied})
    pinned = datasets.pin_accepted(s3, BUCKET, "run-1", selection)  # type: ignore[arg-type]
    assert [f.key for f in pinned.accepted] == ["data/train/a.csv"]
    assert [(s.key, s.reason) for s in pinned.skipped] == [
        ("data/train/b.csv", "not pinned: S3 refused to read it: AccessDenied (Access Denied)")
    ]


def test_a_url_encoded_key_finds_its_object(aws: Aws) -> None:
    put(aws.s3, "data/train/my file.csv", csv_rows(2))
    selection = select(aws, RunRequest(objects=(DataObject("data/train/my+file.csv"),)))
    assert [f.key for f in selection.accepted] == ["data/train/my file.csv"]


# --- other prefixes and manifests ---------------------------------------------------------------


def test_test_data_is_required(aws: Aws) -> None:
    # Given only a marker under data/test/
    put(aws.s3, "data/test/_SUCCESS", b"")
    # Then the run cannot compare models, and says what to do
    with pytest.raises(NoTestData, match="upload a held-out CSV there"):
        datasets.require_test_data(aws.s3, BUCKET)
    # Once a CSV is there, it passes
    put(aws.s3, "data/test/holdout.csv", csv_rows(3))
    datasets.require_test_data(aws.s3, BUCKET)


def test_has_objects_ignores_markers_and_other_files_when_asked(aws: Aws) -> None:
    put(aws.s3, "batch/input/_SUCCESS", b"x")
    assert not datasets.has_objects(aws.s3, BUCKET, "batch/input/")
    put(aws.s3, "batch/input/records.json", b"{}")
    assert datasets.has_objects(aws.s3, BUCKET, "batch/input/")
    assert not datasets.has_objects(aws.s3, BUCKET, "batch/input/", data_only=True)


def test_manifests_list_the_pinned_files_for_sagemaker_and_everything_for_people(
    aws: Aws,
) -> None:
    # Given a run with one good and one bad file
    good = put(aws.s3, "data/train/2026/a.csv", csv_rows(3))
    put(aws.s3, "data/train/b.csv", b"header,row\n")
    request = RunRequest()
    selection = datasets.pin_accepted(aws.s3, BUCKET, "run-1", select(aws, request))
    # When the manifests are written
    manifests = datasets.write_manifests(
        aws.s3, BUCKET, "run-1", request, selection, "2026-11-28T00:00:00Z"
    )
    # Then SageMaker's manifest names exactly the pinned copy of the accepted object
    assert manifests.train_manifest_uri == f"s3://{BUCKET}/runs/run-1/train.manifest"
    train = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key="runs/run-1/train.manifest")["Body"].read()
    )
    assert train == [{"prefix": f"s3://{BUCKET}/"}, "runs/run-1/data/2026/a.csv"]
    # And the run manifest records each accepted version, its rows and its pinned copy
    manifest = json.loads(
        aws.s3.get_object(Bucket=BUCKET, Key="runs/run-1/manifest.json")["Body"].read()
    )
    assert manifest["rows"] == 3
    assert manifest["accepted"] == [
        {
            "key": "data/train/2026/a.csv",
            "versionId": good["versionId"],
            "etag": good["etag"],
            "size": good["size"],
            "rows": 3,
            "columns": 4,
            "pinnedUri": f"s3://{BUCKET}/runs/run-1/data/2026/a.csv",
            "pinnedBy": None,
        }
    ]
    assert manifest["rejected"][0]["movedTo"] == "data/rejected/b.csv"


def test_manifests_refuse_unpinned_files(aws: Aws) -> None:
    # The job must never be pointed at live keys
    put(aws.s3, "data/train/a.csv", csv_rows(3))
    with pytest.raises(ValueError, match="must be pinned"):
        datasets.write_manifests(
            aws.s3, BUCKET, "run-1", RunRequest(), select(aws, RunRequest()), "2026-11-28T00:00:00Z"
        )
