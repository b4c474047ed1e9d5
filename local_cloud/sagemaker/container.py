"""The SageMaker training container contract (``/opt/ml``), rooted in a local directory.

A training container sees::

    /opt/ml/input/config/{hyperparameters,inputdataconfig,resourceconfig,checkpointconfig}.json
    /opt/ml/input/data/<channel>/...
    /opt/ml/code/                 the extracted sourcedir.tar.gz (script mode)
    /opt/ml/model/                tarred to model.tar.gz when the job ends
    /opt/ml/output/data/          tarred to output.tar.gz
    /opt/ml/output/failure        its first 1024 characters become FailureReason
    /opt/ml/checkpoints/          CheckpointConfig.LocalPath, synced with CheckpointConfig.S3Uri

:class:`TrainingLayout` puts the same tree under any local ``root``; container paths (such as
``CheckpointConfig.LocalPath``) are mapped into it. :func:`training_environment` builds the
environment the SageMaker training toolkit gives a script: the ``SM_*`` variables (pointing into
``root``), plus refit's own overrides ``SM_ROOT``, ``SM_CHECKPOINT_DIR`` and ``SM_OUTPUT_FAILURE``
(which ``training/train.py`` honours) and the toolkit's ``SAGEMAKER_BASE_DIR``.

A job with ``ResourceConfig.InstanceCount`` = N runs on hosts ``algo-1`` .. ``algo-N``
(:func:`hosts`), each with its own tree; ``current_host`` picks the host a config file or an
environment is for (default ``algo-1``, the only host of a single-instance job).
:func:`channel_shares` splits a channel's objects between the hosts by its
``S3DataDistributionType``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

CONTAINER_ROOT = PurePosixPath("/opt/ml")
DEFAULT_CHECKPOINT_PATH = "/opt/ml/checkpoints"
CURRENT_HOST = "algo-1"  # the first host: a single-instance job's only one
HOST_PREFIX = "algo-"
NETWORK_INTERFACE = "eth0"
FILE_MODE = "File"
FAST_FILE_MODE = "FastFile"
PIPE_MODE = "Pipe"
INPUT_MODES = (PIPE_MODE, FILE_MODE, FAST_FILE_MODE)  # AWS's enum, in its order
FULLY_REPLICATED = "FullyReplicated"
SHARDED_BY_S3_KEY = "ShardedByS3Key"
DISTRIBUTION_TYPES = (FULLY_REPLICATED, SHARDED_BY_S3_KEY)
FAILURE_REASON_MAX = 1024
RESERVED_HYPERPARAMETER_PREFIX = "sagemaker_"
PROGRAM_HYPERPARAMETER = "sagemaker_program"
SUBMIT_DIRECTORY_HYPERPARAMETER = "sagemaker_submit_directory"
# TrainingEnv properties the toolkit keeps out of the SM_* variables (SM_TRAINING_ENV has them):
# the hyperparameters go out as SM_HPS and SM_HP_*, the channels as SM_CHANNELS/SM_CHANNEL_*.
TRAINING_ENV_NOT_EXPORTED = frozenset(
    {
        "additional_framework_parameters",
        "channel_input_dirs",
        "hyperparameters",
        "is_master",
        "job_name",
        "master_hostname",
    }
)


@dataclass(frozen=True)
class TrainingLayout:
    """The ``/opt/ml`` tree of one training attempt, under ``root``."""

    root: Path
    checkpoint_local_path: str = DEFAULT_CHECKPOINT_PATH

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def config_dir(self) -> Path:
        return self.input_dir / "config"

    @property
    def data_dir(self) -> Path:
        return self.input_dir / "data"

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.local_path(self.checkpoint_local_path)

    def channel_dir(self, channel: str) -> Path:
        return self.data_dir / channel

    def local_path(self, container_path: str) -> Path:
        """Where a container path lives locally: ``/opt/ml/x`` → ``root/x``; any other
        absolute path → ``root/_filesystem/<path>``; a relative one → ``root/<path>``."""
        path = PurePosixPath(container_path)
        if ".." in path.parts:
            raise ValueError(f"path {container_path!r} must not contain '..'")
        if path.is_relative_to(CONTAINER_ROOT):
            return self.root.joinpath(*path.relative_to(CONTAINER_ROOT).parts)
        if path.is_absolute():
            return self.root.joinpath("_filesystem", *path.parts[1:])
        return self.root.joinpath(*path.parts)

    def create(self, channels: list[str]) -> None:
        for directory in (
            self.config_dir,
            self.code_dir,
            self.model_dir,
            self.output_data_dir,
            self.checkpoint_dir,
            *(self.channel_dir(channel) for channel in channels),
        ):
            directory.mkdir(parents=True, exist_ok=True)


def hyperparameters(request: Mapping[str, Any]) -> dict[str, str]:
    """The request's hyperparameters, all of them, as strings: ``hyperparameters.json``."""
    return {str(k): str(v) for k, v in (request.get("HyperParameters") or {}).items()}


