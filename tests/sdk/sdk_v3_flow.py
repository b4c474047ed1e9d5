"""The seed's flow with the SageMaker Python SDK v3, unpatched, against the local cloud.

Runs in `.venv-sdk-v3` (`make sdk-venvs`): ``ModelTrainer`` (its role validated through
``iam:SimulatePrincipalPolicy``, its source code run by its own ``sm_train.sh`` drivers through
``ContainerEntrypoint``) trains with managed spot and S3 checkpoints, continues that model
through the ``model`` channel, then ``sagemaker.core.resources`` deploy it, invoke it, run a
batch transform and delete the endpoint. Prints one JSON document.

env: BUCKET, SOURCE_DIR, SOURCEDIR_TAR (s3:// sourcedir.tar.gz for serving), IMAGE, DATA_DIR,
AWS_* of the cloud.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import boto3
from sagemaker.core import resources, shapes
from sagemaker.core.helper import IamRoleResolver
from sagemaker.core.helper.session_helper import Session
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import (
    CheckpointConfig,
    Compute,
    InputData,
    OutputDataConfig,
    SourceCode,
    StoppingCondition,
)

bucket, image = os.environ["BUCKET"], os.environ["IMAGE"]
data = Path(os.environ["DATA_DIR"])
boto_session = boto3.Session(region_name=os.environ["AWS_DEFAULT_REGION"])
session = Session(boto_session=boto_session, default_bucket=bucket)
s3 = boto_session.client("s3")
for name in ("train", "test"):
    s3.upload_file(str(data / f"{name}.csv"), bucket, f"sdk3/{name}/{name}.csv")
# The SDK's own least-privilege training role (it must pass the SDK's own validation)
role = IamRoleResolver(sagemaker_session=session).create_execution_role(role_type="training")


def trainer(name: str, hyperparameters: dict[str, object]) -> ModelTrainer:
    return ModelTrainer(
        training_image=image,
        source_code=SourceCode(source_dir=os.environ["SOURCE_DIR"], entry_script="train.py"),
        compute=Compute(
            instance_type="ml.m5.large", instance_count=1, enable_managed_spot_training=True
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=600, max_wait_time_in_seconds=1200
        ),
        checkpoint_config=CheckpointConfig(s3_uri=f"s3://{bucket}/sdk3/checkpoints/{name}/"),
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{bucket}/sdk3/output/"),
        hyperparameters=hyperparameters,
        role=role,
        sagemaker_session=session,
        base_job_name=f"sdk3-{name}",
    )


channels = [
    InputData(channel_name=name, data_source=f"s3://{bucket}/sdk3/{name}/")
    for name in ("train", "test")
]
first = trainer("first", {"num_round": 20, "objective": "reg:squarederror"})
first.train(input_data_config=channels, wait=True, logs=False)
first_job = first._latest_training_job
first_model = first_job.model_artifacts.s3_model_artifacts

second = trainer("second", {"num_round": 10, "refit_mode": "incremental"})
model_channel = InputData(channel_name="model", data_source=first_model)
second.train(input_data_config=[*channels, model_channel], wait=True, logs=False)
second_job = second._latest_training_job
second_model = second_job.model_artifacts.s3_model_artifacts

suffix = str(int(time.time()))
model = resources.Model.create(
    model_name=f"sdk3-model-{suffix}",
    execution_role_arn=role,
    primary_container=shapes.ContainerDefinition(
        image=image,
        model_data_url=second_model,
        environment={
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": os.environ["SOURCEDIR_TAR"],
        },
    ),
)
config = resources.EndpointConfig.create(
    endpoint_config_name=f"sdk3-config-{suffix}",
    production_variants=[
        shapes.ProductionVariant(
            variant_name="AllTraffic",
            model_name=model.model_name,
            initial_instance_count=1,
            instance_type="ml.m5.large",
        )
    ],
)
endpoint = resources.Endpoint.create(
    endpoint_name=f"sdk3-endpoint-{suffix}", endpoint_config_name=config.endpoint_config_name
)
endpoint.wait_for_status("InService")
rows = (data / "rows.csv").read_text()
answer = endpoint.invoke(body=rows, content_type="text/csv", accept="text/csv")
predictions = [float(line) for line in answer.body.read().decode().splitlines()]

s3.upload_file(str(data / "rows.csv"), bucket, "sdk3/batch-in/rows.csv")
transform = resources.TransformJob.create(
    transform_job_name=f"sdk3-transform-{suffix}",
    model_name=model.model_name,
    transform_input=shapes.TransformInput(
        data_source=shapes.TransformDataSource(
            s3_data_source=shapes.TransformS3DataSource(
                s3_data_type="S3Prefix", s3_uri=f"s3://{bucket}/sdk3/batch-in/"
            )
        ),
        content_type="text/csv",
        split_type="Line",
    ),
    transform_output=shapes.TransformOutput(
        s3_output_path=f"s3://{bucket}/sdk3/batch-out/", accept="text/csv"
    ),
    transform_resources=shapes.TransformResources(instance_type="ml.m5.large", instance_count=1),
)
transform.wait()
batch = s3.get_object(Bucket=bucket, Key="sdk3/batch-out/rows.csv.out")["Body"].read().decode()
endpoint.delete()

print(
    json.dumps(
        {
            "role": role,
            "jobs": [first_job.training_job_name, second_job.training_job_name],
            "modelData": [first_model, second_model],
            "endpoint": endpoint.endpoint_name,
            "predictions": predictions,
            "batch": [float(line) for line in batch.splitlines() if line.strip()],
            "transformStatus": transform.transform_job_status,
        }
    )
)
