"""A fix to moto's ASL parser: ``"RoleArn.$"`` inside Parameters is a path, not a literal.

moto's lexer has a keyword token for ``"RoleArn.$"`` (``Credentials.RoleArn.$``). Inside a
payload template (Parameters, ResultSelector, ItemSelector) that token does not match the
``STRINGDOLLAR`` rule of a path binding, so it falls through to a literal binding: the task
received the key ``RoleArn.$`` with the path text as its value. retrain.asl.json's Train state
has ``"RoleArn.$": "$.run.trainingJob.RoleArn"``. (No other ASL keyword ends in ``.$``.)

``Preprocessor.visitPayload_binding_value`` is wrapped: a literal binding whose field ends in
``.$`` becomes the path binding it should have been (JSONPath, context path or intrinsic
function, as ``visitPayload_binding_sample`` builds them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.stepfunctions.parser.asl.component.common.payload.payloadvalue.payloadbinding import (
    payload_binding,
)
from moto.stepfunctions.parser.asl.component.common.payload.payloadvalue.payloadvaluelit.payload_value_str import (  # noqa: E501
    PayloadValueStr,
)
from moto.stepfunctions.parser.asl.component.common.string import string_expression
from moto.stepfunctions.parser.asl.parse import preprocessor
from moto.stepfunctions.parser.asl.parse.intrinsic.intrinsic_parser import IntrinsicParser

from ._patching import Patch, Replace, Require


def path_expression(text: str) -> Any:
    """The StringExpressionSimple a ``"Key.$"`` value stands for."""
    if text.startswith("$$"):
        return string_expression.StringContextPath(context_object_path=text)
    if text.startswith("$"):
        return string_expression.StringJsonPath(json_path=text)
    if text.startswith("States."):
        function, _ = IntrinsicParser.parse(text)
        return string_expression.StringIntrinsicFunction(
            intrinsic_function_derivation=text, function=function
        )
    raise ValueError(f"the value of a '.$' field must be a path or intrinsic function: {text!r}")


def _build_visit_payload_binding_value(original: Callable[[Any, Any], Any]) -> Any:
    def visitPayload_binding_value(self: Any, ctx: Any) -> Any:
        binding = original(self, ctx)
        value = getattr(binding, "payload_value", None)
        if binding.field.endswith(".$") and isinstance(value, PayloadValueStr):
            return payload_binding.PayloadBindingStringExpressionSimple(
                field=binding.field[:-2], string_expression_simple=path_expression(value.val)
            )
        return binding

    return visitPayload_binding_value


def patches() -> list[Patch]:
    return [
        Require(
            payload_binding.PayloadBindingValue, "__init__", ("self", "field", "payload_value")
        ),
        Require(
            payload_binding.PayloadBindingStringExpressionSimple,
            "__init__",
            ("self", "field", "string_expression_simple"),
        ),
        Require(string_expression.StringJsonPath, "__init__", ("self", "json_path")),
        Require(string_expression.StringContextPath, "__init__", ("self", "context_object_path")),
        Require(
            string_expression.StringIntrinsicFunction,
            "__init__",
            ("self", "intrinsic_function_derivation", "function"),
        ),
        Require(PayloadValueStr, "__init__", ("self", "val")),
        Require(IntrinsicParser, "parse", ("src",)),
        Replace(
            preprocessor.Preprocessor,
            "visitPayload_binding_value",
            ("self", "ctx"),
            _build_visit_payload_binding_value,
        ),
    ]
