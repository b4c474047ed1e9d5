"""Deploy the real ``template.yaml`` into moto, the way ``sam deploy`` deploys it into AWS.

1. **Package** (what ``sam package`` does): zip every function's ``CodeUri`` and every layer's
   ``ContentUri`` and upload them, and the state machine's ``DefinitionUri`` file, to an artifact
   bucket in moto; point the template at those ``s3://`` URIs.
2. **Transform** (what CloudFormation's ``AWS::Serverless-2016-10-31`` does): translate offline
   with ``aws-sam-translator`` (moto's CloudFormation does not apply the SAM transform).
3. **Create the stack** with moto's CloudFormation API (``create_stack``), so ``describe_stacks``
   outputs, ``list_stack_resources`` and the generated physical names are CloudFormation's.
4. **Fill the gaps** moto's CloudFormation leaves, through the services' public APIs, from the
   translated template's own properties (see :data:`RESOURCE_TYPES`): the ASL with its
   ``DefinitionSubstitutions`` (moto ignores ``DefinitionS3Location``), the bucket's EventBridge
   notifications, versioning, lifecycle and policy, the queue policy, the table's TTL, layer
   names and function layers, string environment values, tags, state machine logging/tracing.
   What cannot be expressed locally is listed, with the reason, in :data:`NOT_APPLIED`.

Every resource type of the translated template must be known here (:data:`RESOURCE_TYPES`): a new
type in ``template.yaml`` fails the deployment until someone decides how it runs locally.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
DEFAULT_STACK_NAME = "refit"
DEFAULT_REGION = "us-east-1"
FAKE_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}

# What moto's CloudFormation (5.2.5) does with each resource type of the translated template.
RESOURCE_TYPES: Mapping[str, str] = {
    "AWS::S3::Bucket": "created; deploy adds versioning, lifecycle, public access block, "
    "ownership controls and the EventBridge notification configuration",
    "AWS::S3::BucketPolicy": "not supported by moto's CloudFormation: deploy puts the policy "
    "without aws:SecureTransport statements (moto enforces them; the emulator is plain HTTP)",
    "AWS::DynamoDB::Table": "created with its GSI; deploy enables TTL and point-in-time recovery",
    "AWS::SNS::Topic": "created",
    "AWS::SNS::Subscription": "created (email: never delivered locally)",
    "AWS::Events::Rule": "created with its targets",
    "AWS::SQS::Queue": "created with its redrive policy",
    "AWS::SQS::QueuePolicy": "not supported by moto's CloudFormation: deploy sets Policy",
    "AWS::Logs::LogGroup": "created",
    "AWS::IAM::Role": "created with inline policies (IAM is not enforced locally)",
    "AWS::Lambda::Function": "created; deploy sets layers, string environment values and tags",
    "AWS::Lambda::LayerVersion": "created under a generated name with an empty physical id: "
    "deploy publishes it under the template's LayerName and deletes moto's copy",
    "AWS::Lambda::EventSourceMapping": "created; moto's own delivery is turned off by "
    "moto_patches, local_cloud.event_source polls the queue instead",
    "AWS::SageMaker::ModelPackageGroup": "not supported by moto's CloudFormation: deploy "
    "creates the group with its tags",
    "AWS::CloudWatch::Alarm": "not supported by moto's CloudFormation: deploy creates it with "
    "PutMetricAlarm (moto never evaluates alarms: a test trips one with SetAlarmState)",
    "AWS::StepFunctions::StateMachine": "created without a definition (moto ignores "
    "DefinitionS3Location and DefinitionSubstitutions): deploy substitutes and updates it",
    "AWS::Scheduler::Schedule": "only with FullRetrainSchedule set; moto's CloudFormation skips "
    "it and nothing fires schedules locally: `refit start --full` starts the same run",
}

# Layers with `BuildMethod: makefile`: the folder their Makefile fills in the layer (/opt/...).
# Locally the ContentUri is zipped under it as is (no `make`, no pip: the venv has the deps);
# python/ is importable (/opt/python), so workers put the ContentUri on their PYTHONPATH.
MAKEFILE_LAYER_PREFIXES: dict[str, str] = {
    "RefitLayer": "python/",  # layers/refit/Makefile: the refit package + pinned deps
    "TrainingCodeLayer": "refit_training/",  # training/Makefile (TRAINING_CODE_DIR)
}

# Types moto's CloudFormation skips (a warning, no stack resource): deploy creates them.
CREATED_BY_DEPLOY = frozenset(
    {
        "AWS::S3::BucketPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SageMaker::ModelPackageGroup",
        "AWS::CloudWatch::Alarm",
    }
)

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


# ---------------------------------------------------------------------------- template loading


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


# ---------------------------------------------------------------------------- packaging


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
class _Package:
    sam_template: dict[str, Any]  # CodeUri/ContentUri/DefinitionUri replaced by s3:// URIs
    code_dirs: dict[str, Path]  # function logical id -> local CodeUri
    layer_dirs: dict[str, Path]  # layer logical id (SAM's) -> local ContentUri
    layer_python: dict[str, bool]
    definition_keys: dict[str, str]  # state machine logical id -> artifact key of its ASL
    uploads: dict[str, bytes]  # artifact key -> content


def package(template: Mapping[str, Any], repo_root: Path, bucket: str, stack: str) -> _Package:
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
    return _Package(sam, code_dirs, layer_dirs, layer_python, definition_keys, uploads)


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


# ---------------------------------------------------------------------------- intrinsics


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


# ---------------------------------------------------------------------------- deployment


class _SkippedTypeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.endswith(kind) for kind in CREATED_BY_DEPLOY)


@contextlib.contextmanager
def _quiet_moto_cloudformation() -> Iterator[None]:
    """Silence moto's warnings about the types deploy creates itself (CREATED_BY_DEPLOY)."""
    moto_logger = logging.getLogger("moto")
    skipped = _SkippedTypeFilter()
    moto_logger.addFilter(skipped)
    kinds = "|".join(re.escape(kind) for kind in sorted(CREATED_BY_DEPLOY))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=f"Tried to parse ({kinds}) ")
            yield
    finally:
        moto_logger.removeFilter(skipped)


