"""RefitLayer: layers/refit/requirements.txt and layers/refit/Makefile, checked offline.

`sam build` runs ``make build-RefitLayer``, which needs PyPI. Here the Makefile runs for real
with a stand-in for ``$(PYTHON)`` that records its command lines instead of running pip and
compileall: the copy of the package, the pip flags and the compile step are what the build does.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from local_cloud.artifacts import MAKEFILE_LAYER_PREFIXES
from tests.static.static_helpers import REPO

LAYER_DIR = REPO / "layers" / "refit"
REQUIREMENTS = LAYER_DIR / "requirements.txt"
# What the Lambda python3.13 runtime ships (/var/runtime): the layer must not shadow it.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
# Marker environment of the Lambda runtime of template.yaml (python3.13, arm64).
LAMBDA_MARKERS = {
    "python_version": "3.13",
    "python_full_version": "3.13.0",
    "platform_machine": "aarch64",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
SEP = "\x1f"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _layer_requirements() -> list[Requirement]:
    lines = REQUIREMENTS.read_text().splitlines()
    return [Requirement(line) for line in (x.strip() for x in lines) if line and line[0] != "#"]


def _pins() -> dict[str, str]:
    return {_norm(r.name): str(r.specifier).removeprefix("==") for r in _layer_requirements()}


def _requires(dist: str, extras: set[str]) -> list[Requirement]:
    found = []
    for text in importlib.metadata.requires(dist) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(
            marker.evaluate({**LAMBDA_MARKERS, "extra": extra}) for extra in extras or {""}
        ):
            found.append(requirement)
    return found


# ------------------------------------------------------------------------ requirements.txt


def test_layer_requirements_are_exact_pins_without_the_runtime_sdk() -> None:
    requirements = _layer_requirements()
    assert requirements
    for requirement in requirements:
        # --no-deps ignores extras and nothing resolves ranges: exact pins only
        assert len(requirement.specifier) == 1, requirement
        assert next(iter(requirement.specifier)).operator == "==", requirement
        assert not requirement.extras and requirement.marker is None, requirement
    assert not set(_pins()) & RUNTIME_PROVIDED


def test_pyproject_pins_the_layers_powertools() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    (powertools,) = (
        Requirement(d)
        for d in pyproject["project"]["dependencies"]
        if _norm(Requirement(d).name) == "aws-lambda-powertools"
    )
    # No [tracer]: the X-Ray SDK is not in the functions (cold start, layers/refit/requirements.txt)
    assert powertools.extras == set()
    assert str(powertools.specifier) == f"=={_pins()['aws-lambda-powertools']}"


def test_layer_requirements_are_powertools_closure_minus_the_runtime() -> None:
    # Given the Powertools the tests run with (pyproject pins the layer's version)
    pins = _pins()
    assert importlib.metadata.version("aws-lambda-powertools") == pins["aws-lambda-powertools"]
    # When its dependencies are followed, stopping at what the runtime provides
    needed: dict[str, list[Requirement]] = {"aws-lambda-powertools": []}
    todo: list[tuple[str, set[str]]] = [("aws-lambda-powertools", set())]
    while todo:
        dist, extras = todo.pop()
        for requirement in _requires(dist, extras):
            name = _norm(requirement.name)
            if name in RUNTIME_PROVIDED:
                continue
            if name not in needed:
                todo.append((name, set(requirement.extras)))
            needed.setdefault(name, []).append(requirement)
    # Then the layer pins exactly those, at versions every dependent accepts
    assert set(pins) == set(needed)
    for name, wanted_by in needed.items():
        for requirement in wanted_by:
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{name}=={pins[name]} does not satisfy {requirement}"
            )


# ------------------------------------------------------------------------ the Makefile


def _fake_python(tmp_path: Path) -> Path:
    """A $(PYTHON) that logs its arguments; ``-c`` (the version check) exits $FAKE_IS_313."""
    script = tmp_path / "fake-python"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f"(IFS=$'{SEP}'; printf '%s\\n' \"$*\") >> \"$FAKE_LOG\"\n"
        'if [ "$1" = -c ]; then [ "$FAKE_IS_313" = 1 ]; exit; fi\n'
    )
    script.chmod(0o755)
    return script


def _make(
    content_dir: Path, target: str, tmp_path: Path, *, is_313: bool = True, **variables: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {**os.environ, "FAKE_LOG": str(log), "FAKE_IS_313": "1" if is_313 else "0"}
    args = [f"{k}={v}" for k, v in variables.items()]
    done = subprocess.run(
        ["make", "-s", "-C", str(content_dir), target, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    calls = [line.split(SEP) for line in log.read_text().splitlines()]
    return done, calls


def _flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} in {args}"
    return args[args.index(name) + 1]


def test_makefile_builds_the_layer_the_lambda_runtime_needs(
    tmp_path: Path, resources: dict[str, Any]
) -> None:
    # Given the template's runtime and architecture of the layer
    props = resources["RefitLayer"]["Properties"]
    (runtime,) = props["CompatibleRuntimes"]
    version = runtime.removeprefix("python")
    assert resources["RefitLayer"]["Metadata"]["BuildArchitecture"] == "arm64"
    artifacts = tmp_path / "artifacts"
    # When the Makefile runs with a python that is the runtime's
    done, calls = _make(
        LAYER_DIR,
        "build-RefitLayer",
        tmp_path,
        ARTIFACTS_DIR=str(artifacts),
        PYTHON=str(_fake_python(tmp_path)),
    )
    assert done.returncode == 0, done.stderr
    # Then python/refit is the package's sources, nothing else (no caches, no local_cloud)
    site = artifacts / "python"
    assert [p.name for p in artifacts.iterdir()] == ["python"]
    assert [p.name for p in site.iterdir()] == ["refit"]
    source = LAYER_DIR / "refit"
    expected = sorted(
        str(p.relative_to(source)) for p in source.rglob("*") if "__pycache__" not in p.parts
    )
    assert sorted(str(p.relative_to(site / "refit")) for p in (site / "refit").rglob("*")) == (
        expected
    )
    # (data files included: refit.record_run.cost reads its price table from the package)
    table = Path("record_run") / "prices.json"
    assert (site / "refit" / table).read_bytes() == (source / table).read_bytes()
    # And pip installs exactly requirements.txt, without resolving, as wheels for the runtime
    pip = [c for c in calls if c[:3] == ["-m", "pip", "install"]]
    assert len(pip) == 1, calls
    (args,) = pip
    assert "--no-deps" in args
    assert Path(_flag(args, "--requirement")) == REQUIREMENTS
    assert Path(_flag(args, "--target")) == site
    assert "--only-binary=:all:" in args
    assert _flag(args, "--platform").endswith("_aarch64")
    assert _flag(args, "--python-version") == version
    assert _flag(args, "--implementation") == "cp"
    assert not [a for a in args if a == "-r" or a.startswith(("-r", "--requirement="))]
    # And then everything is byte-compiled for /opt/python, never checked against the sources
    compile_calls = [c for c in calls if c[:2] == ["-m", "compileall"]]
    assert len(compile_calls) == 1, calls
    (compile_args,) = compile_calls
    assert _flag(compile_args, "--invalidation-mode") == "unchecked-hash"
    assert _flag(compile_args, "-d") == "/opt/python"
    assert Path(compile_args[-1]) == site
    assert calls.index(args) < calls.index(compile_args)


def test_makefile_compiles_only_with_the_runtimes_python(tmp_path: Path) -> None:
    # When the build python is not the runtime's (its .pyc would be ignored by Lambda)
    done, calls = _make(
        LAYER_DIR,
        "build-RefitLayer",
        tmp_path,
        is_313=False,
        ARTIFACTS_DIR=str(tmp_path / "artifacts"),
        PYTHON=str(_fake_python(tmp_path)),
    )
    # Then the layer is built without .pyc, and the build says so
    assert done.returncode == 0, done.stderr
    assert [c[:3] for c in calls if c[0] == "-m"] == [["-m", "pip", "install"]]
    assert "no .pyc" in done.stderr


def test_makefile_refuses_to_run_without_artifacts_dir(tmp_path: Path) -> None:
    done, calls = _make(LAYER_DIR, "build-RefitLayer", tmp_path, PYTHON="false")
    assert done.returncode != 0
    assert "ARTIFACTS_DIR" in done.stderr
    assert calls == []


def test_local_deploy_zips_makefile_layers_where_their_makefile_builds_them(
    tmp_path: Path, resources: dict[str, Any]
) -> None:
    # Given every layer the template builds with a Makefile
    layers = {
        name: resource
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::LayerVersion"
        and resource.get("Metadata", {}).get("BuildMethod") == "makefile"
    }
    assert set(layers) == set(MAKEFILE_LAYER_PREFIXES)
    for name, resource in layers.items():
        # When its Makefile builds it (with a python that does nothing)
        artifacts = tmp_path / name
        done, _ = _make(
            REPO / resource["Properties"]["ContentUri"],
            f"build-{name}",
            tmp_path,
            ARTIFACTS_DIR=str(artifacts),
            PYTHON=str(_fake_python(tmp_path)),
        )
        assert done.returncode == 0, done.stderr
        # Then local_cloud.artifacts zips its ContentUri under the folder the build fills
        assert [p.name + "/" for p in artifacts.iterdir()] == [MAKEFILE_LAYER_PREFIXES[name]]
