"""The train channel: the pinned copies as the job's hosts and input mode need them."""

from __future__ import annotations

from refit import layout
from refit.data import train_channel as channels
from refit.data.datasets import DataFile
from tests.unit.moto_stack import BUCKET, Aws

MANIFEST = f"s3://{BUCKET}/runs/run-1/train.manifest"


def pinned(aws: Aws, name: str, lines: int, width: int = 20) -> tuple[DataFile, bytes]:
    """A pinned copy of ``lines`` CSV lines of about ``width`` bytes each."""
    body = "".join(f"{i % 7},{i:0{width - 5}d}\n" for i in range(lines)).encode()
    key = f"runs/run-1/data/{name}"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    data_file = DataFile(
        key=f"data/train/{name}",
        etag=None,
        version_id=None,
        size=len(body),
        rows=lines,
        columns=2,
        pinned_key=key,
    )
    return data_file, body


def channel_objects(aws: Aws) -> dict[str, bytes]:
    prefix = layout.train_channel_prefix("run-1")
    listed = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: aws.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def test_one_host_reading_files_reads_the_manifest_and_nothing_is_copied(aws: Aws) -> None:
    # Given two pinned files
    files = [pinned(aws, "a.csv", 10)[0], pinned(aws, "b.csv", 10)[0]]
    # When the channel is shaped for one host in File mode
    channel = channels.train_channel(aws.s3, BUCKET, "run-1", files, MANIFEST, 1, "File")
    # Then it is the manifest, replicated, and no part was written
    assert channel.request()["DataSource"]["S3DataSource"] == {
        "S3DataType": "ManifestFile",
        "S3Uri": MANIFEST,
        "S3DataDistributionType": "FullyReplicated",
    }
    assert "InputMode" not in channel.request()
    assert channel_objects(aws) == {}


def test_one_file_for_two_hosts_becomes_two_halves_cut_at_a_line_end(aws: Aws) -> None:
    # Given one pinned file of 1,000 lines
    data_file, body = pinned(aws, "big.csv", 1000)
    # When the channel is shaped for two hosts
    channel = channels.train_channel(aws.s3, BUCKET, "run-1", [data_file], MANIFEST, 2, "File")
    # Then the hosts share two parts under the run's channel prefix, sharded by key
    source = channel.request()["DataSource"]["S3DataSource"]
    assert source == {
        "S3DataType": "S3Prefix",
        "S3Uri": f"s3://{BUCKET}/{layout.train_channel_prefix('run-1')}",
        "S3DataDistributionType": "ShardedByS3Key",
    }
    parts = channel_objects(aws)
    assert channel.objects == len(parts) == 2
    # And each part is whole lines, about half, together exactly the file
    assert all(part.endswith(b"\n") for part in parts.values())
    assert b"".join(parts[key] for key in sorted(parts)) == body
    assert all(abs(len(part) - len(body) / 2) <= 40 for part in parts.values())


def test_no_part_is_larger_than_a_hosts_share(aws: Aws) -> None:
    # Given a big file and two small ones, for four hosts
    files = [pinned(aws, name, lines)[0] for name, lines in (("big.csv", 900), ("s1.csv", 50))]
    files.append(pinned(aws, "s2.csv", 50)[0])
    total = sum(f.size for f in files)
    # When the channel is shaped
    channel = channels.train_channel(aws.s3, BUCKET, "run-1", files, MANIFEST, 4, "File")
    # Then there are at least as many parts as hosts, none much over a quarter of the data
    parts = channel_objects(aws)
    assert channel.objects == len(parts) >= 4
    assert max(len(part) for part in parts.values()) <= total / 4 + 40


def test_fastfile_reads_a_prefix_of_whole_files_on_one_host(aws: Aws) -> None:
    # Given two pinned files
    (a, a_body), (b, b_body) = pinned(aws, "a.csv", 30), pinned(aws, "b.csv", 40)
    # When the channel is shaped for one host streaming it
    channel = channels.train_channel(aws.s3, BUCKET, "run-1", [a, b], MANIFEST, 1, "FastFile")
    # Then it is a prefix (FastFile reads no manifest), whole files, the channel in FastFile mode
    request = channel.request()
    assert request["InputMode"] == "FastFile"
    assert request["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"
    assert request["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"
    assert sorted(channel_objects(aws).values()) == sorted([a_body, b_body])


def test_a_file_of_one_line_is_not_cut(aws: Aws) -> None:
    # Given a file that is one line without a line end
    key = "runs/run-1/data/one.csv"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=b"1,2,3")
    data_file = DataFile("data/train/one.csv", None, None, 5, 1, 3, pinned_key=key)
    # When it is shaped for two hosts
    channel = channels.train_channel(aws.s3, BUCKET, "run-1", [data_file], MANIFEST, 2, "File")
    # Then it stays one part (the other host trains on none: train.py joins it with no rows)
    assert list(channel_objects(aws).values()) == [b"1,2,3"]
    assert channel.objects == 1
