"""Test-wide safety: no test may reach AWS. Fake credentials, a fixed region, Powertools quiet."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent

# Set before any boto3 client exists: a test that forgot moto fails instead of calling AWS.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "refit-tests",
        "POWERTOOLS_SERVICE_NAME": "refit",
        "POWERTOOLS_DEV": "false",
    }
)
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)

sys.path.insert(0, str(REPO_ROOT / "layers" / "refit"))


def load_handler(function_dir: str) -> ModuleType:
    """Import ``functions/<function_dir>/app.py`` under a unique module name.

    Every function's module is called ``app`` in Lambda; importing two of them by that name in
    one test session would return the first for both.
    """
    path = REPO_ROOT / "functions" / function_dir / "app.py"
    name = f"refit_function_{function_dir}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
