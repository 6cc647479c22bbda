"""Distillation data for DenseFaceReg: frames with the teacher's points (MediaPipe Face Mesh,
as `h2h prepare` stored them in tracks.npz), the face crop both the trainer and the tracker
take, and the augmentation (box jitter, rotation, scale, mirror with the mesh mirrored,
colour, blur, noise, occlusion)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from .avatar import Avatar
from .geometry.face_crop import MOUTH_LEFT, MOUTH_LIPS, MOUTH_POINTS, MOUTH_RIGHT, PARTS, Crop, Part, PartCrop, flip_affine, part_corners
from .geometry.face_model import FaceModel
from .geometry.tracker import NUM_LANDMARKS, NUM_MESH_VERTICES
from .networks.facereg import FaceRegConfig

PART_WEIGHT = 5.0  # eyes, irises and lips weigh this much more in the loss (blinks, lip gaps)
IRIS = (NUM_MESH_VERTICES, NUM_MESH_VERTICES + 5)  # first index of the right and left iris (centre, 4 rim points)
# (upper, lower) point pairs across each eye's lids and the inner lips: the gaps a blink or parted
# lips open, which a stage's loss can also score as differences (gap_l1). The mirror maps the
# pairs onto pairs, so a mirrored crop's targets keep them.
GAP_PAIRS = np.array([
    (161, 163), (160, 144), (159, 145), (158, 153), (157, 154),
    (388, 390), (387, 373), (386, 374), (385, 380), (384, 381),
    (191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402), (310, 318), (415, 324),
])


IRIS_RIM_MIRROR = (2, 1, 0, 3)  # each iris's 4 rim points in MediaPipe's order: 0 and 2 on either side across the eye, 1 and 3 above and below


def mirror_permutation(model: FaceModel) -> np.ndarray:
    """(478,) index of each point's mirror image: mesh vertices by the mean face mirrored
    left-right, iris points by MediaPipe's fixed order (IRIS_RIM_MIRROR)."""
    colors = model.colors[:NUM_MESH_VERTICES]
    mirrored = colors * np.array([-1.0, 1.0, 1.0]) + np.array([1.0, 0.0, 0.0])
    _, nearest = linear_sum_assignment(np.linalg.norm(mirrored[:, None] - colors[None], axis=-1))
    order = np.concatenate([nearest, np.zeros(NUM_LANDMARKS - NUM_MESH_VERTICES, np.int64)])
    for a, b in ((0, 1), (1, 0)):
        order[IRIS[a]] = IRIS[b]
        order[IRIS[a] + 1 : IRIS[a] + 5] = IRIS[b] + 1 + np.array(IRIS_RIM_MIRROR)
    return order


def eye_indices(model: FaceModel) -> np.ndarray:
    """(2, 21): the right eye's contour and iris points, and the left eye's in the mirrored
    order (so one eye network reads both, a left eye mirrored)."""
    right = np.concatenate([model.topology.right_eye, np.arange(IRIS[0], IRIS[0] + 5)])
    return np.stack([right, mirror_permutation(model)[right]])


MOUTH_REACH = (0.7, 0.63)  # the mouth stage's skin points: this far from the mouth's centre across and up or down (below)


def mouth_indices(model: FaceModel) -> np.ndarray:
    """(2, MOUTH_POINTS): the lips (MOUTH_LIPS, the points the tracker redraws), then the skin
    around them (the mesh vertices within MOUTH_REACH of the mouth's centre in the mean face's
    normalised coordinates (its NMFC colours, each axis scaled to 0-1), in units of the mouth's
    width there, with their mirror images); and the same points in mirrored order."""
    mean = model.colors[:NUM_MESH_VERTICES, :2]
    centre = (mean[MOUTH_RIGHT] + mean[MOUTH_LEFT]) / 2
    span = float(np.linalg.norm(mean[MOUTH_LEFT] - mean[MOUTH_RIGHT]))
    mirror = mirror_permutation(model)
    near = np.flatnonzero((np.abs(mean - centre) / span < np.array(MOUTH_REACH)).all(1))
    lips = np.sort(np.asarray(model.topology.mouth))
    skin = np.setdiff1d(np.union1d(near, mirror[near]), lips)
    if (len(lips), len(lips) + len(skin)) != (MOUTH_LIPS, MOUTH_POINTS):
        raise ValueError(f"the face model gives {len(lips)} lip and {len(skin)} skin points, not {MOUTH_LIPS} and "
                         f"{MOUTH_POINTS - MOUTH_LIPS}; the face assets do not match this h2h")
    chosen = np.concatenate([lips, skin])
    return np.stack([chosen, mirror[chosen]])


PART_INDICES = {"eye": eye_indices, "mouth": mouth_indices}  # part -> the point indices (2, N) its stage predicts


def mirror_order(model: FaceModel, rows: np.ndarray | None) -> np.ndarray | None:
    """Where each point's mirror image sits in a network's answer (MirrorAveraged): the face's
    mirror permutation (`rows` None), for a part the positions in its mirrored row (the mouth's
    lists the same points), and None when that row is other points (a mirrored right eye is a
    left eye, which the eye stage never sees)."""
    if rows is None:
        return np.argsort(mirror_permutation(model))  # where each point's mirror image went
    where = {int(index): k for k, index in enumerate(rows[1])}
    if set(where) != {int(index) for index in rows[0]}:
        return None
    return np.array([where[int(index)] for index in rows[0]], np.int64)


