"""Segmentation datasets behind one interface: Cityscapes, BDD100K, GTA5 and folder layouts, local or on S3.

``open_dataset(spec)`` lists the files of a spec and loads pixels lazily; ``synth`` writes the procedural
multi-domain benchmark in the Cityscapes layout, which is the data nobody has to download.
"""

from otce_ray.datasets.dataset import Item, SegmentationDataset, SkippedFile, open_dataset, open_datasets
from otce_ray.datasets.errors import DatasetError
from otce_ray.datasets.layouts import class_names
from otce_ray.datasets.spec import FORMATS, dataset_fingerprint

__all__ = [
    "FORMATS",
    "DatasetError",
    "Item",
    "SegmentationDataset",
    "SkippedFile",
    "class_names",
    "dataset_fingerprint",
    "open_dataset",
    "open_datasets",
]
