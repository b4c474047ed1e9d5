"""SimulatePrincipalPolicy from the principal's own policies (local_cloud/moto_patches/iam_api.py),
through boto3 and its paginator, as the SageMaker Python SDK v3 calls it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local_cloud import moto_patches
from local_cloud.sagemaker import LocalSageMaker
from tests.emulator.local_sagemaker_harness import FAST_SETTINGS
from tests.emulator.moto_patches_harness import FakeLambdas

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture
def iam(tmp_path: Path) -> Iterator[Any]:
    with mock_aws():
        runtime = LocalSageMaker(
            boto3.client("s3", region_name="us-east-1"), tmp_path, settings=FAST_SETTINGS
        )
        moto_patches.install(sagemaker=runtime, invoke_lambda=FakeLambdas())
        try:
            yield boto3.client("iam", region_name="us-east-1")
        finally:
            moto_patches.uninstall()
            runtime.close()


def role_with(
    iam: Any, name: str, *inline: dict[str, Any], managed: tuple[dict[str, Any], ...] = ()
) -> str:
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]
    if inline:
        iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=document(*inline))
    for number, statement in enumerate(managed):
        policy = iam.create_policy(
            PolicyName=f"{name}-m{number}", PolicyDocument=document(statement)
        )
        iam.attach_role_policy(RoleName=name, PolicyArn=policy["Policy"]["Arn"])
    return str(role["Arn"])


def decisions(iam: Any, arn: str, actions: list[str], **extra: Any) -> dict[str, str]:
    pages = iam.get_paginator("simulate_principal_policy").paginate(
        PolicySourceArn=arn, ActionNames=actions, **extra
    )
    return {
        result["EvalActionName"]: result["EvalDecision"]
        for page in pages
        for result in page["EvaluationResults"]
    }


def test_allow_deny_and_nothing_are_allowed_explicit_and_implicit_denies(iam: Any) -> None:
    arn = role_with(
        iam,
        "jobs",
        {"Effect": "Allow", "Action": ["s3:GetObject", "logs:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "logs:DeleteLogGroup", "Resource": "*"},
        managed=({"Effect": "Allow", "Action": "SageMaker:Create*", "Resource": "*"},),
    )

    assert decisions(
        iam,
        arn,
        [
            "s3:GetObject",
            "sagemaker:CreateTrainingJob",  # actions match case-insensitively
            "logs:PutLogEvents",
            "logs:DeleteLogGroup",  # a Deny wins over logs:*
            "s3:PutObject",  # nothing allows it
        ],
    ) == {
        "s3:GetObject": "allowed",
        "sagemaker:CreateTrainingJob": "allowed",
        "logs:PutLogEvents": "allowed",
        "logs:DeleteLogGroup": "explicitDeny",
        "s3:PutObject": "implicitDeny",
    }
    result = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["s3:GetObject"])
    (only,) = result["EvaluationResults"]
    assert only["EvalResourceName"] == "*"
    assert only["MatchedStatements"][0]["SourcePolicyId"] == "inline"


def test_resource_scoped_statements_match_only_named_resources(iam: Any) -> None:
    arn = role_with(
        iam,
        "data",
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/data/*"},
    )

    # Without ResourceArns the resource is "*": a scoped statement does not apply (as in IAM)
    assert decisions(iam, arn, ["s3:GetObject"]) == {"s3:GetObject": "implicitDeny"}
    inside = decisions(iam, arn, ["s3:GetObject"], ResourceArns=["arn:aws:s3:::bucket/data/x"])
    outside = decisions(iam, arn, ["s3:GetObject"], ResourceArns=["arn:aws:s3:::bucket/code/x"])
    assert (inside, outside) == ({"s3:GetObject": "allowed"}, {"s3:GetObject": "implicitDeny"})


def test_conditions_use_the_context_entries_and_report_missing_keys(iam: Any) -> None:
    arn = role_with(
        iam,
        "tagged",
        {
            "Effect": "Allow",
            "Action": "sagemaker:AddTags",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestTag/refit:stack": "refit"}},
        },
    )
    context = [
        {
            "ContextKeyName": "aws:RequestTag/refit:stack",
            "ContextKeyValues": ["refit"],
            "ContextKeyType": "string",
        }
    ]

    missing = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["sagemaker:AddTags"])
    given = decisions(iam, arn, ["sagemaker:AddTags"], ContextEntries=context)
    other = [{**context[0], "ContextKeyValues": ["someone-else"]}]

    (result,) = missing["EvaluationResults"]
    assert result["EvalDecision"] == "implicitDeny"
    assert result["MissingContextValues"] == ["aws:RequestTag/refit:stack"]
    assert given == {"sagemaker:AddTags": "allowed"}
    assert decisions(iam, arn, ["sagemaker:AddTags"], ContextEntries=other) == {
        "sagemaker:AddTags": "implicitDeny"
    }


def test_a_permissions_boundary_bounds_what_the_policies_allow(iam: Any) -> None:
    boundary = iam.create_policy(
        PolicyName="boundary",
        PolicyDocument=document({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
    )["Policy"]["Arn"]
    iam.create_role(
        RoleName="bounded",
        AssumeRolePolicyDocument=json.dumps(TRUST),
        PermissionsBoundary=boundary,
    )
    iam.put_role_policy(
        RoleName="bounded",
        PolicyName="wide",
        PolicyDocument=document({"Effect": "Allow", "Action": "*", "Resource": "*"}),
    )
    arn = iam.get_role(RoleName="bounded")["Role"]["Arn"]

    result = iam.simulate_principal_policy(
        PolicySourceArn=arn, ActionNames=["s3:GetObject", "sagemaker:CreateTrainingJob"]
    )["EvaluationResults"]

    assert [r["EvalDecision"] for r in result] == ["allowed", "implicitDeny"]
    assert result[1]["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}


def test_an_unknown_or_malformed_principal_is_an_iam_error(iam: Any) -> None:
    with pytest.raises(ClientError) as unknown:
        iam.simulate_principal_policy(
            PolicySourceArn="arn:aws:iam::123456789012:role/nobody", ActionNames=["s3:GetObject"]
        )
    with pytest.raises(ClientError) as malformed:
        iam.simulate_principal_policy(
            PolicySourceArn="arn:aws:s3:::a-bucket-not-a-principal", ActionNames=["s3:GetObject"]
        )

    assert unknown.value.response["Error"]["Code"] == "NoSuchEntity"
    assert malformed.value.response["Error"]["Code"] == "InvalidInput"
