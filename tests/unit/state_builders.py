"""Builders for the later states' tests: state documents per docs/architecture.md, job outputs in
S3, tagged SageMaker resources, an SNS->SQS listener and a fake Lambda context."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from refit import layout
from refit.ledger.run_records import RunRecords
from tests.unit.moto_stack import ACCOUNT, BUCKET, REGION, STACK

ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/refit-test-sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ENDPOINT = "refit-test-endpoint"


# --- state document ----------------------------------------------------------------------------
def model_data_url(job: str) -> str:
    return f"s3://{BUCKET}/{layout.MODELS_PREFIX}{job}/output/model.tar.gz"


def run_plan(
    run_id: str = "run-2",
    *,
    deployment_mode: str = "endpoint",
    champion: str | None = "job-run-1",
    metric: str = "rmse",
    spot: bool = True,
) -> dict[str, Any]:
    """``$.run`` as PrepareRun writes it; the job, model and config share the job's name."""
    job = f"job-{run_id}"
    tags = [{"Key": layout.TAG_STACK, "Value": STACK}, {"Key": layout.TAG_RUN, "Value": run_id}]
    return {
        "runId": run_id,
        "status": "ready",
        "trainingMode": "incremental" if champion else "full",
        "deploymentMode": deployment_mode,
        "metric": metric,
        "data": {
            "accepted": 3,
            "rejected": 1,
            "rows": 1200,
            "manifestUri": f"s3://{BUCKET}/runs/{run_id}/manifest.json",
            "rejectedFiles": [
                {
                    "key": "data/train/bad.csv",
                    "reason": "column count 3, expected 5",
                    "movedTo": "data/rejected/bad.csv",
                }
            ],
        },
        "champion": None
        if champion is None
        else {
            "modelName": champion,
            "modelDataUrl": model_data_url(champion),
            "endpointConfigName": champion,
        },
        "trainingJob": {
            "TrainingJobName": job,
            "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            "HyperParameters": {"objective": "reg:squarederror", "num_round": "50"},
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
            "ResourceConfig": {
                "InstanceType": "ml.m5.xlarge",
                "InstanceCount": 1,
                "VolumeSizeInGB": 10,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
            "EnableManagedSpotTraining": spot,
            "RoleArn": ROLE_ARN,
            "Tags": tags,
        },
        "deploy": {
            "modelName": job,
            "endpointConfigName": job,
            "endpointName": ENDPOINT,
            "endpointExists": champion is not None,
            "image": IMAGE,
            "environment": {"SAGEMAKER_PROGRAM": layout.INFERENCE_ENTRY_POINT},
            "instanceType": "ml.m5.large",
            "instanceCount": 1,
            "tags": tags,
            "pollSeconds": 30,
            "maxPolls": 120,
            "transform": {
                "hasInput": True,
                "TransformJobName": job,
                "TransformInput": {
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": f"s3://{BUCKET}/{layout.BATCH_INPUT_PREFIX}",
                        }
                    }
                },
                "TransformOutput": {
                    "S3OutputPath": f"s3://{BUCKET}/{layout.BATCH_OUTPUT_PREFIX}{run_id}/"
                },
                "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            },
        },
    }


def training_result(
    run_id: str = "run-2", *, seconds: int = 600, billable: int = 180
) -> dict[str, Any]:
    """``$.training``, the Train state's ResultSelector."""
    job = f"job-{run_id}"
    return {
        "TrainingJobName": job,
        "TrainingJobStatus": "Completed",
        "modelDataUrl": model_data_url(job),
        "TrainingTimeInSeconds": seconds,
        "BillableTimeInSeconds": billable,
    }


def evaluation_result(
    decision: str = "promote", *, challenger: float = 0.41, champion: float | None = 0.45
) -> dict[str, Any]:
    """``$.evaluation`` as EvaluateModels returns it."""
    return {
        "metric": "rmse",
        "higherIsBetter": False,
        "challenger": challenger,
        "champion": champion,
        "improvement": None if champion is None else champion - challenger,
        "decision": decision,
        "reason": f"challenger rmse {challenger} vs champion {champion}",
        "testRows": 500,
        "trainRows": 1200,
        "mode": "incremental",
        "features": 4,
        "championRounds": 100,
        "challengerRounds": 150,
        "resumedFromRound": 0,
    }


