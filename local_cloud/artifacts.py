"""What ``sam package`` does, locally: code locations in the template become ``s3://`` objects.

Every function's ``CodeUri`` and layer's ``ContentUri`` is zipped (deterministically, so the same
code gives the same key) and the state machine's ``DefinitionUri`` file is read; the template
points at their ``s3://`` URIs. :func:`package` only computes: :mod:`local_cloud.deploy` uploads
:attr:`Package.uploads` to the artifact bucket, and the Lambda workers run from the local folders
:class:`Package` keeps. (Not ``packaging.py``: worker processes start from this folder's
``lambda_worker_main.py``, so it is first on their ``sys.path``, where that name would shadow the
``packaging`` distribution.)
"""

from __future__ import annotations

import copy
import hashlib
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_cloud.stack import DeployError

# Layers with `BuildMethod: makefile`: the folder their Makefile fills in the layer (/opt/...).
# Locally the ContentUri is zipped under it as is (no `make`, no pip: the venv has the deps);
# python/ is importable (/opt/python), so workers put the ContentUri on their PYTHONPATH.
MAKEFILE_LAYER_PREFIXES: dict[str, str] = {
    "RefitLayer": "python/",  # layers/refit/Makefile: the refit package + pinned deps
    "TrainingCodeLayer": "refit_training/",  # training/Makefile (TRAINING_CODE_DIR)
}


def _zip_dir(directory: Path, prefix: str = "") -> bytes:
    """A deterministic zip of ``directory`` (no caches), entries under ``prefix``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            skipped = {"__pycache__", ".mypy_cache", ".pytest_cache"}
            if not path.is_file() or skipped & set(relative.parts) or path.suffix == ".pyc":
                continue
            info = zipfile.ZipInfo(
                f"{prefix}{relative.as_posix()}", date_time=(1980, 1, 1, 0, 0, 0)
            )
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


@dataclass(frozen=True)
class Package:
    sam_template: dict[str, Any]  # CodeUri/ContentUri/DefinitionUri replaced by s3:// URIs
    code_dirs: dict[str, Path]  # function logical id -> local CodeUri
    layer_dirs: dict[str, Path]  # layer logical id (SAM's) -> local ContentUri
    layer_python: dict[str, bool]
    definition_keys: dict[str, str]  # state machine logical id -> artifact key of its ASL
    uploads: dict[str, bytes]  # artifact key -> content


def package(template: Mapping[str, Any], repo_root: Path, bucket: str, stack: str) -> Package:
    """What ``sam package`` does: local code locations become ``s3://`` objects."""
    sam = copy.deepcopy(dict(template))
    code_dirs: dict[str, Path] = {}
    layer_dirs: dict[str, Path] = {}
    layer_python: dict[str, bool] = {}
    definition_keys: dict[str, str] = {}
    uploads: dict[str, bytes] = {}

    def upload(logical_id: str, content: bytes, suffix: str) -> str:
        key = f"{stack}/{logical_id}-{hashlib.sha256(content).hexdigest()[:16]}{suffix}"
        uploads[key] = content
        return f"s3://{bucket}/{key}"

    for logical_id, resource in sam["Resources"].items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::Serverless::Function":
            directory = (repo_root / props["CodeUri"]).resolve()
            if not (directory / "app.py").is_file():
                raise DeployError(f"{logical_id}: no app.py in CodeUri {directory}")
            code_dirs[logical_id] = directory
            props["CodeUri"] = upload(logical_id, _zip_dir(directory), ".zip")
        elif kind == "AWS::Serverless::LayerVersion":
            directory = (repo_root / props["ContentUri"]).resolve()
            method = str(resource.get("Metadata", {}).get("BuildMethod", ""))
            if method.startswith("python"):
                prefix = "python/"  # SAM builds python layers into python/
            elif logical_id in MAKEFILE_LAYER_PREFIXES:
                prefix = MAKEFILE_LAYER_PREFIXES[logical_id]
            else:
                raise DeployError(
                    f"{logical_id}: BuildMethod {method!r}: where does its content go in the "
                    "layer? (see MAKEFILE_LAYER_PREFIXES)"
                )
            layer_dirs[logical_id] = directory
            layer_python[logical_id] = prefix == "python/"
            props["ContentUri"] = upload(logical_id, _zip_dir(directory, prefix), ".zip")
        elif kind == "AWS::Serverless::StateMachine" and isinstance(
            props.get("DefinitionUri"), str
        ):
            text = (repo_root / props["DefinitionUri"]).read_bytes()
            uri = upload(logical_id, text, ".asl.json")
            definition_keys[logical_id] = uri.removeprefix(f"s3://{bucket}/")
            props["DefinitionUri"] = uri
    return Package(sam, code_dirs, layer_dirs, layer_python, definition_keys, uploads)
