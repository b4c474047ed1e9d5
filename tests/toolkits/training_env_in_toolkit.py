"""Print what the XGBoost image's training toolkit gives a script for an /opt/ml tree.

Runs in `.venv-serving-toolkit` (sagemaker_containers, as the image's training entry point
``sagemaker_xgboost_container/training.py::train`` uses it: ``framework.training_env()``, then
the user script runs with ``to_cmd_args()`` and ``to_env_vars()``).

usage: python training_env_in_toolkit.py ROOT > {"env": {...}, "args": [...]}
TRAINING_JOB_NAME, as SageMaker sets it in the container, comes from the environment.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["SAGEMAKER_BASE_DIR"] = sys.argv[1]  # read by _env at import

import sagemaker_containers.beta.framework as framework

environment = framework.training_env()
json.dump({"env": environment.to_env_vars(), "args": environment.to_cmd_args()}, sys.stdout)