def decoded_hyperparameters(request: Mapping[str, Any]) -> dict[str, Any]:
    """What the toolkits read from ``hyperparameters.json``: each value ``json.loads``-ed, the
    string itself when it is not JSON (sagemaker-containers 2.8.6 and sagemaker-training 5.1
    ``_env.read_hyperparameters``). The SageMaker Python SDK's framework estimators JSON-encode
    every value (``"\"s3://...\""``); boto3 users send plain strings."""
    decoded: dict[str, Any] = {}
    for name, value in hyperparameters(request).items():
        try:
            decoded[name] = json.loads(value)
        except ValueError:
            decoded[name] = value
    return decoded


def user_hyperparameters(all_hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters minus the toolkit's own ``sagemaker_*`` ones."""
    return {
        k: v
        for k, v in all_hyperparameters.items()
        if not k.startswith(RESERVED_HYPERPARAMETER_PREFIX)
    }


def user_args(all_hyperparameters: Mapping[str, Any]) -> list[str]:
    """The script's arguments, as the toolkit's ``mapping.to_cmd_args`` makes them: sorted by
    name, ``--name`` (``-n`` for one letter), the decoded value as ``str`` (a mapping as
    ``k=v,...``)."""
    args: list[str] = []
    for name, value in sorted(user_hyperparameters(all_hyperparameters).items()):
        flag = f"--{name}" if len(name) > 1 else f"-{name}"
        if isinstance(value, Mapping):
            text = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        else:
            text = "" if value is None else str(value)
        args += [flag, text]
    return args


def env_value(value: Any) -> str:
    """An ``SM_*`` variable's value, as the toolkit's ``mapping.to_env_vars`` formats it."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def container_command(request: Mapping[str, Any]) -> list[str] | None:
    """``AlgorithmSpecification.ContainerEntrypoint`` + ``ContainerArguments``: the container's
    command (the SageMaker Python SDK v3 runs source code this way), or None (script mode)."""
    algorithm = request.get("AlgorithmSpecification") or {}
    entrypoint = algorithm.get("ContainerEntrypoint")
    if not entrypoint:
        return None
    return [*map(str, entrypoint), *map(str, algorithm.get("ContainerArguments") or [])]


def namespace_command(root: Path, command: list[str]) -> list[str]:
    """``command`` in a private mount namespace that sees ``root`` at ``/opt/ml``, the absolute
    path containers use: ``unshare -m`` and a bind mount (root on Linux; the mountpoint is
    created on the host if missing, and nothing is mounted outside the namespace)."""
    mount = 'mkdir -p /opt/ml && mount --bind "$0" /opt/ml && exec "$@"'
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        mount,
        str(root),
        *command,
    ]


def namespace_problem() -> str | None:
    """Why this machine cannot give a job its own ``/opt/ml``, or None."""
    if not sys.platform.startswith("linux"):
        return f"private mount namespaces need Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return "private mount namespaces need root (unshare -m and mount --bind)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return None


def script_mode_program(request: Mapping[str, Any]) -> tuple[str, str]:
    """``(sagemaker_program, sagemaker_submit_directory)``, decoded; empty when missing."""
    decoded = decoded_hyperparameters(request)
    return (
        env_value(decoded.get(PROGRAM_HYPERPARAMETER)),
        env_value(decoded.get(SUBMIT_DIRECTORY_HYPERPARAMETER)),
    )


def channel_names(request: Mapping[str, Any]) -> list[str]:
    return [str(channel["ChannelName"]) for channel in request.get("InputDataConfig") or []]


def instance_count(request: Mapping[str, Any]) -> int:
    """``ResourceConfig.InstanceCount`` (1 when absent)."""
    return int((request.get("ResourceConfig") or {}).get("InstanceCount") or 1)


def hosts(request: Mapping[str, Any]) -> list[str]:
    """The job's hosts, as SageMaker names them: ``algo-1`` .. ``algo-<InstanceCount>``."""
    return [f"{HOST_PREFIX}{index}" for index in range(1, instance_count(request) + 1)]


def channel_input_mode(request: Mapping[str, Any], channel: Mapping[str, Any]) -> str:
    """The channel's ``InputMode``, else the job's ``AlgorithmSpecification.TrainingInputMode``
    (AWS: "If you don't set a value for InputMode, SageMaker uses the value set for
    TrainingInputMode"), else ``File``."""
    algorithm = request.get("AlgorithmSpecification") or {}
    return str(channel.get("InputMode") or algorithm.get("TrainingInputMode") or FILE_MODE)


def distribution_type(channel: Mapping[str, Any]) -> str:
    source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
    return str(source.get("S3DataDistributionType") or FULLY_REPLICATED)


T = TypeVar("T")


def channel_shares(objects: list[T], host_count: int, distribution: str) -> list[list[T]]:
    """Each host's objects of a channel, in host order.

    ``FullyReplicated``: every host gets every object. ``ShardedByS3Key``: AWS "replicate[s] a
    subset of data on each ML compute instance [...] each instance gets approximately 1/n of
    the number of S3 objects" and a host may get none ("Don't choose more ML compute instances
    for training than available S3 objects. If you do, some nodes won't get any data")
    (API_S3DataSource). AWS does not say which objects go where: here the list, sorted as the
    caller gives it (by S3 key), is dealt round-robin, object ``j`` to host ``j mod n``, so the
    counts differ by at most one and host ``algo-1`` gets the first object.
    """
    if distribution == SHARDED_BY_S3_KEY:
        return [objects[index::host_count] for index in range(host_count)]
    return [list(objects) for _ in range(host_count)]


def input_data_config(request: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``inputdataconfig.json``: per channel, what the container is told about it."""
    config: dict[str, dict[str, str]] = {}
    for channel in request.get("InputDataConfig") or []:
        entry = {
            "TrainingInputMode": channel_input_mode(request, channel),
            "S3DistributionType": distribution_type(channel),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
        if channel.get("ContentType"):
            entry["ContentType"] = channel["ContentType"]
        config[str(channel["ChannelName"])] = entry
    return config


def resource_config(request: Mapping[str, Any], current_host: str = CURRENT_HOST) -> dict[str, Any]:
    """``resourceconfig.json`` of ``current_host``: every host of the job in ``hosts``, one
    homogeneous instance group (what SageMaker writes for a request without InstanceGroups)."""
    instance_type = request.get("ResourceConfig", {}).get("InstanceType", "local")
    all_hosts = hosts(request)
    return {
        "current_host": current_host,
        "hosts": all_hosts,
        "network_interface_name": NETWORK_INTERFACE,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": instance_type,
                "hosts": all_hosts,
            }
        ],
    }


def checkpoint_config(layout: TrainingLayout, request: Mapping[str, Any]) -> dict[str, str]:
    """``checkpointconfig.json``; ``LocalPath`` is the real local directory, so a script that
    reads it (``train.py`` does, without ``SM_CHECKPOINT_DIR``) finds the synced files."""
    config = request.get("CheckpointConfig") or {}
    result = {"LocalPath": str(layout.checkpoint_dir)}
    if config.get("S3Uri"):
        result["S3Uri"] = str(config["S3Uri"])
    return result


def write_config_files(
    layout: TrainingLayout, request: Mapping[str, Any], current_host: str = CURRENT_HOST
) -> None:
    files: dict[str, Any] = {
        "hyperparameters.json": hyperparameters(request),
        "inputdataconfig.json": input_data_config(request),
        "resourceconfig.json": resource_config(request, current_host),
    }
    if request.get("CheckpointConfig"):
        files["checkpointconfig.json"] = checkpoint_config(as_seen_by(layout, request), request)
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (layout.config_dir / name).write_text(json.dumps(content, indent=2) + "\n")


def as_seen_by(layout: TrainingLayout, request: Mapping[str, Any]) -> TrainingLayout:
    """The tree as the job's process names it: local paths in script mode, ``/opt/ml`` for a
    ContainerEntrypoint, which runs where the tree is mounted there."""
    if container_command(request) is None:
        return layout
    return TrainingLayout(Path(str(CONTAINER_ROOT)), layout.checkpoint_local_path)


def training_environment(
    layout: TrainingLayout,
    request: Mapping[str, Any],
    base_environment: Mapping[str, str] | None = None,
    current_host: str = CURRENT_HOST,
) -> dict[str, str]:
    """The script's environment on ``current_host``: ``base_environment`` (default: this
    process's) without any inherited ``SM_*``, plus the request's ``Environment`` and the
    toolkit's variables (``SM_HOSTS``, ``SM_CURRENT_HOST``, ``SM_TRAINING_ENV``'s ``is_master``
    and ``master_hostname``: the toolkit's ``hosts[0]``)."""
    layout = as_seen_by(layout, request)
    base = dict(os.environ if base_environment is None else base_environment)
    env = {k: v for k, v in base.items() if not k.startswith("SM_")}
    env.update({str(k): str(v) for k, v in (request.get("Environment") or {}).items()})
    all_hps = decoded_hyperparameters(request)
    user_hps = user_hyperparameters(all_hps)
    channels = channel_names(request)
    program, submit_directory = script_mode_program(request)
    job_name = str(request["TrainingJobName"])
    all_hosts = hosts(request)
    data_config = input_data_config(request)
    resources = resource_config(request, current_host)
    # SM_TRAINING_ENV: the toolkit's whole TrainingEnv as one document (its to_env_vars).
    training_env = {
        "additional_framework_parameters": {},
        "channel_input_dirs": {c: str(layout.channel_dir(c)) for c in channels},
        "current_host": current_host,
        "framework_module": None,
        "hosts": all_hosts,
        "hyperparameters": user_hps,
        "input_config_dir": str(layout.config_dir),
        "input_data_config": data_config,
        "input_dir": str(layout.input_dir),
        "is_master": current_host == all_hosts[0],
        "job_name": job_name,
        "log_level": 20,
        "master_hostname": all_hosts[0],
        "model_dir": str(layout.model_dir),
        "module_dir": submit_directory,
        "module_name": PurePosixPath(program).stem,
        "network_interface_name": NETWORK_INTERFACE,
        "num_cpus": os.cpu_count() or 1,
        "num_gpus": 0,
        "output_data_dir": str(layout.output_data_dir),
        "output_dir": str(layout.output_dir),
        "output_intermediate_dir": str(layout.output_dir / "intermediate"),
        "resource_config": resources,
        "user_entry_point": program,
    }
    env.update(
        {
            "TRAINING_JOB_NAME": job_name,
            "SAGEMAKER_BASE_DIR": str(layout.root),
            # refit's own overrides (see the module docstring): not the toolkit's.
            "SM_ROOT": str(layout.root),
            "SM_OUTPUT_FAILURE": str(layout.failure_file),
            "SM_CHECKPOINT_DIR": str(layout.checkpoint_dir),
            # The toolkit's (sagemaker_containers _env.TrainingEnv.to_env_vars), formatted as
            # its mapping.to_env_vars does: strings as they are, the rest compact JSON.
            **{f"SM_{name.upper()}": env_value(value) for name, value in training_env.items()
               if name not in TRAINING_ENV_NOT_EXPORTED},
            "SM_CHANNELS": env_value(sorted(channels)),
            "SM_HPS": env_value(user_hps),
            "SM_FRAMEWORK_PARAMS": env_value({}),
            "SM_USER_ARGS": env_value(user_args(all_hps)),
            "SM_TRAINING_ENV": env_value(training_env),
            "PYTHONUNBUFFERED": "1",
        }
    )  # fmt: skip
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = str(layout.channel_dir(channel))
    for name, value in user_hps.items():
        env[f"SM_HP_{name.upper()}"] = env_value(value)
    return env


def failure_reason_from_file(path: Path) -> str | None:
    """The first 1024 characters of the failure file, or None when it is missing or blank."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    text = text.strip()
    return text[:FAILURE_REASON_MAX] if text else None
