"""Head2HeadFS path: masks at prepare time, the few-shot networks, pretraining a base on
several people and fine-tuning a new avatar from it, through to a live step with a mask."""
import dataclasses
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from h2h.app.cli import main
from h2h.app.evaluate import sheet_frames
from h2h.engines.stepper import GeneratorStepper
from h2h.engines.torch_engine import TorchEngine
from h2h.models.avatar import Avatar
from h2h.models.base_model import load_base
from h2h.models.checkpoint import load_generator
from h2h.models.dataset import Augment, AvatarFrames
from h2h.models.losses import gan_loss
from h2h.models.networks import (
    FewShotGenerator,
    ProjectionDiscriminator,
    fewshot_config,
    fold_identity,
    split_output,
)
from h2h.models.video import VideoWriter, read_frames

from .conftest import CLIP_FRAMES, SAMPLE_CLIP


@pytest.fixture(scope="module")
def people(prepared, tmp_path_factory):
    """The sample avatar and a second person: a later stretch of the clip, mirrored."""
    from h2h.models.prepare import prepare

    library, _ = prepared
    clip = tmp_path_factory.mktemp("clips2") / "other.mp4"
    with VideoWriter(clip, 30.0, (256, 256)) as writer:
        for frame in list(read_frames(SAMPLE_CLIP, 2 * CLIP_FRAMES))[CLIP_FRAMES:]:
            writer.write(np.ascontiguousarray(frame[:, ::-1]))
    if not (library / "other").exists():
        prepare(clip, library, "other")
    return library


def _randomised(generator: FewShotGenerator) -> FewShotGenerator:
    torch.manual_seed(0)
    for p in generator.parameters():
        p.data.add_(torch.randn_like(p) * 0.05)
    return generator


def test_folding_the_identity_gives_a_plain_generator_with_the_same_output():
    generator = _randomised(FewShotGenerator(fewshot_config("tiny")))
    identity = torch.randn(1, generator.fewshot.identity_dim)
    cond, prev = generator.body.example_inputs(64, 64)
    cond.normal_(), prev.normal_()
    plain = fold_identity(generator, identity)
    assert plain.config.norm == "none" and plain.config.mask
    expected = generator(cond, prev, identity)
    assert torch.allclose(plain(cond, prev), expected, atol=1e-5)
    other = fold_identity(generator, torch.randn(1, generator.fewshot.identity_dim))
    assert not torch.allclose(other(cond, prev), expected, atol=1e-3)  # the identity matters


def test_generator_outputs_rgb_and_a_mask_in_range():
    generator = _randomised(FewShotGenerator(fewshot_config("tiny")))
    cond, prev = generator.body.example_inputs(64, 64)
    with torch.no_grad():
        out = generator(cond.normal_(), prev, torch.randn(1, generator.fewshot.identity_dim))
    rgb, mask = split_output(out)
    assert rgb.shape == (1, 3, 64, 64) and mask.shape == (1, 1, 64, 64)
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0


def test_projection_discriminator_scores_depend_on_the_person():
    d = ProjectionDiscriminator(9, rows=3, identity_dim=8, scales=1, n_layers=2, ndf=8)
    with torch.no_grad():
        d.rows.normal_()
    x = torch.randn(1, 9, 64, 64)
    a, b = d(x, torch.tensor([0]))[0][-1], d(x, torch.tensor([2]))[0][-1]
    assert not torch.allclose(a, b)
    d.reset_rows(torch.zeros(1, 8))
    assert d.rows.shape == (1, 8)


def test_hinge_loss_follows_the_paper():
    r = torch.tensor([0.5, -2.0])
    assert gan_loss(r, True, "hinge") == pytest.approx((0.5 + 3.0) / 2)  # relu(1 - r)
    assert gan_loss(r, False, "hinge") == pytest.approx((1.5 + 0.0) / 2)  # relu(1 + r)
    assert gan_loss(r, True, "hinge", generator=True) == pytest.approx(0.75)  # -r
    with pytest.raises(ValueError, match="adversarial"):
        gan_loss(r, True, "wgan")


