"""Derive the shipped face assets from MediaPipe's tessellation and real talking-head clips.

    python scripts/build_face_assets.py --data ../shared/data

writes assets/face_topology.json (852 triangles + named index sets) and
assets/face_model.npz (mean face x̄ by generalised Procrustes over people, expression
basis by PCA of neutral-removed canonical meshes).
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from h2h.models.geometry.face_model import FACE_MODEL_FILE, FaceModel, normalise_colors
from h2h.models.geometry.fitting import fit_pose, neutral_shape, umeyama
from h2h.models.geometry.topology import TOPOLOGY_FILE, load_topology, topology_from_dict
from h2h.models.geometry.tracker import NUM_MESH_VERTICES, MediaPipeTracker
from h2h.models.io_utils import atomic_write_bytes, atomic_write_npz
from h2h.models.video import read_frames

# Rigid anchors: forehead, nose bridge and temples barely move with expressions.
FOREHEAD = [10, 151, 9, 109, 67, 103, 338, 297, 332, 108, 69, 337, 299]
NOSE_BRIDGE = [168, 6, 197, 195]
TEMPLES = [54, 284, 21, 251, 127, 356, 162, 389, 71, 301]
NUM_EXPRESSIONS = 24
FRAMES_PER_PERSON = 400


def _source_edges(name: str) -> list[tuple[int, int]]:
    """Edges of a mediapipe connection set, in source order (the frozenset loses it)."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    tree = ast.parse(Path(inspect.getsourcefile(fmc)).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return [(e.elts[0].value, e.elts[1].value) for e in node.value.args[0].elts]
    raise KeyError(name)


def triangles_from_tessellation() -> np.ndarray:
    """The tessellation lists each triangle as three consecutive edges a-b, b-c, c-a."""
    edges = _source_edges("FACEMESH_TESSELATION")
    tris = []
    for i in range(0, len(edges), 3):
        (a, b), (b2, c), (c2, a2) = edges[i : i + 3]
        if not (b == b2 and c == c2 and a == a2):
            raise ValueError(f"tessellation edges {i}..{i + 2} do not form a triangle")
        tris.append((a, b, c))
    return np.array(tris, dtype=np.int32)


def ordered_loops(edges: list[tuple[int, int]]) -> list[list[int]]:
    """Split an edge set into closed vertex loops, each in walking order."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    seen: set[int] = set()
    loops = []
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in neighbours[cur] if n != prev and (n not in seen or n == start)]
            if not nxt or nxt[0] == start:
                break
            prev, cur = cur, nxt[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(loop)
    return loops


def iris_set(name: str) -> list[int]:
    rim = sorted({v for e in _source_edges(name) for v in e})
    return [min(rim) - 1, *rim]  # the centre point precedes its four rim points


def build_topology() -> dict:
    lips = ordered_loops(_source_edges("FACEMESH_LIPS"))
    outer = next(loop for loop in lips if 0 in loop)
    inner = next(loop for loop in lips if 13 in loop)
    return {
        "source": "mediapipe 0.10.21 FACEMESH_TESSELATION and contour connection sets",
        "triangles": triangles_from_tessellation().tolist(),
        "index_sets": {
            "right_eye": ordered_loops(_source_edges("FACEMESH_RIGHT_EYE"))[0],
            "left_eye": ordered_loops(_source_edges("FACEMESH_LEFT_EYE"))[0],
            "right_iris": iris_set("FACEMESH_RIGHT_IRIS"),
            "left_iris": iris_set("FACEMESH_LEFT_IRIS"),
            "lips_outer": outer,
            "lips_inner": inner,
            "rigid_anchors": FOREHEAD + NOSE_BRIDGE + TEMPLES,
        },
    }


def track_people(data: Path) -> list[np.ndarray]:
    """Landmarks (N, 468, 3) per person: every clip in data/video, every still in data/images."""
    people = []
    videos = sorted((data / "video").glob("*.mp4"))
    for path in tqdm(videos, desc="tracking clips", unit="clip"):
        with MediaPipeTracker(video_mode=True) as tracker:
            marks = [m for f in read_frames(path) if (m := tracker.track(f)) is not None]
        people.append(np.stack(marks)[:, :NUM_MESH_VERTICES])
    with MediaPipeTracker(video_mode=False) as tracker:
        for path in sorted((data / "images").glob("*.jpg")):
            marks = tracker.track(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
            if marks is not None:
                people.append(marks[None, :NUM_MESH_VERTICES])
    return people


def _normalised(shape: np.ndarray) -> np.ndarray:
    centred = shape - shape.mean(0)
    return centred / np.sqrt((centred**2).sum(1).mean())


def _frontal(shape: np.ndarray) -> np.ndarray:
    """Rotate so x runs from the right to the left eye corner and y from brow to chin."""
    x = shape[263] - shape[33]
    x /= np.linalg.norm(x)
    y = shape[152] - shape[10]
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    return shape @ np.stack([x, y, np.cross(x, y)]).T


def procrustes_mean(people: list[np.ndarray], iterations: int = 6) -> np.ndarray:
    """Generalised Procrustes mean, each person weighted equally."""
    reference = _normalised(people[0][0])
    for _ in range(iterations):
        person_means = []
        for meshes in people:
            aligned = [umeyama(m, reference).apply(m) for m in meshes]
            person_means.append(np.mean(aligned, 0))
        reference = _normalised(np.mean(person_means, 0))
    return _frontal(reference).astype(np.float32)


def expression_basis(people: list[np.ndarray], model: FaceModel, k: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA (uncentred, so zero = neutral) of canonical offsets from each person's neutral."""
    rng = np.random.default_rng(0)
    offsets = []
    for meshes in people:
        if len(meshes) < 10:
            continue
        canon = np.stack([fit_pose(m, model).invert(m) for m in meshes])
        pick = rng.choice(len(canon), min(FRAMES_PER_PERSON, len(canon)), replace=False)
        offsets.append((canon[pick] - neutral_shape(canon, model)).reshape(len(pick), -1))
    stacked = np.concatenate(offsets)
    _, sing, vt = np.linalg.svd(stacked, full_matrices=False)
    explained = np.cumsum(sing**2) / (sing**2).sum()
    return vt[:k].astype(np.float32), explained[:k]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with video/*.mp4 and images/*.jpg")
    args = parser.parse_args(argv)
    topo = build_topology()
    atomic_write_bytes(TOPOLOGY_FILE, json.dumps(topo, indent=1).encode())
    topology = topology_from_dict(topo)
    load_topology.cache_clear()
    print(f"topology: {len(topology.triangles)} triangles -> {TOPOLOGY_FILE}")

    people = track_people(args.data)
    mean_shape = procrustes_mean(people)
    model = FaceModel(mean_shape, normalise_colors(mean_shape), np.zeros((0, mean_shape.size), np.float32), topology)
    basis, explained = expression_basis(people, model, NUM_EXPRESSIONS)
    atomic_write_npz(FACE_MODEL_FILE, mean_shape=mean_shape, basis=basis)
    print(
        f"face model: {len(people)} people, {sum(map(len, people))} meshes, "
        f"{len(basis)} expression components explaining {explained[-1]:.1%} -> {FACE_MODEL_FILE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
