"""The execution input of the retrain state machine, parsed and validated.

The trigger sends ``{"source": "s3", "objects": [...]}``; people start manual runs with any of
the fields below. Anything else is refused with :class:`InvalidRunInput`, whose message names
the field and what it accepts, so a typo never silently trains on the wrong data.

Schema (JSON object, every field optional, no other keys)::

    {
      "source":         "s3" | "manual" | "schedule"       default "manual"
      "objects":        [                                   non-empty; excludes "prefix"
        {"key":       string, required, non-empty
         "etag":      string | null
         "versionId": string | null                         "null" (S3's word for none) = null
         "size":      integer >= 0 | null}
      ],
      "prefix":         string starting with "data/train/"  excludes "objects"
      "trainingMode":   "auto" | "full" | "incremental"     default "auto"
      "deploymentMode": "endpoint" | "batch" | null         default: the stack's DEPLOYMENT_MODE
      "forceDecision":  "promote" | "reject" | null         default null: the gate decides
      "rollback":       {"toVersion": integer >= 1 | null}  excludes every field but source
      "retryOf":        string | null                       set by the trigger (below)
    }

``forceDecision`` overrides the gate's verdict (recorded as forced, with what the gate said); it
never overrides a failed training job or an unreadable evaluation.

Neither ``objects`` nor ``prefix``: every data file under ``data/train/``.

``retryOf`` names a failed run whose job failed on one of its files: refit set that file aside
and queued the others once more (``refit.start_retrain.quarantine``); the trigger's run carries it
so that a second failure is not retried again.

``rollback`` trains nothing: it puts an approved model of the stack's Model Registry group back on
the endpoint (``toVersion``, else the newest approved one older than the live one) through the
same deployment path as a promotion (refit.registry.rollback). ``refit rollback`` sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from refit import layout
from refit.config import DEPLOYMENT_MODES, DeploymentMode

# "schedule": the template's FullRetrainSchedule (a full retrain, otherwise a manual run).
Source = Literal["s3", "manual", "schedule"]
TrainingMode = Literal["auto", "full", "incremental"]
SOURCES: tuple[Source, ...] = ("s3", "manual", "schedule")
TRAINING_MODES: tuple[TrainingMode, ...] = ("auto", "full", "incremental")
ForcedDecision = Literal["promote", "reject"]
FORCED_DECISIONS: tuple[ForcedDecision, ...] = ("promote", "reject")

_FIELDS = (
    "source",
    "objects",
    "prefix",
    "trainingMode",
    "deploymentMode",
    "forceDecision",
    "rollback",
    "retryOf",
)
_ROLLBACK_FIELDS = ("toVersion",)
_OBJECT_FIELDS = ("key", "etag", "versionId", "size")
_T = TypeVar("_T", bound=str)


class InvalidRunInput(ValueError):
    """The execution input breaks the contract; the message names the field."""


@dataclass(frozen=True)
class DataObject:
    """One S3 object version a run should cover."""

    key: str
    etag: str | None = None
    version_id: str | None = None
    size: int | None = None
    # The failed run this object is queued again for (refit.start_retrain.quarantine): the queue's
    # note, not part of the object's identity or of an execution input's object.
    retry_of: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"key": self.key}
        if self.etag is not None:
            item["etag"] = self.etag
        if self.version_id is not None:
            item["versionId"] = self.version_id
        if self.size is not None:
            item["size"] = self.size
        return item


@dataclass(frozen=True)
class RollbackRequest:
    """Redeploy an approved model: ``to_version``, else the one before the live model."""

    to_version: int | None = None


@dataclass(frozen=True)
class RunRequest:
    source: Source = "manual"
    objects: tuple[DataObject, ...] = ()
    prefix: str | None = None
    training_mode: TrainingMode = "auto"
    deployment_mode: DeploymentMode | None = None
    force_decision: ForcedDecision | None = None
    rollback: RollbackRequest | None = None
    retry_of: str | None = None

    @property
    def data_prefix(self) -> str:
        """Where a run without explicit objects looks for data."""
        return self.prefix or layout.TRAIN_PREFIX

    def summary(self) -> dict[str, Any]:
        """What the run record keeps of the request; the manifest lists the objects."""
        return {
            "source": self.source,
            "objectCount": len(self.objects),
            "prefix": None if self.objects else self.data_prefix,
            "trainingMode": self.training_mode,
            "deploymentMode": self.deployment_mode,
            "forceDecision": self.force_decision,
            "rollback": None if self.rollback is None else {"toVersion": self.rollback.to_version},
            "retryOf": self.retry_of,
        }


def parse_run_input(document: Any) -> RunRequest:
    """Validate an execution input (see the module docstring) into a :class:`RunRequest`."""
    if not isinstance(document, Mapping):
        raise InvalidRunInput(
            f"execution input must be a JSON object with fields {', '.join(_FIELDS)}"
        )
    _refuse_unknown(document, _FIELDS, "execution input")
    if document.get("objects") is not None and document.get("prefix") is not None:
        raise InvalidRunInput("objects and prefix are mutually exclusive: give one or neither")
    rollback = _rollback(document)
    return RunRequest(
        rollback=rollback,
        source=_choice(document, "source", SOURCES, "manual"),
        objects=_objects(document.get("objects")),
        prefix=_prefix(document.get("prefix")),
        training_mode=_choice(document, "trainingMode", TRAINING_MODES, "auto"),
        deployment_mode=_optional_choice(document, "deploymentMode", DEPLOYMENT_MODES),
        force_decision=_optional_choice(document, "forceDecision", FORCED_DECISIONS),
        retry_of=_optional_text(document, "retryOf", "execution input"),
    )


def _refuse_unknown(document: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in document if k not in allowed)
    if unknown:
        raise InvalidRunInput(
            f"unknown field(s) {', '.join(unknown)} in {where}; allowed: {', '.join(allowed)}"
        )


def _choice(document: Mapping[str, Any], name: str, allowed: tuple[_T, ...], default: _T) -> _T:
    value = _optional_choice(document, name, allowed)
    return default if value is None else value


def _optional_choice(document: Mapping[str, Any], name: str, allowed: tuple[_T, ...]) -> _T | None:
    value = document.get(name)
    if value is None:
        return None
    for option in allowed:
        if value == option:
            return option
    raise InvalidRunInput(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _rollback(document: Mapping[str, Any]) -> RollbackRequest | None:
    value = document.get("rollback")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRunInput('rollback must be an object: {} or {"toVersion": <version>}')
    _refuse_unknown(value, _ROLLBACK_FIELDS, "rollback")
    others = sorted(
        k for k in document if k not in ("rollback", "source") and document[k] is not None
    )
    if others:
        raise InvalidRunInput(
            f"rollback trains nothing: it cannot be combined with {', '.join(others)}"
        )
    version = value.get("toVersion")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise InvalidRunInput(
            f"rollback.toVersion must be a model package version (an integer >= 1); got {version!r}"
        )
    return RollbackRequest(to_version=version)


def _prefix(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(layout.TRAIN_PREFIX):
        raise InvalidRunInput(
            f"prefix must be a string starting with {layout.TRAIN_PREFIX!r}; got {value!r}"
        )
    return value


def _objects(value: Any) -> tuple[DataObject, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise InvalidRunInput(
            "objects must be a non-empty list of {key, etag, versionId, size}; "
            f"omit it to train on everything under {layout.TRAIN_PREFIX}"
        )
    return tuple(_object(item, index) for index, item in enumerate(value))


def _object(item: Any, index: int) -> DataObject:
    where = f"objects[{index}]"
    if not isinstance(item, Mapping):
        raise InvalidRunInput(f"{where} must be an object with fields {', '.join(_OBJECT_FIELDS)}")
    _refuse_unknown(item, _OBJECT_FIELDS, where)
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidRunInput(f"{where}.key must be a non-empty string; got {key!r}")
    etag = _optional_text(item, "etag", where)
    version_id = _optional_text(item, "versionId", where)
    size = item.get("size")
    # bool is an int subclass: true must not pass as a size of 1.
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise InvalidRunInput(f"{where}.size must be an integer >= 0 or null; got {size!r}")
    return DataObject(
        key=key,
        etag=etag,
        # S3 reports "null" as the version of an object written while versioning was off.
        version_id=None if version_id == "null" else version_id,
        size=size,
    )


def _optional_text(item: Mapping[str, Any], name: str, where: str) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRunInput(f"{where}.{name} must be a string or null; got {value!r}")
    return value
