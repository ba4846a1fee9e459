"""The native formats (huggingface, torchvision, smp): each loads from the files its ecosystem saves, local or S3;
features come from the family's default layer, the map its classifier reads (as many channels as the classifier
takes); logits are the model's own output; fingerprints see every file and the library's version; failures name
the model and the cause."""

from __future__ import annotations

import hashlib
import json

import boto3
import numpy as np
import pytest
import torch

from otce_ray.config import ConfigError, parse_config
from otce_ray.models import ModelError, ModelSpec, build_module, feature_layer_name, load_model
from otce_ray.models.families import FAMILIES
from otce_ray.models.families.huggingface import FEATURE_LAYERS
from otce_ray.models.families.smp_seg import ARCHITECTURES as SMP_ARCHITECTURES
from otce_ray.models.families.torchvision_seg import ARCHITECTURES as TV_ARCHITECTURES, CLASSIFIERS
from otce_ray.models.identity import model_identity
from zoo_cases import require, save_huggingface, save_smp_pretrained, save_smp_state, save_torchvision, smp_model

IMAGES = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)


def _classifier_in_channels(module: torch.nn.Module, name: str) -> int:
    layer = module.get_submodule(name)
    conv = layer if isinstance(layer, torch.nn.Conv2d) else next(
        m for m in layer.modules() if isinstance(m, torch.nn.Conv2d))
    return conv.in_channels


@pytest.mark.parametrize("kind", sorted(FEATURE_LAYERS))
def test_huggingface_features_are_the_map_its_classifier_reads(tmp_path, kind):
    require("transformers")
    folder = save_huggingface(tmp_path / kind, kind, num_labels=5)
    spec = {"name": "m", "format": "huggingface", "path": str(folder), "size": [64, 64]}  # DPT takes squares
    model = load_model(spec)
    out = model(IMAGES)
    classifier = {"dpt": "head.head.4"}.get(kind, "decode_head.classifier" if "decode_head" in FEATURE_LAYERS[kind]
                                            else "segmentation_head.classifier")
    assert model.feature_layer_name == FEATURE_LAYERS[kind]
    assert out.features.shape[:2] == (2, _classifier_in_channels(model._module, classifier))
    assert out.logits.shape[:2] == (2, 5)


@pytest.mark.parametrize("architecture", sorted(TV_ARCHITECTURES))
def test_torchvision_features_are_the_map_its_classifier_reads(architecture):
    require("torchvision")
    spec = ModelSpec.from_dict({"name": "m", "format": "torchvision", "architecture": architecture, "num_classes": 4})
    model = load_model(spec)
    out = model(IMAGES[:1])
    classifier = model._module.get_submodule(CLASSIFIERS[architecture])
    assert out.features.shape[1] == classifier.in_channels
    assert out.logits.shape == (1, 4, 64, 64)  # torchvision's ``out``, upsampled to the input


@pytest.mark.parametrize("architecture", SMP_ARCHITECTURES)
def test_smp_features_are_the_decoder_map_its_head_reads(architecture):
    require("segmentation_models_pytorch")
    encoder = "tu-test_vit" if architecture == "DPT" else "resnet18"
    spec = {"name": "m", "format": "smp", "architecture": architecture, "encoder": encoder, "num_classes": 3,
            "size": [128, 128]}
    model = load_model(spec)
    out = model(IMAGES[:1])
    head = next(m for m in model._module.segmentation_head.modules() if isinstance(m, torch.nn.Conv2d))
    assert model.feature_layer_name == "decoder"
    assert out.features.shape[1] == head.in_channels
    assert out.logits.shape == (1, 3, 128, 128)


