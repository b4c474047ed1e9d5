"""refit's inference.py inside the XGBoost image's real serving toolkit, and the local emulation
of that toolkit answering every request exactly as the real one does.

The real side runs in `.venv-serving-toolkit` (`make toolkit-venv`: sagemaker-containers
2.8.6.post2 under Flask 3.1.3 with the image's own patch) through serve_in_toolkit.py; the
local side is local_cloud.sagemaker.model_server.LoadedModel, which batch transform and the
endpoints' HTTP servers call.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import xgboost as xgb

from local_cloud.sagemaker.model_server import LoadedModel, ModelSpec

ROOT = Path(__file__).resolve().parents[2]
TOOLKIT_PYTHON = ROOT / ".venv-serving-toolkit" / "bin" / "python"
DRIVER = Path(__file__).with_name("serve_in_toolkit.py")
FEATURES = 3
_names = itertools.count(1)

Request = tuple[bytes, str | None, str | None]  # body, Content-Type, Accept


@pytest.fixture(scope="module")
def toolkit_python() -> Path:
    if not TOOLKIT_PYTHON.exists():
        pytest.fail("the serving toolkit's venv is missing: run `make toolkit-venv`")
    return TOOLKIT_PYTHON


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    features = rng.random((300, FEATURES))
    booster = xgb.train(
        {"max_depth": 2}, xgb.DMatrix(features, label=features.sum(axis=1)), num_boost_round=3
    )
    directory = tmp_path_factory.mktemp("serving") / "model"  # the toolkit's <base>/model
    directory.mkdir()
    (directory / "xgboost-model").write_bytes(booster.save_raw("ubj"))
    return directory


def import_module(path: Path) -> ModuleType:
    """As the local model server imports a script: a unique name, its directory on sys.path."""
    name = f"toolkit_user_{next(_names)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def real_toolkit(
    python: Path, module: Path, model_dir: Path, requests: list[Request], env: dict[str, str]
) -> list[tuple[int, bytes, str]]:
    documents = [
        {"body": body.decode("latin-1"), "content_type": content_type, "accept": accept}
        for body, content_type, accept in requests
    ]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SAGEMAKER_")}
    answered = subprocess.run(
        [str(python), str(DRIVER), str(module.parent), module.stem, str(model_dir)],
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        env={**inherited, **env},
        timeout=120,
        check=False,
    )
    assert answered.returncode == 0, answered.stderr[-3000:]
    return [
        (a["status"], a["body"].encode("latin-1"), a["content_type"])
        for a in json.loads(answered.stdout)
    ]


def emulated(
    module: Path, model_dir: Path, requests: list[Request], env: dict[str, str]
) -> list[tuple[int, bytes, str]]:
    user_module = import_module(module)
    spec = ModelSpec("m", "image", None, dict(env))
    served = LoadedModel(
        spec, user_module, user_module.model_fn(str(model_dir)), model_dir, module.parent
    )
    return [tuple(served.invoke(*request)) for request in requests]  # type: ignore[misc]


ROWS = b"0.1,0.2,0.3\n0.4,0.5,0.6\n"
REFIT_REQUESTS: list[Request] = [
    (ROWS, "text/csv", "text/csv"),
    (ROWS, "text/csv", None),  # Accept from SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT
    (ROWS, "text/csv", "*/*"),
    (ROWS, "text/csv", "application/json"),
    (b'{"instances": [[0.1, 0.2, 0.3]]}', "application/json", "application/json"),
    (b"[0.1, null, 0.3]", "application/json", "text/csv"),
    (b"0.1,0.2,x\n", "text/csv", "text/csv"),  # a bad value: 400
    (b"1,0.1,0.2,0.3\n", "text/csv", "text/csv"),  # the label column sent: 400
    (b"0.1,\xff,0.3\n", "text/csv", "text/csv"),  # not UTF-8: replaced, then not a number
    (ROWS, None, "text/csv"),  # no Content-Type: the toolkit says application/json: 400
    (ROWS, "text/plain", "text/csv"),  # 415
    (ROWS, "text/csv", "image/png"),  # 406
    (b"", "text/csv", "text/csv"),  # no rows: 400
]


@pytest.mark.parametrize("default_accept", ["text/csv", None])
def test_refit_inference_answers_alike_in_the_real_toolkit_and_locally(
    toolkit_python: Path, model_dir: Path, default_accept: str | None
) -> None:
    env = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": default_accept} if default_accept else {}
    inference = ROOT / "training" / "inference.py"

    real = real_toolkit(toolkit_python, inference, model_dir, REFIT_REQUESTS, env)
    local = emulated(inference, model_dir, REFIT_REQUESTS, env)

    assert local == real
    statuses = [status for status, _, _ in real]
    assert statuses == [200, 200, 200, 200, 200, 200, 400, 400, 400, 400, 415, 406, 400]
    # A client's bad request is never a 5XX, the one status the rollback alarm counts
    assert all(status < 500 for status in statuses)
    csv_type = "text/csv; charset=utf-8"
    assert real[1][2] == (csv_type if default_accept else "application/json")
    assert real[0][2] == csv_type and real[4][2] == "application/json"
    errors = [json.loads(body) for status, body, _ in real if status >= 400]
    assert all(set(error) == {"error", "error-message"} for error in errors)


def test_train_py_serves_too_as_the_sdks_deploy_uses_it(
    toolkit_python: Path, model_dir: Path
) -> None:
    # SDK v2's estimator.deploy() sets SAGEMAKER_PROGRAM to the training entry point
    env = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}
    train, inference = ROOT / "training" / "train.py", ROOT / "training" / "inference.py"

    real = real_toolkit(toolkit_python, train, model_dir, REFIT_REQUESTS, env)

    assert real == real_toolkit(toolkit_python, inference, model_dir, REFIT_REQUESTS, env)
    assert emulated(train, model_dir, REFIT_REQUESTS, env) == real


NAIVE_HANDLERS = """
    import json

    def model_fn(model_dir):
        return 2.0

    def input_fn(body, content_type):
        if content_type != "application/json":
            raise ValueError("unsupported content type " + content_type)
        return json.loads(body)

    def predict_fn(data, model):
        return [x * model for x in data]

    def output_fn(prediction, accept):
        if accept == "text/plain":
            return ",".join(map(str, prediction))  # a bare str: Flask sends it as text/html
        return json.dumps(prediction), "application/json"
