"""Figure 4: Lambda cold start (import + init of each handler) and deployment size.

Cold start. Each ``functions/<name>/app.py`` is imported by a fresh ``python3.13`` (the
runtime of template.yaml) with Lambda's layout on ``sys.path``: the function's folder (as
``/var/task``), the RefitLayer's ``python/`` (as ``/opt/python``) and boto3 at the version
pyproject pins (the runtime's SDK, ``/var/runtime``); the environment holds the variables the
template sets for that function plus what the Lambda runtime sets (``LAMBDA_TASK_ROOT``, so
Powertools' Tracer really patches boto3 as in Lambda). The time from before the import to after
it is the module's import + init (settings, clients, Powertools); the figure is the median of
``REPEATS`` fresh interpreters. The layer is built for this machine's platform (the Lambda one
is aarch64, whose C extension would not load here) and byte-compiled by python3.13, as
layers/refit/Makefile does; it is cached in ``.bench-cache/`` by the hash of its inputs.

Size. What ``sam build`` produces: ``.aws-sam/build/<Function>/`` plus each layer the function
gets (``RefitLayer``; PrepareRun also ``TrainingCodeLayer``), unzipped. Without a previous
``make build``, the function folder is what SAM copies (``CodeUri``) and the layers are built
by their Makefiles into a temp dir, exactly as SAM runs them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bench.report import ROOT, Row, median, reproduce
from bench.template import template

LAMBDA_PYTHON = "3.13"
REPEATS = {False: 7, True: 3}
COLD_START_TARGET_MS = 250.0
SIZE_TARGET_MB = 15.0
FORBIDDEN = ("xgboost", "numpy", "sagemaker")  # top-level packages no Lambda may carry
CACHE = ROOT / ".bench-cache"
LAYER_DIR = ROOT / "layers" / "refit"

DRIVER = """
import importlib.util, json, sys, time
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["app"] = module
spec.loader.exec_module(module)
elapsed = time.perf_counter() - started
assert callable(module.lambda_handler)
heavy = sorted(m for m in ("numpy", "xgboost", "sagemaker", "pandas") if m in sys.modules)
print(json.dumps({"ms": elapsed * 1000, "modules": len(sys.modules), "heavy": heavy}))
"""

# What every handler pays before its own code: the runtime's SDK and one client.
BASELINE = """
import json, sys, time
started = time.perf_counter()
import boto3
boto3.client("s3")
print(json.dumps({"ms": (time.perf_counter() - started) * 1000, "modules": len(sys.modules),
                  "heavy": []}))
"""


def lambda_python() -> str:
    """A python3.13 executable: on PATH, else pyenv's newest 3.13.x."""
    found = shutil.which(f"python{LAMBDA_PYTHON}")
    candidates = [found] if found else []
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [
        str(p / "bin" / f"python{LAMBDA_PYTHON}")
        for p in sorted((pyenv_root / "versions").glob(f"{LAMBDA_PYTHON}.*"), reverse=True)
    ]
    for candidate in candidates:
        if candidate and _runs(candidate):
            return candidate
    raise RuntimeError(
        f"python{LAMBDA_PYTHON} (the Lambda runtime) is not installed: "
        f"pyenv install {LAMBDA_PYTHON} (or your OS package)"
    )


def _runs(executable: str) -> bool:
    env = {k: v for k, v in os.environ.items() if k != "PYENV_VERSION"}
    env["PYENV_VERSION"] = Path(executable).parent.parent.name  # pyenv shims need it
    try:
        return subprocess.run([executable, "-c", ""], env=env, capture_output=True).returncode == 0
    except OSError:
        return False


def _sdk_pin() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    for line in text.splitlines():
        if line.strip().startswith('"boto3=='):
            return line.strip().strip('",')
    raise RuntimeError("pyproject.toml pins no boto3")


def runtime_site(python: str) -> tuple[Path, Path]:
    """(layer ``python/`` dir, runtime SDK dir) built for this machine by ``python``; cached."""
    requirements = (LAYER_DIR / "requirements.txt").read_text()
    sources = sorted((LAYER_DIR / "refit").rglob("*"))
    digest = hashlib.sha256(requirements.encode() + _sdk_pin().encode() + python.encode())
    for path in sources:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(LAYER_DIR)).encode() + path.read_bytes())
    home = CACHE / f"lambda-{digest.hexdigest()[:16]}"
    layer, sdk = home / "opt" / "python", home / "var" / "runtime"
    if (home / ".complete").exists():
        return layer, sdk
    shutil.rmtree(home, ignore_errors=True)
    layer.mkdir(parents=True)
    shutil.copytree(
        LAYER_DIR / "refit", layer / "refit", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    _check([*pip, "--no-deps", "--target", str(layer), "-r", str(LAYER_DIR / "requirements.txt")])
    _check([*pip, "--target", str(sdk), _sdk_pin()])
    for directory in (layer, sdk):
        _check(
            [
                python,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "unchecked-hash",
                str(directory),
            ]
        )
    (home / ".complete").touch()
    return layer, sdk


def _check(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])}... failed: {result.stderr[-1500:]}")


