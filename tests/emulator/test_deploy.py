"""Deploying the real template.yaml into moto: every resource, the template's names, no gaps."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from local_cloud import moto_patches
from local_cloud.artifacts import package
from local_cloud.deploy import CREATED_BY_DEPLOY, RESOURCE_TYPES, deploy
from local_cloud.intrinsics import substitute_definition
from local_cloud.lambda_result import LambdaResult
from local_cloud.sagemaker import LocalSageMaker
from local_cloud.stack import REPO_ROOT, DeployedStack, DeployError
from local_cloud.template import effective_parameters, load_template, translate

REGION = "us-east-1"
FUNCTIONS = {
    "StartRetrainFunction": "functions/start_retrain",
    "PrepareRunFunction": "functions/prepare_run",
    "CheckDataFileFunction": "functions/check_data_file",
    "EvaluateModelsFunction": "functions/evaluate_models",
    "CleanupResourcesFunction": "functions/cleanup_resources",
    "RecordRunFunction": "functions/record_run",
}


class Deployed:
    def __init__(self, url: str, stack: DeployedStack, invocations: list[str]) -> None:
        self.url = url
        self.stack = stack
        self.invocations = invocations

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """The local cloud's order: server, Step Functions execution on, patches, then deploy."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    url = f"http://127.0.0.1:{port}"
    reset = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset).close()
    saved: Any = dict(default_user_config.get("stepfunctions", {}))
    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    runtime = LocalSageMaker(s3, tmp_path_factory.mktemp("sagemaker"))
    invocations: list[str] = []

    def invoke(name: str, payload: bytes) -> LambdaResult:
        invocations.append(name)
        return LambdaResult(b"{}")

    moto_patches.install(sagemaker=runtime, invoke_lambda=invoke)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MOTO_PORT", str(port))
            stack = deploy(url, parameters={"EndpointPollSeconds": 1, "BatchingWindowSeconds": 2})
            yield Deployed(url, stack, invocations)
    finally:
        moto_patches.uninstall()
        runtime.close()
        default_user_config["stepfunctions"] = saved
        urllib.request.urlopen(reset).close()
        server.stop()


def test_every_resource_type_of_the_translated_template_has_a_local_plan() -> None:
    # Given the template packaged and translated offline, as deploy does
    packaged = package(load_template(), REPO_ROOT, "artifacts", "refit")
    translated = translate(packaged.sam_template, REGION)
    # Then deploy knows every resource type in it
    assert {r["Type"] for r in translated["Resources"].values()} <= set(RESOURCE_TYPES)
    # and code and definition point at the artifact bucket, not at local paths
    for resource in translated["Resources"].values():
        props = resource["Properties"]
        location = props.get("Code") or props.get("Content") or props.get("DefinitionS3Location")
        if location is not None:
            assert location.get("S3Bucket", location.get("Bucket")) == "artifacts"
    machine = translated["Resources"]["RetrainStateMachine"]["Properties"]
    assert "DefinitionString" not in machine
    uploaded = packaged.uploads[machine["DefinitionS3Location"]["Key"]]
    assert uploaded == (REPO_ROOT / "statemachine" / "retrain.asl.json").read_bytes()


