"""The declared schema of an avatar folder: avatar.json (pydantic) and the arrays of
tracks.npz / identity.npz (shapes and dtypes), checked on every open (DESIGN 6)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .avatar_files import AvatarError
from .library import NAME_PATTERN

FORMAT_VERSION = 1
RESOLUTIONS = tuple(range(64, 1025, 64))  # generators work on multiples of 64 (stem and trunk strides)
NUM_VERTICES = 468  # the face model's mesh (MediaPipe's 468 face points)
NUM_LANDMARKS = 478  # MediaPipe Face Mesh with irises

Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
Range = tuple[Count, Count]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class CameraBlock(Strict):
    """The target's camera statistics used by head retargeting."""

    scale_mean: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    scale_std: NonNegative
    translation_mean: tuple[Finite, Finite, Finite]
    translation_std: tuple[NonNegative, NonNegative, NonNegative]


class Counts(Strict):
    frames: Annotated[int, Field(ge=1)]
    valid: Count
    dropped: Count
    train: Count
    test: Count


class Split(Strict):
    train: Range
    test: Range


class Manifest(Strict):
    """avatar.json; fields not listed here are ignored, missing ones rejected."""

    format: Literal[1]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    source_video: Annotated[str, Field(max_length=255)]
    fps: Annotated[float, Field(gt=0, le=240, allow_inf_nan=False)]
    crop_box: tuple[Count, Count, Annotated[int, Field(ge=1)]]
    resolution: int
    counts: Counts
    split: Split
    camera: CameraBlock
    created: Annotated[str, Field(max_length=64)]
    expression_dims: Annotated[int, Field(ge=1, le=256)] | None = None
    live_only: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution {self.resolution} is not one of {RESOLUTIONS[0]}..{RESOLUTIONS[-1]} in steps of 64")
        c = self.counts
        if c.valid + c.dropped != c.frames:
            raise ValueError(f"counts: valid + dropped ({c.valid} + {c.dropped}) != frames ({c.frames})")
        if c.train + c.test > c.valid:
            raise ValueError(f"counts: train + test ({c.train} + {c.test}) > valid ({c.valid})")
        for key, (start, end) in (("train", self.split.train), ("test", self.split.test)):
            if not start < end <= c.frames:
                raise ValueError(f"split.{key} [{start}, {end}] must be a non-empty range within the {c.frames} frames")
        return self


def parse_manifest(text: bytes | str, where: str) -> Manifest:
    """Validate avatar.json's text (strict JSON types); AvatarError names the first bad field."""
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            message = f"field '{'.'.join(str(p) for p in error['loc'])}': {message}"
        raise AvatarError(f"{where}: {message}; re-run h2h prepare or ask the sender for a fresh package") from None


@dataclass(frozen=True)
class ArraySpec:
    """dtype kind ('f' float, 'b' bool) and shape; 'n' = frames, 'k' = expression dims."""

    kind: str
    shape: tuple[int | str, ...]


TRACKS: dict[str, ArraySpec] = {
    "landmarks": ArraySpec("f", ("n", NUM_LANDMARKS, 3)),
    "valid": ArraySpec("b", ("n",)),
    "scale": ArraySpec("f", ("n",)),
    "rotation": ArraySpec("f", ("n", 3, 3)),
    "translation": ArraySpec("f", ("n", 3)),
    "expression": ArraySpec("f", ("n", "k")),
    "pupils": ArraySpec("f", ("n", 2, 2)),
    "mouth": ArraySpec("f", ("n", 2)),
}
IDENTITY: dict[str, ArraySpec] = {"neutral": ArraySpec("f", (NUM_VERTICES, 3))}


def check_arrays(arrays: dict[str, np.ndarray], specs: dict[str, ArraySpec], sizes: dict[str, int], where: str) -> dict[str, np.ndarray]:
    """The declared arrays, each of the declared kind, shape and finite; AvatarError otherwise."""
    checked = {}
    for key, spec in specs.items():
        if key not in arrays:
            raise AvatarError(f"{where}: lacks the array '{key}'; re-run h2h prepare")
        array = arrays[key]
        shape = tuple(sizes.get(d, -1) if isinstance(d, str) else d for d in spec.shape)
        wrong_shape = array.ndim != len(shape) or any(want >= 0 and got != want for got, want in zip(array.shape, shape))
        if array.dtype.kind != spec.kind or wrong_shape:
            expected = "x".join(str(sizes.get(d, d)) for d in spec.shape)
            raise AvatarError(f"{where}: '{key}' is {array.dtype} {array.shape}, expected {'bool' if spec.kind == 'b' else 'float'} {expected}; re-run h2h prepare")
        if spec.kind == "f" and not np.isfinite(array).all():
            raise AvatarError(f"{where}: '{key}' holds NaN or infinite values; re-run h2h prepare")
        checked[key] = array
    return checked
