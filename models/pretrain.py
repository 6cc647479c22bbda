"""`h2h pretrain`: the Head2HeadFS initialisation stage (paper 003, 3.3) on many people.

One few-shot generator for everyone: each sequence is drawn from one person, whose identity
vector the embedder computes from M other frames of theirs; D_I scores "real and this
person" with a learnable row per person, and embedding matching pulls the identity vector
towards that row. Runs, resumes, checkpoints and samples like `h2h train`, into a base folder
(bases/NAME) that `h2h train --init NAME` fine-tunes from.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .avatar import Avatar, AvatarError
from .avatar_files import AvatarFiles
from .base_model import save_base
from .checkpoint import CheckpointError
from .dataset import Augment, AvatarFrames, Batch, to_tensor
from .geometry.face_model import load_face_model
from .library import LibraryError, check_name
from .networks import FEWSHOT_PRESETS, FewShotGenerator, count_parameters, fewshot_config
from .train import Trainer
from .train_config import RunOptions, TrainConfig

log = logging.getLogger(__name__)


class PeopleFrames:
    """The train splits of several avatars; each sequence comes from one person (drawn
    uniformly, so a short clip counts as much as a long one), with M random frames of theirs
    (from anywhere in their train split) for the identity embedder."""

    def __init__(self, avatars: list[Avatar], references: int, progress: bool = True) -> None:
        model = load_face_model()
        self.people = [AvatarFrames(avatar, model, "train", progress) for avatar in avatars]
        self.references = references

    def __len__(self) -> int:
        return sum(len(p) for p in self.people)

    def sample(self, rngs: list[np.random.Generator], length: int, augment: Augment, rare: float = 0.0) -> Batch:
        items = []
        for rng in rngs:
            person = int(rng.integers(len(self.people)))
            frames = self.people[person]
            item = frames.sample([rng], length, augment, rare, identity=person)
            chosen = rng.choice(len(frames), size=self.references, replace=len(frames) < self.references)
            item.references = to_tensor(frames.frames[chosen])[None]
            items.append(item)
        return Batch(*(torch.cat([getattr(it, name) for it in items]) for name in Batch.__dataclass_fields__))


class BaseTrainer(Trainer):
    """The Trainer's schedule, state and outputs, on many people with the few-shot networks."""

    def __init__(self, avatars: list[Avatar], bases: Path, name: str, config: TrainConfig, options: RunOptions) -> None:
        if not config.projection or config.preset not in FEWSHOT_PRESETS:
            raise CheckpointError("pretraining needs a few-shot preset (--preset base)")
        names = [a.name for a in avatars]
        if len(set(names)) != len(names) or len(names) < 2:
            raise CheckpointError("pretraining needs at least two different avatars")
        for avatar in avatars:
            avatar.require_video("pretraining")
        if len({a.resolution for a in avatars}) > 1:
            raise CheckpointError("pretraining needs avatars of one resolution; "
                                  + ", ".join(f"{a.name} is {a.resolution} px" for a in avatars))
        try:
            check_name(name, "base name")
        except LibraryError as exc:
            raise CheckpointError(str(exc)) from exc
        self.avatars, self.base_name = avatars, name
        bases.mkdir(parents=True, exist_ok=True)
        self._setup(config, options, AvatarFiles(bases), f"{name}/{options.run}")
        self.data = PeopleFrames(avatars, config.references, progress=options.progress and self.world.main)
        self._finish_setup()

    @property
    def people(self) -> list[str]:
        return [a.name for a in self.avatars]

    @property
    def name(self) -> str:
        return self.base_name

    def _make_generator(self) -> nn.Module:
        return FewShotGenerator(fewshot_config(self.config.preset))

    def _identity_rows(self) -> int:
        return len(self.avatars)

    def _announce(self) -> None:
        log.info(
            "pretraining base %s (%s) on %d people (%s): G %.2f M params with the embedder, D %.2f M, %d train frames",
            self.name, self.config.preset, len(self.avatars), ", ".join(self.people),
            count_parameters(self.generator) / 1e6, count_parameters(self.discriminators) / 1e6, len(self.data),
        )

    def state(self) -> dict:
        return {**super().state(), "people": self.people}

    def save(self) -> None:
        if not self.world.main:
            return
        self.save_state_only()
        meta = {
            "people": self.people,
            "step": self.step,
            "train_minutes": round(self.elapsed / 60, 2),
            "resolution": self.avatars[0].resolution,
            "conditioning": min(a.schema.conditioning for a in self.avatars),
        }
        save_base(self.folder, self.inference_generator, self.discriminators, self.config, meta)

    def _check_resumable(self, state: dict) -> None:
        super()._check_resumable(state)
        if state.get("people") != self.people:
            raise CheckpointError(
                f"--resume: base {self.name} was trained on {state.get('people')}; pass the same --avatars in the same order"
            )

    def _init_from(self, source: str) -> None:
        raise CheckpointError("h2h pretrain starts from scratch or --resume; --init is for h2h train")


def open_people(library: Path, names: list[str]) -> list[Avatar]:
    try:
        return [Avatar.open(library, n) for n in names]
    except AvatarError as exc:
        raise CheckpointError(str(exc)) from exc
