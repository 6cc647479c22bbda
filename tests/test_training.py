"""Trainer behaviour users depend on: exact resume, clear failures, DDP, generator reenactment."""
import os
import signal

import numpy as np
import pytest
import torch

from h2h.app.cli import main
from h2h.models import checkpoint as ckpt
from h2h.models.avatar import Avatar
from h2h.models.checkpoint import CheckpointError, load_generator
from h2h.models.dataset import Augment, AvatarFrames
from h2h.models.gan_modules import face_part_l1
from h2h.models.geometry.retarget import Retargeter
from h2h.models.train import Trainer
from h2h.models.train_config import RunOptions, train_config
from h2h.models.video import read_frames


def _trainer(library, run, **options):
    opts = RunOptions(run=run, progress=False, **options)
    return Trainer(Avatar.open(library, "sample"), train_config("tiny"), opts)


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.generator.state_dict().items()}


def test_dataset_batches_have_the_documented_shapes(prepared, model):
    library, _ = prepared
    data = AvatarFrames(Avatar.open(library, "sample"), model, "train", progress=False)
    batch = data.sample([np.random.default_rng(0), np.random.default_rng(1)], 3, Augment())
    assert batch.cond.shape == (2, 5, 6, 256, 256) and batch.real.shape == (2, 3, 3, 256, 256)
    assert batch.flow.shape == (2, 3, 2, 256, 256) and batch.mouth.shape == (2, 3, 2)
    assert batch.window(0).shape == (2, 18, 256, 256)
    assert -1.0 <= float(batch.real.min()) and float(batch.real.max()) <= 1.0
    again = data.sample([np.random.default_rng(0), np.random.default_rng(1)], 3, Augment())
    assert torch.equal(batch.cond, again.cond)  # sampling is a function of the rng


def test_unaugmented_sample_is_the_cached_conditioning(prepared, model):
    library, _ = prepared
    avatar = Avatar.open(library, "sample")
    data = AvatarFrames(avatar, model, "train", progress=False)
    batch = data.sample([np.random.default_rng(1)], 1, Augment.off())
    i = int(batch.index[0, 0])
    nmfc = ((batch.cond[0, -1, :3].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    eyes = ((batch.cond[0, -1, 3:].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    assert np.array_equal(nmfc, avatar.read_image("nmfc", i))
    assert (eyes != avatar.read_image("eyes", i)).any(-1).mean() < 0.002
    face = Retargeter(model, avatar.subject, "self").retarget(avatar.tracks["landmarks"][i], avatar.tracks["pupils"][i], avatar.subject)
    assert avatar.subject.eye_detail and face.detail is not None
    np.testing.assert_allclose(data.vertices[int(np.flatnonzero(data.indices == i)[0])], face.vertices, atol=1e-3)


def test_face_part_loss_sees_eyes_and_mouth_and_nothing_else(prepared, model):
    library, _ = prepared
    data = AvatarFrames(Avatar.open(library, "sample"), model, "train", progress=False)
    batch = data.sample([np.random.default_rng(3)], 2, Augment.off())
    assert float(face_part_l1(batch, batch.real)) == 0.0
    drawn = (batch.cond[0, -1, 3:] > -1).any(0)
    ys, xs = torch.nonzero(drawn, as_tuple=True)
    eye_y, eye_x = int(ys.float().mean()), int(xs.float().mean())
    mouth_x, mouth_y = (int(v) for v in batch.mouth[0, -1].round())
    for y, x, counts in ((eye_y, eye_x, True), (mouth_y, mouth_x, True), (250, 5, False)):
        fake = batch.real.clone()
        fake[0, -1, :, y - 3 : y + 4, x - 3 : x + 4] += 0.5
        assert (float(face_part_l1(batch, fake)) > 0) == counts, (y, x)


def test_unusual_expressions_are_drawn_more_often(prepared, model):
    library, _ = prepared
    data = AvatarFrames(Avatar.open(library, "sample"), model, "train", progress=False)
    starts = data.sequence_starts(2)
    assert data.start_weights(starts, 2, 0.0) is None
    weights = data.start_weights(starts, 2, 0.5)
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0.5 / len(starts) - 1e-12).all()
    rarest = np.maximum(data.rarity()[starts], data.rarity()[starts + 1])
    order = np.argsort(rarest)
    assert (np.diff(weights[order]) >= -1e-12).all() and weights[order[-1]] > 1.5 * weights[order[0]]
    assert (weights * rarest).sum() > 1.03 * rarest.mean()  # the expected rarity of a drawn sequence
    rngs = lambda: [np.random.default_rng([0, 7, g]) for g in range(2)]  # noqa: E731
    together = data.sample(rngs(), 2, Augment(), 0.5)
    apart = [data.sample([rng], 2, Augment(), 0.5) for rng in rngs()]  # two processes of batch 1
    assert torch.equal(together.index, torch.cat([b.index for b in apart]))
    assert torch.equal(together.cond, torch.cat([b.cond for b in apart]))


def test_warmup_trains_single_frames_with_l1_then_the_sequential_gan(prepared):
    library, _ = prepared
    config = train_config("tiny", warmup=0.5)
    trainer = Trainer(Avatar.open(library, "sample"), config, RunOptions(run="warm", progress=False, max_steps=4))
    phases = []
    while not trainer.finished():
        phases.append((trainer.sequence_length(), trainer.learning_rate(), sorted(trainer.train_step())))
        trainer.step += 1
    assert phases[0] == phases[1] == (1, config.lr, ["g_l1"])
    assert phases[2][1] == config.lr  # the GAN phase starts at the full learning rate
    for length, _, losses in phases[2:]:
        assert length >= config.seq_start and {"g_image", "g_mouth", "d_image"} <= set(losses)
    assert trainer.frames_seen == sum(length for length, _, _ in phases)  # what the bar's epochs count
    assert all(state["step"] == 2 for state in trainer.opt_g.state.values())  # a fresh Adam for the GAN


def test_a_finished_run_resumed_for_longer_continues_its_gan_phase(prepared):
    library, _ = prepared
    avatar, config = Avatar.open(library, "sample"), train_config("tiny", warmup=0.5)
    Trainer(avatar, config, RunOptions(run="extend", progress=False, max_steps=4)).run()
    longer = Trainer(avatar, config, RunOptions(run="extend", progress=False, max_steps=8, resume=True))
    assert longer.step == 4 and not longer.warming_up
    assert longer.sequence_length() > 1 and longer.learning_rate() == config.lr


def test_saved_generator_is_the_weight_average(prepared):
    library, _ = prepared
    avatar, config = Avatar.open(library, "sample"), train_config("tiny", ema=0.5)
    trainer = Trainer(avatar, config, RunOptions(run="ema", progress=False, max_steps=1))
    before = _weights(trainer)
    trainer.run()
    after = _weights(trainer)
    saved, _ = load_generator(avatar.files, "ema")
    for name, value in saved.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.5 * (before[name] + after[name]), atol=1e-6)
    assert not all(torch.equal(before[k], after[k]) for k in before)


def test_resume_refuses_other_settings(prepared):
    library, _ = prepared
    _trainer(library, "mismatch", max_steps=1).run()
    avatar = Avatar.open(library, "sample")
    with pytest.raises(CheckpointError, match="different settings"):
        Trainer(avatar, train_config("tiny", seq_max=4), RunOptions(run="mismatch", resume=True, progress=False))


def test_corrupt_checkpoint_is_a_clear_error(prepared, capsys):
    library, _ = prepared
    folder = library / "sample" / "checkpoints" / "corrupt"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"not a checkpoint at all")
    code = main(["train", "sample", "--preset", "lite", "--run", "corrupt", "--resume", "--library", str(library)])
    assert code == 1
    assert "not a readable h2h checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_at_a_step_boundary_and_says_how_to_continue(prepared, monkeypatch, capsys, signum):
    library, _ = prepared
    original = Trainer.train_step

    def signal_inside_step_2(self):
        if self.step == 2:
            os.kill(os.getpid(), signum)  # arrives in the middle of the step
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", signal_inside_step_2)
    handler = signal.getsignal(signal.SIGINT)  # default, or ignored when the suite runs in the background
    run = f"stop-{signum}"
    code = main(["train", "sample", "--preset", "tiny", "--run", run, "--max-steps", "5", "--library", str(library)])
    assert code == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum]
    assert "--resume" in capsys.readouterr().err
    state = ckpt.load_state(library / "sample" / "checkpoints" / run / "state.pt")
    assert state["step"] == 3  # step 2 finished (G, average and D all updated), then it stopped
    assert signal.getsignal(signal.SIGINT) is handler  # handlers restored


