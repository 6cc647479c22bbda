"""DenseFaceReg: the crop and mirror geometry its training rests on, distillation from the
prepared avatars' tracks (resumable), its evaluation against the teacher, its ONNX export, and a shared
config that is refused when it would build an unreasonable network."""
import json

import cv2
import numpy as np
import pytest
import torch

from h2h.app.cli import main
from h2h.models.avatar import Avatar
from h2h.models.checkpoint import CheckpointError
from h2h.models.expression_features import LEFT_EYE, RIGHT_EYE
from h2h.models.facereg_data import GAP_PAIRS, Augment, FaceSamples, gap_positions, mirror_permutation
from h2h.models.facereg_eval import load_facereg
from h2h.models.facereg_training import gap_l1
from h2h.models.geometry.face_crop import Crop


def test_crops_map_points_both_ways_and_the_mirror_swaps_sides(prepared, model):
    library, _ = prepared
    samples = FaceSamples.from_avatars(library, ["sample"], progress=False)
    points = samples.points[0]
    crop = Crop.around(points, 128, angle=20.0, shift=(0.05, -0.03), zoom=1.1)
    assert np.abs(crop.denormalise(crop.normalise(points)) - points).max() < 1e-3
    inside = crop.normalise(points)[:, :2]
    assert np.abs(inside).max() < 1.0  # the whole face is in the crop
    mirror = mirror_permutation(model)
    assert (mirror[mirror] == np.arange(len(mirror))).all()
    assert mirror[RIGHT_EYE["outer"]] == LEFT_EYE["outer"] and mirror[468] == 473
    rims = [np.median(samples.points[:, c + 1 : c + 5, :2] - samples.points[:, c : c + 1, :2], 0) for c in (468, 473)]
    assert np.abs(rims[1][mirror[469:473] - 474] * [-1, 1] - rims[0]).max() < 0.3 * np.abs(rims[0]).max()  # the irises' rims too
    rng = np.random.default_rng(0)
    noise = FaceSamples([rng.integers(0, 256, (240, 240, 3), np.uint8)], samples.points[:1] * 0.5, ["noise"])
    exact = Augment(flip=1.0, rotate=0.0, shift=0.0, zoom=(1, 1), colour=0.0, blur=0.0, noise=0.0, occlude=0.0)
    flipped, flipped_target = noise.example(0, rng, 64, exact, mirror)
    plain, plain_target = noise.example(0, rng, 64, None, None)
    assert flipped_target[LEFT_EYE["outer"], 0] < 0 < plain_target[RIGHT_EYE["outer"], 0] or \
        flipped_target[LEFT_EYE["outer"], 0] > 0 > plain_target[RIGHT_EYE["outer"], 0]  # mirrored: sides swap

    def colours(image: np.ndarray, points: np.ndarray) -> np.ndarray:
        xy = (points[:, :2] * 32 + 32).astype(np.float32)
        return cv2.remap(image.astype(np.float32), xy[:, :1], xy[:, 1:], cv2.INTER_LINEAR)[:, 0]

    assert np.abs(colours(flipped, flipped_target) - colours(plain, plain_target[mirror])).max() < 0.5  # each point on its pixels


