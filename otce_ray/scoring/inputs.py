"""Validation of the estimator's inputs, one side's valid pixels (``PixelSet``) and the rows a repeat draws from them:
every bad input is a ValueError naming the argument."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from otce_ray.store.reader import choose_rows

class Rows(NamedTuple):
    """Rows of one side as a repeat draws them: features (n, d) and their label values (n,)."""

    features: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class PixelSet:
    """Valid pixels of one side: features (n, d) float and labels as contiguous class indices."""

    features: torch.Tensor
    classes: torch.Tensor  # int64 indices into ``class_values``
    class_values: np.ndarray  # the original label value of each class index

    def __len__(self) -> int:
        return len(self.classes)

    def sample(self, size: int, seed: int, *, with_logits: bool = False) -> Rows:
        """The rows ``choose_rows(len(self), size, seed)`` picks (all of them when ``size`` >= len), as a store's
        ``PixelSamples.sample`` picks them from a store of these pixels; a PixelSet holds no logits."""
        chosen = choose_rows(len(self), size, seed)
        rows = slice(None) if chosen is None else torch.from_numpy(chosen)
        return Rows(self.features[rows].cpu().numpy(), self.class_values[self.classes[rows].cpu().numpy()])


def _to_numpy(array: Any, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    try:
        return np.asarray(array)
    except Exception as error:  # noqa: BLE001 - any conversion failure is a bad argument
        raise ValueError(f"{name}: cannot be read as an array ({error})") from error


def pixel_set(features: Any, labels: Any, ignore_index: int | None, side: str) -> PixelSet:
    """Check one side's features and labels, drop ``ignore_index`` pixels, and index the classes."""
    feature_name, label_name = f"{side}_features", f"{side}_labels"
    feats = _to_numpy(features, feature_name)
    labs = _to_numpy(labels, label_name)
    if feats.ndim != 2:
        raise ValueError(f"{feature_name}: expected a 2-D array (pixels, dims), got shape {feats.shape}")
    if not np.issubdtype(feats.dtype, np.floating) and not np.issubdtype(feats.dtype, np.integer):
        raise ValueError(f"{feature_name}: expected a numeric array, got dtype {feats.dtype}")
    if labs.ndim != 1:
        raise ValueError(f"{label_name}: expected a 1-D array of labels, got shape {labs.shape}")
    if not np.issubdtype(labs.dtype, np.integer) or labs.dtype == np.bool_:
        raise ValueError(f"{label_name}: expected integer labels, got dtype {labs.dtype}")
    if len(labs) != len(feats):
        raise ValueError(f"{label_name}: has {len(labs)} labels but {feature_name} has {len(feats)} rows")
    keep = labs != ignore_index if ignore_index is not None else np.ones(len(labs), dtype=bool)
    if not keep.any():
        raise ValueError(f"{label_name}: no pixel left after dropping ignore_index={ignore_index}")
    feats, labs = feats[keep], labs[keep]
    if not np.isfinite(feats).all():
        bad = int((~np.isfinite(feats)).any(axis=1).sum())
        raise ValueError(f"{feature_name}: {bad} pixel(s) have NaN or Inf features")
    class_values, classes = np.unique(labs, return_inverse=True)
    return PixelSet(
        features=torch.from_numpy(np.ascontiguousarray(feats)),
        classes=torch.from_numpy(classes.astype(np.int64)),
        class_values=class_values,
    )


def standardised(pixels: PixelSet) -> PixelSet:
    """The same pixels with each feature dimension z-scored over this side alone (float64; a constant one becomes 0).

    On by default in the estimator, off in the paper (which couples raw features): a global appearance change of one
    domain (dusk, fog, another sensor) moves and stretches that side's whole feature cloud, and the coupling then
    matches offsets rather than structure. docs/validation.md measured it on held-out benchmarks.
    """
    features = pixels.features.double()
    centred = features - features.mean(0)
    spread = centred.square().mean(0).sqrt()
    return PixelSet(centred / torch.where(spread > 0, spread, torch.ones_like(spread)), pixels.classes,
                    pixels.class_values)


def check_pair(source: PixelSet, target: PixelSet) -> None:
    ds, dt = source.features.shape[1], target.features.shape[1]
    if ds != dt:
        raise ValueError(f"target_features: dimension {dt} differs from source_features dimension {ds}")


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' takes CUDA when present; an explicit device must exist here."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"device: unknown device {name!r} (expected 'auto', 'cpu' or 'cuda[:N]')") from error
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device: unsupported device {name!r} (expected 'auto', 'cpu' or 'cuda[:N]')")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available on this machine")
    return resolved
