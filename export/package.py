"""A live-only copy of an avatar: what `h2h live` needs and nothing of the training data
(no frames, no conditioning cache, no training state), for shipping or sharing."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..engines.base import EngineError
from ..models.avatar import TRACK_KEYS, Avatar, AvatarError
from ..models.io_utils import atomic_write_npz
from .onnx_export import INT8_FILE, INT8_META, META_FILE, ONNX_FILE


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def package_live(avatar: Avatar, out_dir: Path, overwrite: bool = False) -> Path:
    """out_dir/<name>/: avatar.json, identity, per-frame poses (no landmarks), thumbnail, ONNX."""
    onnx = avatar.path / "engines" / ONNX_FILE
    if not onnx.is_file():
        raise EngineError(f"avatar '{avatar.name}' has no ONNX engine; run h2h export {avatar.name} first")
    target = out_dir / avatar.name
    if target.exists() and not overwrite:
        raise AvatarError(f"{target} exists; pass --overwrite to replace it")
    tmp = out_dir / f".{avatar.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "engines").mkdir(parents=True)
    manifest = dict(avatar.manifest, live_only=True)
    (tmp / "avatar.json").write_text(json.dumps(manifest, indent=2))
    shutil.copy2(avatar.path / "identity.npz", tmp / "identity.npz")
    shutil.copy2(avatar.path / "thumbnail.png", tmp / "thumbnail.png")
    tracks = {k: avatar.tracks[k] for k in TRACK_KEYS}
    tracks["landmarks"] = np.zeros_like(tracks["landmarks"], dtype=np.float16)  # not needed live
    atomic_write_npz(tmp / "tracks.npz", **tracks)
    for name in (ONNX_FILE, META_FILE, INT8_FILE, INT8_META):
        if (avatar.path / "engines" / name).is_file():
            shutil.copy2(avatar.path / "engines" / name, tmp / "engines" / name)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target
