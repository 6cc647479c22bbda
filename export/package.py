"""A live-only copy of an avatar: what `h2h live` needs and nothing of the training data
(no frames, no conditioning cache, no training state, never an engine built for a machine),
for shipping or sharing. Every file's sha256 goes into checksums.json, which every later
read of the package checks."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..engines.base import EngineError
from ..engines.select import INT8_FILE, INT8_META, ONNX_FILE, ONNX_META
from ..engines.upsampler_engine import UPSAMPLER_INT8, UPSAMPLER_INT8_META, UPSAMPLER_ONNX, UPSAMPLER_ONNX_META
from ..models.avatar import TRACK_KEYS, Avatar, AvatarError
from ..models.avatar_files import CHECKSUMS_FILE, sha256_bytes
from ..models.io_utils import atomic_write_bytes, current_umask, npz_bytes
from ..models.library import LibraryError, avatar_dir

ENGINE_FILES = (ONNX_FILE, ONNX_META, INT8_FILE, INT8_META, UPSAMPLER_ONNX, UPSAMPLER_ONNX_META, UPSAMPLER_INT8, UPSAMPLER_INT8_META)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def package_contents(avatar: Avatar) -> dict[str, bytes]:
    """relative path -> bytes of everything the package holds, each read through the checked
    accessor (a symbolic link or a file leaving the folder is an error, never copied)."""
    files = avatar.files
    if not files.is_file(f"engines/{ONNX_FILE}"):
        raise EngineError(f"avatar '{avatar.name}' has no ONNX engine; run h2h export {avatar.name} first")
    manifest = dict(avatar.manifest, live_only=True)
    tracks = {k: avatar.tracks[k] for k in TRACK_KEYS}
    if not avatar.oneshot:  # not needed live; a one-shot avatar's photos' meshes (its eyes) are made from them
        tracks["landmarks"] = np.zeros_like(tracks["landmarks"], dtype=np.float16)
    contents = {
        "avatar.json": json.dumps(manifest, indent=2).encode(),
        "identity.npz": files.read_bytes("identity.npz"),
        "thumbnail.png": files.read_bytes("thumbnail.png", 4 << 20),
        "tracks.npz": npz_bytes(tracks),
    }
    avatar.subject  # noqa: B018 - checks identity.npz before it is shipped
    for name in ENGINE_FILES:
        if files.path(f"engines/{name}").exists():  # path() refuses a symbolic link
            contents[f"engines/{name}"] = files.read_bytes(f"engines/{name}")
    return contents


def checksums_json(contents: dict[str, bytes]) -> bytes:
    """checksums.json: the sha256 of every file of the package."""
    files = {relative: sha256_bytes(data) for relative, data in sorted(contents.items())}
    return json.dumps({"format": 1, "files": files}, indent=2).encode()


def package_live(avatar: Avatar, out_dir: Path, overwrite: bool = False) -> Path:
    """out_dir/<name>/, written in a temporary folder and renamed into place."""
    try:
        target = avatar_dir(out_dir, avatar.name)
    except LibraryError as exc:
        raise AvatarError(str(exc)) from exc
    if target.is_symlink() or (target.exists() and not overwrite):
        raise AvatarError(f"{target} exists; pass --overwrite to replace it")
    if target.exists() and not (target / "avatar.json").is_file():
        raise AvatarError(f"{target} exists and is not an avatar; choose another --out")
    contents = package_contents(avatar)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{avatar.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    folder_mode = 0o777 & ~current_umask()
    for relative, data in contents.items():
        (tmp / relative).parent.mkdir(parents=True, exist_ok=True, mode=folder_mode)
        atomic_write_bytes(tmp / relative, data)
    atomic_write_bytes(tmp / CHECKSUMS_FILE, checksums_json(contents))
    for folder in (tmp, tmp / "engines"):
        folder.chmod(folder_mode)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target
