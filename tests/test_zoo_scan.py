"""``otce-ray zoo scan``: every model of a mixed folder recognised by its files (local and S3), the manifest valid
as a models_file, and every other file listed with its reason, never guessed."""

from __future__ import annotations

import pickle

import boto3
import pytest
import torch
import yaml

from otce_ray.cli import main
from otce_ray.config import parse_config
from otce_ray.models import ModelSpec, build_architecture
from otce_ray.models.scan import manifest_yaml, scan_zoo
from zoo_cases import build_mixed_zoo, require, save_huggingface, save_torchvision

EXPECTED = {  # name -> (format, architecture, encoder)
    "huggingface-segformer-0": ("huggingface", "SegformerForSemanticSegmentation", None),
    "huggingface-segformer-wide-1": ("huggingface", "SegformerForSemanticSegmentation", None),
    "huggingface-upernet-2": ("huggingface", "UperNetForSemanticSegmentation", None),
    "huggingface-beit-3": ("huggingface", "BeitForSemanticSegmentation", None),
    "torchvision-lraspp_mobilenet_v3_large-0": ("torchvision", "lraspp_mobilenet_v3_large", None),
    "torchvision-lraspp_mobilenet_v3_large-1": ("torchvision", "lraspp_mobilenet_v3_large", None),
    "torchvision-deeplabv3_mobilenet_v3_large-2": ("torchvision", "deeplabv3_mobilenet_v3_large", None),
    "torchvision-deeplabv3_mobilenet_v3_large-3": ("torchvision", "deeplabv3_mobilenet_v3_large", None),
    "smp-unet-small": ("smp", "Unet", "mobilenet_v2"),
    "smp-deeplabv3plus": ("smp", "DeepLabV3Plus", "mobilenet_v2"),
    "smp-fpn": ("smp", "FPN", "resnet18"),
    "smp-linknet": ("smp", "Linknet", "resnet18"),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    require("transformers", "torchvision", "segmentation_models_pytorch")
    return build_mixed_zoo(tmp_path_factory.mktemp("zoo"))


def test_a_mixed_folder_is_recognised_model_by_model(zoo):
    scan = scan_zoo(str(zoo))
    found = {m.entry["name"]: (m.entry["format"], m.entry["architecture"], m.entry.get("encoder")) for m in scan.models}
    assert found == EXPECTED
    entries = {m.entry["name"]: m.entry for m in scan.models}
    assert all(entry.get("num_classes", 5) == 5 for entry in entries.values())
    assert entries["smp-unet-small"]["kwargs"]["decoder_channels"] == [32, 16, 8]
    assert entries["smp-unet-small"]["checkpoint"] == str(zoo / "smp" / "unet-small" / "model.safetensors")
    assert entries["huggingface-beit-3"]["path"] == str(zoo / "huggingface" / "beit-3")
    assert [(u.uri, u.reason) for u in scan.unrecognised] == [
        (str(zoo / "notes.txt"), "not a model file (extensions scanned: .pt, .pth, .ckpt, .bin, .safetensors)")]
    for entry in entries.values():  # each entry is a valid model spec as written
        ModelSpec.from_dict(entry)


def test_unknown_files_are_listed_with_the_reason(tmp_path):
    require("transformers", "torchvision", "segmentation_models_pytorch")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "bert" / "model.safetensors").write_bytes(b"")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    torch.save(build_architecture("unet", num_classes=3).state_dict(), tmp_path / "own_unet.pt")
    with open(tmp_path / "pickled.pt", "wb") as handle:
        pickle.dump({"optimizer": object.__new__(ModelSpec)}, handle)
    traced = torch.jit.trace(build_architecture("fcn8s", num_classes=3).eval(), torch.zeros(1, 3, 32, 64))
    torch.jit.save(traced, str(tmp_path / "scripted.pt"))
    scan = scan_zoo(str(tmp_path))
    assert [(m.entry["name"], m.entry["format"]) for m in scan.models] == [("scripted", "torchscript")]
    reasons = {u.uri.rsplit("/", 1)[1]: u.reason for u in scan.unrecognised}
    assert reasons["bert"].startswith("config.json model_type 'bert' is not a semantic-segmentation model")
    assert reasons["broken.pth"].startswith("not a weights-only PyTorch checkpoint")
    assert reasons["own_unet.pt"].startswith("a state dict whose keys match no torchvision or smp architecture "
                                             "(first keys: enc1.0.weight")
    assert reasons["pickled.pt"].startswith("not a weights-only PyTorch checkpoint")


def test_scan_of_an_s3_folder_writes_a_manifest_a_config_reads(tmp_path, s3_bucket, monkeypatch, capsys):
    require("transformers", "torchvision")
    monkeypatch.setenv("OTCE_RAY_CACHE_DIR", str(tmp_path / "cache"))
    local = tmp_path / "zoo"
    save_huggingface(local / "seg", "segformer")
    save_torchvision(local / "tv" / "lraspp.pth", "lraspp_mobilenet_v3_large")
    client = boto3.client("s3")
    for file in local.rglob("*"):
        if file.is_file():
            client.upload_file(str(file), s3_bucket, f"zoo/{file.relative_to(local)}")
    manifest = tmp_path / "models.yaml"
    source = "{name: alpha, format: gta5, root: " + str(tmp_path) + "}"
    assert main(["zoo", "scan", f"s3://{s3_bucket}/zoo", "--out", str(manifest), "--source", source]) == 0
    assert "2 models recognised under s3://" in capsys.readouterr().err
    text = manifest.read_text()
    assert "source: &source" in text and text.count("source: *source") == 1  # one source to edit
    entries = yaml.safe_load(text)
    assert [(e["name"], e["format"]) for e in entries] == [("seg", "huggingface"), ("tv-lraspp", "torchvision")]
    assert entries[0]["path"] == f"s3://{s3_bucket}/zoo/seg"
    assert entries[1]["checkpoint"] == f"s3://{s3_bucket}/zoo/tv/lraspp.pth"
    config = parse_config({"store": "s", "output": "o", "models_file": str(manifest),
                           "target": {"name": "beta", "format": "gta5", "root": str(tmp_path)}}, base_dir=str(tmp_path))
    assert [m["name"] for m in config.models] == ["seg", "tv-lraspp"]


def test_a_manifest_without_source_says_what_to_add(tmp_path):
    from otce_ray.models.scan import Recognised, Scan, Unrecognised

    scan = Scan("/zoo", [Recognised({"name": "a", "format": "torchscript", "path": "/zoo/a.pt"}, "TorchScript")],
                [Unrecognised("/zoo/b.txt", "not a model file")])
    text = manifest_yaml(scan)
    assert "Each entry needs `source:`" in text and "#   /zoo/b.txt: not a model file" in text
    assert yaml.safe_load(text) == [{"name": "a", "format": "torchscript", "path": "/zoo/a.pt"}]
