"""How pixel stores are filled, declared once: the run config's ``extraction:`` section."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

from otce_ray.schema import Interval, check_record, declared

_AUTO = "auto"


@dataclass(frozen=True)
class ExtractionSettings:
    """How pixel stores are filled, by a pool of extraction workers (Ray actors that keep their model loaded).

    ``num_gpus`` None means auto (see ``otce_ray.cluster.resolve_num_gpus``); ``max_workers`` None: as many workers as
    the cluster can run (on CPUs, half its CPUs); ``num_shards`` None: about 32 images per shard.
    """

    pixels_per_image: int = declared(Interval(Integral, 1, 1_000_000), 1000, "pixels kept per image in the pixel "
                                                                             "store")
    batch_size: int = declared(Interval(Integral, 1, 4096), 8, "images per forward pass")
    num_gpus: float | None = declared(Interval(Real, 0, 64), None, "GPUs per extraction worker (fractions allowed). "
                                      "Auto: 1 if the Ray cluster has a GPU when the run starts, else 0 (a laptop runs "
                                      "on CPU). Set it explicitly on autoscaling clusters, which show no GPU before "
                                      "the first worker starts", _AUTO)
    num_cpus: float = declared(Interval(Real, 0, 1024, closed="right"), 1.0, "CPUs per extraction worker (on GPU "
                               "nodes, 2 or more keep decoding ahead of a fast GPU)")
    num_shards: int | None = declared(Interval(Integral, 1, 1_000_000), None, "image shards per dataset (auto: about "
                                      "32 images each)", _AUTO)
    max_workers: int | None = declared(Interval(Integral, 1, 100_000), None, "extraction workers at most; auto: as "
                                       "many as the cluster can run now, growing with it", _AUTO)
    decode_threads: int | None = declared(Interval(Integral, 1, 256), None, "images decoded side by side, per "
                                          "worker, ahead of the forward pass; auto: 4 on a GPU worker, 1 on a CPU "
                                          "one (whose forward needs the CPU)", _AUTO)

    def __post_init__(self) -> None:
        check_record(self)
