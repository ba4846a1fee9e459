"""Transfer performance of a fine-tuned model on held-out target images, at label resolution.

The paper's Definition 1 measures transfer by the expected log-likelihood ``E[log p(y_t | x_t; theta_t)]`` of the
fine-tuned model on target test data; mIoU and pixel accuracy are reported beside it because they are what
segmentation users read. All three are pooled over every labelled pixel of every evaluation image (ignore id
255 excluded), so an image counts in proportion to its labelled pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from otce_ray.datasets.labels import IGNORE


def at_label_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) logits upsampled bilinearly to the label's (H, W); unchanged when they already match."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over the classes present in the labels or the predictions (rows: label, columns: prediction)."""
    confusion = confusion.double()
    hits = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - hits
    present = union > 0
    return float((hits[present] / union[present]).mean())


def pixel_accuracy(confusion: torch.Tensor) -> float:
    return float(confusion.diagonal().sum() / confusion.sum())


@dataclass
class Evaluation:
    """Accumulates a confusion matrix and the summed log-likelihood over batches of (logits, labels)."""

    num_classes: int

    def __post_init__(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self.log_likelihood_sum = 0.0
        self.pixels = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, C, h, w) at any resolution, ``labels`` (B, H, W) train ids with 255 ignored."""
        logits = at_label_size(logits.double(), tuple(labels.shape[-2:]))  # float32 is off by ~1e-3 relative near p=1
        valid = labels != IGNORE
        target = labels[valid].long()
        log_p = F.log_softmax(logits, dim=1).permute(0, 2, 3, 1)[valid]  # (pixels, C)
        self.log_likelihood_sum += float(log_p.gather(1, target[:, None]).sum())
        cells = target * self.num_classes + log_p.argmax(1)
        self.confusion += torch.bincount(cells.cpu(), minlength=self.num_classes**2).view_as(self.confusion)
        self.pixels += int(target.numel())

    def scores(self) -> dict[str, float]:
        """``miou``, ``pixel_accuracy`` and ``log_likelihood`` (mean natural log per labelled pixel)."""
        if self.pixels == 0:
            raise ValueError("the evaluation images have no labelled pixel (all 255)")
        return {
            "miou": mean_iou(self.confusion),
            "pixel_accuracy": pixel_accuracy(self.confusion),
            "log_likelihood": self.log_likelihood_sum / self.pixels,
        }
