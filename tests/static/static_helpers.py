"""Loaders and names the static tests share: template.yaml, the ASL and the contract's names.

A module with a unique name (not conftest) so that tests can import it unambiguously.
Everything here is offline and fast: no AWS, no Docker, no SAM CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO / "template.yaml"
ASL_PATH = REPO / "statemachine" / "retrain.asl.json"

# docs/architecture.md, "Functions": folder -> logical id.
FUNCTIONS = {
    "start_retrain": "StartRetrainFunction",
    "prepare_run": "PrepareRunFunction",
    "check_data_file": "CheckDataFileFunction",
    "evaluate_models": "EvaluateModelsFunction",
    "cleanup_resources": "CleanupResourcesFunction",
    "record_run": "RecordRunFunction",
}
# docs/architecture.md, "Definition substitutions".
SUBSTITUTIONS = {
    "PrepareRunFunctionArn",
    "CheckDataFileFunctionArn",
    "EvaluateModelsFunctionArn",
    "CleanupResourcesFunctionArn",
    "RecordRunFunctionArn",
    "SageMakerRoleArn",
}


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short-form tags as their long form."""


def _construct_tag(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_tag)  # type: ignore[no-untyped-call]


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=CfnLoader)
    return data


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar inside a loaded document, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements_of(document: Any) -> list[dict[str, Any]]:
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    return [s for s in as_list(statements) if isinstance(s, dict)]


def identity_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner, statement) for every inline statement of an IAM role or a SAM function."""
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for statement in statements_of(policy["PolicyDocument"]):
                    yield name, statement
        elif resource["Type"] == "AWS::Serverless::Function":
            for policy in as_list(props.get("Policies", [])):
                for statement in statements_of(policy):
                    yield name, statement


def actions_of(statement: dict[str, Any]) -> set[str]:
    return {str(a) for a in as_list(statement.get("Action", []))}


def allowed_actions(resources: dict[str, Any], owner: str) -> set[str]:
    return {
        action
        for name, statement in identity_statements(resources)
        if name == owner and statement.get("Effect") == "Allow"
        for action in actions_of(statement)
    }


def strings_in(node: Any) -> list[str]:
    """Every string in a node, including the text of Fn::Sub and Fn::Split of a Sub."""
    return [value for value in walk(node) if isinstance(value, str)]