def test_mirror_averaging_answers_a_mirrored_crop_with_the_mirrored_face(prepared, model):
    """A face or mouth network averaged with its answer on the mirrored crop gives, for the
    mirrored crop, exactly the mirror image of its answer (the eye stage, whose mirror is the
    other eye, is not averaged)."""
    from h2h.models.facereg_data import PART_INDICES, mirror_order
    from h2h.models.geometry.face_crop import PARTS, flip_affine
    from h2h.models.networks.facereg import DenseFaceReg, MirrorAveraged, facereg_config

    torch.manual_seed(0)
    crop = torch.rand(1, 3, 64, 64) * 2 - 1
    for preset, rows in (("tiny", None), ("tiny-mouth", PART_INDICES["mouth"](model))):
        order = mirror_order(model, rows)
        plain = DenseFaceReg(facereg_config(preset)).eval()
        plain.mean_shape.copy_(torch.rand_like(plain.mean_shape) - 0.5)  # a lopsided face
        net = MirrorAveraged(plain, order)
        scale, offset = flip_affine(64 if preset == "tiny" else 32)
        x = crop if preset == "tiny" else crop[..., :32, :32]
        with torch.no_grad():
            answer, mirrored = net(x)[0].numpy(), net(x.flip(-1))[0].numpy()
            alone, alone_mirrored = plain(x)[0].numpy(), plain(x.flip(-1))[0].numpy()
        assert np.allclose(mirrored, answer[order] * scale + offset, atol=1e-5)
        assert not np.allclose(alone_mirrored, alone[order] * scale + offset, atol=1e-2)  # the network alone is not
    assert mirror_order(model, PART_INDICES["eye"](model)) is None
    library, _ = prepared
    samples = FaceSamples.from_avatars(library, ["sample"], progress=False)
    rows = PART_INDICES["mouth"](model)
    plain, mirrored = (samples.part_example(0, None, PARTS["mouth"], rows, 96, None, side)[1] for side in (0, 1))
    assert np.abs(mirrored[mirror_order(model, rows)] * [-1, 1, 1] - plain).max() < 1e-4  # the order the mirrored crop reads in
    with pytest.raises(ValueError, match="each of the network's points"):
        MirrorAveraged(DenseFaceReg(facereg_config("tiny")), np.zeros(478, np.int64))


def test_a_part_read_from_shifted_crops_lands_where_the_unmoved_crop_puts_it():
    """The tracker reads each eye from its crop and that crop shifted by whole pixels, all cut from
    one warp, and averages the answers in the unmoved crop: each shifted crop must show the pixels
    the unmoved one shows there, and a point read in it must come back where that crop has it."""
    from h2h.models.geometry.face_crop import EYE_SHIFTS, PARTS, PartCrop, unshift

    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 256, (300, 300, 3), np.uint8), (0, 0), 2.0)  # detail a crop resolves
    points = rng.uniform(120, 220, (21, 3))
    start, end = np.array([150.0, 200.0]), np.array([190.0, 210.0])
    shifts = (*EYE_SHIFTS, (2, -1))
    for mirrored in (False, True):
        crop = PartCrop.around(start, end, 64, PARTS["eye"], mirrored, angle=7.0)
        seen = crop.shifted(image, shifts)
        assert seen.shape == (len(shifts), 32, 64, 3) and np.abs(seen[0].astype(int) - crop.image(image)).max() <= 1
        for (dx, dy), window in zip(shifts, seen):
            moved = PartCrop.around(start, end, 64, PARTS["eye"], mirrored, angle=7.0, shift=(dx / 64, dy / 64))
            assert np.abs(window.astype(int) - moved.image(image)).max() <= 1  # the same pixels, one warp
        read = np.stack([PartCrop.around(start, end, 64, PARTS["eye"], mirrored, angle=7.0, shift=(dx / 64, dy / 64)).normalise(points)
                         for dx, dy in shifts])
        assert np.abs(read - read[0]).max() > 0.05  # the shifted crops see the points elsewhere
        assert np.abs(unshift(read, shifts, 64) - crop.normalise(points)).max() < 1e-5


class CropBrightness:
    """A fake part network: every point of a crop at (its mean brightness, 0, 0)."""

    size, width, batch = 32, 64, 10

    def run(self, crops: np.ndarray) -> np.ndarray:
        return np.repeat(np.stack([crops.mean((1, 2, 3)) / 255, np.zeros(len(crops)), np.zeros(len(crops))], 1)[:, None], 21, 1)


def test_each_eye_is_redrawn_from_its_own_crops(prepared, model):
    """All ten eye crops of a frame go through the network in one batch: each eye's points must be
    the mean of what the network says on that eye's five crops, brought back into its crop (here
    the image is dark on one side of the face and bright on the other, so a mix-up shows)."""
    from h2h.models.facereg_data import PART_INDICES
    from h2h.models.geometry.face_crop import EYE_SHIFTS, PARTS, PartCrop, part_corners, unshift
    from h2h.models.geometry.facereg_tracker import DenseFaceRegTracker, PartStage

    library, _ = prepared
    points = FaceSamples.from_avatars(library, ["sample"], progress=False).points[0].copy()
    rows = PART_INDICES["eye"](model)
    image = np.full((1000, 1000, 3), 220, np.uint8)
    image[:, : int(points[1, 0])] = 40  # the nose tip's left: the person's right eye
    network = CropBrightness()
    tracker = DenseFaceRegTracker(network, None, None, stages=(PartStage(PARTS["eye"], network, rows),))
    redrawn = points.copy()
    tracker._refine(image, redrawn, None)
    corners = part_corners(PARTS["eye"], rows)
    sides = []
    for side in (0, 1):
        crop = PartCrop.around(*(points[rows[side][k]] for k in corners), 64, PARTS["eye"], side == 1)
        read = unshift(network.run(crop.shifted(image, EYE_SHIFTS)), EYE_SHIFTS, 64).mean(0)
        assert np.abs(redrawn[rows[side]] - crop.denormalise(read)).max() < 1e-3
        sides.append(read[0, 0])
    assert sides[0] < 0.5 < sides[1]  # each eye saw its own side