class _Clients:
    def __init__(self, endpoint_url: str, region: str) -> None:
        self._session = boto3.session.Session(region_name=region, **FAKE_CREDENTIALS)
        self._endpoint_url = endpoint_url
        self._cache: dict[str, Any] = {}

    def __getattr__(self, service: str) -> Any:
        name = {"lambda_": "lambda", "logs": "logs"}.get(service, service)
        if name not in self._cache:
            self._cache[name] = self._session.client(name, endpoint_url=self._endpoint_url)
        return self._cache[name]


def _api_tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape."""
    api: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"]}
    api["Filter"] = {"Prefix": rule.get("Prefix", "")}
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if rule.get("ExpiredObjectDeleteMarker"):
        expiration["ExpiredObjectDeleteMarker"] = True
    if expiration:
        api["Expiration"] = expiration
    if "AbortIncompleteMultipartUpload" in rule:
        days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        api["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(days)}
    if "NoncurrentVersionExpiration" in rule:
        days = rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(days)}
    return api


class _Deployment:
    def __init__(
        self,
        endpoint_url: str,
        region: str,
        stack_name: str,
        repo_root: Path,
        parameters: Mapping[str, object] | None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.stack_name = stack_name
        self.repo_root = repo_root
        self.aws = _Clients(endpoint_url, region)
        self.template = load_template(repo_root / "template.yaml")
        self.parameters, self.warnings = effective_parameters(self.template, parameters)
        self.filled: list[str] = []
        self.not_applied: list[str] = list(NOT_APPLIED)
        self.layers: dict[str, LayerInfo] = {}  # translated logical id -> layer

    # -- attributes --------------------------------------------------------------------------
    def attribute(self, kind: str, physical_id: str, attribute: str) -> str:
        partition = "aws"
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            config = self.aws.lambda_.get_function_configuration(FunctionName=physical_id)
            return str(config["FunctionArn"])
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return str(self.aws.iam.get_role(RoleName=physical_id)["Role"]["Arn"])
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:{partition}:s3:::{physical_id}"
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            attributes = self.aws.sqs.get_queue_attributes(
                QueueUrl=physical_id, AttributeNames=["QueueArn"]
            )
            return str(attributes["Attributes"]["QueueArn"])
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return physical_id.rsplit("/", 1)[-1]
        if kind == "AWS::Events::Rule" and attribute == "Arn":
            return str(self.aws.events.describe_rule(Name=physical_id)["Arn"])
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            groups = self.aws.logs.describe_log_groups(logGroupNamePrefix=physical_id)
            for group in groups["logGroups"]:
                if group["logGroupName"] == physical_id:
                    return str(group["arn"])
        if kind == "AWS::SNS::Topic" and attribute == "TopicName":
            return physical_id.rsplit(":", 1)[-1]
        if kind == "AWS::SNS::Topic" and attribute == "TopicArn":
            return physical_id
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return str(self.aws.dynamodb.describe_table(TableName=physical_id)["Table"]["TableArn"])
        if kind == "AWS::StepFunctions::StateMachine" and attribute == "Arn":
            return physical_id
        if kind == "AWS::CloudWatch::Alarm" and attribute == "Arn":
            alarms = self.aws.cloudwatch.describe_alarms(AlarmNames=[physical_id])
            return str(alarms["MetricAlarms"][0]["AlarmArn"])
        raise DeployError(f"GetAtt {attribute} of {kind} is not supported locally")

    # -- steps -------------------------------------------------------------------------------
    def run(self) -> DeployedStack:
        artifact_bucket = f"{self.stack_name}-local-artifacts-{self.region}"
        packaged = package(self.template, self.repo_root, artifact_bucket, self.stack_name)
        self.aws.s3.create_bucket(Bucket=artifact_bucket)
        for key, content in packaged.uploads.items():
            self.aws.s3.put_object(Bucket=artifact_bucket, Key=key, Body=content)
        translated = translate(packaged.sam_template, self.region)
        unknown = sorted(
            {r["Type"] for r in translated["Resources"].values()} - set(RESOURCE_TYPES)
        )
        if unknown:
            raise DeployError(f"resource types without a local plan: {', '.join(unknown)}")

        stack_id = self._create_stack(translated)
        described = self.aws.cloudformation.describe_stacks(StackName=self.stack_name)
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Stacks"][0]["Outputs"]}
        summaries = self.aws.cloudformation.list_stack_resources(StackName=self.stack_name)
        physical = {
            s["LogicalResourceId"]: (s["ResourceType"], s.get("PhysicalResourceId", ""))
            for s in summaries["StackResourceSummaries"]
        }
        account_id = str(self.aws.sts.get_caller_identity()["Account"])
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::StackId": stack_id,
            "AWS::Region": self.region,
            "AWS::AccountId": account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        resolver = Resolver(
            translated,
            self.parameters,
            pseudo,
            {k: v for k, (_, v) in physical.items() if v},
            self.attribute,
        )
        resources = translated["Resources"]
        expected = {
            k
            for k, r in resources.items()
            if "Condition" not in r or resolver.condition(r["Condition"])
        }
        missing = sorted(
            k for k in expected - set(physical) if resources[k]["Type"] not in CREATED_BY_DEPLOY
        )
        if missing:
            raise DeployError(f"moto's CloudFormation did not create: {', '.join(missing)}")

        for logical_id, resource in resources.items():
            if logical_id in expected and resource["Type"] == "AWS::Lambda::LayerVersion":
                self._publish_layer(logical_id, resource, packaged, resolver)
        # What deploy creates itself comes first: the others' properties may Ref it.
        for logical_id in sorted(
            expected, key=lambda k: (resources[k]["Type"] not in CREATED_BY_DEPLOY, k)
        ):
            resource = resources[logical_id]
            filler = _FILLERS.get(resource["Type"])
            if filler is not None:
                physical_id = physical.get(logical_id, ("", ""))[1]
                filler(self, logical_id, resource, physical_id, resolver, packaged)

        functions = self._functions(resources, expected, physical, resolver, packaged)
        mappings = self._mappings(resources, expected, physical, functions)
        return DeployedStack(
            stack_name=self.stack_name,
            stack_id=stack_id,
            region=self.region,
            account_id=account_id,
            endpoint_url=self.endpoint_url,
            bucket=outputs["DataBucketName"],
            state_machine_arn=outputs["StateMachineArn"],
            runs_table=outputs["RunsTableName"],
            topic_arn=outputs["NotificationTopicArn"],
            queue_url=self._local_queue_url(outputs["TriggerQueueUrl"]),
            dead_letter_queue_url=self._local_queue_url(outputs["TriggerDeadLetterQueueUrl"]),
            endpoint_name=outputs["EndpointName"],
            parameters=dict(self.parameters),
            outputs=outputs,
            functions=functions,
            event_source_mappings=tuple(mappings),
            resources={k: (t, v) for k, (t, v) in physical.items()},
            filled=tuple(self.filled),
            not_applied=tuple(self.not_applied),
            artifact_bucket=artifact_bucket,
            warnings=tuple(self.warnings),
        )

    def _create_stack(self, translated: Mapping[str, Any]) -> str:
        cloudformation = self.aws.cloudformation
        response = cloudformation.create_stack(
            StackName=self.stack_name,
            TemplateBody=json.dumps(translated),
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()
            ],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = cloudformation.describe_stacks(StackName=self.stack_name)["Stacks"][0]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            reason = stack.get("StackStatusReason", "")
            raise DeployError(f"stack {self.stack_name}: {stack['StackStatus']} {reason}")
        return str(response["StackId"])

    def _local_queue_url(self, url: str) -> str:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        return str(self.aws.sqs.get_queue_url(QueueName=name)["QueueUrl"])

    def _publish_layer(
        self,
        logical_id: str,
        resource: Mapping[str, Any],
        packaged: _Package,
        resolver: Resolver,
    ) -> None:
        props = resolver.resolve(resource["Properties"])
        sam_id = next(
            k
            for k in packaged.layer_dirs
            if props["Content"]["S3Key"].startswith(f"{self.stack_name}/{k}-")
        )
        request: dict[str, Any] = {
            "LayerName": props["LayerName"],
            "Content": props["Content"],
            "Description": props.get("Description", ""),
        }
        for key in ("CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
            if key in props:
                request[key] = props[key]
        published = self.aws.lambda_.publish_layer_version(**request)
        # moto published it as <stack>-<logical id>-<random>: remove that copy.
        for layer in self.aws.lambda_.list_layers()["Layers"]:
            if layer["LayerName"].startswith(f"{self.stack_name}-{logical_id}-"):
                version = layer["LatestMatchingVersion"]["Version"]
                self.aws.lambda_.delete_layer_version(
                    LayerName=layer["LayerName"], VersionNumber=version
                )
        arn = str(published["LayerVersionArn"])
        resolver.set_physical_id(logical_id, arn)
        self.layers[logical_id] = LayerInfo(
            logical_id=sam_id,
            name=str(props["LayerName"]),
            arn=arn,
            content_dir=packaged.layer_dirs[sam_id],
            on_python_path=packaged.layer_python[sam_id],
        )
        self.filled.append(f"{logical_id}: published as {props['LayerName']} (was unnamed)")

    def _functions(
        self,
        resources: Mapping[str, Any],
        expected: set[str],
        physical: Mapping[str, tuple[str, str]],
        resolver: Resolver,
        packaged: _Package,
    ) -> dict[str, FunctionInfo]:
        functions: dict[str, FunctionInfo] = {}
        for logical_id in sorted(expected):
            if resources[logical_id]["Type"] != "AWS::Lambda::Function":
                continue
            config = self.aws.lambda_.get_function_configuration(
                FunctionName=physical[logical_id][1]
            )
            props = resources[logical_id]["Properties"]
            layer_ids = [ref["Ref"] for ref in props.get("Layers", [])]
            log_group = resolver.resolve(props.get("LoggingConfig", {})).get("LogGroup")
            functions[logical_id] = FunctionInfo(
                logical_id=logical_id,
                name=str(config["FunctionName"]),
                arn=str(config["FunctionArn"]),
                code_dir=packaged.code_dirs[logical_id],
                handler=str(config["Handler"]),
                runtime=str(config["Runtime"]),
                timeout=int(config["Timeout"]),
                memory_size=int(config["MemorySize"]),
                environment=dict(config.get("Environment", {}).get("Variables", {})),
                layers=tuple(self.layers[i] for i in layer_ids),
                role_arn=str(config["Role"]),
                log_group=str(log_group or f"/aws/lambda/{config['FunctionName']}"),
            )
        return functions

    def _mappings(
        self,
        resources: Mapping[str, Any],
        expected: set[str],
        physical: Mapping[str, tuple[str, str]],
        functions: Mapping[str, FunctionInfo],
    ) -> list[EventSourceMappingInfo]:
        mappings: list[EventSourceMappingInfo] = []
        by_arn = {f.arn: f for f in functions.values()}
        for logical_id in sorted(expected):
            if resources[logical_id]["Type"] != "AWS::Lambda::EventSourceMapping":
                continue
            mapping = self.aws.lambda_.get_event_source_mapping(UUID=physical[logical_id][1])
            function = by_arn[mapping["FunctionArn"]]
            queue_arn = str(mapping["EventSourceArn"])
            if not queue_arn.startswith("arn:aws:sqs:"):
                raise DeployError(f"{logical_id}: only SQS event sources run locally")
            queue_name = queue_arn.rsplit(":", 1)[-1]
            mappings.append(
                EventSourceMappingInfo(
                    uuid=str(mapping["UUID"]),
                    function_logical_id=function.logical_id,
                    function_name=function.name,
                    queue_arn=queue_arn,
                    queue_url=str(self.aws.sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]),
                    batch_size=int(mapping.get("BatchSize", 10)),
                    maximum_batching_window_seconds=int(
                        mapping.get("MaximumBatchingWindowInSeconds", 0)
                    ),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in mapping.get("FunctionResponseTypes", []),
                    maximum_concurrency=mapping.get("ScalingConfig", {}).get("MaximumConcurrency"),
                    enabled=mapping.get("State", "Enabled") == "Enabled",
                )
            )
        return mappings


_Filler = Callable[[_Deployment, str, Mapping[str, Any], str, Resolver, _Package], None]


def _fill_bucket(
    d: _Deployment, logical_id: str, resource: Mapping[str, Any], name: str, r: Resolver, _: Any
) -> None:
    props = r.resolve(resource.get("Properties", {}))
    s3 = d.aws.s3
    if "VersioningConfiguration" in props:
        status = props["VersioningConfiguration"]["Status"]
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
        d.filled.append(f"{logical_id}: versioning {status}")
    if "LifecycleConfiguration" in props:
        rules = [_lifecycle_rule(rule) for rule in props["LifecycleConfiguration"]["Rules"]]
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        d.filled.append(f"{logical_id}: lifecycle rules {[rule['ID'] for rule in rules]}")
    if "PublicAccessBlockConfiguration" in props:
        block = {
            k: str(v).lower() == "true" for k, v in props["PublicAccessBlockConfiguration"].items()
        }
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
        d.filled.append(f"{logical_id}: public access block")
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
        d.filled.append(f"{logical_id}: ownership controls")
    notification = props.get("NotificationConfiguration", {})
    api: dict[str, Any] = {}
    if str(notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled")).lower() == (
        "true"
    ):
        api["EventBridgeConfiguration"] = {}
    for key in ("QueueConfigurations", "TopicConfigurations", "LambdaConfigurations"):
        if notification.get(key):
            raise DeployError(f"{logical_id}: {key} is not supported locally")
    if api:
        s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=api)
        d.filled.append(f"{logical_id}: EventBridge notifications enabled")


def _fill_bucket_policy(
    d: _Deployment, logical_id: str, resource: Mapping[str, Any], _n: str, r: Resolver, _: Any
) -> None:
    props = r.resolve(resource["Properties"])
    document = dict(props["PolicyDocument"])
    # moto evaluates bucket policies, and the emulator speaks plain HTTP: a statement on
    # aws:SecureTransport (DenyInsecureTransport) would deny every request. Those are left out.
    kept = [s for s in document["Statement"] if "aws:SecureTransport" not in json.dumps(s)]
    left_out = len(document["Statement"]) - len(kept)
    if kept:
        document["Statement"] = kept
        d.aws.s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))
        d.filled.append(f"{logical_id}: bucket policy ({len(kept)} statement(s))")
    if left_out:
        d.not_applied.append(
            f"{logical_id}: {left_out} aws:SecureTransport statement(s) left out (moto enforces "
            "bucket policies and the emulator speaks plain HTTP)"
        )


def _fill_queue_policy(
    d: _Deployment, logical_id: str, resource: Mapping[str, Any], _n: str, r: Resolver, _: Any
) -> None:
    props = r.resolve(resource["Properties"])
    for queue_url in props["Queues"]:
        d.aws.sqs.set_queue_attributes(
            QueueUrl=queue_url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
        )
    d.filled.append(f"{logical_id}: Policy on {len(props['Queues'])} queue(s)")


def _fill_model_package_group(
    d: _Deployment, logical_id: str, resource: Mapping[str, Any], _n: str, r: Resolver, _: Any
) -> None:
    props = r.resolve(resource["Properties"])
    name = props["ModelPackageGroupName"]
    request: dict[str, Any] = {"ModelPackageGroupName": name}
    for key in ("ModelPackageGroupDescription", "Tags"):
        if key in props:
            request[key] = props[key]
    d.aws.sagemaker.create_model_package_group(**request)
    r.set_physical_id(logical_id, name)
    d.filled.append(f"{logical_id}: model package group {name}")


def _fill_alarm(
    d: _Deployment, logical_id: str, resource: Mapping[str, Any], _n: str, r: Resolver, _: Any
) -> None:
    props = r.resolve(resource["Properties"])
    keys = (
        "AlarmName",
        "AlarmDescription",
        "Namespace",
        "MetricName",
        "Dimensions",
        "Statistic",
        "Period",
        "EvaluationPeriods",
        "ComparisonOperator",
        "TreatMissingData",
    )
    request: dict[str, Any] = {key: props[key] for key in keys if key in props}
    for key in ("Period", "EvaluationPeriods"):
        request[key] = int(request[key])
    request["Threshold"] = float(props["Threshold"])
    d.aws.cloudwatch.put_metric_alarm(**request)
    r.set_physical_id(logical_id, request["AlarmName"])
    d.filled.append(f"{logical_id}: alarm {request['AlarmName']}")


def _fill_table(
    d: _Deployment, logical_id: str, resource: Mapping[str, Any], name: str, r: Resolver, _: Any
) -> None:
    props = r.resolve(resource["Properties"])
    ttl = props.get("TimeToLiveSpecification")
    if ttl and str(ttl.get("Enabled")).lower() == "true":
        d.aws.dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
        d.filled.append(f"{logical_id}: TTL on {ttl['AttributeName']}")
    pitr = props.get("PointInTimeRecoverySpecification", {})
    if str(pitr.get("PointInTimeRecoveryEnabled")).lower() == "true":
        d.aws.dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
        d.filled.append(f"{logical_id}: point-in-time recovery")


def _fill_function(
    d: _Deployment, logical_id: str, resource: Mapping[str, Any], name: str, r: Resolver, _: Any
) -> None:
    props = resource["Properties"]
    variables = {
        k: str(v) for k, v in r.resolve(props.get("Environment", {}).get("Variables", {})).items()
    }
    layers = [r.resolve(layer) for layer in props.get("Layers", [])]
    d.aws.lambda_.update_function_configuration(
        FunctionName=name, Environment={"Variables": variables}, Layers=layers
    )
    tags = _api_tags(r.resolve(props.get("Tags", [])))
    if tags:
        arn = d.aws.lambda_.get_function_configuration(FunctionName=name)["FunctionArn"]
        d.aws.lambda_.tag_resource(Resource=arn, Tags=tags)
    d.filled.append(f"{logical_id}: {len(layers)} layer(s), {len(variables)} string env vars")


def _fill_state_machine(
    d: _Deployment,
    logical_id: str,
    resource: Mapping[str, Any],
    arn: str,
    r: Resolver,
    packaged: _Package,
) -> None:
    props = resource["Properties"]
    if "DefinitionS3Location" in props:
        location = r.resolve(props["DefinitionS3Location"])
        body = d.aws.s3.get_object(Bucket=location["Bucket"], Key=location["Key"])["Body"]
        text = body.read().decode()
    else:
        text = r.resolve(props["DefinitionString"])
    substitutions = {
        k: str(v) for k, v in r.resolve(props.get("DefinitionSubstitutions", {})).items()
    }
    definition = substitute_definition(text, substitutions)
    request: dict[str, Any] = {"stateMachineArn": arn, "definition": definition}
    logging_config = r.resolve(props.get("LoggingConfiguration"))
    if logging_config:
        request["loggingConfiguration"] = {
            "level": logging_config["Level"],
            "includeExecutionData": str(logging_config.get("IncludeExecutionData")).lower()
            == "true",
            "destinations": [
                {
                    "cloudWatchLogsLogGroup": {
                        "logGroupArn": dest["CloudWatchLogsLogGroup"]["LogGroupArn"]
                    }
                }
                for dest in logging_config.get("Destinations", [])
            ],
        }
    tracing = r.resolve(props.get("TracingConfiguration"))
    if tracing:
        request["tracingConfiguration"] = {"enabled": str(tracing["Enabled"]).lower() == "true"}
    sfn = d.aws.stepfunctions
    try:
        sfn.describe_state_machine(stateMachineArn=arn)
        exists = True
    except sfn.exceptions.StateMachineDoesNotExist:
        exists = False
    if exists:
        sfn.update_state_machine(**request)
        how = "updated"
    else:
        # With Step Functions execution on, moto's API serves another backend than the one its
        # CloudFormation wrote to: create the machine through the API, under the same name
        # (so the same ARN as the stack's physical id and the StateMachineArn output).
        tags = r.resolve(props.get("Tags", []))
        created = sfn.create_state_machine(
            name=arn.rsplit(":", 1)[-1],
            roleArn=r.resolve(props["RoleArn"]),
            type=props.get("StateMachineType", "STANDARD"),
            tags=[{"key": t["Key"], "value": t["Value"]} for t in tags],
            **{k: v for k, v in request.items() if k != "stateMachineArn"},
        )
        if created["stateMachineArn"] != arn:
            raise DeployError(f"{logical_id}: created {created['stateMachineArn']}, not {arn}")
        how = "created through the Step Functions API"
    d.filled.append(
        f"{logical_id}: {how} with the definition from "
        f"{packaged.definition_keys.get(logical_id, 'the template')}, {len(substitutions)} "
        "DefinitionSubstitutions, logging and tracing configuration"
    )


_FILLERS: Mapping[str, _Filler] = {
    "AWS::S3::Bucket": _fill_bucket,
    "AWS::S3::BucketPolicy": _fill_bucket_policy,
    "AWS::SQS::QueuePolicy": _fill_queue_policy,
    "AWS::DynamoDB::Table": _fill_table,
    "AWS::SageMaker::ModelPackageGroup": _fill_model_package_group,
    "AWS::CloudWatch::Alarm": _fill_alarm,
    "AWS::Lambda::Function": _fill_function,
    "AWS::StepFunctions::StateMachine": _fill_state_machine,
}


def deploy(
    endpoint_url: str,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    region: str = DEFAULT_REGION,
    parameters: Mapping[str, object] | None = None,
    repo_root: Path = REPO_ROOT,
) -> DeployedStack:
    """Deploy ``<repo_root>/template.yaml`` into the moto server at ``endpoint_url``.

    ``parameters`` override template parameters (``{"EndpointPollSeconds": 1}``); values AWS
    would refuse for their MinValue/MaxValue are accepted and listed in ``warnings``. The stack
    must not exist yet (the local cloud starts from an empty emulator).
    """
    deployment = _Deployment(endpoint_url, region, stack_name, repo_root, parameters)
    # moto warns about the types it skips, on every parse of the template: expected, handled.
    with _quiet_moto_cloudformation():
        return deployment.run()
