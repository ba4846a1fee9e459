"""Which pixels to keep, and their feature vectors: pure functions, no I/O.

Pixels are drawn at label resolution (labels are never resized) and the feature map is sampled bilinearly at the
same relative position, so features and labels stay aligned whatever the network's output stride or input resize.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

IGNORE_LABEL = 255


def pixel_rng(seed: int, image_id: str) -> np.random.Generator:
    """A generator seeded by (seed, image_id): the same pixels on every rerun, worker and shard layout."""
    digest = hashlib.blake2b(f"{int(seed)}\0{image_id}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def sample_pixels(label: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` distinct non-ignored pixels uniformly; all of them when fewer exist.

    Returns ``(rows, cols)`` in row-major order (sorted), so the draw is independent of how it is stored.
    """
    if label.ndim != 2:
        raise ValueError(f"label must be (H, W), got shape {label.shape}")
    valid = np.flatnonzero(label.reshape(-1) != IGNORE_LABEL)
    if valid.size > count:
        valid = np.sort(rng.choice(valid, size=count, replace=False))
    rows, cols = np.divmod(valid, label.shape[1])
    return rows.astype(np.int32), cols.astype(np.int32)


def sample_map(
    maps: torch.Tensor, rows: np.ndarray, cols: np.ndarray, label_shape: tuple[int, int]
) -> torch.Tensor:
    """Bilinearly sample a (d, h, w) map at the centres of label pixels ``(rows, cols)``; returns (n, d).

    Label pixel (r, c) of an (H, W) label covers the same fraction of the image as the point
    ((r + 0.5) * h / H - 0.5, (c + 0.5) * w / W - 0.5) of the map (half-pixel convention, ``align_corners=False``);
    positions within half a cell of the border take the border value.
    """
    height, width = label_shape
    grid_x = (2.0 * torch.as_tensor(cols, dtype=torch.float32) + 1.0) / width - 1.0
    grid_y = (2.0 * torch.as_tensor(rows, dtype=torch.float32) + 1.0) / height - 1.0
    grid = torch.stack([grid_x, grid_y], dim=-1).view(1, 1, -1, 2).to(maps.device)
    sampled = F.grid_sample(
        maps.unsqueeze(0).float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled.view(maps.shape[0], -1).t()
