"""The deployed local stack as the rest of the local cloud sees it, and what the deployment shares.

:func:`local_cloud.deploy.deploy` returns a :class:`DeployedStack`: the Lambda workers, the SQS
pollers and :mod:`local_cloud.cloud` run from it and its :class:`FunctionInfo`,
:class:`LayerInfo` and :class:`EventSourceMappingInfo`. Standard library only, so reading a
deployed stack does not import the deployer (PyYAML, aws-sam-translator). :class:`DeployError`
is what every step of the deployment raises (:mod:`local_cloud.template`,
:mod:`local_cloud.artifacts`, :mod:`local_cloud.intrinsics`, :mod:`local_cloud.deploy`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # template.yaml, functions/, layers/...
# moto accepts any credentials: the emulator's clients use these.
FAKE_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}

# Settings of the template that have no local effect, and why. Reported, never silently lost.
NOT_APPLIED: tuple[str, ...] = (
    "Lambda TracingConfig/Architectures/LoggingConfig: moto's Lambda API cannot set them; "
    "workers run the host's Python with POWERTOOLS_TRACE_DISABLED=true and capture their logs",
    "IAM ManagedPolicyArns: AWS managed policies are not loaded in moto; IAM is not enforced",
    "DynamoDB SSESpecification, SQS SqsManagedSseEnabled, SNS KmsMasterKeyId: no local effect",
    "S3 lifecycle expirations, DynamoDB TTL deletions: stored, never executed by moto",
    "DeletionPolicy/UpdateReplacePolicy/RetentionPolicy: the local stack is never deleted or "
    "updated; moto's state lives in memory and ends with the process",
)


class DeployError(RuntimeError):
    """The template cannot be deployed into the emulator."""


@dataclass(frozen=True)
class LayerInfo:
    logical_id: str  # as in template.yaml (SAM suffixes a hash in the translated template)
    name: str
    arn: str  # layer version ARN
    content_dir: Path  # the layer's ContentUri on this machine
    on_python_path: bool  # built into python/: the content is importable (/opt/python)


@dataclass(frozen=True)
class FunctionInfo:
    logical_id: str
    name: str
    arn: str
    code_dir: Path  # functions/<x>: the function's CodeUri on this machine
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: Mapping[str, str]  # resolved, as Lambda would set it
    layers: tuple[LayerInfo, ...]
    role_arn: str
    log_group: str  # LoggingConfig.LogGroup, else /aws/lambda/<name>


@dataclass(frozen=True)
class EventSourceMappingInfo:
    uuid: str
    function_logical_id: str
    function_name: str
    queue_arn: str
    queue_url: str  # the emulator's URL of the queue
    batch_size: int
    maximum_batching_window_seconds: int
    report_batch_item_failures: bool
    maximum_concurrency: int | None
    enabled: bool


@dataclass(frozen=True)
class DeployedStack:
    """What the local cloud needs to know about the deployed stack."""

    stack_name: str
    stack_id: str
    region: str
    account_id: str
    endpoint_url: str
    bucket: str
    state_machine_arn: str
    runs_table: str
    topic_arn: str
    queue_url: str
    dead_letter_queue_url: str
    endpoint_name: str
    parameters: Mapping[str, str]
    outputs: Mapping[str, str]
    functions: Mapping[str, FunctionInfo]  # logical id -> function
    event_source_mappings: tuple[EventSourceMappingInfo, ...]
    resources: Mapping[str, tuple[str, str]]  # logical id -> (type, physical id)
    filled: tuple[str, ...]  # what deploy applied on top of moto's CloudFormation
    not_applied: tuple[str, ...] = NOT_APPLIED
    artifact_bucket: str = ""
    warnings: tuple[str, ...] = field(default=())

    def function(self, name_or_arn: str) -> FunctionInfo:
        """The function named by logical id, name, ARN (qualified or not) or partial ARN."""
        if name_or_arn in self.functions:
            return self.functions[name_or_arn]
        name = function_name_from(name_or_arn)
        for function in self.functions.values():
            if function.name == name:
                return function
        raise KeyError(f"no function {name_or_arn!r} in stack {self.stack_name}")


_ARN_NAME = re.compile(r"^(?:arn:[^:]+:lambda:[^:]+:)?(?:\d{12}:)?(?:function:)?([^:]+)(?::.+)?$")


def function_name_from(name_or_arn: str) -> str:
    """``name``, ``arn:aws:lambda:r:a:function:name[:qualifier]`` or ``a:function:name``."""
    match = _ARN_NAME.match(name_or_arn)
    return match.group(1) if match else name_or_arn