def test_a_checkpoint_sets_the_weights_and_an_unseeded_model_is_the_same_everywhere(tmp_path):
    require("torchvision", "segmentation_models_pytorch")
    checkpoint = save_torchvision(tmp_path / "lraspp.pth", "lraspp_mobilenet_v3_large", num_classes=4, seed=7)
    spec = {"name": "m", "format": "torchvision", "architecture": "lraspp_mobilenet_v3_large", "num_classes": 4}
    with_weights = {**spec, "checkpoint": str(checkpoint)}
    trained, again = load_model(with_weights), load_model(with_weights)
    untrained = load_model(spec)
    assert torch.equal(trained(IMAGES).features, again(IMAGES).features)
    assert not torch.equal(trained(IMAGES).features, untrained(IMAGES).features)
    assert torch.equal(untrained(IMAGES).features, load_model(spec)(IMAGES).features)  # seeded by init_seed
    saved = torch.load(checkpoint, weights_only=True)
    built = build_module(with_weights)
    assert all(torch.equal(built.state_dict()[key], value) for key, value in saved.items())

    folder = save_smp_pretrained(tmp_path / "unet", "Unet", "resnet18", num_classes=3, seed=5, encoder_depth=3,
                                 decoder_channels=(16, 8, 8))
    smp_spec = {"name": "s", "format": "smp", "architecture": "Unet", "encoder": "resnet18", "num_classes": 3,
                "checkpoint": str(folder / "model.safetensors"),
                "kwargs": {"encoder_depth": 3, "decoder_channels": [16, 8, 8]}}
    reference = smp_model("Unet", "resnet18", 3, seed=5, encoder_depth=3, decoder_channels=(16, 8, 8)).eval()
    x = torch.from_numpy(IMAGES).permute(0, 3, 1, 2).float().div(255)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(x)
    assert torch.allclose(load_model(smp_spec)(IMAGES).logits, expected, atol=1e-5)


def test_torchvision_checkpoint_with_its_training_only_auxiliary_head_loads(tmp_path):
    require("torchvision")
    checkpoint = save_torchvision(tmp_path / "dl.pth", "deeplabv3_mobilenet_v3_large", num_classes=4, aux=True)
    model = load_model({"name": "m", "format": "torchvision", "architecture": "deeplabv3_mobilenet_v3_large",
                        "num_classes": 4, "checkpoint": str(checkpoint)})
    assert model(IMAGES[:1]).features.shape[1] == 256


def test_feature_layer_overrides_the_default(tmp_path):
    require("torchvision")
    spec = ModelSpec.from_dict({"name": "m", "format": "torchvision", "architecture": "deeplabv3_mobilenet_v3_large",
                                "num_classes": 4, "feature_layer": "backbone"})
    model = load_model(spec)
    assert feature_layer_name(spec, model._module) == "backbone"
    with pytest.raises(ModelError, match="must run once per forward and return a tensor"):
        model(IMAGES[:1])  # torchvision's backbone returns a dict of maps: the layer named must give one


def test_huggingface_folder_on_s3_loads_from_this_nodes_cache(tmp_path, s3_bucket, monkeypatch):
    require("transformers")
    monkeypatch.setenv("OTCE_RAY_CACHE_DIR", str(tmp_path / "cache"))
    folder = save_huggingface(tmp_path / "seg", "segformer")
    client = boto3.client("s3")
    for file in folder.iterdir():
        client.upload_file(str(file), s3_bucket, f"zoo/seg/{file.name}")
    local = load_model({"name": "m", "format": "huggingface", "path": str(folder)})
    remote = load_model({"name": "m", "format": "huggingface", "path": f"s3://{s3_bucket}/zoo/seg"})
    assert torch.equal(local(IMAGES).features, remote(IMAGES).features)
    identity = model_identity(ModelSpec.from_dict({"name": "m", "format": "huggingface",
                                                   "path": f"s3://{s3_bucket}/zoo/seg"}))
    assert sorted(identity["files"]) == sorted(f"s3://{s3_bucket}/zoo/seg/{f.name}" for f in folder.iterdir())


def test_fingerprint_sees_every_file_of_a_folder_and_the_library_version(tmp_path):
    require("transformers", "torchvision", "segmentation_models_pytorch")
    from importlib.metadata import version

    folder = save_huggingface(tmp_path / "seg", "segformer")
    spec = ModelSpec.from_dict({"name": "m", "format": "huggingface", "path": str(folder)})
    before = model_identity(spec)
    assert set(before["files"]) == {str(folder / "config.json"), str(folder / "model.safetensors")}
    assert before["code"].startswith(f"transformers=={version('transformers')} adapter:")
    (folder / "config.json").write_text((folder / "config.json").read_text().replace("{", '{"note": 1,', 1))
    assert model_identity(spec)["files"][str(folder / "config.json")] != before["files"][str(folder / "config.json")]

    tv = ModelSpec.from_dict({"name": "t", "format": "torchvision", "architecture": "fcn_resnet50"})
    assert model_identity(tv)["code"].startswith(f"torchvision=={version('torchvision')} adapter:")
    sm = ModelSpec.from_dict({"name": "s", "format": "smp", "architecture": "FPN", "encoder": "resnet18"})
    expected = f"segmentation-models-pytorch=={version('segmentation-models-pytorch')} timm=={version('timm')} adapter:"
    assert model_identity(sm)["code"].startswith(expected)


