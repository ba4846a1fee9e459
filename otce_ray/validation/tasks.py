"""Cross-task targets: a benchmark city turned into another task than the one every source model was trained on.

OTCE was designed for source and target label sets that differ (the joint P(ys, yt) needs no shared classes), so the
validation also ranks sources for targets whose classes were merged or remapped, and for targets whose class
frequencies moved far from the sources':

- ``coarse``: the 19 classes merged into the 7 Cityscapes categories (flat, construction, object, nature, sky,
  human, vehicle); fine-tuning replaces the classifier.
- ``objects``: only the six object classes (pole, traffic light, sign, person, car, truck), renumbered 0-5; every
  other pixel is unlabelled.
- ``crowded`` / ``sparse``: the same classes, but the city's scenes hold 4x the people and 3x the cars, or a tenth
  of both (same random streams as the city's own frames).

Each is written in the ``folder`` layout (``images/``, ``masks/`` holding the new class ids, 255 unlabelled).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

from otce_ray import fs
from otce_ray.datasets.labels import CITYSCAPES_NUM_CLASSES, IGNORE, cityscapes_lookup
from otce_ray.datasets.synth import domains, render_frame
from otce_ray.datasets.synth.writer import png_bytes

_COARSE = {label.trainId: label.categoryId - 1 for label in _CITYSCAPES_LABELS
           if 0 <= label.trainId < CITYSCAPES_NUM_CLASSES}
_OBJECTS = {5: 0, 6: 1, 7: 2, 11: 3, 13: 4, 14: 5}  # train ids of pole, light, sign, person, car, truck


@dataclass(frozen=True)
class Task:
    """How a city becomes a target: ``relabel`` maps train ids to the task's ids (None: keep the 19; ids it does
    not list become unlabelled), ``scale`` multiplies domain statistics (say, ``people``)."""

    description: str
    relabel: Mapping[int, int] | None = None
    scale: Mapping[str, float] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return CITYSCAPES_NUM_CLASSES if self.relabel is None else max(self.relabel.values()) + 1


TASKS: dict[str, Task] = {
    "coarse": Task("19 classes merged into the 7 Cityscapes categories", relabel=_COARSE),
    "objects": Task("only the 6 object classes (pole, light, sign, person, car, truck), renumbered; the rest "
                    "unlabelled", relabel=_OBJECTS),
    "crowded": Task("4x the people and 3x the cars of the city", scale={"people": 4.0, "cars": 3.0}),
    "sparse": Task("a tenth of the city's people and cars", scale={"people": 0.1, "cars": 0.1}),
}


def relabelled(train_ids: np.ndarray, relabel: Mapping[int, int] | None) -> np.ndarray:
    """Train ids mapped to a task's ids; ids the map does not list (and 255) become 255."""
    if relabel is None:
        return train_ids
    table = np.full(256, IGNORE, dtype=np.uint8)
    for train_id, new_id in relabel.items():
        table[train_id] = new_id
    return table[train_ids]


def write_task_target(root: str, city: str, task_name: str, seed: int, images: int, size: tuple[int, int]) -> dict:
    """Write ``images`` frames of ``city`` (benchmark ``seed``) as task ``task_name`` under ``root``; returns its
    dataset spec (name ``{city}-{task}``). The same arguments give the same files."""
    task = TASKS[task_name]
    base = domains(seed)[city]
    domain = dataclasses.replace(base, **{key: getattr(base, key) * factor for key, factor in task.scale.items()})
    lookup = cityscapes_lookup()
    for frame in range(images):
        image, label_ids = render_frame(city, frame, seed, size, domain=domain)
        stem = f"{city}_{frame:06d}"
        mask = relabelled(lookup.apply(label_ids, f"{city} frame {frame}"), task.relabel)
        fs.write_bytes_atomic(fs.join(root, "images", f"{stem}.png"), png_bytes(image))
        fs.write_bytes_atomic(fs.join(root, "masks", f"{stem}.png"), png_bytes(mask))
    return task_spec(root, city, task_name)


def task_spec(root: str, city: str, task_name: str) -> dict[str, Any]:
    """The dataset spec of a written task target: masks already hold the task's ids."""
    return {"name": f"{city}-{task_name}", "format": "folder", "root": root,
            "label_map": {i: i for i in range(TASKS[task_name].num_classes)}, "ignore_index": IGNORE}
