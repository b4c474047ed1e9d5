"""``sagemaker-runtime`` InvokeEndpoint in moto, answered by the local runtime's endpoints.

moto's server routes a SigV4 ``sagemaker`` request whose path ends in ``invocations`` to
``SageMakerRuntimeResponse`` (``moto/moto_server/werkzeug_app.py``); moto 5.2.5 answered it with
canned bodies. Errors follow the service model: ``ValidationError`` (400) for an unknown or not
yet serving endpoint, ``ModelError`` (424, with ``OriginalStatusCode``/``OriginalMessage``/
``LogStreamArn``) when the model container answered anything but 200, and a bare 413 for a
body over 6 MiB (as AWS's front end answers).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from moto.core.exceptions import ServiceException
from moto.core.responses import BaseResponse
from moto.sagemakerruntime import responses as runtime_responses

from local_cloud.sagemaker import LocalSageMakerError
from local_cloud.sagemaker import ResourceNotFound as RuntimeResourceNotFound

from ._context import runtime
from ._patching import Override, Patch, Replace, Require

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_PATH = re.compile(r"/endpoints/(?P<name>[^/]+)/invocations$")
_TARGET_VARIANT = "X-Amzn-SageMaker-Target-Variant"

Response = Any  # moto.sagemakerruntime.responses.SageMakerRuntimeResponse (untyped)


class RuntimeValidationError(ServiceException):
    code = "ValidationError"


class ModelError(ServiceException):
    code = "ModelError"

    def __init__(
        self, message: str, original_status: int, original_message: str, log_stream_arn: str
    ) -> None:
        super().__init__(message)
        self.OriginalStatusCode = original_status
        self.OriginalMessage = original_message
        self.LogStreamArn = log_stream_arn


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return None if value is None else str(value)


def _serve_variant(name: str, target_variant: str | None) -> str:
    if target_variant:
        return target_variant
    try:
        variants = runtime().describe_endpoint(name).get("ProductionVariants") or []
    except LocalSageMakerError:
        variants = []
    return str(variants[0]["VariantName"]) if variants else "AllTraffic"


def invoke_endpoint(self: Response) -> Any:
    match = _PATH.search(self.path)
    name = unquote(match.group("name")) if match else str(self._get_param("EndpointName"))
    body = self.raw_body if self.raw_body is not None else b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if len(body) > MAX_PAYLOAD_BYTES:
        message = f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."
        return 413, {"Content-Type": "text/plain", "status": 413}, message
    target_variant = _header(self.headers, _TARGET_VARIANT)
    try:
        result = runtime().invoke(
            name,
            body,
            _header(self.headers, "Content-Type"),
            _header(self.headers, "Accept"),
            target_variant=target_variant,
        )
    except RuntimeResourceNotFound:
        not_found = RuntimeValidationError(
            f"Endpoint {name} of account {self.current_account} not found."
        )
        raise not_found from None
    except LocalSageMakerError as runtime_error:
        raise RuntimeValidationError(runtime_error.message) from None
    variant = _serve_variant(name, target_variant)
    if result.status != 200:
        region, account = self.region, self.current_account
        group = f"/aws/sagemaker/Endpoints/{name}"
        original = result.body.decode("utf-8", errors="replace")
        kind = "client" if result.status < 500 else "server"
        message = (
            f'Received {kind} error ({result.status}) from {variant} with message "{original}". '
            f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logEventViewer:group={group} in account {account} for more information."
        )
        log_stream_arn = f"arn:aws:logs:{region}:{account}:log-group:{group}"
        raise ModelError(message, result.status, original, log_stream_arn)
    headers: dict[str, Any] = {
        "status": 200,
        "Content-Type": result.content_type,
        "x-Amzn-Invoked-Production-Variant": variant,
    }
    return 200, headers, result.body


def patches() -> list[Patch]:
    response = runtime_responses.SageMakerRuntimeResponse
    return [
        # call_action serialises a raised ServiceException with the service model's error shape
        # (ModelError's OriginalStatusCode...), and takes the status of a tuple from its headers.
        Require(BaseResponse, "call_action", ("self",)),
        Require(BaseResponse, "_transform_response", ("headers", "response")),
        Replace(response, "invoke_endpoint", ("self",), lambda _original: invoke_endpoint),
        # A binary body must reach us as bytes, not be decoded as UTF-8 by setup_class.
        Override(response, "use_raw_body", expected=False, value=True),
    ]
