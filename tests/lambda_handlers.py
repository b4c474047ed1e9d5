"""Import the real Lambda handlers the way Lambda does, one module per function folder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent


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
