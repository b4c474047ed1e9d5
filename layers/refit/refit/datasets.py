"""What a run trains on: list the data, check every file, set bad files aside, write manifests.

Each file is streamed once (bounded memory: one line of at most ``MAX_LINE_BYTES`` at a time)
and must be what ``training/train.py`` reads: headerless UTF-8 CSV, the label (a finite number)
in column 1, then numeric features (empty or ``nan`` = missing), one column count for the whole
run (the champion's feature count + 1 when known). A file that fails is *moved*
to ``data/rejected/<same relative path>`` with the reason in its metadata and in a
``.reason.json`` sidecar, so it cannot poison this run or the next ``prefix`` run, and the user
sees at once what to fix. The bucket is versioned, so the move only removes the exact version
that was checked (a newer upload of the same key stays live) and the bytes live on at the
rejected key.

Every accepted version is then *pinned*: copied server-side, by version id and checked ETag, to
``runs/<runId>/data/<path relative to data/train/>``, which nothing writes after PrepareRun. The
job reads those copies, not the keys: a file deleted after PrepareRun still trains (its validated
version), an overwrite in that window cannot slip unvalidated bytes into the run, however long a
spot job waits for capacity. The copy is byte for byte (a single-part object keeps its ETag):
CRLF files are accepted and not rewritten, because ``training/train.py`` reads with universal
newlines, so normalising would only turn a server-side copy into a download and upload.

The run manifest (``runs/<runId>/manifest.json``) lists what was accepted (key, versionId, etag,
size, rows, columns, pinnedUri), rejected and skipped; ``runs/<runId>/train.manifest`` is the
SageMaker ManifestFile of the pinned copies. A run that lists data (a manual or full retrain)
reuses, for each current object already in the cumulative manifest (``refit.trained_data``)
with the same ETag, that entry's pinned copy and row count instead of reading it again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

from refit import layout
from refit.run_input import DataObject, RunRequest
from refit.trained_data import TrainedVersion

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

logger = Logger(child=True)

MAX_LINE_BYTES = 1024 * 1024
_READ_CHUNK_BYTES = 1024 * 1024
# copy_object's limit; a bigger rejected file stays where it is (still refused by every run).
_COPY_MAX_BYTES = 5 * 1024**3
_REASON_MAX_CHARS = 1024
_GONE_CODES = ("404", "NoSuchKey", "NoSuchVersion")
# The pinned version no longer has the checked ETag (only possible without a version id).
_CHANGED_CODES = ("412", "PreconditionFailed")
# Parallel server-side copies when pinning: each is one small request, S3 does the work.
PIN_WORKERS = 16


class NoTestData(RuntimeError):
    """No held-out test set: challenger and champion could not be compared."""


class InvalidDataFile(ValueError):
    """A data file breaks the CSV contract; the message says where and why."""


@dataclass(frozen=True)
class CsvShape:
    rows: int
    columns: int


@dataclass(frozen=True)
class ExpectedColumns:
    """The column count a file must have, and where that number comes from (for the message)."""

    count: int
    because: str

    @classmethod
    def of_champion(cls, feature_count: int) -> ExpectedColumns:
        return cls(feature_count + 1, f"the champion's {feature_count} features + label")


@dataclass(frozen=True)
class DataFile:
    key: str
    etag: str | None
    version_id: str | None
    size: int
    rows: int
    columns: int
    # runs/<run>/data/...: the copy the job reads (None until pinned).
    pinned_key: str | None = None
    # The earlier run whose pinned copy this run reuses (None: pinned by this run).
    pinned_by: str | None = None

    def to_dict(self, bucket: str) -> dict[str, Any]:
        return {
            "key": self.key,
            "etag": self.etag,
            "versionId": self.version_id,
            "size": self.size,
            "rows": self.rows,
            "columns": self.columns,
            "pinnedUri": f"s3://{bucket}/{self.pinned_key}" if self.pinned_key else None,
            "pinnedBy": self.pinned_by,
        }

    def data_object(self) -> DataObject:
        """The object version this file is, as the trigger and the intake ledger name it."""
        return DataObject(key=self.key, etag=self.etag, version_id=self.version_id, size=self.size)

    @classmethod
    def reused(cls, trained: TrainedVersion) -> DataFile:
        """A version an earlier run validated, pinned and trained on, as its entry records it."""
        return cls(
            key=trained.key,
            etag=trained.etag,
            version_id=trained.version_id,
            size=trained.size,
            rows=trained.rows,
            columns=trained.columns,
            pinned_key=trained.pinned_key,
            pinned_by=trained.run_id,
        )


@dataclass(frozen=True)
class RejectedFile:
    key: str
    reason: str
    moved_to: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "reason": self.reason, "movedTo": self.moved_to}


@dataclass(frozen=True)
class SkippedObject:
    """Named by the request but not read: deleted, superseded, or a marker file."""

    key: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "reason": self.reason}


@dataclass(frozen=True)
class DataSelection:
    accepted: tuple[DataFile, ...]
    rejected: tuple[RejectedFile, ...]
    skipped: tuple[SkippedObject, ...]
    # Listed files left out because they trained before the data window (a detected drift).
    outside_window: int = 0

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.accepted)

    @property
    def columns(self) -> int | None:
        return self.accepted[0].columns if self.accepted else None


@dataclass(frozen=True)
class RunManifests:
    manifest_uri: str
    train_manifest_uri: str


@dataclass(frozen=True)
class _Candidate:
    key: str
    etag: str | None
    version_id: str | None
    size: int
    # The cumulative manifest's entry when this is a version already trained on.
    trained: TrainedVersion | None = None


# --- the CSV contract ---------------------------------------------------------------------------


def inspect_csv(chunks: Iterable[bytes], expected: ExpectedColumns | None = None) -> CsvShape:
    """Check a whole file, chunk by chunk; raise :class:`InvalidDataFile` at the first problem."""
    columns = expected.count if expected else None
    rows = 0
    for number, raw in enumerate(_lines(chunks), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidDataFile(f"line {number} is not UTF-8 text") from None
        if number == 1:
            text = text.removeprefix("\ufeff")  # spreadsheet exports often start with a BOM
        if not text.strip():
            continue  # blank lines (a trailing newline, CRLF leftovers) carry no row
        fields = text.rstrip("\r").split(",")
        if rows == 0 and fields[0].strip() and _number(fields[0]) is None:
            raise InvalidDataFile(
                f"line {number} looks like a header row ({text[:80]!r}): refit expects CSV "
                "without a header, the label in column 1 and numeric features after it"
            )
        if columns is None:
            if len(fields) < 2:
                raise InvalidDataFile(
                    f"line {number} has 1 column: expected the label, then at least one feature"
                )
            columns = len(fields)
        elif len(fields) != columns:
            because = expected.because if expected else "as on the lines before it"
            raise InvalidDataFile(
                f"line {number} has {len(fields)} columns, expected {columns} ({because})"
            )
        _check_row(number, fields)
        rows += 1
    if rows == 0:
        raise InvalidDataFile("no data rows (the file is empty)")
    assert columns is not None
    return CsvShape(rows=rows, columns=columns)


def _check_row(number: int, fields: list[str]) -> None:
    label = _number(fields[0])
    if label is None or not math.isfinite(label):
        raise InvalidDataFile(
            f"line {number}, column 1 (the label) is {fields[0]!r}: every row needs a numeric label"
        )
    for column, field in enumerate(fields[1:], start=2):
        if not field.strip():
            continue  # a missing value, as training/train.py reads it (NaN)
        value = _number(field)
        if value is None:
            raise InvalidDataFile(f"line {number}, column {column}: {field[:40]!r} is not a number")
        if math.isinf(value):
            raise InvalidDataFile(
                f"line {number}, column {column} is infinite (write nan or leave it empty "
                "for a missing value)"
            )


def _number(field: str) -> float | None:
    # float() also takes "1_000"; CSV readers (numpy, pandas, XGBoost) do not.
    if "_" in field:
        return None
    try:
        return float(field)
    except ValueError:
        return None


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a byte stream into lines without ever holding more than one long line."""
    pending = b""
    count = 0
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        count += len(complete)
        yield from complete
        if len(pending) > MAX_LINE_BYTES:
            raise InvalidDataFile(
                f"line {count + 1} is longer than {MAX_LINE_BYTES // 1024} KiB: not a CSV file?"
            )
    if pending:
        yield pending


