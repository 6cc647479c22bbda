"""`h2h prepare`: a target video -> an avatar folder (DESIGN 3.1 and 6)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .avatar import FORMAT_VERSION, FRAME_NAME, Avatar, AvatarError, AvatarWriter, write_manifest
from .manifest import CONDITIONING_VERSION, CONDITIONING_VERSIONS
from .geometry.conditioning import ConditioningRenderer, overlay
from .geometry.face_model import FaceModel, load_face_model
from .geometry.retarget import Retargeter, SourceCalibration, Subject
from .geometry.tracker import NUM_LANDMARKS
from .io_utils import atomic_write_npz
from .library import ensure_writable
from .segmentation import ForegroundSegmenter
from .source import locate_crop, tracked_crops
from .video import VideoInfo, VideoWriter, probe

RESOLUTION = 256
FLOW_SCALE = 2  # flow is stored at RESOLUTION / FLOW_SCALE, in full-resolution pixels
MIN_VALID_FRAMES = 6
STILL_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


@dataclass
class PrepareResult:
    path: Path
    frames: int
    valid: int
    dropped: int
    seconds: float
    preview: Path | None = None
    kept: tuple[str, ...] = ()
    claimed_frames: int = 0
    conditioning: int = CONDITIONING_VERSION

    def summary(self) -> str:
        lines = [
            f"prepared {self.path.name}: {self.frames} frames, {self.valid} valid, {self.dropped} dropped "
            f"(no face), {self.seconds:.1f} s -> {self.path}"
        ]
        if self.kept:
            lines.append(f"kept {' and '.join(f'{k}/' for k in self.kept)} of the avatar it replaced (pass --discard-training to drop them)")
        if self.conditioning < CONDITIONING_VERSION:
            lines.append(f"kept conditioning version {self.conditioning}, the one its training was made on; "
                         f"--discard-training renders version {CONDITIONING_VERSION} ({CONDITIONING_VERSIONS[CONDITIONING_VERSION]})")
        return "\n".join(lines)

    def warnings(self) -> list[str]:
        if self.claimed_frames > self.frames:
            return [f"warning: the video's header claims {self.claimed_frames} frames but only {self.frames} decoded; the file may be truncated"]
        return []


def track_crops(info: VideoInfo, box: tuple[int, int, int], model: FaceModel, folder: Path, tracker: str = "mediapipe"):
    """Crop, save, segment and track every frame; landmarks/pupils are NaN where the face was lost."""
    landmarks, pupils = [], []
    with ForegroundSegmenter() as segmenter:
        for i, (crop, face) in enumerate(tracked_crops(info, box, RESOLUTION, model, tracker=tracker)):
            cv2.imwrite(str(folder / "frames" / FRAME_NAME.format(i)), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(folder / "masks" / FRAME_NAME.format(i)), segmenter.mask(crop))
            landmarks.append(face.landmarks if face else np.full((NUM_LANDMARKS, 3), np.nan, np.float32))
            pupils.append(face.pupils if face else np.full((2, 2), np.nan, np.float32))
    return np.stack(landmarks), np.stack(pupils)


def dense_flow(frames_dir: Path, count: int) -> np.ndarray:
    """DIS optical flow between consecutive crops, flow[t] with I_t(x) ~ I_{t-1}(x + flow[t](x)).

    Stored (N, H/2, W/2, 2) float16 in full-resolution pixels; flow[0] is zero.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    small = RESOLUTION // FLOW_SCALE
    flows = np.zeros((count, small, small, 2), np.float16)
    prev = None
    for i in tqdm(range(count), desc="optical flow", unit="f", leave=False):
        gray = cv2.imread(str(frames_dir / FRAME_NAME.format(i)), cv2.IMREAD_GRAYSCALE)
        if prev is not None:
            flow = dis.calc(gray, prev, None)
            flows[i] = cv2.resize(flow, (small, small), interpolation=cv2.INTER_AREA).astype(np.float16)
        prev = gray
    return flows


def render_conditioning(folder: Path, landmarks, pupils, valid, subject: Subject, model: FaceModel, brows: bool = True) -> dict:
    """NMFC + eye images of each valid frame's model reconstruction; per-frame fit arrays."""
    n = len(landmarks)
    k = model.num_expressions
    fits = {
        "scale": np.zeros(n, np.float32),
        "rotation": np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)),
        "translation": np.zeros((n, 3), np.float32),
        "expression": np.zeros((n, k), np.float32),
        "mouth": np.zeros((n, 2), np.float32),
    }
    renderer = ConditioningRenderer(model, RESOLUTION, brows=brows)
    retargeter = Retargeter(model, subject, mode="self")
    mouth = model.topology.mouth
    try:
        for i in tqdm(np.flatnonzero(valid), desc="rendering", unit="f", leave=False):
            face = retargeter.retarget(landmarks[i], pupils[i], subject)
            nmfc, eyes = renderer.render(face)
            for kind, image in (("nmfc", nmfc), ("eyes", eyes)):
                path = folder / "conditioning" / kind / FRAME_NAME.format(i)
                cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            fits["scale"][i] = face.pose.scale
            fits["rotation"][i] = face.pose.rotation
            fits["translation"][i] = face.pose.translation
            fits["expression"][i] = face.expression
            fits["mouth"][i] = landmarks[i, mouth, :2].mean(0)
    finally:
        renderer.close()
    return fits


