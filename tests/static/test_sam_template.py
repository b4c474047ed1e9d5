"""template.yaml: lint-clean, least privilege, and in line with the contract and layout.py."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest
from cfnlint.api import lint

from refit import layout
from refit.config import ConfigError, Settings
from refit.metrics import SUPPORTED_METRICS
from refit.run_input import parse_run_input
from tests.static.static_helpers import (
    FUNCTIONS,
    REPO,
    actions_of,
    allowed_actions,
    as_list,
    identity_statements,
    strings_in,
    walk,
)

# cfn-lint findings accepted on purpose: rule id -> why. Empty: the template lints clean.
CFN_LINT_ALLOWED: dict[str, str] = {}

# Statements allowed to use Resource "*": the action sets of services with no resource-level
# permissions for these calls. Each such statement has a YAML comment saying so.
STAR_RESOURCE_ALLOWED: dict[frozenset[str], str] = {
    frozenset({"ecr:GetAuthorizationToken"}): "ECR auth tokens are account-wide",
    frozenset({"cloudwatch:PutMetricData"}): "metrics are scoped by a namespace condition",
    frozenset({"sagemaker:ListEndpoints"}): "List* calls have no resource",
    frozenset({"sagemaker:ListModelPackages"}): "List* calls have no resource",
    frozenset(
        {
            "logs:CreateLogDelivery",
            "logs:GetLogDelivery",
            "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies",
            "logs:DescribeLogGroups",
        }
    ): "Step Functions log delivery (vended logs) is not resource-scoped",
    frozenset(
        {
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
        }
    ): "X-Ray APIs are not resource-scoped",
}

# Variables the template sets on one function only (refit.config gives others a default).
FUNCTION_ONLY_ENV = {
    "STATE_MACHINE_ARN": {"StartRetrainFunction"},
    # RecordRun notifies every recorded run; StartRetrain the runs that ended unrecorded.
    "NOTIFICATION_TOPIC_ARN": {"RecordRunFunction", "StartRetrainFunction"},
    "TRAINING_CODE_DIR": {"PrepareRunFunction", "CheckDataFileFunction"},
}
POWERTOOLS_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}

LAYOUT_PREFIXES = {
    value
    for name, value in vars(layout).items()
    if name.endswith("_PREFIX") and isinstance(value, str)
}


def _functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def _env(template: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    merged = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    merged.update(function["Properties"].get("Environment", {}).get("Variables", {}))
    return merged


def _parameter_default(template: dict[str, Any], value: Any) -> str:
    """A plausible deployed value: a parameter's default, or a placeholder for other intrinsics."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        parameter = template["Parameters"].get(value["Ref"])
        if parameter is not None and str(parameter.get("Default", "")) != "":
            return str(parameter["Default"])
        return f"resolved-{value['Ref']}"
    if isinstance(value, str):
        return value
    return "resolved-intrinsic"


