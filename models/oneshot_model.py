"""The person-generic one-shot generator's weights: where they ship and how they load (code
free: safetensors and a JSON that names the preset)."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from .avatar_files import AvatarFiles
from .checkpoint import load_network
from .networks.oneshot import OneShotConfig, OneShotGenerator, oneshot_config

ONESHOT_FILE = "oneshot.safetensors"
ONESHOT_META = "oneshot.json"
SHIPPED_ONESHOT = Path(__file__).resolve().parent.parent / "assets" / "oneshot"


def load_oneshot(folder: Path = SHIPPED_ONESHOT) -> tuple[OneShotGenerator, dict]:
    """The generator (eval mode) and its metadata from a folder made by h2h train-oneshot."""
    missing = f"no one-shot generator in {folder}; run h2h train-oneshot (or scripts/make_oneshot.sh)"
    return load_network(AvatarFiles(folder), ONESHOT_FILE, ONESHOT_META, "one-shot generator", missing, stored_generator)


def stored_generator(meta: dict) -> OneShotGenerator:
    """The generator its metadata describes: the stored layout (fields it lacks take today's
    defaults), so a preset changed later does not change a trained model."""
    stored = meta.get("config")
    if not isinstance(stored, dict):
        return OneShotGenerator(oneshot_config(str(meta.get("preset"))))
    known = {f.name for f in fields(OneShotConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known}
    return OneShotGenerator(OneShotConfig(**values))