# --- selecting and checking the run's files -----------------------------------------------------


def select_data(
    s3: S3Client,
    bucket: str,
    request: RunRequest,
    *,
    run_id: str,
    max_file_bytes: int,
    champion_features: int | None,
    trained: Mapping[str, TrainedVersion] | None = None,
    since: str | None = None,
) -> DataSelection:
    """Check every file the request covers; move the bad ones to ``data/rejected/``.

    All files of a run must have one column count: the champion's feature count + 1 when it is
    known (a warm start needs that layout), else that of the first good file. A listing run
    takes a current object that ``trained`` (the cumulative manifest) holds with the same ETag
    and a fitting column count as it was trained before: its pinned copy, no re-read; with
    ``since`` (a data window, ``refit.run_records.DataWindow``) it leaves out what ``trained``
    holds from before then, unchanged since: the data of a relationship a drift replaced.
    """
    expected = (
        ExpectedColumns.of_champion(champion_features) if champion_features is not None else None
    )
    candidates, skipped = (
        _named_objects(s3, bucket, request)
        if request.objects
        else _listed(s3, bucket, request, trained or {})
    )
    outside = sum(1 for c in candidates if _before(c.trained, since))
    candidates = [c for c in candidates if not _before(c.trained, since)]
    accepted: list[DataFile] = []
    rejected: list[RejectedFile] = []
    for candidate in candidates:
        if candidate.trained is not None and (
            expected is None or candidate.trained.columns == expected.count
        ):
            accepted.append(DataFile.reused(candidate.trained))
            expected = expected or ExpectedColumns(
                candidate.trained.columns, f"as in {candidate.key}"
            )
            continue
        try:
            checked = _check(s3, bucket, candidate, max_file_bytes, expected)
        except InvalidDataFile as problem:
            rejected.append(_reject(s3, bucket, candidate, str(problem), run_id))
            continue
        if checked is None:
            skipped.append(SkippedObject(candidate.key, "deleted while the run was starting"))
            continue
        accepted.append(checked)
        expected = expected or ExpectedColumns(checked.columns, f"as in {checked.key}")
    logger.info(
        "data selected",
        extra={
            "accepted": len(accepted),
            "rejected": len(rejected),
            "skipped": len(skipped),
            "outsideWindow": outside,
        },
    )
    return DataSelection(tuple(accepted), tuple(rejected), tuple(skipped), outside)


