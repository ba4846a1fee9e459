"""What validation v3 runs on one benchmark seed: which cities, which source models, which targets, which estimators.

Three experiments, each target ranked over its own sources (never one trained on the target's city):

- ``intra`` (primary; the paper's section 3.1, single-family like its Cityscapes cities): 4 real-like v3 target
  cities, ranked over 16 source models, one per other real-like v3 city. The zoo has a quality spread *within* the
  family: the 16 models are the 4 built-in architectures x 2 widths x 2 training lengths (``ZOO``), assigned to the
  source cities by a seeded permutation, so ground truth varies through the model as well as through the city.
- ``shift``: 2 of those target cities under a non-affine domain shift (blur, sensor noise, JPEG, resolution change,
  lens distortion, texture swap; which two rotates with the seed), ranked over the same 16 sources.
- ``inter`` (section 3.2, Figs. 4-5, two families): the first 2 target cities, ranked over 6 architectures trained
  on one real-like v3 city and the same 6 on one game-like v3 city, analysed per source city as in the paper.

Every seed draws its own cities' parameters, its own role assignment and its own zoo; the scoring settings are the
pre-registered candidates (``docs/validation/preregistration.md``). Nothing here touches files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otce_ray.datasets.synth import GAME_CITIES, REAL_CITIES, SHIFTS, city_domain
from otce_ray.finetune import FineTuneSettings
from otce_ray.scoring.settings import OTCESettings

INTRA, SHIFT, INTER = "intra", "shift", "inter"
EXPERIMENTS = (INTRA, SHIFT, INTER)
SHIFT_ORDER = tuple(SHIFTS)
# The intra zoo: every architecture x width x training length once, a quality spread within the family.
ZOO = tuple((arch, width, steps) for arch in ("unet", "segnet", "fcn8s", "pspnet") for width in (8, 16)
            for steps in (40, 200))
INTER_ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "unet": ("unet", {"width": 12}), "segnet": ("segnet", {"width": 12}), "fcn8s": ("fcn8s", {"width": 12}),
    "pspnet": ("pspnet", {"width": 12}), "fcn8s-wide": ("fcn8s", {"width": 24}),
    "pspnet-d64": ("pspnet", {"width": 12, "feature_dim": 64}),
}
INTER_STEPS = 150
_ROLES = 0xC17E5  # the seed stream of the role assignment


def _setting(**fields: Any) -> OTCESettings:
    return OTCESettings(n_pixels=2000, repeats=5, **fields)


# The pre-registered estimators, cheapest first (the choice rule prefers the cheaper of equivalent settings), and the
# paper's estimator as the authors' code runs it (exact OT on raw features) as a reference.
CANDIDATES = {
    "eps0.05-z": _setting(epsilon=0.05, standardise=True),
    "eps0.01-z": _setting(epsilon=0.01, standardise=True),
    "emd-z": _setting(solver="emd", standardise=True),
}
REFERENCE = {"paper-emd": _setting(solver="emd", standardise=False)}
SETTINGS = {**CANDIDATES, **REFERENCE}
# The pipeline run that extracts the stores and computes the baselines: JC-OTCE solves under its eps (as in v2).
PIPELINE_OTCE = {"n_pixels": 2000, "repeats": 2, "seed": 0, "epsilon": 0.05, "standardise": False}


@dataclass(frozen=True)
class Source:
    """One source model: a built-in architecture (with its kwargs) trained for ``steps`` on one benchmark city."""

    name: str
    architecture: str
    city: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = INTER_STEPS

    @property
    def family(self) -> str:
        return "game-like" if self.city in GAME_CITIES else "real-like"


@dataclass(frozen=True)
class Target:
    """A target dataset: a clear real-like v3 city, or that city under a non-affine ``shift``."""

    city: str
    shift: str | None = None

    @property
    def name(self) -> str:
        return self.city if self.shift is None else f"{self.city}.{self.shift}"

    @property
    def family(self) -> str:
        return "real-like"


@dataclass(frozen=True)
class Roles:
    """One seed's cities: targets, the 16 intra source cities, and the inter experiment's two source cities."""

    targets: tuple[str, ...]
    intra_sources: tuple[str, ...]
    inter_real: str
    inter_game: str


@dataclass(frozen=True)
class Plan:
    """Sizes and protocol of one benchmark seed's run (the defaults are what the pre-registration fixes)."""

    images_per_city: int = 40
    size: tuple[int, int] = (64, 128)
    # Scoring and fine-tuning both see the same train_images target images (the target spec's seeded subset);
    # fine-tuning evaluates on the others. Replicate 0 trains on those images as they are, replicate r > 0 on
    # bootstrap draw r of them with fine-tuning seed r: the ground truth's noise includes which images were drawn.
    train_images: int = 20
    finetune: FineTuneSettings = field(default_factory=lambda: FineTuneSettings(eval_images=20))
    replicates: int = 3
    source_eval_images: int = 20  # frames past images_per_city, rendered to measure each source on its own city
    pixels_per_image: int = 500  # the 20 target images hold 10,000 pixels
    workers: int = 2
    zoo: tuple[tuple[str, int, int], ...] = ZOO  # (architecture, width, training steps), one per intra source city
    inter_architectures: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=lambda: INTER_ARCHITECTURES)
    targets: tuple[int, int, int] = (4, 2, 2)  # target cities of the intra, shift and inter experiments

    def roles(self, seed: int) -> Roles:
        order = [REAL_CITIES[i] for i in np.random.default_rng([_ROLES, seed]).permutation(len(REAL_CITIES))]
        game = GAME_CITIES[seed % len(GAME_CITIES)]
        first = self.targets[0]
        return Roles(tuple(order[:first]), tuple(order[first:first + len(self.zoo)]), order[first + len(self.zoo)],
                     game)

    def finetune_settings(self, replicate: int) -> FineTuneSettings:
        draw = None if replicate == 0 else replicate
        return FineTuneSettings(**{**self.finetune.__dict__, "seed": replicate, "image_draw": draw})

    def targets_of(self, experiment: str, seed: int) -> list[Target]:
        targets = self.roles(seed).targets
        if experiment == INTRA:
            return [Target(city) for city in targets]
        if experiment == SHIFT:
            count = self.targets[1]
            return [Target(city, SHIFT_ORDER[(count * seed + i) % len(SHIFT_ORDER)])
                    for i, city in enumerate(targets[:count])]
        return [Target(city) for city in targets[:self.targets[2]]]

    def sources(self, experiment: str, seed: int) -> list[Source]:
        """Every model the experiment transfers (intra and shift share the zoo)."""
        roles = self.roles(seed)
        if experiment in (INTRA, SHIFT):
            order = np.random.default_rng([_ROLES, seed, 1]).permutation(len(self.zoo))
            return [Source(f"{arch}-w{width}-s{steps}_{city}", arch, city, {"width": width}, steps)
                    for city, (arch, width, steps) in zip(roles.intra_sources, (self.zoo[i] for i in order))]
        return [Source(f"{label}_{city}", arch, city, dict(kwargs), INTER_STEPS)
                for city in (roles.inter_real, roles.inter_game)
                for label, (arch, kwargs) in self.inter_architectures.items()]

    def all_sources(self, seed: int) -> list[Source]:
        found: dict[str, Source] = {}
        for experiment in EXPERIMENTS:
            for source in self.sources(experiment, seed):
                if found.setdefault(source.name, source) != source:
                    raise ValueError(f"two different source models are both named {source.name!r}")
        return list(found.values())

    def cities(self, seed: int) -> list[str]:
        """Every city and shifted target the seed's benchmark holds, each written once."""
        roles = self.roles(seed)
        shifted = [target.name for target in self.targets_of(SHIFT, seed)]
        return [*roles.targets, *roles.intra_sources, roles.inter_real, roles.inter_game, *shifted]

    def check(self, seed: int) -> None:
        """Every name resolves in the benchmark (a typo is found before hours of work)."""
        for name in self.cities(seed):
            city_domain(name, seed)
