"""One warm Lambda execution environment: imports a handler once, then runs invocations.

Started by :mod:`local_cloud.lambda_workers` as ``python lambda_worker_main.py`` with the
function's environment (``_HANDLER``, ``LAMBDA_TASK_ROOT``, ``PYTHONPATH`` = code dir + layers).
Standard library only, so the worker's imports are the function's imports.

Protocol (the parent's pipes; every frame is a 4-byte big-endian length + UTF-8 JSON):

- worker -> parent, once: ``{"type": "ready", "initMs": N}`` or
  ``{"type": "init_error", "error": {errorMessage, errorType, stackTrace}}`` (then it exits);
- parent -> worker: ``{"id": request id, "payload": text, "deadlineMs": epoch ms,
  "functionArn": arn}``;
- worker -> parent: ``{"type": "result", "id", "ok": bool, "payload": text}``.

The worker's fd 1 and 2 both go to the parent's log pipe (handler ``print``, Powertools, the
``logging`` module); the protocol uses private duplicates of the original stdin/stdout. Each
invocation's logs end with Lambda's ``END`` and ``REPORT`` lines, written before the result,
so the parent knows when it has all of an invocation's logs.
"""

from __future__ import annotations

import decimal
import importlib
import json
import logging
import math
import os
import resource
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

_HEADER = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(header)
    body = b""
    while len(body) < length:
        chunk = stream.read(length - len(body))
        if not chunk:
            return None
        body += chunk
    frame: dict[str, Any] = json.loads(body)
    return frame


def write_frame(stream: BinaryIO, frame: dict[str, Any]) -> None:
    body = json.dumps(frame).encode()
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def error_document(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """The Python runtime's error shape: ``{errorMessage, errorType, stackTrace}``."""
    frames = traceback.extract_tb(error.__traceback__)
    # Like the runtime's bootstrap, the trace starts at the first frame that is not ours.
    while frames and os.path.abspath(frames[0].filename) == os.path.abspath(__file__):
        del frames[0]
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "stackTrace": traceback.format_list(frames),
    }


class LambdaContext:
    """The context object the Python runtime passes to a handler."""

    def __init__(self, request_id: str, deadline_ms: int, function_arn: str) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _setup_logging() -> _RequestIdFilter:
    """The runtime's root logger format: ``[LEVEL]\\ttime\\trequest id\\tmessage``."""
    request_filter = _RequestIdFilter()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    handler.addFilter(request_filter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    return request_filter


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def load_handler(spec: str) -> Callable[[Any, Any], Any]:
    """``module.function`` as the Python runtime resolves it, with its fault types."""
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as error:
        raise _Fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {error}") from None
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as error:
        raise _Fault(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}"
        ) from error
    except SyntaxError as error:
        raise _Fault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {error}"
        ) from error
    handler = getattr(module, function_name, None)
    if not callable(handler):
        raise _Fault(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    return handler  # type: ignore[no-any-return]


class _Fault(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _log(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _invoke(
    handler: Callable[[Any, Any], Any],
    frame: dict[str, Any],
    request_filter: _RequestIdFilter,
    init_ms: float | None,
) -> dict[str, Any]:
    request_id = str(frame["id"])
    request_filter.request_id = request_id
    _log(f"START RequestId: {request_id} Version: $LATEST\n")
    started = time.monotonic()
    ok = False
    try:
        try:
            event = json.loads(frame["payload"]) if frame["payload"] else None
        except ValueError as error:
            raise _Fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {error}") from None
        context = LambdaContext(request_id, int(frame["deadlineMs"]), str(frame["functionArn"]))
        result = handler(event, context)
        try:
            payload = json.dumps(result, default=_json_default)
        except (TypeError, ValueError) as error:
            raise _Fault("Runtime.MarshalError", f"Unable to marshal response: {error}") from None
        ok = True
    except _Fault as fault:
        payload = json.dumps(error_document(fault, fault.error_type) | {"requestId": request_id})
    except Exception as error:  # the runtime reports whatever the handler raised
        document = error_document(error) | {"requestId": request_id}
        _log(
            f"[ERROR] {document['errorType']}: {document['errorMessage']}\n"
            f"Traceback (most recent call last):\n{''.join(document['stackTrace'])}"
        )
        payload = json.dumps(document)
    sys.stdout.flush()
    duration = (time.monotonic() - started) * 1000
    memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    init = f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else ""
    _log(
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration)} ms\t"
        f"Memory Size: {os.environ.get('AWS_LAMBDA_FUNCTION_MEMORY_SIZE', '128')} MB\t"
        f"Max Memory Used: {memory_mb} MB{init}\n"
    )
    request_filter.request_id = ""
    return {"type": "result", "id": request_id, "ok": ok, "payload": payload}


def main() -> int:
    # The protocol gets private copies of stdin/stdout; the handler's fd 0 is /dev/null and its
    # fd 1 joins fd 2 (the parent's log pipe).
    protocol_in = os.fdopen(os.dup(0), "rb", buffering=0)
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    # Not on sys.path in Lambda: this file's own directory (local_cloud/, which holds a
    # `sagemaker` package that would shadow the SDK).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    request_filter = _setup_logging()

    started = time.monotonic()
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except _Fault as fault:
        write_frame(
            protocol_out, {"type": "init_error", "error": error_document(fault, fault.error_type)}
        )
        return 1
    except Exception as error:  # any init failure is reported, as the runtime does
        document = error_document(error)
        _log(f"[ERROR] {document['errorType']}: {document['errorMessage']}\n")
        _log("".join(document["stackTrace"]))
        write_frame(protocol_out, {"type": "init_error", "error": document})
        return 1
    init_ms: float | None = (time.monotonic() - started) * 1000
    write_frame(protocol_out, {"type": "ready", "initMs": init_ms})

    while True:
        frame = read_frame(protocol_in)
        if frame is None:
            return 0
        write_frame(protocol_out, _invoke(handler, frame, request_filter, init_ms))
        init_ms = None


if __name__ == "__main__":
    sys.exit(main())
