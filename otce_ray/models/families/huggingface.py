"""Hugging Face Transformers semantic-segmentation models (``AutoModelForSemanticSegmentation``).

``path`` is a ``save_pretrained`` folder (config.json plus safetensors weights), local or on S3, loaded with
``local_files_only`` so a worker never reaches for the network; or ``hf://org/name[@revision]``, fetched from the Hub
by each worker (only where the cluster can reach it). Logits are the model's own ``logits`` output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from torch import nn

from otce_ray import fs
from otce_ray.models.errors import ModelError

if TYPE_CHECKING:
    from otce_ray.models.spec import ModelSpec

HUB = "hf://"

# model_type -> the module whose output is the feature map its classifier reads (checked in the tests: the map has
# the classifier's input channels). Dropout layers are the identity at inference: their output is that map.
FEATURE_LAYERS = {
    "segformer": "decode_head.dropout",  # the all-MLP decoder's fused map
    "upernet": "decode_head.fpn_bottleneck",  # UPerNet's fused FPN map
    "beit": "decode_head.fpn_bottleneck",  # BEiT's UPerNet head
    "data2vec-vision": "decode_head.fpn_bottleneck",  # the same head as BEiT
    "dpt": "head.head.3",  # the head's conv-bn-relu map, before its 1x1 classifier
    "mobilenet_v2": "segmentation_head.dropout",  # the DeepLabV3 head's projected ASPP map
    "mobilevit": "segmentation_head.dropout",
    "mobilevitv2": "segmentation_head.dropout",
}


def hub_reference(uri: str) -> tuple[str, str | None]:
    """``hf://org/name@revision`` -> (``org/name``, ``revision`` or None)."""
    repo, _, revision = uri[len(HUB):].partition("@")
    return repo, revision or None


def build(spec: ModelSpec) -> nn.Module:
    from transformers import AutoModelForSemanticSegmentation
    from transformers.utils import logging

    logging.disable_progress_bar()  # a worker's log is no terminal: no per-load bars in it

    if spec.path.startswith(HUB):
        repo, revision = hub_reference(spec.path)
        return AutoModelForSemanticSegmentation.from_pretrained(repo, revision=revision)
    with local_folder(spec.path) as folder:
        return AutoModelForSemanticSegmentation.from_pretrained(folder, local_files_only=True)


@contextlib.contextmanager
def local_folder(uri: str) -> Iterator[str]:
    """A local folder holding the files of ``uri``: a local folder as it is; an S3 prefix as links to this node's
    cached copies of its files (``fs.local_copy``: each fetched once per node), under their own relative names."""
    if not fs.is_s3(uri):
        yield fs.resolve(uri)[1]
        return
    names = fs.list_files(uri)
    links = tempfile.mkdtemp(prefix="otce-hf-")
    try:
        for name in names:
            target = os.path.join(links, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(fs.local_copy(fs.join(uri, name)), target)
        yield links
    finally:
        shutil.rmtree(links, ignore_errors=True)


def default_feature_layer(spec: ModelSpec, module: nn.Module) -> str:
    model_type = module.config.model_type
    if model_type not in FEATURE_LAYERS:
        raise ModelError(spec.name, f"no default feature layer for Hugging Face model_type {model_type!r} (known: "
                                    f"{', '.join(sorted(FEATURE_LAYERS))}): set feature_layer")
    return FEATURE_LAYERS[model_type]


def hub_commit(uri: str) -> str:
    """The commit a Hub reference points at now (the revision's files are fingerprinted by it)."""
    from huggingface_hub import HfApi

    repo, revision = hub_reference(uri)
    return HfApi().model_info(repo, revision=revision).sha


def from_config(config: Mapping[str, Any], preprocessor: Mapping[str, Any] | None) -> dict[str, Any] | str:
    """The spec fields of a save_pretrained folder from its config.json (and the mean/std of its
    preprocessor_config.json, which the model was trained with), or why it is not a model this format runs."""
    model_type = config.get("model_type")
    if model_type not in FEATURE_LAYERS:
        return (f"config.json model_type {model_type!r} is not a semantic-segmentation model with a known feature "
                f"layer (known: {', '.join(sorted(FEATURE_LAYERS))}); for another one, write its entry by hand "
                "with feature_layer")
    architectures = config.get("architectures") or [model_type]
    fields: dict[str, Any] = {"architecture": str(architectures[0])}
    for key, ours in (("image_mean", "mean"), ("image_std", "std")):
        value = (preprocessor or {}).get(key)
        if isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
            fields[ours] = [float(v) for v in value]
    return fields
