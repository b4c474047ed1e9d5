"""Serving handlers for refit's models in the SageMaker XGBoost container (script mode).

The container imports this module (``SAGEMAKER_PROGRAM``) and serves it through
sagemaker_containers' Transformer (aws/sagemaker-xgboost-container,
``serving.py::_user_module_transformer``): ``model_fn(model_dir)`` once, then
``transform_fn(model, body, content_type, accept)`` for every request. Requests carry features
only (no label column):

- ``text/csv``: one row per line, CRLF or LF, blank lines skipped, an empty field is a missing
  value;
- ``application/json``: ``{"instances": [[...], ...]}`` (an instance may also be
  ``{"features": [...]}``), a list of rows, or one row; ``null`` is a missing value.

Responses: ``text/csv`` has one prediction per line (a multiclass probability row comma-joined);
``application/json`` is ``{"predictions": [...]}``. The toolkit turns a missing or ``*/*``
Accept into ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (refit's models set ``text/csv``) and a
missing Content-Type into ``application/json``.

Why ``transform_fn`` and not ``input_fn``/``predict_fn``/``output_fn``: the toolkit wraps every
user function in ``error_wrapper(fn, ClientError)``, so *any* exception one raises is a 500
(sagemaker_containers 2.8.6.post2 ``_transformer.py``, ``_functions.py``), and a 5XX counts in
the endpoint's ``Invocation5XXErrors`` that rolls a canary back. Only a returned response sets
another status: a request the client must fix (``RequestError``) is answered here with its 400,
415 or 406, and only a fault of the model or this code is a 500. The module must not also define
``input_fn``/``predict_fn``/``output_fn`` (the toolkit refuses a module with both).
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb

MODEL_FILE = "xgboost-model"  # layers/refit/refit/layout.py MODEL_FILE
MODEL_ARCHIVE = "model.tar.gz"
CSV = "text/csv"
JSON = "application/json"

Features = npt.NDArray[np.float32]


class RequestError(ValueError):
    """A request the client must fix; ``status_code`` is the HTTP status ``transform_fn``
    answers with."""

    status_code = 400


class UnsupportedContentTypeError(RequestError):
    status_code = 415

    def __init__(self, content_type: str) -> None:
        super().__init__(
            f"415 Unsupported Media Type: content type {content_type!r} is not supported; "
            f"send {CSV} or {JSON}"
        )


class UnsupportedAcceptError(RequestError):
    status_code = 406

    def __init__(self, accept: str) -> None:
        super().__init__(f"406 Not Acceptable: cannot answer {accept!r}; accept {CSV} or {JSON}")


def model_fn(model_dir: str) -> xgb.Booster:
    """The booster in ``model_dir``: ``xgboost-model``, or inside ``model.tar.gz``."""
    directory = Path(model_dir)
    booster = xgb.Booster()
    if (directory / MODEL_FILE).is_file():
        booster.load_model(str(directory / MODEL_FILE))
        return booster
    with tarfile.open(directory / MODEL_ARCHIVE) as tar:
        for member in tar.getmembers():
            is_model = member.isfile() and os.path.normpath(member.name) == MODEL_FILE
            content = tar.extractfile(member) if is_model else None
            if content is not None:
                booster.load_model(bytearray(content.read()))
                return booster
    raise FileNotFoundError(f"{model_dir}/{MODEL_ARCHIVE} holds no {MODEL_FILE}")


def transform_fn(
    model: xgb.Booster,
    request_body: bytes | str,
    request_content_type: str | None,
    accept: str | None,
) -> tuple[str, str] | Any:
    """``(body, content type)`` for the toolkit to answer 200, or an error response."""
    try:
        features = parse_request(request_body, request_content_type)
        return format_response(predict(features, model), accept)
    except RequestError as error:
        return error_response(error)


def error_response(error: RequestError) -> Any:
    """A Flask response with the error's status (what the toolkit's own 415/406 look like)."""
    # Flask ships in the XGBoost image (its requirements.txt) and beside moto locally; imported
    # here so a request that succeeds never pays for it.
    from werkzeug.wrappers import Response

    body = json.dumps({"error": type(error).__name__, "error-message": str(error)})
    return Response(body, status=error.status_code, mimetype=JSON)


def parse_request(request_body: bytes | str, request_content_type: str | None) -> Features:
    """Feature rows from a CSV or JSON request; a missing content type is read as CSV."""
    media_type = media_type_of(request_content_type or CSV)
    if media_type not in (CSV, JSON):
        raise UnsupportedContentTypeError(request_content_type or "")
    text = decode(request_body)
    rows = csv_rows(text) if media_type == CSV else json_rows(text)
    if rows.shape[0] == 0:
        raise RequestError("the request holds no rows")
    infinite = np.argwhere(np.isinf(rows))
    if infinite.size:
        row, column = (int(index) + 1 for index in infinite[0])
        raise RequestError(f"row {row}, column {column}: infinite value")
    return rows


def predict(input_data: Features, model: xgb.Booster) -> npt.NDArray[np.float32]:
    """Predictions for the rows; multiclass softprob models give one probability row each."""
    expected, got = model.num_features(), input_data.shape[1]
    if got != expected:
        hint = "; send features only, without the label column" if got == expected + 1 else ""
        raise RequestError(f"the model expects {expected} features per row, got {got}{hint}")
    predictions: npt.NDArray[np.float32] = model.predict(xgb.DMatrix(input_data, missing=np.nan))
    return predictions


def format_response(prediction: npt.NDArray[np.float32], accept: str | None) -> tuple[str, str]:
    """``(body, content type)``: CSV lines, or ``{"predictions": [...]}`` for JSON."""
    media_type = negotiate(accept)
    if media_type == JSON:
        return json.dumps({"predictions": prediction.tolist()}), JSON
    lines = (",".join(map(str, row)) if prediction.ndim == 2 else str(row) for row in prediction)
    return "\n".join(lines), CSV


def media_type_of(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def negotiate(accept: str | None) -> str:
    """The first type in ``accept`` this module writes; CSV when anything (or nothing) goes."""
    for candidate in (accept or CSV).split(","):
        media_type = media_type_of(candidate)
        if media_type in (CSV, JSON):
            return media_type
        if media_type in ("*/*", "text/*", ""):
            return CSV
        if media_type == "application/*":
            return JSON
    raise UnsupportedAcceptError(accept or "")


def decode(body: bytes | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RequestError(f"the request body is not UTF-8 (byte {error.start})") from None


def csv_rows(text: str) -> Features:
    """Rows of a CSV body: numpy's parser when every field is there, else line by line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "no data": parse_request reports it
            rows: Features = np.loadtxt(
                io.StringIO(text), delimiter=",", dtype=np.float32, ndmin=2, comments=None
            )
    except ValueError:
        return csv_rows_one_by_one(text)
    return rows


