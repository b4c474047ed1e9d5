"""Batch transform in the local SageMaker runtime."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local_cloud.sagemaker import LocalSageMaker, ValidationError
from local_cloud.sagemaker.transform_jobs import assemble, pack_records
from tests.emulator.local_sagemaker_harness import (
    BUCKET,
    get,
    keys,
    model_request,
    put,
    tar_gz,
    upload_code,
)

# Each request answers one line per input line: "<sum of the row * factor>,<rows in request>".
CSV_INFERENCE = """
    import json, time
    from pathlib import Path

    def model_fn(model_dir):
        return json.loads((Path(model_dir) / "model.json").read_text())

    def input_fn(body, content_type):
        if content_type != "text/csv":
            raise ValueError(f"415: unsupported content type {content_type}")
        rows = [line for line in body.splitlines() if line.strip()]  # text/csv arrives as str
        return [[float(v) for v in row.split(",")] for row in rows]

    def predict_fn(rows, model):
        time.sleep(model.get("sleep", 0))
        return [sum(row) * model["factor"] for row in rows]

    def output_fn(prediction, accept):
        return "\\n".join(f"{p:g},{len(prediction)}" for p in prediction), "text/csv"
"""


@pytest.fixture
def model(s3: Any) -> dict[str, Any]:
    data = put(
        s3, "models/m/output/model.tar.gz", tar_gz({"model.json": json.dumps({"factor": 2})})
    )
    code = upload_code(s3, "code/m/sourcedir.tar.gz", {"inference.py": CSV_INFERENCE})
    return model_request(data, code)


def transform_request(
    name: str,
    *,
    uri: str = f"s3://{BUCKET}/batch/input/",
    data_type: str = "S3Prefix",
    split: str = "Line",
    strategy: str = "MultiRecord",
    assemble_with: str = "Line",
    max_payload: int = 6,
) -> dict[str, Any]:
    return {
        "TransformJobName": name,
        "ModelName": "m",
        "BatchStrategy": strategy,
        "MaxPayloadInMB": max_payload,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": uri}},
            "ContentType": "text/csv",
            "SplitType": split,
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{BUCKET}/batch/output/{name}/",
            "Accept": "text/csv",
            "AssembleWith": assemble_with,
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


def run(runtime: LocalSageMaker, request: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    first = runtime.start_transform_job(request, model)
    assert first["TransformJobStatus"] == "InProgress"
    description = runtime.wait_for_transform_job(request["TransformJobName"], 30)
    assert description["TransformJobStatus"] != "InProgress"
    return description


def test_multi_record_packs_lines_and_assembles_one_line_per_record(
    runtime: LocalSageMaker, s3: Any, model: dict[str, Any]
) -> None:
    # Given two input objects (one in a sub-folder) and an ignored folder marker
    put(s3, "batch/input/a.csv", "1,2\n3,4\r\n\n5,6\n")
    put(s3, "batch/input/sub/b.csv", "10,10")
    put(s3, "batch/input/empty/", "")

    # When they are transformed with MultiRecord + AssembleWith Line
    description = run(runtime, transform_request("tj-multi"), model)

    # Then each object has its .out, one line per input record, in order, packed in one request
    assert description["TransformJobStatus"] == "Completed"
    assert description["TransformStartTime"] <= description["TransformEndTime"]
    assert keys(s3, "batch/output/tj-multi/") == [
        "batch/output/tj-multi/a.csv.out",
        "batch/output/tj-multi/sub/b.csv.out",
    ]
    assert get(s3, "batch/output/tj-multi/a.csv.out") == b"6,3\n14,3\n22,3\n"
    assert get(s3, "batch/output/tj-multi/sub/b.csv.out") == b"40,1\n"


def test_single_record_sends_one_line_per_request(
    runtime: LocalSageMaker, s3: Any, model: dict[str, Any]
) -> None:
    put(s3, "batch/input/a.csv", "1,2\n3,4\n5,6\n")
    description = run(runtime, transform_request("tj-single", strategy="SingleRecord"), model)
    assert description["TransformJobStatus"] == "Completed"
    assert get(s3, "batch/output/tj-single/a.csv.out") == b"6,1\n14,1\n22,1\n"


def test_assemble_with_none_concatenates_responses(
    runtime: LocalSageMaker, s3: Any, model: dict[str, Any]
) -> None:
    put(s3, "batch/input/a.csv", "1,2\n3,4\n")
    request = transform_request("tj-none", strategy="SingleRecord", assemble_with="None")
    assert run(runtime, request, model)["TransformJobStatus"] == "Completed"
    assert get(s3, "batch/output/tj-none/a.csv.out") == b"6,114,1"


def test_no_split_sends_the_whole_object(
    runtime: LocalSageMaker, s3: Any, model: dict[str, Any]
) -> None:
    put(s3, "batch/input/a.csv", "1,2\n3,4\n")
    request = transform_request("tj-whole", split="None", assemble_with="None")
    assert run(runtime, request, model)["TransformJobStatus"] == "Completed"
    assert get(s3, "batch/output/tj-whole/a.csv.out") == b"6,2\n14,2"


def test_multi_record_respects_max_payload(
    runtime: LocalSageMaker, s3: Any, model: dict[str, Any]
) -> None:
    # Given 2.5 MiB of lines and MaxPayloadInMB=1
    line = b"1," + b"0," * 48 + b"1\n"  # 100 bytes
    rows = 26_000
    put(s3, "batch/input/big.csv", line * rows)

    # When transformed
    request = transform_request("tj-big", max_payload=1)
    assert run(runtime, request, model)["TransformJobStatus"] == "Completed"

    # Then every line got its answer, from requests of at most 1 MiB (10485 lines)
    out = get(s3, "batch/output/tj-big/big.csv.out").decode().splitlines()
    assert len(out) == rows
    batch_sizes = [int(row.split(",")[1]) for row in out]
    assert max(batch_sizes) == (1024 * 1024) // len(line)
    assert len(set(batch_sizes)) == 2  # two full requests, then the rest
    assert {row.split(",")[0] for row in out} == {"4"}


def test_manifest_input_keeps_manifest_names(
    runtime: LocalSageMaker, s3: Any, model: dict[str, Any]
) -> None:
    put(s3, "batch/input/x/1.csv", "1,1\n")
    put(s3, "batch/input/x/2.csv", "2,2\n")
    manifest = put(
        s3,
        "batch/manifest.json",
        json.dumps([{"prefix": f"s3://{BUCKET}/batch/input/"}, "x/2.csv"]),
    )
    request = transform_request("tj-manifest", uri=manifest, data_type="ManifestFile")
    assert run(runtime, request, model)["TransformJobStatus"] == "Completed"
    assert keys(s3, "batch/output/tj-manifest/") == ["batch/output/tj-manifest/x/2.csv.out"]


def test_a_failing_object_fails_the_job_and_gets_no_output(
    runtime: LocalSageMaker, s3: Any, model: dict[str, Any]
) -> None:
    # Given a good object and one with a non-numeric record
    put(s3, "batch/input/good.csv", "1,2\n")
    put(s3, "batch/input/bad.csv", "1,2\nx,3\n")

    # When transformed
    description = run(runtime, transform_request("tj-fail"), model)

    # Then the job failed naming the bad object, which has no output; the good one has
    assert description["TransformJobStatus"] == "Failed"
    assert f"s3://{BUCKET}/batch/input/bad.csv" in description["FailureReason"]
    assert "500" in description["FailureReason"]  # the handler raised: the image answers 500
    assert keys(s3, "batch/output/tj-fail/") == ["batch/output/tj-fail/good.csv.out"]


def test_unloadable_model_fails_the_job(runtime: LocalSageMaker, s3: Any) -> None:
    put(s3, "batch/input/a.csv", "1,2\n")
    bad_model = model_request(f"s3://{BUCKET}/nope/model.tar.gz", f"s3://{BUCKET}/nope/code.tar.gz")
    description = run(runtime, transform_request("tj-nomodel"), bad_model)
    assert description["TransformJobStatus"] == "Failed"
    assert description["FailureReason"].startswith("ClientError")


def test_stop_ends_the_job_between_requests(runtime: LocalSageMaker, s3: Any) -> None:
    # Given a slow model and an object of many records sent one by one
    data = put(
        s3,
        "models/slow/model.tar.gz",
        tar_gz({"model.json": json.dumps({"factor": 1, "sleep": 0.05})}),
    )
    slow = model_request(data, upload_code(s3, "code/slow.tar.gz", {"inference.py": CSV_INFERENCE}))
    put(s3, "batch/input/a.csv", "1\n" * 200)
    runtime.start_transform_job(transform_request("tj-stop", strategy="SingleRecord"), slow)

    # When it is stopped midway
    runtime.stop_transform_job("tj-stop")
    description = runtime.wait_for_transform_job("tj-stop", 10)

    # Then it is Stopped, with no partial output
    assert description["TransformJobStatus"] == "Stopped"
    assert keys(s3, "batch/output/tj-stop/") == []
    with pytest.raises(ValidationError):
        runtime.stop_transform_job("tj-stop")


def test_validation(runtime: LocalSageMaker, model: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="SplitType"):
        runtime.start_transform_job(transform_request("tj-x", split="RecordIO"), model)
    with pytest.raises(ValidationError, match="TransformJobName"):
        runtime.start_transform_job(transform_request("tj_x"), model)


def test_pack_records_and_assemble() -> None:
    records = [b"aaa", b"bb", b"c"]
    assert list(pack_records(records, 7)) == [b"aaa\nbb\n", b"c\n"]
    assert list(pack_records(records, 100)) == [b"aaa\nbb\nc\n"]
    assert assemble([b"1\n2", b"3\n", b"4\r\n"], "Line") == b"1\n2\n3\n4\n"
    assert assemble([b"1", b"2"], "None") == b"12"
