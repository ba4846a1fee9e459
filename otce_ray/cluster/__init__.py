"""The Ray plumbing every job shares: a live, defensive view of the cluster's resources and the one dispatch loop."""

from otce_ray.cluster.dispatch import Call, DispatchStats, Source, Tasks, TaskTimeout, drive, one_line
from otce_ray.cluster.resources import Cluster, ClusterView, check_gpus, demand, resolve_num_gpus

__all__ = ["Call", "Cluster", "ClusterView", "DispatchStats", "Source", "TaskTimeout", "Tasks", "check_gpus", "demand",
           "drive", "one_line", "resolve_num_gpus"]