def _before(trained: TrainedVersion | None, since: str | None) -> bool:
    # Parsed, not compared as text: the two times are written at different precisions.
    if trained is None or since is None:
        return False
    return _instant(trained.trained_at) < _instant(since)


def _instant(timestamp: str) -> datetime:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _named_objects(
    s3: S3Client, bucket: str, request: RunRequest
) -> tuple[list[_Candidate], list[SkippedObject]]:
    """The current version of each named key, unless it was deleted or overwritten since."""
    wanted: dict[str, list[tuple[str | None, str | None]]] = {}
    for obj in request.objects:
        wanted.setdefault(obj.key, []).append((obj.version_id, _bare(obj.etag)))
    candidates: list[_Candidate] = []
    skipped: list[SkippedObject] = []
    for key in sorted(wanted):
        if _ignored(key):
            skipped.append(SkippedObject(key, "marker file (name starts with _ or .)"))
            continue
        if not key.startswith(layout.TRAIN_PREFIX):
            # Not ours to move: refuse it in place.
            candidates.append(_Candidate(key, None, None, 0))
            continue
        current = _head(s3, bucket, key)
        if current is None and unquote_plus(key) != key:
            # Should an event ever carry a URL-encoded key, the decoded form is the object.
            current = _head(s3, bucket, unquote_plus(key))
        if current is None:
            skipped.append(SkippedObject(key, "no longer exists (deleted before the run)"))
        elif not any(_is_version(current, v, e) for v, e in wanted[key]):
            # Its own event starts (or started) the run for the newer upload: training on it
            # here as well would count those rows twice.
            skipped.append(SkippedObject(key, "superseded by a newer upload of the same key"))
        elif current.key in (c.key for c in candidates):
            skipped.append(SkippedObject(key, f"same object as {current.key}"))
        else:
            candidates.append(current)
    return candidates, skipped