"""


def test_an_exception_in_any_handler_is_a_500_in_both(
    toolkit_python: Path, model_dir: Path, tmp_path: Path
) -> None:
    module = tmp_path / "naive_handlers.py"
    module.write_text(textwrap.dedent(NAIVE_HANDLERS))
    requests: list[Request] = [
        (b"[1, 2]", "application/json", "application/json"),
        (b"[1, 2]", "application/json", "text/plain"),
        (b"1,2", "text/csv", "application/json"),  # input_fn raises ValueError
        (b"[1, ", "application/json", "application/json"),  # json.loads raises
    ]

    real = real_toolkit(toolkit_python, module, model_dir, requests, {})
    local = emulated(module, model_dir, requests, {})

    assert [(s, t) for s, _, t in local] == [(s, t) for s, _, t in real]
    assert [s for s, _, _ in real] == [200, 200, 500, 500]
    assert real[0][1] == local[0][1] == b"[2.0, 4.0]"
    assert real[1][2] == "text/html; charset=utf-8"
    assert b"Internal Server Error" in real[2][1] and b"Internal Server Error" in local[2][1]


def test_the_driver_serves_as_the_image_does(toolkit_python: Path) -> None:
    # The venv really holds the image's toolkit (not a stand-in), patched as the image is
    probe = subprocess.run(
        [
            str(toolkit_python),
            "-c",
            "import sagemaker_containers._transformer as t, flask, importlib.metadata as m;"
            "print(m.version('sagemaker-containers'), m.version('flask'), t.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    version, flask_version, path = probe.stdout.split()
    assert (version, flask_version) == ("2.8.6.post2", "3.1.3")
    assert str(ROOT / ".venv-serving-toolkit") in path
