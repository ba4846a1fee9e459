"""What the validation runs: the paper's experiments in miniature, plus cross-task targets, on one benchmark seed.

- ``intra`` (paper section 3.1): one architecture trained on each of 14 cities; a target city's sources are the
  models of the other 13.
- ``inter`` (section 3.2, Figs. 4-5): six architectures trained on a real-like city (alpha, standing for BDD100K)
  and on a game-like one (beta, standing for GTA5), transferred to the same targets; analysed per source city.
- ``cross``: targets whose task differs from the sources' (merged or remapped classes, class-frequency shifts;
  :mod:`otce_ray.validation.tasks`), each made from one intra target city and ranked over that city's sources.

Every seed writes its own benchmark (city parameters are drawn from the seed), trains its own sources and draws its
own target images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from otce_ray.datasets.synth import CITY_NAMES, DOMAINS
from otce_ray.finetune import FineTuneSettings

INTRA, INTER, CROSS = "intra", "inter", "cross"
EXPERIMENTS = (INTRA, INTER, CROSS)


@dataclass(frozen=True)
class Source:
    """One source model: a built-in architecture (with its kwargs) trained on one benchmark city."""

    name: str
    architecture: str
    city: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A target dataset: benchmark city ``city`` as it is (``task`` "same") or turned into another task."""

    city: str
    task: str = "same"

    @property
    def name(self) -> str:
        return self.city if self.task == "same" else f"{self.city}-{self.task}"

    @property
    def family(self) -> str:
        return DOMAINS[self.city].family


@dataclass(frozen=True)
class Plan:
    """Sizes, sources, targets and protocol of one benchmark seed's run (the defaults are the write-up's)."""

    cities: int = 16
    images_per_city: int = 40
    size: tuple[int, int] = (64, 128)
    training_steps: int = 150
    intra_architecture: tuple[str, dict[str, Any]] = ("fcn8s", {"width": 12})
    intra_cities: tuple[str, ...] = CITY_NAMES[2:16]
    targets: tuple[str, ...] = ("gamma", "delta", "iota", "xi")
    inter_cities: tuple[str, ...] = ("alpha", "beta")
    inter_architectures: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=lambda: {
        "unet": ("unet", {"width": 12}), "segnet": ("segnet", {"width": 12}), "fcn8s": ("fcn8s", {"width": 12}),
        "pspnet": ("pspnet", {"width": 12}), "fcn8s-wide": ("fcn8s", {"width": 24}),
        "pspnet-d64": ("pspnet", {"width": 12, "feature_dim": 64}),
    })
    # One cross-task twin per intra target: (city, task of otce_ray.validation.tasks.TASKS).
    cross_targets: tuple[tuple[str, str], ...] = (
        ("gamma", "coarse"), ("delta", "objects"), ("iota", "crowded"), ("xi", "sparse"))
    # The protocol: scoring and fine-tuning both see the same train_images target images (drawn by the benchmark
    # seed); fine-tuning evaluates on the others, once per fine-tuning seed.
    train_images: int = 20
    finetune: FineTuneSettings = field(default_factory=lambda: FineTuneSettings(eval_images=20))
    finetune_seeds: tuple[int, ...] = (0, 1, 2)
    # The pipeline run that extracts the pixel stores and computes the baselines (OTCE itself is re-scored from the
    # stores under every setting of the grid). 500 pixels per image: the 20 target images hold 10,000 pixels.
    pixels_per_image: int = 500
    n_pixels: int = 2000
    repeats: int = 2
    workers: int = 2

    def targets_of(self, experiment: str) -> list[Target]:
        if experiment == CROSS:
            return [Target(city, task) for city, task in self.cross_targets]
        return [Target(city) for city in self.targets]

    def sources(self, experiment: str) -> list[Source]:
        """Every model the experiment uses (cross-task targets reuse the intra sources)."""
        if experiment in (INTRA, CROSS):
            arch, kwargs = self.intra_architecture
            return [Source(f"{arch}_{city}", arch, city, kwargs) for city in self.intra_cities]
        return [Source(f"{label}_{city}", arch, city, kwargs)
                for label, (arch, kwargs) in self.inter_architectures.items() for city in self.inter_cities]

    def sources_for(self, experiment: str, target: Target) -> list[Source]:
        """The models transferred to ``target``: never one trained on the target's city."""
        return [source for source in self.sources(experiment) if source.city != target.city]

    def all_sources(self) -> list[Source]:
        """Every model to train, once each; two different models may not share a name."""
        found: dict[str, Source] = {}
        for source in self.sources(INTRA) + self.sources(INTER):
            if found.setdefault(source.name, source) != source:
                raise ValueError(f"two different source models are both named {source.name!r}")
        return list(found.values())
