"""Lambda in moto: every invocation goes to the ``invoke_lambda`` callable; no Docker.

- ``LambdaFunction.invoke`` is where every path that runs a function meets: the ``Invoke`` API
  (``responses.LambdaResponse.invoke`` -> ``LambdaBackend.invoke``), Step Functions'
  ``lambda:invoke`` and plain function-ARN tasks (both call the ``Invoke`` API through
  ``lambda_eval_utils``), and moto's S3/SNS/EventBridge notifications. It is replaced, with
  ``FunctionError`` and ``LogResult`` from the :class:`LambdaResult`. ``InvocationType=Event``
  runs the function on a background thread, as Lambda's asynchronous invoke does. An exception
  raised by the invoker itself (not by the handler) becomes Lambda's ``ServiceException``
  (HTTP 500; ``Lambda.ServiceException`` in Step Functions, which the workflow retries).
- ``LambdaFunction._invoke_lambda`` (moto's Docker runner) is replaced too, so that nothing can
  reach Docker.
- ``LambdaBackend.create_event_source_mapping``: moto also registers an SQS mapping on the queue,
  and then ``Queue.add_message`` invokes the function synchronously inside ``SendMessage``,
  one record per call, ignoring batching windows. The mapping record is kept (so
  ``ListEventSourceMappings`` shows it), but it is unregistered from the queue: the local
  cloud's own poller delivers SQS batches.

Keep the default ``lambda.use_docker`` config (True): with False, moto uses its
``awslambda_simple`` backend, which answers canned payloads and never reaches this patch.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from typing import Any

from moto.awslambda import models as lambda_models
from moto.awslambda.exceptions import LambdaClientError
from moto.sqs import models as sqs_models

from local_cloud.lambda_result import LambdaResult

from ._context import current
from ._patching import Patch, Replace, Require

LOG_RESULT_BYTES = 4096

LambdaFunction = Any  # moto.awslambda.models.LambdaFunction (untyped)

log = logging.getLogger(__name__)


class LambdaServiceException(LambdaClientError):
    """Lambda's own failure (HTTP 500): what an exception raised by ``invoke_lambda`` becomes,
    so that Step Functions sees ``Lambda.ServiceException`` (which the workflow retries)."""

    code = 500

    def __init__(self, message: str) -> None:
        super().__init__("ServiceException", message)


def _payload_bytes(body: Any) -> bytes:
    if body is None or body == "" or body == b"":
        return b"{}"
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    lowered = name.lower()
    for key, value in headers.items():
        if str(key).lower() == lowered:
            return str(value)
    return None


def _run(function_name: str, payload: bytes) -> LambdaResult:
    try:
        return current().invoke_lambda(function_name, payload)
    except Exception as error:
        log.exception("invoking %s failed", function_name)
        raise LambdaServiceException(
            f"{function_name}: the local invoker failed: {type(error).__name__}: {error}"
        ) from error


def _run_in_background(function_name: str, payload: bytes) -> None:
    # Logged by _run: an asynchronous invocation has no caller to tell.
    with contextlib.suppress(LambdaServiceException):
        _run(function_name, payload)


def invoke(
    self: LambdaFunction, body: Any, request_headers: Any, response_headers: Any
) -> bytes | str:
    payload = _payload_bytes(body)
    invocation_type = _header(request_headers, "x-amz-invocation-type") or "RequestResponse"
    if invocation_type == "Event":
        threading.Thread(
            target=_run_in_background,
            args=(self.function_name, payload),
            name=f"lambda-event-{self.function_name}",
            daemon=True,
        ).start()
        return b""
    if invocation_type == "DryRun":
        return b""
    result = _run(self.function_name, payload)
    if result.function_error:
        response_headers["x-amz-function-error"] = result.function_error
    tail = result.log_tail.encode("utf-8")[-LOG_RESULT_BYTES:]
    response_headers["x-amz-log-result"] = base64.b64encode(tail).decode("ascii")
    return result.payload


def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    result = _run(self.function_name, _payload_bytes(event))
    return (
        result.payload.decode("utf-8", errors="replace"),
        result.function_error is not None,
        result.log_tail,
    )


def _build_create_event_source_mapping(original: Any) -> Any:
    def create_event_source_mapping(self: Any, spec: dict[str, Any]) -> Any:
        esm = original(self, spec)
        queues = sqs_models.sqs_backends[self.account_id][self.region_name].queues
        for queue in queues.values():
            if queue.queue_arn == esm.event_source_arn:
                queue.lambda_event_source_mappings.pop(esm.function_arn, None)
        return esm

    return create_event_source_mapping


def patches() -> list[Patch]:
    function = lambda_models.LambdaFunction
    return [
        Require(lambda_models.EventSourceMapping, "__init__", ("self", "spec")),
        Require(sqs_models, "sqs_backends"),
        Require(sqs_models.Queue, "add_message", ("self", "message")),
        Replace(
            function,
            "invoke",
            ("self", "body", "request_headers", "response_headers"),
            lambda _original: invoke,
        ),
        Replace(function, "_invoke_lambda", ("self", "event"), lambda _original: _invoke_lambda),
        Replace(
            lambda_models.LambdaBackend,
            "create_event_source_mapping",
            ("self", "spec"),
            _build_create_event_source_mapping,
        ),
    ]
