"""The avatar folder (DESIGN 6): writing it atomically and reading it as untrusted input."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .avatar_files import CHECKSUMS_FILE, AvatarError, AvatarFiles
from .geometry.fitting import Pose
from .io_utils import current_umask
from .geometry.face_model import FaceModel
from .geometry.retarget import CameraStats, Subject, tracked_mesh
from .library import PARTIAL_MARK, LibraryError, avatar_dir
from .manifest import FLOW, FORMAT_VERSION, IDENTITY, TRACK_BYTES_PER_FRAME, TRACKS, Manifest, load_arrays, parse_manifest

__all__ = ["FORMAT_VERSION", "FRAME_NAME", "TRACK_KEYS", "Avatar", "AvatarError", "AvatarFiles", "AvatarWriter", "write_manifest"]
FRAME_NAME = "{:06d}.png"
TRACK_KEYS = tuple(TRACKS)
IMAGE_FOLDERS = {"frame": "frames", "nmfc": "conditioning/nmfc", "eyes": "conditioning/eyes", "mask": "masks"}
KEPT_ON_OVERWRITE = ("checkpoints", "engines")  # training belongs to the person, not to the frames


@dataclass
class Avatar:
    """A prepared (or packaged) avatar folder, validated on open; every read is checked."""

    files: AvatarFiles
    manifest: dict
    schema: Manifest

    @classmethod
    def open(cls, library: Path, name: str, arrays: bool = True) -> "Avatar":
        try:
            path = avatar_dir(library, name)
        except LibraryError as exc:
            raise AvatarError(str(exc)) from exc
        return cls.open_path(path, arrays)

    @classmethod
    def open_path(cls, path: Path, arrays: bool = True) -> "Avatar":
        """Open and validate; `arrays` also checks tracks.npz and identity.npz now (listings
        skip them to stay fast; loading an avatar to use it never does)."""
        files = AvatarFiles(path)
        if not files.is_file("avatar.json"):
            raise AvatarError(f"no avatar at {path}; run h2h prepare VIDEO --name {path.name} first")
        text = files.read_bytes("avatar.json", 1 << 20)
        schema = parse_manifest(text, str(files.root / "avatar.json"))
        if schema.name != files.root.name:
            raise AvatarError(f"{files.root}: avatar.json names the avatar '{schema.name}' but the folder is '{files.root.name}'; rename one to match")
        if schema.live_only or files.is_file(CHECKSUMS_FILE):
            files.load_checksums()
        avatar = cls(files, json.loads(text), schema)
        if arrays:
            avatar.tracks, avatar.subject  # noqa: B018 - validated now, not halfway through a job
        return avatar

    @property
    def path(self) -> Path:
        return self.files.root

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def resolution(self) -> int:
        return self.schema.resolution

    @property
    def fps(self) -> float:
        return self.schema.fps

    @property
    def brows(self) -> bool:
        """Whether this avatar's eye sketches carry the brows (conditioning version 2); its
        generator was trained on what prepare drew, so every renderer follows the avatar."""
        return self.schema.conditioning >= 2

    @property
    def live_only(self) -> bool:
        """A package: poses, identity and engines, without frames or training state."""
        return self.schema.live_only

    @property
    def oneshot(self) -> bool:
        """Made from one or a few photos (h2h prepare PHOTO.jpg): driven by the person-generic generator."""
        return self.schema.kind == "oneshot"

    @cached_property
    def tracks(self) -> dict[str, np.ndarray]:
        """Per-frame arrays of tracks.npz, checked against the declared shapes."""
        n = self.schema.counts.frames
        data = self.files.read_bytes("tracks.npz", n * TRACK_BYTES_PER_FRAME + (1 << 20))
        sizes = {"n": n, **({"k": self.schema.expression_dims} if self.schema.expression_dims else {})}
        tracks = load_arrays(data, TRACKS, sizes, str(self.path / "tracks.npz"))
        valid = int(tracks["valid"].sum())
        if valid != self.schema.counts.valid:
            raise AvatarError(f"{self.path / 'tracks.npz'}: {valid} valid frames, avatar.json says {self.schema.counts.valid}; re-run h2h prepare")
        train = slice(*self.schema.split.train)
        if not tracks["valid"][train].any():
            raise AvatarError(f"{self.path}: no valid frame in the train split; re-run h2h prepare")
        if (tracks["scale"][tracks["valid"]] <= 0).any():
            raise AvatarError(f"{self.path / 'tracks.npz'}: a valid frame has a non-positive scale; re-run h2h prepare")
        return tracks

    @cached_property
    def subject(self) -> Subject:
        """Neutral identity and camera statistics used by retargeting."""
        arrays = load_arrays(self.files.read_bytes("identity.npz", 1 << 20), IDENTITY, {}, str(self.path / "identity.npz"))
        camera = self.schema.camera
        stats = CameraStats(camera.scale_mean, camera.scale_std, np.asarray(camera.translation_mean), np.asarray(camera.translation_std))
        return Subject(arrays["neutral"].astype(np.float32), stats, eye_detail=self.schema.conditioning >= 3)

    def split_indices(self, split: str) -> np.ndarray:
        """Valid frame indices of the 'train' or 'test' split."""
        start, end = getattr(self.schema.split, split)
        idx = np.arange(start, end)
        return idx[self.tracks["valid"][idx]]

    def poses(self, indices: np.ndarray) -> list[Pose]:
        t = self.tracks
        return [Pose(float(t["scale"][i]), t["rotation"][i], t["translation"][i]) for i in indices]

    def photo_meshes(self, model: FaceModel, count: int) -> list[np.ndarray]:
        """The posed meshes (V, 3) of a one-shot avatar's `count` photos (its frames), which its
        generator's correspondence input is rendered onto."""
        if not self.oneshot or count > self.schema.counts.frames or not self.tracks["valid"][:count].all():
            raise AvatarError(f"avatar '{self.name}': its engine expects {count} photos and the avatar does not have them; "
                              f"run h2h prepare again on its photos")
        return [tracked_mesh(model, self.subject, self.tracks, i) for i in range(count)]

    def require_frames(self, what: str) -> None:
        """Refuse a package (no frames or conditioning) for work that needs the training data."""
        if self.live_only:
            raise AvatarError(f"avatar '{self.name}' is a live-only package (no frames); {what} needs the full avatar folder from h2h prepare")

    def require_video(self, what: str) -> None:
        """Refuse a package, and a one-shot avatar (photos, no video), for work that needs a video's frames."""
        self.require_frames(what)
        if self.oneshot:
            raise AvatarError(f"avatar '{self.name}' was made from a photo; {what} needs an avatar prepared from a video")

    def read_image(self, kind: str, index: int) -> np.ndarray:
        """RGB uint8 frame, NMFC or eye image of a frame."""
        relative = f"{IMAGE_FOLDERS[kind]}/{FRAME_NAME.format(index)}"
        if not self.files.is_file(relative):
            self.require_frames(f"reading {kind} images")
            raise AvatarError(f"{self.path}: {kind} image {index} is missing; re-run h2h prepare")
        return self.files.read_image(relative)

    def has_masks(self) -> bool:
        """Whether prepare stored foreground masks (avatars made before them have none)."""
        train = self.split_indices("train")
        return len(train) > 0 and self.files.is_file(f"masks/{FRAME_NAME.format(int(train[0]))}")

    def read_mask(self, index: int) -> np.ndarray:
        """uint8 (H, W) foreground mask of a frame, 255 = person."""
        return self.read_image("mask", index)[..., 0]

    def flow(self) -> np.ndarray:
        """conditioning/flow.npz: (N, H/2, W/2, 2) optical flow between consecutive frames."""
        n, half = self.schema.counts.frames, self.resolution // 2
        data = self.files.read_bytes("conditioning/flow.npz", n * half * half * 16 + (1 << 20))
        return load_arrays(data, FLOW, {"n": n, "h": half}, str(self.path / "conditioning/flow.npz"))["flow"]

    def thumbnail(self) -> bytes | None:
        """thumbnail.png's bytes, or None when it is missing or refused."""
        try:
            return self.files.read_bytes("thumbnail.png", 4 << 20)
        except AvatarError:
            return None


