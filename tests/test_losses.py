"""LSGAN, feature matching, VGG19 loading and perceptual loss, flow warping."""
from __future__ import annotations

import warnings

import pytest
import torch

from h2h.models import losses
from h2h.models.losses import (
    LOSS_PRESETS,
    LossWeights,
    PerceptualLoss,
    VGG19Features,
    compose_flows,
    feature_matching_loss,
    flow_valid_mask,
    flow_warp,
    gan_loss,
    load_vgg19,
    warp_loss,
)

TORCHVISION_VGG19_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def test_loss_weight_defaults() -> None:
    w = LossWeights()
    assert (w.gan, w.feature_matching, w.vgg, w.flow_warp, w.mouth, w.dynamics) == (1, 10, 10, 10, 1, 1)
    assert LOSS_PRESETS["paper"] == w


def test_lsgan_known_values() -> None:
    half = torch.full((2, 1, 4, 4), 0.5)
    assert gan_loss([half], True).item() == pytest.approx(0.25)
    assert gan_loss([half], False).item() == pytest.approx(0.25)
    ones, zeros = torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 5, 5)
    assert gan_loss([ones, zeros], True).item() == pytest.approx(0.5)
    assert gan_loss([ones, zeros], False).item() == pytest.approx(0.5)
    features = [[torch.randn(1, 8, 4, 4), ones], [torch.randn(1, 8, 2, 2), 3 * ones]]
    assert gan_loss(features, True).item() == pytest.approx((0 + 4) / 2)
    assert gan_loss(features, False).item() == pytest.approx((1 + 9) / 2)


def test_feature_matching() -> None:
    real = [
        [torch.randn(1, 4, 8, 8), torch.randn(1, 8, 4, 4), torch.randn(1, 1, 3, 3)] for _ in range(2)
    ]
    same = [[f.clone().requires_grad_(True) for f in scale] for scale in real]
    assert feature_matching_loss(same, real).item() == 0.0
    shifted = [[f + 0.5 for f in scale[:-1]] + [scale[-1] + 100] for scale in real]
    # Two intermediate layers at weight 4/2 each, L1 = 0.5; the prediction is not matched.
    assert feature_matching_loss(shifted, real).item() == pytest.approx(2.0)
    loss = feature_matching_loss(same, [[f.requires_grad_(True) for f in s] for s in real])
    (loss + sum(f.sum() for s in same for f in s)).backward()
    assert real[0][0].grad is None


def test_vgg19_state_dict_uses_torchvision_names() -> None:
    keys = list(VGG19Features().state_dict())
    expected = [f"features.{i}.{p}" for i in TORCHVISION_VGG19_CONV_INDICES for p in ("weight", "bias")]
    assert keys == expected
    assert keys[0] == "features.0.weight" and keys[-2] == "features.34.weight"


