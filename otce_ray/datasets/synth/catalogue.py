"""Every city by name, across benchmarks: v2's Greek names, v3's ``v3-`` names, and variants of either.

A variant is a clear city under a weather condition, a non-affine shift (:data:`shifts.SHIFTS`), or both:
``<city>.<condition>``, ``<city>.<shift>``, ``<city>.<condition>.<shift>`` (say ``v3-kappa.fog``,
``v3-kappa.lens``, ``v3-kappa.dusk.jpeg``, ``alpha.noise``). It renders its city's own frames (same layout and
look streams), so a variant differs from its city only where the condition or shift acts. Each domain has one
name and each name one domain per benchmark seed, made of folder-safe characters: pixel stores are keyed by it.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from otce_ray.datasets.synth import shifts
from otce_ray.datasets.synth.domains import CITY_NAMES, CONDITIONS, Domain, domains, lit
from otce_ray.datasets.synth.domains_v3 import CITY_NAMES_V3, domains_v3

# City -> its index, plus a tag for v3, so that v3 frames never repeat v2's (whose entropy stays [seed, index, frame]).
_CITY_INDEX: dict[str, tuple[int, ...]] = {
    **{city: (index,) for index, city in enumerate(CITY_NAMES)},
    **{city: (index, 3) for index, city in enumerate(CITY_NAMES_V3)},
}


def variant(domain: Domain, condition: str = "clear", shift: str | None = None) -> Domain:
    """``domain`` (a clear, unshifted city, or a weather variant given only a shift) under ``condition`` and
    ``shift``, named as the module says."""
    if domain.shift is not None:
        raise ValueError(f"{domain.name} is already shifted ({domain.shift}): a variant takes one shift")
    shifts.check(shift)
    if condition != "clear":
        domain = replace(lit(domain, condition), name=f"{domain.name}.{condition}")
    return domain if shift is None else replace(domain, name=f"{domain.name}.{shift}", shift=shift)


@lru_cache(maxsize=1024)
def city_domain(name: str, seed: int) -> Domain:
    """The domain of city or variant ``name`` in the benchmark of ``seed``; ValueError for any other name."""
    city, *parts = name.split(".")
    condition = parts.pop(0) if parts and parts[0] in CONDITIONS else "clear"
    if city not in _CITY_INDEX or len(parts) > 1 or (parts and parts[0] not in shifts.SHIFTS):
        raise ValueError(f"unknown city {name!r}: expected a v2 or v3 city name, optionally followed by "
                         f"'.<condition>' ({', '.join(CONDITIONS[1:])}) and/or '.<shift>' ({', '.join(shifts.SHIFTS)})")
    base = (domains(seed) if city in CITY_NAMES else domains_v3(seed))[city]
    domain = variant(base, condition, parts[0] if parts else None)
    if domain.name != name:  # say "alpha.clear", which names alpha
        raise ValueError(f"unknown city {name!r}: its canonical name is {domain.name!r}")
    return domain


def frame_streams(name: str, seed: int, frame: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The (layout, look) random streams of ``frame`` of city or variant ``name`` in the benchmark of ``seed``."""
    city = name.split(".")[0]
    if city not in _CITY_INDEX:
        raise ValueError(f"unknown city {name!r}: expected a v2 or v3 city name, optionally with a variant suffix")
    index, *tag = _CITY_INDEX[city]
    entropy = np.random.SeedSequence([seed, index, frame, *tag])
    layout, look = (np.random.default_rng(s) for s in entropy.spawn(2))
    return layout, look
