"""Training an avatar's learned 2x upsampler (models/networks/upsampler.py).

Pairs: the avatar's trained generator re-renders its own train frames (the 256 input the
upsampler will see live), and the target is the same frame cropped again from the source
video at 512 (real detail up to the video's resolution). A share of the inputs are the
stored 256 frames instead, so it also learns plain super-resolution on aligned pairs.
Random patches, L1 plus a Laplacian-pyramid L1 (edges), Adam with a cosine decay over the
time budget; resumable, with a progress bar, and it stops cleanly on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from .avatar_files import AvatarFiles
from .checkpoint import UPSAMPLER_FILE, UPSAMPLER_META, load_state, save_network, save_state
from .losses import laplacian_pyramid_l1
from .networks.upsampler import SCALE, Upsampler, upsampler_config
from .timed_training import TimedTrainer

UPSAMPLER_STATE = "upsampler_state.pt"


@dataclass(frozen=True)
class UpsamplerTrainConfig:
    """preset: the network (UPSAMPLER_PRESETS); patch: input patch side (the target is 2x);
    real_share: inputs that are the stored frame instead of the generator's output; blur:
    the largest Gaussian sigma (input pixels) a stored frame is blurred by, so that it looks
    as soft as a generated one while staying aligned with its target."""

    preset: str = "lite"
    batch: int = 8
    patch: int = 96
    lr: float = 1e-3
    laplacian: float = 1.0
    real_share: float = 0.25
    blur: float = 0.0


UPSAMPLER_TRAIN_PRESETS = {
    "lite": UpsamplerTrainConfig(),
    "tiny": UpsamplerTrainConfig(preset="tiny", batch=2, patch=32),
}


@dataclass
class UpsamplerPairs:
    """Same-index frames: generated and real at 256 (N, S, S, 3), hires at 512 (N, 2S, 2S, 3), uint8."""

    generated: np.ndarray
    real: np.ndarray
    hires: np.ndarray

    def __post_init__(self) -> None:
        n, size = len(self.real), self.real.shape[1]
        if self.generated.shape != self.real.shape or self.hires.shape != (n, SCALE * size, SCALE * size, 3) or n == 0:
            raise ValueError("upsampler pairs: generated, real (N, S, S, 3) and hires (N, 2S, 2S, 3) must match")

    def batch(self, rng: np.random.Generator, config: UpsamplerTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """Random aligned patches (inputs, targets) in [-1, 1], randomly mirrored."""
        size, patch = self.real.shape[1], config.patch
        inputs, targets = [], []
        for _ in range(config.batch):
            i = int(rng.integers(len(self.real)))
            x, y = (2 * rng.integers(0, (size - patch) // 2 + 1, 2)).tolist()
            real = rng.random() < config.real_share
            low = (self.real if real else self.generated)[i, y : y + patch, x : x + patch]
            sigma = rng.uniform(0.0, config.blur) if real else 0.0
            if sigma > 0.2:
                low = cv2.GaussianBlur(low, (0, 0), sigma)
            high = self.hires[i, SCALE * y : SCALE * (y + patch), SCALE * x : SCALE * (x + patch)]
            if rng.random() < 0.5:
                low, high = low[:, ::-1], high[:, ::-1]
            inputs.append(low)
            targets.append(high)
        as_tensor = lambda images: torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return as_tensor(inputs), as_tensor(targets)


class UpsamplerTrainer(TimedTrainer):
    """Trains checkpoints/<run>/upsampler.safetensors for `minutes` (total over resumes)."""

    desc = "upsampler"
    state_file = UPSAMPLER_STATE

    def __init__(self, pairs: UpsamplerPairs, folder: Path, config: UpsamplerTrainConfig, minutes: float,
                 resume: bool = False, files: AvatarFiles | None = None, progress: bool = True, seed: int = 0) -> None:
        """`files`: the avatar folder's checked accessor, through which a resume reads its state."""
        self.pairs, self.folder, self.minutes, self.progress = pairs, folder, minutes, progress
        self.step, self.elapsed = 0, 0.0
        state = self._load_state(files) if resume else None
        self.config = self.saved_config(state, UpsamplerTrainConfig, upsampler_config) if state else config
        self.net = Upsampler(upsampler_config(self.config.preset))
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.lr, betas=(0.9, 0.99))
        if state:
            self.restore(state, "upsampler")
        self.rng = np.random.default_rng(seed + self.step)

    def _load_state(self, files: AvatarFiles | None) -> dict:
        return load_state(self.folder / UPSAMPLER_STATE, files, keys=("upsampler", "optimizer", "config"))

    def train_step(self) -> dict[str, float]:
        self.cosine_lr(self.config.lr)
        low, high = self.pairs.batch(self.rng, self.config)
        out = self.net(low)
        l1 = F.l1_loss(out, high)
        edges = laplacian_pyramid_l1(out, high)
        loss = l1 + self.config.laplacian * edges
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"l1": float(l1.detach()), "laplacian": float(edges.detach())}

    def save(self) -> None:
        """The resumable state, then the code-free weights and their JSON."""
        save_state(self.folder / UPSAMPLER_STATE, {
            "upsampler": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "step": self.step, "elapsed": self.elapsed, "config": asdict(self.config),
        })
        save_network(self.folder, self.net, UPSAMPLER_FILE, UPSAMPLER_META, {
            "preset": self.config.preset, "step": self.step, "train_minutes": round(self.elapsed / 60, 2), "frames": len(self.pairs.real),
        })
