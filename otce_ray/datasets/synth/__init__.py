"""The procedural multi-domain street-scene benchmark, written in the Cityscapes layout so that the ordinary
reader serves it.

v2 (the demo's and the v2 validation's): 24 cities in two families (real-like, game-like) under four weather
conditions. ``CITY_DOMAINS`` maps each city name to its family, ``DOMAINS`` to its full :class:`Domain` in the
benchmark of seed 0, ``domains(seed)`` in the benchmark of another seed.

v3 (for a single-family intra experiment and non-affine shifts): ``domains_v3(seed)`` holds 24 real-like cities
``v3-alpha`` ... ``v3-omega`` that differ in content (layout, class frequencies, object scale, camera height and
field of view, texture patterns) and 4 game-like ones ``v3-game-alpha`` ... ``v3-game-delta``. ``variant(domain,
condition, shift)`` puts a clear city under a weather condition and/or one of :data:`SHIFTS`; ``city_domain(name,
seed)`` resolves any city or variant name.

``render_frame(name, frame, seed, size)`` renders one frame of any of them, ``write_benchmark(out, cities, ...)``
writes a count of v2 cities or a list of names.
"""

from otce_ray.datasets.synth.catalogue import city_domain, variant
from otce_ray.datasets.synth.domains import (
    CITY_DOMAINS, CITY_NAMES, CONDITIONS, DOMAINS, FAMILIES, Domain, Pattern, domains,
)
from otce_ray.datasets.synth.domains_v3 import CITY_NAMES_V3, GAME_CITIES, REAL_CITIES, domains_v3
from otce_ray.datasets.synth.shifts import SHIFTS
from otce_ray.datasets.synth.writer import render_frame, write_benchmark

__all__ = [
    "CITY_DOMAINS", "CITY_NAMES", "CITY_NAMES_V3", "CONDITIONS", "DOMAINS", "FAMILIES", "GAME_CITIES",
    "REAL_CITIES", "SHIFTS", "Domain", "Pattern", "city_domain", "domains", "domains_v3", "render_frame",
    "variant", "write_benchmark",
]
