"""What a run asks of the cluster, declared once: the run config's ``scoring:`` (resources of the repeat tasks) and
``cluster:`` (how long the driver waits) sections."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

from otce_ray.schema import Interval, Options, Rule, check_record, declared

_AUTO = "auto"
DEVICES = ("auto", "cpu", "cuda")
MAX_SECONDS = 30 * 24 * 3600.0  # a month: longer is a typo, not a wait


@dataclass(frozen=True)
class ScoringSettings:
    """Resources of the repeat tasks. ``num_gpus`` None means auto (see ``otce_ray.cluster.resolve_num_gpus``);
    ``max_in_flight`` None: twice the tasks the cluster can run at once now (it may grow)."""

    max_in_flight: int | None = declared(Interval(Integral, 1, 1_000_000), None, "repeat tasks in flight; auto: "
                                         "twice what the cluster runs at once now", _AUTO)
    num_gpus: float | None = declared(Interval(Real, 0, 64), None, "GPUs per repeat task; auto: 1 if the cluster "
                                      "has a GPU when the run starts", _AUTO)
    device: str = declared(Options(DEVICES), "auto", "where the repeats solve")

    def __post_init__(self) -> None:
        check_record(self)


def _cuda_needs_gpus(device: str, num_gpus: float | None) -> str | None:
    return "'cuda' needs scoring.num_gpus > 0 (or leave num_gpus unset)" if device == "cuda" and num_gpus == 0 else None


SCORING_RULES = (Rule(("device", "num_gpus"), _cuda_needs_gpus),)


@dataclass(frozen=True)
class ClusterSettings:
    """How long the driver waits: work that cannot start for lack of resources fails after ``resource_wait_seconds``
    (an autoscaler adds nodes in minutes); a call running longer than ``stuck_task_seconds`` is cancelled and what it
    was for fails (``otce_ray.cluster.dispatch``)."""

    resource_wait_seconds: float = declared(Interval(Real, 0, MAX_SECONDS, closed="right"), 3600.0,
                                            "extraction that cannot start for lack of resources (no node can host a "
                                            "worker) fails its models after this long")
    stuck_task_seconds: float = declared(Interval(Real, 0, MAX_SECONDS, closed="right"), 3600.0,
                                         "a Ray call (an image shard's extraction, a repeat, a fine-tuning) that "
                                         "gives no result in this long is cancelled and its model fails (reported "
                                         "in `run.json`); raise it for very slow models")

    def __post_init__(self) -> None:
        check_record(self)
