"""Sinkhorn backends by name: what ``OTCESettings.backend`` chooses from, and how ``auto`` picks one.

A backend solves one entropic OT problem between two centred, scaled pixel sets and returns the label joint of its
plan (a ``SinkhornSolution``), never the n x m plan itself. ``torch_tiles`` is the engine's own loop
(``otce_ray.scoring.sinkhorn``) over streamed torch tiles: it runs wherever torch does. ``flash_sinkhorn`` is the same
loop over FlashSinkhorn's fused Triton kernels (``otce_ray.scoring.backends.flash_sinkhorn``): CUDA only, with the
optional ``flash-sinkhorn`` package; ``auto`` prefers it there. A backend that needs more
(a card, a library) says why it cannot run on a device instead of being replaced silently: an explicit choice that
cannot run is an error, and ``auto`` takes the first backend of ``BACKENDS`` (their order of preference) that can.
A new backend is one module and one line in ``BACKENDS``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from otce_ray.scoring.backends import flash_sinkhorn
from otce_ray.scoring.backends.torch_tiles import TorchTiles
from otce_ray.scoring.sinkhorn import SinkhornSolution, solve_sinkhorn

AUTO = "auto"
# (x, y, source_labels, target_labels, source_classes, target_classes, eps, *, tolerance, max_iterations)
Solve = Callable[..., SinkhornSolution]


@dataclass(frozen=True)
class Backend:
    """A named way to solve: ``solve`` has ``solve_sinkhorn``'s signature less ``backend``; ``unavailable`` says why it
    cannot run on a device here (None: it can)."""

    name: str
    solve: Solve
    unavailable: Callable[[torch.device], "str | None"]


def _runs_anywhere(device: torch.device) -> str | None:
    return None


BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (
    Backend("flash_sinkhorn", flash_sinkhorn.solve, flash_sinkhorn.unavailable),
    Backend("torch_tiles", functools.partial(solve_sinkhorn, backend=TorchTiles), _runs_anywhere),
)}


def resolve_backend(name: str | None, device: torch.device) -> Backend:
    """The backend ``name`` (``auto`` or None: the first of ``BACKENDS`` that runs on ``device``); a ValueError when
    the one asked for cannot run there, saying why."""
    if name in (None, AUTO):
        return next(backend for backend in BACKENDS.values() if backend.unavailable(device) is None)
    if name not in BACKENDS:
        raise ValueError(f"backend: unknown backend {name!r} (expected {AUTO} or one of {', '.join(BACKENDS)})")
    reason = BACKENDS[name].unavailable(device)
    if reason:
        raise ValueError(f"backend: {name!r} cannot run on {device}: {reason}")
    return BACKENDS[name]
