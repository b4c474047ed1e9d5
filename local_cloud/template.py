"""``template.yaml`` as data: loaded, its parameters checked, and translated by the SAM transform.

The steps of a deployment that need no emulator: :func:`load_template` reads CloudFormation's
short-form tags (``!Ref``, ``!Sub``...) as their long form, :func:`effective_parameters` merges
overrides with the defaults and checks them, and :func:`translate` applies the
``AWS::Serverless-2016-10-31`` transform offline with aws-sam-translator (moto's CloudFormation
does not apply it). :mod:`local_cloud.deploy` runs them around :mod:`local_cloud.artifacts`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import yaml

from local_cloud.stack import FAKE_CREDENTIALS, REPO_ROOT, DeployError

TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader reading CloudFormation short-form tags (``!Ref``, ``!Sub``...) as long form."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)  # type: ignore[no-untyped-call]


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)
    return loaded


# ---------------------------------------------------------------------------- parameters


def effective_parameters(
    template: Mapping[str, Any], overrides: Mapping[str, object] | None
) -> tuple[dict[str, str], list[str]]:
    """Template defaults + overrides, as strings; refuses unknown names and bad values.

    ``AllowedValues`` and ``AllowedPattern`` are enforced as CloudFormation does. ``MinValue`` and
    ``MaxValue`` only warn: AWS-oriented minimums (``EndpointPollSeconds`` >= 5) are legitimately
    undercut by local demos and tests (the functions' own config accepts them).
    """
    declared: Mapping[str, Any] = template.get("Parameters", {})
    unknown = sorted(set(overrides or {}) - set(declared))
    if unknown:
        raise DeployError(f"unknown template parameter(s): {', '.join(unknown)}")
    values: dict[str, str] = {}
    warnings: list[str] = []
    for name, spec in declared.items():
        raw = (overrides or {}).get(name, spec.get("Default"))
        if raw is None:
            raise DeployError(f"parameter {name} has no default: give a value")
        value = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            raise DeployError(f"parameter {name}={value!r} is not one of {spec['AllowedValues']}")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            raise DeployError(f"parameter {name}={value!r} does not match {spec['AllowedPattern']}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                raise DeployError(f"parameter {name} must be a number, got {value!r}") from None
            low, high = spec.get("MinValue"), spec.get("MaxValue")
            if (low is not None and number < float(low)) or (
                high is not None and number > float(high)
            ):
                warnings.append(
                    f"parameter {name}={value} is outside [{low}, {high}]: AWS would refuse it"
                )
        values[name] = value
    return values, warnings


def translate(sam_template: Mapping[str, Any], region: str) -> dict[str, Any]:
    """The SAM transform, offline (no managed policy lookups)."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    session = boto3.session.Session(region_name=region, **FAKE_CREDENTIALS)
    translator = Translator(None, Parser(), boto_session=session)
    translated: dict[str, Any] = translator.translate(
        copy.deepcopy(dict(sam_template)),
        parameter_values={},
        get_managed_policy_map=lambda: {},
    )
    return translated
