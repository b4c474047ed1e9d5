"""Endpoints of the local SageMaker runtime: real HTTP servers running a fake inference.py."""

from __future__ import annotations

import http.client as http_client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_cloud.sagemaker import LocalSageMaker, ResourceNotFound, ValidationError
from tests.emulator.local_sagemaker_harness import (
    BUCKET,
    FAST_SETTINGS,
    endpoint_config,
    model_request,
    put,
    tar_gz,
    upload_code,
    wait_for_endpoint,
    wait_until,
)

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
        return json.dumps({"version": MODEL_VERSION, "predictions": prediction}), "application/json"

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
    # As in the XGBoost image, an exception in any handler is a 500 with Flask's error page:
    # an unsupported content type (input_fn), bad input (input_fn), a model error (predict_fn)
    for body, content_type in [
        (b"1,2", "text/csv"),
        (b'{"a": 1}', "application/json"),
        (b"[-1]", "application/json"),
    ]:
        status, page, page_type = live.invoke("ep", body, content_type, None)
        assert (status, page_type) == (500, "text/html; charset=utf-8")
        assert b"500 Internal Server Error" in page
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
    assert [status for status, _, _ in answers] == [200, 500, 404, 200]
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


# --- Blue/green DeploymentConfig: traffic shifting, baking, auto-rollback -------------------

CONFIG_HEADER = "X-Local-Endpoint-Config"


@pytest.fixture
def alarms() -> dict[str, str]:
    """CloudWatch alarm states the runtime reads (name → StateValue); tests flip them."""
    return {}


@pytest.fixture
def guarded(s3: Any, tmp_path: Path, alarms: dict[str, str]) -> Iterator[LocalSageMaker]:
    """A runtime reading ``alarms``, with an InService endpoint ``ep`` on ``cfg-1`` (factor 2)
    and model ``m2`` (factor 10) uploaded for the updates."""
    runtime = LocalSageMaker(
        s3, tmp_path / "local-sagemaker", settings=FAST_SETTINGS, alarm_state=alarms.get
    )
    try:
        runtime.create_endpoint(
            "ep", endpoint_config("cfg-1", "m1"), {"m1": deploy_model(s3, "m1", factor=2)}
        )
        assert wait_for_endpoint(runtime, "ep")["EndpointStatus"] == "InService"
        yield runtime
    finally:
        runtime.close()


def green_models(s3: Any) -> dict[str, dict[str, Any]]:
    return {"m2": deploy_model(s3, "m2", factor=10)}


def blue_green(
    routing: dict[str, Any], baking: int = 0, alarms: list[str] | None = None, **policy: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": baking,
            **policy,
        }
    }
    if alarms is not None:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return config


