"""S3 and archive plumbing shared by training jobs, endpoints and transform jobs.

Every function takes the boto3 S3 client as its first argument (injected, never created here),
so the same code runs against moto in-process, a moto server, or real S3.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any


@dataclass(frozen=True)
class S3Location:
    """``s3://bucket/key``; ``key`` may be a prefix."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {uri!r}")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Location:
        """This location as a folder, with ``parts`` appended (no doubled slashes)."""
        key = self.key.rstrip("/")
        for part in parts:
            part = part.strip("/")
            if part:
                key = f"{key}/{part}" if key else part
        return S3Location(self.bucket, key)

    def folder(self) -> S3Location:
        """This location as a prefix ending in ``/``, so ``a/b`` never matches ``a/bc``."""
        key = self.key.rstrip("/")
        return S3Location(self.bucket, f"{key}/" if key else "")


@dataclass(frozen=True)
class S3Object:
    """An object to fetch and the relative name it gets locally (or in an output prefix)."""

    location: S3Location
    relative_name: str


def safe_relative_path(name: str) -> PurePosixPath:
    """``name`` as a relative path that cannot leave the directory it is joined to."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"unsafe relative name {name!r}")
    return path


def list_prefix(s3: S3Client, prefix: S3Location) -> list[S3Object]:
    """Objects under ``prefix`` (S3Prefix semantics), named by what follows the prefix.

    ``s3://b/data/train/`` and ``s3://b/data/train`` both give ``a.csv`` for
    ``data/train/a.csv`` (the SageMaker Python SDK v3 names its ``sm_drivers`` channel without
    the slash); a prefix naming one object (``.../output/model.tar.gz``) gives it under its own
    name. The rule of AWS's own emulation, the SDK's local mode (``sagemaker.utils.
    download_folder``: the object itself, else ``key[len(prefix):].lstrip("/")``). Folder
    markers (keys ending in ``/``) are skipped.
    """
    found: list[S3Object] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.key):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue
            if key == prefix.key:
                relative = key.rpartition("/")[2]
            else:
                relative = key[len(prefix.key) :].lstrip("/")
            found.append(S3Object(S3Location(prefix.bucket, key), relative))
    found.sort(key=lambda obj: obj.location.key)
    return found


def read_manifest(s3: S3Client, manifest: S3Location) -> list[S3Object]:
    """Objects a ManifestFile lists: ``[{"prefix": "s3://b/p/"}, "rel1", "rel2", ...]``.

    Order is the manifest's; relative names are the entries themselves.
    """
    body = s3.get_object(Bucket=manifest.bucket, Key=manifest.key)["Body"].read()
    try:
        entries = json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError(f"manifest {manifest} is not JSON: {error}") from None
    if (
        not isinstance(entries, list)
        or not entries
        or not isinstance(entries[0], dict)
        or not isinstance(entries[0].get("prefix"), str)
    ):
        raise ValueError(f'manifest {manifest} must start with {{"prefix": "s3://..."}}')
    base = S3Location.parse(entries[0]["prefix"])
    objects: list[S3Object] = []
    for entry in entries[1:]:
        if not isinstance(entry, str):
            raise ValueError(f"manifest {manifest} has a non-string entry {entry!r}")
        safe_relative_path(entry)
        objects.append(S3Object(S3Location(base.bucket, base.key + entry), entry))
    return objects


def resolve_objects(s3: S3Client, uri: str, data_type: str) -> list[S3Object]:
    """The objects an ``S3DataSource`` designates (``S3Prefix`` or ``ManifestFile``)."""
    location = S3Location.parse(uri)
    if data_type == "S3Prefix":
        return list_prefix(s3, location)
    if data_type == "ManifestFile":
        return read_manifest(s3, location)
    raise ValueError(f"S3DataType {data_type!r} is not supported (use S3Prefix or ManifestFile)")


def download_objects(s3: S3Client, objects: list[S3Object], destination: Path) -> list[Path]:
    """Fetch each object to ``destination / relative_name``; returns the local files."""
    files: list[Path] = []
    for obj in objects:
        target = destination / safe_relative_path(obj.relative_name)
        download_file(s3, obj.location, target)
        files.append(target)
    return files


def download_file(s3: S3Client, location: S3Location, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(location.bucket, location.key, str(target))


def upload_file(s3: S3Client, path: Path, location: S3Location) -> None:
    s3.upload_file(str(path), location.bucket, location.key)


def put_bytes(s3: S3Client, location: S3Location, body: bytes, content_type: str | None) -> None:
    if content_type:
        s3.put_object(Bucket=location.bucket, Key=location.key, Body=body, ContentType=content_type)
    else:
        s3.put_object(Bucket=location.bucket, Key=location.key, Body=body)


def get_bytes(s3: S3Client, location: S3Location) -> bytes:
    body: bytes = s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    return body


def walk_files(directory: Path) -> Iterator[Path]:
    """Regular files under ``directory``, sorted, as paths relative to it."""
    if not directory.is_dir():
        return
    for root, subdirectories, files in os.walk(directory):
        subdirectories.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file():
                yield path.relative_to(directory)


def tar_directory(source: Path, archive: Path) -> None:
    """``source``'s files in a gzipped tarball, named relative to ``source`` (``xgboost-model``)."""
    tar_directories([source], archive)


