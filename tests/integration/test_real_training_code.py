"""The real training/train.py and training/inference.py, run by the local SageMaker runtime.

A managed-spot job on small synthetic data is interrupted once and resumes from its S3
checkpoints; its artifact then serves predictions from an endpoint and a transform job that
equal what xgboost itself predicts with the same model.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from local_cloud.sagemaker import LocalSageMaker
from refit import layout
from tests.emulator.local_sagemaker_harness import (
    BUCKET,
    endpoint_config,
    finished_training,
    get,
    model_request,
    put,
    statuses,
    tar_gz,
    training_request,
    untar,
    wait_for_endpoint,
)

TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
SCRIPTS = layout.TRAINING_MODULES  # train.py, the modules it imports, inference.py
if not all((TRAINING_DIR / script).is_file() for script in SCRIPTS):
    pytest.skip("a module of training/ is missing", allow_module_level=True)

xgb = pytest.importorskip("xgboost")
pytestmark = pytest.mark.slow

FEATURES = 4
ROUNDS = 24


def table(rows: int, seed: int) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + np.sin(x[:, 0]) + 0.1 * rng.normal(size=rows)
    return np.column_stack([y, x])


def csv(rows: np.ndarray[Any, Any]) -> str:
    buffer = io.StringIO()
    np.savetxt(buffer, rows, delimiter=",", fmt="%.6g")
    return buffer.getvalue()


def test_real_training_job_then_endpoint_and_transform(runtime: LocalSageMaker, s3: Any) -> None:
    # Given the training code as a sourcedir, labelled data (train via a manifest) and a test set
    code = put(
        s3,
        "code/sourcedir.tar.gz",
        tar_gz({name: (TRAINING_DIR / name).read_text() for name in SCRIPTS}),
    )
    put(s3, "data/train/a.csv", csv(table(200, seed=1)))
    put(s3, "data/train/b.csv", csv(table(100, seed=2)))
    put(s3, "data/train/_SUCCESS", "")
    manifest = put(
        s3,
        "runs/r1/train.manifest",
        json.dumps([{"prefix": f"s3://{BUCKET}/data/train/"}, "a.csv", "b.csv"]),
    )
    test_rows = table(60, seed=3)
    put(s3, "data/test/test.csv", csv(test_rows))
    request = training_request(
        "refit-real-1",
        code,
        hyperparameters={
            "objective": "reg:squarederror",
            "num_round": str(ROUNDS),
            "eval_metric": "rmse",
            "refit_mode": "full",
            "checkpoint_interval": "4",
            "max_depth": "3",
            "eta": "0.3",
        },
        channels={
            "train": ("ManifestFile", manifest),
            "test": ("S3Prefix", f"s3://{BUCKET}/data/test/"),
        },
        spot=True,
        checkpoint_uri=f"s3://{BUCKET}/checkpoints/refit-real-1/",
        metrics=[{"Name": "test:rmse", "Regex": r"test-rmse: ([0-9.]+)"}],
        # train.py's test hook: slow rounds, so the interruption lands mid-training
        environment={"REFIT_TEST_ROUND_DELAY": "0.05"},
    )
    runtime.inject_spot_interruption("refit-real-1", after_checkpoints=1)

    # When the job runs
    runtime.start_training_job(request)
    description = finished_training(runtime, "refit-real-1", timeout=45)

    # Then it was interrupted once, resumed from a checkpoint, and completed
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert "Interrupted" in statuses(description)
    assert description["LocalRuntime"]["Interruptions"] == 1
    evaluation = json.loads(
        untar(get(s3, "models/refit-real-1/output/output.tar.gz"))["evaluation.json"]
    )
    assert 0 < evaluation["resumedFromRound"] < ROUNDS
    assert evaluation["challengerRounds"] == ROUNDS
    assert evaluation["trainRows"] == 300
    metric = description["FinalMetricDataList"][0]
    assert metric["MetricName"] == "test:rmse"
    assert metric["Value"] == pytest.approx(evaluation["challenger"], rel=1e-6)

    # And the artifact loads in xgboost directly
    artifact = description["ModelArtifacts"]["S3ModelArtifacts"]
    with tarfile.open(
        fileobj=io.BytesIO(get(s3, "models/refit-real-1/output/model.tar.gz"))
    ) as tar:
        member = tar.extractfile("xgboost-model")
        assert member is not None
        booster = xgb.Booster()
        booster.load_model(bytearray(member.read()))
    features = test_rows[:, 1:]
    expected = booster.predict(xgb.DMatrix(features.astype(np.float32)))

    # When the model is served from an endpoint
    model = model_request(artifact, code)
    runtime.create_endpoint("refit-ep", endpoint_config("cfg-1", "m1"), {"m1": model})
    assert wait_for_endpoint(runtime, "refit-ep")["EndpointStatus"] == "InService"
    status, body, content_type = runtime.invoke(
        "refit-ep", csv(features).encode(), "text/csv", "text/csv"
    )

    # Then its CSV predictions equal xgboost's
    assert status == 200, body
    assert content_type == "text/csv; charset=utf-8"  # Flask's, as the image answers
    served = np.array([float(line) for line in body.decode().splitlines()], dtype=np.float32)
    np.testing.assert_array_equal(served, expected)
    # And JSON in / JSON out works; a label column gets a 400 that says so
    status, body, _ = runtime.invoke(
        "refit-ep",
        json.dumps({"instances": features[:2].tolist()}).encode(),
        "application/json",
        "application/json",
    )
    assert status == 200
    np.testing.assert_allclose(json.loads(body)["predictions"], expected[:2], rtol=1e-6)
    status, body, _ = runtime.invoke(
        "refit-ep", csv(test_rows[:2]).encode(), "text/csv", "text/csv"
    )
    assert status == 400
    assert "without the label column" in json.loads(body)["error-message"]
    assert runtime.invoke("refit-ep", b"1,2,3,4", "text/plain").status == 415
    assert runtime.invoke("refit-ep", csv(features[:1]).encode(), "text/csv", "image/png")[0] == 406

    # When the same model runs a batch transform
    put(s3, "batch/input/part-1.csv", csv(features[:25]))
    put(s3, "batch/input/part-2.csv", csv(features[25:]))
    transform = runtime.start_transform_job(
        {
            "TransformJobName": "refit-batch-1",
            "ModelName": "m1",
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 6,
            "TransformInput": {
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/batch/input/",
                    }
                },
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            "TransformOutput": {
                "S3OutputPath": f"s3://{BUCKET}/batch/output/refit-batch-1/",
                "Accept": "text/csv",
                "AssembleWith": "Line",
            },
        },
        model,
    )
    assert transform["TransformJobStatus"] == "InProgress"
    result = runtime.wait_for_transform_job("refit-batch-1", 30)

    # Then the outputs hold one prediction per input line, equal to xgboost's
    assert result["TransformJobStatus"] == "Completed", result.get("FailureReason")
    lines = [
        *get(s3, "batch/output/refit-batch-1/part-1.csv.out").decode().splitlines(),
        *get(s3, "batch/output/refit-batch-1/part-2.csv.out").decode().splitlines(),
    ]
    np.testing.assert_array_equal(np.array(lines, dtype=np.float32), expected)