def test_the_gap_term_scores_a_lid_or_lip_gap_and_not_a_shift_and_survives_the_mirror(prepared, model):
    """The loss's gap term is zero when a lid moves with its partner (a shift) and counts a gap the
    teacher does not have (lips left apart); mirrored crops' pairs are pairs again, upper first."""
    library, _ = prepared
    samples = FaceSamples.from_avatars(library, ["sample"], progress=False)
    pairs = gap_positions(np.arange(478))
    target = torch.from_numpy(samples.points[:1])
    assert float(gap_l1(target + torch.tensor([3.0, -2.0, 1.0]), target, torch.from_numpy(pairs))) < 1e-5
    parted = target.clone()
    parted[0, 14, 1] += 4.0  # the lower inner lip drops
    assert float(gap_l1(parted, target, torch.from_numpy(pairs))) == pytest.approx(4.0 / len(pairs), rel=1e-5)
    mirror = mirror_permutation(model)
    assert {tuple(p) for p in mirror[GAP_PAIRS].tolist()} == {tuple(p) for p in GAP_PAIRS.tolist()}
    mouth = np.array([13, 61, 14, 291])
    assert gap_positions(mouth).tolist() == [[0, 2]]  # only the pairs a stage predicts both points of


def test_train_facereg_resumes_and_is_scored_against_the_teacher(prepared, tmp_path, capsys):
    library, _ = prepared
    out = tmp_path / "facereg"
    args = ["train-facereg", "--avatars", "sample", "--out", str(out), "--preset", "tiny", "--library", str(library)]
    assert main([*args, "--max-steps", "4"]) == 0
    assert {"facereg.safetensors", "facereg.json", "facereg_state.pt", "samples.png"} <= {p.name for p in out.iterdir()}
    assert main([*args, "--max-steps", "4"]) == 1  # an existing run is not overwritten by accident
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--max-steps", "7", "--resume"]) == 0
    meta = json.loads((out / "facereg.json").read_text())
    assert meta["step"] == 7 and meta["people"] == ["sample"]
    report_file = tmp_path / "report.json"
    assert main(["eval-facereg", str(out), "--avatars", "sample", "--json", str(report_file), "--library", str(library)]) == 0
    printed = capsys.readouterr().out
    assert "sample were in its training data" in printed
    person = json.loads(report_file.read_text())["people"]["sample"]
    assert person["frames"] == len(np.flatnonzero(Avatar.open(library, "sample").tracks["valid"]))
    for key in ("median_error_iod", "r_eye_right", "r_eye_left", "r_mouth_open", "jitter_student_iod", "jitter_teacher_iod"):
        assert key in person
    assert main(["export-facereg", str(out), "--avatars", "sample", "--int8", "--library", str(library)]) == 0
    import onnxruntime as ort

    crop = np.zeros((1, 3, 64, 64), np.float32)
    for name in ("facereg.onnx", "facereg.int8.onnx"):
        points = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"]).run(None, {"crop": crop})[0]
        assert points.shape == (1, 478, 3) and np.isfinite(points).all()