def test_spec_fingerprints_of_the_older_formats_are_unchanged_by_the_new_fields():
    """``encoder`` and ``prior`` came later: an unset encoder and any prior stay out of the fingerprint, so recorded
    results keep matching."""
    spec = ModelSpec.from_dict({"name": "u", "format": "builtin", "architecture": "unet"})
    before = {k: v for k, v in spec.to_dict().items() if k not in ("name", "encoder", "prior")}
    assert spec.fingerprint() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    believed = ModelSpec.from_dict({"name": "u", "format": "builtin", "architecture": "unet", "prior": 71.5})
    assert believed.fingerprint() == spec.fingerprint()
    smp = {"name": "s", "format": "smp", "architecture": "Unet", "encoder": "resnet18"}
    assert ModelSpec.from_dict(smp).fingerprint() != ModelSpec.from_dict({**smp, "encoder": "resnet34"}).fingerprint()


@pytest.mark.parametrize(("entry", "problem"), [
    ({"format": "smp", "architecture": "Unet"}, "models[0].encoder: missing required field"),
    ({"format": "smp", "architecture": "unet", "encoder": "resnet18"},
     "models[0].architecture: expected one of Unet, UnetPlusPlus"),
    ({"format": "torchvision", "architecture": "deeplabv3_resnet5"}, "(did you mean 'deeplabv3_resnet50'?)"),
    ({"format": "huggingface", "path": "hf://nvidia segformer"}, "malformed Hub model 'hf://nvidia segformer'"),
    ({"format": "huggingface", "path": "no/such/folder"}, "no such directory"),
    ({"format": "torchvision", "architecture": "fcn_resnet50", "encoder": "resnet18"},
     "models[0].encoder: unknown key"),
])
def test_config_checks_the_native_formats_keys(tmp_path, entry, problem):
    raw = {"store": "s", "output": "o", "target": {"name": "t", "format": "gta5", "root": str(tmp_path)},
           "models": [{"name": "m", "source": {"name": "t", "format": "gta5", "root": str(tmp_path)}, **entry}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=str(tmp_path))
    assert problem in str(caught.value)


def test_a_hub_model_is_accepted_by_the_config_and_fails_alone_where_the_hub_is_unreachable(tmp_path, monkeypatch):
    require("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    raw = {"store": "s", "output": "o", "target": {"name": "t", "format": "gta5", "root": str(tmp_path)},
           "models": [{"name": "m", "format": "huggingface", "path": "hf://nvidia/segformer-b0@main",
                       "source": {"name": "t", "format": "gta5", "root": str(tmp_path)}}]}
    parse_config(raw, base_dir=str(tmp_path))
    with pytest.raises(ModelError, match="model 'm': cannot reach hf://nvidia/segformer-b0@main"):
        model_identity(ModelSpec.from_dict(raw["models"][0]))


def test_failures_name_the_model_and_the_cause(tmp_path):
    require("transformers", "torchvision", "segmentation_models_pytorch")
    checkpoint = save_torchvision(tmp_path / "lraspp.pth", "lraspp_mobilenet_v3_large", num_classes=4)
    with pytest.raises(ModelError, match=r"model 'm': checkpoint .* does not match the architecture: .*size mismatch"):
        load_model({"name": "m", "format": "torchvision", "architecture": "lraspp_mobilenet_v3_large",
                    "num_classes": 7, "checkpoint": str(checkpoint)})
    with pytest.raises(ModelError, match=r"model 's': smp model 'Unet' \(no_such_encoder\) cannot be built"):
        load_model({"name": "s", "format": "smp", "architecture": "Unet", "encoder": "no_such_encoder"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="model 'h': huggingface model .* cannot be built"):
        load_model({"name": "h", "format": "huggingface", "path": str(tmp_path / "empty")})
    save_huggingface(tmp_path / "dpt", "dpt")
    with pytest.raises(ModelError, match="model 'd': forward failed"):  # DPT wants square inputs: say so, per model
        load_model({"name": "d", "format": "huggingface", "path": str(tmp_path / "dpt")})(IMAGES[:, :32])
    state = tmp_path / "state.pt"
    save_smp_state(state, "FPN", "resnet18")
    with pytest.raises(ModelError, match="holds no state dict|does not match"):
        load_model({"name": "x", "format": "torchvision", "architecture": "fcn_resnet50", "checkpoint": str(state)})


def test_every_family_is_a_model_format_of_the_schema():
    from otce_ray.models.spec import MODEL_FORMATS

    assert set(FAMILIES) <= set(MODEL_FORMATS)
