"""What one Lambda invocation returned: the contract between moto's patched Lambda and a worker.

:func:`local_cloud.moto_patches.install` takes an ``invoke_lambda`` callable
``(function_name, payload_bytes) -> LambdaResult``. Every path that runs a function in moto
(the Lambda ``Invoke`` API, Step Functions ``lambda:invoke`` and plain function-ARN tasks)
ends in that callable. Kept free of moto imports so that a worker module can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

UNHANDLED = "Unhandled"
"""``FunctionError`` of an invocation whose handler raised (what AWS reports)."""

HANDLED = "Handled"
"""``FunctionError`` of a runtime-reported error (AWS's legacy value; rarely used)."""


@dataclass(frozen=True)
class LambdaResult:
    """One invocation's outcome, as the Lambda ``Invoke`` API reports it.

    Attributes:
        payload: the response payload: the handler's JSON-encoded return value, or for an
            error ``{"errorMessage": ..., "errorType": ..., "stackTrace": [...]}``
            (``errorType`` is the exception class name, e.g. ``InvalidRunInput``).
        function_error: None on success; :data:`UNHANDLED` when the handler raised.
        log_tail: the invocation's log output (moto returns its last 4 KB, base64-encoded,
            as ``LogResult`` when the caller asks for ``LogType=Tail``).
    """

    payload: bytes
    function_error: str | None = None
    log_tail: str = ""


LambdaInvoker = Callable[[str, bytes], LambdaResult]
"""``(function_name, payload) -> LambdaResult``; called from moto's request threads, so it
must be thread-safe. ``function_name`` is the bare name (never an ARN)."""