def write_manifest(folder: Path, manifest: dict) -> None:
    text = json.dumps(manifest, indent=2)
    parse_manifest(text, str(folder / "avatar.json"))
    (folder / "avatar.json").write_text(text)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partials(library: Path, name: str) -> list[Path]:
    """Remove .<name>.partial-<pid>-* folders left by killed runs (their process is gone)."""
    removed = []
    for folder in library.glob(f".{name}{PARTIAL_MARK}*"):
        pid = folder.name.removeprefix(f".{name}{PARTIAL_MARK}").split("-")[0]
        if pid.isdigit() and pid_alive(int(pid)) and int(pid) != os.getpid():
            continue  # another prepare of this name is running
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    for old in library.glob(f".{name}.old-*"):  # a replace killed between its two renames
        if not (library / name).exists():
            old.rename(library / name)
        else:
            shutil.rmtree(old, ignore_errors=True)
    return removed


class AvatarWriter:
    """Build an avatar in a temporary folder inside the library; `commit` renames it into
    place, so an interrupted run never replaces (or half-writes) a good avatar. Replacing an
    avatar keeps its checkpoints/ and engines/ unless `discard_training`."""

    def __init__(self, library: Path, name: str, overwrite: bool = False, discard_training: bool = False) -> None:
        self.final = avatar_dir(library, name)
        self.discard_training = discard_training
        self.cleaned = clean_partials(library, name)
        if self.final.is_symlink():
            raise AvatarError(f"{self.final} is a symbolic link; remove it or choose another --name")
        if self.final.exists() and not overwrite:
            raise AvatarError(f"avatar '{name}' already exists in {library}; pass --overwrite to replace it")
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{name}{PARTIAL_MARK}{os.getpid()}-", dir=library))
        os.chmod(self.tmp, 0o777 & ~current_umask())
        for sub in ("frames", "masks", "conditioning/nmfc", "conditioning/eyes", "checkpoints", "engines"):
            (self.tmp / sub).mkdir(parents=True, exist_ok=True)

    def training_to_keep(self) -> list[str]:
        """Sub-folders of the avatar being replaced that hold training or engines."""
        if self.discard_training or not self.final.is_dir():
            return []
        return [sub for sub in KEPT_ON_OVERWRITE if (self.final / sub).is_dir() and not (self.final / sub).is_symlink() and any((self.final / sub).iterdir())]

    def commit(self) -> tuple[Path, list[str]]:
        """Rename the new folder into place; returns it and the sub-folders kept from the old one."""
        kept = self.training_to_keep()
        for sub in kept:
            shutil.rmtree(self.tmp / sub)
            (self.final / sub).rename(self.tmp / sub)
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{self.tmp.name[-8:]}")
            self.final.rename(old)
        self.tmp.rename(self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final, kept

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
