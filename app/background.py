"""Background replacement with the generator's foreground mask (Head2HeadFS 4): keep the
avatar's own background, blur it, or put the person on a solid colour or an image."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

KINDS = ("keep", "blur", "color", "image")
BLUR_SIGMA = 6.0  # pixels at the avatar's 256x256
MAX_IMAGE_PIXELS = 50_000_000


def no_mask_problem(avatar: str) -> str:
    """Why an avatar keeps its own background whatever is chosen."""
    return (f"{avatar}'s generator predicts no foreground mask (trained before masks), so its background "
            "cannot be replaced; fine-tune it from the base (h2h train NAME --init base)")


class BackgroundError(ValueError):
    """A background the user asked for that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Background:
    """What goes behind the person. `image` is RGB uint8 (any size; it is scaled to cover)."""

    kind: str = "keep"
    color: tuple[int, int, int] = (0, 255, 0)
    image: np.ndarray | None = None
    label: str = "keep"

    @property
    def replaces(self) -> bool:
        return self.kind != "keep"


def parse_background(text: str) -> Background:
    """keep | blur | color:RRGGBB | PATH to an image file."""
    if text in ("keep", "blur"):
        return Background(text, label=text)
    if text.startswith("color:"):
        code = text.removeprefix("color:").removeprefix("#")
        if len(code) != 6 or any(c not in "0123456789abcdefABCDEF" for c in code):
            raise BackgroundError(f"background colour {text!r} is not color:RRGGBB (e.g. color:00FF00 for green)")
        rgb = tuple(int(code[i : i + 2], 16) for i in (0, 2, 4))
        return Background("color", color=rgb, label=f"color:{code.upper()}")
    return Background("image", image=read_background_image(Path(text)), label=Path(text).name)


def read_background_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise BackgroundError(f"background {str(path)!r} is not keep, blur, color:RRGGBB or an image file that exists")
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        raise BackgroundError(f"{path}: not a readable image (PNG or JPEG, under 50 megapixels)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale and centre-crop `image` to fill width x height."""
    width, height = size
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    resized = cv2.resize(image, (max(width, round(w * scale)), max(height, round(h * scale))), interpolation=cv2.INTER_AREA)
    y, x = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return resized[y : y + height, x : x + width]


class Compositor:
    """frame + mask -> frame on the chosen background; the background can change at any time
    (the GUI switches it while running). Images are scaled once per size."""

    def __init__(self, background: Background | None = None) -> None:
        self.background = background or Background()
        self._cache: tuple[np.ndarray, tuple[int, int], np.ndarray] | None = None

    def set(self, background: Background) -> None:
        self.background = background

    def __call__(self, frame: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        background = self.background
        if not background.replaces or mask is None:
            return frame
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        behind = self._behind(frame, alpha, background)
        return (frame * alpha + behind * (1.0 - alpha) + 0.5).astype(np.uint8)

    def _behind(self, frame: np.ndarray, alpha: np.ndarray, background: Background) -> np.ndarray:
        h, w = frame.shape[:2]
        if background.kind == "color":
            return np.asarray(background.color, np.float32)
        if background.kind == "blur":
            # blur the background alone (normalised by the blurred coverage), so the person
            # does not bleed into it as a halo
            rest = 1.0 - alpha
            blurred = cv2.GaussianBlur(frame.astype(np.float32) * rest, (0, 0), BLUR_SIGMA)
            weight = cv2.GaussianBlur(rest[..., 0], (0, 0), BLUR_SIGMA)[..., None]
            return np.where(weight > 1e-3, blurred / np.maximum(weight, 1e-3), frame.astype(np.float32))
        cached = self._cache  # (the image itself, size, its scaled copy): compared by identity
        if cached is None or cached[0] is not background.image or cached[1] != (w, h):
            cached = self._cache = (background.image, (w, h), cover(background.image, (w, h)).astype(np.float32))
        return cached[2]
