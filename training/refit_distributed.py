"""Multi-instance training: every host of the job joins XGBoost's collective (Rabit).

SageMaker runs the script on each host of a job with ``InstanceCount`` > 1 and tells it the hosts
in ``SM_HOSTS``/``SM_CURRENT_HOST`` (``/opt/ml/input/config/resourceconfig.json`` without a
toolkit). As the SageMaker XGBoost container does for its own distributed mode
(``sagemaker_xgboost_container/distributed.py``), the first host in sorted order runs XGBoost's
tracker on port 9099 and each host joins with its index in the sorted list as its task id; hosts
reach each other by name. ``REFIT_TRACKER`` (``address:port``) is refit's own and SageMaker never
sets it: the local runtime, whose hosts share one loopback address, names a free port with it.

Inside :func:`joined`, ``xgb.train`` builds every tree from all hosts' rows (its histograms and
metrics are summed across hosts), and the helpers below combine what the script computes itself:
:func:`total`, :func:`largest`, :func:`gathered` (small arrays only), :func:`from_leader`. Outside
a collective (one host) each is the identity, so single-host jobs run the same code unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from refit_errors import TrainingStopped
from xgboost import collective
from xgboost.tracker import RabitTracker

TRACKER_PORT = 9099  # the SageMaker XGBoost container's
# How long a host waits for the others (connecting, and in each collective call): a host that
# died is noticed by the rest instead of hanging the job until MaxRuntimeInSeconds.
COLLECTIVE_TIMEOUT_SECONDS = 600
# Connection attempts to the tracker, ~2 minutes in all (xgboost waits longer each time): the
# hosts of a job start within seconds of each other.
CONNECT_RETRIES = 10

log = logging.getLogger("refit.train")

T = TypeVar("T")


@dataclass(frozen=True)
class Cluster:
    """The job's hosts, sorted, and which one this process is."""

    hosts: tuple[str, ...]
    current_host: str
    tracker_address: str | None = None  # REFIT_TRACKER's address; None: the leader's name
    tracker_port: int = TRACKER_PORT

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def world(self) -> int:
        return len(self.hosts)

    @property
    def is_leader(self) -> bool:
        """The host that writes the model, the evaluation and the checkpoints."""
        return self.rank == 0

    @property
    def leader(self) -> str:
        return self.hosts[0]


SINGLE_HOST = Cluster(("algo-1",), "algo-1")


def cluster_of(env: Mapping[str, str], config_dir: Path) -> Cluster:
    """The hosts from ``SM_HOSTS``/``SM_CURRENT_HOST``, else ``resourceconfig.json``, else one."""
    hosts_json, current = env.get("SM_HOSTS"), env.get("SM_CURRENT_HOST")
    if not hosts_json or not current:
        resource_config = config_dir / "resourceconfig.json"
        if resource_config.is_file():
            document = json.loads(resource_config.read_text())
            hosts_json = json.dumps(document.get("hosts") or [])
            current = document.get("current_host")
    hosts = tuple(sorted(json.loads(hosts_json))) if hosts_json else ()
    if not hosts or current not in hosts:
        return SINGLE_HOST
    address, port = None, TRACKER_PORT
    if env.get("REFIT_TRACKER"):
        address, _, port_text = env["REFIT_TRACKER"].rpartition(":")
        port = int(port_text)
    return Cluster(hosts, str(current), address, port)


@contextmanager
def joined(cluster: Cluster) -> Iterator[None]:
    """Join the collective for the body (a single host joins nothing).

    A body that raises leaves the collective unfinished: the host reports its failure and then
    :func:`abandon` ends the process, which makes the others' next collective call fail at once.
    All hosts stop together on SIGTERM (the checkpoint callback agrees on the round), so a
    stopped body finishes the collective as a completed one does.
    """
    if cluster.world == 1:
        yield
        return
    address = cluster.tracker_address or socket.gethostbyname(cluster.leader)
    tracker = None
    if cluster.is_leader:
        tracker = RabitTracker(
            n_workers=cluster.world,
            host_ip=address,
            port=cluster.tracker_port,
            sortby="task",
            timeout=COLLECTIVE_TIMEOUT_SECONDS,
        )
        tracker.start()
    log.info(
        "host %s joins %d hosts (rank %d), tracker %s:%d",
        cluster.current_host,
        cluster.world,
        cluster.rank,
        address,
        cluster.tracker_port,
    )
    collective.init(
        dmlc_communicator="rabit",
        dmlc_tracker_uri=address,
        dmlc_tracker_port=cluster.tracker_port,
        dmlc_task_id=str(cluster.rank),
        dmlc_retry=CONNECT_RETRIES,
        dmlc_timeout=COLLECTIVE_TIMEOUT_SECONDS,
    )
    try:
        yield
    except TrainingStopped:
        _leave(tracker)
        raise
    _leave(tracker)


def _leave(tracker: RabitTracker | None) -> None:
    collective.finalize()
    if tracker is not None:
        tracker.wait_for(COLLECTIVE_TIMEOUT_SECONDS)


def abandon(exit_status: int) -> None:
    """End a failed host's process now if it is in a collective: the other hosts' next collective
    call then fails at once instead of waiting ``COLLECTIVE_TIMEOUT_SECONDS`` for it. (xgboost's
    ``signal_error`` does not stop the others in 3.0.5; a normal exit crashes in the unfinished
    communicator's destructors.) Call it after the failure is reported."""
    if collective.is_distributed():
        logging.shutdown()
        sys.stdout.flush()
        os._exit(exit_status)


def total(value: float) -> float:
    """The sum of ``value`` over every host."""
    return float(collective.allreduce(np.array([value], dtype=np.float64), collective.Op.SUM)[0])


def totals(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The element-wise sum of ``values`` over every host (same shape everywhere)."""
    summed: npt.NDArray[np.float64] = collective.allreduce(
        np.ascontiguousarray(values, dtype=np.float64), collective.Op.SUM
    )
    return summed


def largest(value: int) -> int:
    """The largest ``value`` of any host."""
    return int(collective.allreduce(np.array([value], dtype=np.int64), collective.Op.MAX)[0])


def from_leader(value: T) -> T:
    """The leader's ``value``, on every host (any picklable value)."""
    shared: T = collective.broadcast(value, 0)
    return shared


def gathered(rows: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Every host's ``rows`` (same columns), concatenated in host order, on every host. For small
    tables only (a sample): each host's part travels to all the others."""
    if collective.get_world_size() <= 1:
        return rows
    parts = [collective.broadcast(rows, rank) for rank in range(collective.get_world_size())]
    return np.concatenate(parts)