def test_vgg19_outputs_and_normalisation() -> None:
    vgg = VGG19Features()
    seen = {}
    vgg.features[0].register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    feats = vgg(torch.zeros(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    want = (0.5 - torch.tensor(losses.IMAGENET_MEAN)) / torch.tensor(losses.IMAGENET_STD)
    assert torch.allclose(seen["x"][0, :, 0, 0], want)
    assert not any(p.requires_grad for p in vgg.parameters())


def test_load_vgg19_round_trip_from_path(tmp_path, empty_hub) -> None:
    source = VGG19Features()
    path = tmp_path / "vgg.pth"
    state = dict(source.state_dict())
    state["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(state, path)
    loaded = load_vgg19(str(path))
    assert loaded is not None
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_load_vgg19_from_hub_cache(empty_hub) -> None:
    source = VGG19Features()
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(source.state_dict(), empty_hub / "checkpoints" / losses.VGG19_CHECKPOINT)
    loaded = load_vgg19(None)
    assert loaded is not None
    assert torch.equal(loaded.features[34].bias, source.features[34].bias)


def test_load_vgg19_without_weights_warns_and_returns_none(empty_hub) -> None:
    with pytest.warns(RuntimeWarning, match="--vgg-weights"):
        assert load_vgg19(None, allow_random=False) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(load_vgg19(None, allow_random=True), VGG19Features)
    with pytest.raises(FileNotFoundError):
        load_vgg19(str(empty_hub / "missing.pth"))


def test_load_vgg19_rejects_wrong_checkpoint(tmp_path, empty_hub) -> None:
    path = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="vgg19"):
        load_vgg19(str(path))


def test_perceptual_loss() -> None:
    criterion = PerceptualLoss(VGG19Features())
    real = torch.rand(1, 3, 32, 32) * 2 - 1
    assert criterion(real.clone(), real).item() == 0.0
    fake = (real + 0.3 * torch.randn_like(real)).clamp(-1, 1).requires_grad_(True)
    loss = criterion(fake, real)
    assert loss.item() > 0
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_flow_warp_zero_flow_is_identity() -> None:
    image = torch.randn(2, 3, 16, 20)
    assert torch.allclose(flow_warp(image, torch.zeros(2, 2, 16, 20)), image, atol=1e-5)


def test_flow_warp_integer_flow_shifts() -> None:
    image = torch.randn(1, 3, 16, 20)
    flow = torch.zeros(1, 2, 16, 20)
    flow[:, 0], flow[:, 1] = 2.0, -3.0
    warped = flow_warp(image, flow)
    # out(x, y) = image(x + 2, y - 3)
    assert torch.allclose(warped[..., 3:, :-2], image[..., :-3, 2:], atol=1e-5)


def test_flow_valid_mask() -> None:
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0] = 3.0
    mask = flow_valid_mask(flow)
    assert mask.shape == (1, 1, 8, 8)
    assert mask[0, 0, :, :5].eq(1).all() and mask[0, 0, :, 5:].eq(0).all()


def test_compose_flows_adds_constant_flows() -> None:
    b, t, h, w = 1, 5, 12, 12
    flows = torch.zeros(b, t, 2, h, w)
    flows[:, :, 0] = 1.0
    flows[:, :, 1] = -0.5
    composed = compose_flows(flows, 3)
    assert composed[:, :3].eq(0).all()
    assert torch.allclose(composed[:, 3:, 0, 2:-4, 2:-4], torch.full((b, 2, h - 6, w - 6), 3.0))
    assert torch.allclose(composed[:, 3:, 1, 2:-4, 2:-4], torch.full((b, 2, h - 6, w - 6), -1.5))
    assert compose_flows(flows, 1) is flows


def test_warp_loss_zero_for_perfect_warp() -> None:
    prev = torch.rand(2, 3, 16, 16) * 2 - 1
    flow = torch.zeros(2, 2, 16, 16)
    flow[:, 0], flow[:, 1] = 1.0, 2.0
    current = flow_warp(prev, flow)
    assert warp_loss(current, prev, flow).item() == pytest.approx(0.0, abs=1e-6)
    assert warp_loss(prev, prev, flow).item() > 0.1


def test_warp_loss_mask() -> None:
    prev = torch.zeros(1, 3, 8, 8)
    current = torch.zeros(1, 3, 8, 8)
    current[..., :, 4:] = 1.0
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1.0
    flow = torch.zeros(1, 2, 8, 8)
    assert warp_loss(current, prev, flow, mask).item() == 0.0
    assert warp_loss(current, prev, flow, 1 - mask).item() == pytest.approx(1.0)
    assert warp_loss(current, prev, flow).item() == pytest.approx(0.5)


def test_laplacian_pyramid_l1_is_zero_on_equal_images_and_grows_with_blur() -> None:
    from h2h.models.losses import laplacian_pyramid_l1

    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(image, 3, stride=1, padding=1)
    more = torch.nn.functional.avg_pool2d(blurred, 5, stride=1, padding=2)
    assert laplacian_pyramid_l1(image, image).item() == 0.0
    assert 0 < laplacian_pyramid_l1(blurred, image).item() < laplacian_pyramid_l1(more, image).item()
    fake = image.clone().requires_grad_(True)
    laplacian_pyramid_l1(fake * 0.5, image).backward()
    assert fake.grad.abs().sum() > 0


def test_the_paper_preset_has_a_reconstruction_term_without_vgg(prepared) -> None:
    from h2h.models.avatar import Avatar
    from h2h.models.train import Trainer
    from h2h.models.train_config import RunOptions, train_config

    library, _ = prepared
    config = train_config("tiny", l1=0.0, laplacian=10.0)  # the paper preset's losses on tiny networks
    trainer = Trainer(Avatar.open(library, "sample"), config, RunOptions(run="lap", progress=False, max_steps=1))
    assert trainer.perceptual is None  # no VGG weights here
    assert "g_lap" in trainer.train_step() and "g_l1" not in trainer.train_step()
    assert train_config("paper").laplacian > 0 and train_config("paper").l1 == 0
