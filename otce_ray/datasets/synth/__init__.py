"""The procedural multi-domain street-scene benchmark: cities are domains in two families (real-like,
game-like), written in the Cityscapes layout so that the ordinary reader serves it.

``write_benchmark(out, cities=8, images_per_city=50, size=(128, 256), seed=0)`` writes it;
``CITY_DOMAINS`` maps each city name to its family, ``DOMAINS`` to its full :class:`Domain` in the benchmark of
seed 0, ``domains(seed)`` in the benchmark of another seed.
"""

from otce_ray.datasets.synth.domains import (
    CITY_DOMAINS, CITY_NAMES, CONDITIONS, DOMAINS, FAMILIES, Domain, domains,
)
from otce_ray.datasets.synth.writer import render_frame, write_benchmark

__all__ = [
    "CITY_DOMAINS", "CITY_NAMES", "CONDITIONS", "DOMAINS", "FAMILIES", "Domain", "domains", "render_frame",
    "write_benchmark",
]
