"""Model specs and loading: every format, the built-in zoo nets, and each bad input named with model and cause."""

from __future__ import annotations

import re

import boto3
import numpy as np
import pytest
import torch
from test_extraction_nets import CoordNet, FlatNet, TinyBackbone

from otce_ray.models import ARCHITECTURES, ModelError, ModelSpec, build_architecture, build_module, load_model

IMAGES = np.random.default_rng(0).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)


def _script(module: torch.nn.Module, path) -> str:
    torch.jit.script(module).save(str(path))
    return str(path)


@pytest.mark.parametrize("arch,stride", [("unet", 2), ("segnet", 4), ("fcn8s", 4), ("pspnet", 8)])
def test_builtin_architectures_return_features_and_logits_at_their_stride(arch, stride):
    model = build_architecture(arch, num_classes=5, width=8, feature_dim=24).eval()
    with torch.no_grad():
        features, logits = model(torch.zeros(2, 3, 64, 128))
    assert features.shape == (2, 24, 64 // stride, 128 // stride)
    assert logits.shape == (2, 5, 64 // stride, 128 // stride)
    assert sum(p.numel() for p in model.parameters()) < 100_000  # a dozen of them train on a CPU in a minute


def test_builtin_without_checkpoint_is_seeded_and_reproducible():
    spec = {"name": "m", "format": "builtin", "architecture": "fcn8s", "num_classes": 3, "init_seed": 7}
    first, second = load_model(spec)(IMAGES), load_model(spec)(IMAGES)
    other = load_model({**spec, "init_seed": 8})(IMAGES)
    assert torch.equal(first.features, second.features)
    assert not torch.equal(first.features, other.features)
    assert first.logits.shape[1] == 3


def test_builtin_loads_a_trained_checkpoint(tmp_path):
    trained = build_architecture("pspnet", num_classes=3)
    for parameter in trained.parameters():
        parameter.data.normal_()
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    spec = {"name": "m", "format": "builtin", "architecture": "pspnet", "num_classes": 3,
            "checkpoint": str(tmp_path / "w.pt"), "mean": [0, 0, 0], "std": [1, 1, 1]}
    output = load_model(spec)(IMAGES)
    expected_features, _ = trained.eval()(torch.from_numpy(IMAGES).permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(output.features, expected_features)


@pytest.mark.parametrize("wrap", ["tuple", "dict", "tensor"])
def test_torchscript_outputs_tuple_dict_or_bare_features(tmp_path, wrap):
    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = CoordNet(stride=2)

        def forward(self, x: torch.Tensor):
            features, logits = self.net(x)
            if wrap == "dict":
                return {"features": features, "logits": logits}
            return (features, logits) if wrap == "tuple" else features

    traced = torch.jit.trace(Wrapped(), torch.zeros(1, 3, 32, 48), strict=False)
    traced.save(str(tmp_path / "m.pt"))
    output = load_model({"name": "ts", "format": "torchscript", "path": str(tmp_path / "m.pt")})(IMAGES)
    assert output.features.shape == (2, 2, 16, 24)
    assert (output.logits is None) == (wrap == "tensor")


def test_python_entrypoint_with_checkpoint_and_feature_layer(tmp_path):
    reference = TinyBackbone(num_classes=3)
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "w.pt")
    spec = {"name": "py", "format": "python", "entrypoint": "test_extraction_nets:tiny_backbone",
            "kwargs": {"num_classes": 3}, "checkpoint": str(tmp_path / "w.pt"), "feature_layer": "body",
            "mean": [0, 0, 0], "std": [1, 1, 1]}
    output = load_model(spec)(IMAGES)
    x = torch.from_numpy(IMAGES).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(output.features, reference.body(x))
    torch.testing.assert_close(output.logits, reference.eval()(x)["out"])


def test_input_normalisation_and_resize_reach_the_network(tmp_path):
    class Echo(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    path = _script(Echo(), tmp_path / "echo.pt")
    spec = {"name": "e", "format": "torchscript", "path": path, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.25, 1]}
    white = np.full((1, 8, 8, 3), 255, dtype=np.uint8)
    assert load_model(spec)(white).features[0, :, 0, 0].tolist() == [1.0, 2.0, 0.5]
    assert load_model({**spec, "size": [4, 6]})(white).features.shape == (1, 3, 4, 6)


def test_model_loads_from_s3(tmp_path, s3_bucket):
    path = _script(CoordNet(), tmp_path / "m.pt")
    boto3.client("s3").upload_file(path, s3_bucket, "zoo/m.pt")
    output = load_model({"name": "s3m", "format": "torchscript", "path": f"s3://{s3_bucket}/zoo/m.pt"})(IMAGES)
    assert output.features.shape == (2, 2, 32, 48)


@pytest.mark.parametrize(
    "entry,message",
    [
        ({"name": "m", "format": "onnx", "path": "x"},
         "field 'format': expected one of torchscript, python, builtin, huggingface, torchvision, smp, got 'onnx'"),
        ({"name": "m", "format": "torchscript"}, "field 'path' is required"),
        ({"name": "m", "format": "python", "entrypoint": "nocolon"}, "field 'entrypoint'"),
        ({"name": "m", "format": "builtin", "architecture": "unet", "mean": [1, 2]}, "field 'mean'"),
        ({"name": "m", "format": "builtin", "architecture": "unet", "std": [1, 0, 1]}, "field 'std'"),
        ({"name": "m", "format": "builtin", "architecture": "unet", "size": [0, 3]}, "field 'size'"),
        ({"name": "m", "format": "builtin", "architecture": "unet", "colour": 1}, "unknown field(s) ['colour']"),
        ({"name": "a/b", "format": "builtin", "architecture": "unet"}, "field 'name'"),
    ],
)
def test_spec_errors_name_the_field(entry, message):
    with pytest.raises(ValueError, match="^model .*" + re.escape(message)):
        ModelSpec.from_dict(entry)


def _load_error(spec: dict) -> str:
    with pytest.raises(ModelError) as info:
        load_model(spec)(IMAGES)
    message = str(info.value)
    assert message.startswith(f"model {spec['name']!r}: ")
    return message


def test_missing_model_file(tmp_path):
    message = _load_error({"name": "gone", "format": "torchscript", "path": str(tmp_path / "nope.pt")})
    assert "TorchScript file not found" in message and "nope.pt" in message


def test_corrupt_model_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"this is not a zip archive" * 10)
    message = _load_error({"name": "junk", "format": "torchscript", "path": str(tmp_path / "junk.pt")})
    assert "junk.pt is not a loadable TorchScript file" in message


def test_entrypoint_that_does_not_import():
    message = _load_error({"name": "imp", "format": "python", "entrypoint": "no_such_package.nets:build"})
    assert "'no_such_package.nets:build' does not import: ModuleNotFoundError" in message
    message = _load_error({"name": "attr", "format": "python", "entrypoint": "test_extraction_nets:missing"})
    assert "does not import: AttributeError" in message


def test_entrypoint_that_returns_no_module():
    message = _load_error({"name": "nm", "format": "python", "entrypoint": "os.path:join", "kwargs": {"a": "b"}})
    assert "returned str, not a torch.nn.Module" in message


def test_checkpoint_that_does_not_match_the_architecture(tmp_path):
    torch.save(build_architecture("unet", num_classes=3).state_dict(), tmp_path / "unet.pt")
    message = _load_error({"name": "mis", "format": "builtin", "architecture": "pspnet", "num_classes": 3,
                           "checkpoint": str(tmp_path / "unet.pt")})
    assert "unet.pt does not match the architecture" in message and "Missing key(s)" in message
    message = _load_error({"name": "width", "format": "builtin", "architecture": "unet", "num_classes": 5,
                           "checkpoint": str(tmp_path / "unet.pt")})
    assert "size mismatch" in message


def test_checkpoint_that_is_not_weights_only_is_refused_unless_allowed(tmp_path):
    torch.save(TinyBackbone(), tmp_path / "pickled.pt")  # a whole pickled module, not a state dict
    spec = {"name": "pk", "format": "python", "entrypoint": "test_extraction_nets:tiny_backbone",
            "checkpoint": str(tmp_path / "pickled.pt"), "feature_layer": "body"}
    message = _load_error(spec)
    assert "refused: this checkpoint would run code when unpickled" in message and "allow_unsafe_pickle" in message
    torch.save({"model": TinyBackbone().state_dict(), "epoch": 3}, tmp_path / "wrapped.pt")
    assert load_model({**spec, "checkpoint": str(tmp_path / "wrapped.pt")})(IMAGES).features.shape[1] == 8
    # opting in unpickles it, but a whole module is still not a state dict
    message = _load_error({**spec, "allow_unsafe_pickle": True})
    assert "holds no state dict of tensors" in message


class _RunsCode:
    def __reduce__(self):
        import os

        return os.system, ("echo never",)


def test_a_checkpoint_that_would_run_code_is_refused_without_suggesting_the_unsafe_retry(tmp_path):
    torch.save({"w": torch.zeros(2), "x": _RunsCode()}, tmp_path / "evil.pt")
    message = _load_error({"name": "ev", "format": "builtin", "architecture": "unet",
                           "checkpoint": str(tmp_path / "evil.pt")})
    assert "refused: this checkpoint would run code when unpickled (it calls posix.system)" in message
    assert "weights_only" not in message and "corrupt" not in message


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    message = _load_error({"name": "cc", "format": "builtin", "architecture": "unet",
                           "checkpoint": str(tmp_path / "bad.pt")})
    assert "bad.pt cannot be read" in message


def test_wrong_shaped_forward(tmp_path):
    message = _load_error({"name": "flat", "format": "torchscript", "path": _script(FlatNet(), tmp_path / "f.pt")})
    assert "forward returned features of shape (2, 3)" in message and "expected a tensor (2, d, h, w)" in message


def test_unknown_feature_layer_and_unknown_architecture():
    message = _load_error({"name": "fl", "format": "python", "entrypoint": "test_extraction_nets:tiny_backbone",
                           "feature_layer": "neck"})
    assert "feature_layer 'neck' is not a submodule" in message and "body" in message
    message = _load_error({"name": "ar", "format": "builtin", "architecture": "resnet"})
    assert f"field 'architecture': expected one of {', '.join(ARCHITECTURES)}, got 'resnet'" in message


def test_unreachable_s3_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    message = _load_error({"name": "far", "format": "builtin", "architecture": "unet",
                           "checkpoint": "s3://zoo-bucket/unet.pt"})
    assert "cannot read checkpoint s3://zoo-bucket/unet.pt" in message and "127.0.0.1:9" in message


def test_forward_that_raises_is_a_model_error(tmp_path):
    class Boom(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom inside the model")

    message = _load_error({"name": "boom", "format": "torchscript", "path": _script(Boom(), tmp_path / "b.pt")})
    assert "forward failed" in message and "boom inside the model" in message


def test_spec_fingerprint_ignores_the_name_only():
    base = ModelSpec.from_dict({"name": "a", "format": "builtin", "architecture": "unet"})
    assert base.fingerprint() == ModelSpec.from_dict({**base.to_dict(), "name": "b"}).fingerprint()
    assert base.fingerprint() != ModelSpec.from_dict({**base.to_dict(), "init_seed": 1}).fingerprint()


def test_an_entrypoint_outside_the_allow_list_is_refused_before_it_is_imported(tmp_path, monkeypatch):
    import sys

    (tmp_path / "evil_zoo.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"name": "evil", "format": "python", "entrypoint": "evil_zoo:build"}
    with pytest.raises(ModelError, match=r"model 'evil': entrypoint 'evil_zoo:build' refused: module 'evil_zoo' is "
                                         r"not under allowed_entrypoints \(zoo, vendor.models\)"):
        build_module(spec, allowed_entrypoints=["zoo", "vendor.models"])
    assert "evil_zoo" not in sys.modules
