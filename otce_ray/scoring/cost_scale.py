"""The scale of the squared-Euclidean cost that eps is measured against.

Multiplying every feature by c multiplies every cost by c^2; measuring eps in units of a cost scale that moves the
same way makes the score independent of a model's feature units. The default is the median cost over a fixed,
evenly spaced subset of pairs: robust to a few far outliers (which dominate ``max``) and to heavy tails (which
inflate ``mean``), cheap (at most SUBSET^2 distances), and deterministic given the sampled pixels.
"""

from __future__ import annotations

import torch

COST_SCALES = ("median", "mean", "max", "none")
DEFAULT_COST_SCALE = "median"
SUBSET = 512


def _subset(points: torch.Tensor) -> torch.Tensor:
    if len(points) <= SUBSET:
        return points
    index = torch.linspace(0, len(points) - 1, SUBSET, device=points.device).round().long()
    return points[index]


def cost_scale(source: torch.Tensor, target: torch.Tensor, kind: str = DEFAULT_COST_SCALE) -> float:
    """Return the cost scale of two point clouds under the squared-Euclidean cost; 1.0 when every cost is zero.

    ``mean`` is exact over all pairs in O((n + m) d): mean|x - y|^2 = E|x|^2 + E|y|^2 - 2 E[x].E[y].
    ``max`` and ``median`` are taken on the evenly spaced subset. A ``median`` of zero (over half the pairs
    coincide) falls back to the exact mean, so the scale is zero only when all points coincide.
    """
    if kind not in COST_SCALES:
        raise ValueError(f"cost_scale: unknown cost scale {kind!r} (expected one of {', '.join(COST_SCALES)})")
    if kind == "none":
        return 1.0
    source64, target64 = source.double(), target.double()
    if kind in ("median", "max"):
        pairs = torch.cdist(_subset(source64), _subset(target64)).square()
        value = float(pairs.max() if kind == "max" else pairs.median())
        if value > 0:
            return value
    mean = (
        source64.square().sum(1).mean()
        + target64.square().sum(1).mean()
        - 2 * source64.mean(0).dot(target64.mean(0))
    )
    value = float(mean.clamp_min(0))
    return value if value > 1e-300 else 1.0


def normalise(source: torch.Tensor, target: torch.Tensor, kind: str = DEFAULT_COST_SCALE):
    """Centre both clouds on their joint mean and divide by sqrt(scale): the cost becomes cost / scale.

    The cost is translation invariant, and centring keeps |x|^2 + |y|^2 - 2 x.y free of cancellation. Returns
    float64 ``(source, target, scale)``.
    """
    source, target = source.double(), target.double()
    centre = torch.cat([source, target]).mean(0)
    source, target = source - centre, target - centre
    scale = cost_scale(source, target, kind)
    unit = scale**-0.5
    return source * unit, target * unit, scale
