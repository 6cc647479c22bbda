"""The avatar folder (DESIGN 6): writing it atomically and reading it as untrusted input."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from .geometry.fitting import Pose
from .geometry.retarget import CameraStats, Subject
from .library import LibraryError, avatar_dir, check_name

FORMAT_VERSION = 1
FRAME_NAME = "{:06d}.png"
# avatar.json fields and their types; anything else is ignored, anything missing rejected.
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "format": int,
    "name": str,
    "source_video": str,
    "fps": (int, float),
    "crop_box": list,
    "resolution": int,
    "counts": dict,
    "split": dict,
    "camera": dict,
    "created": str,
}
COUNT_KEYS = ("frames", "valid", "dropped", "train", "test")
TRACK_KEYS = ("landmarks", "valid", "scale", "rotation", "translation", "expression", "pupils", "mouth")


class AvatarError(Exception):
    """A missing, foreign or damaged avatar folder; the message says what to do."""


def validate_manifest(data: object, where: Path) -> dict:
    """Check avatar.json against SCHEMA; raise AvatarError naming the first problem."""
    if not isinstance(data, dict):
        raise AvatarError(f"{where}: avatar.json must hold a JSON object")
    for key, kind in SCHEMA.items():
        if key not in data:
            raise AvatarError(f"{where}: avatar.json lacks '{key}'; re-run h2h prepare")
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise AvatarError(f"{where}: avatar.json field '{key}' has the wrong type")
    if data["format"] != FORMAT_VERSION:
        raise AvatarError(f"{where}: avatar format {data['format']} is not supported (expected {FORMAT_VERSION})")
    check_name(data["name"])
    for key in COUNT_KEYS:
        if not isinstance(data["counts"].get(key), int):
            raise AvatarError(f"{where}: avatar.json counts.{key} must be an integer")
    for key in ("train", "test"):
        bounds = data["split"].get(key)
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int) for b in bounds)):
            raise AvatarError(f"{where}: avatar.json split.{key} must be [start, end]")
    return data


def safe_child(root: Path, relative: str) -> Path:
    """root/relative, refusing anything that escapes root (shared folders are untrusted)."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise AvatarError(f"{root}: path {relative!r} escapes the avatar folder")
    return path


@dataclass
class Avatar:
    """A prepared avatar folder, validated on open."""

    path: Path
    manifest: dict

    @classmethod
    def open(cls, library: Path, name: str) -> "Avatar":
        try:
            path = avatar_dir(library, name)
        except LibraryError as exc:
            raise AvatarError(str(exc)) from exc
        return cls.open_path(path)

    @classmethod
    def open_path(cls, path: Path) -> "Avatar":
        manifest_file = path / "avatar.json"
        if not manifest_file.is_file():
            raise AvatarError(f"no avatar at {path}; run h2h prepare VIDEO --name {path.name} first")
        try:
            data = json.loads(manifest_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AvatarError(f"{manifest_file}: unreadable ({exc}); re-run h2h prepare") from exc
        return cls(path, validate_manifest(data, path))

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def resolution(self) -> int:
        return self.manifest["resolution"]

    @property
    def fps(self) -> float:
        return float(self.manifest["fps"])

    @cached_property
    def tracks(self) -> dict[str, np.ndarray]:
        """Per-frame arrays of tracks.npz (no pickles allowed)."""
        try:
            with np.load(safe_child(self.path, "tracks.npz"), allow_pickle=False) as data:
                tracks = {k: data[k] for k in TRACK_KEYS}
        except (OSError, KeyError, ValueError) as exc:
            raise AvatarError(f"{self.path}: tracks.npz is missing or damaged ({exc}); re-run h2h prepare") from exc
        n = self.manifest["counts"]["frames"]
        if any(len(v) != n for v in tracks.values()):
            raise AvatarError(f"{self.path}: tracks.npz does not match avatar.json's frame count")
        return tracks

    @cached_property
    def subject(self) -> Subject:
        """Neutral identity and camera statistics used by retargeting."""
        try:
            with np.load(safe_child(self.path, "identity.npz"), allow_pickle=False) as data:
                neutral = data["neutral"].astype(np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise AvatarError(f"{self.path}: identity.npz is missing or damaged ({exc}); re-run h2h prepare") from exc
        return Subject(neutral, CameraStats.from_dict(self.manifest["camera"]))

    def split_indices(self, split: str) -> np.ndarray:
        """Valid frame indices of the 'train' or 'test' split."""
        start, end = self.manifest["split"][split]
        idx = np.arange(start, end)
        return idx[self.tracks["valid"][idx]]

    def poses(self, indices: np.ndarray) -> list[Pose]:
        t = self.tracks
        return [Pose(float(t["scale"][i]), t["rotation"][i], t["translation"][i]) for i in indices]

    def frame_path(self, kind: str, index: int) -> Path:
        """frames/, conditioning/nmfc/ or conditioning/eyes/ image of a frame."""
        folder = {"frame": "frames", "nmfc": "conditioning/nmfc", "eyes": "conditioning/eyes"}[kind]
        return safe_child(self.path, f"{folder}/{FRAME_NAME.format(index)}")

    def read_image(self, kind: str, index: int) -> np.ndarray:
        """RGB uint8 image of a frame."""
        image = cv2.imread(str(self.frame_path(kind, index)), cv2.IMREAD_COLOR)
        if image is None:
            raise AvatarError(f"{self.path}: {kind} image {index} is missing; re-run h2h prepare")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_manifest(folder: Path, manifest: dict) -> None:
    validate_manifest(manifest, folder)
    (folder / "avatar.json").write_text(json.dumps(manifest, indent=2))


class AvatarWriter:
    """Build an avatar in a temporary folder inside the library; `commit` renames it into
    place, so an interrupted run never replaces (or half-writes) a good avatar."""

    def __init__(self, library: Path, name: str, overwrite: bool = False) -> None:
        self.final = avatar_dir(library, name)
        if self.final.exists() and not overwrite:
            raise AvatarError(f"avatar '{name}' already exists in {library}; pass --overwrite to replace it")
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=library))
        for sub in ("frames", "conditioning/nmfc", "conditioning/eyes", "checkpoints", "engines"):
            (self.tmp / sub).mkdir(parents=True, exist_ok=True)

    def commit(self) -> Path:
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{self.tmp.name[-8:]}")
            self.final.rename(old)
        self.tmp.rename(self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
