"""The /opt/ml contract, S3 helpers and invocation rules, without running jobs."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from local_sagemaker_harness import BUCKET, put, tar_gz, training_request

from local_cloud.sagemaker import container, s3io
from local_cloud.sagemaker.model_server import LoadedModel, ModelSpec


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
    assert s3io.S3Location.parse("s3://b/a/b.csv").directory == "a/"
    with pytest.raises(ValueError):
        s3io.S3Location.parse("http://b/x")
    with pytest.raises(ValueError):
        s3io.safe_relative_path("../escape")


def test_prefix_listing_and_unsafe_manifest(s3: Any) -> None:
    put(s3, "p/a.csv", "1")
    put(s3, "p/d/b.csv", "2")
    put(s3, "px/c.csv", "3")
    names = [o.relative_name for o in s3io.list_prefix(s3, s3io.S3Location(BUCKET, "p/"))]
    assert names == ["a.csv", "d/b.csv"]
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


def test_invocation_status_rules() -> None:
    class Teapot(Exception):
        status_code = 418

    def bad_input(body: bytes, content_type: str | None) -> Any:
        raise Teapot("short and stout")

    assert handlers(input_fn=bad_input).invoke(b"x", "a/b", None).status == 418

    def plain_body(prediction: Any, accept: str | None) -> bytes:
        return b"out"

    result = handlers(
        input_fn=lambda body, content_type: body,
        predict_fn=lambda data, model: data,
        output_fn=plain_body,
    ).invoke(b"x", "text/csv", "text/plain")
    assert result == (200, b"out", "text/plain")

    def unsupported(body: bytes, content_type: str | None) -> Any:
        raise ValueError("Unsupported Media Type")

    assert handlers(input_fn=unsupported).invoke(b"x", "a/b", None).status == 415

    def not_bytes(prediction: Any, accept: str | None) -> Any:
        return 42

    result = handlers(
        input_fn=lambda body, content_type: body,
        predict_fn=lambda data, model: data,
        output_fn=not_bytes,
    ).invoke(b"x", "text/csv", None)
    assert result.status == 500


def test_default_handlers_and_transform_fn() -> None:
    model = handlers()
    model.model = lambda rows: [sum(row) for row in rows]
    status, body, content_type = model.invoke(b"1,2\n3,4\n", "text/csv", "text/csv")
    assert (status, body, content_type) == (200, b"3.0\n7.0", "text/csv")
    status, body, _ = model.invoke(b"[[1, 2]]", "application/json", None)
    assert json.loads(body) == [3]
    assert model.invoke(b"x", "image/png", None).status == 415

    transform = handlers(transform_fn=lambda m, body, ct, accept: (body.upper(), "x/y"))
    assert transform.invoke(b"abc", None, None) == (200, b"ABC", "x/y")
