"""The declared schema of an avatar folder: avatar.json (pydantic) and the arrays of
tracks.npz / identity.npz (shapes and dtypes), checked on every open (DESIGN 6)."""
from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .avatar_files import AvatarError
from .library import NAME_PATTERN

FORMAT_VERSION = 1
CONDITIONING_VERSIONS = {
    1: "eye sketches of lids and pupils",
    2: "eye sketches with brows",
    3: "eye sketches with brows, mesh with the eye detail the expression basis misses",
}
CONDITIONING_VERSION = max(CONDITIONING_VERSIONS)  # what prepare writes
RESOLUTIONS = tuple(range(64, 1025, 64))  # generators work on multiples of 64 (stem and trunk strides)
NUM_VERTICES = 468  # the face model's mesh (MediaPipe's 468 face points)
NUM_LANDMARKS = 478  # MediaPipe Face Mesh with irises
MAX_PHOTOS = 8  # a one-shot avatar's photos, each a source of its generator
MAX_FRAMES = 1_000_000  # over nine hours at 30 fps
TRACK_BYTES_PER_FRAME = 8 << 10  # landmarks 5.6 kB + the rest, uncompressed

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
    frames: Annotated[int, Field(ge=1, le=MAX_FRAMES)]
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
    conditioning: Annotated[int, Field(ge=1, le=CONDITIONING_VERSION)] = 1  # absent: made before brows
    live_only: bool = False
    kind: Literal["video", "oneshot"] = "video"  # oneshot: made from photos (h2h prepare PHOTO.jpg)

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
        if error["loc"] == ("name",) and error["type"] == "string_pattern_mismatch":
            message = f"{error['input']!r} is not a plain name (1-64 letters, digits, '_', '-' or '.', starting with a letter or digit)"
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
FLOW: dict[str, ArraySpec] = {"flow": ArraySpec("f", ("n", "h", "h", 2))}  # h = resolution / 2


def _header(member) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an .npy header, before any data is read."""
    version = np.lib.format.read_magic(member)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(member)
    return shape, dtype


def _expected(spec: ArraySpec, sizes: dict[str, int], shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape the spec asks for; a size not given (e.g. 'k') is taken from the array."""
    if len(shape) != len(spec.shape):
        return None
    return tuple(sizes.get(d, got) if isinstance(d, str) else d for d, got in zip(spec.shape, shape))


def load_arrays(data: bytes, specs: dict[str, ArraySpec], sizes: dict[str, int], where: str) -> dict[str, np.ndarray]:
    """The declared arrays of an .npz archive, each checked (kind, shape, no pickles) from its
    header before its data is read, then for finite values; AvatarError otherwise."""
    if data[:6] == b"\x93NUMPY":
        raise AvatarError(f"{where}: holds a single array, not an .npz archive; re-run h2h prepare")
    arrays = {}
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        for key, spec in specs.items():
            if f"{key}.npy" not in archive.namelist():
                raise AvatarError(f"{where}: lacks the array '{key}'; re-run h2h prepare")
            with archive.open(f"{key}.npy") as member:
                shape, dtype = _header(member)
            if dtype.hasobject:
                raise AvatarError(f"{where}: '{key}' holds pickled (object) arrays, which are never loaded; re-run h2h prepare")
            expected = _expected(spec, sizes, shape)
            if dtype.kind != spec.kind or shape != expected:
                wanted = "x".join(str(sizes.get(d, d)) for d in spec.shape)
                raise AvatarError(f"{where}: '{key}' is {dtype} {shape}, expected {'bool' if spec.kind == 'b' else 'float'} {wanted}; re-run h2h prepare")
            with archive.open(f"{key}.npy") as member:
                arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
    except AvatarError:
        raise
    except (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
        raise AvatarError(f"{where}: not a readable .npz archive ({type(exc).__name__}: {exc}); re-run h2h prepare") from exc
    for key, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise AvatarError(f"{where}: '{key}' holds NaN or infinite values; re-run h2h prepare")
    return arrays
