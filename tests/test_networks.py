"""Generator and discriminator shapes, mouth crops, temporal windows, export and a tiny overfit."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from h2h.models.networks import (
    GENERATOR_PRESETS,
    DynamicsDiscriminator,
    GeneratorConfig,
    MultiscalePatchDiscriminator,
    SequentialGenerator,
    count_parameters,
    crop_mouths,
    generator_config,
    image_discriminator,
    mouth_discriminator,
    temporal_windows,
)


def _patch_sizes(size: int, n_layers: int = 3) -> list[int]:
    """Spatial sizes of the PatchGAN block outputs (k=4, pad=2; stride 2 then 1)."""
    sizes = []
    for i in range(n_layers + 2):
        stride = 2 if i < n_layers else 1
        size = (size + 4 - 4) // stride + 1
        sizes.append(size)
    return sizes


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("preset", ["lite", "paper", "tiny"])
def test_generator_output_shape_and_range(preset: str) -> None:
    g = SequentialGenerator(generator_config(preset)).eval()
    cond = torch.rand(2, 18, 64, 64) * 2 - 1
    prev = torch.rand(2, 6, 64, 64) * 2 - 1
    with torch.no_grad():
        out = g(cond, prev)
    assert out.shape == (2, 3, 64, 64)
    assert out.abs().max() <= 1.0
    assert torch.isfinite(out).all()


def test_lite_runs_at_256_and_reports_size(record_property: pytest.RecordProperty) -> None:
    g = SequentialGenerator(generator_config("lite")).eval()
    n = count_parameters(g)
    record_property("lite_parameters", n)
    assert 0.5e6 < n < 4e6
    with torch.no_grad():
        out = g(*g.example_inputs(256, 256))
    assert out.shape == (1, 3, 256, 256)


def test_presets_and_overrides() -> None:
    assert set(GENERATOR_PRESETS) == {"paper", "lite", "tiny"}
    paper = generator_config("paper")
    assert (paper.ngf, paper.n_down, paper.n_blocks_encoder, paper.n_blocks_decoder) == (64, 3, 5, 4)
    assert paper.channels(paper.n_down) == 512
    assert paper.in_cond == 18 and paper.in_prev == 6
    assert generator_config("lite", ngf=32).ngf == 32
    with pytest.raises(ValueError, match="unknown generator preset"):
        generator_config("huge")
    with pytest.raises(ValueError, match="stem"):
        GeneratorConfig(stem="conv3")  # type: ignore[arg-type]


def test_generator_rejects_bad_inputs() -> None:
    g = SequentialGenerator(generator_config("lite"))
    with pytest.raises(ValueError, match="multiples of 8"):
        g(*g.example_inputs(36, 32))
    cond, prev = g.example_inputs(32, 32)
    with pytest.raises(ValueError, match="channels"):
        g(cond[:, :6], prev)
    with pytest.raises(ValueError, match="prev must be"):
        g(cond, prev[:, :3])


def test_prev_frames_change_the_output() -> None:
    g = SequentialGenerator(generator_config("lite")).eval()
    cond = torch.rand(1, 18, 32, 32) * 2 - 1
    with torch.no_grad():
        a = g(cond, torch.zeros(1, 6, 32, 32))
        b = g(cond, torch.ones(1, 6, 32, 32))
    assert not torch.allclose(a, b)


def test_depthwise_and_instance_variants_run() -> None:
    config = generator_config("lite", depthwise=True, norm="instance", max_channels=64, ngf=32)
    g = SequentialGenerator(config)
    out = g(*g.example_inputs(32, 32))
    assert out.shape == (1, 3, 32, 32)


def test_onnx_export_matches_torch(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    g = SequentialGenerator(generator_config("tiny")).eval()
    cond = torch.rand(1, 18, 32, 32) * 2 - 1
    prev = torch.rand(1, 6, 32, 32) * 2 - 1
    path = tmp_path / "g.onnx"
    torch.onnx.export(
        g, (cond, prev), str(path), input_names=["cond", "prev"], output_names=["out"],
        opset_version=18, dynamo=True,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"cond": cond.numpy(), "prev": prev.numpy()})[0]
    with torch.no_grad():
        want = g(cond, prev).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_multiscale_discriminator_features() -> None:
    d = MultiscalePatchDiscriminator(9, scales=2, n_layers=3, ndf=8)
    out = d(torch.randn(2, 9, 64, 64))
    assert len(out) == 2
    for scale, size in zip(out, (64, 32)):
        assert len(scale) == 5
        assert [f.shape[-1] for f in scale] == _patch_sizes(size)
        assert [f.shape[1] for f in scale] == [8, 16, 32, 64, 1]
        assert scale[-1].shape[0] == 2
    with pytest.raises(ValueError, match="input channels"):
        d(torch.randn(1, 8, 64, 64))


def test_image_and_mouth_discriminators() -> None:
    images = torch.randn(2, 9, 128, 128)
    d_image = image_discriminator(ndf=8)
    assert d_image(images)[0][-1].shape == (2, 1, 19, 19)  # 128 -> 65, 33, 17, 18, 19
    crops = crop_mouths(images, torch.tensor([[64.0, 90.0], [20.0, 120.0]]))
    assert crops.shape == (2, 9, 72, 72)
    out = mouth_discriminator(ndf=8)(crops)
    assert [s[-1].shape[-1] for s in out] == [_patch_sizes(72)[-1], _patch_sizes(36)[-1]]


def test_crop_mouths_positions_and_clamping() -> None:
    h, w = 100, 120
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image = torch.stack([xs, ys]).float().unsqueeze(0).repeat(3, 1, 1, 1)
    centres = torch.tensor([[60.0, 50.0], [2.0, 3.0], [119.0, 99.0]])
    crops = crop_mouths(image, centres, size=72)
    assert crops.shape == (3, 2, 72, 72)
    assert (crops[0, 0, 0, 0].item(), crops[0, 1, 0, 0].item()) == (24.0, 14.0)
    assert (crops[1, 0, 0, 0].item(), crops[1, 1, 0, 0].item()) == (0.0, 0.0)
    assert (crops[2, 0, -1, -1].item(), crops[2, 1, -1, -1].item()) == (w - 1.0, h - 1.0)
    with pytest.raises(ValueError, match="smaller"):
        crop_mouths(torch.zeros(1, 3, 64, 64), torch.zeros(1, 2))


def test_crop_mouths_is_differentiable() -> None:
    image = torch.randn(1, 3, 80, 80, requires_grad=True)
    crop_mouths(image, torch.tensor([[40.0, 40.0]]), size=72).sum().backward()
    assert image.grad is not None and image.grad.sum().item() == 72 * 72 * 3


def test_temporal_windows_layout() -> None:
    b, t, h, w = 2, 10, 4, 4
    frames = torch.arange(t).float().view(1, t, 1, 1, 1).expand(b, t, 3, h, w)
    flows = 100 + torch.arange(t).float().view(1, t, 1, 1, 1).expand(b, t, 2, h, w)
    x = temporal_windows(frames, flows, skip=3, k=3)
    assert x.shape == (b * (t - 6), 13, h, w)
    first = x[0, :, 0, 0].tolist()
    assert first == [0.0] * 3 + [3.0] * 3 + [6.0] * 3 + [103.0] * 2 + [106.0] * 2
    chosen = temporal_windows(frames, flows, skip=1, starts=[2, 5])
    assert chosen.shape == (b * 2, 13, h, w)
    assert chosen[1, :, 0, 0].tolist()[:9] == [5.0] * 3 + [6.0] * 3 + [7.0] * 3
    with pytest.raises(ValueError, match="needs >= 19 frames"):
        temporal_windows(frames, flows, skip=9)


def test_dynamics_discriminator_three_temporal_scales() -> None:
    b, t, size = 1, 19, 32
    d = DynamicsDiscriminator(k=3, skips=(1, 3, 9), ndf=8)
    assert d.in_channels == 13
    frames = torch.randn(b, t, 3, size, size)
    flows = [torch.randn(b, t, 2, size, size) for _ in d.skips]
    starts = [[0, 5], [0], None]
    out = d(frames, flows, starts)
    assert set(out) == {1, 3, 9}
    assert out[1][0][-1].shape == (2, 1, 7, 7)
    assert out[3][0][-1].shape == (1, 1, 7, 7)
    assert out[9][1][-1].shape[-1] == _patch_sizes(16)[-1]
    short = d(frames[:, :7], [f[:, :7] for f in flows])
    assert set(short) == {1, 3}
    assert short[1][0][-1].shape[0] == 5


def test_count_parameters() -> None:
    layer = torch.nn.Linear(3, 4)
    assert count_parameters(layer) == 16
    layer.bias.requires_grad_(False)
    assert count_parameters(layer, trainable_only=True) == 12


def test_tiny_generator_overfits_two_frames() -> None:
    config = dataclasses.replace(
        generator_config("lite"), ngf=32, max_channels=64, n_blocks_encoder=0,
        n_blocks_decoder=2, unshuffle_factor=2,
    )
    g = SequentialGenerator(config)
    size = 32
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    cond = torch.stack([torch.stack([xs, ys, xs * ys] * 6), torch.stack([ys, -xs, xs + ys] * 6) / 2])
    target = torch.stack([
        torch.stack([xs.sin(), ys.cos() - 0.5, (xs * 3).sin() * 0.8]),
        torch.stack([ys.sin(), -xs.cos() + 0.5, (ys * 3).cos() * 0.8]),
    ])
    prev = torch.zeros(2, 6, size, size)
    opt = torch.optim.Adam(g.parameters(), lr=2e-3)
    losses = []
    for _ in range(150):
        loss = F.l1_loss(g(cond, prev), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
