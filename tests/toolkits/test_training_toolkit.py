"""The training container contract of the local runtime equals the XGBoost image's toolkit's.

The local runtime writes an /opt/ml tree's config files and builds the script's environment and
arguments (local_cloud/sagemaker/container.py); sagemaker_containers, in its own venv, reads the
same tree as the image's training entry point does. Every SM_* variable and argument it gives
the script must be ours too, byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local_cloud.sagemaker import container

ROOT = Path(__file__).resolve().parents[2]
TOOLKIT_PYTHON = ROOT / ".venv-serving-toolkit" / "bin" / "python"
PROBE = Path(__file__).with_name("training_env_in_toolkit.py")
# refit's own additions, which train.py honours (container.py's docstring): not the toolkit's.
REFIT_ONLY = {"SM_ROOT", "SM_CHECKPOINT_DIR", "SM_OUTPUT_FAILURE"}


def training_request(name: str, hyperparameters: dict[str, str]) -> dict[str, Any]:
    """A CreateTrainingJob request as the SDK or PrepareRun sends it (script mode)."""
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "xgboost:3.0-5", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/sagemaker",
        "HyperParameters": {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": "s3://b/code/sourcedir.tar.gz",
            **hyperparameters,
        },
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://b/{channel}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "ContentType": "text/csv",
            }
            for channel in ("train", "test")
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://b/models/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


def toolkit_view(root: Path, job_name: str) -> dict[str, Any]:
    if not TOOLKIT_PYTHON.exists():
        pytest.fail("the toolkit's venv is missing: run `make toolkit-venv`")
    probe = subprocess.run(
        [str(TOOLKIT_PYTHON), str(PROBE), str(root)],
        env={"PATH": os.environ["PATH"], "TRAINING_JOB_NAME": job_name},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    view: dict[str, Any] = json.loads(probe.stdout)
    return view


@pytest.mark.parametrize(
    "hyperparameters",
    [
        {"num_round": "25", "objective": "reg:squarederror", "eta": "0.1"},  # boto3, plain
        {  # the SageMaker Python SDK: every value JSON-encoded
            "num_round": "25",
            "objective": '"reg:squarederror"',
            "early_stop": "true",
            "k": '{"b": 2, "a": 1}',
        },
    ],
)
def test_the_script_gets_what_the_toolkit_would_give_it(
    tmp_path: Path, hyperparameters: dict[str, str]
) -> None:
    request = training_request("job-contract", hyperparameters)
    layout = container.TrainingLayout(tmp_path / "opt" / "ml")
    layout.create(container.channel_names(request))
    container.write_config_files(layout, request)

    ours = container.training_environment(layout, request, {})
    theirs = toolkit_view(layout.root, "job-contract")

    assert {k: v for k, v in ours.items() if k.startswith("SM_") and k not in REFIT_ONLY} == theirs[
        "env"
    ]
    assert container.user_args(container.decoded_hyperparameters(request)) == theirs["args"]
    assert json.loads(ours["SM_TRAINING_ENV"])["job_name"] == "job-contract"
