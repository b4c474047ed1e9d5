"""Deploy the real ``template.yaml`` into moto, the way ``sam deploy`` deploys it into AWS.

1. **Package** (what ``sam package`` does, :mod:`local_cloud.artifacts`): zip every function's
   ``CodeUri`` and every layer's ``ContentUri`` and upload them, and the state machine's
   ``DefinitionUri`` file, to an artifact bucket in moto; point the template at those ``s3://``
   URIs.
2. **Transform** (what CloudFormation's ``AWS::Serverless-2016-10-31`` does,
   :func:`local_cloud.template.translate`): translate offline with ``aws-sam-translator`` (moto's
   CloudFormation does not apply the SAM transform).
3. **Create the stack** with moto's CloudFormation API (``create_stack``), so ``describe_stacks``
   outputs, ``list_stack_resources`` and the generated physical names are CloudFormation's.
4. **Fill the gaps** moto's CloudFormation leaves, through the services' public APIs, from the
   translated template's own properties (resolved by :mod:`local_cloud.intrinsics`; see
   :data:`RESOURCE_TYPES`): the ASL with its ``DefinitionSubstitutions`` (moto ignores
   ``DefinitionS3Location``), the bucket's EventBridge notifications, versioning, lifecycle and
   policy, the queue policy, the table's TTL, layer names and function layers, string environment
   values, tags, state machine logging/tracing. What cannot be expressed locally is listed, with
   the reason, in :data:`local_cloud.stack.NOT_APPLIED`.

Every resource type of the translated template must be known here (:data:`RESOURCE_TYPES`): a new
type in ``template.yaml`` fails the deployment until someone decides how it runs locally. The
result, :class:`local_cloud.stack.DeployedStack`, is what the rest of the local cloud runs from.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3

from local_cloud.artifacts import Package, package
from local_cloud.intrinsics import Resolver, substitute_definition
from local_cloud.stack import (
    FAKE_CREDENTIALS,
    NOT_APPLIED,
    REPO_ROOT,
    DeployedStack,
    DeployError,
    EventSourceMappingInfo,
    FunctionInfo,
    LayerInfo,
)
from local_cloud.template import effective_parameters, load_template, translate

logger = logging.getLogger(__name__)

DEFAULT_STACK_NAME = "refit"
DEFAULT_REGION = "us-east-1"

# What moto's CloudFormation (5.2.5) does with each resource type of the translated template.
RESOURCE_TYPES: Mapping[str, str] = {
    "AWS::S3::Bucket": "created; deploy adds versioning, lifecycle, public access block, "
    "ownership controls and the EventBridge notification configuration",
    "AWS::S3::BucketPolicy": "not supported by moto's CloudFormation: deploy puts the policy "
    "without aws:SecureTransport statements (moto enforces them; the emulator is plain HTTP)",
    "AWS::DynamoDB::Table": "created with its GSI; deploy enables TTL and point-in-time recovery",
    "AWS::SNS::Topic": "created (moto accepts KmsMasterKeyId and does not encrypt)",
    "AWS::KMS::Key": "created with rotation; deploy puts its key policy as JSON text (moto's "
    "CloudFormation stores the object, which its KMS API cannot read); moto evaluates only a "
    "policy's Deny statements",
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
    "PutMetricAlarm, its actions included (moto never evaluates alarms nor runs their actions: "
    "a test trips one with SetAlarmState)",
    "AWS::StepFunctions::StateMachine": "created without a definition (moto ignores "
    "DefinitionS3Location and DefinitionSubstitutions): deploy substitutes and updates it",
    "AWS::Scheduler::Schedule": "only with FullRetrainSchedule set; moto's CloudFormation skips "
    "it and nothing fires schedules locally: `refit start --full` starts the same run",
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
        packaged: Package,
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
        packaged: Package,
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


_Filler = Callable[[_Deployment, str, Mapping[str, Any], str, Resolver, Package], None]


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


def _fill_key(
    d: _Deployment, logical_id: str, resource: Mapping[str, Any], key_id: str, r: Resolver, _: Any
) -> None:
    # moto's CloudFormation keeps KeyPolicy as the template's object; its KMS API then fails
    # (500) reading it as the JSON text KMS stores. PutKeyPolicy stores the text.
    props = r.resolve(resource["Properties"])
    d.aws.kms.put_key_policy(
        KeyId=key_id, PolicyName="default", Policy=json.dumps(props["KeyPolicy"])
    )
    d.filled.append(f"{logical_id}: key policy of {key_id}")


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
        "AlarmActions",
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
    packaged: Package,
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
    "AWS::KMS::Key": _fill_key,
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