def _listed(
    s3: S3Client, bucket: str, request: RunRequest, trained: Mapping[str, TrainedVersion]
) -> tuple[list[_Candidate], list[SkippedObject]]:
    candidates: list[_Candidate] = []
    for item in _list(s3, bucket, request.data_prefix):
        key = item["Key"]
        if key.endswith("/") or _ignored(key):
            continue
        etag = _bare(item.get("ETag"))
        known = trained.get(key)
        # Same key and ETag: the bytes that were trained on (a listing has no version ids; an
        # ETag that differs only costs a re-read).
        reuse = known if known is not None and known.same_object(None, etag) else None
        candidates.append(_Candidate(key, etag, None, item.get("Size", 0), reuse))
    return candidates, []


def _check(
    s3: S3Client,
    bucket: str,
    candidate: _Candidate,
    max_file_bytes: int,
    expected: ExpectedColumns | None,
) -> DataFile | None:
    """The checked file, None if it vanished, or :class:`InvalidDataFile` (nothing read)."""
    if not candidate.key.startswith(layout.TRAIN_PREFIX):
        raise InvalidDataFile(f"not under {layout.TRAIN_PREFIX}: refit trains only on that prefix")
    segments = candidate.key[len(layout.TRAIN_PREFIX) :].split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        # S3 keys are opaque, file paths are not: the job would read such a key under another
        # name (a//b.csv is a/b.csv) or outside its channel (..), or fail and take the run down.
        raise InvalidDataFile(
            f"outside the expected layout {layout.TRAIN_PREFIX}[folder/...]<name>: the key has "
            "an empty, '.' or '..' path segment"
        )
    if not candidate.key.lower().endswith(layout.DATA_EXTENSIONS):
        raise InvalidDataFile(
            f"unsupported file type: data files must end with {', '.join(layout.DATA_EXTENSIONS)}"
        )
    if candidate.size == 0:
        raise InvalidDataFile("empty file (0 bytes)")
    if candidate.size > max_file_bytes:
        raise InvalidDataFile(
            f"{candidate.size} bytes is over the limit of {max_file_bytes} bytes (MAX_FILE_MB)"
        )
    arguments: dict[str, Any] = {"Bucket": bucket, "Key": candidate.key}
    if candidate.version_id:
        arguments["VersionId"] = candidate.version_id
    try:
        response = s3.get_object(**arguments)
    except s3.exceptions.ClientError as error:
        if _gone(error):
            return None
        raise
    body = response["Body"]
    try:
        shape = inspect_csv(body.iter_chunks(_READ_CHUNK_BYTES), expected)
    finally:
        body.close()
    return DataFile(
        key=candidate.key,
        etag=_bare(response.get("ETag")),
        version_id=_version(response.get("VersionId")),
        size=candidate.size,
        rows=shape.rows,
        columns=shape.columns,
    )


