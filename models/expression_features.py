"""Per-frame expression features of a face (eyes, brows, mouth, gaze, head pose) and how well
one face's features follow another's: the end-to-end transfer-fidelity measure (DESIGN 12).

Features come from MediaPipe face-mesh points (the 468 mesh vertices; pupils as (2, 2) image
points), so the same code measures a tracked source, a tracked generated frame, and the
retargeted mesh the conditioning was rendered from. "Right"/"left" are the subject's own.
"""
from __future__ import annotations

import numpy as np

# MediaPipe face-mesh indices
RIGHT_EYE = {"outer": 33, "inner": 133, "top": 159, "bottom": 145}
LEFT_EYE = {"outer": 263, "inner": 362, "top": 386, "bottom": 374}
RIGHT_BROW = (70, 63, 105, 66, 107)
LEFT_BROW = (300, 293, 334, 296, 336)
LIP_TOP, LIP_BOTTOM, MOUTH_RIGHT, MOUTH_LEFT = 13, 14, 61, 291
IRIS_CENTRES = (468, 473)  # right, left (478-point MediaPipe output with refined landmarks)

FEATURES = ("eye_right", "eye_left", "brow_right", "brow_left", "mouth_open", "mouth_width",
            "gaze_x", "gaze_y", "yaw", "pitch", "roll")
WINK_SOURCE = 0.5  # normalised eye-openness difference that counts as a wink in the source
WINK_OUTPUT = 0.25  # and the difference (same side) the output must show
GAZE_OPEN_EYES = 0.6  # gaze is measured only while both eyes are at least this open (of the face's median)
MAX_LAG = 5


def euler_degrees(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) of R = Rz(roll) Ry(yaw) Rx(pitch), the inverse of euler_rotation."""
    r = np.asarray(rotation, np.float64)
    yaw = -np.arcsin(np.clip(r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return tuple(float(np.degrees(a)) for a in (yaw, pitch, roll))


def _eye(points: np.ndarray, eye: dict[str, int]) -> tuple[float, np.ndarray, np.ndarray, float]:
    """(openness, centre, unit axis outer->inner, width) of one eye."""
    outer, inner = points[eye["outer"], :2], points[eye["inner"], :2]
    width = float(np.linalg.norm(inner - outer)) + 1e-9
    openness = float(np.linalg.norm(points[eye["top"], :2] - points[eye["bottom"], :2])) / width
    return openness, (outer + inner) / 2, (inner - outer) / width, width


def face_features(points: np.ndarray, pupils: np.ndarray, rotation: np.ndarray) -> dict[str, float]:
    """The FEATURES of one face: `points` (>= 468, 2+) mesh points, `pupils` (2, 2) right and
    left pupil centres, `rotation` the head rotation (3, 3)."""
    p = np.asarray(points, np.float64)
    scale = float(np.linalg.norm(p[RIGHT_EYE["outer"], :2] - p[LEFT_EYE["outer"], :2])) + 1e-9
    features = {}
    gaze = []
    for side, eye, brow, pupil in (("right", RIGHT_EYE, RIGHT_BROW, pupils[0]), ("left", LEFT_EYE, LEFT_BROW, pupils[1])):
        openness, centre, axis, width = _eye(p, eye)
        features[f"eye_{side}"] = openness
        features[f"brow_{side}"] = float(np.linalg.norm(p[list(brow), :2].mean(0) - centre)) / scale
        offset = np.asarray(pupil, np.float64) - centre
        normal = np.array([-axis[1], axis[0]])
        gaze.append((float(offset @ axis) / width, float(offset @ normal) / width))
    # each eye's axis points outer -> inner: image right for the right eye, image left for the
    # left one, so image x (and, through the normals, image y, down) is their difference
    features["gaze_x"] = (gaze[0][0] - gaze[1][0]) / 2
    features["gaze_y"] = (gaze[0][1] - gaze[1][1]) / 2
    features["mouth_open"] = float(np.linalg.norm(p[LIP_TOP, :2] - p[LIP_BOTTOM, :2])) / scale
    features["mouth_width"] = float(np.linalg.norm(p[MOUTH_RIGHT, :2] - p[MOUTH_LEFT, :2])) / scale
    features["yaw"], features["pitch"], features["roll"] = euler_degrees(rotation)
    return features


def feature_table(rows: list[dict[str, float] | None]) -> dict[str, np.ndarray]:
    """Per-feature series over frames; NaN where the face was not found."""
    return {name: np.array([r[name] if r is not None else np.nan for r in rows], np.float64) for name in FEATURES}


def gaze_while_open(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The table with gaze unknown (NaN) where either eye is closing: a lid over the iris moves
    the tracked pupil, so a blink would otherwise read as a glance down or sideways."""
    open_eyes = np.ones(len(table["gaze_x"]), bool)
    for eye in ("eye_right", "eye_left"):
        openness = table[eye]
        median = np.nanmedian(openness) if np.isfinite(openness).any() else np.nan
        with np.errstate(invalid="ignore"):
            open_eyes &= openness >= GAZE_OPEN_EYES * median
    return {name: np.where(open_eyes, series, np.nan) if name.startswith("gaze_") else series
            for name, series in table.items()}