def answered_by(runtime: LocalSageMaker, name: str, count: int) -> list[str]:
    """Send ``count`` un-targeted requests on one kept-alive connection; the config that
    answered each (the local header), checked against the prediction's factor."""
    host, port = runtime.endpoint_address(name)
    connection = http_client.HTTPConnection(host, port, timeout=10)
    configs = []
    try:
        for _ in range(count):
            connection.request(
                "POST", "/invocations", body=b"[1]", headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 200, body
            assert response.getheader("X-Amzn-Invoked-Production-Variant") == "AllTraffic"
            config = str(response.getheader(CONFIG_HEADER))
            assert body["predictions"] == [{"cfg-1": 2, "cfg-2": 10}[config]]
            configs.append(config)
    finally:
        connection.close()
    return configs


def rollout(runtime: LocalSageMaker, name: str = "ep") -> dict[str, Any]:
    record: dict[str, Any] = runtime.describe_endpoint(name)["LocalRuntime"]["Rollout"]
    return record


def at_share(runtime: LocalSageMaker, percent: float) -> bool:
    record = rollout(runtime)
    return bool(record["Phase"] == "ShiftingTraffic" and record["GreenTrafficPercent"] == percent)


def green_share_of(runtime: LocalSageMaker, count: int) -> tuple[float, int]:
    """``(green %, green answers)`` of ``count`` requests sent within one rollout step
    (retried when a step boundary fell inside the window)."""
    for _ in range(5):
        before = rollout(runtime)
        configs = answered_by(runtime, "ep", count)
        after = rollout(runtime)
        if before["History"] == after["History"]:
            return float(before["GreenTrafficPercent"]), configs.count("cfg-2")
    raise AssertionError("no request window fit inside one rollout step")


def phases(record: dict[str, Any]) -> list[tuple[str, float]]:
    return [(p["Phase"], p["GreenTrafficPercent"]) for p in record["History"]]


def seconds_between(record: dict[str, Any], first: int, second: int) -> float:
    history = record["History"]
    return float((history[second]["StartTime"] - history[first]["StartTime"]).total_seconds())


def test_canary_shifts_a_share_then_everything_then_bakes(guarded: LocalSageMaker, s3: Any) -> None:
    # Given a canary of 25 % for 2 s and a baking period of 1 s
    config = blue_green(
        {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 2,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
        },
        baking=1,
    )

    # When the endpoint is updated with it
    updating = guarded.update_endpoint(
        "ep", endpoint_config("cfg-2", "m2"), green_models(s3), config
    )
    assert updating["EndpointStatus"] == "Updating"

    # Then during the canary a quarter of the requests reach the new config, deterministically
    wait_until(lambda: at_share(guarded, 25.0))
    during = guarded.describe_endpoint("ep")
    assert (during["EndpointStatus"], during["EndpointConfigName"]) == ("Updating", "cfg-1")
    pending = during["PendingDeploymentSummary"]
    assert pending["EndpointConfigName"] == "cfg-2"
    assert pending["ProductionVariants"][0]["VariantStatus"][0]["Status"] == "ActivatingTraffic"
    percent, green = green_share_of(guarded, 20)
    assert percent == 25.0
    assert abs(green - 5) <= 1

    # And then all of them, still Updating on the old config while baking
    wait_until(lambda: rollout(guarded)["Phase"] == "Baking")
    assert answered_by(guarded, "ep", 10) == ["cfg-2"] * 10
    baking = guarded.describe_endpoint("ep")
    assert (baking["EndpointStatus"], baking["EndpointConfigName"]) == ("Updating", "cfg-1")
    variant = baking["PendingDeploymentSummary"]["ProductionVariants"][0]
    assert variant["VariantStatus"][0]["Status"] == "Baking"

    # And after baking the endpoint is InService on the new config
    description = wait_for_endpoint(guarded, "ep")
    assert (description["EndpointStatus"], description["EndpointConfigName"]) == (
        "InService",
        "cfg-2",
    )
    assert "PendingDeploymentSummary" not in description
    assert "FailureReason" not in description
    assert answered_by(guarded, "ep", 5) == ["cfg-2"] * 5
    record = description["LocalRuntime"]["Rollout"]
    assert phases(record) == [
        ("Loading", 0.0),
        ("ShiftingTraffic", 25.0),
        ("ShiftingTraffic", 100.0),
        ("Baking", 100.0),
        ("Completed", 100.0),
    ]
    assert seconds_between(record, 1, 2) >= 1.9  # the canary's WaitIntervalInSeconds
    assert seconds_between(record, 3, 4) >= 0.9  # TerminationWaitInSeconds


def test_linear_shifts_in_steps_of_instances(guarded: LocalSageMaker, s3: Any) -> None:
    # Given a new config of 5 instances and linear steps of 2 instances (40 %) every second
    new_config = endpoint_config("cfg-2", "m2")
    new_config["ProductionVariants"][0]["InitialInstanceCount"] = 5
    config = blue_green(
        {
            "Type": "LINEAR",
            "WaitIntervalInSeconds": 1,
            "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 2},
        }
    )

    # When the endpoint is updated
    guarded.update_endpoint("ep", new_config, green_models(s3), config)

    # Then 40 % and 80 % of requests reach the new config in turn, then all of them
    wait_until(lambda: at_share(guarded, 40.0))
    percent, green = green_share_of(guarded, 20)
    assert (percent, abs(green - 8) <= 1) == (40.0, True)
    wait_until(lambda: at_share(guarded, 80.0))
    percent, green = green_share_of(guarded, 20)
    assert (percent, abs(green - 16) <= 1) == (80.0, True)
    description = wait_for_endpoint(guarded, "ep")
    assert (description["EndpointStatus"], description["EndpointConfigName"]) == (
        "InService",
        "cfg-2",
    )
    record = description["LocalRuntime"]["Rollout"]
    assert record["TrafficRoutingType"] == "LINEAR"
    assert phases(record)[1:4] == [
        ("ShiftingTraffic", 40.0),
        ("ShiftingTraffic", 80.0),
        ("ShiftingTraffic", 100.0),
    ]
    assert seconds_between(record, 1, 2) >= 0.9
    assert seconds_between(record, 2, 3) >= 0.9
    assert answered_by(guarded, "ep", 5) == ["cfg-2"] * 5


def test_an_alarm_in_alarm_rolls_the_update_back(
    guarded: LocalSageMaker, s3: Any, alarms: dict[str, str]
) -> None:
    # Given two alarms, OK, guarding a canary that would wait a minute
    alarms.update({"ep-errors": "OK", "ep-latency": "INSUFFICIENT_DATA"})
    config = blue_green(
        {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 60,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
        },
        alarms=["ep-latency", "ep-errors"],
    )
    guarded.update_endpoint("ep", endpoint_config("cfg-2", "m2"), green_models(s3), config)
    wait_until(lambda: at_share(guarded, 50.0))
    assert "cfg-2" in answered_by(guarded, "ep", 4)

    # When one alarm goes into ALARM during the canary
    alarms["ep-errors"] = "ALARM"

    # Then the endpoint rolls back: InService on the old config, naming the alarm
    description = wait_for_endpoint(guarded, "ep", timeout=10)
    assert (description["EndpointStatus"], description["EndpointConfigName"]) == (
        "InService",
        "cfg-1",
    )
    assert description["FailureReason"] == (
        "Endpoint update to cfg-2 was rolled back: CloudWatch alarm(s) [ep-errors] went into "
        "ALARM state during the deployment."
    )
    assert "PendingDeploymentSummary" not in description
    assert phases(description["LocalRuntime"]["Rollout"])[-3:] == [
        ("ShiftingTraffic", 50.0),
        ("RollingBack", 0.0),
        ("RolledBack", 0.0),
    ]
    # And every request is answered by the old model again
    assert answered_by(guarded, "ep", 10) == ["cfg-1"] * 10
    assert predictions(guarded, "ep", [1])["predictions"] == [2]


def test_delete_during_a_rollout_stops_it(guarded: LocalSageMaker, s3: Any) -> None:
    config = blue_green(
        {
            "Type": "LINEAR",
            "WaitIntervalInSeconds": 60,
            "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
        }
    )
    guarded.update_endpoint("ep", endpoint_config("cfg-2", "m2"), green_models(s3), config)
    wait_until(lambda: at_share(guarded, 50.0))
    host, port = guarded.endpoint_address("ep")
    guarded.delete_endpoint("ep")
    with pytest.raises(ResourceNotFound):
        guarded.describe_endpoint("ep")
    with pytest.raises(OSError):
        NO_PROXY.open(f"http://{host}:{port}/ping", timeout=2)
    assert [t.name for t in threading.enumerate() if t.name.startswith("endpoint-ep-")] == []


def test_exceeding_the_maximum_execution_time_rolls_back(guarded: LocalSageMaker, s3: Any) -> None:
    config = blue_green(
        {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 60,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
        },
        MaximumExecutionTimeoutInSeconds=1,
    )
    guarded.update_endpoint("ep", endpoint_config("cfg-2", "m2"), green_models(s3), config)
    description = wait_for_endpoint(guarded, "ep", timeout=10)
    assert (description["EndpointStatus"], description["EndpointConfigName"]) == (
        "InService",
        "cfg-1",
    )
    assert "MaximumExecutionTimeoutInSeconds (1 s)" in description["FailureReason"]
    assert ("RollingBack", 0.0) in phases(description["LocalRuntime"]["Rollout"])
    assert answered_by(guarded, "ep", 3) == ["cfg-1"] * 3


def test_retained_deployment_config_keeps_its_alarms(
    guarded: LocalSageMaker, s3: Any, alarms: dict[str, str]
) -> None:
    # Given an alarm already in ALARM
    alarms["ep-errors"] = "ALARM"
    config = blue_green({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}, alarms=["ep-errors"])

    # Then an update guarded by it rolls back, and so does one that retains that config
    guarded.update_endpoint("ep", endpoint_config("cfg-2", "m2"), green_models(s3), config)
    assert "[ep-errors]" in wait_for_endpoint(guarded, "ep")["FailureReason"]
    guarded.update_endpoint(
        "ep", endpoint_config("cfg-2", "m2"), green_models(s3), retain_deployment_config=True
    )
    retained = wait_for_endpoint(guarded, "ep")
    assert (retained["EndpointConfigName"], "[ep-errors]" in retained["FailureReason"]) == (
        "cfg-1",
        True,
    )

    # And an update without DeploymentConfig switches all at once, clearing the reason
    guarded.update_endpoint("ep", endpoint_config("cfg-2", "m2"), green_models(s3))
    plain = wait_for_endpoint(guarded, "ep")
    assert (plain["EndpointConfigName"], "FailureReason" in plain) == ("cfg-2", False)
    assert answered_by(guarded, "ep", 3) == ["cfg-2"] * 3


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (blue_green({"Type": "BIG_BANG", "WaitIntervalInSeconds": 1}), "BIG_BANG"),
        (blue_green({"Type": "CANARY", "WaitIntervalInSeconds": 1}), "CanarySize is required"),
        (blue_green({"Type": "LINEAR", "WaitIntervalInSeconds": 1}), "LinearStepSize is required"),
        (blue_green({"Type": "ALL_AT_ONCE"}), "WaitIntervalInSeconds is required"),
        (
            blue_green(
                {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 1,
                    "CanarySize": {"Type": "PERCENT", "Value": 10},
                }
            ),
            "CanarySize.Type 'PERCENT'",
        ),
        (
            blue_green(
                {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 1,
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 60},
                }
            ),
            "at most 50%",
        ),
        (
            blue_green(
                {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}, alarms=["ep-errors", "nope"]
            ),
            "alarm\\(s\\) nope do not exist",
        ),
        ({"RollingUpdatePolicy": {}}, "RollingUpdatePolicy is not emulated"),
    ],
)
def test_invalid_deployment_configs_change_nothing(
    guarded: LocalSageMaker,
    s3: Any,
    alarms: dict[str, str],
    config: dict[str, Any],
    message: str,
) -> None:
    alarms["ep-errors"] = "OK"
    with pytest.raises(ValidationError, match=message):
        guarded.update_endpoint("ep", endpoint_config("cfg-2", "m2"), green_models(s3), config)
    description = guarded.describe_endpoint("ep")
    assert (description["EndpointStatus"], description["EndpointConfigName"]) == (
        "InService",
        "cfg-1",
    )
    assert "PendingDeploymentSummary" not in description
    assert "Rollout" not in description["LocalRuntime"]
