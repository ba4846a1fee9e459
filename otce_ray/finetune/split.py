"""The leakage-free protocol: a score may see only the target images that fine-tuning trains on.

A user who asks which model to fine-tune has a few labelled target images and nothing else, so the ground truth a
score is judged against must be measured on images the score never saw. Both sides select the training images
through one dataset spec: :func:`training_target` narrows the target spec to a seeded subset (``max_images``,
``seed``), scoring reads that spec, and :func:`split_target` trains on exactly the images the same spec selects
(the dataset layer's ``seeded_subset``) and evaluates on others of the same dataset. Which images are chosen
depends on the spec's ``seed`` only, never on the fine-tuning seed, so replicate fine-tunings see identical data.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from otce_ray.datasets import Item, open_dataset
from otce_ray.datasets.selection import seeded_subset

logger = logging.getLogger(__name__)

DEFAULT_TRAIN_IMAGES = 20  # the paper's few-shot setting (section 3.1)
DRAW_STREAM = 0xD4A3  # the seed stream of the training images' bootstrap draws


@dataclass(frozen=True)
class TargetSplit:
    """The target images every model is fine-tuned on (``train``) and evaluated on (``test``), disjoint."""

    train: tuple[Item, ...]
    test: tuple[Item, ...]
    num_classes: int

    def redrawn(self, draw: int | None) -> "TargetSplit":
        """This split with its training images replaced by a bootstrap resample of them (as many, drawn with
        replacement, seeded by ``draw``), or itself for None. Replicate fine-tunings on redrawn images measure how
        much the ground truth depends on which images happened to be drawn, without ever training on an image the
        scores did not see or evaluating on one they did."""
        if draw is None:
            return self
        picks = np.random.default_rng([DRAW_STREAM, draw]).integers(0, len(self.train), len(self.train))
        return dataclasses.replace(self, train=tuple(self.train[int(i)] for i in picks))


def training_target(target: Mapping[str, Any], train_images: int | None = None) -> dict[str, Any]:
    """The target spec narrowed to the images fine-tuning trains on: the only target images a score may see.

    A spec that already sets ``max_images`` names that subset itself (``train_images``, when given, must agree);
    otherwise the first ``train_images`` (default 20) of the spec's seeded ranking are taken.
    """
    chosen = target.get("max_images")
    if chosen is None:
        return {**target, "max_images": DEFAULT_TRAIN_IMAGES if train_images is None else train_images}
    if train_images is not None and train_images != chosen:
        raise ValueError(f"target {target.get('name')!r} is narrowed to max_images={chosen}, the images scoring saw, "
                         f"but fine-tuning was asked to train on {train_images}")
    return dict(target)


def split_target(target: Mapping[str, Any], train_images: int | None = None, eval_images: int = 50) -> TargetSplit:
    """Train on :func:`training_target`'s images; evaluate on up to ``eval_images`` of the dataset's other images.

    The evaluation images are a seeded subset (the spec's ``seed``) of the rest, so raising either count keeps the
    images chosen before. A target without ``max_images`` is warned about: its scores, if computed on the same
    spec, saw the evaluation images.
    """
    if target.get("max_images") is None:
        logger.warning("target %r sets no max_images: scores computed on it saw every image, including the ones "
                       "fine-tuning evaluates on; score with the training subset (target.max_images) instead",
                       target.get("name"))
    narrowed = training_target(target, train_images)
    trained = open_dataset(narrowed)
    everything = open_dataset({**narrowed, "max_images": None})
    chosen = set(trained.image_ids)
    rest = [image_id for image_id in everything.image_ids if image_id not in chosen]
    if not rest:
        raise ValueError(f"target {target.get('name')!r} has {len(everything.image_ids)} images: fine-tuning on "
                         f"{len(chosen)} leaves none to evaluate on")
    test = seeded_subset(rest, eval_images, narrowed.get("seed") or 0)
    if len(test) < eval_images:
        logger.warning("target %r: evaluating on the %d images left after training, not %d",
                       target.get("name"), len(test), eval_images)
    index = {image_id: position for position, image_id in enumerate(everything.image_ids)}
    return TargetSplit(tuple(trained), tuple(everything[index[i]] for i in test), everything.num_classes)
