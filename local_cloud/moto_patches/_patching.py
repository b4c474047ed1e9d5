"""The patch machinery: declare a patch, check moto still has what it replaces, apply, revert.

Every patch names the moto attribute it touches and what it expects there:

- :class:`Replace`: the attribute exists and is a callable with exactly these parameter names
  (``inspect.signature``). The replacement is built from the original, so it can delegate.
- :class:`Add`: the attribute does NOT exist yet (moto would otherwise have grown its own
  version, which this patch would silently hide).

:func:`check` verifies every declaration before anything is changed, and raises one
:class:`MotoIncompatible` naming every mismatch, so a moto upgrade fails loudly at install time
instead of misbehaving at run time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PINNED_MOTO_VERSION = "5.2.5"

_MISSING = object()


class MotoIncompatible(RuntimeError):
    """moto is not the version, or lacks the internals, that local_cloud.moto_patches extends."""


def moto_version() -> str:
    import moto

    return str(getattr(moto, "__version__", "unknown"))


def describe_target(target: object) -> str:
    module = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
    if inspect.ismodule(target):
        return target.__name__
    return f"{module}.{name}" if module else str(name)


def parameter_names(function: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


@dataclass
class Replace:
    """Replace ``target.name`` (a function whose parameters are ``params``) with
    ``build(original)``."""

    target: object
    name: str
    params: Sequence[str]
    build: Callable[[Any], Any]
    original: Any = field(default=_MISSING, init=False)
    inherited: bool = field(default=False, init=False)

    @property
    def label(self) -> str:
        return f"{describe_target(self.target)}.{self.name}"

    def problems(self) -> list[str]:
        current = getattr(self.target, self.name, _MISSING)
        if current is _MISSING:
            return [f"{self.label} does not exist"]
        if not callable(current):
            return [f"{self.label} is not callable"]
        try:
            found = parameter_names(current)
        except (TypeError, ValueError) as error:
            return [f"{self.label}: no signature ({error})"]
        if found != tuple(self.params):
            return [f"{self.label} has parameters {found}, expected {tuple(self.params)}"]
        return []

    def apply(self) -> None:
        # Keep the raw attribute (a class's own function or descriptor) to put it back as it
        # was; an inherited one is removed again instead.
        own = vars(self.target).get(self.name, _MISSING)
        self.original = own
        self.inherited = own is _MISSING
        setattr(self.target, self.name, self.build(getattr(self.target, self.name)))

    def revert(self) -> None:
        if self.inherited:
            delattr(self.target, self.name)
        elif self.original is not _MISSING:
            setattr(self.target, self.name, self.original)
        self.original = _MISSING
        self.inherited = False


@dataclass
class Add:
    """Add ``target.name = value``; moto must not have that attribute yet."""

    target: object
    name: str
    value: Any
    applied: bool = field(default=False, init=False)

    @property
    def label(self) -> str:
        return f"{describe_target(self.target)}.{self.name}"

    def problems(self) -> list[str]:
        if hasattr(self.target, self.name):
            return [f"{self.label} already exists (moto implements it now: review this patch)"]
        return []

    def apply(self) -> None:
        setattr(self.target, self.name, self.value)
        self.applied = True

    def revert(self) -> None:
        if self.applied:
            delattr(self.target, self.name)
            self.applied = False


@dataclass
class Override:
    """Set the (class) attribute ``target.name`` from ``expected`` to ``value``."""

    target: object
    name: str
    expected: Any
    value: Any
    original: Any = field(default=_MISSING, init=False)
    applied: bool = field(default=False, init=False)

    @property
    def label(self) -> str:
        return f"{describe_target(self.target)}.{self.name}"

    def problems(self) -> list[str]:
        current = getattr(self.target, self.name, _MISSING)
        if current is _MISSING:
            return [f"{self.label} does not exist"]
        if current != self.expected:
            return [f"{self.label} is {current!r}, expected {self.expected!r}"]
        return []

    def apply(self) -> None:
        self.original = vars(self.target).get(self.name, _MISSING)
        setattr(self.target, self.name, self.value)
        self.applied = True

    def revert(self) -> None:
        if not self.applied:
            return
        if self.original is _MISSING:
            delattr(self.target, self.name)
        else:
            setattr(self.target, self.name, self.original)
        self.original = _MISSING
        self.applied = False


@dataclass
class Require:
    """Nothing is patched, but the extension relies on ``target.name`` (a callable with
    parameters ``params``, or any value when ``params`` is None)."""

    target: object
    name: str
    params: Sequence[str] | None = None

    @property
    def label(self) -> str:
        return f"{describe_target(self.target)}.{self.name}"

    def problems(self) -> list[str]:
        current = getattr(self.target, self.name, _MISSING)
        if current is _MISSING:
            return [f"{self.label} does not exist"]
        if self.params is not None:
            if not callable(current):
                return [f"{self.label} is not callable"]
            try:
                found = parameter_names(current)
            except (TypeError, ValueError) as error:
                return [f"{self.label}: no signature ({error})"]
            if found != tuple(self.params):
                return [f"{self.label} has parameters {found}, expected {tuple(self.params)}"]
        return []

    def apply(self) -> None:
        pass

    def revert(self) -> None:
        pass


Patch = Replace | Add | Override | Require


def check_version() -> None:
    version = moto_version()
    if version != PINNED_MOTO_VERSION:
        raise MotoIncompatible(
            f"local_cloud.moto_patches extends moto {PINNED_MOTO_VERSION} internals, "
            f"but moto {version} is installed: pin moto[server]=={PINNED_MOTO_VERSION} "
            "or review every patch in local_cloud/moto_patches/ against the new moto"
        )


def check(patches: Iterable[Patch]) -> None:
    """Raise :class:`MotoIncompatible` listing every declaration moto no longer satisfies."""
    problems = [problem for patch in patches for problem in patch.problems()]
    if problems:
        raise MotoIncompatible(
            f"moto {moto_version()} lacks what local_cloud.moto_patches replaces:\n  - "
            + "\n  - ".join(problems)
        )
