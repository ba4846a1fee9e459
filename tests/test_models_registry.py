"""One registry of model formats: every format is a ``Family`` of ``FAMILIES``, the model spec is derived from their
declarations, and the fingerprints and code identities recorded results are keyed by are what they were before the
registry (a changed one would re-extract and rescore every model of its format)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest
from zoo_cases import require

from otce_ray.models import FAMILIES, ModelSpec
from otce_ray.models.identity import model_identity
from otce_ray.models.spec import MODEL, MODEL_FORMATS

SOURCE = {"name": "gta", "format": "gta5", "root": "/data/gta5"}


def test_every_format_is_one_family_and_the_spec_is_derived_from_them():
    assert MODEL_FORMATS == tuple(FAMILIES) == ("torchscript", "python", "builtin", "huggingface", "torchvision",
                                                "smp")
    assert all(MODEL.formats[fmt] is family.fields for fmt, family in FAMILIES.items())


@pytest.mark.parametrize(("entry", "fingerprint"), [
    ({"name": "t", "format": "torchscript", "path": "/zoo/t.pt", "source": SOURCE}, "0df70fc62f85f78b"),
    ({"name": "p", "format": "python", "entrypoint": "zoo.nets:build", "kwargs": {"w": 8}, "checkpoint": "/zoo/p.pt",
      "feature_layer": "head", "source": SOURCE}, "d782896b8b4aa038"),
    ({"name": "b", "format": "builtin", "architecture": "unet", "num_classes": 5, "init_seed": 2, "source": SOURCE},
     "777e2368571883c2"),
    ({"name": "h", "format": "huggingface", "path": "hf://nvidia/segformer-b0@main", "mean": [0.5, 0.5, 0.5]},
     "ad0f7a1c9ecf13c3"),
    ({"name": "tv", "format": "torchvision", "architecture": "fcn_resnet50", "num_classes": 19,
      "checkpoint": "s3://zoo/fcn.pth", "size": [256, 512]}, "2f9ac11cb2a9114c"),
    ({"name": "s", "format": "smp", "architecture": "Unet", "encoder": "resnet18", "autocast": False},
     "1cdf8988246805e1"),
])
def test_spec_fingerprints_are_those_results_are_recorded_under(entry, fingerprint):
    assert ModelSpec.from_dict(entry).fingerprint() == fingerprint


def _code(entry: dict) -> str | None:
    return model_identity(ModelSpec.from_dict(entry))["code"]


def test_code_identities_of_the_code_formats(tmp_path, monkeypatch):
    """Editing ``models/architectures.py`` changes the built-in identity on purpose: update its pin then."""
    package = tmp_path / "snapzoo"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("X = 1\n")
    (package / "sub" / "nets.py").write_text("def build():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _code({"name": "p", "format": "python", "entrypoint": "snapzoo.sub.nets:build"}) == (
        "sha256:cc5f822c20e1ede46119f280d05fa0e865f2f45bad7f28eb3df2a6742ae22aae")
    assert _code({"name": "p", "format": "python", "entrypoint": "yaml:safe_load"}) == f"PyYAML=={version('PyYAML')}"
    assert _code({"name": "b", "format": "builtin", "architecture": "unet"}) == (
        "sha256:7eb26cd22bd8f8ccf463bf4444b6debec2dda2357be9bb935eae5f9551454ad3")
    (tmp_path / "t.pt").write_bytes(b"abc")
    assert model_identity(ModelSpec.from_dict({"name": "t", "format": "torchscript", "path": str(tmp_path / "t.pt")}
                                              )) == {"files": {str(tmp_path / "t.pt"): "sha256:ba7816bf8f01cfea41414"
                                                               "0de5dae2223b00361a396177a9cb410ff61f20015ad"},
                                                     "code": None}


@pytest.mark.parametrize(("entry", "libraries", "adapter"), [
    ({"format": "huggingface", "path": "hf://nvidia/segformer-b0"}, ("transformers",), "e3e82cc1f9aea1f1"),
    ({"format": "torchvision", "architecture": "fcn_resnet50"}, ("torchvision",), "232a4ae65bcd9288"),
    ({"format": "smp", "architecture": "FPN", "encoder": "resnet18"}, ("segmentation-models-pytorch", "timm"),
     "76d2893c282c8ce7"),
])
def test_native_code_identities_are_the_libraries_and_the_adapter_source(entry, libraries, adapter):
    """The adapter modules' sources are hashed: editing one re-extracts every model of its family, so their pins
    change only on purpose (the family records live in ``families/native.py`` for that reason)."""
    require("transformers", "torchvision", "segmentation_models_pytorch")
    spec = ModelSpec.from_dict({"name": "m", **entry})
    expected = " ".join([f"{library}=={version(library)}" for library in libraries] + [f"adapter:{adapter}"])
    assert FAMILIES[spec.format].code_identity(spec) == expected


def test_configs_and_models_import_without_the_zoo_libraries():
    code = ("import sys, otce_ray.config, otce_ray.models, otce_ray.models.identity; "
            "print([m for m in ('transformers', 'torchvision', 'segmentation_models_pytorch', 'timm') "
            "if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout.strip() == "[]"
