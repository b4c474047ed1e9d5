"""``iam:SimulatePrincipalPolicy``, answered from the principal's real policies (moto has none).

The SageMaker Python SDK v3 validates an execution role before it creates a job: it pages
SimulatePrincipalPolicy over the actions the role needs and refuses a role with a definite
deny (``sagemaker/core/helper/iam_role_resolver.py``); moto 5.2.5 answers the call with an HTML
500. This evaluates the identity policies of a role or user as IAM's policy evaluation logic
describes (docs: "Policy evaluation logic", "IAM JSON policy elements"):

- the policies: inline and attached managed (their default version), a user's groups' too;
  a role's permissions boundary bounds the result (``PermissionsBoundaryDecisionDetail``);
- a statement applies when its ``Action``/``NotAction`` matches (case-insensitive, ``*`` and
  ``?`` wildcards), its ``Resource``/``NotResource`` matches the simulated resource (``*`` when
  the request names none, so a resource-scoped statement does not match it, as in IAM's
  simulator) and every ``Condition`` holds for the request's ``ContextEntries``;
- any applying Deny → ``explicitDeny``; else any applying Allow → ``allowed``; else
  ``implicitDeny``. A condition key with no context value fails its condition (an ``...IfExists``
  operator passes; ``Null`` tests the absence) and is listed in ``MissingContextValues``.

Condition operators: String*, Arn*, Bool, Null, Numeric*, each with ``IfExists``; set operators
(``ForAllValues:``/``ForAnyValue:``) and Date* are not evaluated: a statement using one does not
apply, and the result says so nowhere (none of refit's or the SDKs' policies use them).
Organizations SCPs and resource policies are not part of a local simulation.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from moto.core.responses import ActionResult
from moto.iam.exceptions import InvalidInput, NoSuchEntity
from moto.iam.models import IAMBackend
from moto.iam.responses import IamResponse

from ._patching import Add, Patch, Require

ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):(role|user)/(?:.*/)?([^/]+)$")


@dataclass(frozen=True)
class _Policy:
    source_id: str  # SourcePolicyId: the policy name or ARN
    source_type: str  # SourcePolicyType as IAM reports it
    statements: list[dict[str, Any]]


@dataclass
class _Decision:
    decision: str
    matched: list[dict[str, Any]]
    missing: set[str]


def simulate_principal_policy(self: IamResponse) -> ActionResult:
    source = self._get_param("PolicySourceArn")
    actions: list[str] = self._get_param("ActionNames", [])
    resources: list[str] = self._get_param("ResourceArns", []) or ["*"]
    context = _context(self._get_param("ContextEntries", []))
    policies, boundary = _principal_policies(self.backend, source)
    results = []
    for action in actions:
        for resource in resources:
            decision = _evaluate(policies, action, resource, context)
            result: dict[str, Any] = {
                "EvalActionName": action,
                "EvalResourceName": resource,
                "EvalDecision": decision.decision,
                "MatchedStatements": decision.matched,
                "MissingContextValues": sorted(decision.missing),
            }
            if boundary is not None:
                bounded = _evaluate([boundary], action, resource, context)
                allowed = bounded.decision == "allowed"
                result["PermissionsBoundaryDecisionDetail"] = {
                    "AllowedByPermissionsBoundary": allowed
                }
                if not allowed and decision.decision == "allowed":
                    result["EvalDecision"] = "implicitDeny"
            results.append(result)
    return ActionResult({"EvaluationResults": results, "IsTruncated": False})


def _principal_policies(backend: IAMBackend, arn: str) -> tuple[list[_Policy], _Policy | None]:
    match = ARN.match(arn or "")
    if match is None:
        raise InvalidInput(f"Invalid ARN: {arn} is not the ARN of a role or a user")
    kind, name = match.group(2), match.group(3)
    principal: Any
    if kind == "role":
        principal = backend.get_role(name)  # raises NoSuchEntity as IAM does
        if principal.arn != arn:
            raise NoSuchEntity(f"The role with name {name} cannot be found.")
    else:
        principal = backend.get_user(name)
    policies = [
        _Policy(policy_name, "role" if kind == "role" else "user", _statements(document))
        for policy_name, document in principal.policies.items()
    ]
    policies += [_managed(policy) for policy in principal.managed_policies.values()]
    if kind == "user":
        for group in backend.get_groups_for_user(name):
            policies += [_Policy(n, "group", _statements(d)) for n, d in group.policies.items()]
            policies += [_managed(policy) for policy in group.managed_policies.values()]
    boundary = None
    boundary_arn = getattr(principal, "permissions_boundary_arn", None)
    if boundary_arn:
        boundary = _managed(backend.get_policy(boundary_arn))
    return policies, boundary


def _managed(policy: Any) -> _Policy:
    version = next(v for v in policy.versions if v.is_default)
    return _Policy(policy.arn, "IAM Policy", _statements(version.document))


def _statements(document: str | dict[str, Any]) -> list[dict[str, Any]]:
    parsed = json.loads(document) if isinstance(document, str) else document
    statements = parsed.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _evaluate(
    policies: Iterable[_Policy], action: str, resource: str, context: dict[str, list[str]]
) -> _Decision:
    allows: list[dict[str, Any]] = []
    denies: list[dict[str, Any]] = []
    missing: set[str] = set()
    for policy in policies:
        for statement in policy.statements:
            if not _statement_applies(statement, action, resource, context, missing):
                continue
            matched = {"SourcePolicyId": policy.source_id, "SourcePolicyType": policy.source_type}
            (denies if statement.get("Effect") == "Deny" else allows).append(matched)
    if denies:
        return _Decision("explicitDeny", denies, missing)
    if allows:
        return _Decision("allowed", allows, missing)
    return _Decision("implicitDeny", [], missing)


def _statement_applies(
    statement: dict[str, Any],
    action: str,
    resource: str,
    context: dict[str, list[str]],
    missing: set[str],
) -> bool:
    if "NotAction" in statement:
        if _any_match(statement["NotAction"], action, ignore_case=True):
            return False
    elif not _any_match(statement.get("Action", []), action, ignore_case=True):
        return False
    if "NotResource" in statement:
        if _any_match(statement["NotResource"], resource):
            return False
    elif not _any_match(statement.get("Resource", []), resource):
        return False
    return _conditions_hold(statement.get("Condition") or {}, context, missing)


def _any_match(patterns: str | list[str], value: str, *, ignore_case: bool = False) -> bool:
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if ignore_case:
            pattern, candidate = pattern.lower(), value.lower()
        else:
            candidate = value
        # fnmatch's [...] classes are not IAM wildcards: escape them first.
        escaped = pattern.replace("[", "[[]")
        if fnmatch.fnmatchcase(candidate, escaped):
            return True
    return False


def _conditions_hold(
    conditions: dict[str, dict[str, Any]], context: dict[str, list[str]], missing: set[str]
) -> bool:
    for operator, tests in conditions.items():
        if ":" in operator:
            return False  # ForAllValues:/ForAnyValue: are not evaluated (module docstring)
        if_exists = operator.endswith("IfExists")
        base = operator.removesuffix("IfExists")
        for key, expected in tests.items():
            wanted = [str(v) for v in (expected if isinstance(expected, list) else [expected])]
            actual = context.get(key.lower())
            if base == "Null":
                if (actual is None) != (wanted[0].lower() == "true"):
                    return False
                continue
            if actual is None:
                missing.add(key)
                if if_exists:
                    continue
                return False
            if not _operator_holds(base, actual, wanted):
                return False
    return True


def _operator_holds(operator: str, actual: list[str], wanted: list[str]) -> bool:
    negated = "Not" in operator
    base = operator.replace("Not", "")
    if base in ("StringEquals", "ArnEquals"):
        hit = any(a == w for a in actual for w in wanted)
    elif base == "StringEqualsIgnoreCase":
        hit = any(a.lower() == w.lower() for a in actual for w in wanted)
    elif base in ("StringLike", "ArnLike"):
        hit = any(_any_match(w, a) for a in actual for w in wanted)
    elif base == "Bool":
        hit = any(a.lower() == w.lower() for a in actual for w in wanted)
    elif base.startswith("Numeric"):
        hit = any(_numeric(base, a, w) for a in actual for w in wanted)
    else:
        return False  # Date*, IpAddress, Binary: not evaluated
    return not hit if negated else hit


def _numeric(operator: str, actual: str, wanted: str) -> bool:
    try:
        a, w = float(actual), float(wanted)
    except ValueError:
        return False
    return {
        "NumericEquals": a == w,
        "NumericLessThan": a < w,
        "NumericLessThanEquals": a <= w,
        "NumericGreaterThan": a > w,
        "NumericGreaterThanEquals": a >= w,
    }.get(operator, False)


def _context(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """ContextEntries as {lower-cased key: values} (condition keys are case-insensitive)."""
    context: dict[str, list[str]] = {}
    for entry in entries:
        key = str(entry.get("ContextKeyName", "")).lower()
        values = entry.get("ContextKeyValues") or []
        context[key] = [str(v) for v in (values if isinstance(values, list) else [values])]
    return context


def patches() -> list[Patch]:
    return [
        Require(IamResponse, "_get_param", ("self", "param_name", "if_none")),
        Require(IAMBackend, "get_role", ("self", "role_name")),
        Require(IAMBackend, "get_user", ("self", "name")),
        Require(IAMBackend, "get_groups_for_user", ("self", "user_name")),
        Require(IAMBackend, "get_policy", ("self", "policy_arn")),
        Add(IamResponse, "simulate_principal_policy", simulate_principal_policy),
    ]
