"""What a run trains on: list the data, check every file, set bad files aside, write manifests.

Each file is streamed once (bounded memory: one line at a time) through refit's data contract,
``training/refit_data.py``: the module ``train.py`` reads its channels with, loaded from the
training code this run uploads (``TRAINING_CODE_DIR``), so what is accepted here is what the job
reads. It is headerless ASCII CSV, the label in column 1 as the stack's objective needs it, then
numeric features within float32 (empty or ``nan`` = missing), one column count for the whole run
(the champion's feature count + 1 when known); the module's docstring has every rule. A file
that fails is *moved*
to ``data/rejected/<same relative path>`` with the reason in its metadata and in a
``.reason.json`` sidecar, so it cannot poison this run or the next ``prefix`` run, and the user
sees at once what to fix. An object refit may not read (access denied, a KMS key or SSE-C key
it lacks, an archived storage class) is refused in place with S3's reason: the rest of the
upload trains. The bucket is versioned, so the move only removes the exact version
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
reuses, for each current object already in the cumulative manifest (``refit.data.trained_data``)
with the same ETag, that entry's pinned copy and row count instead of reading it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import refit_data
from aws_lambda_powertools import Logger
from refit_data import ExpectedColumns, InvalidDataFile, LabelRule

from refit import layout
from refit.data.rejected import RejectedFile, gone, set_aside
from refit.data.trained_data import TrainedVersion
from refit.run_input import DataObject, RunRequest
from refit.timestamps import parse_utc

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

logger = Logger(child=True)

_READ_CHUNK_BYTES = 1024 * 1024
# copy_object's limit; a bigger rejected file stays where it is (still refused by every run).
_COPY_MAX_BYTES = 5 * 1024**3
# Errors worth a retry of the whole step (Lambda's, then Step Functions'): not the object's fault.
_TRANSIENT_CODES = ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "503")
_HEAD_STATUS_MEANING = {
    "400": "Bad Request: HeadObject's answer for an object encrypted with a customer-provided key "
    "(SSE-C), which refit does not have",
    "403": "Forbidden: refit may not read it, or may not use its KMS key",
}
# Storage classes whose objects must be restored before a GetObject (InvalidObjectState).
ARCHIVED_STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
# The pinned version no longer has the checked ETag (only possible without a version id).
_CHANGED_CODES = ("412", "PreconditionFailed")
# Parallel server-side copies when pinning: each is one small request, S3 does the work.
PIN_WORKERS = 16


class NoTestData(RuntimeError):
    """No held-out test set: challenger and champion could not be compared."""


class UnreadableObject(Exception):
    """S3 refused to hand refit an object (its permissions, encryption or storage class)."""


def champion_columns(feature_count: int) -> ExpectedColumns:
    return ExpectedColumns(feature_count + 1, f"the champion's {feature_count} features + label")


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
class SkippedObject:
    """Named by the request but not read: deleted, superseded, or a marker file."""

    key: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "reason": self.reason}


ACCEPTED, INVALID, UNREADABLE, GONE = "accepted", "invalid", "unreadable", "gone"


@dataclass(frozen=True)
class FileVerdict:
    """What a check of one object version found. ``etag``: the version as listed (a verdict
    holds for those bytes only); ``file``: the accepted file as read."""

    key: str
    etag: str | None
    outcome: str
    reason: str | None = None
    file: DataFile | None = None

    @classmethod
    def of(cls, checked: DataFile, listed_etag: str | None) -> FileVerdict:
        return cls(checked.key, listed_etag, ACCEPTED, file=checked)

    def data_file(self) -> DataFile:
        if self.file is None:
            raise ValueError(f"{self.key} was not accepted ({self.outcome})")
        return self.file

    def with_columns_of(self, expected: ExpectedColumns) -> FileVerdict:
        """Invalid when the run's column count, fixed after this file was checked, differs
        (the message is the contract's own, for line 1)."""
        columns = self.data_file().columns
        if columns == expected.count:
            return self
        reason = refit_data.column_count_problem(1, columns, expected.count, expected.because)
        return replace(self, outcome=INVALID, reason=reason, file=None)

    def to_dict(self) -> dict[str, Any]:
        checked = self.file
        return {
            "key": self.key,
            "etag": self.etag,
            "outcome": self.outcome,
            "reason": self.reason,
            "file": None
            if checked is None
            else {
                "etag": checked.etag,
                "versionId": checked.version_id,
                "size": checked.size,
                "rows": checked.rows,
                "columns": checked.columns,
            },
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> FileVerdict:
        key, checked = str(document["key"]), document.get("file")
        return cls(
            key,
            document.get("etag"),
            str(document["outcome"]),
            document.get("reason"),
            None
            if not checked
            else DataFile(
                key=key,
                etag=checked.get("etag"),
                version_id=checked.get("versionId"),
                size=int(checked["size"]),
                rows=int(checked["rows"]),
                columns=int(checked["columns"]),
            ),
        )


@dataclass(frozen=True)
class DataSelection:
    accepted: tuple[DataFile, ...]
    rejected: tuple[RejectedFile, ...]
    skipped: tuple[SkippedObject, ...]
    # Listed files left out because they trained before the data window (a detected drift).
    outside_window: int = 0
    # Rejected files still in data/train/: ``set_aside_rejected`` moves them once the run is
    # planned (nothing changes the bucket before every check is done).
    to_set_aside: tuple[tuple[Candidate, str], ...] = ()
    # Not checked: too many bytes for one PrepareRun (``fan_out_bytes``), for the CheckDataFiles
    # map (refit.data.file_checks). Nothing else in the selection is meaningful then.
    to_check: tuple[Candidate, ...] = ()

    @property
    def rejected_keys(self) -> frozenset[str]:
        return frozenset(r.key for r in self.rejected) | {c.key for c, _ in self.to_set_aside}

    def merged(self, other: DataSelection) -> DataSelection:
        """``other`` (a listing of everything) with this selection's refusals added."""
        return replace(
            other,
            rejected=self.rejected + other.rejected,
            skipped=self.skipped + other.skipped,
            to_set_aside=self.to_set_aside + other.to_set_aside,
        )

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
class Candidate:
    """An object version the run may train on, as listed or described (not read yet)."""

    key: str
    etag: str | None
    version_id: str | None
    size: int
    # The cumulative manifest's entry when this is a version already trained on.
    trained: TrainedVersion | None = None
    storage_class: str | None = None  # None: STANDARD (S3 leaves it out)
    unreadable: str | None = None  # why S3 would not even describe it (HeadObject)


# --- selecting and checking the run's files -----------------------------------------------------


def select_data(
    s3: S3Client,
    bucket: str,
    request: RunRequest,
    *,
    run_id: str,
    max_file_bytes: int,
    champion_features: int | None,
    rule: LabelRule,
    trained: Mapping[str, TrainedVersion] | None = None,
    since: str | None = None,
    already_checked: Sequence[DataFile] = (),
    already_rejected: frozenset[str] = frozenset(),
    verdicts: Mapping[str, FileVerdict] | None = None,
    fan_out_bytes: int | None = None,
) -> DataSelection:
    """Check every file the request covers; move the bad ones to ``data/rejected/``.

    ``rule``: the labels the stack's objective can learn (``refit_data.label_rule``).
    All files of a run must have one column count: the champion's feature count + 1 when it is
    known (a warm start needs that layout), else that of the first good file. A listing run
    takes a current object that ``trained`` (the cumulative manifest) holds with the same ETag
    and a fitting column count as it was trained before: its pinned copy, no re-read; with
    ``since`` (a data window, ``refit.ledger.run_records.DataWindow``) it leaves out what
    ``trained`` holds from before then, unchanged since: the data of a relationship a drift
    replaced. ``already_checked``: files this run has checked already, taken as they are when listed
    with the same ETag; ``already_rejected``: keys this run refused already (left out, reported
    once). ``verdicts``: the CheckDataFiles map's, by key (``refit.data.file_checks``), taken for
    the same ETag. ``fan_out_bytes``: when the files to read add up to more, read none: the
    selection's ``to_check`` lists them for the map.

    Nothing here changes the bucket: refused files are in ``to_set_aside`` until
    :func:`set_aside_rejected`.
    """
    expected = champion_columns(champion_features) if champion_features is not None else None
    candidates, skipped = (
        _named_objects(s3, bucket, request)
        if request.objects
        else _listed(s3, bucket, request, trained or {})
    )
    outside = sum(1 for c in candidates if _before(c.trained, since))
    candidates = [
        c for c in candidates if not _before(c.trained, since) and c.key not in already_rejected
    ]
    earlier = {f.key: f for f in already_checked}
    verdicts = verdicts or {}
    if fan_out_bytes is not None:
        to_read = [c for c in candidates if _needs_read(c, earlier, verdicts)]
        if sum(c.size for c in to_read) > fan_out_bytes:
            logger.info("data to check in parallel", extra={"files": len(to_read)})
            return DataSelection((), (), tuple(skipped), outside, to_check=tuple(to_read))
    accepted: list[DataFile] = []
    rejected: list[RejectedFile] = []
    to_set_aside: list[tuple[Candidate, str]] = []
    for candidate in candidates:
        known = earlier.get(candidate.key)
        if known is not None and known.etag == candidate.etag:
            accepted.append(known)
            expected = expected or ExpectedColumns(known.columns, f"as in {known.key}")
            continue
        if candidate.trained is not None and (
            expected is None or candidate.trained.columns == expected.count
        ):
            accepted.append(DataFile.reused(candidate.trained))
            expected = expected or ExpectedColumns(
                candidate.trained.columns, f"as in {candidate.key}"
            )
            continue
        verdict = verdicts.get(candidate.key)
        if verdict is None or verdict.etag != candidate.etag:
            verdict = check_candidate(s3, bucket, candidate, max_file_bytes, expected, rule)
        elif verdict.outcome == ACCEPTED and expected is not None:
            verdict = verdict.with_columns_of(expected)
        if verdict.outcome == INVALID:
            logger.warning("rejected data file", extra={"key": candidate.key})
            to_set_aside.append((candidate, str(verdict.reason)))
        elif verdict.outcome == UNREADABLE:
            # Not movable either (a copy reads it too): refused where it is, with S3's reason.
            logger.warning("unreadable data file", extra={"key": candidate.key})
            rejected.append(RejectedFile(candidate.key, f"{verdict.reason}; left in place", None))
        elif verdict.outcome == GONE:
            skipped.append(SkippedObject(candidate.key, "deleted while the run was starting"))
        else:
            checked = verdict.data_file()
            accepted.append(checked)
            expected = expected or ExpectedColumns(checked.columns, f"as in {checked.key}")
    logger.info(
        "data selected",
        extra={
            "accepted": len(accepted),
            "rejected": len(rejected) + len(to_set_aside),
            "skipped": len(skipped),
            "outsideWindow": outside,
        },
    )
    return DataSelection(
        tuple(accepted), tuple(rejected), tuple(skipped), outside, tuple(to_set_aside)
    )


def _needs_read(
    candidate: Candidate, earlier: Mapping[str, DataFile], verdicts: Mapping[str, FileVerdict]
) -> bool:
    """Whether selecting ``candidate`` reads its bytes (nothing known about this version)."""
    known = earlier.get(candidate.key) or verdicts.get(candidate.key)
    if known is not None and known.etag == candidate.etag:
        return False
    return candidate.trained is None


def set_aside_rejected(
    s3: S3Client, bucket: str, run_id: str, selection: DataSelection
) -> DataSelection:
    """Move the refused files of ``selection`` to ``data/rejected/``, in parallel."""
    if not selection.to_set_aside:
        return selection
    with ThreadPoolExecutor(max_workers=min(PIN_WORKERS, len(selection.to_set_aside))) as pool:
        moved = list(
            pool.map(
                lambda pending: _reject(s3, bucket, pending[0], pending[1], run_id),
                selection.to_set_aside,
            )
        )
    return replace(selection, rejected=selection.rejected + tuple(moved), to_set_aside=())


def _before(trained: TrainedVersion | None, since: str | None) -> bool:
    if trained is None or since is None:
        return False
    return parse_utc(trained.trained_at) < parse_utc(since)


def _named_objects(
    s3: S3Client, bucket: str, request: RunRequest
) -> tuple[list[Candidate], list[SkippedObject]]:
    """The current version of each named key, unless it was deleted or overwritten since."""
    wanted: dict[str, list[tuple[str | None, str | None]]] = {}
    for obj in request.objects:
        wanted.setdefault(obj.key, []).append((obj.version_id, _bare(obj.etag)))
    candidates: list[Candidate] = []
    skipped: list[SkippedObject] = []
    for key in sorted(wanted):
        if _ignored(key):
            skipped.append(SkippedObject(key, IGNORED_REASON))
            continue
        if not key.startswith(layout.TRAIN_PREFIX):
            # Not ours to move: refuse it in place.
            candidates.append(Candidate(key, None, None, 0))
            continue
        try:
            current = _head(s3, bucket, key)
            if current is None and unquote_plus(key) != key:
                # Should an event ever carry a URL-encoded key, the decoded form is the object.
                current = _head(s3, bucket, unquote_plus(key))
        except UnreadableObject as problem:
            candidates.append(Candidate(key, None, None, 0, unreadable=str(problem)))
            continue
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
) -> tuple[list[Candidate], list[SkippedObject]]:
    candidates: list[Candidate] = []
    for item in _list(s3, bucket, request.data_prefix):
        key = item["Key"]
        if key.endswith("/") or _ignored(key):
            continue
        etag = _bare(item.get("ETag"))
        known = trained.get(key)
        # Same key and ETag: the bytes that were trained on (a listing has no version ids; an
        # ETag that differs only costs a re-read).
        reuse = known if known is not None and known.same_object(None, etag) else None
        candidates.append(
            Candidate(key, etag, None, item.get("Size", 0), reuse, item.get("StorageClass"))
        )
    return candidates, []


def check_candidate(
    s3: S3Client,
    bucket: str,
    candidate: Candidate,
    max_file_bytes: int,
    expected: ExpectedColumns | None,
    rule: LabelRule,
) -> FileVerdict:
    """Read ``candidate`` through the data contract: accepted, invalid (the file's fault),
    unreadable (S3 would not give it to refit) or gone. S3's own trouble is raised."""
    try:
        checked = _check(s3, bucket, candidate, max_file_bytes, expected, rule)
    except InvalidDataFile as problem:
        return FileVerdict(candidate.key, candidate.etag, INVALID, reason=str(problem))
    except UnreadableObject as problem:
        return FileVerdict(candidate.key, candidate.etag, UNREADABLE, reason=str(problem))
    if checked is None:
        return FileVerdict(candidate.key, candidate.etag, GONE)
    return FileVerdict.of(checked, candidate.etag)


def _check(
    s3: S3Client,
    bucket: str,
    candidate: Candidate,
    max_file_bytes: int,
    expected: ExpectedColumns | None,
    rule: LabelRule,
) -> DataFile | None:
    """The checked file, None if it vanished, :class:`InvalidDataFile` (the file's fault) or
    :class:`UnreadableObject` (S3 would not give it to refit)."""
    if candidate.unreadable is not None:
        raise UnreadableObject(candidate.unreadable)
    if not candidate.key.startswith(layout.TRAIN_PREFIX):
        raise InvalidDataFile(f"not under {layout.TRAIN_PREFIX}: refit trains only on that prefix")
    problem = refit_data.path_problem(candidate.key[len(layout.TRAIN_PREFIX) :])
    if problem is not None:
        raise InvalidDataFile(problem)
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
    if candidate.storage_class in ARCHIVED_STORAGE_CLASSES:
        raise UnreadableObject(
            f"stored in {candidate.storage_class}: restore it (or copy it to STANDARD) to train "
            "on it"
        )
    arguments: dict[str, Any] = {"Bucket": bucket, "Key": candidate.key}
    if candidate.version_id:
        arguments["VersionId"] = candidate.version_id
    try:
        response = s3.get_object(**arguments)
    except s3.exceptions.ClientError as error:
        if gone(error):
            return None
        raise _unreadable(error) from None
    body = response["Body"]
    try:
        shape = refit_data.check_stream(body.iter_chunks(_READ_CHUNK_BYTES), rule, expected)
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


def _unreadable(error: Exception) -> Exception:
    """The object's own fault as :class:`UnreadableObject`; S3's trouble re-raised as it was."""
    details = getattr(error, "response", {}).get("Error", {})
    code = str(details.get("Code"))
    if code in _TRANSIENT_CODES:
        return error
    message = str(details.get("Message") or "").rstrip(".")
    # A HeadObject error has no body: only its status, which says what S3 means by it.
    message = _HEAD_STATUS_MEANING.get(code, message)
    return UnreadableObject(f"S3 refused to read it: {code}{f' ({message})' if message else ''}")


def _reject(
    s3: S3Client, bucket: str, candidate: Candidate, reason: str, run_id: str
) -> RejectedFile:
    """Move a refused file out of ``data/train/``, keeping the reason beside it."""
    logger.warning("rejected data file", extra={"key": candidate.key, "reason": reason})
    if not candidate.key.startswith(layout.TRAIN_PREFIX):
        return RejectedFile(candidate.key, reason, None)
    if candidate.size > _COPY_MAX_BYTES:
        return RejectedFile(candidate.key, f"{reason}; too large to move, left in place", None)
    version = candidate.version_id
    if version is None:
        try:
            current = _head(s3, bucket, candidate.key)
        except UnreadableObject:
            return RejectedFile(candidate.key, f"{reason}; left in place", None)
        if current is None:
            return RejectedFile(candidate.key, reason, None)
        version = current.version_id
    return set_aside(s3, bucket, candidate.key, version, candidate.etag, reason, run_id)


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
        if gone(error) or code in _CHANGED_CODES:
            logger.warning("validated version gone before pinning", extra={"key": data_file.key})
            return SkippedObject(
                data_file.key, "the validated version vanished before it was pinned"
            )
        problem = _unreadable(error)
        if not isinstance(problem, UnreadableObject):
            raise
        logger.warning("validated version not copied", extra={"key": data_file.key})
        return SkippedObject(data_file.key, f"not pinned: {problem}")
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


def _head(s3: S3Client, bucket: str, key: str) -> Candidate | None:
    """The current version of ``key``; None if there is none; :class:`UnreadableObject`."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as error:
        if gone(error):
            return None
        raise _unreadable(error) from None
    return Candidate(
        key,
        _bare(head.get("ETag")),
        _version(head.get("VersionId")),
        head["ContentLength"],
        storage_class=head.get("StorageClass"),
    )


def _is_version(current: Candidate, version_id: str | None, etag: str | None) -> bool:
    """Whether the current object is the version a request named (no pin = any version)."""
    if version_id and current.version_id:
        return version_id == current.version_id
    if etag and current.etag:
        return etag == current.etag
    return True


IGNORED_REASON = "not data: a name or folder starting with _ or . (markers, temporary files)"


def _ignored(key: str) -> bool:
    """What the job would not read (``refit_data.is_ignored``), relative to its channel."""
    for prefix in (layout.TRAIN_PREFIX, layout.TEST_PREFIX):
        if key.startswith(prefix):
            return refit_data.is_ignored(key[len(prefix) :])
    return refit_data.is_ignored(key.rsplit("/", 1)[-1])


def _bare(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _version(version_id: str | None) -> str | None:
    return None if version_id in (None, "", "null") else version_id