def test_outputs_resolve_to_created_resources(deployed: Deployed) -> None:
    stack = deployed.stack
    cloudformation = deployed.client("cloudformation")
    (described,) = cloudformation.describe_stacks(StackName="refit")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    assert described["StackStatus"] == "CREATE_COMPLETE"
    assert outputs["DataBucketName"] == stack.bucket
    assert outputs["EndpointName"] == stack.endpoint_name == "refit-endpoint"
    deployed.client("s3").head_bucket(Bucket=stack.bucket)
    table = deployed.client("dynamodb").describe_table(TableName=stack.runs_table)["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"ResourcesIndex"}
    deployed.client("sns").get_topic_attributes(TopicArn=stack.topic_arn)
    sqs = deployed.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 5
    assert attributes["Attributes"]["VisibilityTimeout"] == "720"
    assert stack.dead_letter_queue_url.endswith(redrive["deadLetterTargetArn"].split(":")[-1])
    # every non-conditional resource is in the stack, except those deploy creates itself
    template = load_template()
    expected = {k for k, r in template["Resources"].items() if "Condition" not in r}
    expected -= {k for k, r in template["Resources"].items() if r["Type"] in CREATED_BY_DEPLOY}
    expected |= {"DataBucket"}  # CreateBucket holds with the default ExistingBucketName ""
    created = set(stack.resources)
    sam_layers = {"RefitLayer", "TrainingCodeLayer"}
    assert expected - sam_layers <= created
    assert all(any(c.startswith(layer) for c in created) for layer in sam_layers)
    assert not {k for k, (t, _) in stack.resources.items() if t in CREATED_BY_DEPLOY}


def test_dead_letters_and_failed_executions_alarm_to_the_encrypted_topic(
    deployed: Deployed,
) -> None:
    # Given the deployed stack's alarms and topic
    stack = deployed.stack
    alarms = {
        a["AlarmName"]: a for a in deployed.client("cloudwatch").describe_alarms()["MetricAlarms"]
    }
    # Then the dead letter queue and failed executions each alarm to the notification topic
    dead_letters = alarms["refit-trigger-dead-letters"]
    assert dead_letters["Namespace"] == "AWS/SQS"
    assert dead_letters["Dimensions"] == [
        {"Name": "QueueName", "Value": stack.dead_letter_queue_url.rsplit("/", 1)[-1]}
    ]
    failed = alarms["refit-failed-executions"]
    assert failed["Dimensions"] == [{"Name": "StateMachineArn", "Value": stack.state_machine_arn}]
    for alarm in (dead_letters, failed):
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert alarm["AlarmActions"] == [stack.topic_arn]
    # And the topic is encrypted with the stack's own key, which exists
    attributes = deployed.client("sns").get_topic_attributes(TopicArn=stack.topic_arn)
    key = attributes["Attributes"]["KmsMasterKeyId"]
    assert not key.startswith("alias/aws/")
    assert deployed.client("kms").describe_key(KeyId=key)["KeyMetadata"]["KeyManager"] == "CUSTOMER"


def test_state_machine_definition_is_the_asl_file_with_its_substitutions(
    deployed: Deployed,
) -> None:
    stack = deployed.stack
    sfn = deployed.client("stepfunctions")
    described = sfn.describe_state_machine(stateMachineArn=stack.state_machine_arn)
    definition = described["definition"]
    # No ${...} is left, and it is the ASL file with the functions' and role's ARNs
    assert "${" not in definition
    role = deployed.client("iam").list_roles()["Roles"]
    sagemaker_role = next(r["Arn"] for r in role if "SageMakerExecutionRole" in r["RoleName"])
    asl = (REPO_ROOT / "statemachine" / "retrain.asl.json").read_text()
    expected = substitute_definition(
        asl,
        {
            "PrepareRunFunctionArn": stack.functions["PrepareRunFunction"].arn,
            "CheckDataFileFunctionArn": stack.functions["CheckDataFileFunction"].arn,
            "EvaluateModelsFunctionArn": stack.functions["EvaluateModelsFunction"].arn,
            "CleanupResourcesFunctionArn": stack.functions["CleanupResourcesFunction"].arn,
            "RecordRunFunctionArn": stack.functions["RecordRunFunction"].arn,
            "SageMakerRoleArn": sagemaker_role,
        },
    )
    assert json.loads(definition) == json.loads(expected)
    # "$$.Execution.Name" survived (CloudFormation's Fn::Sub in moto would have halved it)
    assert '"$$.Execution.Name"' in definition
    assert described["loggingConfiguration"]["level"] == "ERROR"
    group_arn = described["loggingConfiguration"]["destinations"][0]["cloudWatchLogsLogGroup"]
    assert "/aws/vendedlogs/states/refit-retrain" in group_arn["logGroupArn"]
    assert described["tracingConfiguration"] == {"enabled": True}
    assert described["roleArn"].split("/")[-1].startswith("refit-StateMachineRole-")


def test_functions_keep_the_template_code_handler_layers_and_environment(
    deployed: Deployed,
) -> None:
    stack = deployed.stack
    aws_lambda = deployed.client("lambda")
    assert set(stack.functions) == set(FUNCTIONS)
    for logical_id, folder in FUNCTIONS.items():
        function = stack.functions[logical_id]
        assert function.name.startswith(f"refit-{logical_id}-")
        assert function.code_dir == REPO_ROOT / folder
        assert function.handler == "app.lambda_handler"
        assert function.log_group == "/aws/lambda/refit-functions"
        config = aws_lambda.get_function_configuration(FunctionName=function.name)
        assert config["Environment"]["Variables"] == dict(function.environment)
        assert all(isinstance(v, str) for v in function.environment.values())
        assert function.environment["DATA_BUCKET"] == stack.bucket
        assert function.environment["ENDPOINT_POLL_SECONDS"] == "1"
        layers = [layer.name for layer in function.layers]
        expected = (
            ["refit-refit", "refit-training-code"]
            if folder.endswith(("prepare_run", "check_data_file"))
            else ["refit-refit"]
        )
        assert layers == expected
        assert [layer["Arn"] for layer in config["Layers"]] == [x.arn for x in function.layers]
    assert stack.functions["StartRetrainFunction"].environment["STATE_MACHINE_ARN"] == (
        stack.state_machine_arn
    )
    assert stack.functions["RecordRunFunction"].environment["NOTIFICATION_TOPIC_ARN"] == (
        stack.topic_arn
    )
    assert stack.functions["PrepareRunFunction"].timeout == 300
    # moto's misnamed copies of the layers are gone
    names = {layer["LayerName"] for layer in aws_lambda.list_layers()["Layers"]}
    assert names == {"refit-refit", "refit-training-code"}
    refit_layer = stack.functions["StartRetrainFunction"].layers[0]
    assert refit_layer.on_python_path and refit_layer.content_dir == REPO_ROOT / "layers" / "refit"


def test_event_source_mappings_are_described(deployed: Deployed) -> None:
    uploads, ended = sorted(
        deployed.stack.event_source_mappings, key=lambda m: m.maximum_batching_window_seconds
    )[::-1]
    assert uploads.function_logical_id == "StartRetrainFunction"
    assert uploads.queue_url == deployed.stack.queue_url
    assert uploads.batch_size == 1000
    assert uploads.maximum_batching_window_seconds == 2
    assert uploads.report_batch_item_failures
    assert uploads.maximum_concurrency == 2
    # The ends of runs reach the same function through their own queue, without a window.
    assert ended.function_logical_id == "StartRetrainFunction"
    assert ended.queue_url.endswith(deployed.stack.outputs["RunEndedQueueUrl"].rsplit("/", 1)[1])
    assert (ended.batch_size, ended.maximum_batching_window_seconds) == (10, 0)
    assert ended.report_batch_item_failures
    listed = deployed.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    assert sorted(m["UUID"] for m in listed) == sorted([uploads.uuid, ended.uuid])


def test_bucket_table_and_queue_gaps_are_filled(deployed: Deployed) -> None:
    stack = deployed.stack
    s3 = deployed.client("s3")
    assert s3.get_bucket_versioning(Bucket=stack.bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=stack.bucket)["Rules"]
    assert {r["ID"] for r in rules} == {"ExpireCheckpoints", "ExpireTmp", "TidyVersionsAndUploads"}
    block = s3.get_public_access_block(Bucket=stack.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    dynamodb = deployed.client("dynamodb")
    ttl = dynamodb.describe_time_to_live(TableName=stack.runs_table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}
    policy = deployed.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url, AttributeNames=["Policy"]
    )
    statement = json.loads(policy["Attributes"]["Policy"])["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"].startswith(
        "arn:aws:events:us-east-1:123456789012:rule/refit-TrainDataRule-"
    )
    assert any("SecureTransport" in reason for reason in stack.not_applied)
    # The Model Registry group moto's CloudFormation skips, created with its stack tag
    sagemaker = deployed.client("sagemaker")
    group = sagemaker.describe_model_package_group(ModelPackageGroupName="refit-models")
    tags = sagemaker.list_tags(ResourceArn=group["ModelPackageGroupArn"])["Tags"]
    assert {"Key": "refit:stack", "Value": "refit"} in tags
    # The rollback alarms, created from the template's properties; the functions name them
    cloudwatch = deployed.client("cloudwatch")
    alarms = {
        a["AlarmName"]: a
        for a in cloudwatch.describe_alarms(AlarmNamePrefix="refit-endpoint-")["MetricAlarms"]
    }
    assert set(alarms) == {"refit-endpoint-5xx", "refit-endpoint-latency"}
    errors = alarms["refit-endpoint-5xx"]
    assert (errors["MetricName"], errors["Namespace"]) == ("Invocation5XXErrors", "AWS/SageMaker")
    assert {"Name": "EndpointName", "Value": "refit-endpoint"} in errors["Dimensions"]
    assert alarms["refit-endpoint-latency"]["Threshold"] == 1_000_000  # 1000 ms in microseconds
    function = stack.function("PrepareRunFunction")
    environment = deployed.client("lambda").get_function_configuration(FunctionName=function.name)[
        "Environment"
    ]["Variables"]
    assert environment["ROLLBACK_ALARMS"] == "refit-endpoint-5xx,refit-endpoint-latency"


def test_uploads_under_data_train_reach_the_trigger_queue(deployed: Deployed) -> None:
    # Given the deployed bucket (EventBridge notifications filled in by deploy)
    stack = deployed.stack
    s3 = deployed.client("s3")
    sqs = deployed.client("sqs")
    # When a training file and a test file are uploaded
    s3.put_object(Bucket=stack.bucket, Key="data/test/holdout.csv", Body=b"1,2\n")
    s3.put_object(Bucket=stack.bucket, Key="data/train/new file.csv", Body=b"1,2\n")
    # Then one EventBridge event, for the training file, is waiting in the queue
    received = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10)
    (message,) = received["Messages"]
    event = json.loads(message["Body"])
    assert event["detail-type"] == "Object Created"
    assert event["detail"]["object"]["key"] == "data/train/new file.csv"
    assert event["detail"]["object"]["version-id"] not in ("", "null")
    # and moto's own mapping did not deliver it (the local cloud's poller does)
    assert deployed.invocations == []


def test_parameters_are_validated_like_cloudformation() -> None:
    template = load_template()
    with pytest.raises(DeployError, match="unknown template parameter"):
        effective_parameters(template, {"NoSuchParameter": "1"})
    with pytest.raises(DeployError, match="UseSpotTraining"):
        effective_parameters(template, {"UseSpotTraining": "yes"})
    values, warnings = effective_parameters(
        template, {"UseSpotTraining": False, "EndpointPollSeconds": 1}
    )
    assert values["UseSpotTraining"] == "false"
    assert values["BatchingWindowSeconds"] == "30"
    assert warnings == ["parameter EndpointPollSeconds=1 is outside [5, None]: AWS would refuse it"]


def test_substitute_definition_refuses_leftovers() -> None:
    assert substitute_definition('{"a": "${X}", "b": "$$.x"}', {"X": "1"}) == (
        '{"a": "1", "b": "$$.x"}'
    )
    with pytest.raises(DeployError, match="Y"):
        substitute_definition('"${X}${Y}"', {"X": "1"})
    assert not re.search(r"\$\{", substitute_definition("${X}", {"X": "v"}))