class _RecordingEnv(dict[str, str]):
    """An environment that remembers which names refit.config asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def test_cfn_lint_reports_no_errors(template_text: str) -> None:
    # Given the template
    # When cfn-lint checks it (SAM-aware, us-east-1)
    matches = lint(template_text, regions=["us-east-1"])
    # Then nothing is reported but findings allowlisted with a reason
    unexpected = [
        f"{m.rule.id} line {m.linenumber}: {m.message}"
        for m in matches
        if m.rule.id not in CFN_LINT_ALLOWED
    ]
    assert unexpected == []


def test_globals_pin_the_lambda_runtime_and_handler(template: dict[str, Any]) -> None:
    # Given the function globals
    function_globals = template["Globals"]["Function"]
    # Then every function runs python3.13 with app.lambda_handler, traced, on one architecture
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Handler"] == "app.lambda_handler"
    assert function_globals["Tracing"] == "Active"
    assert function_globals["Architectures"] in (["arm64"], ["x86_64"])
    assert function_globals["Layers"] == [{"Ref": "RefitLayer"}]


def test_functions_are_exactly_the_contract_table(resources: dict[str, Any]) -> None:
    # Given the contract's five functions
    functions = _functions(resources)
    # Then the template has exactly those, each from functions/<folder>/
    assert set(functions) == set(FUNCTIONS.values())
    for folder, logical_id in FUNCTIONS.items():
        assert functions[logical_id]["Properties"]["CodeUri"] == f"functions/{folder}/"
        assert "Handler" not in functions[logical_id]["Properties"], "Globals sets the handler"


@pytest.mark.parametrize("folder", sorted(FUNCTIONS))
def test_each_function_code_uri_and_handler_file_exist(folder: str) -> None:
    # Given a function folder named by the contract
    code_dir = REPO / "functions" / folder
    # Then its code and its handler module exist (Handler: app.lambda_handler)
    assert code_dir.is_dir(), f"{code_dir} missing"
    assert (code_dir / "app.py").is_file(), f"{code_dir}/app.py missing"


def test_every_function_environment_satisfies_settings(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    for name, function in _functions(resources).items():
        # Given the environment the template gives this function (Globals + its own)
        env = _env(template, function)
        environ = _RecordingEnv({k: _parameter_default(template, v) for k, v in env.items()})
        # When refit.config parses it as the handler does at cold start
        try:
            Settings.from_env(environ)
        except ConfigError as err:  # pragma: no cover - the assertion message is the point
            pytest.fail(f"{name}: {err}")
        # Then every variable it reads is set, except the three one function owns
        missing = environ.asked - set(env) - set(FUNCTION_ONLY_ENV)
        assert missing == set(), f"{name} lacks {sorted(missing)}"
        assert set(env) >= POWERTOOLS_ENV


def test_function_specific_variables_are_on_their_function_only(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Given the variables one function owns
    globals_env = template["Globals"]["Function"]["Environment"]["Variables"]
    for variable, owners in FUNCTION_ONLY_ENV.items():
        # Then Globals does not set them, and exactly their owners do
        assert variable not in globals_env
        holders = {
            name
            for name, function in _functions(resources).items()
            if variable in function["Properties"].get("Environment", {}).get("Variables", {})
        }
        assert holders == owners
    prepare = resources["PrepareRunFunction"]["Properties"]
    assert prepare["Environment"]["Variables"]["TRAINING_CODE_DIR"] == "/opt/refit_training"
    assert prepare["Layers"] == [{"Ref": "TrainingCodeLayer"}]


def test_layers_build_the_way_sam_expects(resources: dict[str, Any]) -> None:
    # Given the two layers
    refit_layer = resources["RefitLayer"]
    training_layer = resources["TrainingCodeLayer"]
    # Then the refit layer is built by layers/refit/Makefile, for the functions' runtime
    # (tests/static/test_refit_layer.py checks what that Makefile does)
    assert refit_layer["Properties"]["ContentUri"] == "layers/refit/"
    assert refit_layer["Metadata"]["BuildMethod"] == "makefile"
    assert refit_layer["Metadata"]["BuildArchitecture"] == "arm64"
    assert refit_layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert refit_layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert (REPO / "layers/refit/refit/__init__.py").is_file()
    assert not (REPO / "layers/refit/python").exists()
    refit_makefile = REPO / "layers" / "refit" / "Makefile"
    assert refit_makefile.is_file(), "layers/refit/Makefile (target build-RefitLayer) missing"
    assert re.search(r"^build-RefitLayer:", refit_makefile.read_text(), re.MULTILINE)
    # And the training code layer is built by training/Makefile
    assert training_layer["Properties"]["ContentUri"] == "training/"
    assert training_layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = REPO / "training" / "Makefile"
    assert makefile.is_file(), "training/Makefile (target build-TrainingCodeLayer) missing"
    assert re.search(r"^build-TrainingCodeLayer:", makefile.read_text(), re.MULTILINE)


def test_no_wildcard_actions(resources: dict[str, Any]) -> None:
    # Given every identity-policy statement of the stack
    for owner, statement in identity_statements(resources):
        # Then no Allow grants "*" or "service:*"
        if statement.get("Effect") == "Allow":
            for action in as_list(statement["Action"]):
                assert action != "*" and not str(action).endswith(":*"), (owner, action)


def test_star_resources_only_where_no_resource_level_permission_exists(
    resources: dict[str, Any], template_text: str
) -> None:
    lines = template_text.splitlines()
    for owner, statement in identity_statements(resources):
        if "*" not in as_list(statement.get("Resource", [])):
            continue
        # Given a statement on Resource "*"
        actions = frozenset(as_list(statement["Action"]))
        # Then its action set is allowlisted ...
        assert actions in STAR_RESOURCE_ALLOWED, (owner, sorted(actions))
        # ... and the template says why in a comment right above it
        sid_line = next(i for i, line in enumerate(lines) if f"Sid: {statement['Sid']}" in line)
        comment = lines[sid_line - 1].strip()
        assert comment.startswith("#") and '"*"' in comment, (owner, statement["Sid"])


def test_s3_arns_use_layout_prefixes(resources: dict[str, Any]) -> None:
    # Given every object ARN the policies grant in the data bucket
    granted = {
        match
        for _, statement in identity_statements(resources)
        for text in strings_in(statement.get("Resource"))
        for match in re.findall(r"\$\{Bucket\}/([^,*]*)\*", text)
    }
    # Then each is a prefix from refit.layout, or a parent (data/) or child of one
    assert granted
    for prefix in granted:
        assert prefix.endswith("/"), prefix
        assert any(
            prefix.startswith(known) or known.startswith(prefix) for known in LAYOUT_PREFIXES
        ), prefix


def test_data_bucket_is_private_versioned_encrypted_and_expiring(
    resources: dict[str, Any],
) -> None:
    # Given the data bucket and its policy
    bucket = resources["DataBucket"]["Properties"]
    policy = resources["DataBucketPolicy"]["Properties"]["PolicyDocument"]
    # Then versioning, encryption, EventBridge and the public access block are on
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"] == {
        "EventBridgeEnabled": True
    }
    # And plain HTTP is denied
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in policy["Statement"]
    )
    # And checkpoints/ and tmp/ expire, uploads and old versions are tidied
    rules = bucket["LifecycleConfiguration"]["Rules"]
    expiring = {r["Prefix"]: r["ExpirationInDays"] for r in rules if "Prefix" in r}
    assert set(expiring) == {layout.CHECKPOINTS_PREFIX, layout.TMP_PREFIX}
    assert expiring[layout.TMP_PREFIX] < expiring[layout.CHECKPOINTS_PREFIX]
    assert any("AbortIncompleteMultipartUpload" in r for r in rules)
    assert any("NoncurrentVersionExpiration" in r for r in rules)
    assert all(r["Status"] == "Enabled" for r in rules)


def test_trigger_rule_matches_the_train_prefix(resources: dict[str, Any]) -> None:
    # Given the EventBridge rule
    rule = resources["TrainDataRule"]["Properties"]
    pattern = rule["EventPattern"]
    # Then it listens to Object Created under layout.TRAIN_PREFIX and feeds the queue
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": layout.TRAIN_PREFIX}]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["TriggerQueue", "Arn"]}


def test_queue_batches_and_redrives(template: dict[str, Any], resources: dict[str, Any]) -> None:
    # Given the queue, its policy and the StartRetrain SQS event
    queue = resources["TriggerQueue"]["Properties"]
    policy = resources["TriggerQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    start = resources["StartRetrainFunction"]["Properties"]
    event = start["Events"]["TrainData"]["Properties"]
    timeout = start.get("Timeout", template["Globals"]["Function"]["Timeout"])
    max_window = template["Parameters"]["BatchingWindowSeconds"]["MaxValue"]
    # Then messages stay invisible long enough for retries, and poison ones reach the DLQ
    assert queue["VisibilityTimeout"] >= 6 * timeout + max_window
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert queue["SqsManagedSseEnabled"] is True
    # And only the rule may send, and only from itself
    assert policy[0]["Principal"] == {"Service": "events.amazonaws.com"}
    assert policy[0]["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": ["TrainDataRule", "Arn"]
    }
    # And the function reads batches with partial failures
    assert event["Queue"] == {"Fn::GetAtt": ["TriggerQueue", "Arn"]}
    assert event["BatchSize"] == {"Ref": "TriggerBatchSize"}
    assert event["MaximumBatchingWindowInSeconds"] == {"Ref": "BatchingWindowSeconds"}
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert max_window <= 300


def test_state_machine_wiring(resources: dict[str, Any], asl_text: str) -> None:
    # Given the state machine resource and the ASL text
    machine = resources["RetrainStateMachine"]["Properties"]
    used = set(re.findall(r"\$\{(\w+)\}", asl_text))
    # Then the substitutions are exactly the contract's and the ASL's
    assert set(machine["DefinitionSubstitutions"]) == used
    assert machine["DefinitionUri"] == "statemachine/retrain.asl.json"
    # And it runs with its own role, logs without execution data, and traces
    assert machine["Role"] == {"Fn::GetAtt": ["StateMachineRole", "Arn"]}
    assert machine["Logging"]["IncludeExecutionData"] is False
    assert machine["Logging"]["Level"] in ("ALL", "ERROR")
    assert machine["Tracing"] == {"Enabled": True}


def test_runs_table_shape(resources: dict[str, Any]) -> None:
    # Given the runs table
    table = resources["RunsTable"]["Properties"]
    # Then it has pk/sk, TTL on expiration, PITR, SSE and the sparse ResourcesIndex
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "ResourcesIndex"
    assert [k["AttributeName"] for k in index["KeySchema"]] == [
        "resourcesOwner",
        "resourcesCreatedAt",
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}


def test_sagemaker_role_is_passed_only_to_sagemaker(resources: dict[str, Any]) -> None:
    # Given the SageMaker execution role and the state machine role
    trust = resources["SageMakerExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]
    passes = [
        s for owner, s in identity_statements(resources) if "iam:PassRole" in as_list(s["Action"])
    ]
    # Then SageMaker assumes it, and only the workflow passes it, only to SageMaker
    assert trust["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert len(passes) == 1
    assert passes[0]["Resource"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
    assert passes[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }


def _object_grants(resources: dict[str, Any], owner: str, action: str) -> set[str]:
    """Object keys (``runs/*``, ``runs/cumulative-manifest.json``) ``owner`` may ``action``."""
    return {
        match
        for name, statement in identity_statements(resources)
        if name == owner and statement.get("Effect") == "Allow" and action in actions_of(statement)
        for text in strings_in(statement.get("Resource"))
        for match in re.findall(r"\$\{Bucket\}/([^,\"]+)", text)
    }


def _covers(grants: set[str], key: str) -> bool:
    return any(key == g or (g.endswith("*") and key.startswith(g[:-1])) for g in grants)


def test_training_jobs_read_pinned_copies_not_the_live_training_data(
    resources: dict[str, Any],
) -> None:
    # Given what the SageMaker role may read
    reads = _object_grants(resources, "SageMakerExecutionRole", "s3:GetObject")
    # Then the run's ManifestFile and pinned copies, the other channels, and not data/train/
    assert _covers(reads, layout.run_prefix("r") + "train.manifest")
    assert _covers(reads, layout.pinned_data_key("r", layout.TRAIN_PREFIX + "a.csv"))
    assert _covers(reads, layout.VALIDATION_PREFIX + "v.csv")
    assert _covers(reads, layout.TEST_PREFIX + "t.csv")
    assert not _covers(reads, layout.TRAIN_PREFIX + "a.csv")


def test_prepare_run_pins_and_evaluate_models_records_the_trained_data(
    resources: dict[str, Any],
) -> None:
    # PrepareRun copies a validated version (read it by version, write the pin)
    pinned = layout.pinned_data_key("r", layout.TRAIN_PREFIX + "a.csv")
    assert _covers(
        _object_grants(resources, "PrepareRunFunction", "s3:GetObjectVersion"),
        layout.TRAIN_PREFIX + "a.csv",
    )
    assert _covers(_object_grants(resources, "PrepareRunFunction", "s3:PutObject"), pinned)
    # EvaluateModels reads the run manifest and rewrites only the cumulative manifest
    evaluate = "EvaluateModelsFunction"
    assert _covers(
        _object_grants(resources, evaluate, "s3:GetObject"), layout.CUMULATIVE_MANIFEST_KEY
    )
    assert _covers(
        _object_grants(resources, evaluate, "s3:GetObject"),
        layout.run_prefix("r") + "manifest.json",
    )
    assert _object_grants(resources, evaluate, "s3:PutObject") == {layout.CUMULATIVE_MANIFEST_KEY}
    assert "s3:ListBucket" in allowed_actions(resources, evaluate)


def test_the_stack_owns_a_model_package_group_its_functions_register_in(
    resources: dict[str, Any],
) -> None:
    # Given the group and the package statements of EvaluateModels and RecordRun
    group = resources["ModelPackageGroup"]
    props = group["Properties"]
    # Then it is named as refit.layout names it, tagged with the stack and kept on delete
    assert props["ModelPackageGroupName"] == {
        "Fn::Sub": layout.model_package_group_name("${AWS::StackName}")
    }
    assert {"Key": layout.TAG_STACK, "Value": {"Ref": "AWS::StackName"}} in props["Tags"]
    assert group["DeletionPolicy"] == "Retain"
    # And only EvaluateModels registers, only RecordRun decides (StartRetrain rejects the package
    # of a run that ended unrecorded), all on the group's packages
    packages = layout.model_package_group_name("${AWS::StackName}") + "/*"
    grants = {
        (name, action): strings_in(statement["Resource"])
        for name, statement in identity_statements(resources)
        for action in actions_of(statement)
        if "ModelPackage" in action
    }
    # (cleanup only lists them: the newest approved ones are its rollback targets; PrepareRun
    # lists and reads them to find a rollback run's target)
    for lister in ("CleanupResourcesFunction", "PrepareRunFunction"):
        assert grants.pop((lister, "sagemaker:ListModelPackages")) == ["*"]
    group_arn = grants.pop(("PrepareRunFunction", "sagemaker:DescribeModelPackageGroup"))
    assert any(arn.endswith(":model-package-group/${AWS::StackName}-models") for arn in group_arn)
    assert set(grants) == {
        ("PrepareRunFunction", "sagemaker:DescribeModelPackage"),
        ("EvaluateModelsFunction", "sagemaker:CreateModelPackage"),
        ("RecordRunFunction", "sagemaker:DescribeModelPackage"),
        ("RecordRunFunction", "sagemaker:UpdateModelPackage"),
        ("StartRetrainFunction", "sagemaker:DescribeModelPackage"),
        ("StartRetrainFunction", "sagemaker:UpdateModelPackage"),
    }
    for resources_granted in grants.values():
        assert any(arn.endswith(f":model-package/{packages}") for arn in resources_granted)


def test_owned_resources_are_created_and_deleted_by_tag(resources: dict[str, Any]) -> None:
    # Given the workflow's create statement and cleanup's delete statement
    by_sid = {s.get("Sid"): s for _, s in identity_statements(resources)}
    create = by_sid["CreateTaggedSageMakerResources"]
    delete = by_sid["DeleteOwnedResources"]
    # Then both are bound to the refit:stack tag of layout.TAG_STACK
    assert create["Condition"]["StringEquals"] == {
        f"aws:RequestTag/{layout.TAG_STACK}": {"Ref": "AWS::StackName"}
    }
    assert delete["Condition"]["StringEquals"] == {
        f"aws:ResourceTag/{layout.TAG_STACK}": {"Ref": "AWS::StackName"}
    }


def test_optional_resources_follow_their_parameters(template: dict[str, Any]) -> None:
    # Given the conditional resources
    resources = template["Resources"]
    # Then the bucket exists only without ExistingBucketName, the subscription only with an email
    assert resources["DataBucket"]["Condition"] == "CreateBucket"
    assert resources["DataBucketPolicy"]["Condition"] == "CreateBucket"
    assert resources["NotificationEmailSubscription"]["Condition"] == "HasNotificationEmail"
    assert template["Conditions"]["CreateBucket"] == {
        "Fn::Equals": [{"Ref": "ExistingBucketName"}, ""]
    }
    # And an empty TrainingImageUri falls back to the region's mapping
    image = template["Globals"]["Function"]["Environment"]["Variables"]["TRAINING_IMAGE_URI"]
    assert image["Fn::If"][2] == {
        "Fn::FindInMap": ["XGBoostImageByRegion", {"Ref": "AWS::Region"}, "Uri"]
    }


def test_parameters_have_the_issue_defaults(template: dict[str, Any]) -> None:
    # Given the parameters
    parameters = template["Parameters"]
    expected = {
        "ProjectName": "refit",
        "TrainingImageUri": "",
        "TrainingInstanceType": "ml.m5.xlarge",
        "TrainingInstanceCount": 1,
        "TrainingInputMode": "File",
        "UseSpotTraining": "true",
        "MaxRuntimeSeconds": 3600,
        "MaxWaitSeconds": 7200,
        "CheckpointIntervalRounds": 10,
        "DeploymentMode": "endpoint",
        "EndpointName": "",
        "EndpointInstanceType": "ml.m5.large",
        "EndpointInstanceCount": 1,
        "EvaluationMetric": "rmse",
        "MinImprovement": 0,
        "MaxRetainedRegression": 0,
        "FullRetrainAfterRejections": 3,
        "FullRetrainGrowth": 3,
        "PreviousModelsToKeep": 1,
        "NotificationEmail": "",
        "Objective": "reg:squarederror",
        "NumRoundsFull": 300,
        "LearningRate": 0.1,
        "NumRoundsIncremental": 50,
        "IncrementalLearningRate": 0.1,
        "ReplaySampleRows": 50000,
        "FullRetrainSchedule": "",
        "FullRetrainScheduleTimezone": "UTC",
        "MaxFileMB": 512,
        "MaxObjectsPerRun": 1000,
        "InlineCheckMB": 256,
        "CheckConcurrency": 100,
        "BatchingWindowSeconds": 30,
        "TriggerBatchSize": 1000,
        "EndpointPollSeconds": 30,
        "EndpointMaxPolls": 120,
        "RolloutMode": "Canary",
        "RolloutStepPercent": 10,
        "RolloutWaitSeconds": 300,
        "RolloutBakeSeconds": 300,
        "RollbackErrorThreshold": 0,
        "RollbackLatencyMs": 1000,
        "ExistingBucketName": "",
        "LogLevel": "INFO",
    }
    # Then they are the issue's, with its allowed values
    assert {name: p.get("Default") for name, p in parameters.items()} == expected
    assert parameters["DeploymentMode"]["AllowedValues"] == ["endpoint", "batch"]
    # (the metrics the gate knows, refit.metrics: the template offers exactly those)
    assert parameters["EvaluationMetric"]["AllowedValues"] == list(SUPPORTED_METRICS)


def test_outputs_name_what_operators_need(template: dict[str, Any]) -> None:
    # Given the outputs
    outputs = template["Outputs"]
    # Then the bucket, workflow, topic, table, endpoint and queue are there, described
    for name in (
        "DataBucketName",
        "StateMachineArn",
        "NotificationTopicArn",
        "RunsTableName",
        "EndpointName",
        "TriggerQueueUrl",
    ):
        assert outputs[name]["Description"]


def test_samconfig_deploys_with_iam_capability_only() -> None:
    # Given samconfig.toml
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    # Then it needs no named IAM resources and holds no secrets or account ids
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert not any(re.search(r"\d{12}", str(v)) for v in walk(config))


def test_the_scheduled_full_retrain_is_off_by_default_and_starts_a_full_run(
    template: dict[str, Any],
) -> None:
    # Given the schedule, its role and the parameter that switches them on
    resources = template["Resources"]
    schedule, role = resources["ScheduledFullRetrain"], resources["FullRetrainScheduleRole"]
    assert template["Parameters"]["FullRetrainSchedule"]["Default"] == ""
    assert template["Conditions"]["HasFullRetrainSchedule"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "FullRetrainSchedule"}, ""]}]
    }
    # Then both exist only when a schedule expression is given
    assert schedule["Condition"] == role["Condition"] == "HasFullRetrainSchedule"
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "FullRetrainSchedule"}
    # And the target is the state machine, with an input refit reads as a scheduled full retrain
    target = props["Target"]
    assert target["Arn"] == {"Ref": "RetrainStateMachine"}
    request = parse_run_input(json.loads(target["Input"]))
    assert (request.source, request.training_mode) == ("schedule", "full")
    # And its role may start executions of this state machine and nothing else
    statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert [(s["Action"], s["Resource"]) for s in statements] == [
        ("states:StartExecution", {"Ref": "RetrainStateMachine"})
    ]
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "scheduler.amazonaws.com"}


def test_what_the_stack_remembers_outlives_a_replacement_or_a_delete(
    resources: dict[str, Any],
) -> None:
    # Given the stores of data, models and the run ledger (champion pointer, queue, lock)
    for name in ("DataBucket", "RunsTable", "ModelPackageGroup"):
        resource = resources[name]
        # Then neither a replacement nor `sam delete` removes them
        assert resource["DeletionPolicy"] == "Retain", name
        if name != "ModelPackageGroup":
            assert resource["UpdateReplacePolicy"] == "Retain", name
    # And the ledger can be restored to any second of the last 35 days
    table = resources["RunsTable"]["Properties"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_dead_letters_and_failed_executions_alarm_to_a_topic_alarms_can_use(
    resources: dict[str, Any],
) -> None:
    # Given the two operational alarms
    alarms = {
        r["Properties"]["MetricName"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("AlarmActions")
    }
    dead_letters = alarms["ApproximateNumberOfMessagesVisible"]
    failed = alarms["ExecutionsFailed"]
    # Then they watch the trigger's dead letter queue and the state machine, alarming above 0
    assert dead_letters["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["TriggerDeadLetterQueue", "QueueName"]}}
    ]
    assert failed["Dimensions"] == [
        {"Name": "StateMachineArn", "Value": {"Ref": "RetrainStateMachine"}}
    ]
    for alarm in (dead_letters, failed):
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert alarm["AlarmActions"] == [{"Ref": "NotificationTopic"}]
    # And the topic's key is the stack's own, whose policy lets CloudWatch publish with it
    topic = resources["NotificationTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "NotificationKey"}
    key_statements = resources["NotificationKey"]["Properties"]["KeyPolicy"]["Statement"]
    assert any(
        s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
        and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(s["Action"])
        for s in key_statements
    )
    # And every function that publishes to the topic may use the key
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        policies = as_list(resource["Properties"].get("Policies", []))
        if any(isinstance(p, dict) and "SNSPublishMessagePolicy" in p for p in policies):
            assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= allowed_actions(resources, name), name