def gap_positions(order: np.ndarray) -> np.ndarray:
    """(P, 2) positions in `order` (the point indices a network predicts, in its order) of the
    GAP_PAIRS it predicts both points of."""
    where = {int(index): k for k, index in enumerate(order)}
    return np.array([(where[a], where[b]) for a, b in GAP_PAIRS if a in where and b in where], np.int64).reshape(-1, 2)


def point_weights(model: FaceModel) -> np.ndarray:
    """(478,) loss weight per point: PART_WEIGHT on eyes, irises and lips, else 1."""
    weights = np.ones(NUM_LANDMARKS, np.float32)
    t = model.topology
    weights[np.concatenate([t.right_eye, t.left_eye, t.mouth])] = PART_WEIGHT
    weights[NUM_MESH_VERTICES:] = PART_WEIGHT
    return weights


@dataclass(frozen=True)
class Augment:
    """Ranges of the random changes a training crop gets."""

    shift: float = 0.06
    zoom: tuple[float, float] = (0.85, 1.15)
    rotate: float = 25.0
    flip: float = 0.5
    colour: float = 0.25
    blur: float = 0.3
    noise: float = 0.3
    occlude: float = 0.25


PART_AUGMENT = Augment(shift=0.08, zoom=(0.85, 1.15), rotate=15.0, flip=0.0)  # part crops: the face stage's error, no mirror (built in)


def augment_pixels(crop: np.ndarray, rng: np.random.Generator, a: Augment) -> np.ndarray:
    """Colour gains and offset, then maybe blur, noise and one occluding rectangle."""
    image = crop.astype(np.float32)
    image = image * rng.uniform(1 - a.colour, 1 + a.colour, 3) + rng.uniform(-40, 40) * a.colour
    if rng.random() < a.blur:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.0))
    if rng.random() < a.noise:
        image = image + rng.normal(0, rng.uniform(2, 12), image.shape)
    if rng.random() < a.occlude:
        height, width = crop.shape[:2]
        w, h = (rng.uniform(0.1, 0.35, 2) * (width, height)).astype(int)
        x, y = rng.integers(0, width - w), rng.integers(0, height - h)
        image[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def random_placement(rng: np.random.Generator, a: Augment | None) -> tuple[float, tuple[float, float], float]:
    """A crop's (angle, shift, zoom) under `a`; the plain placement when `a` is None."""
    if a is None:
        return 0.0, (0.0, 0.0), 1.0
    return rng.uniform(-a.rotate, a.rotate), tuple(rng.uniform(-a.shift, a.shift, 2)), rng.uniform(*a.zoom)


def to_input(crops: np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@dataclass
class FaceSamples:
    """Frames (RGB uint8, any size) with the teacher's image-space points (N, 478, 3), and
    which person each came from."""

    images: list[np.ndarray]
    points: np.ndarray
    people: list[str]

    def __post_init__(self) -> None:
        if len(self.images) != len(self.points) or len(self.people) != len(self.points) or not len(self.images):
            raise ValueError("face samples: images, points and people must match and not be empty")

    @classmethod
    def from_avatars(cls, library: Path, names: list[str], progress: bool = True) -> "FaceSamples":
        """Every frame with a face of these prepared avatars (both splits)."""
        images, points, people = [], [], []
        for name in names:
            avatar = Avatar.open(library, name)
            avatar.require_video("DenseFaceReg training")
            indices = np.flatnonzero(avatar.tracks["valid"])
            for i in tqdm(indices, desc=f"loading {name}", unit="f", disable=not progress, leave=False):
                images.append(avatar.read_image("frame", int(i)))
                points.append(avatar.tracks["landmarks"][i])
                people.append(name)
        return cls(images, np.asarray(points, np.float32), people)

    def example(self, i: int, rng: np.random.Generator, size: int, a: Augment | None,
                mirror: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """One crop (S, S, 3) uint8 and its normalised target (478, 3); `a` None: unaugmented."""
        points = self.points[i]
        crop = Crop.around(points, size, *random_placement(rng, a))
        image, target = crop.image(self.images[i]), crop.normalise(points)
        if a is None:
            return image, target
        if mirror is not None and rng.random() < a.flip:
            scale, offset = flip_affine(size)
            image, target = image[:, ::-1], target[mirror] * scale + offset
        return augment_pixels(image, rng, a), target

    def part_example(self, i: int, rng: np.random.Generator, part: Part, rows: np.ndarray, width: int,
                     a: Augment | None, side: int) -> tuple[np.ndarray, np.ndarray]:
        """One crop of `part` (width // aspect, width, 3) uint8 and its normalised target (N, 3):
        the points of row `side` of `rows` (1: mirrored); `a` None: unaugmented."""
        points = self.points[i][rows[side]]
        start, end = (points[k] for k in part_corners(part, rows))
        crop = PartCrop.around(start, end, width, part, side == 1, *random_placement(rng, a))
        image = crop.image(self.images[i])
        return (image if a is None else augment_pixels(image, rng, a)), crop.normalise(points)

    def examples(self, picks: np.ndarray, rng: np.random.Generator, config: FaceRegConfig, a: Augment | None,
                 mirror: np.ndarray | None, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Crops (B, H, W, 3) uint8 and targets of these samples for a network of `config`: face
        crops, or crops of its part (`rows`: the part's point indices; plain and mirrored alternately)."""
        if config.part == "face":
            pairs = [self.example(int(i), rng, config.size, a, mirror) for i in picks]
        else:
            part, width = PARTS[config.part], config.size * config.aspect
            pairs = [self.part_example(int(i), rng, part, rows, width, a, n % 2) for n, i in enumerate(picks)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
