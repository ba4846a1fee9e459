"""Anderson acceleration (type II) of a fixed-point iteration g -> G(g), with the safeguards Sinkhorn needs."""

from __future__ import annotations

import math

import torch


class Anderson:
    """Extrapolates the iterates of g -> G(g) from the last MEMORY of them and their residuals G(g) - g.

    At small eps Sinkhorn crawls along a few slow directions (mass drifting between clusters of points: the residual
    hardly changes from one iteration to the next). Mixing the last MEMORY iterates by least squares on their
    residuals jumps along those directions. The jump is scaled down until no coordinate moves by more than TRUST x eps
    (the linear model behind it holds only near the iterates; moving a potential by eps scales plan entries by e), and
    the history restarts when the error rises RESTART-fold above the best seen. Works in float64 whatever the dtype of
    the residuals: their differences are what the least squares fits.
    """

    MEMORY = 5
    TRUST = 3.0
    RESTART = 10.0
    RIDGE = 1e-10  # Tikhonov term of the least squares, relative to the residual differences' mean square

    def __init__(self) -> None:
        self.iterates: list[torch.Tensor] = []
        self.residuals: list[torch.Tensor] = []
        self.best = math.inf

    def _forget(self) -> None:
        self.iterates.clear()
        self.residuals.clear()

    def step(self, g: torch.Tensor, residual: torch.Tensor, error: float, eps: float) -> torch.Tensor:
        """The next g (float64), given the current one, its residual G(g) - g and the error of the plan it gives."""
        if error > self.RESTART * self.best:
            self._forget()
        self.best = min(self.best, error)
        g, residual = g.double(), residual.double()
        plain = g + residual
        self.iterates.append(plain)
        self.residuals.append(residual)
        if len(self.residuals) > self.MEMORY + 1:
            del self.iterates[0], self.residuals[0]
        if len(self.residuals) < 2:
            return plain
        d_res = torch.stack([b - a for a, b in zip(self.residuals, self.residuals[1:])], 1)
        d_it = torch.stack([b - a for a, b in zip(self.iterates, self.iterates[1:])], 1)
        gram = d_res.T @ d_res
        ridge = self.RIDGE * float(gram.diagonal().mean())
        if not ridge > 0:
            return plain
        gram.diagonal().add_(ridge)
        # A (MEMORY x MEMORY) system: solved on the CPU, where a GPU would only add a launch and a sync.
        weights = torch.linalg.solve(gram.cpu(), (d_res.T @ residual).cpu()).to(d_it.device)
        jump = d_it @ weights
        largest = float(jump.abs().max())
        if not math.isfinite(largest):
            self._forget()
            return plain
        if largest > self.TRUST * eps:
            jump *= self.TRUST * eps / largest
        return plain - jump
