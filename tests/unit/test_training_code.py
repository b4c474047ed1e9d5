from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import pytest

from refit import layout
from refit.prepare_run.training_code import (
    TrainingCodeMissing,
    build_sourcedir,
    publish_training_code,
)
from tests.unit.builders import write_training_code
from tests.unit.moto_stack import BUCKET, Aws


def members(archive: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return tar.getmembers()


def test_the_archive_holds_the_top_level_python_files_with_no_time_or_owner(
    tmp_path: Path,
) -> None:
    # Given training code plus things that must not ship
    code = write_training_code(tmp_path / "training")
    (code / "requirements.txt").write_text("xgboost\n")
    (code / "tests").mkdir()
    (code / "tests" / "test_train.py").write_text("")
    # When the sourcedir is built
    source = build_sourcedir(code)
    # Then it holds only the top-level .py files, sorted, with zeroed times and owners
    found = members(source.archive)
    assert [m.name for m in found] == sorted(layout.TRAINING_MODULES)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in found} == {(0, 0, 0, "", 0o644)}
    assert source.key == f"code/sourcedir-{source.digest[:16]}.tar.gz"


def test_the_same_code_gives_the_same_bytes_whenever_it_is_built(tmp_path: Path) -> None:
    # Given the same files copied at another time into another directory
    first = build_sourcedir(write_training_code(tmp_path / "a"))
    later = write_training_code(tmp_path / "b")
    os.utime(later / "train.py", (1_900_000_000, 1_900_000_000))
    # Then the archive and its key are identical
    second = build_sourcedir(later)
    assert second.archive == first.archive
    assert second.key == first.key


def test_changed_code_gets_a_new_key(tmp_path: Path) -> None:
    code = write_training_code(tmp_path / "training")
    before = build_sourcedir(code)
    (code / "train.py").write_text("print('train better')\n")
    assert build_sourcedir(code).key != before.key


@pytest.mark.parametrize("missing", layout.TRAINING_MODULES)
def test_missing_entry_points_fail_clearly(tmp_path: Path, missing: str) -> None:
    code = write_training_code(tmp_path / "training")
    (code / missing).unlink()
    expected = rf"{re.escape(missing)} not found in .*TRAINING_CODE_DIR"
    with pytest.raises(TrainingCodeMissing, match=expected):
        build_sourcedir(code)


def test_an_absent_directory_fails_clearly(tmp_path: Path) -> None:
    expected = re.escape(", ".join(layout.TRAINING_MODULES)) + " not found"
    with pytest.raises(TrainingCodeMissing, match=expected):
        build_sourcedir(tmp_path / "nowhere")


def test_the_code_is_uploaded_once_per_content(aws: Aws, tmp_path: Path) -> None:
    # Given training code
    code = write_training_code(tmp_path / "training")
    # When two runs publish it
    first = publish_training_code(aws.s3, BUCKET, code)
    second = publish_training_code(aws.s3, BUCKET, code)
    # Then both name the same object, written once (one version in the versioned bucket)
    assert first == second
    key = first.removeprefix(f"s3://{BUCKET}/")
    versions = aws.s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert len(versions) == 1
    uploaded = aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert [m.name for m in members(uploaded)] == sorted(layout.TRAINING_MODULES)


def test_code_someone_else_wrote_under_refits_key_is_replaced_not_run(
    aws: Aws, tmp_path: Path
) -> None:
    # Given refit's published code, then another principal's object under the same key
    code = write_training_code(tmp_path / "training")
    uri = publish_training_code(aws.s3, BUCKET, code)
    key = uri.removeprefix(f"s3://{BUCKET}/")
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=b"import os; os.system('exfiltrate')")
    # When the next run publishes its code
    assert publish_training_code(aws.s3, BUCKET, code) == uri
    # Then the key holds refit's archive again, not the stranger's bytes
    restored = aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert restored == build_sourcedir(code).archive
