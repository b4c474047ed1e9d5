#!/usr/bin/env python3
"""Regenerate the ``XGBoostImageByRegion`` mapping of ``template.yaml``.

The table of SageMaker XGBoost image URIs per region ships inside the ``sagemaker`` SDK as
``image_uri_config/xgboost.json``. The SDK is ~1 GB and slow to import, so this script never
imports it: it reads that one JSON file from an installed distribution (``sagemaker-core`` or
``sagemaker``, located through its file list), from a wheel (``--from-wheel``), or from a plain
JSON file (``--from-json``), and rewrites the lines between the markers::

    # BEGIN generated: XGBoostImageByRegion
    # END generated

Typical use, without installing the SDK anywhere::

    pip download --no-deps -d /tmp/smwheel sagemaker-core
    python scripts/generate_image_map.py --from-wheel /tmp/smwheel/sagemaker_core-*.whl
    python scripts/generate_image_map.py --from-wheel ... --check   # CI: exit 1 when stale
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import json
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MAPPING_NAME = "XGBoostImageByRegion"
BEGIN_MARKER = f"# BEGIN generated: {MAPPING_NAME}"
END_MARKER = "# END generated"
DEFAULT_VERSION = "3.0-5"
CONFIG_SUFFIX = "image_uri_config/xgboost.json"
DISTRIBUTIONS = ("sagemaker-core", "sagemaker")
DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"

# ECR DNS suffixes outside the commercial partition, as the SDK's ALTERNATE_DOMAINS has them.
_DNS_SUFFIX_BY_REGION_PREFIX = (
    ("cn-", "amazonaws.com.cn"),
    ("us-isob-", "sc2s.sgov.gov"),
    ("us-isof-", "csp.hci.ic.gov"),
    ("us-iso-", "c2s.ic.gov"),
    ("eu-isoe-", "cloud.adc-e.uk"),
    ("eusc-", "amazonaws.eu"),
)


class ImageMapError(RuntimeError):
    """The image table or the template is not what this script expects."""


def dns_suffix(region: str) -> str:
    for prefix, suffix in _DNS_SUFFIX_BY_REGION_PREFIX:
        if region.startswith(prefix):
            return suffix
    return "amazonaws.com"


def read_config_from_wheel(wheel: Path) -> tuple[dict[str, Any], str]:
    """The xgboost image config inside a downloaded sagemaker(-core) wheel, and its origin."""
    with zipfile.ZipFile(wheel) as archive:
        members = sorted(n for n in archive.namelist() if n.endswith(CONFIG_SUFFIX))
        if not members:
            raise ImageMapError(f"{wheel.name} holds no {CONFIG_SUFFIX}")
        # sagemaker-core keeps it in sagemaker/core/, sagemaker 2.x wheels in sagemaker/.
        member = members[0]
        data: dict[str, Any] = json.loads(archive.read(member))
    return data, wheel.name


def read_config_from_installed() -> tuple[dict[str, Any], str]:
    """The xgboost image config of an installed SDK, found without importing it."""
    for name in DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            if str(file).replace("\\", "/").endswith(CONFIG_SUFFIX):
                path = Path(str(dist.locate_file(file)))
                data: dict[str, Any] = json.loads(path.read_text())
                return data, f"{name} {dist.version}"
    raise ImageMapError(
        "no installed sagemaker-core/sagemaker distribution; pass --from-wheel "
        "(pip download --no-deps -d /tmp/smwheel sagemaker-core) or --from-json"
    )


def _scoped_versions(config: Mapping[str, Any], scope: str) -> Mapping[str, Any]:
    # Two layouts exist: {"scope": [...], "versions": {...}} and {"training": {...}, ...}.
    if "versions" in config:
        versions: Mapping[str, Any] = config["versions"]
        return versions
    if scope not in config:
        raise ImageMapError(f"image config has no {scope!r} scope")
    scoped: Mapping[str, Any] = config[scope]["versions"]
    return scoped


def build_mapping(config: Mapping[str, Any], version: str) -> dict[str, str]:
    """Region -> image URI for ``version``; the training and inference tables must agree."""
    registries_by_scope: dict[str, Mapping[str, str]] = {}
    repository = ""
    for scope in ("training", "inference"):
        versions = _scoped_versions(config, scope)
        if version not in versions:
            known = ", ".join(sorted(versions))
            raise ImageMapError(f"xgboost {version} is not in the {scope} table ({known})")
        entry = versions[version]
        registries_by_scope[scope] = entry["registries"]
        repository = entry["repository"]
    training, inference = registries_by_scope["training"], registries_by_scope["inference"]
    # refit trains and serves with one image: a region where the two differ needs a decision.
    differing = sorted(r for r in training if inference.get(r, training[r]) != training[r])
    if differing:
        raise ImageMapError(f"training and inference registries differ in {differing}")
    return {
        region: f"{account}.dkr.ecr.{region}.{dns_suffix(region)}/{repository}:{version}"
        for region, account in sorted(training.items())
    }


def render_block(mapping: Mapping[str, str], indent: str, origin: str) -> list[str]:
    """The YAML lines between (and excluding) the markers."""
    lines = [
        f"{indent}# scripts/generate_image_map.py from {origin}: do not edit by hand.",
        f"{indent}{MAPPING_NAME}:",
    ]
    for region, uri in mapping.items():
        lines += [f"{indent}  {region}:", f"{indent}    Uri: {uri}"]
    return lines


def _find_markers(lines: Sequence[str]) -> tuple[int, int]:
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_MARKER]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ImageMapError(f"expected one {BEGIN_MARKER!r} followed by one {END_MARKER!r}")
    return begins[0], ends[0]


def replace_block(template_text: str, mapping: Mapping[str, str], origin: str) -> str:
    lines = template_text.splitlines()
    begin, end = _find_markers(lines)
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    new_lines = [*lines[: begin + 1], *render_block(mapping, indent, origin), *lines[end:]]
    return "\n".join(new_lines) + "\n"


def _without_comments(text: str) -> list[str]:
    # The provenance comment names the SDK version; only the table itself must match.
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def is_current(template_text: str, mapping: Mapping[str, str]) -> bool:
    return _without_comments(template_text) == _without_comments(
        replace_block(template_text, mapping, "check")
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from-wheel", type=Path, help="a sagemaker-core or sagemaker wheel")
    source.add_argument("--from-json", type=Path, help="an xgboost.json image config")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="image version (%(default)s)")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the template is stale; write nothing"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if args.from_json is not None:
            config: dict[str, Any] = json.loads(args.from_json.read_text())
            origin = args.from_json.name
        elif args.from_wheel is not None:
            config, origin = read_config_from_wheel(args.from_wheel)
        else:
            config, origin = read_config_from_installed()
        mapping = build_mapping(config, args.version)
        current = args.template.read_text()
        if args.check:
            if is_current(current, mapping):
                print(f"{args.template.name}: {MAPPING_NAME} is current ({len(mapping)} regions)")
                return 0
            updated = replace_block(current, mapping, origin)
            diff = difflib.unified_diff(
                current.splitlines(),
                updated.splitlines(),
                "template.yaml",
                "generated",
                lineterm="",
            )
            print("\n".join(diff))
            print(f"{MAPPING_NAME} is stale: run scripts/generate_image_map.py", file=sys.stderr)
            return 1
        updated = replace_block(current, mapping, origin)
        if updated != current:
            args.template.write_text(updated)
        print(f"{args.template.name}: {MAPPING_NAME} has {len(mapping)} regions from {origin}")
        return 0
    except (ImageMapError, OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        print(f"generate_image_map: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
