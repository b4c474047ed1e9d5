"""The XGBoost image mapping and scripts/generate_image_map.py (tested without the SDK)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.static.static_helpers import REPO

SCRIPT = REPO / "scripts" / "generate_image_map.py"
VERSION = "3.0-5"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_image_map", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_script()


def _fake_config(training: dict[str, str], inference: dict[str, str] | None = None) -> Any:
    def scope(registries: dict[str, str]) -> dict[str, Any]:
        return {
            "version_aliases": {"latest": "1"},
            "versions": {
                "1.7-1": {"registries": {"us-east-1": "000000000000"}, "repository": "x"},
                VERSION: {"registries": registries, "repository": "sagemaker-xgboost"},
            },
        }

    return {"training": scope(training), "inference": scope(inference or training)}


FAKE_REGISTRIES = {"us-east-1": "111111111111", "cn-north-1": "222222222222"}
TEMPLATE = """Mappings:
  # BEGIN generated: XGBoostImageByRegion
  XGBoostImageByRegion:
    us-east-1:
      Uri: old
  # END generated

Resources: {}
"""


@pytest.fixture
def fake_json(tmp_path: Path) -> Path:
    path = tmp_path / "xgboost.json"
    path.write_text(json.dumps(_fake_config(FAKE_REGISTRIES)))
    return path


def test_template_maps_us_east_1_to_the_pinned_image(template: dict[str, Any]) -> None:
    # Given the generated mapping in template.yaml
    mapping = template["Mappings"]["XGBoostImageByRegion"]
    # Then us-east-1 has the known image and every region pins 3.0-5
    assert mapping["us-east-1"]["Uri"] == (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
    )
    assert all(entry["Uri"].endswith(f"sagemaker-xgboost:{VERSION}") for entry in mapping.values())
    assert mapping["cn-north-1"]["Uri"].split("/")[0].endswith(".amazonaws.com.cn")


def test_template_block_is_exactly_what_the_script_renders(
    template: dict[str, Any], template_text: str
) -> None:
    # Given the mapping as template.yaml holds it
    mapping = {r: e["Uri"] for r, e in template["Mappings"]["XGBoostImageByRegion"].items()}
    # Then re-rendering it changes nothing (nobody hand-edited the generated block)
    assert gen.is_current(template_text, mapping)


def test_build_mapping_formats_uris_per_partition() -> None:
    # Given a fake SDK table
    config = _fake_config(FAKE_REGISTRIES)
    # When the mapping is built
    mapping = gen.build_mapping(config, VERSION)
    # Then each region gets its account, partition domain and the pinned tag
    assert mapping == {
        "cn-north-1": "222222222222.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-xgboost:3.0-5",
        "us-east-1": "111111111111.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
    }


def test_build_mapping_refuses_unknown_versions_and_split_registries() -> None:
    # Given tables without the version, or with training and inference images that differ
    split = _fake_config(FAKE_REGISTRIES, {"us-east-1": "999999999999"})
    # Then the script refuses rather than guessing
    with pytest.raises(gen.ImageMapError, match="not in the training table"):
        gen.build_mapping(_fake_config(FAKE_REGISTRIES), "9.9-9")
    with pytest.raises(gen.ImageMapError, match="differ"):
        gen.build_mapping(split, VERSION)


def test_check_fails_on_a_stale_block_and_passes_after_regeneration(
    tmp_path: Path, fake_json: Path
) -> None:
    # Given a template whose block is stale
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE)
    args = ["--from-json", str(fake_json), "--template", str(template)]
    # When --check runs, Then it fails and writes nothing
    assert gen.main([*args, "--check"]) == 1
    assert template.read_text() == TEMPLATE
    # When the script regenerates, Then the block is rewritten and everything else kept
    assert gen.main(args) == 0
    text = template.read_text()
    assert "Uri: old" not in text
    assert "    us-east-1:\n      Uri: 111111111111.dkr.ecr.us-east-1.amazonaws.com/" in text
    assert text.endswith("Resources: {}\n")
    # And --check now passes
    assert gen.main([*args, "--check"]) == 0


def test_check_ignores_the_provenance_comment(tmp_path: Path, fake_json: Path) -> None:
    # Given a current block generated from one source
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE)
    assert gen.main(["--from-json", str(fake_json), "--template", str(template)]) == 0
    # When the same table is checked from a wheel (another origin in the comment)
    wheel = tmp_path / "sagemaker_core-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("sagemaker/core/image_uri_config/xgboost.json", fake_json.read_text())
    # Then it is still current
    assert gen.main(["--from-wheel", str(wheel), "--template", str(template), "--check"]) == 0


def test_missing_markers_are_an_error(tmp_path: Path, fake_json: Path) -> None:
    # Given a template without the markers
    template = tmp_path / "template.yaml"
    template.write_text("Resources: {}\n")
    # Then the script exits 2 with a message
    assert gen.main(["--from-json", str(fake_json), "--template", str(template)]) == 2


def test_with_lambda_python_is_valid_bash() -> None:
    # Given the wrapper that puts python3.13 on PATH for sam build
    script = REPO / "scripts" / "with-lambda-python"
    # Then it is executable and parses
    assert script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)
