"""The one-shot path (issue 15): the flow generator's N-shot blending, its training on
self-reenactment pairs (resumable), a photo made into a live avatar with one command (engines
included, packaged like any other, refused where a video is needed), bad photos refused,
and its evaluation against the unchanged-photo and mesh-warp baselines."""
import json
from dataclasses import replace

import cv2
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from h2h.app.cli import main
from h2h.app.pipeline import FaceStage, GeneratorStage, Packet, photo_meshes
from h2h.app.oneshot_eval import mesh_warp
from h2h.engines import load as load_engine
from h2h.engines.base import correspondence_sources
from h2h.engines.stepper import GeneratorStepper, conditioning_input
from h2h.models.avatar import Avatar
from h2h.models.dataset import model_mesh, to_tensor, unit_masks
from h2h.models.geometry.eyes import PUPIL_COLOR
from h2h.models.geometry.face_model import load_face_model
from h2h.models.geometry.nmfc import NMFCRenderer, correspondence
from h2h.models.oneshot_data import greyscale
from h2h.models.networks.oneshot import (FLOW_STRIDE, OneShotGenerator, colour_cells, enclosed_holes, look_up, mouth_hole,
                                        oneshot_config, pupil_discs)
from h2h.models.video import read_frames

from .conftest import REPO, SAMPLE_CLIP

SCREENSHOTS = REPO / "test-output"


