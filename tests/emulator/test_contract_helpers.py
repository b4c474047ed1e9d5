"""The /opt/ml contract, S3 helpers and invocation rules, without running jobs."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import pytest

from local_cloud.sagemaker import container, s3io, serving_toolkit
from local_cloud.sagemaker.model_server import LoadedModel, ModelSpec
from tests.emulator.local_sagemaker_harness import BUCKET, put, tar_gz, training_request


def test_container_paths_map_into_the_root(tmp_path: Path) -> None:
    layout = container.TrainingLayout(tmp_path, "/opt/ml/checkpoints")
    assert layout.checkpoint_dir == tmp_path / "checkpoints"
    assert layout.local_path("/tmp/ckpt") == tmp_path / "_filesystem" / "tmp" / "ckpt"
    assert layout.failure_file == tmp_path / "output" / "failure"
    with pytest.raises(ValueError):
        layout.local_path("/opt/ml/../etc")


def test_environment_replaces_inherited_sm_variables(tmp_path: Path) -> None:
    layout = container.TrainingLayout(tmp_path)
    request = training_request(
        "j",
        "s3://b/code.tar.gz",
        hyperparameters={"max_depth": "3"},
        channels={"train": ("S3Prefix", "s3://b/t/")},
        environment={"EXTRA": "1"},
    )
    env = container.training_environment(
        layout, request, {"PATH": "/bin", "SM_CHANNEL_OLD": "/x", "SM_MODEL_DIR": "/opt/ml/model"}
    )
    assert "SM_CHANNEL_OLD" not in env
    assert env["SM_MODEL_DIR"] == str(tmp_path / "model")
    assert env["PATH"] == "/bin"
    assert env["EXTRA"] == "1"
    assert env["SM_HP_MAX_DEPTH"] == "3"
    assert env["SM_USER_ENTRY_POINT"] == "train.py"
    assert env["TRAINING_JOB_NAME"] == "j"
    assert json.loads(env["SM_USER_ARGS"]) == ["--max_depth", "3"]


def test_hyperparameters_are_decoded_as_the_toolkits_decode_them(tmp_path: Path) -> None:
    # The SageMaker Python SDK's estimators JSON-encode every value; boto3 users do not
    request = training_request(
        "j",
        "s3://b/code.tar.gz",
        hyperparameters={
            "objective": '"reg:squarederror"',
            "num_round": "25",
            "eta": "0.1",
            "early_stop": "true",
            "plain": "reg:logistic",
            "k": '{"b": 2, "a": 1}',
        },
        channels={"train": ("S3Prefix", "s3://b/t/")},
    )
    request["HyperParameters"]["sagemaker_submit_directory"] = '"s3://b/code.tar.gz"'
    request["HyperParameters"]["sagemaker_program"] = '"train.py"'

    env = container.training_environment(container.TrainingLayout(tmp_path), request, {})

    assert container.script_mode_program(request) == ("train.py", "s3://b/code.tar.gz")
    assert json.loads(env["SM_HPS"]) == {
        "objective": "reg:squarederror",
        "num_round": 25,
        "eta": 0.1,
        "early_stop": True,
        "plain": "reg:logistic",
        "k": {"a": 1, "b": 2},
    }
    assert env["SM_HP_OBJECTIVE"] == "reg:squarederror"
    assert env["SM_HP_EARLY_STOP"] == "true"  # to_env_vars: compact JSON for non-strings
    assert env["SM_HP_K"] == '{"a":1,"b":2}'
    assert json.loads(env["SM_USER_ARGS"]) == [
        "--early_stop", "True",  # to_cmd_args: str() of the decoded value
        "--eta", "0.1",
        "-k", "a=1,b=2",
        "--num_round", "25",
        "--objective", "reg:squarederror",
        "--plain", "reg:logistic",
    ]  # fmt: skip
    assert env["SM_MODULE_DIR"] == "s3://b/code.tar.gz"
    # hyperparameters.json keeps the strings as sent, as SageMaker writes it
    assert container.hyperparameters(request)["objective"] == '"reg:squarederror"'


def test_checkpoint_config_file_points_at_the_local_directory(tmp_path: Path) -> None:
    layout = container.TrainingLayout(tmp_path)
    request = training_request("j", "s3://b/c.tar.gz", checkpoint_uri="s3://b/ck/j/")
    container.write_config_files(layout, request)
    config = json.loads((layout.config_dir / "checkpointconfig.json").read_text())
    assert config == {"LocalPath": str(tmp_path / "checkpoints"), "S3Uri": "s3://b/ck/j/"}


def test_s3_locations() -> None:
    location = s3io.S3Location.parse("s3://b/models/")
    assert str(location.join("job", "output", "model.tar.gz")) == (
        "s3://b/models/job/output/model.tar.gz"
    )
    assert s3io.S3Location.parse("s3://b/a/b").folder().key == "a/b/"
    with pytest.raises(ValueError):
        s3io.S3Location.parse("http://b/x")
    with pytest.raises(ValueError):
        s3io.safe_relative_path("../escape")


def test_prefix_listing_and_unsafe_manifest(s3: Any) -> None:
    put(s3, "p/a.csv", "1")
    put(s3, "p/d/b.csv", "2")
    put(s3, "px/c.csv", "3")
    put(s3, "m/model.tar.gz", "4")

    def names(prefix: str) -> list[str]:
        return [o.relative_name for o in s3io.list_prefix(s3, s3io.S3Location(BUCKET, prefix))]

    assert names("p/") == ["a.csv", "d/b.csv"]
    # Without the slash, what follows the prefix (SDK v3's sm_drivers channel; SDK local mode)
    assert names("p/d") == ["b.csv"]
    assert names("m/model.tar.gz") == ["model.tar.gz"]  # a prefix naming one object
    manifest = put(s3, "m.json", json.dumps([{"prefix": f"s3://{BUCKET}/p/"}, "../x"]))
    with pytest.raises(ValueError, match="unsafe"):
        s3io.resolve_objects(s3, manifest, "ManifestFile")


def test_tree_uploader_uploads_only_new_or_changed_files(s3: Any, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    uploader = s3io.TreeUploader(s3, tmp_path, s3io.S3Location(BUCKET, "ck/"))
    uploader.mark_current()
    assert uploader.sync() == []
    (tmp_path / "b").write_text("2")
    assert uploader.sync() == ["b"]
    assert uploader.sync() == []
    (tmp_path / "b").write_text("22")
    assert uploader.sync() == ["b"]


def test_extract_refuses_paths_outside_the_destination(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(tar_gz({"../evil.txt": "x"}))
    with pytest.raises(Exception, match="outside"):
        s3io.extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def handlers(**functions: Any) -> LoadedModel:
    module = ModuleType("fake_handlers")
    for name, function in functions.items():
        setattr(module, name, function)
    spec = ModelSpec("m", "image", None)
    return LoadedModel(spec, module, "model", Path("."), Path("."))


def test_any_exception_in_a_handler_is_a_500_as_in_the_xgboost_image() -> None:
    # serving_toolkit: sagemaker_containers wraps every user function in ClientError
    class Teapot(Exception):
        status_code = 418  # no toolkit convention reads it

    def bad_input(body: Any, content_type: str) -> Any:
        raise Teapot("short and stout")

    def unsupported(body: Any, content_type: str) -> Any:
        raise ValueError("415 Unsupported Media Type")

    def not_a_response(prediction: Any, accept: str) -> Any:
        return 42

    echo = {"model_fn": str, "input_fn": lambda b, c: b, "predict_fn": lambda d, m: d}
    for result in (
        handlers(model_fn=str, input_fn=bad_input).invoke(b"x", "a/b", None),
        handlers(model_fn=str, input_fn=unsupported).invoke(b"x", "a/b", None),
        handlers(**echo, output_fn=not_a_response).invoke(b"x", "text/csv", None),
    ):
        assert result.status == 500
        assert result.content_type == "text/html; charset=utf-8"
        assert b"500 Internal Server Error" in result.body


def test_what_a_handler_returns_is_answered_as_flask_makes_it() -> None:
    echo = {"model_fn": str, "input_fn": lambda b, c: b, "predict_fn": lambda d, m: d}

    def status_response(prediction: Any, accept: str) -> Any:
        return flask.Response('{"error": "bad row"}', status=400, mimetype="application/json")

    pair = handlers(**echo, output_fn=lambda p, a: (p.upper(), "text/csv"))
    assert pair.invoke(b"a,b", "text/csv", None) == (200, b"A,B", "text/csv; charset=utf-8")
    plain = handlers(**echo, output_fn=lambda p, a: p)
    assert plain.invoke(b"x", "text/csv", None) == (200, b"x", "text/html; charset=utf-8")
    answered = handlers(**echo, output_fn=status_response).invoke(b"x", "text/csv", None)
    assert answered == (400, b'{"error": "bad row"}', "application/json")


def test_request_defaults_are_the_toolkits() -> None:
    seen: list[Any] = []

    def remember(model: Any, body: Any, content_type: str, accept: str) -> Any:
        seen.append((body, content_type, accept))
        return "ok", "text/plain"

    model = handlers(model_fn=str, transform_fn=remember)
    model.invoke(b"1,2", None, None)  # no Content-Type, no Accept
    model.invoke(b"1,\xff", "text/csv", "*/*")  # undecodable bytes in a UTF-8 type
    model.invoke(b"\x00\x01", "application/x-npy", "text/csv")
    assert seen == [
        ("1,2", "application/json", "application/json"),
        ("1,\ufffd", "text/csv", "application/json"),
        (b"\x00\x01", "application/x-npy", "text/csv"),
    ]
    csv_default = handlers(model_fn=str, transform_fn=remember)
    csv_default.spec.environment["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] = "text/csv"
    csv_default.invoke(b"1", "text/csv", None)
    assert seen[-1][2] == "text/csv"


def test_default_handlers_and_transform_fn() -> None:
    model = handlers(model_fn=str)
    model.model = lambda rows: [sum(row) for row in rows]
    status, body, content_type = model.invoke(b"1,2\n3,4\n", "text/csv", "text/csv")
    assert (status, body, content_type) == (200, b"3.0\n7.0", "text/csv; charset=utf-8")
    status, body, _ = model.invoke(b"[[1, 2]]", "application/json", None)
    assert json.loads(body) == [3]
    assert model.invoke(b"x", "image/png", None).status == 500  # the image's decoder: wrapped

    transform = handlers(
        model_fn=str, transform_fn=lambda m, body, ct, accept: (body.upper(), "x/y")
    )
    assert transform.invoke(b"abc", "text/csv", None) == (200, b"ABC", "x/y")


def test_the_image_refuses_a_module_without_model_fn_or_with_both_kinds_of_handlers() -> None:
    no_model_fn = ModuleType("no_model_fn")
    no_model_fn.transform_fn = lambda m, b, c, a: ("", "text/csv")  # type: ignore[attr-defined]
    both = ModuleType("both")
    both.model_fn = str  # type: ignore[attr-defined]
    both.transform_fn = no_model_fn.transform_fn  # type: ignore[attr-defined]
    both.input_fn = lambda b, c: b  # type: ignore[attr-defined]

    assert "no model_fn" in str(serving_toolkit.load_problem(no_model_fn))
    assert "Cannot use transform_fn" in str(serving_toolkit.load_problem(both))