def _reject(
    s3: S3Client, bucket: str, candidate: _Candidate, reason: str, run_id: str
) -> RejectedFile:
    """Move a refused file out of ``data/train/``, keeping the reason beside it."""
    logger.warning("rejected data file", extra={"key": candidate.key, "reason": reason})
    if not candidate.key.startswith(layout.TRAIN_PREFIX):
        return RejectedFile(candidate.key, reason, None)
    if candidate.size > _COPY_MAX_BYTES:
        return RejectedFile(candidate.key, f"{reason}; too large to move, left in place", None)
    version = candidate.version_id
    if version is None:
        current = _head(s3, bucket, candidate.key)
        if current is None:
            return RejectedFile(candidate.key, reason, None)
        version = current.version_id
    target = layout.REJECTED_PREFIX + candidate.key[len(layout.TRAIN_PREFIX) :]
    source: CopySourceTypeDef = {"Bucket": bucket, "Key": candidate.key}
    if version:
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
        if _gone(error):  # another run moved it first
            return RejectedFile(candidate.key, reason, None)
        raise
    sidecar = {
        "key": candidate.key,
        "versionId": version,
        "etag": candidate.etag,
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
    if version:
        # Deleting this exact version: a newer upload of the same key stays live.
        s3.delete_object(Bucket=bucket, Key=candidate.key, VersionId=version)
    else:
        s3.delete_object(Bucket=bucket, Key=candidate.key)
    return RejectedFile(candidate.key, reason, target)


# --- other prefixes and the manifests -----------------------------------------------------------


def require_test_data(s3: S3Client, bucket: str) -> None:
    if not has_objects(s3, bucket, layout.TEST_PREFIX, data_only=True):
        raise NoTestData(
            f"no test data under {layout.TEST_PREFIX}: upload a held-out CSV there "
            "(same columns as the training data, label in column 1, no header)"
        )


def has_objects(s3: S3Client, bucket: str, prefix: str, *, data_only: bool = False) -> bool:
    """Whether a prefix holds a non-empty object (a data file, with ``data_only``)."""
    for item in _list(s3, bucket, prefix):
        key = item["Key"]
        if key.endswith("/") or _ignored(key) or not item.get("Size"):
            continue
        if not data_only or key.lower().endswith(layout.DATA_EXTENSIONS):
            return True
    return False


def pin_accepted(s3: S3Client, bucket: str, run_id: str, selection: DataSelection) -> DataSelection:
    """Copy each accepted version to ``runs/<run>/data/``, server-side, in parallel.

    The copy names the version id PrepareRun read and requires the ETag it checked, so the pin is
    exactly the validated bytes even if the key was overwritten or deleted meanwhile (in a
    versioned bucket a delete only adds a delete marker). A version that is gone for good (or,
    without versioning, changed) is skipped: nothing unvalidated is ever trained on. Versions
    reused from the cumulative manifest are pinned already.
    """
    to_pin = [f for f in selection.accepted if f.pinned_key is None]
    if not to_pin:
        return selection
    with ThreadPoolExecutor(max_workers=min(PIN_WORKERS, len(to_pin))) as pool:
        pinned = dict(
            zip(to_pin, pool.map(lambda f: _pin(s3, bucket, run_id, f), to_pin), strict=True)
        )
    accepted: list[DataFile] = []
    skipped = list(selection.skipped)
    for data_file in selection.accepted:
        outcome = pinned.get(data_file, data_file)
        if isinstance(outcome, SkippedObject):
            skipped.append(outcome)
        else:
            accepted.append(outcome)
    logger.info("data pinned", extra={"pinned": len(to_pin), "reused": len(accepted) - len(to_pin)})
    return replace(selection, accepted=tuple(accepted), skipped=tuple(skipped))


def _pin(s3: S3Client, bucket: str, run_id: str, data_file: DataFile) -> DataFile | SkippedObject:
    target = layout.pinned_data_key(run_id, data_file.key)
    source: CopySourceTypeDef = {"Bucket": bucket, "Key": data_file.key}
    if data_file.version_id:
        source["VersionId"] = data_file.version_id
    arguments: dict[str, Any] = {"Bucket": bucket, "Key": target, "CopySource": source}
    if data_file.etag:
        arguments["CopySourceIfMatch"] = f'"{data_file.etag}"'
    try:
        s3.copy_object(**arguments)
    except s3.exceptions.ClientError as error:
        code = str(getattr(error, "response", {}).get("Error", {}).get("Code"))
        if _gone(error) or code in _CHANGED_CODES:
            logger.warning("validated version gone before pinning", extra={"key": data_file.key})
            return SkippedObject(
                data_file.key, "the validated version vanished before it was pinned"
            )
        raise
    return replace(data_file, pinned_key=target)


def write_manifests(
    s3: S3Client,
    bucket: str,
    run_id: str,
    request: RunRequest,
    selection: DataSelection,
    created_at: str,
) -> RunManifests:
    base = layout.run_prefix(run_id)
    unpinned = [f.key for f in selection.accepted if f.pinned_key is None]
    if unpinned:
        raise ValueError(f"accepted files must be pinned before the manifests: {unpinned[:3]}")
    manifest = {
        "runId": run_id,
        "createdAt": created_at,
        "bucket": bucket,
        "request": request.summary(),
        "rows": selection.rows,
        "accepted": [f.to_dict(bucket) for f in selection.accepted],
        "rejected": [f.to_dict() for f in selection.rejected],
        "skipped": [s.to_dict() for s in selection.skipped],
    }
    s3.put_object(
        Bucket=bucket,
        Key=f"{base}manifest.json",
        Body=json.dumps(manifest, indent=1).encode(),
        ContentType="application/json",
    )
    # SageMaker's ManifestFile: a prefix, then keys relative to it: the pinned copies, never the
    # live keys. Written even when empty so the plan never names a missing object; a run with
    # nothing accepted does not train.
    train = [{"prefix": f"s3://{bucket}/"}, *(str(f.pinned_key) for f in selection.accepted)]
    s3.put_object(
        Bucket=bucket,
        Key=f"{base}train.manifest",
        Body=json.dumps(train).encode(),
        ContentType="application/json",
    )
    return RunManifests(
        manifest_uri=f"s3://{bucket}/{base}manifest.json",
        train_manifest_uri=f"s3://{bucket}/{base}train.manifest",
    )


# --- small S3 helpers ---------------------------------------------------------------------------


def _list(s3: S3Client, bucket: str, prefix: str) -> Iterator[Any]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _head(s3: S3Client, bucket: str, key: str) -> _Candidate | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as error:
        if _gone(error):
            return None
        raise
    return _Candidate(
        key, _bare(head.get("ETag")), _version(head.get("VersionId")), head["ContentLength"]
    )


def _is_version(current: _Candidate, version_id: str | None, etag: str | None) -> bool:
    """Whether the current object is the version a request named (no pin = any version)."""
    if version_id and current.version_id:
        return version_id == current.version_id
    if etag and current.etag:
        return etag == current.etag
    return True


def _gone(error: Exception) -> bool:
    response = getattr(error, "response", {})
    return str(response.get("Error", {}).get("Code")) in _GONE_CODES


def _ignored(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith(layout.IGNORED_NAME_PREFIXES)


def _bare(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _version(version_id: str | None) -> str | None:
    return None if version_id in (None, "", "null") else version_id


def _header_safe(reason: str) -> str:
    # S3 user metadata travels in HTTP headers: ASCII only, and the whole set is limited to 2 KB.
    return reason.encode("unicode_escape").decode("ascii")[:_REASON_MAX_CHARS]