def tar_directories(sources: list[Path], archive: Path) -> list[str]:
    """Every source's files merged in one gzipped tarball, each named relative to its source.
    A name already taken by an earlier source is left out; returns those names (sorted)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    clashes: set[str] = set()
    with tarfile.open(archive, "w:gz") as tar:
        for source in sources:
            for relative in walk_files(source):
                name = relative.as_posix()
                if name in taken:
                    clashes.add(name)
                    continue
                tar.add(source / relative, arcname=name, recursive=False)
                taken.add(name)
    return sorted(clashes)


def extract_tar(archive: Path, destination: Path) -> None:
    """Extract with the ``data`` filter: no absolute paths, ``..``, devices or outside links."""
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")


def download_and_extract(s3: S3Client, uri: str, destination: Path, scratch: Path) -> None:
    """Fetch a ``.tar.gz`` (a model or a sourcedir) and extract it into ``destination``."""
    location = S3Location.parse(uri)
    archive = scratch / PurePosixPath(location.key).name
    download_file(s3, location, archive)
    try:
        extract_tar(archive, destination)
    except tarfile.TarError as error:
        raise ValueError(f"{uri} is not a readable tar.gz: {error}") from None
    finally:
        archive.unlink(missing_ok=True)


class TreeUploader:
    """Mirrors new and changed files of a local directory to an S3 prefix (checkpoint sync).

    A file is (re)uploaded when its size or modification time differs from what was last
    uploaded or downloaded. Deletions are not propagated. Files that vanish mid-sync (a script
    replacing a checkpoint) are skipped and picked up on the next call.
    """

    def __init__(self, s3: S3Client, directory: Path, destination: S3Location) -> None:
        self._s3 = s3
        self._directory = directory
        self._destination = destination
        self._seen: dict[str, tuple[int, int]] = {}

    def mark_current(self) -> None:
        """Treat every file present now as already in S3 (after downloading them from there)."""
        for relative in walk_files(self._directory):
            signature = self._signature(self._directory / relative)
            if signature is not None:
                self._seen[relative.as_posix()] = signature

    def sync(self) -> list[str]:
        """Upload what changed since the last call; returns the relative names uploaded."""
        uploaded: list[str] = []
        for relative in walk_files(self._directory):
            name = relative.as_posix()
            path = self._directory / relative
            signature = self._signature(path)
            if signature is None or self._seen.get(name) == signature:
                continue
            try:
                body = path.read_bytes()  # a snapshot: the script may rewrite the file meanwhile
            except FileNotFoundError:
                continue
            put_bytes(self._s3, self._destination.join(name), body, None)
            self._seen[name] = signature
            uploaded.append(name)
        return uploaded

    @staticmethod
    def _signature(path: Path) -> tuple[int, int] | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return stat.st_size, stat.st_mtime_ns
