"""The seed's lessons 63-65 with the SageMaker Python SDK v2, unpatched, against the local cloud.

Runs in `.venv-sdk-v2` (`make sdk-venvs`): sagemaker 2.x cannot share the dev venv with v3.
Train with managed spot (max_wait, a checkpoint S3 URI), continue that model through the
``model`` channel, deploy, predict, send a bad request, batch transform, delete the endpoint.
Everything the SDK reaches goes through AWS_ENDPOINT_URL; prints one JSON document.

env: BUCKET, ROLE, SOURCE_DIR, DATA_DIR (train.csv, test.csv, rows.csv), AWS_* of the cloud.
Everything it reads or writes in the bucket is under ``sdk/`` (SDK_PREFIXES in the test): the
role needs no more.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import sagemaker
from sagemaker.deserializers import CSVDeserializer
from sagemaker.inputs import TrainingInput
from sagemaker.serializers import CSVSerializer
from sagemaker.xgboost.estimator import XGBoost

bucket, role = os.environ["BUCKET"], os.environ["ROLE"]
source_dir, data = os.environ["SOURCE_DIR"], Path(os.environ["DATA_DIR"])
boto_session = boto3.Session(region_name=os.environ["AWS_DEFAULT_REGION"])
session = sagemaker.Session(boto_session=boto_session, default_bucket=bucket)
s3 = boto_session.client("s3")
for name in ("train", "test"):
    s3.upload_file(str(data / f"{name}.csv"), bucket, f"sdk/{name}/{name}.csv")
channels = {
    name: TrainingInput(f"s3://{bucket}/sdk/{name}/", content_type="text/csv")
    for name in ("train", "test")
}


def estimator(**extra: object) -> XGBoost:
    return XGBoost(
        entry_point="train.py",
        source_dir=source_dir,
        framework_version="3.0-5",
        role=role,
        instance_count=1,
        instance_type="ml.m5.large",
        sagemaker_session=session,
        use_spot_instances=True,
        max_run=600,
        max_wait=1200,
        output_path=f"s3://{bucket}/sdk/output/",
        code_location=f"s3://{bucket}/sdk/code",
        **extra,  # type: ignore[arg-type]
    )


first = estimator(
    checkpoint_s3_uri=f"s3://{bucket}/sdk/checkpoints/first/",
    hyperparameters={"num_round": 20, "objective": "reg:squarederror", "eval_metric": "rmse"},
)
first.fit(channels)  # logs=True: the SDK follows the job's CloudWatch stream

# Incremental: the first model's artifact in the "model" channel (model_uri), as refit does
second = estimator(
    checkpoint_s3_uri=f"s3://{bucket}/sdk/checkpoints/second/",
    model_uri=first.model_data,
    model_channel_name="model",
    hyperparameters={
        "num_round": 10,
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        "refit_mode": "incremental",
    },
)
second.fit(channels, logs=False)

predictor = second.deploy(
    initial_instance_count=1,
    instance_type="ml.m5.large",
    serializer=CSVSerializer(),
    deserializer=CSVDeserializer(),
)
rows = (data / "rows.csv").read_text()
predictions = [float(row[0]) for row in predictor.predict(rows)]
try:
    predictor.predict("1,2,x\n")
    bad_request = None
except Exception as error:  # the SDK raises botocore's ModelError
    response = getattr(error, "response", {})
    bad_request = {
        "code": response.get("Error", {}).get("Code"),
        "originalStatusCode": response.get("OriginalStatusCode"),
        "message": str(error),
    }

s3.upload_file(str(data / "rows.csv"), bucket, "sdk/batch-in/rows.csv")
transformer = second.transformer(
    instance_count=1,
    instance_type="ml.m5.large",
    output_path=f"s3://{bucket}/sdk/batch-out/",
    accept="text/csv",
)
transformer.transform(
    f"s3://{bucket}/sdk/batch-in/", content_type="text/csv", split_type="Line", logs=False
)
transformer.wait(logs=False)
batch = s3.get_object(Bucket=bucket, Key="sdk/batch-out/rows.csv.out")["Body"].read().decode()

endpoint_name = predictor.endpoint_name
predictor.delete_endpoint()

print(
    json.dumps(
        {
            "jobs": [first.latest_training_job.name, second.latest_training_job.name],
            "modelData": [first.model_data, second.model_data],
            "endpoint": endpoint_name,
            "predictions": predictions,
            "badRequest": bad_request,
            "batch": [float(line) for line in batch.splitlines() if line.strip()],
            "transformJob": transformer.latest_transform_job.name,
        }
    )
)
