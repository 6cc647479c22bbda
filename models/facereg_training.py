"""Training DenseFaceReg by distillation (`h2h train-facereg`): augmented face crops of the
prepared avatars' frames, the teacher's points as targets, an L1 on the points with eyes,
irises and lips weighted up, Adam with a cosine decay over the time budget. Resumable; it
saves the code-free weights (facereg.safetensors + facereg.json) and a sample sheet."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .checkpoint import load_state, save_network, save_state
from .facereg_data import PART_AUGMENT, PART_INDICES, Augment, FaceSamples, gap_positions, mirror_permutation, point_weights, to_input
from .geometry.face_crop import PARTS
from .geometry.face_model import load_face_model
from .networks.facereg import DenseFaceReg, facereg_config
from .timed_training import TimedTrainer

FACEREG_STATE = "facereg_state.pt"
FACEREG_FILE = "facereg.safetensors"
FACEREG_META = "facereg.json"


@dataclass(frozen=True)
class FaceRegTrainConfig:
    preset: str = "small"
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    gap_weight: float = 0.0  # weight of the lid and lip gap term (gap_l1) beside the point L1 (the mouth stage's)
    seed: int = 0


FACEREG_TRAIN_PRESETS = {
    "small": FaceRegTrainConfig(),
    "tiny": FaceRegTrainConfig(preset="tiny", batch=4),
    "eye": FaceRegTrainConfig(preset="eye", batch=64),
    "tiny-eye": FaceRegTrainConfig(preset="tiny-eye", batch=4),
    "mouth": FaceRegTrainConfig(preset="mouth", batch=64, gap_weight=2.0),
    "tiny-mouth": FaceRegTrainConfig(preset="tiny-mouth", batch=4),
}


def weighted_point_l1(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over points of |pred - target| summed over x, y, z, each point weighted."""
    return ((pred - target).abs().sum(-1) * weights).sum(-1).mean() / weights.sum()


def gap_l1(pred: torch.Tensor, target: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Mean over `pairs` (P, 2) of |pred gap - target gap| summed over x, y, a gap being the
    first point minus the second: how far a lid or lip gap is from the teacher's, whatever
    the pair's common shift."""
    if not len(pairs):
        return pred.new_zeros(())
    upper, lower = pairs[:, 0], pairs[:, 1]
    error = (pred[:, upper, :2] - pred[:, lower, :2]) - (target[:, upper, :2] - target[:, lower, :2])
    return error.abs().sum(-1).mean()


class FaceRegTrainer(TimedTrainer):
    """Trains FOLDER/facereg.safetensors for `minutes` (total over resumes)."""

    desc = "DenseFaceReg"
    state_file = FACEREG_STATE

    def __init__(self, samples: FaceSamples, folder: Path, config: FaceRegTrainConfig, minutes: float,
                 resume: bool = False, progress: bool = True, people: list[str] | None = None) -> None:
        self.samples, self.folder, self.minutes, self.progress = samples, folder, minutes, progress
        self.people = people or sorted(set(samples.people))
        self.step, self.elapsed = 0, 0.0
        state = load_state(folder / FACEREG_STATE, keys=("facereg", "optimizer", "config")) if resume else None
        self.config = self.saved_config(state, FaceRegTrainConfig, facereg_config) if state else config
        torch.manual_seed(self.config.seed)  # the starting weights (a resumed run's are restored below)
        self.net = DenseFaceReg(facereg_config(self.config.preset))
        model = load_face_model()
        self.mirror = mirror_permutation(model)
        self.part = self.net.config.part
        self.rows = None if self.part == "face" else PART_INDICES[self.part](model)
        weights = point_weights(model)
        self.weights = torch.from_numpy(weights if self.rows is None else weights[self.rows[0]])  # a mouth's lips weigh more
        self.gaps = torch.from_numpy(gap_positions(np.arange(len(weights)) if self.rows is None else self.rows[0]))
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.augment = Augment() if self.part == "face" else PART_AUGMENT
        if state:
            self.restore(state, "facereg")
        else:
            self.net.mean_shape.copy_(self._mean_target())
        self.rng = np.random.default_rng(self.config.seed + self.step)

    def _mean_target(self) -> torch.Tensor:
        """The mean crop-normalised shape of (up to 256) unaugmented samples: the network's start."""
        picks = np.linspace(0, len(self.samples.images) - 1, min(256, len(self.samples.images))).astype(int)
        return self._batch(np.random.default_rng(0), None, picks)[1].mean(0)

    def _batch(self, rng: np.random.Generator, augment: Augment | None, picks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's inputs and targets of these samples (FaceSamples.examples)."""
        crops, targets = self.samples.examples(picks, rng, self.net.config, augment, self.mirror, self.rows)
        return to_input(crops), torch.from_numpy(targets)

    def train_step(self) -> dict[str, float]:
        self.cosine_lr(self.config.lr)
        inputs, targets = self._batch(self.rng, self.augment, self.rng.integers(len(self.samples.images), size=self.config.batch))
        pred = self.net(inputs)
        l1, gap = weighted_point_l1(pred, targets, self.weights), gap_l1(pred, targets, self.gaps)
        loss = l1 + self.config.gap_weight * gap
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"l1": float(l1.detach()), "gap": float(gap.detach())}

    def save(self) -> None:
        """The resumable state, the code-free weights with their JSON, and a sample sheet."""
        save_state(self.folder / FACEREG_STATE, {
            "facereg": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "step": self.step, "elapsed": self.elapsed, "config": asdict(self.config),
        })
        save_network(self.folder, self.net, FACEREG_FILE, FACEREG_META, {
            "preset": self.config.preset, "step": self.step, "train_minutes": round(self.elapsed / 60, 2),
            "people": self.people, "frames": len(self.samples.images),
            **({PARTS[self.part].key: self.rows.tolist()} if self.rows is not None else {}),
        })
        self.write_samples(self._sample_sheet())

    @torch.no_grad()
    def _sample_sheet(self, count: int = 6) -> np.ndarray:
        """Augmented training crops with the teacher's points (green) and the network's (red), BGR."""
        rng = np.random.default_rng(1)
        inputs, targets = self._batch(rng, self.augment, rng.integers(len(self.samples.images), size=count))
        was_training = self.net.training
        self.net.eval()
        preds = self.net(inputs)
        self.net.train(was_training)
        tiles = []
        for image, target, pred in zip(inputs, targets, preds):
            tile = cv2.cvtColor(((image.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
            tile = cv2.resize(tile, (256, 256 * tile.shape[0] // tile.shape[1]))
            for points, colour in ((target, (0, 200, 0)), (pred, (0, 0, 255))):
                for x, y in (points[:, :2].numpy() * 128 + (128, tile.shape[0] / 2)).astype(int):
                    cv2.circle(tile, (int(x), int(y)), 1, colour, -1)
            tiles.append(tile)
        return cv2.hconcat(tiles)
