"""The one checked way into an avatar folder (DESIGN 6, 12).

Avatar folders travel between people, so every file the product reads from one (or writes
into one) goes through `AvatarFiles`: relative paths only, nothing that leaves the folder,
no symbolic links anywhere on the way, regular files only (a FIFO would hang a read), and,
for a packaged avatar, a sha256 per file that every read checks.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

CHECKSUMS_FILE = "checksums.json"
MAX_JSON_BYTES = 1 << 20
MAX_MODEL_BYTES = 1 << 30  # ONNX and safetensors generators (the paper net is ~0.3 GB)
MAX_IMAGE_BYTES = 16 << 20


class AvatarError(Exception):
    """A missing, foreign or damaged avatar folder; the message says what to do."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def relative_parts(relative: str) -> tuple[str, ...]:
    """The components of a relative POSIX path; anything absolute, empty or with '..' is refused."""
    pure = PurePosixPath(relative)
    parts = pure.parts
    if not relative or pure.is_absolute() or "\\" in relative or any(p in ("", ".", "..") for p in parts):
        raise AvatarError(f"path {relative!r} is not a plain path inside the avatar folder")
    return parts


class AvatarFiles:
    """Checked reads and write destinations inside one avatar folder."""

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if root.is_symlink():
            raise AvatarError(f"{root}: the avatar folder is a symbolic link; copy the folder itself into the library")
        self.root = root.absolute()
        self.checksums: dict[str, str] | None = None

    # ----- paths ----------------------------------------------------------------------
    def path(self, relative: str) -> Path:
        """root/relative after checking that no existing component is a symbolic link."""
        current = self.root
        for part in relative_parts(relative):
            current = current / part
            try:
                mode = current.lstat().st_mode
            except FileNotFoundError:
                break  # the rest does not exist yet (a destination), so it cannot be a link
            if stat.S_ISLNK(mode):
                raise AvatarError(f"{self.root}: {relative} is (or passes through) a symbolic link; avatar folders may not contain links")
        return self.root.joinpath(*relative_parts(relative))

    def is_file(self, relative: str) -> bool:
        """A regular file (not a link, not a FIFO) at relative."""
        try:
            return stat.S_ISREG(self.path(relative).lstat().st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def is_dir(self, relative: str) -> bool:
        try:
            return stat.S_ISDIR(self.path(relative).lstat().st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def names(self, relative: str) -> list[str]:
        """Sorted entry names of a sub-folder ([] when it does not exist)."""
        if not self.is_dir(relative):
            return []
        return sorted(p.name for p in self.path(relative).iterdir())

    # ----- reads ----------------------------------------------------------------------
    def _open(self, relative: str) -> int:
        """A read-only descriptor of the file, each folder on the way opened relative to the
        last without following links (a link swapped in after the check cannot redirect it)."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        if os.open not in os.supports_dir_fd:  # Windows: the checked path is all there is
            return os.open(self.path(relative), flags)
        *folders, name = relative_parts(relative)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for folder in folders:
                inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = inner
            return os.open(name, flags, dir_fd=fd)
        finally:
            os.close(fd)

    def read_bytes(self, relative: str, limit: int | None = None) -> bytes:
        """The file's bytes, opened without following links; checked against the package's
        sha256 when the folder is a package; `limit` caps the size (a huge file is refused,
        not read)."""
        path = self.path(relative)
        if self.checksums is not None and relative not in self.checksums:
            raise AvatarError(f"{path}: not part of the package (added after packaging); remove it or ask the sender for a fresh package")
        try:
            fd = self._open(relative)
        except FileNotFoundError as exc:
            raise AvatarError(f"{path}: missing") from exc
        except OSError as exc:
            raise AvatarError(f"{path}: cannot be opened ({exc.strerror or exc}); avatar folders hold regular files only, no links") from exc
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise AvatarError(f"{path}: not a regular file; avatar folders hold regular files only")
            if limit is not None and info.st_size > limit:
                raise AvatarError(f"{path}: too large ({info.st_size} bytes, at most {limit})")
            data = f.read()
        if self.checksums is not None and sha256_bytes(data) != self.checksums[relative]:
            raise AvatarError(f"{path}: changed after packaging (sha256 differs); ask the sender for a fresh package")
        return data

    def read_json(self, relative: str) -> object:
        data = self.read_bytes(relative, MAX_JSON_BYTES)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise AvatarError(f"{self.root / relative}: not valid JSON ({type(exc).__name__})") from exc

    def read_image(self, relative: str) -> np.ndarray:
        """RGB uint8 image."""
        data = np.frombuffer(self.read_bytes(relative, MAX_IMAGE_BYTES), np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise AvatarError(f"{self.root / relative}: not a readable image")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    # ----- packages -------------------------------------------------------------------
    def load_checksums(self) -> None:
        """Read checksums.json and check every listed file now; later reads check again."""
        if not self.is_file(CHECKSUMS_FILE):
            raise AvatarError(f"{self.root}: a live-only package without {CHECKSUMS_FILE}; ask the sender for a fresh package (h2h package)")
        data = self.read_json(CHECKSUMS_FILE)
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise AvatarError(f"{self.root / CHECKSUMS_FILE}: malformed; ask the sender for a fresh package")
        for name in files:
            relative_parts(name)
        self.checksums = files
        for name in files:
            self.read_bytes(name)
