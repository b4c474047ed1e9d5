"""The SageMaker XGBoost image's serving rules for a script-mode model, in one place.

The image (aws/sagemaker-xgboost-container, ``docker/3.0-5``) serves ``SAGEMAKER_PROGRAM``
through ``sagemaker_xgboost_container/serving.py`` on sagemaker_containers 2.8.6.post2 and
Flask 3.1. What this module follows, and where each rule comes from:

- **Loading** (``serving.py::_user_module_transformer``, ``_transformer.py``): the module must
  define ``model_fn`` (the fallback ``default_model_fn`` raises NotImplementedError, so the
  worker never starts and the endpoint fails its health check); ``transform_fn`` beside any of
  ``input_fn``/``predict_fn``/``output_fn`` is refused ("Cannot use transform_fn
  implementation with input_fn, predict_fn, and/or output_fn").
- **The request** (``_worker.py::Request``): the content type is the ``ContentType`` or
  ``Content-Type`` header, else ``application/json``; the accept is the ``Accept`` header unless
  it is missing or ``*/*``, then ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (else
  ``application/json``, ``_env.py::ServingEnv``); the body reaches the handlers as ``str``
  (UTF-8, undecodable bytes replaced: Werkzeug's ``get_data(as_text=True)``) when the content
  type is exactly ``application/json`` or ``text/csv`` (``_content_types.UTF8_TYPES``), else as
  ``bytes``.
- **The handlers**: ``transform_fn(model, body, content_type, accept)``, else ``input_fn`` ->
  ``predict_fn`` -> ``output_fn`` (the image's defaults decode CSV/JSON/LIBSVM into a DMatrix,
  call ``model.predict(..., validate_features=False)`` and encode the result; here simpler
  defaults for any model with ``predict`` or a callable).
- **Statuses** (``_transformer.py``, ``_functions.py::error_wrapper``): every user function
  (and the image's defaults, which serving.py passes as user functions) is wrapped so that any
  exception becomes ``ClientError``, which nothing maps to a status: Flask answers **500** with
  its HTML page. The 415/406 of ``_default_transform_fn`` catch ``UnsupportedFormatError``,
  which the wrapper has already turned into ``ClientError``: never reached in this image. A
  returned tuple is ``Response(response=result[0], mimetype=result[1])`` (200); anything else
  goes to Flask's ``make_response`` as it is (a response object keeps its status; a ``str`` is
  ``text/html``; a dict is JSON; ``None`` or a number is a 500). Flask adds ``; charset=utf-8``
  to ``text/*`` types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import flask
from werkzeug.exceptions import InternalServerError
from werkzeug.wrappers import Response as WerkzeugResponse

DEFAULT_CONTENT_TYPE = "application/json"
DEFAULT_ACCEPT_VARIABLE = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
ANY = "*/*"
UTF8_TYPES = ("application/json", "text/csv")
REPLACED_BY_TRANSFORM_FN = ("input_fn", "predict_fn", "output_fn")

# make_response needs an app and a request context; one app serves every model of the process.
_app = flask.Flask("local-sagemaker-serving")


def load_problem(module: ModuleType) -> str | None:
    """Why the image would not start a worker for ``module``, or None."""
    if not callable(getattr(module, "model_fn", None)):
        return (
            "defines no model_fn (the XGBoost image has no default in script mode: "
            "sagemaker_containers' default_model_fn raises NotImplementedError)"
        )
    if getattr(module, "transform_fn", None) and any(
        getattr(module, name, None) for name in REPLACED_BY_TRANSFORM_FN
    ):
        return "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn"
    return None


def request_values(
    body: bytes, content_type: str | None, accept: str | None, environment: Mapping[str, str]
) -> tuple[bytes | str, str, str]:
    """``(content, content_type, accept)`` as the toolkit's Request hands them to the handlers."""
    content_type = content_type or DEFAULT_CONTENT_TYPE
    if not accept or accept == ANY:
        accept = environment.get(DEFAULT_ACCEPT_VARIABLE) or DEFAULT_CONTENT_TYPE
    content = body.decode("utf-8", errors="replace") if content_type in UTF8_TYPES else body
    return content, content_type, accept


def transform(
    module: ModuleType,
    model: Any,
    content: bytes | str,
    content_type: str,
    accept: str,
    defaults: Mapping[str, Callable[..., Any]],
) -> Any:
    """What ``Transformer.transform`` returns to Flask (exceptions propagate: a 500)."""
    transform_fn = getattr(module, "transform_fn", None)
    if transform_fn:
        result = transform_fn(model, content, content_type, accept)
    else:
        handlers = {name: getattr(module, name, None) or defaults[name] for name in defaults}
        data = handlers["input_fn"](content, content_type)
        prediction = handlers["predict_fn"](data, model)
        result = handlers["output_fn"](prediction, accept)
    if isinstance(result, tuple):
        return flask.Response(response=result[0], mimetype=result[1])
    return result


def response(result: Any) -> tuple[int, bytes, str]:
    """``(status, body, content type)`` of what Flask makes of a view's return value."""
    if isinstance(result, WerkzeugResponse):
        made = result  # what make_response returns as it is (and the common case: no context)
    else:
        with _app.test_request_context():
            made = _app.make_response(result)
    return made.status_code, made.get_data(), made.headers.get("Content-Type", "")


def internal_server_error() -> tuple[int, bytes, str]:
    """Flask's answer to an exception in the view."""
    made = InternalServerError().get_response()
    return made.status_code, made.get_data(), made.headers.get("Content-Type", "")