def test_a_shared_facereg_with_an_unreasonable_config_is_refused(prepared, tmp_path):
    library, _ = prepared
    out = tmp_path / "facereg"
    assert main(["train-facereg", "--avatars", "sample", "--out", str(out), "--preset", "tiny", "--max-steps", "1",
                 "--library", str(library)]) == 0
    meta = json.loads((out / "facereg.json").read_text())
    meta["config"]["width"] = 100000
    (out / "facereg.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="width"):
        load_facereg(out)


def test_the_densefacereg_tracker_follows_the_face_and_notices_when_it_is_gone(short_clip):
    """The shipped network tracks a real clip close to MediaPipe (its teacher), says None
    within a few frames of the face leaving, and finds it again when it comes back."""
    from h2h.models.facereg_eval import interocular
    from h2h.models.geometry.facereg_tracker import CHECK_EVERY
    from h2h.models.geometry.tracker import MediaPipeTracker, create_tracker
    from h2h.models.video import read_frames

    frames = list(read_frames(short_clip, 12))
    with MediaPipeTracker(video_mode=True) as teacher:
        expected = [teacher.track(f) for f in frames]
    with create_tracker("densefacereg") as tracker:
        assert [s.part.name for s in tracker.stages] == ["eye", "mouth"]  # as shipped
        got = [tracker.track(f) for f in frames]
        assert all(p is not None and p.shape == (478, 3) for p in got)
        errors = [np.linalg.norm(p[:, :2] - e[:, :2], axis=1).mean() / interocular(e) for p, e in zip(got, expected)]
        assert np.median(errors) < 0.05
        blank = np.full_like(frames[0], 90)
        gone = [tracker.track(blank) for _ in range(CHECK_EVERY + 1)]
        assert gone[-1] is None
        assert tracker.track(frames[0]) is not None


def test_a_missing_or_foreign_densefacereg_model_is_refused_with_a_message(exported, short_clip, tmp_path, monkeypatch, capsys):
    from h2h.engines.base import EngineError
    from h2h.engines.facereg_engine import load_facereg
    from h2h.models.geometry.tracker import tracker_problem

    with pytest.raises(EngineError, match="missing"):
        load_facereg(tmp_path)
    library, avatar = exported
    (tmp_path / "facereg.onnx").write_bytes((avatar.path / "engines" / "generator.onnx").read_bytes())
    with pytest.raises(EngineError, match="not DenseFaceReg's"):
        load_facereg(tmp_path)
    (tmp_path / "facereg.onnx").write_bytes(b"not a model")
    with pytest.raises(EngineError, match="not an ONNX model"):
        load_facereg(tmp_path)
    (tmp_path / "facereg.onnx").unlink()
    (tmp_path / "facereg.onnx").symlink_to(avatar.path / "engines" / "generator.onnx")
    with pytest.raises(EngineError, match="link"):
        load_facereg(tmp_path)
    monkeypatch.setattr("h2h.engines.facereg_engine.SHIPPED_FACEREG", tmp_path / "nowhere")
    assert "DenseFaceReg cannot run" in tracker_problem("densefacereg")
    assert main(["bench", "--source", str(short_clip), "--frames", "3", "--tracker", "densefacereg"]) == 1
    assert "facereg.onnx: missing" in capsys.readouterr().err


def test_the_part_stages_train_export_and_redraw_the_eyes_and_the_mouth(prepared, short_clip, tmp_path, capsys):
    """Eye and mouth networks (a crop around each eye, the left one mirrored; one around the
    mouth) are trained, scored with the face network, exported with their point indices, and run
    by the tracker, where they redraw their points; a shared stage with indices that are not its
    part's, or a network of the wrong part, is refused."""
    from h2h.engines.base import EngineError
    from h2h.engines.facereg_engine import FaceRegEngine, load_facereg
    from h2h.export.onnx_export import onnx_bytes
    from h2h.models.facereg_eval import TorchRegressor, load_part_stage, mirror_averaged
    from h2h.models.facereg_eval import load_facereg as load_facereg_folder
    from h2h.models.geometry.face_crop import EYE_SHIFTS
    from h2h.models.geometry.facereg_tracker import DenseFaceRegTracker
    from h2h.models.video import read_frames

    library, _ = prepared
    face, eyes, mouth = tmp_path / "face", tmp_path / "eyes", tmp_path / "mouth"
    for out, preset in ((face, "tiny"), (eyes, "tiny-eye"), (mouth, "tiny-mouth")):
        assert main(["train-facereg", "--avatars", "sample", "--out", str(out), "--preset", preset, "--max-steps", "2",
                     "--library", str(library)]) == 0
    meta = json.loads((eyes / "facereg.json").read_text())
    assert meta["config"]["part"] == "eye" and len(meta["eye_points"]) == 2 and len(meta["eye_points"][0]) == 21
    rows = np.array(json.loads((mouth / "facereg.json").read_text())["mouth_points"])
    assert rows.shape == (2, 190) and {61, 291, 13, 14} <= set(rows[0, :40]) and set(rows[0]) == set(rows[1])
    assert main(["eval-facereg", str(face), "--eyes", str(eyes), "--mouth", str(mouth), "--avatars", "sample",
                 "--library", str(library)]) == 0
    assert "with the eye stage" in (out := capsys.readouterr().out) and "with the mouth stage" in out
    assert main(["eval-facereg", str(eyes), "--avatars", "sample", "--library", str(library)]) == 1  # not a face network
    assert main(["eval-facereg", str(face), "--mouth", str(eyes), "--avatars", "sample", "--library", str(library)]) == 1
    for folder in (eyes, mouth, face):
        assert main(["export-facereg", str(folder), "--avatars", "sample", "--library", str(library)]) == 0
    for folder, names in ((eyes, ("eyes.onnx", "eyes.json")), (mouth, ("mouth.onnx", "mouth.json"))):
        for name in names:  # the stages beside the face network, as shipped
            (face / name).write_bytes((folder / name).read_bytes())
    network, stages = load_facereg(face)
    assert [(s.part.name, s.regressor.size, s.regressor.width) for s in stages] == [("eye", 32, 64), ("mouth", 32, 32)]
    assert network.width == network.size
    assert [s.regressor.batch for s in stages] == [2 * len(EYE_SHIFTS), 1]  # all of a frame's eye crops in one run
    eye_net, _ = load_facereg_folder(eyes, "eye")
    one_at_a_time = FaceRegEngine(onnx_bytes(eye_net, (torch.zeros(1, 3, 32, 64),), ["crop"], ["points"]), "eyes, batch 1",
                                  21, 2, batch=2 * len(EYE_SHIFTS))  # an eye stage exported before batches still runs
    crops = np.random.default_rng(0).integers(0, 256, (2 * len(EYE_SHIFTS), 32, 64, 3), np.uint8)
    assert one_at_a_time.batch == 1 and np.abs(one_at_a_time.run(crops) - stages[0].regressor.run(crops)).max() < 1e-4
    with pytest.raises(ValueError, match="batches of 10"):
        stages[0].regressor.run(crops[:4])
    frames = list(read_frames(short_clip, 8))
    with DenseFaceRegTracker.with_mediapipe(network) as tracker:
        alone = [tracker.track(frame) for frame in frames]
    with DenseFaceRegTracker.with_mediapipe(network, stages) as tracker:
        tracked = [tracker.track(frame) for frame in frames]
    measured = (load_part_stage(eyes, "eye"), load_part_stage(mouth, "mouth"))  # what eval-facereg scores
    face_net, _ = load_facereg_folder(face)
    with DenseFaceRegTracker.with_mediapipe(TorchRegressor(mirror_averaged(face_net, None)), measured) as tracker:
        assert np.abs(tracker.track(frames[0]) - tracked[0]).max() < 0.05  # pixels: the app runs what is measured
    assert all(p is not None and p.shape == (478, 3) and np.isfinite(p).all() for p in tracked)
    lips = rows[0, :40]
    others = np.setdiff1d(np.arange(478), np.concatenate([stages[0].rows.ravel(), lips]))
    assert np.allclose(tracked[-1][others], alone[-1][others], atol=1e-3)  # the stages redraw their points only: eyes, lips
    assert not np.allclose(tracked[-1][lips], alone[-1][lips], atol=1e-3)
    (face / "mouth.json").write_text(json.dumps({"mouth_points": [[0] * 190, [1] * 190]}))
    with pytest.raises(EngineError, match="mouth_points"):
        load_facereg(face)
    (face / "mouth.json").write_text((mouth / "mouth.json").read_text())
    (face / "eyes.json").write_text("[" * 100000)
    with pytest.raises(EngineError, match="not valid JSON"):
        load_facereg(face)
    (face / "eyes.json").write_text((eyes / "eyes.json").read_text())
    (face / "mouth.onnx").write_bytes((face / "eyes.onnx").read_bytes())  # an eye network where the mouth stage goes
    with pytest.raises(EngineError, match="expected 1x3xHx1H"):
        load_facereg(face)
