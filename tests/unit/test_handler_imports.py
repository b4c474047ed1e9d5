"""Each handler imports with exactly the layers template.yaml gives its function.

A domain module that reaches the training code (``refit_data``, shipped only in the
TrainingCodeLayer) from a function without that layer fails every invocation with
``Runtime.ImportModuleError``. This imports each ``app.py`` in a fresh, isolated interpreter
whose path holds only the function's code and the refit layer (PrepareRun puts its
TRAINING_CODE_DIR on the path itself): one interpreter for the functions without the training
code, one for those with it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.cold_start import function_environments, lambda_env
from bench.report import ROOT

FUNCTIONS = function_environments()
IMPORT_EACH = """
import importlib, os, sys
for directory, env in {functions!r}:
    os.environ.update(env)
    sys.path[:0] = [directory, {layer!r}]
    importlib.import_module("app")
    del sys.modules["app"]
    sys.path[:2] = []
print("refit_data" in sys.modules)
"""


def import_all(functions: list[dict[str, Any]], cwd: Path) -> subprocess.CompletedProcess[str]:
    pairs = [(str(f["dir"]), lambda_env(f, sys.executable)) for f in functions]
    code = IMPORT_EACH.format(functions=pairs, layer=str(ROOT / "layers" / "refit"))
    return subprocess.run(
        [sys.executable, "-I", "-c", code],
        env=pairs[0][1],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize("with_training_code", [False, True])
def test_each_handler_imports_with_only_its_own_layers(
    with_training_code: bool, tmp_path: Path
) -> None:
    functions = [
        f for f in FUNCTIONS.values() if ("TrainingCodeLayer" in f["layers"]) is with_training_code
    ]
    assert functions
    result = import_all(functions, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(with_training_code)
