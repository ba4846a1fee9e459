"""How a loaded model runs on its device: bf16 autocast, channels-last, pinned host memory (``load_model``).

On CUDA all three are on by default; on a CPU all are off, and the first two can be asked for, which is how their
arithmetic is tested here. The ``cuda`` tests check the defaults and the pinned path on a card (``make gpu-check``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from otce_ray.models import ModelSpec, load_model, to_input

SPEC = {"name": "unet", "format": "builtin", "architecture": "unet", "num_classes": 5}
IMAGES = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)


def _scripted(tmp_path) -> dict:
    module = load_model(SPEC)._module
    path = str(tmp_path / "unet.pt")
    torch.jit.trace(module, torch.zeros(1, 3, 48, 64), strict=False).save(path)
    return {"name": "unet-ts", "format": "torchscript", "path": path}


def test_a_cpu_model_runs_in_float32_contiguous_by_default():
    model = load_model(SPEC, "cpu")
    assert not model.bf16 and not model.channels_last


def test_bf16_autocast_gives_finite_features_close_to_float32():
    exact = load_model(SPEC, "cpu")(IMAGES)
    bf16 = load_model(SPEC, "cpu", bf16=True)(IMAGES)
    assert bf16.features.dtype == torch.float32 and torch.isfinite(bf16.features).all()
    error = (bf16.features - exact.features).norm() / exact.features.norm()
    assert 0 < error < 0.05  # bf16 keeps 8 bits of mantissa: it moved, a little


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript is deprecated, still a zoo format
@pytest.mark.parametrize("scripted", [False, True], ids=["python", "torchscript"])
def test_channels_last_gives_the_same_features(tmp_path, scripted):
    spec = _scripted(tmp_path) if scripted else SPEC
    model = load_model(spec, "cpu", channels_last=True)
    weights = [p for p in model._module.parameters() if p.ndim == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    torch.testing.assert_close(model(IMAGES).features, load_model(spec, "cpu")(IMAGES).features, rtol=1e-4,
                               atol=1e-5)


def test_the_input_is_pinned_only_for_a_cuda_device(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("pin_memory called for a CPU model")

    monkeypatch.setattr(torch.Tensor, "pin_memory", refuse)
    x = to_input(ModelSpec.from_dict(SPEC), IMAGES, torch.device("cpu"), channels_last=True)
    assert x.shape == (2, 3, 48, 64) and x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_model_runs_bf16_channels_last_from_pinned_memory():
    spec = ModelSpec.from_dict(SPEC)
    on_card = to_input(spec, IMAGES, torch.device("cuda"))
    torch.testing.assert_close(on_card.cpu(), to_input(spec, IMAGES, torch.device("cpu")))
    model = load_model(SPEC, "cuda")
    assert model.bf16 and model.channels_last
    exact = load_model(SPEC, "cuda", bf16=False, channels_last=False)(IMAGES, synchronize=True)
    fast = model(IMAGES, synchronize=True)
    assert torch.isfinite(fast.features).all()
    assert float((fast.features - exact.features).norm() / exact.features.norm()) < 0.05
    assert not load_model({**SPEC, "autocast": False}, "cuda").bf16