def test_prepare_stores_a_foreground_mask_per_frame(prepared):
    library, result = prepared
    avatar = Avatar.open(library, "sample")
    assert avatar.has_masks()
    mask = avatar.read_mask(0)
    assert mask.shape == (256, 256) and mask.dtype == np.uint8
    frame = avatar.read_image("frame", 0)
    h = frame.shape[0]
    assert mask[h // 2, h // 2] > 200  # the face is foreground
    assert mask[: h // 8, : h // 8].mean() < mask[h // 3 : 2 * h // 3, h // 3 : 2 * h // 3].mean()


def test_avatars_prepared_before_masks_get_them_on_demand(prepared, model, tmp_path):
    library, result = prepared
    old = tmp_path / "lib" / "sample"
    shutil.copytree(result.path, old)
    shutil.rmtree(old / "masks")
    stored = AvatarFrames(Avatar.open(library, "sample"), model, "train", progress=False)
    made = AvatarFrames(Avatar.open(tmp_path / "lib", "sample"), model, "train", progress=False)
    assert np.abs(made.masks.astype(int) - stored.masks.astype(int)).mean() < 2
    batch = made.sample([np.random.default_rng(0)], 2, Augment())
    assert batch.mask.shape == (1, 2, 1, 256, 256) and float(batch.mask.max()) <= 1.0


def test_pretrain_a_base_then_fine_tune_a_new_avatar_from_it(people, tmp_path, capsys):
    library, bases = people, tmp_path / "bases"
    args = ["--library", str(library), "--bases", str(bases)]
    assert main(["pretrain", "--avatars", "sample", "other", "--out", "fs", "--preset", "base-tiny",
                 "--max-steps", "4", "--warmup", "0.5", *args]) == 0
    base = load_base(bases / "fs" / "main")
    assert base.meta["people"] == ["sample", "other"] and base.meta["step"] == 4
    assert base.discriminators["image.rows"].shape[0] == 2
    assert (bases / "fs" / "main" / "samples" / "latest.png").is_file()
    assert main(["pretrain", "--avatars", "sample", "other", "--out", "fs", "--preset", "base-tiny",
                 "--max-steps", "6", "--warmup", "0.5", "--resume", *args]) == 0
    assert load_base(bases / "fs" / "main").meta["step"] == 6
    assert main(["pretrain", "--avatars", "other", "sample", "--out", "fs", "--preset", "base-tiny",
                 "--max-steps", "8", "--warmup", "0.5", "--resume", *args]) == 1
    assert "same --avatars" in capsys.readouterr().err

    assert main(["train", "other", "--init", "fs", "--frames", "20", "--max-steps", "2", "--run", "ft", *args]) == 0
    avatar = Avatar.open(library, "other")
    generator, meta = load_generator(avatar.files, "ft")
    assert generator.config.mask and meta["preset"] == "tiny"
    engine = TorchEngine(avatar.files, "ft")
    assert engine.outputs[0].shape[1] == 4
    stepper = GeneratorStepper(engine.run, 256)
    frame = stepper(avatar.read_image("nmfc", 0), avatar.read_image("eyes", 0))
    assert frame.shape == (256, 256, 3) and stepper.mask.shape == (256, 256)
    # a resumed fine-tune continues with its own settings, whatever the defaults are
    assert main(["train", "other", "--run", "ft", "--resume", "--max-steps", "3", "--library", str(library)]) == 0
    assert load_generator(avatar.files, "ft")[1]["step"] == 3
    report = tmp_path / "eval.json"
    sheet = tmp_path / "sheet.png"
    assert main(["eval", "other", "--run", "ft", "--frames", "4", "--json", str(report), "--sheet", str(sheet),
                 "--library", str(library)]) == 0
    scores = json.loads(report.read_text())
    ft = next(v for k, v in scores.items() if k.startswith("ft "))
    assert 0.0 <= ft["mask_iou"] <= 1.0 and np.isnan(scores["nearest-frame baseline"]["mask_iou"])
    image = cv2.cvtColor(cv2.imread(str(sheet)), cv2.COLOR_BGR2RGB)  # columns ft | nearest frame | real, 3 frames
    assert image.shape == (52 + 3 * 256, 3 * 256, 3)
    shown = sheet_frames(avatar.split_indices("test")[:4])
    real = image[52 + 256 : 52 + 512, 512:][:200]  # the frame label sits at the bottom of each row
    assert np.abs(real.astype(int) - avatar.read_image("frame", shown[1])[:200]).mean() < 1.0


def test_fine_tuning_starts_from_the_base_with_this_persons_identity(people, tmp_path):
    from h2h.models.train import Trainer
    from h2h.models.train_config import RunOptions, train_config

    library, bases = people, tmp_path / "bases"
    assert main(["pretrain", "--avatars", "sample", "other", "--out", "fs", "--preset", "base-tiny",
                 "--max-steps", "2", "--library", str(library), "--bases", str(bases)]) == 0
    base = load_base(bases / "fs" / "main")
    options = RunOptions(run="init", progress=False, init="fs", bases=str(bases), max_steps=1)
    trainer = Trainer(Avatar.open(library, "other"), train_config("finetune-tiny", frames=20), options)
    assert len(trainer.data) == 20
    frames = torch.from_numpy(trainer.data.frames[np.linspace(0, 19, 20).round().astype(int)]).float()
    identity = base.embed(frames.div(127.5).sub(1).movedim(-1, 1))
    cond, prev = trainer.generator.example_inputs(256, 256)
    cond.uniform_(-1, 1)
    with torch.no_grad():
        expected = base.generator(cond, prev, identity[None])
        assert torch.allclose(trainer.generator(cond, prev), expected, atol=1e-4)
    assert torch.allclose(trainer.discriminators["image"].rows, identity[None])
    with pytest.raises(Exception, match="finetune"):
        Trainer(Avatar.open(library, "other"), train_config("tiny"), RunOptions(run="x", progress=False, init="fs", bases=str(bases)))


def test_a_missing_base_is_a_clear_error(prepared, tmp_path, capsys):
    library, _ = prepared
    assert main(["train", "sample", "--init", "nosuchbase", "--max-steps", "1", "--run", "nb",
                 "--library", str(library), "--bases", str(tmp_path)]) == 1
    assert "nosuchbase" in capsys.readouterr().err


def test_base_json_with_absurd_sizes_is_refused(people, tmp_path):
    from h2h.models.checkpoint import CheckpointError

    library, bases = people, tmp_path / "bases"
    assert main(["pretrain", "--avatars", "sample", "other", "--out", "fs", "--preset", "base-tiny",
                 "--max-steps", "1", "--library", str(library), "--bases", str(bases)]) == 0
    meta_file = bases / "fs" / "main" / "base.json"
    meta = json.loads(meta_file.read_text())
    meta["fewshot"]["identity_dim"] = 10**9
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="identity_dim"):
        load_base(bases / "fs" / "main")


def test_without_init_or_preset_a_new_avatar_fine_tunes_the_shipped_base(people, tmp_path, monkeypatch, caplog):
    import logging

    from h2h.models import base_model

    library, bases = people, tmp_path / "bases"
    assert main(["pretrain", "--avatars", "sample", "other", "--out", "fs", "--preset", "base-tiny",
                 "--max-steps", "1", "--library", str(library), "--bases", str(bases)]) == 0
    monkeypatch.setattr(base_model, "SHIPPED_BASE", bases / "fs" / "main")
    with caplog.at_level(logging.INFO):
        assert main(["train", "other", "--max-steps", "1", "--run", "auto", "--library", str(library)]) == 0
    assert "fine-tuning the shipped base" in caplog.text and "fine-tuning from base base" in caplog.text
    generator, meta = load_generator(Avatar.open(library, "other").files, "auto")
    assert generator.config.mask
    assert main(["train", "other", "--max-steps", "1", "--run", "scratch", "--init", "none", "--preset", "tiny",
                 "--library", str(library)]) == 0
    assert not load_generator(Avatar.open(library, "other").files, "scratch")[0].config.mask


def test_a_generator_json_asking_for_a_huge_mask_head_is_refused(people, tmp_path):
    from h2h.models.checkpoint import CheckpointError, generator_config_from_dict
    from h2h.models.networks import generator_config

    data = dataclasses.asdict(generator_config("tiny", mask=True))
    data["mask"] = 100000
    with pytest.raises(CheckpointError, match="'mask'"):
        generator_config_from_dict(data)


def test_init_names_a_base_by_name_or_by_path(tmp_path):
    from h2h.models.base_model import SHIPPED_BASE, find_base

    folder = tmp_path / "bases" / "mine" / "main"
    folder.mkdir(parents=True)
    (folder / "base.json").write_text("{}")
    assert find_base("base", tmp_path / "bases") == SHIPPED_BASE
    assert find_base("mine", tmp_path / "bases") == folder
    assert find_base(str(folder), tmp_path / "elsewhere") == folder  # a path has a '/'
    assert find_base("sample", tmp_path / "bases") is None  # not a base: may be an avatar
    assert find_base("../mine", tmp_path / "bases") is None
