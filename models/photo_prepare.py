"""`h2h prepare PHOTO.jpg [MORE.jpg ...]`: one or a few photos -> a one-shot avatar folder
(Free-HeadGAN path, issue 15).

Each photo is cropped around its face the way video frames are, tracked, segmented and
rendered as the source conditioning; the identity is each photo's canonical shape with its
expression removed (Free-HeadGAN eq. 1-2), averaged over the photos. The folder has the
video avatar's layout (frames, masks, conditioning, tracks, identity, thumbnail) plus
"kind": "oneshot" in avatar.json; `finish` writes its engines before the folder appears in
the library, so a half-made avatar is never listed.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from .avatar import FORMAT_VERSION, FRAME_NAME, AvatarError, AvatarWriter, write_manifest
from .geometry.conditioning import track_face
from .geometry.crop import CROP_LIFT, CROP_SCALE, face_box
from .geometry.face_model import FaceModel, load_face_model
from .geometry.fitting import fit_frame
from .geometry.retarget import CameraStats, Subject, tracked_mesh
from .geometry.tracker import MediaPipeTracker
from .io_utils import atomic_write_npz
from .library import ensure_writable
from .manifest import CONDITIONING_VERSION, MAX_PHOTOS
from .prepare import RESOLUTION, STILL_SUFFIXES, PrepareResult, render_conditioning
from .segmentation import ForegroundSegmenter

MAX_PIXELS = 40_000_000  # a larger image is refused before it is decoded in full
PHOTO_FPS = 30.0  # the rate a one-shot avatar is driven at
PHOTO_TRANSLATION_STD = (6.0, 6.0, 1.0)  # a photo has no head motion of its own; a typical clip's spread


@dataclass
class PhotoSources:
    """What the one-shot generator is bound to: the crops and their conditioning (K, S, S, 3),
    their foreground masks (K, S, S) uint8 and their posed meshes (K, V, 3), which the driver's
    correspondence is rendered onto."""

    images: np.ndarray
    nmfc: np.ndarray
    eyes: np.ndarray
    subject: Subject
    masks: np.ndarray
    meshes: np.ndarray


def is_photo(path: str | Path) -> bool:
    return Path(path).suffix.lower() in STILL_SUFFIXES


def read_photo(path: Path) -> np.ndarray:
    """RGB uint8 of a still image; AvatarError when it is not one or is too large."""
    if not path.is_file():
        raise AvatarError(f"{path.name}: no such file")
    data = np.fromfile(path, np.uint8)
    header = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if header is None:
        raise AvatarError(f"{path.name}: not a readable image (JPEG, PNG, BMP, WebP or TIFF)")
    if header.shape[0] * header.shape[1] * 64 > MAX_PIXELS:
        raise AvatarError(f"{path.name}: image is larger than {MAX_PIXELS // 1_000_000} megapixels; resize it first")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise AvatarError(f"{path.name}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def photo_crop(rgb: np.ndarray, tracker: MediaPipeTracker, size: int = RESOLUTION) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The square crop around the face framed as video crops are (padded by repeating the
    border where the photo is too tight), resized to `size`, and its box in the photo."""
    marks = tracker.track(rgb)
    if marks is None:
        raise AvatarError("no face found")
    x0, y0, x1, y1 = face_box(marks)
    side = int(round(max(x1 - x0, y1 - y0) * CROP_SCALE))
    x = int(round((x0 + x1) / 2 - side / 2))
    y = int(round((y0 + y1) / 2 - CROP_LIFT * side - side / 2))
    h, w = rgb.shape[:2]
    pad = max(0, -x, -y, x + side - w, y + side - h)
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else rgb
    crop = padded[y + pad : y + pad + side, x + pad : x + pad + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC), (x, y, side)


def photo_subject(model: FaceModel, landmarks: np.ndarray) -> Subject:
    """Identity = canonical shape minus its projected expression, averaged over the photos;
    camera: the photos' mean scale and position with a typical clip's spread."""
    neutrals, scales, translations = [], [], []
    for marks in landmarks:
        fit = fit_frame(marks, model)
        neutrals.append(fit.canonical - model.expression_offset(fit.expression))
        scales.append(fit.pose.scale)
        translations.append(fit.pose.translation)
    camera = CameraStats(float(np.mean(scales)), 0.0, np.mean(translations, 0), np.asarray(PHOTO_TRANSLATION_STD))
    return Subject(np.mean(neutrals, 0).astype(np.float32), camera, eye_detail=True)


