from __future__ import annotations

import json

import pytest
from builders import csv_rows, keys_under, put
from moto_stack import BUCKET, Aws

from refit import datasets
from refit.datasets import CsvShape, ExpectedColumns, InvalidDataFile, NoTestData, inspect_csv
from refit.run_input import DataObject, RunRequest

MB = 1024 * 1024


def chunked(data: bytes, size: int = 3) -> list[bytes]:
    """Small chunks so that lines straddle chunk boundaries, as they do in a real stream."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def select(
    aws: Aws, request: RunRequest, max_file_bytes: int = MB, champion_features: int | None = None
) -> datasets.DataSelection:
    return datasets.select_data(
        aws.s3,
        BUCKET,
        request,
        run_id="run-1",
        max_file_bytes=max_file_bytes,
        champion_features=champion_features,
    )


# --- the CSV contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_headerless_numeric_csv_is_accepted_with_either_line_ending(newline: str) -> None:
    data = csv_rows(5, features=3, newline=newline)
    assert inspect_csv(chunked(data)) == CsvShape(rows=5, columns=4)


def test_bom_missing_values_and_blank_lines_are_fine() -> None:
    # Empty fields and nan are missing values, as training/train.py reads them
    data = "\ufeff1,2.5,nan\n  \n0,-1e-3,\n\n".encode()
    assert inspect_csv([data]) == CsvShape(rows=2, columns=3)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "no data rows"),
        (b"\n\n", "no data rows"),
        (b"price,sqft,rooms\n1,2,3\n", "line 1 looks like a header row"),
        (b"1,2,3\n1,2\n", "line 2 has 2 columns, expected 3 (as on the lines before it)"),
        (b"1,2,3\n1,2,x\n", "line 2, column 3: 'x' is not a number"),
        (b"1,2,3\n1,2,1_000\n", "line 2, column 3: '1_000' is not a number"),
        (b"1,2,3\n,2,3\n", "line 2, column 1 (the label) is ''"),
        (b"1,2,3\nnan,2,3\n", "line 2, column 1 (the label) is 'nan'"),
        (b"1,2,3\n1,inf,3\n", "line 2, column 2 is infinite"),
        (b"1\n2\n", "line 1 has 1 column: expected the label, then at least one feature"),
        (b"1,2,3\n1,\xff\xfe,3\n", "line 2 is not UTF-8 text"),
        (b'"1","2","3"\n', "line 1 looks like a header row"),
    ],
)
def test_broken_files_are_refused_with_the_place_of_the_problem(data: bytes, expected: str) -> None:
    with pytest.raises(InvalidDataFile) as raised:
        inspect_csv(chunked(data))
    assert expected in str(raised.value)


def test_the_champion_fixes_the_column_count() -> None:
    # Given a champion trained on 3 features (4 columns with the label)
    with pytest.raises(InvalidDataFile) as raised:
        inspect_csv([b"1,2,3\n"], ExpectedColumns.of_champion(3))
    # Then a file with 2 features is refused from its first line, saying why
    assert "line 1 has 3 columns, expected 4 (the champion's 3 features + label)" in str(
        raised.value
    )


def test_a_file_without_line_breaks_is_refused_without_holding_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(datasets, "MAX_LINE_BYTES", 64)
    with pytest.raises(InvalidDataFile, match="line 1 is longer than"):
        inspect_csv(chunked(b"1," * 1000, size=16))


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
