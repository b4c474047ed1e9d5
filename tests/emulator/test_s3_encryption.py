"""Encrypted objects in the local cloud's S3 refuse reads as on AWS: SSE-C without its key,
SSE-KMS once its key is disabled or pending deletion (local_cloud/moto_patches/s3_encryption.py),
through boto3 against in-process moto."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local_cloud import moto_patches
from local_cloud.sagemaker import LocalSageMaker
from tests.emulator.local_sagemaker_harness import FAST_SETTINGS
from tests.emulator.moto_patches_harness import REGION, FakeLambdas

BUCKET = "sse-c"
KEY = base64.b64encode(b"k" * 32).decode()
CUSTOMER_KEY = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": KEY}
REFUSED = "The object was stored using a form of Server Side Encryption"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        runtime = LocalSageMaker(client, tmp_path / "sagemaker", settings=FAST_SETTINGS)
        moto_patches.install(sagemaker=runtime, invoke_lambda=FakeLambdas())
        try:
            yield client
        finally:
            moto_patches.uninstall()
            runtime.close()


def test_an_sse_c_object_answers_only_to_its_key(s3: Any) -> None:
    # Given an object stored with a customer key, and a plain one
    s3.put_object(Bucket=BUCKET, Key="secret.csv", Body=b"1,2\n", **CUSTOMER_KEY)
    s3.put_object(Bucket=BUCKET, Key="plain.csv", Body=b"3,4\n")
    # Then reading it without the key is refused as S3 refuses it
    with pytest.raises(ClientError) as got:
        s3.get_object(Bucket=BUCKET, Key="secret.csv")
    assert got.value.response["Error"]["Code"] == "InvalidRequest"
    assert REFUSED in got.value.response["Error"]["Message"]
    assert got.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket=BUCKET, Key="secret.csv")
    assert head.value.response["Error"]["Code"] == "400"  # HEAD: status only, no body
    with pytest.raises(ClientError) as copy:
        s3.copy_object(
            Bucket=BUCKET, Key="copy.csv", CopySource={"Bucket": BUCKET, "Key": "secret.csv"}
        )
    assert copy.value.response["Error"]["Code"] == "InvalidRequest"
    # And a wrong key is refused like a missing one
    wrong = {**CUSTOMER_KEY, "SSECustomerKey": base64.b64encode(b"w" * 32).decode()}
    with pytest.raises(ClientError):
        s3.get_object(Bucket=BUCKET, Key="secret.csv", **wrong)
    # And with its key it reads, heads and copies
    assert s3.get_object(Bucket=BUCKET, Key="secret.csv", **CUSTOMER_KEY)["Body"].read() == (
        b"1,2\n"
    )
    assert s3.head_object(Bucket=BUCKET, Key="secret.csv", **CUSTOMER_KEY)["ContentLength"] == 4
    s3.copy_object(
        Bucket=BUCKET,
        Key="copy.csv",
        CopySource={"Bucket": BUCKET, "Key": "secret.csv"},
        CopySourceSSECustomerAlgorithm="AES256",
        CopySourceSSECustomerKey=KEY,
    )
    # And other objects, and listings, are unaffected
    assert s3.get_object(Bucket=BUCKET, Key="plain.csv")["Body"].read() == b"3,4\n"
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert listed == {"secret.csv", "plain.csv", "copy.csv"}


def test_the_key_belongs_to_the_version_it_encrypted(s3: Any) -> None:
    # Given an SSE-C version overwritten by a plain one
    first = s3.put_object(Bucket=BUCKET, Key="a.csv", Body=b"old\n", **CUSTOMER_KEY)["VersionId"]
    s3.put_object(Bucket=BUCKET, Key="a.csv", Body=b"new\n")
    # Then the current version reads without a key, the old one still needs it
    assert s3.get_object(Bucket=BUCKET, Key="a.csv")["Body"].read() == b"new\n"
    with pytest.raises(ClientError):
        s3.get_object(Bucket=BUCKET, Key="a.csv", VersionId=first)
    head = s3.head_object(Bucket=BUCKET, Key="a.csv", VersionId=first, **CUSTOMER_KEY)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_an_sse_kms_object_reads_only_while_its_key_is_enabled(s3: Any) -> None:
    kms = boto3.client("kms", region_name=REGION)
    key = kms.create_key()["KeyMetadata"]
    # Given objects encrypted with a customer managed key (by ARN and by id)
    for name, key_id in (("by-arn.csv", key["Arn"]), ("by-id.csv", key["KeyId"])):
        s3.put_object(
            Bucket=BUCKET,
            Key=name,
            Body=b"1,2\n",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=key_id,
        )
    # Then they read while the key is enabled
    assert s3.get_object(Bucket=BUCKET, Key="by-arn.csv")["Body"].read() == b"1,2\n"
    # When the key is disabled, reads and copies fail with KMS's error; HEAD does not decrypt
    kms.disable_key(KeyId=key["KeyId"])
    for name in ("by-arn.csv", "by-id.csv"):
        with pytest.raises(ClientError) as got:
            s3.get_object(Bucket=BUCKET, Key=name)
        assert got.value.response["Error"]["Code"] == "KMS.DisabledException"
        assert got.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as copy:
        s3.copy_object(
            Bucket=BUCKET, Key="c.csv", CopySource={"Bucket": BUCKET, "Key": "by-id.csv"}
        )
    assert copy.value.response["Error"]["Code"] == "KMS.DisabledException"
    assert s3.head_object(Bucket=BUCKET, Key="by-arn.csv")["ServerSideEncryption"] == "aws:kms"
    # And pending deletion is an invalid state
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    with pytest.raises(ClientError) as pending:
        s3.get_object(Bucket=BUCKET, Key="by-arn.csv")
    assert pending.value.response["Error"]["Code"] == "KMS.KMSInvalidStateException"