def promoted_state(run_id: str = "run-2", *, deployment_mode: str = "endpoint") -> dict[str, Any]:
    """Everything a run that deployed and cleaned up has in its state."""
    job = f"job-{run_id}"
    state: dict[str, Any] = {
        "run": run_plan(run_id, deployment_mode=deployment_mode),
        "training": training_result(run_id),
        "evaluation": evaluation_result("promote"),
        "cleanup": {
            "deleted": {"models": ["job-run-0"], "endpointConfigs": ["job-run-0"], "endpoints": []},
            "kept": {"models": [job], "endpointConfigs": [job]},
            "skippedUnowned": [],
        },
    }
    if deployment_mode == "endpoint":
        state["endpoint"] = {"status": "InService", "configName": job}
        # $$.State.EnteredTime of InitEndpointPolls and of the last CountEndpointPoll: 6 minutes.
        state["endpointPolls"] = {
            "count": 3,
            "startedAt": "2026-11-28T11:50:00.000Z",
            "lastPolledAt": "2026-11-28T11:56:00.000Z",
        }
    else:
        # As the .sync integration returns them: epoch milliseconds, here 15 minutes apart.
        state["transform"] = {
            "TransformJobName": job,
            "TransformJobStatus": "Completed",
            "TransformStartTime": 1795865400000,
            "TransformEndTime": 1795866300000,
        }
    return state


# --- job output in S3 --------------------------------------------------------------------------
def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def evaluation_json(**overrides: Any) -> dict[str, Any]:
    """``evaluation.json`` per the training code contract."""
    return {
        "metric": "rmse",
        "challenger": 0.41,
        "champion": 0.45,
        "testRows": 500,
        "trainRows": 1200,
        "mode": "incremental",
        "championRounds": 100,
        "challengerRounds": 150,
        "resumedFromRound": 0,
        "features": 4,
        **overrides,
    }


def put_job_output(s3: Any, job: str, members: dict[str, bytes] | None = None) -> str:
    """Write a job's model.tar.gz and output.tar.gz; returns the model data URL."""
    prefix = f"{layout.MODELS_PREFIX}{job}/output/"
    s3.put_object(
        Bucket=BUCKET, Key=prefix + "model.tar.gz", Body=tar_gz({layout.MODEL_FILE: b"booster"})
    )
    if members is None:
        members = {layout.EVALUATION_FILE: json.dumps(evaluation_json()).encode()}
    s3.put_object(Bucket=BUCKET, Key=prefix + "output.tar.gz", Body=tar_gz(members))
    return model_data_url(job)


# --- SageMaker resources -------------------------------------------------------------------------
def stack_tags(stack: str | None = STACK) -> list[dict[str, str]]:
    return [] if stack is None else [{"Key": layout.TAG_STACK, "Value": stack}]


def create_model(sagemaker: Any, name: str, stack: str | None = STACK) -> None:
    kwargs: dict[str, Any] = {
        "ModelName": name,
        "ExecutionRoleArn": ROLE_ARN,
        "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": model_data_url(name)},
    }
    if stack is not None:
        kwargs["Tags"] = stack_tags(stack)
    sagemaker.create_model(**kwargs)


def create_config(sagemaker: Any, name: str, model: str, stack: str | None = STACK) -> None:
    kwargs: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    }
    if stack is not None:
        kwargs["Tags"] = stack_tags(stack)
    sagemaker.create_endpoint_config(**kwargs)


def create_endpoint(sagemaker: Any, name: str, config: str, stack: str | None = STACK) -> None:
    kwargs: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config}
    if stack is not None:
        kwargs["Tags"] = stack_tags(stack)
    sagemaker.create_endpoint(**kwargs)


def create_run_resources(
    sagemaker: Any,
    records: RunRecords | None,
    run_id: str,
    *,
    day: int,
    promoted: bool = True,
    with_config: bool = True,
    stack: str | None = STACK,
) -> str:
    """A past run's model (and config), registered in the index; returns their name."""
    name = f"job-{run_id}"
    create_model(sagemaker, name, stack)
    if with_config:
        create_config(sagemaker, name, name, stack)
    if records is not None:
        records.register_resources(
            run_id,
            name,
            name if with_config else None,
            created_at=f"2026-11-{day:02d}T00:00:00.000Z",
            promoted=promoted,
        )
    return name


def model_names(sagemaker: Any) -> set[str]:
    return {m["ModelName"] for m in sagemaker.list_models(MaxResults=100)["Models"]}


def config_names(sagemaker: Any) -> set[str]:
    listed = sagemaker.list_endpoint_configs(MaxResults=100)["EndpointConfigs"]
    return {c["EndpointConfigName"] for c in listed}


def endpoint_names(sagemaker: Any) -> set[str]:
    return {e["EndpointName"] for e in sagemaker.list_endpoints(MaxResults=100)["Endpoints"]}


# --- notifications ---------------------------------------------------------------------------
def subscribe_queue(sns: Any, sqs: Any, topic_arn: str) -> str:
    """An SQS queue subscribed to the topic; returns its URL."""
    url = sqs.create_queue(QueueName="refit-test-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def received_notifications(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """The SNS envelopes waiting in the queue (Subject, Message, MessageAttributes)."""
    response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in response.get("Messages", [])]


# --- Lambda ----------------------------------------------------------------------------------


@dataclass
class FakeLambdaContext:
    """What Powertools reads from a LambdaContext."""

    function_name: str = "refit-test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:refit-test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/refit-test-function"
    log_stream_name: str = "2026/11/28/[$LATEST]0"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000