def write_preview(folder: Path, valid: np.ndarray, fps: float, rows: int = 4) -> Path:
    """preview/contact_sheet.png and preview/preview.mp4: crop | NMFC | eyes | overlay."""
    out = folder / "preview"
    out.mkdir(exist_ok=True)

    def panel(i: int) -> np.ndarray:
        read = lambda sub: cv2.cvtColor(cv2.imread(str(folder / sub / FRAME_NAME.format(i))), cv2.COLOR_BGR2RGB)
        crop = read("frames")
        if not valid[i]:
            blank = np.zeros_like(crop)
            return np.concatenate([crop, blank, blank, crop], 1)
        nmfc, eyes = read("conditioning/nmfc"), read("conditioning/eyes")
        return np.concatenate([crop, nmfc, eyes, overlay(crop, nmfc, eyes)], 1)

    with VideoWriter(out / "preview.mp4", fps, (RESOLUTION * 4, RESOLUTION)) as writer:
        for i in tqdm(range(len(valid)), desc="preview", unit="f", leave=False):
            writer.write(panel(i))
    picks = np.flatnonzero(valid)[np.linspace(0, valid.sum() - 1, rows).round().astype(int)]
    sheet = np.concatenate([panel(i) for i in picks], 0)
    cv2.imwrite(str(out / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out / "contact_sheet.png"


def split_bounds(n: int) -> dict[str, list[int]]:
    """Train on the first two thirds, test on the last third (as in the papers)."""
    cut = int(math.ceil(n * 2 / 3))
    return {"train": [0, cut], "test": [cut, n]}


def refuse_still_image(info: VideoInfo, decoded: int | None = None) -> None:
    """Refuse a still image (by name, by its header, or by the `decoded` frame count) with a note."""
    if info.path.suffix.lower() in STILL_SUFFIXES or info.frame_count == 1 or decoded == 1:
        raise AvatarError(
            f"{info.path}: is a still image, not a video; give it a photo's extension (.jpg, .png, ...) to make a "
            "one-shot avatar from it, or give a video of the person talking and moving their head (a minute or more works best)"
        )


def conditioning_to_render(writer: AvatarWriter) -> int:
    """The current conditioning version, or, when the avatar being replaced keeps its training,
    the version that training was made on (its generators were trained on what it drew)."""
    if not writer.training_to_keep():
        return CONDITIONING_VERSION
    try:
        return Avatar.open_path(writer.final, arrays=False).schema.conditioning
    except AvatarError:
        return CONDITIONING_VERSION


def prepare(
    video: str | Path, library: Path, name: str, overwrite: bool = False, preview: bool = False,
    discard_training: bool = False, tracker: str = "mediapipe",
) -> PrepareResult:
    """Run the whole preparation; the avatar appears in the library only when complete.
    Replacing an avatar keeps its checkpoints/ and engines/ unless `discard_training`.
    `tracker`: the back-end that tracks the frames (models.geometry.tracker.TRACKERS)."""
    started = time.perf_counter()
    info = probe(video)
    refuse_still_image(info)
    ensure_writable(library)
    writer = AvatarWriter(library, name, overwrite, discard_training)
    version = conditioning_to_render(writer)
    try:
        model = load_face_model()
        box = locate_crop(info)
        landmarks, pupils = track_crops(info, box, model, writer.tmp, tracker)
        refuse_still_image(info, len(landmarks))
        valid = ~np.isnan(landmarks).any(axis=(1, 2))
        if valid.sum() < MIN_VALID_FRAMES:
            raise AvatarError(
                f"{info.path}: a face was found on only {int(valid.sum())} of {len(valid)} frames; "
                "use a clip where one face is visible throughout"
            )
        subject = SourceCalibration.from_frames(model, landmarks[valid]).subject
        subject.eye_detail = version >= 3
        fits = render_conditioning(writer.tmp, landmarks, pupils, valid, subject, model, brows=version >= 2)
        atomic_write_npz(writer.tmp / "conditioning" / "flow.npz", flow=dense_flow(writer.tmp / "frames", len(valid)))
        atomic_write_npz(
            writer.tmp / "tracks.npz",
            landmarks=np.nan_to_num(landmarks),
            valid=valid,
            pupils=np.nan_to_num(pupils),
            **fits,
        )
        atomic_write_npz(writer.tmp / "identity.npz", neutral=subject.neutral)
        split = split_bounds(len(valid))
        counts = {
            "frames": len(valid),
            "valid": int(valid.sum()),
            "dropped": int((~valid).sum()),
            "train": int(valid[slice(*split["train"])].sum()),
            "test": int(valid[slice(*split["test"])].sum()),
        }
        if counts["train"] < 1 or counts["test"] < 1:
            raise AvatarError(f"{info.path}: too few frames with a face to split into train and test")
        middle = np.flatnonzero(valid)[counts["valid"] // 2]
        thumb = cv2.imread(str(writer.tmp / "frames" / FRAME_NAME.format(middle)))
        cv2.imwrite(str(writer.tmp / "thumbnail.png"), cv2.resize(thumb, (128, 128), interpolation=cv2.INTER_AREA))
        write_manifest(
            writer.tmp,
            {
                "format": FORMAT_VERSION,
                "name": name,
                "source_video": info.path.name,
                "fps": info.fps,
                "crop_box": list(box),
                "resolution": RESOLUTION,
                "counts": counts,
                "split": split,
                "camera": subject.camera.to_dict(),
                "expression_dims": model.num_expressions,
                "conditioning": version,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
        sheet = write_preview(writer.tmp, valid, info.fps) if preview else None
        path, kept = writer.commit()
    except BaseException:
        writer.abort()
        raise
    preview_path = path / sheet.relative_to(writer.tmp) if sheet else None
    return PrepareResult(
        path, counts["frames"], counts["valid"], counts["dropped"], time.perf_counter() - started, preview_path,
        tuple(kept), info.frame_count, version,
    )
