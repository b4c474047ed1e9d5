"""local_cloud.moto_patches against a real ThreadedMotoServer on 127.0.0.1.

One server, runtime and install for the module: names are unique per test. The SageMaker work
really runs (tiny fake scripts), the Step Functions interpreter really executes, Lambda handlers
are in-process fakes behind the ``invoke_lambda`` callable.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models.table import Table as DynamoTable

from local_cloud import moto_patches
from local_cloud.lambda_result import UNHANDLED
from local_cloud.sagemaker import LocalSageMaker
from refit.record_run.cost import Window
from refit.rollout import RolloutPolicy
from tests.emulator.local_sagemaker_harness import (
    BUCKET,
    FAST_SETTINGS,
    IMAGE,
    get,
    keys,
    put,
    wait_until,
)
from tests.emulator.moto_patches_harness import (
    ACCOUNT,
    REGION,
    ROLE_ARN,
    FakeLambdas,
    MotoServer,
    create_endpoint_config,
    create_function,
    create_model,
    create_state_machine,
    fake_training_job,
    history_types,
    moto_server,
    output,
    put_model,
    run,
    single_task,
    start,
    task_state,
    unique,
    upload_inference_code,
    upload_training_code,
    wait_endpoint,
    wait_execution,
)
from tests.runs_table import create_runs_table

SM = "arn:aws:states:::sagemaker:"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
ASL_PATH = Path(__file__).resolve().parents[2] / "statemachine" / "retrain.asl.json"


class InvalidRunInput(Exception):
    """What a handler raises; its class name must become the Step Functions error."""


@dataclass
class Cloud:
    server: MotoServer
    runtime: LocalSageMaker
    lambdas: FakeLambdas
    training_code: str
    inference_code: str
    s3: Any
    sagemaker: Any
    runtime_client: Any
    sfn: Any
    lambda_client: Any
    sqs: Any
    events: Any


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with moto_server() as server:
        s3 = server.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        runtime = LocalSageMaker(
            server.client("s3"),
            tmp_path_factory.mktemp("sagemaker"),
            settings=FAST_SETTINGS,
            alarm_state=moto_patches.cloudwatch_alarm_state(REGION),
        )
        lambdas = FakeLambdas()
        moto_patches.install(sagemaker=runtime, invoke_lambda=lambdas)
        try:
            yield Cloud(
                server=server,
                runtime=runtime,
                lambdas=lambdas,
                training_code=upload_training_code(s3),
                inference_code=upload_inference_code(s3),
                s3=s3,
                sagemaker=server.client("sagemaker"),
                runtime_client=server.client("sagemaker-runtime"),
                sfn=server.client("stepfunctions"),
                lambda_client=server.client("lambda"),
                sqs=server.client("sqs"),
                events=server.client("events"),
            )
        finally:
            moto_patches.uninstall()
            runtime.close()


def caught_error(description: dict[str, Any]) -> dict[str, Any]:
    """``$.error`` of a machine built by ``single_task(..., catch=True)``."""
    error: dict[str, Any] = output(description)["error"]
    return error


def live_model(cloud: Cloud, name: str, factor: float) -> None:
    """Model ``name`` (factor ``factor``) and its endpoint config ``name`` in moto."""
    url = put_model(cloud.s3, f"models/{name}/output/model.tar.gz", factor)
    create_model(cloud.sagemaker, name, url, cloud.inference_code)
    create_endpoint_config(cloud.sagemaker, name, name)


def predict(cloud: Cloud, endpoint: str, values: list[float]) -> list[float]:
    response = cloud.runtime_client.invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps(values).encode(),
        ContentType="application/json",
        Accept="application/json",
    )
    assert response["InvokedProductionVariant"] == "AllTraffic"
    predictions: list[float] = json.loads(response["Body"].read())["predictions"]
    return predictions


# --- training jobs --------------------------------------------------------------------------


def test_training_job_sync_runs_the_job_and_outputs_its_description(cloud: Cloud) -> None:
    # Given a state machine whose only task is createTrainingJob.sync
    job = unique("train-ok")
    request = fake_training_job(job, cloud.training_code, factor="3")
    machine = single_task(task_state(SM + "createTrainingJob.sync", Parameters=request))

    # When it runs
    description = run(cloud.sfn, machine, {})

    # Then the job really ran and the task output is its (JSON) Describe
    result = output(description)
    artifact = f"s3://{BUCKET}/models/{job}/output/model.tar.gz"
    assert result["TrainingJobStatus"] == "Completed"
    assert result["ModelArtifacts"] == {"S3ModelArtifacts": artifact}
    assert result["AlgorithmSpecification"]["MetricDefinitions"] == []  # not moto's test:dcg
    assert isinstance(result["TrainingEndTime"], int)  # epoch milliseconds
    assert result["TrainingEndTime"] >= result["TrainingStartTime"] >= result["CreationTime"]
    assert "LocalRuntime" not in result
    assert get(cloud.s3, f"models/{job}/output/model.tar.gz")[:2] == b"\x1f\x8b"
    assert cloud.runtime.describe_training_job(job)["TrainingJobStatus"] == "Completed"

    # And List agrees with Describe
    listed = cloud.sagemaker.list_training_jobs(StatusEquals="Completed", NameContains=job)
    assert [s["TrainingJobName"] for s in listed["TrainingJobSummaries"]] == [job]


def test_failed_training_job_is_caught_as_task_failed_with_its_description(cloud: Cloud) -> None:
    job = unique("train-fail")
    request = fake_training_job(job, cloud.training_code, behaviour="fail")
    machine = single_task(task_state(SM + "createTrainingJob.sync", Parameters=request), True)

    error = caught_error(run(cloud.sfn, machine, {}))

    assert error["Error"] == "States.TaskFailed"
    cause = json.loads(error["Cause"])
    assert cause["TrainingJobName"] == job
    assert cause["TrainingJobStatus"] == "Failed"
    assert cause["FailureReason"] == "AlgorithmError: the data is bad"
    listed = cloud.sagemaker.list_training_jobs(StatusEquals="Failed", NameContains=job)
    assert len(listed["TrainingJobSummaries"]) == 1


def test_stop_execution_stops_the_running_training_job(cloud: Cloud) -> None:
    # Given an execution waiting on a training job that never ends by itself
    job = unique("train-stop")
    request = fake_training_job(job, cloud.training_code, behaviour="sleep")
    machine = single_task(task_state(SM + "createTrainingJob.sync", Parameters=request))
    execution = start(cloud.sfn, create_state_machine(cloud.sfn, machine, unique("sm")), {})
    wait_until(lambda: job in cloud.runtime.list_training_jobs())
    wait_until(lambda: cloud.runtime.describe_training_job(job)["SecondaryStatus"] == "Training")

    # When the execution is stopped
    cloud.sfn.stop_execution(executionArn=execution, cause="operator")

    # Then the job is stopped too
    wait_until(lambda: cloud.runtime.describe_training_job(job)["TrainingJobStatus"] == "Stopped")
    assert wait_execution(cloud.sfn, execution)["status"] == "ABORTED"
    described = cloud.sagemaker.describe_training_job(TrainingJobName=job)
    assert described["TrainingJobStatus"] == "Stopped"


def test_task_timeout_stops_the_training_job(cloud: Cloud) -> None:
    job = unique("train-timeout")
    request = fake_training_job(job, cloud.training_code, behaviour="sleep")
    state = task_state(SM + "createTrainingJob.sync", Parameters=request, TimeoutSeconds=1)

    error = caught_error(run(cloud.sfn, single_task(state, catch=True), {}))

    assert error["Error"] == "States.Timeout"
    wait_until(lambda: cloud.runtime.describe_training_job(job)["TrainingJobStatus"] == "Stopped")


def test_training_job_api_duplicates_stop_and_errors_behave_as_aws(cloud: Cloud) -> None:
    job = unique("train-api")
    request = fake_training_job(job, cloud.training_code, behaviour="sleep")
    arn = cloud.sagemaker.create_training_job(**request)["TrainingJobArn"]
    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{job}"
    assert cloud.sagemaker.describe_training_job(TrainingJobName=job)["TrainingJobStatus"] == (
        "InProgress"
    )

    # A second job of the same name is refused, and the first one is untouched
    with pytest.raises(ClientError) as duplicate:
        cloud.sagemaker.create_training_job(**request)
    assert duplicate.value.response["Error"]["Code"] == "ResourceInUse"
    listed = cloud.sagemaker.list_training_jobs(StatusEquals="InProgress", NameContains=job)
    assert len(listed["TrainingJobSummaries"]) == 1

    # StopTrainingJob: Stopping, then Stopped; stopping again is a ValidationException
    cloud.sagemaker.stop_training_job(TrainingJobName=job)
    wait_until(
        lambda: (
            cloud.sagemaker.describe_training_job(TrainingJobName=job)["TrainingJobStatus"]
            == "Stopped"
        )
    )
    with pytest.raises(ClientError) as again:
        cloud.sagemaker.stop_training_job(TrainingJobName=job)
    assert again.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as missing:
        cloud.sagemaker.stop_training_job(TrainingJobName="no-such-job")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFound"


def test_api_errors_become_sagemaker_error_names_in_step_functions(cloud: Cloud) -> None:
    # A duplicate training job: SageMaker.ResourceInUseException
    job = unique("train-dup")
    request = fake_training_job(job, cloud.training_code)
    cloud.sagemaker.create_training_job(**request)
    state = task_state(SM + "createTrainingJob.sync", Parameters=request)
    error = caught_error(run(cloud.sfn, single_task(state, catch=True), {}))
    assert error["Error"] == "SageMaker.ResourceInUseException"
    details = "(Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceInUse;"
    assert details in error["Cause"]

    # A ValidationException: SageMaker.AmazonSageMakerException
    params = {"EndpointName": unique("ep"), "EndpointConfigName": "no-such-config"}
    state = task_state(SM + "createEndpoint", Parameters=params)
    error = caught_error(run(cloud.sfn, single_task(state, catch=True), {}))
    assert error["Error"] == "SageMaker.AmazonSageMakerException"
    assert "Could not find endpoint configuration" in error["Cause"]
    assert "Error Code: ValidationException;" in error["Cause"]


def test_unknown_parameters_and_unsupported_patterns_fail_loudly(cloud: Cloud) -> None:
    # A miscased key is not dropped silently (as moto does for other integrations)
    params = {"trainingJobName": "x", "RoleArn": ROLE_ARN}
    state = task_state(SM + "createTrainingJob", Parameters=params)
    description = run(cloud.sfn, single_task(state), {})
    assert description["status"] == "FAILED"
    assert description["error"] == "States.Runtime"
    assert "'trainingJobName'" in description["cause"]

    # .waitForTaskToken (AWS does not offer it for SageMaker) and .sync on a non-job action
    for resource in (SM + "createTrainingJob.waitForTaskToken", SM + "createModel.sync"):
        machine = single_task(task_state(resource, Parameters={"ModelName": "m"}))
        with pytest.raises(ClientError) as invalid:
            create_state_machine(cloud.sfn, machine, unique("sm"))
        assert invalid.value.response["Error"]["Code"] == "InvalidDefinition"


def test_role_arn_path_in_parameters_is_a_path_not_a_literal_key(cloud: Cloud) -> None:
    # moto's lexer reads "RoleArn.$" as the Credentials keyword: the binding was a literal
    machine = {
        "StartAt": "Pass",
        "States": {
            "Pass": {
                "Type": "Pass",
                "Parameters": {"RoleArn.$": "$.role", "Name.$": "$$.Execution.Name"},
                "End": True,
            }
        },
    }
    arn = create_state_machine(cloud.sfn, machine, unique("sm"))
    result = output(wait_execution(cloud.sfn, start(cloud.sfn, arn, {"role": "r"}, "exec-1")))
    assert result == {"RoleArn": "r", "Name": "exec-1"}


# --- endpoints -----------------------------------------------------------------------------


def endpoint_machine() -> dict[str, Any]:
    """createModel -> createEndpointConfig -> createEndpoint -> poll describeEndpoint."""
    retry_until_in_service = {"Variable": "$.endpoint.EndpointStatus", "StringEquals": "Creating"}
    return {
        "StartAt": "CreateModel",
        "States": {
            "CreateModel": task_state(
                SM + "createModel",
                Parameters={
                    "ModelName.$": "$.name",
                    "ExecutionRoleArn": ROLE_ARN,
                    "PrimaryContainer": {
                        "Image": IMAGE,
                        "ModelDataUrl.$": "$.modelDataUrl",
                        "Environment": {
                            "SAGEMAKER_PROGRAM": "inference.py",
                            "SAGEMAKER_SUBMIT_DIRECTORY.$": "$.code",
                        },
                    },
                },
                ResultPath="$.model",
                Next="CreateEndpointConfig",
            ),
            "CreateEndpointConfig": task_state(
                SM + "createEndpointConfig",
                Parameters={
                    "EndpointConfigName.$": "$.name",
                    "ProductionVariants": [
                        {
                            "VariantName": "AllTraffic",
                            "ModelName.$": "$.name",
                            "InstanceType": "ml.m5.large",
                            "InitialInstanceCount": 1,
                        }
                    ],
                },
                ResultPath="$.config",
                Next="CreateEndpoint",
            ),
            "CreateEndpoint": task_state(
                SM + "createEndpoint",
                Parameters={"EndpointName.$": "$.name", "EndpointConfigName.$": "$.name"},
                ResultPath="$.created",
                Next="Describe",
            ),
            "Describe": task_state(
                "arn:aws:states:::aws-sdk:sagemaker:describeEndpoint",
                Parameters={"EndpointName.$": "$.name"},
                ResultSelector={
                    "EndpointStatus.$": "$.EndpointStatus",
                    "EndpointConfigName.$": "$.EndpointConfigName",
                },
                ResultPath="$.endpoint",
                Next="InService",
            ),
            "InService": {
                "Type": "Choice",
                "Choices": [{**retry_until_in_service, "Next": "Wait"}],
                "Default": "Done",
            },
            "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Describe"},
            "Done": {"Type": "Succeed"},
        },
    }


def test_endpoint_created_through_the_interpreter_serves_predictions(cloud: Cloud) -> None:
    # Given a trained model artifact and its inference code
    name = unique("ep-create")
    url = put_model(cloud.s3, f"models/{name}/output/model.tar.gz", factor=2)
    execution_input = {"name": name, "modelDataUrl": url, "code": cloud.inference_code}

    # When the workflow creates the model, config and endpoint, then polls describeEndpoint
    result = output(run(cloud.sfn, endpoint_machine(), execution_input))

    # Then the request-response outputs are the API's, and the endpoint became InService
    base = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    assert result["model"] == {"ModelArn": f"{base}:model/{name}"}
    assert result["config"] == {"EndpointConfigArn": f"{base}:endpoint-config/{name}"}
    assert result["created"] == {"EndpointArn": f"{base}:endpoint/{name}"}
    assert result["endpoint"] == {"EndpointStatus": "InService", "EndpointConfigName": name}

    # And InvokeEndpoint over sagemaker-runtime reaches the model
    assert predict(cloud, name, [1, 2.5]) == [2, 5.0]
    described = cloud.sagemaker.describe_endpoint(EndpointName=name)
    assert described["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    listed = cloud.sagemaker.list_endpoints(StatusEquals="InService", NameContains=name)
    assert [e["EndpointName"] for e in listed["Endpoints"]] == [name]


def test_update_endpoint_switches_config_and_a_failed_update_stays_on_the_old_one(
    cloud: Cloud,
) -> None:
    # Given an InService endpoint on config v1 (factor 2)
    endpoint, v1, v2, v3 = (unique(n) for n in ("ep-update", "v1", "v2", "v3"))
    live_model(cloud, v1, 2)
    live_model(cloud, v2, 10)
    live_model(cloud, v3, 100)
    cloud.sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=v1)
    assert wait_endpoint(cloud.sagemaker, endpoint)["EndpointStatus"] == "InService"
    update = single_task(
        task_state(
            SM + "updateEndpoint",
            Parameters={"EndpointName": endpoint, "EndpointConfigName.$": "$.config"},
        )
    )

    # When updateEndpoint switches it to v2
    assert output(run(cloud.sfn, update, {"config": v2})) == {
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{endpoint}"
    }

    # Then it is Updating, then InService on v2, serving the new model
    described = wait_endpoint(cloud.sagemaker, endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", v2)
    assert predict(cloud, endpoint, [1]) == [10]

    # When an update to v3 fails
    cloud.runtime.inject_endpoint_update_failure(endpoint, "the new variant failed health checks")
    output(run(cloud.sfn, update, {"config": v3}))

    # Then the endpoint is InService on v2 again (moto's record follows), with a FailureReason
    described = wait_endpoint(cloud.sagemaker, endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", v2)
    assert described["FailureReason"] == "the new variant failed health checks"
    assert predict(cloud, endpoint, [1]) == [10]


def test_a_cloudwatch_alarm_set_through_the_api_rolls_a_canary_update_back(
    cloud: Cloud,
) -> None:
    # Given an InService endpoint on v1 (factor 2) and an alarm in moto's CloudWatch
    endpoint, v1, v2, alarm = (unique(n) for n in ("ep-canary", "v1", "v2", "ep-errors"))
    live_model(cloud, v1, 2)
    live_model(cloud, v2, 10)
    cloud.sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=v1)
    assert wait_endpoint(cloud.sagemaker, endpoint)["EndpointStatus"] == "InService"
    cloudwatch = cloud.server.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=alarm,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 60,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            },
            "TerminationWaitInSeconds": 0,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }

    # An alarm that does not exist is a ValidationException, and nothing starts
    missing = copy.deepcopy(deployment)
    missing["AutoRollbackConfiguration"]["Alarms"].append({"AlarmName": "no-such-alarm"})
    with pytest.raises(ClientError) as invalid:
        cloud.sagemaker.update_endpoint(
            EndpointName=endpoint, EndpointConfigName=v2, DeploymentConfig=missing
        )
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    assert "no-such-alarm" in invalid.value.response["Error"]["Message"]
    assert cloud.sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == (
        "InService"
    )

    # When UpdateEndpoint starts the canary (seen through DescribeEndpoint)
    cloud.sagemaker.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=v2, DeploymentConfig=deployment
    )

    def canary_running() -> bool:
        described = cloud.sagemaker.describe_endpoint(EndpointName=endpoint)
        pending = described.get("PendingDeploymentSummary", {}).get("ProductionVariants", [{}])
        return bool(pending[0].get("VariantStatus", [{}])[0].get("Status") == "ActivatingTraffic")

    wait_until(canary_running)
    described = cloud.sagemaker.describe_endpoint(EndpointName=endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("Updating", v1)
    assert described["PendingDeploymentSummary"]["EndpointConfigName"] == v2
    assert sorted({predict(cloud, endpoint, [1])[0] for _ in range(4)}) == [2, 10]

    # And CloudWatch's SetAlarmState puts the alarm into ALARM
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="errors")

    # Then the update rolls back to v1, naming the alarm, and only v1 answers
    described = wait_endpoint(cloud.sagemaker, endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", v1)
    assert f"CloudWatch alarm(s) [{alarm}] went into ALARM state" in described["FailureReason"]
    assert "PendingDeploymentSummary" not in described
    assert [predict(cloud, endpoint, [1])[0] for _ in range(4)] == [2] * 4


def test_install_refuses_a_cloudwatch_backend_without_alarms(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.cloudwatch.models import CloudWatchBackend

    def no_alarms(self: Any, region_name: str, account_id: str) -> None:
        self.region_name, self.account_id = region_name, account_id

    moto_patches.uninstall()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(CloudWatchBackend, "__init__", no_alarms)
            with pytest.raises(moto_patches.MotoIncompatible, match="no dict 'alarms'"):
                moto_patches.install(sagemaker=cloud.runtime, invoke_lambda=cloud.lambdas)
        assert not moto_patches.is_installed()
    finally:
        moto_patches.install(sagemaker=cloud.runtime, invoke_lambda=cloud.lambdas)
    assert moto_patches.is_installed()


def test_endpoint_api_duplicates_delete_and_invoke_errors_behave_as_aws(cloud: Cloud) -> None:
    endpoint, config = unique("ep-api"), unique("cfg")
    live_model(cloud, config, 3)
    cloud.sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)

    # A second CreateEndpoint of that name is refused (moto used to replace the record)
    with pytest.raises(ClientError) as duplicate:
        cloud.sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert duplicate.value.response["Error"]["Code"] == "ValidationException"
    assert "Cannot create already existing endpoint" in str(duplicate.value)
    wait_endpoint(cloud.sagemaker, endpoint)

    # The container's error status comes back as ModelError with the original status and body
    with pytest.raises(ClientError) as model_error:
        cloud.runtime_client.invoke_endpoint(
            EndpointName=endpoint, Body=b"[-1]", ContentType="application/json"
        )
    error = model_error.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 500  # predict_fn raised: the image's Flask page
    assert "500 Internal Server Error" in error["OriginalMessage"]
    assert "Received server error (500) from AllTraffic" in error["Error"]["Message"]

    # A binary (non-UTF-8) body reaches the container as is (moto decoded bodies as UTF-8)
    with pytest.raises(ClientError) as unsupported:
        cloud.runtime_client.invoke_endpoint(
            EndpointName=endpoint, Body=b"\xff\xfe\x00", ContentType="application/x-npy"
        )
    assert unsupported.value.response["OriginalStatusCode"] == 500  # input_fn raised

    # A body over 6 MiB is refused before it reaches the model
    with pytest.raises(ClientError) as too_large:
        cloud.runtime_client.invoke_endpoint(
            EndpointName=endpoint, Body=b"0" * (6 * 1024 * 1024 + 1), ContentType="text/csv"
        )
    assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413

    # CSV in, CSV out (a binary-safe body path)
    response = cloud.runtime_client.invoke_endpoint(
        EndpointName=endpoint, Body=b"1,2\n3,4\n", ContentType="text/csv", Accept="text/csv"
    )
    # (Flask, under the image's toolkit, adds the charset to text types)
    assert (response["ContentType"], response["Body"].read()) == (
        "text/csv; charset=utf-8",
        b"9\n21",
    )

    # DeleteEndpoint stops the endpoint; invoking it then is a ValidationError
    cloud.sagemaker.delete_endpoint(EndpointName=endpoint)
    assert endpoint not in cloud.runtime.list_endpoints()
    with pytest.raises(ClientError) as gone:
        cloud.runtime_client.invoke_endpoint(EndpointName=endpoint, Body=b"[1]")
    assert gone.value.response["Error"]["Code"] == "ValidationError"
    assert gone.value.response["Error"]["Message"] == (
        f"Endpoint {endpoint} of account {ACCOUNT} not found."
    )


# --- batch transform ------------------------------------------------------------------------


def test_transform_job_sync_writes_the_outputs(cloud: Cloud) -> None:
    # Given a model and two CSV objects to score
    name = unique("transform")
    url = put_model(cloud.s3, f"models/{name}/output/model.tar.gz", factor=10)
    create_model(cloud.sagemaker, name, url, cloud.inference_code)
    put(cloud.s3, f"batch/{name}/in/a.csv", "1,2\n3,4\n")
    put(cloud.s3, f"batch/{name}/in/b.csv", "5,5\n")
    parameters = {
        "TransformJobName": name,
        "ModelName": name,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{BUCKET}/batch/{name}/in/",
                }
            },
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{BUCKET}/batch/{name}/out/",
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    state = task_state(SM + "createTransformJob.sync", Parameters=parameters)

    # When createTransformJob.sync runs
    result = output(run(cloud.sfn, single_task(state), {}))

    # Then it waited for the job, whose outputs are in S3
    assert result["TransformJobStatus"] == "Completed"
    assert isinstance(result["TransformEndTime"], int)
    assert keys(cloud.s3, f"batch/{name}/out/") == [
        f"batch/{name}/out/a.csv.out",
        f"batch/{name}/out/b.csv.out",
    ]
    assert get(cloud.s3, f"batch/{name}/out/a.csv.out") == b"30\n70\n"
    listed = cloud.sagemaker.list_transform_jobs(StatusEquals="Completed", NameContains=name)
    assert len(listed["TransformJobSummaries"]) == 1

    # StopTransformJob exists now: a finished job cannot be stopped, an unknown one is not found
    with pytest.raises(ClientError) as finished:
        cloud.sagemaker.stop_transform_job(TransformJobName=name)
    assert finished.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as missing:
        cloud.sagemaker.stop_transform_job(TransformJobName="no-such-transform")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFound"


# --- Lambda ---------------------------------------------------------------------------------


def test_lambda_invoke_and_plain_function_arn_tasks_reach_the_invoker(cloud: Cloud) -> None:
    name = unique("echo")
    arn = create_function(cloud.lambda_client, name)
    cloud.lambdas.handlers[name] = lambda event: {"got": event}
    machine = {
        "StartAt": "ViaInvoke",
        "States": {
            "ViaInvoke": task_state(
                LAMBDA_INVOKE,
                Parameters={"FunctionName": arn, "Payload": {"n.$": "$.n"}},
                ResultSelector={"payload.$": "$.Payload", "status.$": "$.StatusCode"},
                ResultPath="$.invoke",
                Next="ViaArn",
            ),
            "ViaArn": task_state(arn, Parameters={"m.$": "$.n"}, ResultPath="$.plain", End=True),
        },
    }

    result = output(run(cloud.sfn, machine, {"n": 7}))

    assert result["invoke"] == {"payload": {"got": {"n": 7}}, "status": 200}
    assert result["plain"] == {"got": {"m": 7}}
    assert cloud.lambdas.events_of(name) == [{"n": 7}, {"m": 7}]


@pytest.mark.parametrize("resource", ["invoke", "arn"])
def test_a_handler_exception_is_caught_with_aws_error_shape(cloud: Cloud, resource: str) -> None:
    name = unique("raises")
    arn = create_function(cloud.lambda_client, name)

    def handler(event: Any) -> Any:
        raise InvalidRunInput("prefix must be under data/train/")

    cloud.lambdas.handlers[name] = handler
    if resource == "invoke":
        state = task_state(LAMBDA_INVOKE, Parameters={"FunctionName": arn, "Payload.$": "$"})
    else:
        state = task_state(arn)

    error = caught_error(run(cloud.sfn, single_task(state, catch=True), {"x": 1}))

    assert error["Error"] == "InvalidRunInput"
    cause = json.loads(error["Cause"])
    assert cause["errorType"] == "InvalidRunInput"
    assert cause["errorMessage"] == "prefix must be under data/train/"
    assert isinstance(cause["stackTrace"], list)


def test_lambda_invoke_api_reports_function_error_and_log_tail(cloud: Cloud) -> None:
    name = unique("api")
    create_function(cloud.lambda_client, name)
    cloud.lambdas.handlers[name] = lambda event: event["a"] + 1

    ok = cloud.lambda_client.invoke(FunctionName=name, Payload=b'{"a": 1}', LogType="Tail")
    assert (ok["StatusCode"], json.loads(ok["Payload"].read())) == (200, 2)
    assert "FunctionError" not in ok
    assert base64.b64decode(ok["LogResult"]).decode() == f"handled {name}\n"

    failed = cloud.lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert failed["FunctionError"] == UNHANDLED
    assert json.loads(failed["Payload"].read())["errorType"] == "KeyError"
    assert "LogResult" not in failed  # only with LogType=Tail

    cloud.lambda_client.invoke(FunctionName=name, Payload=b'{"a": 5}', InvocationType="Event")
    wait_until(lambda: {"a": 5} in cloud.lambdas.events_of(name))

    # The invoker itself failing (here: no handler registered) is Lambda's ServiceException
    orphan = unique("orphan")
    create_function(cloud.lambda_client, orphan)
    with pytest.raises(ClientError) as service_error:
        cloud.lambda_client.invoke(FunctionName=orphan, Payload=b"{}")
    assert service_error.value.response["Error"]["Code"] == "ServiceException"
    assert service_error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_moto_does_not_deliver_sqs_messages_to_a_mapped_function(cloud: Cloud) -> None:
    # Given a queue mapped to a function
    name = unique("consumer")
    create_function(cloud.lambda_client, name)
    cloud.lambdas.handlers[name] = lambda event: None
    queue_url = cloud.sqs.create_queue(QueueName=unique("queue"))["QueueUrl"]
    queue_arn = cloud.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    cloud.lambda_client.create_event_source_mapping(
        EventSourceArn=queue_arn,
        FunctionName=name,
        BatchSize=10,
        MaximumBatchingWindowInSeconds=5,
    )

    # When a message is sent
    cloud.sqs.send_message(QueueUrl=queue_url, MessageBody="hello")

    # Then moto did not invoke the function: the message waits for the local poller
    assert cloud.lambdas.events_of(name) == []
    mappings = cloud.lambda_client.list_event_source_mappings(FunctionName=name)
    assert [m["EventSourceArn"] for m in mappings["EventSourceMappings"]] == [queue_arn]
    received = cloud.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in received["Messages"]] == ["hello"]


def test_s3_object_created_reaches_sqs_through_an_eventbridge_rule(cloud: Cloud) -> None:
    bucket = unique("events-bucket")
    cloud.s3.create_bucket(Bucket=bucket)
    cloud.s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    queue_url = cloud.sqs.create_queue(QueueName=unique("events"))["QueueUrl"]
    queue_arn = cloud.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule = unique("rule")
    pattern = {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "data/train/"}]}},
    }
    cloud.events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    cloud.events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])

    cloud.s3.put_object(Bucket=bucket, Key="data/train/a b.csv", Body=b"1,2\n")
    cloud.s3.put_object(Bucket=bucket, Key="elsewhere/c.csv", Body=b"1,2\n")

    received = cloud.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    events = [json.loads(m["Body"]) for m in received["Messages"]]
    assert [(e["detail-type"], e["detail"]["object"]["key"]) for e in events] == [
        ("Object Created", "data/train/a b.csv")
    ]


# --- the real workflow ----------------------------------------------------------------------


@dataclass
class Workflow:
    state_machine_arn: str
    records: list[dict[str, Any]]
    plans: dict[str, dict[str, Any]]
    decisions: dict[str, str]


@pytest.fixture(scope="module")
def workflow(cloud: Cloud) -> Workflow:
    """statemachine/retrain.asl.json with its DefinitionSubstitutions applied; the four
    functions are fakes: PrepareRun returns the canned RunPlan registered for the execution."""
    plans: dict[str, dict[str, Any]] = {}
    decisions: dict[str, str] = {}
    records: list[dict[str, Any]] = []

    def record_run(event: dict[str, Any]) -> dict[str, bool]:
        records.append(event)
        return {"recorded": True}

    arns = {}
    for key, handler in {
        "PrepareRun": lambda event: plans[event["executionName"]],
        # (the CheckDataFiles path runs with the real functions: test_bad_input.py)
        "CheckDataFile": lambda event: {"outcome": "accepted"},
        "EvaluateModels": lambda event: {
            "metric": "rmse",
            "decision": decisions[event["run"]["runId"]],
            "reason": "canned",
        },
        "CleanupResources": lambda event: {"deleted": {}, "kept": {}},
        "RecordRun": record_run,
    }.items():
        name = unique(f"refit-{key.lower()}")
        arns[f"{key}FunctionArn"] = create_function(cloud.lambda_client, name)
        cloud.lambdas.handlers[name] = handler
    definition = ASL_PATH.read_text()
    for placeholder, value in {**arns, "SageMakerRoleArn": ROLE_ARN}.items():
        definition = definition.replace("${" + placeholder + "}", value)
    assert "${" not in definition
    arn = create_state_machine(cloud.sfn, definition, unique("refit-retrain"))
    return Workflow(arn, records, plans, decisions)


def run_plan(
    cloud: Cloud,
    run_id: str,
    *,
    mode: str = "endpoint",
    endpoint: str = "refit-endpoint",
    endpoint_exists: bool = False,
    factor: float = 2,
) -> dict[str, Any]:
    """A RunPlan as PrepareRun builds it (docs/architecture.md), for the fake scripts."""
    job = f"job-{run_id}"
    tags = [{"Key": "refit:run", "Value": run_id}]
    data = put(cloud.s3, f"data/train/{run_id}.csv", "1,2,3\n")
    training_job = fake_training_job(job, cloud.training_code, factor=str(factor))
    training_job.update(
        {
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": data}},
                }
            ],
            "EnableManagedSpotTraining": True,
            "StoppingCondition": {"MaxRuntimeInSeconds": 30, "MaxWaitTimeInSeconds": 60},
            "CheckpointConfig": {
                "S3Uri": f"s3://{BUCKET}/checkpoints/{job}/",
                "LocalPath": "/opt/ml/checkpoints",
            },
            "Tags": tags,
        }
    )
    put(cloud.s3, f"batch/{run_id}/input/x.csv", "1,1\n")
    return {
        "runId": run_id,
        "status": "ready",
        "trainingMode": "full",
        "deploymentMode": mode,
        "metric": "rmse",
        "data": {"accepted": 1, "rejected": 0, "rows": 1, "rejectedFiles": []},
        "champion": None,
        "trainingJob": training_job,
        "deploy": {
            "modelName": job,
            "endpointConfigName": job,
            "endpointName": endpoint,
            "endpointExists": endpoint_exists,
            "image": IMAGE,
            "environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": cloud.inference_code,
            },
            "instanceType": "ml.m5.large",
            "instanceCount": 1,
            "tags": tags,
            "modelTags": tags,
            "endpointConfigTags": tags,
            "pollSeconds": 1,
            "maxPolls": 20,
            # UpdateEndpoint's blue/green policy, as refit.rollout builds it (switch at once)
            "deploymentConfig": RolloutPolicy("AllAtOnce", 10, 0, 0).deployment_config(),
            "rolloutSeconds": 0,
            "transform": {
                "hasInput": True,
                "TransformJobName": job,
                "ModelName": job,
                "TransformInput": {
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": f"s3://{BUCKET}/batch/{run_id}/input/",
                        }
                    },
                    "ContentType": "text/csv",
                    "SplitType": "Line",
                },
                "TransformOutput": {
                    "S3OutputPath": f"s3://{BUCKET}/batch/{run_id}/output/",
                    "Accept": "text/csv",
                    "AssembleWith": "Line",
                },
                "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                "BatchStrategy": "MultiRecord",
                "MaxPayloadInMB": 6,
                "Tags": tags,
                "successMarker": {"Bucket": BUCKET, "Key": f"batch/{run_id}/output/_SUCCESS"},
            },
        },
    }


def start_run(
    cloud: Cloud, workflow: Workflow, plan: dict[str, Any], decision: str = "promote"
) -> str:
    workflow.plans[plan["runId"]] = plan
    workflow.decisions[plan["runId"]] = decision
    return start(cloud.sfn, workflow.state_machine_arn, {"source": "manual"}, plan["runId"])


def record_of(workflow: Workflow, run_id: str) -> dict[str, Any]:
    (record,) = [r for r in workflow.records if r["executionName"] == run_id]
    return record


def test_real_workflow_runs_every_path_in_motos_interpreter(
    cloud: Cloud, workflow: Workflow
) -> None:
    endpoint = unique("refit-endpoint")
    paths = ("create", "batch", "reject", "badinput", "trainfail", "badmodel", "update", "rollback")
    run_ids = {path: unique(path) for path in paths}

    # Given runs started together: a first deployment, a batch run, a rejected challenger, a
    # run with nothing valid to train on, a failing training job and a model that cannot load
    plans = {
        "create": run_plan(cloud, run_ids["create"], endpoint=endpoint),
        "batch": run_plan(cloud, run_ids["batch"], mode="batch"),
        "reject": run_plan(cloud, run_ids["reject"]),
        "badinput": {**run_plan(cloud, run_ids["badinput"]), "status": "rejected-input"},
        "trainfail": run_plan(cloud, run_ids["trainfail"]),
        "badmodel": run_plan(cloud, run_ids["badmodel"], endpoint=unique("refit-broken")),
    }
    plans["trainfail"]["trainingJob"]["HyperParameters"]["behaviour"] = "fail"
    plans["badmodel"]["deploy"]["environment"]["SAGEMAKER_PROGRAM"] = "missing.py"
    decisions = {"reject": "reject"}
    executions = {
        key: start_run(cloud, workflow, plan, decisions.get(key, "promote"))
        for key, plan in plans.items()
    }
    finished = {key: wait_execution(cloud.sfn, arn, 45) for key, arn in executions.items()}

    # Then each took its path: to Succeeded, or through RecordFailure to RunFailed
    errors = {r["executionName"]: r["state"].get("error") for r in workflow.records}
    assert {key: d["status"] for key, d in finished.items()} == {
        **dict.fromkeys(("create", "batch", "reject", "badinput"), "SUCCEEDED"),
        "trainfail": "FAILED",
        "badmodel": "FAILED",
    }, errors
    outcomes = {key: record_of(workflow, run_ids[key])["outcome"] for key in finished}
    assert outcomes == {
        "create": "promoted",
        "batch": "promoted",
        "reject": "rejected",
        "badinput": "rejected-input",
        "trainfail": "failed",
        "badmodel": "failed",
    }
    train_error = record_of(workflow, run_ids["trainfail"])["state"]["error"]
    assert train_error["Error"] == "States.TaskFailed"
    assert json.loads(train_error["Cause"])["FailureReason"] == "AlgorithmError: the data is bad"
    model_error = record_of(workflow, run_ids["badmodel"])["state"]["error"]
    assert model_error["Error"] == "Refit.EndpointFailed"
    assert " is Failed after switching to config " in model_error["Cause"]

    # The endpoint serves the first model; the batch run scored its input
    created = record_of(workflow, run_ids["create"])["state"]
    assert created["endpoint"] == {"status": "InService", "configName": f"job-{run_ids['create']}"}
    assert created["endpointPolls"]["count"] >= 1  # States.MathAdd ran
    # And the wait loop kept the rollout window RecordRun prices ($$.State.EnteredTime)
    window = Window.parse(
        created["endpointPolls"]["startedAt"], created["endpointPolls"]["lastPolledAt"]
    )
    assert window.seconds is not None
    assert created["training"]["modelDataUrl"].endswith(
        f"job-{run_ids['create']}/output/model.tar.gz"
    )
    assert created["cleanup"] == {"deleted": {}, "kept": {}}
    assert predict(cloud, endpoint, [1]) == [2]
    training = cloud.sagemaker.describe_training_job(TrainingJobName=f"job-{run_ids['create']}")
    assert (training["RoleArn"], training["EnableManagedSpotTraining"]) == (ROLE_ARN, True)
    batch_state = record_of(workflow, run_ids["batch"])["state"]
    assert batch_state["transform"]["TransformJobStatus"] == "Completed"
    transform = batch_state["transform"]
    transform_window = Window.parse(transform["TransformStartTime"], transform["TransformEndTime"])
    assert transform_window.seconds is not None
    assert get(cloud.s3, f"batch/{run_ids['batch']}/output/x.csv.out") == b"4\n"
    # and once the output is complete, the marker names the transform job
    marker = json.loads(get(cloud.s3, f"batch/{run_ids['batch']}/output/_SUCCESS"))
    assert marker["TransformJobName"] == transform["TransformJobName"]

    # When a second run updates the endpoint (blue/green) to a new model
    update = run_plan(cloud, run_ids["update"], endpoint=endpoint, endpoint_exists=True, factor=5)
    assert wait_execution(cloud.sfn, start_run(cloud, workflow, update), 45)["status"] == (
        "SUCCEEDED"
    )
    assert predict(cloud, endpoint, [1]) == [5]

    # When a third run's update fails: the endpoint rolls back to the old config
    cloud.runtime.inject_endpoint_update_failure(endpoint, "health checks failed")
    rollback = run_plan(cloud, run_ids["rollback"], endpoint=endpoint, endpoint_exists=True)
    failed = wait_execution(cloud.sfn, start_run(cloud, workflow, rollback), 45)

    # Then VerifyEndpointConfig catches it, RecordFailure records it, and the run fails
    assert (failed["status"], failed["error"]) == ("FAILED", "Refit.RunFailed")
    record = record_of(workflow, run_ids["rollback"])
    assert record["outcome"] == "failed"
    assert record["state"]["error"]["Error"] == "Refit.EndpointRolledBack"
    assert f"not job-{run_ids['rollback']}" in record["state"]["error"]["Cause"]
    assert predict(cloud, endpoint, [1]) == [5]
    assert "TaskSubmitted" in history_types(cloud.sfn, failed["executionArn"])


# --- install / uninstall / compatibility ----------------------------------------------------


def test_install_twice_is_harmless(cloud: Cloud) -> None:
    moto_patches.install(sagemaker=cloud.runtime, invoke_lambda=cloud.lambdas)
    moto_patches.install(sagemaker=cloud.runtime, invoke_lambda=cloud.lambdas)

    assert moto_patches.is_installed()
    name = unique("twice")
    create_function(cloud.lambda_client, name)
    cloud.lambdas.handlers[name] = lambda event: "once"
    response = cloud.lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(response["Payload"].read()) == "once"
    assert cloud.lambdas.events_of(name) == [{}]


def test_uninstall_restores_moto(cloud: Cloud) -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import (
        state_task_factory,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_factory,
    )

    patched_invoke = LambdaFunction.invoke
    moto_patches.uninstall()
    try:
        assert not moto_patches.is_installed()
        assert LambdaFunction.invoke is not patched_invoke
        assert LambdaFunction.invoke.__module__ == "moto.awslambda.models"
        assert SageMakerModelBackend.describe_endpoint.__module__ == "moto.sagemaker.models"
        assert SageMakerResponse.create_training_job.__module__ == "moto.sagemaker.responses"
        for added in ("update_endpoint", "stop_training_job", "stop_transform_job"):
            assert not hasattr(SageMakerResponse, added)
            assert not hasattr(SageMakerModelBackend, added)
        assert "use_raw_body" not in vars(SageMakerRuntimeResponse)
        factory_binding = getattr(state_task_factory, "state_task_service_for")  # noqa: B009
        assert factory_binding is state_task_service_factory.state_task_service_for
        moto_patches.uninstall()  # idempotent
    finally:
        moto_patches.install(sagemaker=cloud.runtime, invoke_lambda=cloud.lambdas)
    assert LambdaFunction.invoke.__module__ == "local_cloud.moto_patches.lambda_api"


def test_install_refuses_a_moto_that_changed(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    import moto
    from moto.awslambda.models import LambdaFunction
    from moto.sagemaker.models import SageMakerModelBackend

    moto_patches.uninstall()
    try:
        with monkeypatch.context() as patch:
            patch.delattr(SageMakerModelBackend, "describe_training_job")
            patch.setattr(LambdaFunction, "invoke", lambda self, body: b"")
            with pytest.raises(moto_patches.MotoIncompatible) as changed:
                moto_patches.install(sagemaker=cloud.runtime, invoke_lambda=cloud.lambdas)
        message = str(changed.value)
        assert "moto 5.2.5" in message
        assert "SageMakerModelBackend.describe_training_job does not exist" in message
        assert "LambdaFunction.invoke has parameters ('self', 'body')" in message
        assert not moto_patches.is_installed()  # nothing half-applied

        with monkeypatch.context() as patch:
            patch.setattr(moto, "__version__", "5.3.0")
            with pytest.raises(moto_patches.MotoIncompatible, match=r"moto 5\.3\.0 is installed"):
                moto_patches.install(sagemaker=cloud.runtime, invoke_lambda=cloud.lambdas)
    finally:
        moto_patches.install(sagemaker=cloud.runtime, invoke_lambda=cloud.lambdas)
    assert moto_patches.is_installed()


def test_the_runtime_errors_reach_the_api_with_sagemaker_codes(cloud: Cloud) -> None:
    # The runtime validates the request: a bad job name is a ValidationException
    request = fake_training_job("bad_name_with_underscores", cloud.training_code)
    with pytest.raises(ClientError) as invalid:
        cloud.sagemaker.create_training_job(**request)
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError):
        cloud.sagemaker.describe_training_job(TrainingJobName="bad_name_with_underscores")


def test_concurrent_dynamodb_transactions_and_writes_all_succeed(cloud: Cloud) -> None:
    # Given a table the server's threads write to at once, as concurrent Lambda invocations do
    dynamodb = cloud.server.client("dynamodb")
    create_runs_table(dynamodb, "concurrent-writes")
    errors: list[Exception] = []

    def transactions(worker: int) -> None:
        client = cloud.server.client("dynamodb")
        try:
            for batch in range(8):
                client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": "concurrent-writes",
                                "Item": {"pk": {"S": f"T#{worker}"}, "sk": {"S": f"{batch}-{i}"}},
                            }
                        }
                        for i in range(50)
                    ]
                )
                for i in range(20):
                    client.put_item(
                        TableName="concurrent-writes",
                        Item={"pk": {"S": f"P#{worker}"}, "sk": {"S": f"{batch}-{i}"}},
                    )
        except Exception as error:  # collected: asserted below
            errors.append(error)

    # When four workers write transactions and single items concurrently
    workers = [threading.Thread(target=transactions, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Then every request succeeded and every item is there
    assert errors == []
    count = dynamodb.scan(TableName="concurrent-writes", Select="COUNT")["Count"]
    assert count == 4 * 8 * (50 + 20)


def test_a_transaction_backs_each_table_up_once_and_still_rolls_back(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a table with items, and a count of the table copies moto makes
    dynamodb = cloud.server.client("dynamodb")
    create_runs_table(dynamodb, "rollback")
    for i in range(30):
        dynamodb.put_item(TableName="rollback", Item={"pk": {"S": "OLD"}, "sk": {"S": str(i)}})
    copies: list[str] = []
    deepcopy = copy.deepcopy

    def counting(value: Any, memo: Any = None) -> Any:
        if isinstance(value, DynamoTable):
            copies.append(value.name)
        return deepcopy(value, memo)

    monkeypatch.setattr(copy, "deepcopy", counting)
    puts = [
        {"Put": {"TableName": "rollback", "Item": {"pk": {"S": "NEW"}, "sk": {"S": str(i)}}}}
        for i in range(49)
    ]
    failing = {
        "Put": {
            "TableName": "rollback",
            "Item": {"pk": {"S": "OLD"}, "sk": {"S": "0"}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    # When a 50-action transaction fails on its last condition
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(TransactItems=[*puts, failing])
    # Then the table was copied once (moto copied it once per action), and nothing was written
    assert copies == ["rollback"]
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    count = dynamodb.scan(TableName="rollback", Select="COUNT")["Count"]
    assert count == 30