def function_environments() -> dict[str, dict[str, Any]]:
    """Logical id -> {"dir", "env", "layers"} from template.yaml (intrinsics become stand-ins)."""
    loaded = template()
    globals_ = loaded["Globals"]["Function"]
    global_env = globals_["Environment"]["Variables"]
    global_layers = ["RefitLayer"]  # Globals: [!Ref RefitLayer]; SAM appends function Layers
    found: dict[str, dict[str, Any]] = {}
    for logical_id, resource in loaded["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        env = {**global_env, **((properties.get("Environment") or {}).get("Variables") or {})}
        layers = list(global_layers)
        if properties.get("Layers"):
            layers.append("TrainingCodeLayer")  # the only function-level layer in the template
        found[logical_id] = {
            "dir": ROOT / properties["CodeUri"],
            "env": env,
            "layers": layers,
        }
    return found


def stand_in(name: str, value: Any) -> str:
    """A plausible value for a variable whose template value is an intrinsic (read as None)."""
    if value is not None:
        return str(value)
    arns = {
        "STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:refit-retrain",
        "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:refit-notifications",
        "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/refit-sagemaker",
        "TRAINING_IMAGE_URI": (
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
        ),
    }
    defaults = {k: str(v) for k, v in _parameter_defaults().items()}
    by_variable = {
        "STACK_NAME": "refit",
        "DATA_BUCKET": "refit-data",
        "RUNS_TABLE": "refit-runs",
        "ENDPOINT_NAME": "refit-endpoint",
        "ROLLBACK_ALARMS": "refit-endpoint-5xx,refit-endpoint-latency",
        "POWERTOOLS_SERVICE_NAME": defaults["ProjectName"],
        "POWERTOOLS_METRICS_NAMESPACE": defaults["ProjectName"],
        "LOG_LEVEL": defaults["LogLevel"],
        **arns,
    }
    if name in by_variable:
        return by_variable[name]
    parameter = "".join(part.capitalize() for part in name.split("_"))
    aliases = {"MaxFileMb": "MaxFileMB", "InlineCheckMb": "InlineCheckMB"}
    parameter = aliases.get(parameter, parameter)
    if parameter in defaults:
        return defaults[parameter]
    raise KeyError(f"no stand-in for {name}")


@functools.cache
def _parameter_defaults() -> Mapping[str, Any]:
    # Parsed once: stand_in asks for every variable of every function (pure-Python YAML).
    return MappingProxyType({n: p.get("Default") for n, p in template()["Parameters"].items()})


def lambda_env(function: dict[str, Any], python: str) -> dict[str, str]:
    env = {name: stand_in(name, value) for name, value in function["env"].items()}
    keep = {"PATH", "HOME", "LANG", "PYENV_ROOT"}
    base = {k: v for k, v in os.environ.items() if k in keep}
    return {
        **base,
        **env,
        "PYENV_VERSION": Path(python).parent.parent.name,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_LAMBDA_FUNCTION_NAME": function["dir"].name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{LAMBDA_PYTHON}",
        "LAMBDA_TASK_ROOT": str(function["dir"]),
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "TRAINING_CODE_DIR": str(ROOT / "training"),
        # /var/task is read-only in Lambda: app.py is compiled at every cold start.
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def import_time(
    python: str, function: dict[str, Any], layer: Path, sdk: Path, driver: str = DRIVER
) -> dict[str, Any]:
    app = function["dir"] / "app.py"
    # -I: no user site, no PYTHON* variables, no script dir; sys.path is Lambda's order.
    code = (
        "import sys; "
        f"sys.path[:0] = {[str(function['dir']), str(layer), str(sdk)]!r}; "
        f"exec({driver!r})"
    )
    result = subprocess.run(
        [python, "-I", "-c", code, str(app)],
        env=lambda_env(function, python),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing {app} failed: {result.stderr[-1500:]}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def forbidden_packages(path: Path) -> list[str]:
    found = []
    for candidate in path.rglob("*"):
        if candidate.name in FORBIDDEN and candidate.is_dir():
            found.append(str(candidate.relative_to(path)))
    return found


def built_layers(python: str, work: Path) -> tuple[dict[str, Path], str]:
    """Layer roots as ``sam build`` leaves them, and where they came from."""
    build = ROOT / ".aws-sam" / "build"
    if (build / "RefitLayer").is_dir():
        return {name: build / name for name in ("RefitLayer", "TrainingCodeLayer")}, str(build)
    layers: dict[str, Path] = {}
    env = {**os.environ, "PYTHON": python, "PYENV_VERSION": Path(python).parent.parent.name}
    for name, makefile in (("RefitLayer", LAYER_DIR), ("TrainingCodeLayer", ROOT / "training")):
        target = work / name
        target.mkdir()
        _run_make(makefile, f"build-{name}", target, env)
        layers[name] = target
    return layers, "layers built by their Makefiles into a temp dir (no .aws-sam/build)"


def _run_make(directory: Path, target: str, artifacts: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        ["make", "-s", "-C", str(directory), target, f"ARTIFACTS_DIR={artifacts}"],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"make {target} failed: {result.stderr[-1500:]}")


def measure(quick: bool = False, progress: Any = print) -> list[Row]:
    python = lambda_python()
    progress(f"  python {python}")
    layer, sdk = runtime_site(python)
    functions = function_environments()
    repeats = REPEATS[quick]
    rows: list[Row] = []
    timings: dict[str, dict[str, Any]] = {}
    any_function = next(iter(functions.values()))
    sdk_ms = median(
        [import_time(python, any_function, layer, sdk, BASELINE)["ms"] for _ in range(repeats)]
    )
    progress(f"  baseline (import boto3 + one client): median {sdk_ms:.0f} ms")
    for logical_id, function in sorted(functions.items(), key=lambda item: item[1]["dir"].name):
        runs = [import_time(python, function, layer, sdk) for _ in range(repeats)]
        ms = [r["ms"] for r in runs]
        timings[logical_id] = {
            "median_ms": round(median(ms), 1),
            "all_ms": [round(m, 1) for m in ms],
            "modules": runs[0]["modules"],
            "heavy_imports": runs[0]["heavy"],
            "sdk_baseline_median_ms": round(sdk_ms, 1),
        }
        progress(f"  {function['dir'].name}: median {median(ms):.0f} ms of {repeats}")

    build = ROOT / ".aws-sam" / "build"
    with tempfile.TemporaryDirectory(prefix="refit-bench-layers-") as temp:
        layers, source = built_layers(python, Path(temp))
        sizes: dict[str, dict[str, Any]] = {}
        for logical_id, function in functions.items():
            code = build / logical_id if (build / logical_id).is_dir() else function["dir"]
            parts = {"function": tree_size(code)}
            parts.update({name: tree_size(layers[name]) for name in function["layers"]})
            bad = forbidden_packages(code) + [
                f"{name}/{p}"
                for name in function["layers"]
                for p in forbidden_packages(layers[name])
            ]
            sizes[logical_id] = {"bytes": parts, "total": sum(parts.values()), "forbidden": bad}

    for logical_id, function in sorted(functions.items(), key=lambda item: item[1]["dir"].name):
        name = function["dir"].name
        timing = timings[logical_id]
        slow = timing["median_ms"] > COLD_START_TARGET_MS
        rows.append(
            Row(
                4,
                f"cold start {name} (median import + init, python{LAMBDA_PYTHON})",
                f"{timing['median_ms']:.0f} ms",
                f"≤ {COLD_START_TARGET_MS:.0f} ms",
                not slow and not timing["heavy_imports"],
                reproduce(4, quick),
                (
                    f"{timing['modules']} modules; of the {timing['median_ms']:.0f} ms, "
                    f"{sdk_ms:.0f} ms is importing boto3 and creating one client (the runtime's "
                    f"SDK, measured alone the same way); numpy/xgboost/sagemaker imported: "
                    f"{timing['heavy_imports'] or 'none'}"
                    if slow or timing["heavy_imports"]
                    else ""
                ),
                {**timing, "repeats": repeats, "python": python},
            )
        )
        size = sizes[logical_id]
        mb = size["total"] / 1e6
        parts_text = " + ".join(f"{k} {v / 1e6:.2f}" for k, v in size["bytes"].items())
        rows.append(
            Row(
                4,
                f"size {name} + layers, unzipped",
                f"{mb:.1f} MB ({parts_text})",
                f"≤ {SIZE_TARGET_MB:.0f} MB, no {'/'.join(FORBIDDEN)}",
                mb <= SIZE_TARGET_MB and not size["forbidden"],
                reproduce(4, quick),
                f"carries {size['forbidden']}" if size["forbidden"] else "",
                {**size, "source": source},
            )
        )
    return rows


if __name__ == "__main__":
    for row in measure("--quick" in sys.argv):
        print(row.figure, row.name, row.measured, row.verdict, row.note)
