"""The two modules a GAN step differentiates, each one forward per backward so that
DistributedDataParallel can wrap them: the generator run over a sequence, and the
discriminators' LSGAN loss."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .dataset import WINDOW, Batch
from .losses import compose_flows, gan_loss
from .networks import (
    RGB_CHANNELS,
    DynamicsDiscriminator,
    FewShotGenerator,
    ProjectionDiscriminator,
    SequentialGenerator,
    crop_mouths,
)


def run_sequence(generator: nn.Module, cond: torch.Tensor, length: int, feed_back: bool) -> torch.Tensor:
    """G over a sequence (B, L, 3 or 4, H, W), feeding its own detached RGB outputs back when
    `feed_back`. `generator` is a SequentialGenerator or a BoundGenerator."""
    b, _, c, h, w = cond.shape
    prev = torch.zeros(b, generator.config.in_prev, h, w, device=cond.device, dtype=cond.dtype)
    fakes = []
    for t in range(length):
        fake = generator(cond[:, t : t + WINDOW].reshape(b, WINDOW * c, h, w), prev)
        fakes.append(fake)
        if feed_back and prev.shape[1]:
            prev = torch.cat([prev[:, RGB_CHANNELS:], fake[:, :RGB_CHANNELS].detach()], 1)
    return torch.stack(fakes, 1)


class SequenceRunner(nn.Module):
    """forward(cond, length, feed_back, references) -> (run_sequence of the wrapped generator,
    the identity vectors or None). A FewShotGenerator is first given the identity its embedder
    computes from `references` (B, M, 3, H, W) (Head2HeadFS eq. 4-5)."""

    def __init__(self, generator: SequentialGenerator | FewShotGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(
        self, cond: torch.Tensor, length: int, feed_back: bool, references: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not isinstance(self.generator, FewShotGenerator):
            return run_sequence(self.generator, cond, length, feed_back), None
        identity = self.generator.embedder.embed(references)
        return run_sequence(self.generator.bind(identity), cond, length, feed_back), identity


def d_inputs(batch: Batch, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditioning + RGB) pairs of every frame, and their mouth crops (a mask channel of
    generated frames is left out: the discriminators judge the picture)."""
    cond = batch.cond[:, WINDOW - 1 :].flatten(0, 1)  # each frame's own conditioning
    pairs = torch.cat([cond, frames[:, :, :RGB_CHANNELS].flatten(0, 1)], 1)
    return pairs, crop_mouths(pairs, batch.mouth.flatten(0, 1))


def face_part_l1(batch: Batch, frames: torch.Tensor, eye_margin: int = 5) -> torch.Tensor:
    """Mean L1 inside the eye regions plus mean L1 inside the mouth crops: the parts whose
    small, rare motions (blinks, winks, brows, open mouths) a whole-image L1 averages away.
    Eye regions are the eye sketch's drawn pixels (lids, pupils, brows) grown by `eye_margin`."""
    cond = batch.cond[:, WINDOW - 1 :].flatten(0, 1)
    fake, real = frames[:, :, :RGB_CHANNELS].flatten(0, 1).float(), batch.real.flatten(0, 1).float()  # sums in fp32 under autocast
    drawn = (cond[:, 3:6] > -1.0).any(1, keepdim=True).float()
    eyes = F.max_pool2d(drawn, 2 * eye_margin + 1, stride=1, padding=eye_margin)
    eye_term = ((fake - real).abs() * eyes).sum() / (eyes.sum() * fake.shape[1]).clamp_min(1.0)
    centres = batch.mouth.flatten(0, 1)
    mouth_term = F.l1_loss(crop_mouths(fake, centres), crop_mouths(real, centres))
    return eye_term + mouth_term


def dynamics_starts(length: int, dynamics: DynamicsDiscriminator) -> list[list[int] | None]:
    """One window per temporal scale per step (the last that fits), to bound the cost."""
    return [[length - dynamics.frames_needed(s)] if length >= dynamics.frames_needed(s) else None for s in dynamics.skips]


def judge(discriminator: nn.Module, inputs: torch.Tensor, batch: Batch) -> list[list[torch.Tensor]]:
    """A spatial discriminator on per-frame inputs; a projection D_I also gets each frame's person."""
    if isinstance(discriminator, ProjectionDiscriminator):
        frames_per_item = inputs.shape[0] // batch.identity.shape[0]
        return discriminator(inputs, batch.identity.repeat_interleave(frames_per_item))
    return discriminator(inputs)


class Critic(nn.Module):
    """forward(batch, fake) -> the discriminators' losses on real and (detached) fake frames."""

    def __init__(self, discriminators: nn.ModuleDict, adversarial: str = "lsgan") -> None:
        super().__init__()
        self.discriminators = discriminators
        self.adversarial = adversarial

    def forward(self, batch: Batch, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        ds, fake = self.discriminators, fake[:, :, :RGB_CHANNELS].detach()
        real_pair, real_mouth = d_inputs(batch, batch.real)
        fake_pair, fake_mouth = d_inputs(batch, fake)
        loss = lambda preds, real: gan_loss(preds, real, self.adversarial)
        losses = {}
        for name, real_in, fake_in in (("image", real_pair, fake_pair), ("mouth", real_mouth, fake_mouth)):
            losses[f"d_{name}"] = 0.5 * (loss(judge(ds[name], real_in, batch), True) + loss(judge(ds[name], fake_in, batch), False))
        dynamics = ds["dynamics"]
        flows = [compose_flows(batch.flow, s) for s in dynamics.skips]
        starts = dynamics_starts(fake.shape[1], dynamics)
        real = dynamics(batch.real, flows, starts)
        if real:
            generated = dynamics(fake, flows, starts)
            losses["d_dynamics"] = 0.5 * sum(loss(real[s], True) + loss(generated[s], False) for s in real)
        return losses