@pytest.fixture(scope="module")
def oneshot_weights(prepared, tmp_path_factory):
    """A tiny one-shot generator trained for a few steps on the sample avatar."""
    library, _ = prepared
    out = tmp_path_factory.mktemp("oneshot") / "tiny"
    assert main(["train-oneshot", "--avatars", "sample", "--out", str(out), "--preset", "tiny", "--max-steps", "3",
                 "--library", str(library)]) == 0
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two real photos of a face (frames of the sample clip saved as JPEG) and one without."""
    folder = tmp_path_factory.mktemp("photos")
    frames = list(read_frames(SAMPLE_CLIP, 40))
    paths = []
    for name, frame in (("me.jpg", frames[0]), ("me2.png", frames[39])):
        cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        paths.append(folder / name)
    blank = folder / "wall.jpg"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 128, np.uint8))
    return paths, blank


def test_sources_are_blended_by_attention_and_repeating_a_photo_changes_nothing():
    torch.manual_seed(0)
    net = OneShotGenerator(oneshot_config("tiny")).eval()
    for p in net.motion[-1].parameters():  # a trained flow head: the motion is not zero
        torch.nn.init.normal_(p, std=0.5)
    size = net.config.size
    image, cond, driver = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 6, size, size) * 2 - 1, torch.rand(2, 6, size, size) * 2 - 1
    with torch.no_grad():
        one = net(net.encode(image, cond), driver)
        three = net(net.encode(image.repeat(3, 1, 1, 1), cond.repeat(3, 1, 1, 1)), driver)
        attention = net.motion_fields(net.encode(torch.cat([image, -image]), torch.cat([cond, cond])), net.driver(driver), driver, False)[3]
        bound = net.bind(image, cond)(torch.cat([torch.zeros(1, 12, size, size), driver[:1]], 1), torch.zeros(1, 6, size, size))
    assert one.shape == (2, 4, size, size)
    assert torch.allclose(one, three, atol=1e-5)  # the same photo three times is the one photo
    assert attention.shape[:2] == (2, 2) and torch.allclose(attention.sum(1), torch.ones_like(attention[:, 0]))
    assert torch.allclose(bound[0, :3], one[0, :3], atol=1e-4)  # folded, rescaled for int8: the same step
    assert torch.allclose(bound[0, 3], torch.tanh(one[0, 3] * 0.5), atol=1e-5)  # mask in [-1, 1] like every generator


def test_mesh_correspondence_prior_recovers_a_known_motion(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    nmfc, eyes = avatar.read_image("nmfc", 0), avatar.read_image("eyes", 0)
    move = lambda image: np.roll(image, (-8, 12), axis=(0, 1))  # the driver's face 12 px to the right and 8 px up
    moved = move(nmfc)
    cond = lambda image, sketch: to_tensor(np.concatenate([image, sketch], -1))[None]
    net = OneShotGenerator(oneshot_config("tiny")).eval()
    with torch.no_grad():
        sources = net.encode(to_tensor(avatar.read_image("frame", 0))[None], cond(nmfc, eyes))
        prior = net.prior_flow(sources, cond(moved, move(eyes)), paired=False)
    quarter, full = prior.quarter[0, 0], prior.full[0, 0]
    face = quarter[2] > 0
    assert face.float().mean() > 0.1
    pixels = quarter[:2, face] * 128  # grid units -> pixels of the 256 px frame
    assert abs(float(pixels[0].median()) + 12) < 0.1 and abs(float(pixels[1].median()) - 8) < 0.1
    on_face = torch.from_numpy(moved.any(-1))
    assert torch.allclose(full[:, on_face] * 128, torch.tensor([[-12.0], [8.0]]), atol=1e-3)  # every face pixel, exactly
    off_mesh = torch.from_numpy(~moved.any(-1)) & (prior.known[0, 0, 0] > 0)
    assert off_mesh.sum() > 20  # the mesh's holes (eyes) and its rim take the nearby face's motion
    assert torch.allclose(full[:, off_mesh] * 128, torch.tensor([[-12.0], [8.0]]), atol=1e-3)
    assert float(prior.fit[0, 0].abs().max()) < 1e-6  # same-size triangles: a perfect area fit


def test_the_eyes_follow_the_drivers_pupils(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    frames = avatar.split_indices("train")
    conds = np.stack([np.concatenate([avatar.read_image("nmfc", int(i)), avatar.read_image("eyes", int(i))], -1) for i in frames])
    widest = int(frames[pupil_discs(to_tensor(conds))[:, :, 2].amin(1).argmax()])
    nmfc, eyes = avatar.read_image("nmfc", widest), avatar.read_image("eyes", widest)
    red = (eyes[..., 0] > 127) & (eyes[..., 1] < 128)
    looking = eyes.copy()
    looking[red] = 0
    looking[np.roll(red, 3, axis=1)] = PUPIL_COLOR  # both pupils 3 px to the right: the driver looks aside
    cond = lambda sketch: to_tensor(np.concatenate([nmfc, sketch], -1))[None]
    winking = looking.copy()
    between_eyes = (pupil_discs(cond(eyes))[0, :, 0].mean().item() + 1) * 128
    winking[:, :round(between_eyes)][np.roll(red, 3, axis=1)[:, :round(between_eyes)]] = 0  # the image-left pupil hidden
    net = OneShotGenerator(oneshot_config("tiny")).eval()
    photo = to_tensor(avatar.read_image("frame", widest))[None]
    with torch.no_grad():
        sources = net.encode(photo, cond(eyes))
        priors = {name: net.prior_flow(sources, cond(sketch), paired=False) for name, sketch in
                  (("still", eyes), ("looking", looking), ("winking", winking))}
        closed_source = net.prior_flow(net.encode(photo, cond(winking)), cond(looking), paired=False)
        discs = pupil_discs(torch.cat([cond(eyes), cond(looking), cond(winking)]))
    flows = {name: prior.full[0, 0] for name, prior in priors.items()}
    assert discs[0, 0, 0] < discs[0, 1, 0] and (discs[:2, :, 2] > 3).all()  # two open eyes, image-left first
    assert torch.allclose((discs[1, :, 0] - discs[0, :, 0]) * 128, torch.full((2,), 3.0), atol=0.5)
    assert discs[2, 0, 2] == 0 and discs[2, 1, 2] > 3  # the image-left eye closed
    for eye in range(2):
        x, y = ((discs[1, eye, :2] + 1) * 128 - 0.5).round().long().tolist()  # the driver's pupil pixel
        slide = (flows["looking"][:, y, x] - flows["still"][:, y, x]) * 128
        expected = (discs[0, eye, :2] - discs[1, eye, :2]) * 128  # the photo's iris, about 3 px to the left
        assert torch.allclose(slide, expected, atol=0.1) and slide[0] < -2
    x, y = ((discs[1, 0, :2] + 1) * 128 - 0.5).round().long().tolist()
    assert torch.allclose(flows["winking"][:, y, x], flows["still"][:, y, x])  # a closed driver eye moves nothing
    assert torch.equal(closed_source.full[0, 0][:, y, x], flows["still"][:, y, x])  # nothing to slide from a closed eye:
    assert closed_source.paint[0, 0, 0, y, x] > 0.5 and priors["looking"].paint[0, 0, 0, y, x] < 0.5  # the decoder paints it
    inside = enclosed_holes(torch.from_numpy(nmfc.any(-1)).float()[None, None])[0, 0] > 0
    assert inside.sum() > 20 and torch.equal(flows["looking"][:, ~inside], flows["still"][:, ~inside])  # only the eyes move


def test_the_decoder_paints_the_open_mouth_and_keeps_the_warped_face(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    nmfc, eyes = avatar.read_image("nmfc", 0), avatar.read_image("eyes", 0)
    model = load_face_model()
    lip_colours = model.triangle_colors[np.isin(model.topology.triangles, model.topology.lips_inner).any(1)]
    lips = (np.abs(nmfc[..., None, :].astype(np.float32) / 255 - lip_colours).max(-1) < 1 / 255).any(-1)
    y, x = np.argwhere(lips).mean(0).round().astype(int)
    opened = nmfc.copy()
    cv2.ellipse(opened, (int(x), int(y)), (9, 5), 0, 0, 360, (0, 0, 0), -1)  # the driver opens the mouth
    punched = nmfc.any(-1) & ~opened.any(-1)
    cond = lambda image: to_tensor(np.concatenate([image, eyes], -1))[None]
    face = torch.from_numpy(opened.any(-1)).float()[None, None]
    found = mouth_hole(cond(opened)[:, 1:2], face, F.avg_pool2d(face, FLOW_STRIDE), enclosed_holes(face))[0, 0].numpy() > 0
    assert punched.sum() > 100 and found[punched].all()
    assert not found[:y - 10].any() and not found[y + 20:].any()  # not the eyes, nothing below the chin
    assert not found[:, :x - 25].any() and not found[:, x + 25:].any()  # nothing beside the face
    logits = {}
    for trust in (0.0, 2.0):
        torch.manual_seed(0)
        net = OneShotGenerator(replace(oneshot_config("tiny"), trust=trust)).eval()
        with torch.no_grad():
            sources = net.encode(to_tensor(avatar.read_image("frame", 0))[None], cond(nmfc))
            logits[trust] = torch.logit(net(sources, cond(opened), extras=True)[1]["keep"][0, 0].double()).numpy()
    pushed = logits[2.0] - logits[0.0]
    interior = lambda region: cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # the blend is softened at edges
    assert np.allclose(pushed[interior(opened.any(-1))], 2.0, atol=1e-3)  # the face keeps the warped photo more
    assert interior(punched).sum() > 20 and np.allclose(pushed[interior(punched)], 0.0, atol=1e-3)  # the mouth is the decoder's


def test_a_black_and_white_photo_stays_black_and_white_and_a_colour_photo_keeps_its_paint(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    frame = avatar.read_image("frame", 0)
    cond = lambda i: to_tensor(np.concatenate([avatar.read_image("nmfc", i), avatar.read_image("eyes", i)], -1))[None]
    torch.manual_seed(0)
    net = OneShotGenerator(replace(oneshot_config("tiny"), trust=0.0, keep_bias=-3.0)).eval()  # mostly the decoder's paint
    with torch.no_grad():
        runs = {name: net(net.encode(to_tensor(photo)[None], cond(0)), cond(10), extras=True) for name, photo in
                (("colour", frame), ("grey", greyscale(frame)))}
    chroma = lambda rgb: (rgb - rgb.mean(0, keepdim=True)).abs().amax(0)
    grey_out = runs["grey"][0][0, :3]
    assert chroma(grey_out).max() < 1e-5  # no pink mouth in a grey photo
    out, extras = runs["colour"]
    keep, warped = extras["keep"][0], extras["warped"][0]
    painted = keep[0] < 0.5
    paint = (out[0, :3] - keep * warped) / (1 - keep)  # what the decoder painted, as it blended it
    assert painted.sum() > 100 and chroma(paint)[painted].mean() > 0.01  # a colour photo's paint keeps its colour


def test_n_shot_attention_prefers_the_source_that_shows_the_face_like_the_driver(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    nmfc, eyes, frame = avatar.read_image("nmfc", 0), avatar.read_image("eyes", 0), avatar.read_image("frame", 0)
    size = nmfc.shape[0]
    closer = cv2.resize(nmfc, None, fx=1.4, fy=1.4, interpolation=cv2.INTER_NEAREST)[:size, :size]  # a face seen 1.4x larger
    cond = lambda image: to_tensor(np.concatenate([image, eyes], -1))[None]
    net = OneShotGenerator(oneshot_config("tiny")).eval()  # untrained: its learned attention term is zero
    with torch.no_grad():
        sources = net.encode(to_tensor(np.stack([frame, frame])), torch.cat([cond(closer), cond(nmfc)]))
        attention = net.motion_fields(sources, net.driver(cond(nmfc)), cond(nmfc), False)[3]
    face = torch.from_numpy(cv2.resize(nmfc.any(-1).astype(np.uint8), (size // 4, size // 4)) > 0)
    assert float(attention[0, 1, 0][face].min()) > 0.95  # the same-size source wins everywhere on the face


def test_the_mask_is_the_photos_own_segmentation_moved_with_it(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    frame, mask, nmfc, eyes = (avatar.read_image("frame", 0), avatar.read_mask(0), avatar.read_image("nmfc", 0),
                               avatar.read_image("eyes", 0))
    cond = lambda image: to_tensor(np.concatenate([image, eyes], -1))[None]
    driver = torch.cat([torch.zeros(1, 12, *nmfc.shape[:2]), cond(np.roll(nmfc, (-8, 12), axis=(0, 1)))], 1)  # 12 px right, 8 up
    torch.manual_seed(0)
    net = OneShotGenerator(oneshot_config("tiny")).eval()  # an untrained mask head: only the photo's mask knows the person
    with torch.no_grad():
        bound = net.bind(to_tensor(frame)[None], cond(nmfc), unit_masks(mask[None]))(driver, torch.zeros(1, 6, *nmfc.shape[:2]))
        unbound = net.bind(to_tensor(frame)[None], cond(nmfc))(driver, torch.zeros(1, 6, *nmfc.shape[:2]))
    head = np.roll(mask > 127, (-8, 12), axis=(0, 1)) & np.roll(nmfc.any(-1), (-8, 12), axis=(0, 1))  # the moved face
    found = lambda out: (out[0, 3] > 0).numpy()
    assert found(bound)[head].mean() > 0.99 and found(unbound)[head].mean() < 0.9
    background = (mask < 64) & (np.roll(mask, (-8, 12), axis=(0, 1)) < 64)  # background before and after the move
    assert found(bound)[background].mean() < 0.01


def test_the_learned_flow_moves_the_photo_only_off_the_mesh(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    nmfc, eyes = avatar.read_image("nmfc", 0), avatar.read_image("eyes", 0)
    cond = lambda image: to_tensor(np.concatenate([image, eyes], -1))[None]
    net = OneShotGenerator(oneshot_config("tiny")).eval()
    with torch.no_grad():
        net.motion[-1].bias[:2] = 1.0  # a residual of tanh(1) / 4 grid units everywhere
        sources = net.encode(to_tensor(avatar.read_image("frame", 0))[None], cond(nmfc))
        driver = cond(np.roll(nmfc, (-8, 12), axis=(0, 1)))
        prior = net.prior_flow(sources, driver, paired=False)
        _, full_flow, *_ = net.motion_fields(sources, net.driver(driver), driver, False)
    known = prior.known[0, 0, 0].numpy() > 0
    inside = cv2.erode(known.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    residual = (full_flow - prior.full)[0, 0].numpy()
    assert inside.sum() > 1000 and np.abs(residual[:, inside]).max() < 1e-6  # the face moves by the mesh alone
    far = cv2.dilate(known.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert np.allclose(residual[:, far], np.tanh(1.0) * net.config.flow_scale, atol=1e-4)  # hair and background take the residual


def test_the_photo_is_warped_without_a_step_past_the_face(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    nmfc, eyes = avatar.read_image("nmfc", 0), avatar.read_image("eyes", 0)
    size = nmfc.shape[0]
    zoomed = cv2.resize(nmfc, None, fx=1.2, fy=1.2, interpolation=cv2.INTER_NEAREST)[size // 10:size // 10 + size, size // 10:size // 10 + size]
    cond = lambda image: to_tensor(np.concatenate([image, eyes], -1))[None]
    net = OneShotGenerator(oneshot_config("tiny")).eval()
    with torch.no_grad():
        sources = net.encode(to_tensor(avatar.read_image("frame", 0))[None], cond(nmfc))
        full = net.prior_flow(sources, cond(zoomed), paired=False).full[0, 0].numpy()  # the driver comes closer: a flow that varies
    face = zoomed.any(-1).astype(np.uint8)

    def step(region: np.ndarray) -> float:
        """The flow's change from a pixel to the next, down and across, between pixels both in region (99th percentile)."""
        down = np.abs(np.diff(full, axis=1))[:, region[:-1] & region[1:]]
        across = np.abs(np.diff(full, axis=2))[:, region[:, :-1] & region[:, 1:]]
        return max(np.percentile(down, 99), np.percentile(across, 99))

    inside = cv2.erode(face, np.ones((9, 9), np.uint8)) > 0
    filled = face + enclosed_holes(torch.from_numpy(face).float()[None, None])[0, 0].numpy().astype(np.uint8)  # with the eyes
    past = (cv2.dilate(filled, np.ones((15, 15), np.uint8)) > 0) & ~(filled > 0)
    assert step(past) < 2 * step(inside)  # the rim fades into the flow beyond it: no fold or line along the face


