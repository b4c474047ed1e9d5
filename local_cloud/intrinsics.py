"""CloudFormation's intrinsic functions against the created stack, and ``DefinitionSubstitutions``.

What :mod:`local_cloud.deploy` applies on top of moto's CloudFormation comes from the translated
template's own properties, still full of ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If``...:
:class:`Resolver` turns them into values from the template's parameters, the pseudo parameters
and the stack's physical ids (attributes through the deployment's public-API lookups).
:func:`substitute_definition` does what Step Functions does with the ASL's ``${Name}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from local_cloud.stack import DeployError

_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class Resolver:
    """Resolves CloudFormation intrinsics against the created stack (public APIs only)."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        pseudo: Mapping[str, str],
        physical_ids: Mapping[str, str],
        attribute: Callable[[str, str, str], str],
    ) -> None:
        self._template = template
        self._values = {**parameters, **pseudo}
        self._physical = dict(physical_ids)
        self._attribute = attribute

    def set_physical_id(self, logical_id: str, physical_id: str) -> None:
        self._physical[logical_id] = physical_id

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self._template.get("Conditions", {})[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value if not _is_no_value(v)]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v) for k, v in value.items() if not _is_no_value(v)}
        ((key, arg),) = value.items()
        if key == "Ref":
            return self._ref(arg)
        if key == "Fn::GetAtt":
            logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self._get_att(logical_id, attribute)
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::If":
            name, if_true, if_false = arg
            return self.resolve(if_true if self.condition(name) else if_false)
        if key == "Fn::Join":
            separator, items = arg
            return str(separator).join(str(i) for i in self.resolve(items))
        if key == "Fn::Split":
            separator, text = arg
            return str(self.resolve(text)).split(separator)
        if key == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if key == "Fn::FindInMap":
            mapping, top, second = (self.resolve(a) for a in arg)
            return self._template["Mappings"][mapping][top][second]
        if key == "Fn::Equals":
            left, right = (self.resolve(a) for a in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(a) for a in arg)
        if key == "Fn::Or":
            return any(self.resolve(a) for a in arg)
        if key == "Condition":
            return self.condition(arg)
        return {key: self.resolve(arg)}

    def _ref(self, name: str) -> str:
        if name in self._values:
            return self._values[name]
        if name in self._physical:
            return self._physical[name]
        raise DeployError(f"cannot resolve Ref {name}")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        resource = self._template["Resources"].get(logical_id)
        if resource is None or logical_id not in self._physical:
            raise DeployError(f"cannot resolve GetAtt {logical_id}.{attribute}: no such resource")
        return self._attribute(resource["Type"], self._physical[logical_id], attribute)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self._get_att(logical_id, attribute)
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, str(text))


def _is_no_value(value: Any) -> bool:
    return isinstance(value, dict) and value == {"Ref": "AWS::NoValue"}


def substitute_definition(text: str, substitutions: Mapping[str, str]) -> str:
    """What Step Functions does with ``DefinitionSubstitutions``: ``${Name}`` -> value.

    Every ``${...}`` must have a substitution (a leftover would reach the interpreter as a
    literal resource name and fail only at run time).
    """
    missing = sorted({m.group(1) for m in _SUB_VARIABLE.finditer(text)} - set(substitutions))
    if missing:
        raise DeployError(f"definition uses ${{...}} without a substitution: {missing}")
    return _SUB_VARIABLE.sub(lambda m: str(substitutions[m.group(1)]), text)
