"""The multi-person base (Head2HeadFS 3.3) on disk: base.safetensors (the few-shot generator
with its identity embedder, and the discriminators, in fp16) and base.json (shapes, people,
training facts). Read like everything shared: safetensors and checked JSON, no code."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from .avatar_files import AvatarError, AvatarFiles
from .checkpoint import CheckpointError, read_model_meta, read_weights
from .io_utils import atomic_write_bytes
from .library import LibraryError, check_name
from .networks import FewShotConfig, FewShotGenerator
from .train_config import TrainConfig, config_from_dict, config_to_dict

BASES_ENV = "H2H_BASES"
BASE_FILE = "base.safetensors"
BASE_META = "base.json"
SHIPPED_BASE = Path(__file__).resolve().parent.parent / "assets" / "base"
FEWSHOT_BOUNDS = {"identity_dim": (1, 1024), "embedder_width": (1, 64)}
FOLDABLE_LAYOUTS = ("lite", "tiny")  # layouts whose modulations fold into plain convs


@dataclass
class Base:
    """A loaded base: its generator (eval mode), the discriminators' weights and its facts."""

    generator: FewShotGenerator
    discriminators: dict[str, torch.Tensor]
    train_config: TrainConfig
    meta: dict

    @torch.no_grad()
    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) frames of one person in [-1, 1] -> their identity vector (identity_dim,),
        unit length as in training (IdentityEmbedder.embed)."""
        return self.generator.embedder.embed(frames[None])[0]


def bases_folder(given: str | None, library: Path) -> Path:
    """Where pretrained bases live: `given` (--bases), else $H2H_BASES, else `bases` beside
    the avatar library."""
    chosen = given or os.environ.get(BASES_ENV)
    return Path(chosen).expanduser() if chosen else library.parent / "bases"


def find_base(source: str, bases: Path) -> Path | None:
    """The base folder --init SOURCE names: "base" (the one shipped in assets/base), a base
    in `bases` by name, or a path (with a '/') to a folder holding base.json; None when SOURCE
    is none of them (then it may name an avatar)."""
    if source == "base":
        return SHIPPED_BASE
    if "/" in source or os.sep in source:
        candidate = Path(source).expanduser()
    elif check_name_quietly(source):
        candidate = bases / source / "main"
    else:
        return None
    return candidate if (candidate / BASE_META).is_file() and not candidate.is_symlink() else None


def check_name_quietly(name: str) -> bool:
    try:
        check_name(name)
    except LibraryError:
        return False
    return True


def save_base(folder: Path, generator: FewShotGenerator, discriminators: nn.Module, config: TrainConfig, meta: dict) -> None:
    tensors = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    tensors.update({f"discriminators.{k}": v for k, v in discriminators.state_dict().items()})
    half = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(folder / BASE_FILE, save(half))
    info = {"fewshot": dataclasses.asdict(generator.fewshot), "train_config": config_to_dict(config), **meta}
    atomic_write_bytes(folder / BASE_META, json.dumps(info, indent=2).encode())


def fewshot_from_dict(data: object) -> FewShotConfig:
    if not isinstance(data, dict) or set(data) != {f.name for f in dataclasses.fields(FewShotConfig)}:
        raise CheckpointError("base.json: 'fewshot' does not describe a few-shot generator of this h2h version")
    if data["generator"] not in FOLDABLE_LAYOUTS:
        raise CheckpointError(f"base.json: generator layout {data['generator']!r} is not one of {FOLDABLE_LAYOUTS}")
    for name, (low, high) in FEWSHOT_BOUNDS.items():
        value = data[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise CheckpointError(f"base.json: '{name}' is {value!r}, expected a whole number in {low}..{high}")
    return FewShotConfig(**data)


def read_base_meta(files: AvatarFiles) -> tuple[dict, FewShotConfig]:
    """base.json (checked) and the few-shot layout it declares, without reading the weights."""
    meta = read_model_meta(files, BASE_META, BASE_FILE, f"no base in {files.root}; run h2h pretrain, or pass --init none to train from scratch")
    return meta, fewshot_from_dict(meta.get("fewshot"))


def load_base(folder: Path) -> Base:
    """A base from its folder (the shipped one is SHIPPED_BASE)."""
    files = AvatarFiles(folder)
    meta, fewshot = read_base_meta(files)
    try:
        generator = FewShotGenerator(fewshot)
        config = config_from_dict(meta["train_config"])
        people = meta.get("people", [])
        if not isinstance(people, list) or not all(isinstance(p, str) for p in people):
            raise CheckpointError(f"{folder / BASE_META}: 'people' is not a list of names")
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in read_weights(files, BASE_FILE).items()}
        generator.load_state_dict({k.removeprefix("generator."): v for k, v in tensors.items() if k.startswith("generator.")})
    except (CheckpointError, AvatarError):
        raise
    except Exception as exc:
        raise CheckpointError(f"{folder}: base files are damaged or do not fit this version ({type(exc).__name__}); pretrain again") from exc
    discriminators = {k.removeprefix("discriminators."): v for k, v in tensors.items() if k.startswith("discriminators.")}
    return Base(generator.eval(), discriminators, config, meta)
