"""Ground truth for the scores: few-shot fine-tuning of each source model on the target (paper, Definition 1).

``finetune_model`` is plain torch (one model, no Ray); ``ground_truth`` runs it as one Ray task per model of a run
config and writes ``ground_truth.csv``; ``split`` holds the leakage-free protocol (fine-tuning trains on exactly the
target images the scores saw and evaluates on others).
"""

from otce_ray.finetune.metrics import Evaluation, mean_iou, pixel_accuracy
from otce_ray.finetune.run import GROUND_TRUTH_FILE, finetune_each, ground_truth
from otce_ray.finetune.split import TargetSplit, split_target, training_target
from otce_ray.finetune.train import FineTuneRecord, FineTuneSettings, finetune_model, finetune_or_fail, fit_classifier

__all__ = [
    "GROUND_TRUTH_FILE",
    "Evaluation",
    "FineTuneRecord",
    "FineTuneSettings",
    "TargetSplit",
    "finetune_each",
    "finetune_model",
    "finetune_or_fail",
    "fit_classifier",
    "ground_truth",
    "mean_iou",
    "pixel_accuracy",
    "split_target",
    "training_target",
]
