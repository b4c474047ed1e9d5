"""Endpoints of the local SageMaker runtime: real HTTP servers running a fake inference.py."""

from __future__ import annotations

import http.client as http_client
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from local_sagemaker_harness import (
    BUCKET,
    endpoint_config,
    model_request,
    put,
    tar_gz,
    upload_code,
    wait_for_endpoint,
    wait_until,
)

from local_cloud.sagemaker import LocalSageMaker, ResourceNotFound, ValidationError

FAKE_INFERENCE = """
    import json, time
    from pathlib import Path

    def model_fn(model_dir):
        model = json.loads((Path(model_dir) / "model.json").read_text())
        time.sleep(model.get("load_seconds", 0))
        if model.get("broken"):
            raise RuntimeError("cannot load this model")
        return model

    def input_fn(body, content_type):
        if content_type != "application/json":
            raise ValueError(f"unsupported content type {content_type}")
        data = json.loads(body)
        if not isinstance(data, list):
            raise ValueError("send a JSON list of numbers")
        return data

    def predict_fn(data, model):
        if any(x < 0 for x in data):
            raise ArithmeticError("negative input")
        return [x * model["factor"] for x in data]

    def output_fn(prediction, accept):
        return json.dumps({"version": MODEL_VERSION, "predictions": prediction})

    MODEL_VERSION = "code-1"
"""

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def deploy_model(s3: Any, name: str, **model: Any) -> dict[str, Any]:
    """Upload a fake model (model.json in model.tar.gz) and its code; returns CreateModel."""
    data = put(s3, f"models/{name}/output/model.tar.gz", tar_gz({"model.json": json.dumps(model)}))
    code = upload_code(s3, f"code/{name}/sourcedir.tar.gz", {"inference.py": FAKE_INFERENCE})
    return model_request(data, code)


def http(
    runtime: LocalSageMaker, name: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, bytes]:
    host, port = runtime.endpoint_address(name)
    request = urllib.request.Request(f"http://{host}:{port}{path}", data=body, headers=headers)
    try:
        with NO_PROXY.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def predictions(runtime: LocalSageMaker, name: str, values: list[float]) -> dict[str, Any]:
    status, body, _ = runtime.invoke(
        name, json.dumps(values).encode(), "application/json", "application/json"
    )
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


@pytest.fixture
def live(runtime: LocalSageMaker, s3: Any) -> LocalSageMaker:
    """An InService endpoint ``ep`` on config ``cfg-1`` serving model ``m1`` (factor 2)."""
    runtime.create_endpoint(
        "ep", endpoint_config("cfg-1", "m1"), {"m1": deploy_model(s3, "m1", factor=2)}
    )
    assert wait_for_endpoint(runtime, "ep")["EndpointStatus"] == "InService"
    return runtime


