"""What the SDK tests share: data files, the SDK's environment, reading artifacts back."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

ROOT = Path(__file__).resolve().parents[2]
TELEMETRY_OPT_OUT = (
    'SchemaVersion: "1.0"\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n'
)


def data_files(directory: Path) -> np.ndarray:
    """train.csv, test.csv (label first) and rows.csv (features) in ``directory``."""
    rng = np.random.default_rng(63)
    features = rng.random((1600, 5))
    labels = features[:, 0] * 10 + features[:, 1] * 5 + rng.normal(0, 0.5, len(features))
    table = np.column_stack([labels, features])
    np.savetxt(directory / "train.csv", table[:1200], delimiter=",", fmt="%.6f")
    np.savetxt(directory / "test.csv", table[1200:], delimiter=",", fmt="%.6f")
    np.savetxt(directory / "rows.csv", features[1200:1220], delimiter=",", fmt="%.6f")
    rows: np.ndarray = np.loadtxt(directory / "rows.csv", delimiter=",", ndmin=2)
    return rows


def run_flow(
    python: Path, flow: Path, env: dict[str, str], proxy_url: str, work: Path
) -> tuple[dict[str, Any], str]:
    """The flow's JSON result and its stdout; the SDK reaches only the cloud (or the proxy)."""
    if not python.exists():
        pytest.fail(f"{python.parent.parent.name} is missing: run `make sdk-venvs`")
    (work / "sdk-config.yaml").write_text(TELEMETRY_OPT_OUT)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER"))}
    full_env = {
        **inherited,
        **env,
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(work / "sdk-config.yaml"),
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(work / "sdk-config.yaml"),
        "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
        **{name: proxy_url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    flow_run = subprocess.run(
        [str(python), str(flow)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert flow_run.returncode == 0, flow_run.stderr[-4000:]
    return json.loads(flow_run.stdout.strip().splitlines()[-1]), flow_run.stdout


def archive_member(body: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def s3_object(s3: Any, uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def predictions_of(s3: Any, model_uri: str, rows: np.ndarray) -> np.ndarray:
    """What xgboost itself predicts with the model in ``model_uri`` (model.tar.gz)."""
    booster = xgb.Booster()
    booster.load_model(bytearray(archive_member(s3_object(s3, model_uri), "xgboost-model")))
    predicted: np.ndarray = booster.predict(xgb.DMatrix(rows.astype(np.float32)))
    return predicted


def evaluation_of(s3: Any, model_uri: str) -> dict[str, Any]:
    """evaluation.json from the job's output.tar.gz beside ``model_uri``."""
    output = s3_object(s3, model_uri.replace("model.tar.gz", "output.tar.gz"))
    evaluation: dict[str, Any] = json.loads(archive_member(output, "evaluation.json"))
    return evaluation
