"""Training the person-generic one-shot generator (`h2h train-oneshot`): self-reenactment
pairs of every prepared person, L1 and a Laplacian-pyramid L1 on the generated frame (no
pretrained VGG), an L1 that pulls the warped source towards the target (so the flow learns
the motion early), and a cross-entropy on the predicted foreground mask; the `gan` presets add
image and mouth discriminators (LSGAN) with feature matching (Free-HeadGAN 3.3), usually as a
second stage started from an L1 run (--init). Adam with a cosine decay over the time budget;
resumable; saves code-free weights (oneshot.safetensors + .json) and a sample sheet."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, load_state, save_network, save_state
from .dataset import to_image
from .losses import feature_matching_loss, gan_loss, laplacian_pyramid_l1
from .networks.discriminators import crop_mouths, image_discriminator, mouth_discriminator
from .networks.oneshot import COND_CHANNELS, OneShotGenerator, oneshot_config
from .oneshot_data import PairAugment, PairBatch, PairSamples
from .oneshot_model import ONESHOT_FILE, ONESHOT_META, load_oneshot
from .timed_training import TimedTrainer

ONESHOT_STATE = "oneshot_state.pt"


@dataclass(frozen=True)
class OneShotTrainConfig:
    preset: str = "small"
    batch: int = 4
    lr: float = 4e-4
    laplacian: float = 1.0
    warp: float = 0.5
    mask: float = 0.1
    gan: float = 0.0  # weight of the image and mouth discriminators' terms; 0: no GAN
    feature_matching: float = 2.0
    ndf: int = 32  # discriminator width
    sources: int = 1  # source frames per training pair; more than 1 trains the attention over sources (N-shot)
    seed: int = 0


ONESHOT_TRAIN_PRESETS = {
    "small": OneShotTrainConfig(),
    "gan": OneShotTrainConfig(gan=1.0),
    "tiny": OneShotTrainConfig(preset="tiny", batch=2),
}
ONESHOT_TRAIN_PRESETS["tiny-gan"] = replace(ONESHOT_TRAIN_PRESETS["tiny"], gan=1.0, ndf=8)
MOUTH_CROP = 72


class OneShotTrainer(TimedTrainer):
    """Trains FOLDER/oneshot.safetensors for `minutes` (total over resumes)."""

    desc = "one-shot generator"
    state_file = ONESHOT_STATE

    def __init__(self, samples: PairSamples, folder: Path, config: OneShotTrainConfig, minutes: float,
                 resume: bool = False, progress: bool = True, init: Path | None = None) -> None:
        """`init`: start from the generator of another run (a folder from h2h train-oneshot)."""
        self.samples, self.folder, self.minutes, self.progress = samples, folder, minutes, progress
        self.step, self.elapsed = 0, 0.0
        state = load_state(folder / ONESHOT_STATE, keys=("oneshot", "optimizer", "config")) if resume else None
        self.config = self.saved_config(state, OneShotTrainConfig, oneshot_config) if state else config
        self.net = OneShotGenerator(oneshot_config(self.config.preset))
        if self.net.config.size != samples.size:
            raise ValueError(f"the {self.config.preset} preset works at {self.net.config.size} px, the avatars at {samples.size} px")
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.lr, betas=(0.5, 0.999))
        self.augment = PairAugment()
        self.critic: nn.ModuleDict | None = None
        if self.config.gan > 0:
            cond, ndf = COND_CHANNELS, self.config.ndf
            self.critic = nn.ModuleDict({"image": image_discriminator(cond, 2, 3, ndf), "mouth": mouth_discriminator(cond, 2, 3, ndf)})
            self.d_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.config.lr, betas=(0.5, 0.999))
        if state:
            self.restore(state, "oneshot")
            if self.critic is not None:
                self.restore_critic(state)
        self.lineage = state.get("started_from") if state else None
        if init is not None and not state:
            self.net.load_state_dict(self.started_from(init).state_dict())

    def started_from(self, init: Path) -> OneShotGenerator:
        """The generator of run `init`, whose training facts this run's metadata carries on."""
        generator, meta = load_oneshot(init)
        if meta.get("preset") != self.config.preset:
            raise CheckpointError(f"{init} holds a {meta.get('preset')} one-shot generator, not {self.config.preset}; pick a matching --preset")
        self.lineage = {k: meta.get(k) for k in ("step", "train_minutes", "started_from")}
        return generator

    def restore_critic(self, state: dict) -> None:
        try:
            self.critic.load_state_dict(state["critic"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.folder / self.state_file}: its discriminators do not fit ({type(exc).__name__}); train without --resume") from exc

    def losses(self, batch: PairBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The generator's loss terms and its RGB output."""
        frame, extras = self.net(self.net.encode(batch.source, batch.source_cond, batch.source_mask), batch.driver_cond, paired=True, extras=True)
        rgb = frame[:, :3]
        return {
            "l1": F.l1_loss(rgb, batch.target),
            "laplacian": laplacian_pyramid_l1(rgb, batch.target),
            "warp": F.l1_loss(extras["warped"], batch.target),
            "mask": F.binary_cross_entropy_with_logits(frame[:, 3:4], batch.mask),
        }, rgb

    def judged(self, batch: PairBatch, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each discriminator's input: the driver's conditioning with the frame, whole and round the mouth."""
        whole = torch.cat([batch.driver_cond, rgb], 1)
        return {"image": whole, "mouth": crop_mouths(whole, batch.mouth, MOUTH_CROP)}

    def adversarial(self, batch: PairBatch, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generator's GAN and feature-matching terms (summed over the image and mouth D)."""
        fake, real = self.judged(batch, rgb), self.judged(batch, batch.target)
        terms = {"gan": rgb.new_zeros(()), "fm": rgb.new_zeros(())}
        for name, critic in self.critic.items():
            fake_out = critic(fake[name])
            with torch.no_grad():
                real_out = critic(real[name])
            terms["gan"] = terms["gan"] + gan_loss(fake_out, True)
            terms["fm"] = terms["fm"] + feature_matching_loss(fake_out, real_out)
        return terms

    def critic_step(self, batch: PairBatch, rgb: torch.Tensor) -> float:
        fake, real = self.judged(batch, rgb.detach()), self.judged(batch, batch.target)
        loss = sum(0.5 * (gan_loss(critic(fake[n]), False) + gan_loss(critic(real[n]), True)) for n, critic in self.critic.items())
        self.d_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.d_optimizer.step()
        return float(loss.detach())

    def train_step(self) -> dict[str, float]:
        self.cosine_lr(self.config.lr)
        rng = np.random.default_rng([self.config.seed, self.step])  # a resumed run draws the same pairs
        batch = self.samples.batch(rng, self.config.batch, self.augment, self.config.sources)
        terms, rgb = self.losses(batch)
        c = self.config
        if self.critic is not None:
            for group in self.d_optimizer.param_groups:  # the same cosine decay as the generator's
                group["lr"] = self.optimizer.param_groups[0]["lr"]
            terms.update(self.adversarial(batch, rgb))
        loss = terms["l1"] + c.laplacian * terms["laplacian"] + c.warp * terms["warp"] + c.mask * terms["mask"]
        if self.critic is not None:
            loss = loss + c.gan * terms["gan"] + c.feature_matching * terms["fm"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        report = {k: float(v.detach()) for k, v in terms.items()}
        if self.critic is not None:
            report["d"] = self.critic_step(batch, rgb)
        return report

    def save(self) -> None:
        """The resumable state, the code-free weights with their JSON, and a sample sheet."""
        state = {
            "oneshot": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "step": self.step, "elapsed": self.elapsed, "config": asdict(self.config),
        }
        if self.critic is not None:
            state.update(critic=self.critic.state_dict(), d_optimizer=self.d_optimizer.state_dict())
        if self.lineage:
            state["started_from"] = self.lineage
        save_state(self.folder / ONESHOT_STATE, state)
        save_network(self.folder, self.net, ONESHOT_FILE, ONESHOT_META, {
            "preset": self.config.preset, "step": self.step, "train_minutes": round(self.elapsed / 60, 2),
            "people": self.samples.names, "frames": self.samples.frames(),
            **({"started_from": self.lineage} if self.lineage else {}),
        })
        self.write_samples(self.sample_sheet())

    @torch.no_grad()
    def sample_sheet(self, count: int = 4) -> np.ndarray:
        """Rows of source | driver conditioning | warped source | generated | target (BGR)."""
        k = self.config.sources
        batch = self.samples.batch(np.random.default_rng(1), count, PairAugment(flip=0.0, gain=0.0, eye_jitter=0.0, grey=0.0), k)
        was_training = self.net.training
        self.net.eval()
        frame, extras = self.net(self.net.encode(batch.source, batch.source_cond, batch.source_mask), batch.driver_cond, paired=True, extras=True)
        self.net.train(was_training)
        rows = []
        for i in range(count):
            cond = np.where(to_image(batch.driver_cond[i, 3:]).any(-1, keepdims=True), to_image(batch.driver_cond[i, 3:]),
                            to_image(batch.driver_cond[i, :3]))
            tiles = [to_image(batch.source[i * k]), cond, to_image(extras["warped"][i]), to_image(frame[i, :3]), to_image(batch.target[i])]
            rows.append(np.concatenate(tiles, 1))
        return cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR)
