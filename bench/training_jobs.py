"""``training/train.py`` run the way SageMaker runs it, with the child's CPU time measured.

One job = an ``/opt/ml``-shaped directory (``SM_ROOT``) with hyperparameters as strings, the
``train``/``test``/``model`` channels and a checkpoint dir, then one subprocess. ``os.wait4``
returns that process's own resource usage: user + system CPU seconds of train.py and nothing
else running on the machine.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import ROOT

TRAIN_SCRIPT = ROOT / "training" / "train.py"
MODEL_FILE = "xgboost-model"  # layers/refit/refit/layout.py MODEL_FILE


@dataclass(frozen=True)
class JobResult:
    cpu_seconds: float
    wall_seconds: float
    max_rss_mb: float
    evaluation: dict[str, Any]
    model: bytes  # the challenger, UBJSON
    output: bytes  # output.tar.gz as SageMaker packs /opt/ml/output/data (the replay sample too)

    def archive(self) -> bytes:
        """``model.tar.gz`` as SageMaker packs the model dir: the next job's champion."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            member = tarfile.TarInfo(MODEL_FILE)
            member.size = len(self.model)
            tar.addfile(member, io.BytesIO(self.model))
        return buffer.getvalue()


def _tar_gz(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()


class TrainingFailed(RuntimeError):
    pass


def run_job(
    work: Path,
    *,
    train: list[bytes],
    test: bytes,
    hyperparameters: dict[str, Any],
    champion_archive: bytes | None = None,
    replay_archive: bytes | None = None,
) -> JobResult:
    """Lay out one job under ``work`` (must not exist yet), run train.py, measure it."""
    # The champion's model.tar.gz, and its output.tar.gz as PrepareRun plans the replay channel.
    channels = {"model/model.tar.gz": champion_archive, "replay/output.tar.gz": replay_archive}
    (host,), wall = _run([work], [train], test, hyperparameters, channels, tracker=None)
    root = work / "opt" / "ml"
    return JobResult(
        cpu_seconds=host.cpu_seconds,
        wall_seconds=wall,
        max_rss_mb=host.max_rss_mb,
        evaluation=json.loads((root / "output" / "data" / "evaluation.json").read_text()),
        model=(root / "model" / MODEL_FILE).read_bytes(),
        output=_tar_gz(root / "output" / "data"),
    )


@dataclass(frozen=True)
class HostResult:
    """One host of a job: what its train.py process used and read."""

    host: str
    cpu_seconds: float
    max_rss_mb: float
    train_rows: int  # from its log: "channel train: <rows> rows"


def run_hosts(
    work: Path,
    *,
    shards: list[list[bytes]],
    test: bytes,
    hyperparameters: dict[str, Any],
) -> tuple[list[HostResult], float, dict[str, Any]]:
    """One job on ``len(shards)`` hosts, each an ``/opt/ml`` tree under ``work`` with its shard of
    the train channel, meeting on loopback (``REFIT_TRACKER``) as the local runtime runs them:
    per-host results, the job's wall seconds, and the leader's evaluation."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        tracker = f"127.0.0.1:{probe.getsockname()[1]}"
    dirs = [work / f"algo-{number + 1}" for number in range(len(shards))]
    results, wall = _run(dirs, shards, test, hyperparameters, {}, tracker=tracker)
    leader = dirs[0] / "opt" / "ml" / "output" / "data" / "evaluation.json"
    return results, wall, json.loads(leader.read_text())


def _run(
    dirs: list[Path],
    shards: list[list[bytes]],
    test: bytes,
    hyperparameters: dict[str, Any],
    channels: dict[str, bytes | None],
    tracker: str | None,
) -> tuple[list[HostResult], float]:
    """train.py once per directory (a host: ``algo-<n>``), all at once; each host's CPU seconds
    (``os.wait4``), peak RSS and rows read, and the wall seconds until the last ended."""
    hosts = [f"algo-{number + 1}" for number in range(len(dirs))]
    processes = []
    started = time.monotonic()
    for host, work, shard in zip(hosts, dirs, shards, strict=True):
        root = work / "opt" / "ml"
        config = root / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(
            json.dumps({key: str(value) for key, value in hyperparameters.items()})
        )
        (config / "checkpointconfig.json").write_text(
            json.dumps({"LocalPath": str(work / "checkpoints")})
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "REFIT_"))}
        env |= {"SM_ROOT": str(root), "SM_OUTPUT_FAILURE": str(work / "failure.txt")}
        if tracker is not None:  # several hosts (one host joins no collective)
            (config / "resourceconfig.json").write_text(
                json.dumps({"current_host": host, "hosts": hosts, "network_interface_name": "lo"})
            )
            env["REFIT_TRACKER"] = tracker
        data = root / "input" / "data"
        for number, body in enumerate(shard):
            _write(data / "train" / f"part-{number:03d}.csv", body)
        _write(data / "test" / "holdout.csv", test)
        for name, archive in channels.items():
            if archive is not None:
                _write(data / name, archive)
        log = (work / "job.log").open("wb")
        command = [sys.executable, str(TRAIN_SCRIPT)]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append((host, work, log, process))
    peaks = {process.pid: 0.0 for *_, process in processes}
    watcher = threading.Thread(target=_watch_peaks, args=(peaks,), daemon=True)
    watcher.start()
    ended = [(*entry, *os.wait4(entry[3].pid, 0)[1:]) for entry in processes]
    watcher.join()
    wall = time.monotonic() - started
    results = []
    for host, work, log, process, status, usage in ended:
        log.close()
        text = (work / "job.log").read_text()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            failure = work / "failure.txt"
            reason = failure.read_text() if failure.exists() else text[-2000:]
            raise TrainingFailed(f"{host}: train.py exited {code}: {reason}")
        found = re.search(r"channel train: (\d+) rows", text)
        results.append(
            HostResult(
                host,
                usage.ru_utime + usage.ru_stime,
                peaks[process.pid],
                int(found.group(1)) if found else 0,
            )
        )
    return results, wall


def _write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def _watch_peaks(peaks: dict[int, float]) -> None:
    """Each process's peak RSS in MB, from ``VmHWM`` in ``/proc/<pid>/status`` (Linux), until
    they have all ended. Not ``ru_maxrss``: Linux counts into it the forking parent's memory
    (the benchmark's own data), recorded when the child execs."""
    alive = set(peaks)
    while alive:
        for pid in list(alive):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                alive.discard(pid)
                continue
            found = re.search(r"VmHWM:\s+(\d+) kB", status)
            if found is None:  # a zombie: it has ended
                alive.discard(pid)
                continue
            peaks[pid] = max(peaks[pid], int(found.group(1)) / 1024)
        time.sleep(0.02)