def test_an_exact_correspondence_moves_the_face_where_the_photo_shows_it(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    model = load_face_model()
    cond = lambda i: to_tensor(np.concatenate([avatar.read_image("nmfc", i), avatar.read_image("eyes", i)], -1))[None]
    renderer = NMFCRenderer(model, avatar.resolution)
    try:
        exact = correspondence(renderer, model_mesh(avatar, model, 10), [model_mesh(avatar, model, 0)])
    finally:
        renderer.close()
    net = OneShotGenerator(oneshot_config("tiny")).eval()
    with torch.no_grad():
        sources = net.encode(to_tensor(avatar.read_image("frame", 0))[None], cond(0))
        plain = net.prior_flow(sources, cond(10), paired=False)
        given = net.prior_flow(sources, cond(10), paired=False, exact=torch.from_numpy(exact).unflatten(1, (1, 3)))
    size = avatar.resolution
    cells, _ = colour_cells(cond(10)[:, :3])
    shown = (look_up(sources.table, cells)[0, 2] > 0).reshape(size, size).numpy()  # triangles the photo shows
    face = avatar.read_image("nmfc", 10).any(-1) & (exact[0, 2] > 0) & shown
    centres = (np.stack(np.meshgrid(np.arange(size), np.arange(size)), 0) + 0.5) * (2.0 / size) - 1.0
    moved = given.full[0, 0].numpy()
    holes = enclosed_holes(torch.from_numpy(avatar.read_image("nmfc", 10).any(-1)).float()[None, None])[0, 0].numpy() > 0
    assert face.mean() > 0.1 and np.abs(moved - (exact[0, :2] - centres))[:, face].max() < 1e-5  # the face: exactly the mesh's map
    assert np.allclose(moved[:, ~face & ~holes], plain.full[0, 0].numpy()[:, ~face & ~holes])  # elsewhere as before
    assert np.abs(moved - plain.full[0, 0].numpy())[:, face].mean() < 2.0 / size  # and close to the per-triangle offsets (a pixel)


def test_a_source_that_does_not_show_part_of_the_face_is_not_chosen_there(prepared):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    nmfc, eyes, frame = avatar.read_image("nmfc", 0), avatar.read_image("eyes", 0), avatar.read_image("frame", 0)
    size = nmfc.shape[0]
    cut = nmfc.copy()
    cut[:, : size // 2] = 0  # this photo shows only the right half of the face
    smaller = cv2.warpAffine(nmfc, cv2.getRotationMatrix2D((size / 2, size / 2), 0, 0.87), (size, size), flags=cv2.INTER_NEAREST)  # the whole face, smaller
    cond = lambda image: to_tensor(np.concatenate([image, eyes], -1))[None]
    net = OneShotGenerator(oneshot_config("tiny")).eval()
    with torch.no_grad():
        sources = net.encode(to_tensor(np.stack([frame, frame])), torch.cat([cond(cut), cond(smaller)]))
        attention = net.motion_fields(sources, net.driver(cond(nmfc)), cond(nmfc), False)[3]
    face = torch.from_numpy(cv2.resize(nmfc.any(-1).astype(np.uint8), (size // 4, size // 4)) > 0)
    left = face.clone()
    left[:, size // 8 - 2:] = False  # clear of the cut: triangles across it are in both photos
    assert left.sum() > 50 and float(attention[0, 1, 0][left].min()) > 0.9  # where the cut photo shows nothing, the other wins


def test_training_pairs_are_sometimes_grey_on_both_sides(prepared):
    from h2h.models.oneshot_data import PairAugment, PairSamples

    library, _ = prepared
    samples = PairSamples([Avatar.open(library, "sample")], progress=False)
    rng = np.random.default_rng(0)
    grey = samples.batch(rng, 2, PairAugment(grey=1.0), sources=2)
    colour = samples.batch(rng, 2, PairAugment(grey=0.0), sources=2)
    spread = lambda t: float((t.amax(1) - t.amin(1)).mean())  # 0 when the three channels agree
    assert spread(grey.source) == 0.0 and spread(grey.target) == 0.0
    assert spread(colour.source) > 0.02 and spread(colour.target) > 0.02


def test_mesh_warp_baseline_follows_the_points():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    points = rng.uniform(8, 56, (40, 2)).astype(np.float32)
    assert np.array_equal(mesh_warp(image, points, points), image)
    moved = mesh_warp(image, points, points + [3.0, 0.0])  # the driver's face is 3 px to the right
    assert np.abs(moved[:, 13:50].astype(int) - image[:, 10:47]).mean() < 1.0


def test_train_oneshot_resumes(prepared, oneshot_weights, tmp_path, capsys):
    library, _ = prepared
    assert {"oneshot.safetensors", "oneshot.json", "oneshot_state.pt", "samples.png"} <= {p.name for p in oneshot_weights.iterdir()}
    out = tmp_path / "run"
    args = ["train-oneshot", "--avatars", "sample", "--out", str(out), "--preset", "tiny", "--library", str(library)]
    assert main([*args, "--max-steps", "2"]) == 0
    assert main([*args, "--max-steps", "2"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--max-steps", "4", "--resume"]) == 0
    meta = json.loads((out / "oneshot.json").read_text())
    assert meta["step"] == 4 and meta["people"] == ["sample"]
    gan = tmp_path / "gan"  # the GAN stage starts from that run and resumes with its discriminators
    gan_args = ["train-oneshot", "--avatars", "sample", "--out", str(gan), "--preset", "tiny-gan", "--library", str(library)]
    assert main([*gan_args, "--init", str(out), "--max-steps", "2"]) == 0
    assert main([*gan_args, "--max-steps", "3", "--resume"]) == 0
    assert json.loads((gan / "oneshot.json").read_text())["step"] == 3
    assert main(["train-oneshot", "--avatars", "sample", "--out", str(tmp_path / "x"), "--preset", "gan", "--init", str(out),
                 "--max-steps", "1", "--library", str(library)]) == 1
    assert "tiny one-shot generator, not small" in capsys.readouterr().err


def test_several_sources_per_pair_train_the_attention_over_sources(prepared, tmp_path):
    from safetensors.torch import load_file

    library, _ = prepared
    attention = lambda run: load_file(str(run / "oneshot.safetensors"))["motion.2.weight"][3].abs().max()
    for sources in (1, 2):
        out = tmp_path / f"k{sources}"
        assert main(["train-oneshot", "--avatars", "sample", "--out", str(out), "--preset", "tiny", "--max-steps", "2",
                     "--sources", str(sources), "--library", str(library)]) == 0
        learned = float(attention(out))
        assert (learned > 0) == (sources > 1)  # one source per pair: the softmax over sources is 1, its logit learns nothing


def test_a_photo_becomes_a_live_avatar_with_one_command(prepared, oneshot_weights, photos, tmp_path, capsys):
    library = tmp_path / "library"
    library.mkdir()
    paths, _ = photos
    assert main(["prepare", str(paths[0]), "--name", "me", "--oneshot", str(oneshot_weights), "--library", str(library)]) == 0
    assert "h2h live --avatar me" in capsys.readouterr().out
    avatar = Avatar.open(library, "me")
    assert avatar.oneshot and avatar.schema.counts.frames == 1
    meta = json.loads((avatar.path / "engines" / "generator.onnx.json").read_text())
    assert meta["sequential"] is False and meta["max_abs_error_vs_torch"] < 1e-3
    engine = load_engine(avatar)
    assert engine.precision == "int8" and not engine.sequential
    assert conditioning_stays_exact(avatar.path / "engines" / "generator.int8.onnx")
    stepper = GeneratorStepper(engine.run, avatar.resolution, engine.sequential)
    frame = stepper(avatar.read_image("nmfc", 0), avatar.read_image("eyes", 0))
    assert frame.shape == (256, 256, 3) and stepper.mask is not None
    assert main(["train", "me", "--library", str(library)]) == 1
    assert "made from a photo" in capsys.readouterr().err
    assert main(["export", "me", "--trt", "--library", str(library)]) == 2  # no GPU here: said, ONNX kept
    captured = capsys.readouterr()
    assert "one-shot avatar" in captured.out and "TensorRT engine not built" in captured.err
    out = tmp_path / "packages"
    assert main(["package", "me", "--out", str(out), "--library", str(library)]) == 0
    shared = Avatar.open_path(out / "me")
    assert shared.live_only and shared.oneshot and load_engine(shared).precision == "int8"
    model = load_face_model()
    assert np.allclose(shared.photo_meshes(model, 1)[0], avatar.photo_meshes(model, 1)[0], atol=1e-3)  # what live renders onto
    assert main(["prepare", *map(str, paths), "--name", "me", "--overwrite", "--oneshot", str(oneshot_weights),
                 "--library", str(library)]) == 0
    assert Avatar.open(library, "me").schema.counts.frames == 2


def test_live_gives_the_one_shot_generator_where_the_driver_lies_on_each_photo(oneshot_weights, photos, tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    paths, _ = photos
    assert main(["prepare", *map(str, paths), "--name", "me", "--oneshot", str(oneshot_weights), "--library", str(library)]) == 0
    avatar = Avatar.open(library, "me")
    engine = load_engine(avatar, "onnx", int8=False)
    model = load_face_model()
    meshes = photo_meshes(avatar, engine, model)
    assert correspondence_sources(engine) == 2 and len(meshes) == 2
    stage = FaceStage(model, avatar.subject, "head", brows=avatar.brows, photos=meshes)
    try:
        for i, frame in enumerate(read_frames(SAMPLE_CLIP, 12)):
            packet = stage.process(Packet(i, i / 30, frame))
    finally:
        stage.close()
    corr, driver = packet.corr, packet.nmfc.astype(np.float32)
    assert corr.shape == (1, 6, 256, 256)
    face = driver.any(-1)
    assert face.mean() > 0.1 and ((corr[0, 2] > 0) == face).mean() > 0.99  # it covers the driver's face
    for k in range(2):  # each face pixel points at the same surface point on photo k: the same NMFC colour there
        grid = torch.from_numpy(corr[:, 3 * k:3 * k + 2]).permute(0, 2, 3, 1)
        photo = torch.from_numpy(avatar.read_image("nmfc", k).astype(np.float32)).permute(2, 0, 1)[None]
        seen = F.grid_sample(photo, grid, mode="nearest", align_corners=False)[0].permute(1, 2, 0).numpy()
        shown = face & seen.any(-1)
        assert shown.mean() > 0.5 * face.mean() and np.median(np.abs(seen - driver)[shown]) <= 3.0
    cond = np.zeros((1, 18, 256, 256), np.float32)
    cond[0, 12:] = conditioning_input(packet.nmfc, packet.eyes)
    prev = np.zeros((1, 6, 256, 256), np.float32)
    given, own = engine.run(cond, prev, corr), engine.run(cond, prev)
    assert np.abs(given - own)[0, :3, face].mean() > 1e-3  # the generator uses it
    assert np.array_equal(engine.run(cond, prev, corr[:, :3]), own)  # one of another shape: its own
    assert np.allclose(GeneratorStage(engine, photos=meshes).process(replace(packet)).raw, given[0], atol=1e-5)  # live passes it
    switched = GeneratorStage(engine, photos=list(meshes)).process(replace(packet))  # rendered for another avatar's photos
    assert np.allclose(switched.raw, own[0], atol=1e-5)


def conditioning_stays_exact(int8_model) -> bool:
    """No quantise node reads the conditioning: the correspondence needs its exact colours."""
    graph = onnx.load(str(int8_model)).graph
    producer = {out: node for node in graph.node for out in node.output}
    def from_cond(tensor: str) -> bool:
        while tensor != "cond":
            if tensor not in producer or producer[tensor].op_type not in ("Slice", "Reshape", "Identity"):
                return False
            tensor = producer[tensor].input[0]
        return True
    quantised = [node for node in graph.node if node.op_type == "QuantizeLinear"]
    return bool(quantised) and not any(from_cond(node.input[0]) for node in quantised)


def test_bad_photos_are_refused_and_leave_nothing(prepared, oneshot_weights, photos, tmp_path, capsys, short_clip):
    library = tmp_path / "library"
    library.mkdir()
    paths, blank = photos
    base = ["--name", "x", "--oneshot", str(oneshot_weights), "--library", str(library)]
    assert main(["prepare", str(blank), *base]) == 1
    assert "wall.jpg: no face found" in capsys.readouterr().err
    assert main(["prepare", str(paths[0]), str(short_clip), *base]) == 1
    assert "not both" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "missing.jpg"), *base]) == 1
    assert "no such file" in capsys.readouterr().err
    assert list(library.iterdir()) == []  # no avatar, no partial folder


def test_eval_oneshot_scores_generator_and_baselines(prepared, oneshot_weights, tmp_path):
    library, _ = prepared
    out = tmp_path / "report.json"
    assert main(["eval-oneshot", "--avatars", "sample", "--oneshot", str(oneshot_weights), "--frames", "3", "--shots", "1", "2",
                 "--json", str(out), "--sheet", str(tmp_path), "--library", str(library)]) == 0
    report = json.loads(out.read_text())["sample"]
    assert {"unchanged photo", "mesh warp", "tracked-points warp"} <= set(report)
    shots = [k for k in report if "-shot" in k]
    assert [k.split()[0] for k in shots] == ["1-shot", "2-shot"]
    assert all(np.isfinite(report[k]["masked_apd"]) and report[k]["frames"] == 3 for k in report)
    assert (tmp_path / "oneshot_sample.png").exists()


def test_dropping_a_photo_on_the_window_makes_lists_and_loads_an_avatar(oneshot_weights, photos, tmp_path):
    pytest.importorskip("PySide6")
    from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
    from PySide6.QtGui import QDropEvent
    from PySide6.QtWidgets import QApplication

    from h2h.app.gui.main_window import MainWindow, fix_qt_plugin_path

    from .test_gui import _wait

    fix_qt_plugin_path()
    app = QApplication.instance() or QApplication([])
    library = tmp_path / "library"
    library.mkdir()
    window = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat), library)
    window.show()
    window.photo_maker.weights = oneshot_weights

    held = []  # the event points at its QMimeData without owning it

    def drop(path) -> QDropEvent:
        held.append(QMimeData())
        held[-1].setUrls([QUrl.fromLocalFile(str(path))])
        return QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, held[-1], Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)

    try:
        paths, blank = photos
        window.dropEvent(drop(SAMPLE_CLIP))  # not a photo: said, nothing made
        assert "Drop photos" in window.banner.text()
        window.dropEvent(drop(paths[0]))
        assert "Making avatar 'me'" in window.banner.text() and not window.photo_maker.button.isEnabled()
        assert _wait(app, lambda: "made from 1 photo" in window.banner.text(), 90), window.banner.text()
        item = window.avatar_list.currentItem().text()
        assert item.startswith("me  (one-shot)\n1 photo · ONNX")
        assert _wait(app, lambda: window.session.current is not None and window.session.current.avatar.name == "me", 60), window.message.text()
        window.dropEvent(drop(blank))
        assert _wait(app, lambda: "Could not make an avatar" in window.banner.text(), 90), window.banner.text()
        assert "no face found" in window.banner.text() and window.photo_maker.button.isEnabled()
        SCREENSHOTS.mkdir(exist_ok=True)
        assert window.grab().save(str(SCREENSHOTS / "photo_avatar.png"))
    finally:
        window.close()


def test_the_shipped_generator_loads_with_its_recipe():
    from h2h.models.oneshot_model import load_oneshot

    generator, meta = load_oneshot()
    assert meta["people"] == ["d6", "d3", "d18", "d19"]  # d9 and d0 held out for the measurement
    assert generator.config.preset == "small" and generator.config.keep_bias == 3.0
    stages, stage = 1, meta
    while stage.get("started_from"):
        stages, stage = stages + 1, stage["started_from"]
    assert stages == 5  # two L1, two GAN and one N-shot GAN stage (scripts/make_oneshot.sh), each recorded
