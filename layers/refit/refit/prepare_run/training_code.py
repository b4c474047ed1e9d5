"""Ship ``training/`` to SageMaker as a content-addressed ``sourcedir.tar.gz``.

Script mode downloads ``sagemaker_submit_directory`` into the container and runs
``sagemaker_program`` from it (training) or imports ``SAGEMAKER_PROGRAM`` (serving). The archive
is rebuilt byte-for-byte the same from the same files (sorted names, zero times and owners), and
its key carries the hash of its content, so every deployment of the same code shares one object,
a run always names exactly the code it used, and an upload happens only when the code changed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from refit import layout

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = Logger(child=True)

# train.py imports its sibling modules (refit_data, refit_incremental, refit_scoring, ...): a
# layer without one of them would fail every job, so PrepareRun refuses it first.
REQUIRED_FILES = layout.TRAINING_MODULES


class TrainingCodeMissing(RuntimeError):
    """TRAINING_CODE_DIR does not hold the training code (is the TrainingCodeLayer attached?)."""


@dataclass(frozen=True)
class SourceDir:
    archive: bytes
    digest: str  # sha256 of the uncompressed tar: stable even if another zlib compresses it

    @property
    def key(self) -> str:
        return f"{layout.CODE_PREFIX}sourcedir-{self.digest[:16]}.tar.gz"


def build_sourcedir(code_dir: str | Path) -> SourceDir:
    """A deterministic tar.gz of the top-level ``*.py`` files of ``code_dir``."""
    directory = Path(code_dir)
    files = sorted(p for p in directory.glob("*.py") if p.is_file()) if directory.is_dir() else []
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise TrainingCodeMissing(
            f"{', '.join(missing)} not found in {directory} (TRAINING_CODE_DIR): "
            "the training code layer must provide " + ", ".join(REQUIRED_FILES)
        )
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(name=path.name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    raw = tar_bytes.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    return SourceDir(archive=compressed.getvalue(), digest=hashlib.sha256(raw).hexdigest())


def publish_training_code(s3: S3Client, bucket: str, code_dir: str | Path) -> str:
    """Upload the archive unless that exact content is already there; return its S3 URI.

    "Already there" is checked on the bytes, not the key: anyone allowed to write ``code/`` could
    have replaced the object, and a job runs whatever it holds with the SageMaker role. The
    archive is uploaded with S3's SHA-256 checksum, and reused only when S3 reports that same
    checksum; anything else is overwritten with refit's own archive.
    """
    source = build_sourcedir(code_dir)
    expected = base64.b64encode(hashlib.sha256(source.archive).digest()).decode()
    try:
        found = s3.head_object(Bucket=bucket, Key=source.key, ChecksumMode="ENABLED")
    except s3.exceptions.ClientError as error:
        if str(getattr(error, "response", {}).get("Error", {}).get("Code")) not in (
            "404",
            "NoSuchKey",
        ):
            raise
        found = None
    if found is not None and found.get("ChecksumSHA256") == expected:
        return f"s3://{bucket}/{source.key}"
    if found is not None:
        logger.warning(
            "training code object does not hold refit's archive: replaced",
            extra={"key": source.key, "checksum": found.get("ChecksumSHA256")},
        )
    s3.put_object(
        Bucket=bucket,
        Key=source.key,
        Body=source.archive,
        ContentType="application/gzip",
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=expected,  # S3 refuses the upload if the bytes arrive otherwise
    )
    logger.info("training code uploaded", extra={"key": source.key})
    return f"s3://{bucket}/{source.key}"