def normalise(series: np.ndarray) -> np.ndarray:
    """Relative to the person's neutral (median) and range (5th-95th percentile)."""
    valid = series[np.isfinite(series)]
    if valid.size < 2:
        return np.full_like(series, np.nan)
    low, mid, high = np.percentile(valid, [5, 50, 95])
    return (series - mid) / max(high - low, 1e-9)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over frames where both are known; NaN with too few or a flat series."""
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 3 or np.std(a[both]) < 1e-9 or np.std(b[both]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[both], b[both])[0, 1])


def best_lag(source: np.ndarray, follower: np.ndarray, max_lag: int = MAX_LAG) -> int:
    """Frames by which `follower` trails `source` (positive: late), by best correlation."""
    scores = {}
    for lag in range(-max_lag, max_lag + 1):
        a, b = (source[: len(source) - lag], follower[lag:]) if lag >= 0 else (source[-lag:], follower[: len(follower) + lag])
        r = correlation(a, b)
        if np.isfinite(r):
            scores[lag] = r
    return max(scores, key=scores.get) if scores else 0


def wink_score(source: dict[str, np.ndarray], output: dict[str, np.ndarray]) -> dict:
    """Frames where one source eye is clearly more closed than the other, and the share of
    them where the output closes the same eye more."""
    def asymmetry(table):  # each eye relative to its own neutral, both on the person's pooled range
        right, left = table["eye_right"], table["eye_left"]
        right, left = right - np.nanmedian(right), left - np.nanmedian(left)
        pooled = np.concatenate([right, left])
        pooled = pooled[np.isfinite(pooled)]
        if pooled.size < 2:
            return np.full_like(right, np.nan)
        low, high = np.percentile(pooled, [5, 95])
        return (right - left) / max(high - low, 1e-9)

    a_source, a_output = asymmetry(source), asymmetry(output)
    winks = np.isfinite(a_source) & (np.abs(a_source) > WINK_SOURCE) & np.isfinite(a_output)
    followed = winks & (np.sign(a_output) == np.sign(a_source)) & (np.abs(a_output) > WINK_OUTPUT)
    return {"wink_frames": int(winks.sum()), "followed": int(followed.sum()),
            "score": float(followed.sum() / winks.sum()) if winks.any() else None}


def spread(series: np.ndarray) -> float | None:
    """5th-95th percentile range of a raw feature: how much the face moves it over the clip."""
    valid = series[np.isfinite(series)]
    return float(np.subtract(*np.percentile(valid, [95, 5]))) if valid.size >= 2 else None


def transfer_report(source: dict[str, np.ndarray], conditioning: dict[str, np.ndarray], output: dict[str, np.ndarray]) -> dict:
    """Per feature: correlation of output and of conditioning with the source, the lag, and how
    much the source moves it (a correlation over a feature the source hardly moves is noise)."""
    features = {}
    for name in FEATURES:
        s, c, o = (normalise(t[name]) for t in (source, conditioning, output))
        features[name] = {
            "source_range": spread(source[name]),
            "r_output": correlation(s, o),
            "r_conditioning": correlation(s, c),
            "lag_output": best_lag(s, o),
            "output_found": float(np.isfinite(o).mean()),
        }
    return {"features": features, "wink": wink_score(source, output),
            "wink_conditioning": wink_score(source, conditioning)}


def _mean(features: dict[str, float], *names: str) -> float:
    return sum(features[n] for n in names) / len(names)


# The expressions people notice in a call, each scored on one face's raw features (higher is
# stronger); the frame of a clip that scores highest shows the expression at its clearest.
MOMENTS = {
    "wink": lambda f: abs(f["eye_right"] - f["eye_left"]),
    "frown": lambda f: -_mean(f, "brow_right", "brow_left"),
    "raised brows": lambda f: _mean(f, "brow_right", "brow_left"),
    "O mouth": lambda f: f["mouth_open"] / max(f["mouth_width"], 1e-6),
    "lowered lids": lambda f: -_mean(f, "eye_right", "eye_left"),
}