def track_photos(photos: list[Path], model: FaceModel, folder: Path):
    """Crops and their foreground masks (both saved), landmarks, pupils and crop boxes of every photo."""
    crops, masks, landmarks, pupils, boxes = [], [], [], [], []
    with MediaPipeTracker(video_mode=False) as tracker, ForegroundSegmenter() as segmenter:
        for i, path in enumerate(photos):
            rgb = read_photo(path)
            try:
                crop, box = photo_crop(rgb, tracker)
            except AvatarError as exc:
                raise AvatarError(f"{path.name}: {exc}; use a photo where one face is clearly visible") from None
            face = track_face(tracker, crop, model)
            if face is None:
                raise AvatarError(f"{path.name}: the face is too small or too turned to track; use a photo where it is larger and frontal")
            cv2.imwrite(str(folder / "frames" / FRAME_NAME.format(i)), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            masks.append(segmenter.mask(crop))
            cv2.imwrite(str(folder / "masks" / FRAME_NAME.format(i)), masks[-1])
            crops.append(crop)
            landmarks.append(face.landmarks)
            pupils.append(face.pupils)
            boxes.append(box)
    return np.stack(crops), np.stack(masks), np.stack(landmarks), np.stack(pupils), boxes


def read_back(folder: Path, kind: str, count: int) -> np.ndarray:
    return np.stack([cv2.cvtColor(cv2.imread(str(folder / "conditioning" / kind / FRAME_NAME.format(i))), cv2.COLOR_BGR2RGB)
                     for i in range(count)])


def prepare_photos(
    photos: list[str | Path], library: Path, name: str, finish: Callable[[Path, PhotoSources], None],
    overwrite: bool = False,
) -> PrepareResult:
    """The one-shot avatar NAME from `photos`; `finish(folder, sources)` writes its engines."""
    started = time.perf_counter()
    paths = [Path(p) for p in photos]
    if not 1 <= len(paths) <= MAX_PHOTOS:
        raise AvatarError(f"give 1 to {MAX_PHOTOS} photos of the person, not {len(paths)}")
    ensure_writable(library)
    writer = AvatarWriter(library, name, overwrite, discard_training=True)
    try:
        model = load_face_model()
        crops, masks, landmarks, pupils, boxes = track_photos(paths, model, writer.tmp)
        k = len(paths)
        subject = photo_subject(model, landmarks)
        valid = np.ones(k, bool)
        fits = render_conditioning(writer.tmp, landmarks, pupils, valid, subject, model, brows=True)
        tracks = dict(landmarks=landmarks, valid=valid, pupils=pupils, **fits)
        atomic_write_npz(writer.tmp / "tracks.npz", **tracks)
        atomic_write_npz(writer.tmp / "identity.npz", neutral=subject.neutral)
        thumb = cv2.resize(crops[0], (128, 128), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(writer.tmp / "thumbnail.png"), cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR))
        x, y, side = boxes[0]
        write_manifest(writer.tmp, {
            "format": FORMAT_VERSION,
            "kind": "oneshot",
            "name": name,
            "source_video": ", ".join(p.name for p in paths)[:255],
            "fps": PHOTO_FPS,
            "crop_box": [max(x, 0), max(y, 0), side],
            "resolution": RESOLUTION,
            "counts": {"frames": k, "valid": k, "dropped": 0, "train": k, "test": 0},
            "split": {"train": [0, k], "test": [0, k]},
            "camera": subject.camera.to_dict(),
            "expression_dims": model.num_expressions,
            "conditioning": CONDITIONING_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
        meshes = np.stack([tracked_mesh(model, subject, tracks, i) for i in range(k)])
        finish(writer.tmp, PhotoSources(crops, read_back(writer.tmp, "nmfc", k), read_back(writer.tmp, "eyes", k), subject, masks, meshes))
        path, _ = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return PrepareResult(path, k, k, 0, time.perf_counter() - started)