def csv_rows_one_by_one(text: str) -> Features:
    """Slow path: empty fields as NaN, whitespace-only lines skipped, errors naming the line."""
    rows: list[list[float]] = []
    width = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        width = width or len(fields)
        if len(fields) != width:
            raise RequestError(f"line {number}: {len(fields)} columns, expected {width}")
        row = []
        for column, field in enumerate(fields, start=1):
            try:
                row.append(float(field) if field.strip() else math.nan)
            except ValueError:
                raise RequestError(
                    f"line {number}, column {column}: {field.strip()!r} is not a number"
                ) from None
        rows.append(row)
    return np.array(rows, dtype=np.float32).reshape(len(rows), width)


def json_rows(text: str) -> Features:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(f"the request body is not valid JSON: {error}") from None
    instances = payload.get("instances") if isinstance(payload, dict) else payload
    if not isinstance(instances, list):
        raise RequestError('send {"instances": [[...], ...]}, a list of rows, or one row')
    if instances and not isinstance(instances[0], list | dict):
        instances = [instances]  # one row
    rows = [json_row(index, instance) for index, instance in enumerate(instances, start=1)]
    width = len(rows[0]) if rows else 0
    for index, row in enumerate(rows, start=1):
        if len(row) != width:
            raise RequestError(f"instance {index}: {len(row)} values, expected {width}")
    return np.array(rows, dtype=np.float32).reshape(len(rows), width)


def json_row(index: int, instance: Any) -> list[float]:
    if isinstance(instance, dict):
        instance = instance.get("features")
    if not isinstance(instance, list):
        raise RequestError(f"instance {index}: expected a list of numbers")
    row = []
    for position, value in enumerate(instance, start=1):
        if value is None:
            row.append(math.nan)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            row.append(float(value))
        else:
            raise RequestError(f"instance {index}, value {position}: {value!r} is not a number")
    return row
