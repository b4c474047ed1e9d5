"""DynamoDB requests one at a time, so moto's transactions see a table that holds still.

moto's ``transact_write_items`` deep-copies every table it touches (to roll back on a failed
condition) while the server's other threads keep writing to them: under concurrent Lambda
invocations the copy failed with "dictionary changed size during iteration" and the caller got
a 500. On AWS every request is atomic per item and a transaction is isolated, so serialising the
requests of the local server loses nothing a client could observe (DynamoDB calls take
milliseconds here). ``DynamoHandler.call_action`` is wrapped with one process-wide lock.

The same function deep-copies the whole table once per *action* (up to 100 per transaction):
quadratic in the table's size, a minute for refit's 1,000-object bursts. While it runs, the
module's ``copy`` is a shim that copies each table once per call; the backup is taken before any
action writes, so one copy per table is the same backup.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler

from ._patching import Patch, Replace, Require

_requests = threading.RLock()


def _build_call_action(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call_action(self: Any) -> Any:
        with _requests:
            return original(self)

    return call_action


class _TableCopiedOnce:
    """``copy`` for one transact_write_items call: each table deep-copied once."""

    def __init__(self) -> None:
        self._tables: dict[int, tuple[Table, Table]] = {}

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if not isinstance(value, Table):
            return copy.deepcopy(value, memo)
        original, copied = self._tables.get(id(value), (None, None))
        if original is not value:
            copied = copy.deepcopy(value, memo)
            self._tables[id(value)] = (value, copied)
        return copied

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _build_transact_write_items(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def transact_write_items(self: Any, transact_items: Any) -> Any:
        with _requests:  # the module global below is swapped for this call only
            dynamodb_models.copy = _TableCopiedOnce()  # type: ignore[attr-defined, assignment]
            try:
                return original(self, transact_items)
            finally:
                dynamodb_models.copy = copy  # type: ignore[attr-defined]

    return transact_write_items


def patches() -> list[Patch]:
    return [
        Require(dynamodb_models, "copy"),
        Replace(
            DynamoDBBackend,
            "transact_write_items",
            ("self", "transact_items"),
            _build_transact_write_items,
        ),
        Replace(DynamoHandler, "call_action", ("self",), _build_call_action),
    ]