def test_full_disk_keeps_the_last_good_checkpoint(prepared, monkeypatch):
    library, _ = prepared
    trainer = _trainer(library, "disk", max_steps=1)
    trainer.run()
    before = (trainer.folder / "state.pt").read_bytes()

    def no_space(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "atomic_write_bytes", no_space)
    trainer.options.max_steps = 2
    with pytest.raises(OSError):
        trainer.run()
    assert (trainer.folder / "state.pt").read_bytes() == before
    assert ckpt.load_state(trainer.folder / "state.pt")["step"] == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_asked_for_but_absent(prepared, capsys):
    library, _ = prepared
    assert main(["train", "sample", "--device", "cuda", "--max-steps", "1", "--library", str(library)]) == 1
    assert "CUDA was asked for" in capsys.readouterr().err


def test_unknown_avatar(tmp_path, capsys):
    assert main(["train", "ghost", "--library", str(tmp_path)]) == 1
    assert "no avatar" in capsys.readouterr().err


def test_reenact_with_the_generator_writes_one_frame_per_source_frame(prepared, short_clip, tmp_path):
    library, _ = prepared
    _trainer(library, "main", max_steps=1, overwrite=True).run()
    out = tmp_path / "out.mp4"
    argv = ["reenact", "--avatar", "sample", "--source", str(short_clip), "--out", str(out), "--side-by-side"]
    assert main([*argv, "--library", str(library)]) == 0
    frames = list(read_frames(out))
    assert len(frames) == len(list(read_frames(short_clip)))
    assert frames[0].shape == (256, 3 * 256, 3)
    assert main(["reenact", "--avatar", "sample", "--mode", "self", "--out", str(tmp_path / "self.mp4"), "--library", str(library)]) == 0
    assert len(list(read_frames(tmp_path / "self.mp4"))) == 12  # the test split
