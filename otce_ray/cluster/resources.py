"""What the Ray cluster offers right now, read defensively: it may have no GPU yet, no CPU on the head, or grow.

An autoscaling cluster starts with a head that runs no tasks and GPU workers at ``min_workers: 0``, so when a job
starts ``ray.cluster_resources()`` has no "GPU" key at all. Every read here defaults to 0, caps are recomputed from
the current view as nodes join or leave, and a wish for more capacity is told to the autoscaler
(``request_resources``) instead of being inferred from tasks that cannot start.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import ray

logger = logging.getLogger("otce_ray")
REFRESH_SECONDS = 1.0  # the view is re-read at most this often: the loop may turn thousands of times a second
MAX_REQUESTED_BUNDLES = 256  # the autoscaler caps nodes at max_workers anyway; a bound keeps the request small


def resolve_num_gpus(requested: float | None, cluster_gpus: float) -> float:
    """GPUs per task: the configured number, or when unset ("auto") one GPU if the cluster has any, else 0.

    A laptop without a GPU thus runs on CPU with no setting. An autoscaling cluster whose GPU workers start at 0
    shows no GPU yet, so cluster configs should set ``num_gpus`` explicitly.
    """
    if requested is not None:
        return float(requested)
    return 1.0 if cluster_gpus > 0 else 0.0


def check_gpus(requested: float, largest_node_gpus: float, setting: str) -> None:
    """Refuse tasks that ask for more GPUs than any node has while GPU nodes are up (they could never run); with no
    GPU node up yet, only warn: an autoscaling cluster adds GPU nodes once such work is pending."""
    if requested <= largest_node_gpus:
        return
    if largest_node_gpus > 0:
        raise ValueError(f"{setting}={requested:g} per task, but the largest node of the Ray cluster has "
                         f"{largest_node_gpus:g} GPUs: lower {setting}, or set it to 0 to run on CPUs")
    logger.warning(
        "%s=%g GPUs per task, but the Ray cluster has no GPU now: tasks wait for the autoscaler to add GPU nodes "
        "(on a fixed cluster, start GPU workers or set %s to 0)", setting, requested, setting)


@dataclass(frozen=True)
class ClusterView:
    """The resources of each node alive when it was read."""

    nodes: tuple[Mapping[str, float], ...] = ()

    def total(self, resource: str) -> float:
        return float(sum(node.get(resource, 0.0) for node in self.nodes))

    def largest(self, resource: str) -> float:
        """The most of ``resource`` one node has: what a single task can ever be given."""
        return float(max((node.get(resource, 0.0) for node in self.nodes), default=0.0))

    def slots(self, demand: Mapping[str, float]) -> int:
        """How many tasks asking for ``demand`` fit on the cluster at once, node by node (0 when none fits)."""
        wanted = {key: value for key, value in demand.items() if value > 0}
        if not wanted:
            return 0
        return sum(min(math.floor(node.get(key, 0.0) / value + 1e-9) for key, value in wanted.items())
                   for node in self.nodes)

    @classmethod
    def read(cls) -> "ClusterView":
        return cls(tuple(dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")))


class Cluster:
    """A throttled live view of the cluster, shared by everything the driver dispatches in one run."""

    def __init__(self) -> None:
        self._view: ClusterView | None = None
        self._read_at = -math.inf
        self._requested: tuple = ()

    @property
    def view(self) -> ClusterView:
        now = time.monotonic()
        if self._view is None or now - self._read_at >= REFRESH_SECONDS:
            self._view, self._read_at = ClusterView.read(), now
        return self._view

    def request(self, bundles: Sequence[Mapping[str, float]]) -> None:
        """Tell the autoscaler the capacity the queued work could use now (a no-op on a cluster without one)."""
        bundles = tuple(dict(b) for b in bundles[:MAX_REQUESTED_BUNDLES])
        if bundles == self._requested:
            return
        self._requested = bundles
        try:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=list(bundles))
        except Exception as error:  # noqa: BLE001 - a hint to the autoscaler, never a reason to fail a run
            logger.debug("request_resources failed: %s", error)

    def release(self) -> None:
        self.request([])


def demand(num_cpus: float, num_gpus: float) -> dict[str, Any]:
    """The resource demand of one task or actor, as Ray and ``ClusterView.slots`` read it."""
    return {"CPU": float(num_cpus), "GPU": float(num_gpus)}
