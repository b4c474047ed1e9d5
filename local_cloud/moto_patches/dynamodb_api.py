"""DynamoDB requests one at a time, so moto's transactions see a table that holds still.

moto's ``transact_write_items`` deep-copies every table it touches (to roll back on a failed
condition) while the server's other threads keep writing to them: under concurrent Lambda
invocations the copy failed with "dictionary changed size during iteration" and the caller got
a 500. On AWS every request is atomic per item and a transaction is isolated, so serialising the
requests of the local server loses nothing a client could observe (DynamoDB calls take
milliseconds here). ``DynamoHandler.call_action`` is wrapped with one process-wide lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler

from ._patching import Patch, Replace, Require

_requests = threading.RLock()


def _build_call_action(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def call_action(self: Any) -> Any:
        with _requests:
            return original(self)

    return call_action


def patches() -> list[Patch]:
    return [
        Require(DynamoDBBackend, "transact_write_items", ("self", "transact_items")),
        Replace(DynamoHandler, "call_action", ("self",), _build_call_action),
    ]
