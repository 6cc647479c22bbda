"""Atomic file writes: a crash never leaves a half-written file in place of a good one."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it. The file gets the
    usual permissions (0666 minus the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_image(path: str | Path, rgb: np.ndarray, jpeg_quality: int = 90) -> None:
    """An RGB uint8 image to `path`, encoded by its suffix (.png, .jpg), written atomically."""
    import cv2

    path = Path(path)
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise OSError(f"could not encode {path.name} (give it a .png or .jpg name)")
    atomic_write_bytes(path, data.tobytes())


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def atomic_write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    atomic_write_bytes(path, npz_bytes(arrays))
