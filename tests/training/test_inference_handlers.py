"""training/inference.py: model_fn and transform_fn, called the way the container calls them.

tests/toolkits/test_serving_toolkit.py runs the same module inside the XGBoost image's own
serving toolkit."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import xgboost as xgb

from tests.training.training_harness import (
    FEATURES,
    csv_text,
    model_archive,
    multiclass_rows,
    regression_rows,
    train_booster,
)

ROWS = regression_rows(5, seed=21)[:, 1:]  # features only, as clients send them


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    booster = train_booster(regression_rows(200, seed=20), rounds=5)
    (directory / "xgboost-model").write_bytes(booster.save_raw("ubj"))  # as train.py writes it
    return directory


@pytest.fixture(scope="module")
def model(inference: ModuleType, model_dir: Path) -> xgb.Booster:
    booster: xgb.Booster = inference.model_fn(str(model_dir))
    return booster


def expected_predictions(model: xgb.Booster, rows: np.ndarray) -> np.ndarray:
    result: np.ndarray = model.predict(xgb.DMatrix(rows.astype(np.float32)))
    return result


def invoke(
    inference: ModuleType, model: xgb.Booster, body: bytes | str, content_type: str, accept: str
) -> tuple[str, str]:
    result = inference.transform_fn(model, body, content_type, accept)
    assert isinstance(result, tuple), result.get_data()  # the toolkit answers a tuple with 200
    return result


def test_model_fn_reads_the_archive_when_nothing_is_extracted(
    inference: ModuleType, model_dir: Path, model: xgb.Booster, tmp_path: Path
) -> None:
    archive = model_archive((model_dir / "xgboost-model").read_bytes())
    (tmp_path / "model.tar.gz").write_bytes(archive)

    from_archive = inference.model_fn(str(tmp_path))

    assert from_archive.num_boosted_rounds() == model.num_boosted_rounds() == 5


def test_csv_round_trip(inference: ModuleType, model: xgb.Booster) -> None:
    body = csv_text(ROWS, newline="\r\n").replace("\r\n", "\r\n\r\n", 1).encode()

    text, content_type = invoke(inference, model, body, "text/csv; charset=utf-8", "text/csv")

    assert content_type == "text/csv"
    lines = text.split("\n")
    assert len(lines) == len(ROWS)
    np.testing.assert_allclose(
        [float(line) for line in lines], expected_predictions(model, ROWS), rtol=1e-6
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": ROWS.tolist()},
        {"instances": [{"features": row} for row in ROWS.tolist()]},
        ROWS.tolist(),
    ],
    ids=["instances", "features objects", "list of rows"],
)
def test_json_round_trip(inference: ModuleType, model: xgb.Booster, payload: object) -> None:
    text, content_type = invoke(inference, model, json.dumps(payload), "application/json", "*/*")

    assert content_type == "text/csv"  # */* gets CSV, the batch transform format
    np.testing.assert_allclose(
        [float(line) for line in text.split("\n")], expected_predictions(model, ROWS), rtol=1e-6
    )


def test_one_json_row_and_a_json_answer(inference: ModuleType, model: xgb.Booster) -> None:
    text, content_type = invoke(
        inference, model, json.dumps(ROWS[0].tolist()), "application/json", "application/json"
    )

    assert content_type == "application/json"
    predictions = json.loads(text)["predictions"]
    np.testing.assert_allclose(predictions, expected_predictions(model, ROWS[:1]), rtol=1e-6)


def test_missing_values_are_empty_fields_or_null(inference: ModuleType) -> None:
    from_csv = inference.parse_request("1,,3,4,5,6\n", "text/csv")
    from_json = inference.parse_request("[[1, null, 3, 4, 5, 6]]", "application/json")

    np.testing.assert_array_equal(from_csv, from_json)
    assert np.isnan(from_csv[0, 1])


def test_multiclass_probabilities_are_one_row_per_line(inference: ModuleType) -> None:
    table = multiclass_rows(300, seed=22)
    params = {"objective": "multi:softprob", "num_class": 3}
    model = train_booster(table, rounds=3, params=params)

    text, _ = invoke(inference, model, csv_text(table[:4, 1:]), "text/csv", "text/csv")
    as_json, _ = invoke(inference, model, csv_text(table[:4, 1:]), "text/csv", "application/json")

    rows = [[float(value) for value in line.split(",")] for line in text.split("\n")]
    np.testing.assert_allclose(rows, expected_predictions(model, table[:4, 1:]), rtol=1e-6)
    assert np.array(json.loads(as_json)["predictions"]).shape == (4, 3)


@pytest.mark.parametrize("content_type", ["application/x-parquet", "text/plain"])
def test_unsupported_content_type_is_a_415(inference: ModuleType, content_type: str) -> None:
    with pytest.raises(inference.UnsupportedContentTypeError, match="415 Unsupported") as raised:
        inference.parse_request(b"1,2", content_type)

    assert raised.value.status_code == 415
    assert issubclass(inference.UnsupportedContentTypeError, ValueError)


def test_unsupported_accept_is_a_406(inference: ModuleType) -> None:
    with pytest.raises(inference.UnsupportedAcceptError, match="406"):
        inference.format_response(np.zeros(2, dtype=np.float32), "application/x-protobuf")


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("1,2,3\n1,2,x\n", "text/csv", "line 2, column 3: 'x' is not a number"),
        ("1,2,3\n\n1,2\n", "text/csv", "line 3: 2 columns, expected 3"),
        ("1,2,inf\n", "text/csv", "row 1, column 3: infinite value"),
        ("", "text/csv", "no rows"),
        (b"\xff\xfe1,2", "text/csv", "not UTF-8"),
        ('{"instances": [[1, 2], [1]]}', "application/json", "instance 2: 1 values, expected 2"),
        ('{"instances": [[1, "a"]]}', "application/json", "instance 1, value 2: 'a' is not a"),
        ('{"rows": []}', "application/json", '{"instances": [[...], ...]}'),
        ("[1, 2", "application/json", "not valid JSON"),
    ],
)
def test_bad_requests_name_the_problem(
    inference: ModuleType, body: bytes | str, content_type: str, message: str
) -> None:
    with pytest.raises(inference.RequestError) as raised:
        inference.parse_request(body, content_type)

    assert message in str(raised.value)
    assert raised.value.status_code == 400


def test_rows_with_the_label_column_get_a_hint(inference: ModuleType, model: xgb.Booster) -> None:
    with_label = regression_rows(2, seed=23)
    assert with_label.shape[1] == FEATURES + 1

    with pytest.raises(inference.RequestError, match="without the label column"):
        inference.predict(with_label.astype(np.float32), model)


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "message"),
    [
        ("1,2,x\n", "text/csv", "text/csv", 400, "line 1, column 3: 'x' is not a number"),
        ("1,2,3,4,5,6,7\n", "text/csv", "text/csv", 400, "without the label column"),
        ("1,2", "application/x-parquet", "text/csv", 415, "application/x-parquet"),
        ("1,2,3,4,5,6\n", "text/csv", "application/x-protobuf", 406, "application/x-protobuf"),
    ],
)
def test_a_request_the_client_must_fix_is_answered_with_its_4xx(
    inference: ModuleType,
    model: xgb.Booster,
    body: str,
    content_type: str,
    accept: str,
    status: int,
    message: str,
) -> None:
    # The toolkit makes any exception a 500: the status must come back as a response
    response = inference.transform_fn(model, body, content_type, accept)

    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = json.loads(response.get_data())
    assert message in error["error-message"]
    assert error["error"].endswith("Error")


def test_the_module_defines_transform_fn_and_none_of_the_functions_it_replaces(
    inference: ModuleType,
) -> None:
    # sagemaker_xgboost_container serving.py refuses transform_fn beside any of them
    assert callable(inference.model_fn) and callable(inference.transform_fn)
    assert not {"input_fn", "predict_fn", "output_fn"} & set(vars(inference))
