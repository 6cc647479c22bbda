"""Checkpoints: atomic training state (resume) and a code-free generator file (inference).

Avatar folders travel between people, so nothing here unpickles code: training state loads
with torch.load(weights_only=True) and the generator ships as safetensors + JSON.
"""
from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load, save

from .avatar_files import MAX_MODEL_BYTES, AvatarError, AvatarFiles
from .io_utils import atomic_write_bytes
from .networks import GeneratorConfig, SequentialGenerator
from .networks.upsampler import Upsampler, upsampler_config

STATE_FILE = "state.pt"
GENERATOR_FILE = "generator.safetensors"
GENERATOR_META = "generator.json"
UPSAMPLER_FILE = "upsampler.safetensors"
UPSAMPLER_META = "upsampler.json"


class CheckpointError(Exception):
    """A missing, corrupt or incompatible checkpoint; the message says what to do."""


def save_state(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: Path, files: AvatarFiles | None = None, keys: tuple[str, ...] = ("generator", "train_config")) -> dict:
    """A training state holding `keys`; read through the avatar's checked accessor when it
    lives in one."""
    relative = path.relative_to(files.root).as_posix() if files is not None else None
    if not (files.is_file(relative) if files is not None else path.is_file()):
        raise CheckpointError(f"no checkpoint at {path}; train first or drop --resume")
    try:
        data = files.read_bytes(relative) if files is not None else path.read_bytes()
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except AvatarError:
        raise
    except Exception as exc:  # torch raises many kinds for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable h2h checkpoint ({type(exc).__name__}); delete it or train again") from exc
    if not isinstance(state, dict) or any(key not in state for key in keys):
        raise CheckpointError(f"{path}: not an h2h training checkpoint")
    return state


def save_network(folder: Path, net: torch.nn.Module, weights_file: str, meta_file: str, meta: dict) -> None:
    """A network's weights (safetensors, no code) + JSON (its config dataclass and `meta`)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(folder / weights_file, save(tensors))
    info = {"config": dataclasses.asdict(net.config), **meta}
    atomic_write_bytes(folder / meta_file, json.dumps(info, indent=2).encode())


def save_generator(folder: Path, generator: SequentialGenerator, meta: dict) -> None:
    """generator.safetensors (weights) + generator.json (config and training facts)."""
    save_network(folder, generator, GENERATOR_FILE, GENERATOR_META, meta)


# bounds on generator.json's numbers: a config from a shared folder must not build a network
# that exhausts memory or time (the largest preset, paper, is well inside them)
CONFIG_BOUNDS = {
    "ngf": (1, 256), "n_down": (0, 6), "max_channels": (1, 1024), "n_blocks_encoder": (0, 32),
    "n_blocks_decoder": (0, 32), "unshuffle_factor": (1, 16), "up_kernel": (1, 11), "head_kernel": (1, 11),
    "expansion": (1, 8), "window": (1, 8), "prev": (0, 8), "cond_channels": (1, 16),
}


def generator_config_from_dict(data: object) -> GeneratorConfig:
    if not isinstance(data, dict):
        raise CheckpointError("generator config is not a JSON object; train again")
    fields = {f.name for f in dataclasses.fields(GeneratorConfig)}
    unknown = set(data) - fields
    if unknown:
        raise CheckpointError(f"generator config has unknown fields {sorted(unknown)}; is it from a newer h2h?")
    for name, (low, high) in CONFIG_BOUNDS.items():
        value = data.get(name, low)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise CheckpointError(f"generator config field '{name}' is {value!r}, expected a whole number in {low}..{high}")
    for name in ("mask", "skips", "depthwise", "gate_empty_prev"):
        if not isinstance(data.get(name, False), bool):
            raise CheckpointError(f"generator config field '{name}' is {data[name]!r}, expected true or false")
    try:
        return GeneratorConfig(**data)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"generator config is invalid ({exc})") from exc


def read_model_meta(files: AvatarFiles, meta_file: str, weights_file: str, missing: str) -> dict:
    """A model's JSON metadata (an object), read through the checked accessor; `missing` is the
    error when it or its weights file is absent. Check it before reading the weights."""
    if not files.is_file(meta_file) or not files.is_file(weights_file):
        raise CheckpointError(missing)
    meta = files.read_json(meta_file)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{files.root / meta_file}: not a JSON object")
    return meta


def read_weights(files: AvatarFiles, weights_file: str) -> dict[str, torch.Tensor]:
    """safetensors weights (no code runs), size-bounded, through the checked accessor."""
    try:
        tensors = load(files.read_bytes(weights_file, MAX_MODEL_BYTES))
    except AvatarError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{files.root / weights_file}: not a readable weights file ({type(exc).__name__})") from exc
    return tensors


def _load_model(files: AvatarFiles, run: str, weights_file: str, meta_file: str, what: str, missing: str,
                build: Callable[[dict], torch.nn.Module]) -> tuple[torch.nn.Module, dict]:
    """A network from checkpoints/<run>/ (see load_network)."""
    folder = files.root / "checkpoints" / run
    return load_network(files, f"checkpoints/{run}/{weights_file}", f"checkpoints/{run}/{meta_file}", what,
                        missing.replace("{folder}", str(folder)), build)


def load_network(files: AvatarFiles, weights: str, meta_file: str, what: str, missing: str,
                 build: Callable[[dict], torch.nn.Module]) -> tuple[torch.nn.Module, dict]:
    """A network's metadata, the network `build` makes from it, and its weights (eval mode);
    `missing` is the error when a file is absent, any mismatch a CheckpointError naming `what`."""
    meta = read_model_meta(files, meta_file, weights, missing)
    folder = (files.root / weights).parent
    try:
        net = build(meta)
        net.load_state_dict(read_weights(files, weights))
    except (CheckpointError, AvatarError):
        raise
    except Exception as exc:
        raise CheckpointError(f"{folder}: {what} files are damaged or do not fit this version ({type(exc).__name__}); train again") from exc
    return net.eval(), meta


def load_generator(files: AvatarFiles, run: str) -> tuple[SequentialGenerator, dict]:
    """The trained generator (eval mode) and its metadata from checkpoints/<run>/."""
    return _load_model(files, run, GENERATOR_FILE, GENERATOR_META, "generator", "no trained generator in {folder}; run h2h train first",
                       lambda meta: SequentialGenerator(generator_config_from_dict(meta.get("config"))))


def has_upsampler(files: AvatarFiles, run: str) -> bool:
    return files.is_file(f"checkpoints/{run}/{UPSAMPLER_FILE}") and files.is_file(f"checkpoints/{run}/{UPSAMPLER_META}")


def load_upsampler(files: AvatarFiles, run: str) -> tuple[Upsampler, dict]:
    """The run's learned 2x upsampler (eval mode) and its metadata from checkpoints/<run>/."""
    missing = "no upsampler in {folder}; run h2h upsampler " + files.root.name + " --video VIDEO first"
    return _load_model(files, run, UPSAMPLER_FILE, UPSAMPLER_META, "upsampler", missing,
                       lambda meta: Upsampler(upsampler_config(str(meta.get("preset")))))
