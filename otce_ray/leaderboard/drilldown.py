"""The leaderboard page's drill-down data: each model's per-class breakdown and label map (``explain.breakdown``,
kept in its result record), and which scored model explains each target class best.

Records written before the breakdown existed have none, and are shown without one.
Contribution per pixel of the class (contribution / share, the mean -log P(yt | ys) over its pixels) compares models
on one class whatever its share: lower means the source's labels tell that class apart better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from otce_ray.leaderboard.results import ModelResult

ClassNames = Mapping[int, str]
DIGITS = 4  # significant digits kept in the page's data


def class_label(class_id: Any, names: ClassNames | None) -> str:
    """A class's name where one is known (Cityscapes train ids, the benchmark's classes), else its id."""
    try:
        return (names or {}).get(int(class_id), str(class_id))
    except (TypeError, ValueError):
        return str(class_id)


def _round(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return float(f"{number:.{DIGITS}g}") if number == number else None  # NaN (never equal to itself): None


def model_details(results: Iterable[ModelResult], names: ClassNames | None = None) -> dict[str, dict[str, Any]]:
    """model -> ``{"classes": [[id, name, share, contribution], ...], "label_map": {"source": [[id, name], ...],
    "target": [...], "p": [[...], ...]} or None}``, for every record that has a breakdown (JSON-ready)."""
    details = {}
    for result in results:
        per_class, label_map = result.per_class, result.label_map
        if not per_class and not label_map:
            continue
        classes = [[int(cid) if str(cid).lstrip("-").isdigit() else str(cid), class_label(cid, names),
                    _round(entry.get("share")), _round(entry.get("contribution"))]
                   for cid, entry in sorted(per_class.items(), key=lambda item: _sort_key(item[0]))]
        details[result.model] = {"classes": classes, "label_map": _label_map(label_map, names)}
    return details


def _sort_key(class_id: Any) -> tuple[int, Any]:
    text = str(class_id)
    return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)


def _label_map(label_map: Mapping[str, Any], names: ClassNames | None) -> dict[str, Any] | None:
    matrix = label_map.get("p_target_given_source")
    if not matrix:
        return None
    return {"source": [[cid, class_label(cid, names)] for cid in label_map.get("source_classes", [])],
            "target": [[cid, class_label(cid, names)] for cid in label_map.get("target_classes", [])],
            "p": [[_round(value) for value in row] for row in matrix]}


@dataclass(frozen=True)
class BestSource:
    """The scored model with the lowest contribution per pixel for one target class, and the runner-up."""

    class_id: str
    class_name: str
    share: float
    model: str
    contribution: float
    per_pixel: float
    runner_up: str | None
    runner_up_per_pixel: float | None


def best_sources(results: Iterable[ModelResult], names: ClassNames | None = None) -> list[BestSource]:
    """One row per target class any scored record breaks down, in class order (classes without pixels left out)."""
    candidates: dict[str, list[tuple[float, str, float, float]]] = {}
    for result in results:
        if result.status != "ok":
            continue
        for cid, entry in result.per_class.items():
            share, contribution = _round(entry.get("share")), _round(entry.get("contribution"))
            if share and contribution is not None:
                candidates.setdefault(str(cid), []).append(
                    (contribution / share, result.model, share, contribution))
    rows = []
    for cid in sorted(candidates, key=_sort_key):
        ranked = sorted(candidates[cid])
        per_pixel, model, share, contribution = ranked[0]
        runner_up = ranked[1] if len(ranked) > 1 else None
        rows.append(BestSource(cid, class_label(cid, names), share, model, contribution, per_pixel,
                               runner_up[1] if runner_up else None, runner_up[0] if runner_up else None))
    return rows