def test_create_then_ping_and_invoke_over_http(runtime: LocalSageMaker, s3: Any) -> None:
    # Given a model that takes a moment to load
    models = {"m1": deploy_model(s3, "m1", factor=2, load_seconds=0.3)}

    # When the endpoint is created
    created = runtime.create_endpoint("ep", endpoint_config("cfg-1", "m1"), models)

    # Then it is Creating (ping 503) until the model loaded, then InService
    assert created["EndpointStatus"] == "Creating"
    assert http(runtime, "ep", "/ping")[0] == 503
    description = wait_for_endpoint(runtime, "ep")
    assert description["EndpointStatus"] == "InService"
    assert description["EndpointConfigName"] == "cfg-1"
    assert description["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    assert "FailureReason" not in description

    # And /ping and /invocations answer over real HTTP
    assert http(runtime, "ep", "/ping") == (200, b"")
    status, body = http(
        runtime, "ep", "/invocations", b"[1, 2.5]", **{"Content-Type": "application/json"}
    )
    assert status == 200
    assert json.loads(body) == {"version": "code-1", "predictions": [2, 5.0]}
    host, port = runtime.endpoint_address("ep")
    assert host == "127.0.0.1"
    assert description["LocalRuntime"]["Url"] == f"http://127.0.0.1:{port}"

    # And invoke() goes through the same server
    result = runtime.invoke("ep", b"[3]", "application/json", "application/json")
    assert result.status == 200
    assert result.content_type == "application/json"
    assert json.loads(result.body)["predictions"] == [6]


def test_error_statuses(live: LocalSageMaker) -> None:
    # An unsupported content type is 415
    status, body, _ = live.invoke("ep", b"1,2", "text/csv", None)
    assert status == 415
    assert "unsupported content type" in json.loads(body)["message"]
    # Other bad input is 400, with the message
    status, body, _ = live.invoke("ep", b'{"a": 1}', "application/json", None)
    assert status == 400
    assert "send a JSON list" in json.loads(body)["message"]
    # A model error is 500
    status, body, _ = live.invoke("ep", b"[-1]", "application/json", None)
    assert status == 500
    assert "negative input" in json.loads(body)["message"]
    # More than 6 MiB is 413, over HTTP too
    too_big = b"[" + b" " * (6 * 1024 * 1024) + b"1]"
    assert live.invoke("ep", too_big, "application/json", None).status == 413
    assert (
        http(live, "ep", "/invocations", too_big, **{"Content-Type": "application/json"})[0] == 413
    )
    # Exactly 6 MiB is still accepted
    just_fits = b"[1" + b" " * (6 * 1024 * 1024 - 3) + b"]"
    assert live.invoke("ep", just_fits, "application/json", None).status == 200
    # Unknown paths are 404
    assert http(live, "ep", "/nope")[0] == 404


def test_one_connection_serves_many_requests_and_errors(live: LocalSageMaker) -> None:
    # Given one kept-alive connection, as a client's connection pool holds
    host, port = live.endpoint_address("ep")
    connection = http_client.HTTPConnection(host, port, timeout=10)
    try:
        # When it sends a prediction, a bad request, an unknown path and a prediction again
        answers = []
        for path, body in [
            ("/invocations", b"[1, 2]"),
            ("/invocations", b'{"a": 1}'),
            ("/nope", b"[1]"),
            ("/invocations", b"[3]"),
        ]:
            connection.request(
                "POST", path, body=body, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            answers.append((response.status, response.read(), response.will_close))
    finally:
        connection.close()
    # Then each is answered on that same connection, which stays open
    assert [status for status, _, _ in answers] == [200, 400, 404, 200]
    assert not any(will_close for _, _, will_close in answers)
    assert json.loads(answers[-1][1])["predictions"] == [6]


def test_update_keeps_the_old_model_answering_until_the_new_one_is_ready(
    live: LocalSageMaker, s3: Any
) -> None:
    # Given a live endpoint answering with factor 2, and a new model that loads slowly
    address = live.endpoint_address("ep")
    new_models = {"m2": deploy_model(s3, "m2", factor=10, load_seconds=1.0)}

    # When it is updated, while traffic keeps flowing
    answers: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def traffic() -> None:
        try:
            while not done.is_set():
                answers.append(predictions(live, "ep", [1])["predictions"][0])
        except BaseException as error:  # surfaced below
            errors.append(error)

    client = threading.Thread(target=traffic)
    client.start()
    try:
        wait_until(lambda: len(answers) > 0)
        updating = live.update_endpoint("ep", endpoint_config("cfg-2", "m2"), new_models)
        assert updating["EndpointStatus"] == "Updating"
        assert updating["EndpointConfigName"] == "cfg-1"
        assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == "cfg-2"
        during = predictions(live, "ep", [1])["predictions"][0]
        description = wait_for_endpoint(live, "ep")
        wait_until(lambda: answers[-1] == 10)
    finally:
        done.set()
        client.join()

    # Then the old model answered during the update, the new one after, with no errors between
    assert errors == []
    assert during == 2
    assert description["EndpointStatus"] == "InService"
    assert description["EndpointConfigName"] == "cfg-2"
    assert "PendingDeploymentSummary" not in description
    first_new = answers.index(10)
    assert set(answers[:first_new]) == {2}
    assert set(answers[first_new:]) == {10}
    # And the address did not change
    assert live.endpoint_address("ep") == address


def test_failed_update_stays_on_the_old_config(live: LocalSageMaker, s3: Any) -> None:
    # Given a new model that cannot load
    broken = {"m3": deploy_model(s3, "m3", factor=7, broken=True)}

    # When the endpoint is updated to it
    live.update_endpoint("ep", endpoint_config("cfg-3", "m3"), broken)
    description = wait_for_endpoint(live, "ep")

    # Then the endpoint is InService on the old config, with the reason, still serving the old
    assert description["EndpointStatus"] == "InService"
    assert description["EndpointConfigName"] == "cfg-1"
    assert "cannot load this model" in description["FailureReason"]
    assert predictions(live, "ep", [1])["predictions"] == [2]


def test_injected_update_failure(live: LocalSageMaker, s3: Any) -> None:
    live.inject_endpoint_update_failure("ep", reason="health check failed")
    live.update_endpoint(
        "ep", endpoint_config("cfg-2", "m2"), {"m2": deploy_model(s3, "m2", factor=3)}
    )
    description = wait_for_endpoint(live, "ep")
    assert description["EndpointConfigName"] == "cfg-1"
    assert description["FailureReason"] == "health check failed"
    assert predictions(live, "ep", [1])["predictions"] == [2]

    # And the next update (nothing armed) succeeds and clears the reason
    live.update_endpoint(
        "ep", endpoint_config("cfg-3", "m3"), {"m3": deploy_model(s3, "m3", factor=3)}
    )
    description = wait_for_endpoint(live, "ep")
    assert description["EndpointConfigName"] == "cfg-3"
    assert "FailureReason" not in description
    assert predictions(live, "ep", [1])["predictions"] == [3]


def test_model_that_cannot_load_fails_the_endpoint(runtime: LocalSageMaker, s3: Any) -> None:
    models = {"m1": deploy_model(s3, "m1", factor=1, broken=True)}
    runtime.create_endpoint("ep", endpoint_config("cfg-1", "m1"), models)
    description = wait_for_endpoint(runtime, "ep")
    assert description["EndpointStatus"] == "Failed"
    assert "model_fn failed: RuntimeError: cannot load this model" in description["FailureReason"]
    with pytest.raises(ValidationError, match="not in service"):
        runtime.invoke("ep", b"[1]", "application/json", None)


def test_missing_model_artifact_fails_the_endpoint(runtime: LocalSageMaker, s3: Any) -> None:
    models = {"m1": model_request(f"s3://{BUCKET}/nope/model.tar.gz", "s3://b/none.tar.gz")}
    runtime.create_endpoint("ep", endpoint_config("cfg-1", "m1"), models)
    description = wait_for_endpoint(runtime, "ep")
    assert description["EndpointStatus"] == "Failed"
    assert description["FailureReason"].startswith("ClientError")


def test_update_and_create_rules(live: LocalSageMaker, s3: Any) -> None:
    models = {"m1": deploy_model(s3, "m1", factor=2)}
    with pytest.raises(ValidationError, match="already existing"):
        live.create_endpoint("ep", endpoint_config("cfg-1", "m1"), models)
    with pytest.raises(ValidationError, match="was not passed"):
        live.update_endpoint("ep", endpoint_config("cfg-9", "unknown"), models)
    with pytest.raises(ResourceNotFound):
        live.update_endpoint("nope", endpoint_config("cfg-1", "m1"), models)
    slow = {"m2": deploy_model(s3, "m2", factor=2, load_seconds=0.5)}
    live.update_endpoint("ep", endpoint_config("cfg-2", "m2"), slow)
    with pytest.raises(ValidationError, match="Updating"):
        live.update_endpoint("ep", endpoint_config("cfg-1", "m1"), models)


def test_delete_stops_the_server(live: LocalSageMaker) -> None:
    host, port = live.endpoint_address("ep")
    live.delete_endpoint("ep")
    with pytest.raises(ResourceNotFound):
        live.describe_endpoint("ep")
    with pytest.raises(OSError):
        NO_PROXY.open(f"http://{host}:{port}/ping", timeout=2)


def test_variant_routing_by_target_variant(runtime: LocalSageMaker, s3: Any) -> None:
    config = {
        "EndpointConfigName": "cfg-ab",
        "ProductionVariants": [
            {"VariantName": "a", "ModelName": "ma", "InitialVariantWeight": 1.0},
            {"VariantName": "b", "ModelName": "mb", "InitialVariantWeight": 0.0},
        ],
    }
    models = {"ma": deploy_model(s3, "ma", factor=1), "mb": deploy_model(s3, "mb", factor=100)}
    runtime.create_endpoint("ep", config, models)
    assert wait_for_endpoint(runtime, "ep")["EndpointStatus"] == "InService"
    # Weight 0 never gets traffic unless targeted
    for _ in range(5):
        assert predictions(runtime, "ep", [1])["predictions"] == [1]
    targeted = runtime.invoke("ep", b"[1]", "application/json", None, target_variant="b")
    assert json.loads(targeted.body)["predictions"] == [100]
