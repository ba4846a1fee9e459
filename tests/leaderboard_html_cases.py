"""Hand-made result records for the leaderboard page: a zoo of any size with architectures, sources, failed models
and per-class breakdowns, deterministic from a seed."""

from __future__ import annotations

import numpy as np

from otce_ray.leaderboard import ModelResult

ARCHITECTURES = ("SegformerForSemanticSegmentation", "deeplabv3_resnet50", "Unet", "lraspp_mobilenet_v3_large")
SOURCES = ("cityscapes", "bdd100k", "gta5", "mapillary", "synthia")
CLASS_NAMES = {0: "road", 1: "sidewalk", 2: "building", 11: "person", 13: "car"}
TARGET_CLASSES = (0, 1, 2, 11, 13)
SOURCE_CLASSES = (0, 1, 2, 11, 13, 18)


ESTIMATOR = "sinkhorn eps 0.05 x median, z-scored, N 1000, K 3"


def breakdown(rng: np.random.Generator, otce: float) -> tuple[dict, dict]:
    """A per-class split of -otce and a row-stochastic label map, shaped as the pipeline records them."""
    shares = rng.dirichlet(np.ones(len(TARGET_CLASSES)))
    parts = rng.dirichlet(np.ones(len(TARGET_CLASSES))) * -otce
    per_class = {str(c): {"share": float(s), "contribution": float(p)}
                 for c, s, p in zip(TARGET_CLASSES, shares, parts)}
    p = rng.dirichlet(np.ones(len(TARGET_CLASSES)) * 0.3, size=len(SOURCE_CLASSES))
    label_map = {"source_classes": list(SOURCE_CLASSES), "target_classes": list(TARGET_CLASSES),
                 "p_target_given_source": p.round(6).tolist()}
    return per_class, label_map


def zoo_results(count: int, failed_every: int = 50, seed: int = 0) -> list[ModelResult]:
    """``count`` records: every ``failed_every``-th one failed, the others scored with a breakdown."""
    rng = np.random.default_rng(seed)
    results = []
    for index in range(count):
        architecture, source = ARCHITECTURES[index % len(ARCHITECTURES)], SOURCES[index % len(SOURCES)]
        name = f"model-{index:03d}-{architecture.lower()[:9]}-{source}"
        if failed_every and index % failed_every == failed_every - 1:
            results.append(ModelResult(model=name, source=source, architecture=architecture, status="failed",
                                       error=f"model {name!r}: checkpoint not found"))
            continue
        mean = -1.5 + rng.uniform(0, 1.2)
        scores = tuple(mean + rng.normal(0, 0.02, size=3))
        per_class, label_map = breakdown(rng, float(np.mean(scores)))
        results.append(ModelResult(model=name, source=source, architecture=architecture, scores=scores,
                                   n_source=1000, n_target=1000, estimator=ESTIMATOR, per_class=per_class,
                                   label_map=label_map))
    return results
