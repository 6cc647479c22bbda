"""Nothing already saved is lost: killed training resumes to exactly the uninterrupted result,
data-parallel training equals one process, re-preparing keeps the training, killed prepares
leave nothing behind, and a new run never replaces a trained one."""
import json
import io
import os
import shutil
import signal
import subprocess
import sys
import time

import torch

from h2h.app.cli import main
from h2h.models.avatar import Avatar
from h2h.models.manifest import CONDITIONING_VERSION
from h2h.models.library import list_avatars

TRAIN = ["train", "sample", "--preset", "tiny", "--threads", "1", "--sample-minutes", "999"]


def _h2h(*argv: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "h2h.app.cli", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kwargs)


def _state(folder) -> dict | None:
    try:
        return torch.load(io.BytesIO((folder / "state.pt").read_bytes()), weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None


def _flatten(value, prefix=""):
    """Every tensor and number of a (nested) state, by path."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}/{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}/{i}")
    else:
        yield prefix, value


def _comparable(state: dict) -> dict:
    """The whole training state but wall-clock time (elapsed and the GAN start's seconds)."""
    state = dict(state, elapsed=None, gan_start=state["gan_start"][::2] if state["gan_start"] else None)
    return dict(_flatten(state))


def _assert_same(a: dict, b: dict, atol: float = 0.0) -> None:
    a, b = _comparable(a), _comparable(b)
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            same = torch.equal(x, y) if atol == 0 or not x.is_floating_point() else torch.allclose(x, y, atol=atol, rtol=atol)
            assert same, f"{key} differs (max {float((x.double() - y.double()).abs().max()):.3g})"
        else:
            assert x == y, key


def test_sigkilled_training_resumes_to_exactly_the_uninterrupted_state(prepared):
    """Killed (SIGKILL) during the warm-up, at the warm-up -> GAN switch and in the GAN phase,
    with the weight average on: the resumed run's final state equals the straight run's."""
    library, _ = prepared
    common = [*TRAIN, "--max-steps", "10", "--warmup", "0.5", "--ema", "0.9", "--checkpoint-steps", "1",
              "--library", str(library)]
    straight = _h2h(*common, "--run", "straight", "--overwrite")
    assert straight.wait(timeout=300) == 0, straight.stderr.read().decode()
    folder = library / "sample" / "checkpoints" / "killed"
    shutil.rmtree(folder, ignore_errors=True)
    kills = []
    for target in (2, 5, 7):  # warm-up; the first GAN step (switch at 5); GAN phase
        proc = _h2h(*common, "--run", "killed", *(["--resume"] if kills else []))
        while proc.poll() is None and ((state := _state(folder)) is None or state["step"] < target):
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(_state(folder)["step"])
    assert kills == sorted(kills) and kills[-1] < 10
    last = _h2h(*common, "--run", "killed", "--resume")
    assert last.wait(timeout=300) == 0, last.stderr.read().decode()
    expected, got = _state(library / "sample" / "checkpoints" / "straight"), _state(folder)
    assert got["step"] == 10 and got["gan_start"][0] == 5 and got["ema"]
    _assert_same(expected, got)


def test_data_parallel_training_equals_one_process_on_the_combined_batch_and_resumes(prepared, tmp_path):
    """torchrun with 2 CPU processes of batch 1 (gloo, DistributedDataParallel), stopped and
    resumed under torchrun, against one process of batch 2 trained straight through. (Under
    torchrun the run is 'main': torchrun's own parser takes --run for its --run-path.)"""
    library, _ = prepared
    shutil.copytree(library / "sample", tmp_path / "sample", ignore=shutil.ignore_patterns("checkpoints", "engines", "preview"))
    common = [*TRAIN, "--warmup", "0", "--library", str(tmp_path)]
    single = _h2h(*common, "--max-steps", "4", "--batch", "2", "--run", "single")
    assert single.wait(timeout=300) == 0, single.stderr.read().decode()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "h2h.app.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for steps, resume in (("2", []), ("4", ["--resume"])):
        done = subprocess.run([*torchrun, *common, "--max-steps", steps, "--batch", "1", *resume],
                              env=env, capture_output=True, timeout=600)
        workers = [line for line in done.stderr.decode().splitlines() if "torch/distributed/elastic" not in line]
        assert done.returncode == 0, "\n".join(workers[-60:])  # the workers' own last words, not torchrun's summary
    expected = _state(tmp_path / "sample" / "checkpoints" / "single")
    got = _state(tmp_path / "sample" / "checkpoints" / "main")
    assert got["step"] == expected["step"] == 4 and got["frames_seen"] == expected["frames_seen"]
    assert dict(expected["train_config"], batch=1) == got["train_config"]  # the same run but the split batch
    assert torch.equal(got["rng"], expected["rng"]) and got["gan_start"][::2] == expected["gan_start"][::2]
    # Summing the two halves' gradients differs from one batch's in the last bits. Adam divides
    # by the gradient's own size, so parameters whose gradient is pure rounding noise (conv biases
    # in front of an instance norm, which cancel in the norm) take full-size steps either way:
    # the networks are compared by what they compute, the weights by how many agree closely.
    for key in ("generator", "discriminators"):
        close = sum(int(torch.isclose(a, expected[key][k], atol=1e-4).sum()) for k, a in got[key].items())
        total = sum(a.numel() for a in got[key].values())
        assert close / total > 0.99, f"{key}: only {close / total:.2%} of the weights within 1e-4"
    a, b = _outputs(expected), _outputs(got)
    for part in a:
        assert torch.allclose(a[part], b[part], atol=1e-3), (part, float((a[part] - b[part]).abs().max()))


def _outputs(state: dict) -> dict[str, torch.Tensor]:
    """What the trained generator and image discriminator compute on fixed inputs."""
    from h2h.models.networks import SequentialGenerator, generator_config, image_discriminator
    from h2h.models.train_config import train_config

    config = train_config("tiny")
    generator = SequentialGenerator(generator_config("tiny")).eval()
    generator.load_state_dict(state["generator"])
    d = image_discriminator(ndf=config.ndf, n_layers=config.d_layers, scales=config.d_scales)
    d.load_state_dict({k.removeprefix("image."): v for k, v in state["discriminators"].items() if k.startswith("image.")})
    rng = torch.Generator().manual_seed(0)
    cond, prev = (torch.rand(1, c, 256, 256, generator=rng) * 2 - 1 for c in (18, 6))
    with torch.no_grad():
        return {"generator": generator(cond, prev),
                "image discriminator": torch.cat([scale[-1].flatten() for scale in d(torch.cat([cond[:, -6:], prev[:, -3:]], 1))])}


def test_a_new_run_never_replaces_a_trained_one(prepared, capsys):
    library, _ = prepared
    argv = [*TRAIN, "--max-steps", "1", "--run", "keep", "--library", str(library)]
    assert main([*argv, "--overwrite"]) == 0
    state = (library / "sample" / "checkpoints" / "keep" / "state.pt").read_bytes()
    assert main(argv) == 1
    assert "--resume" in capsys.readouterr().err
    assert (library / "sample" / "checkpoints" / "keep" / "state.pt").read_bytes() == state
    log = library / "sample" / "checkpoints" / "keep" / "log.csv"
    log.write_text("step,minutes\n10,0.1\n")
    assert main([*argv, "--overwrite"]) == 0
    assert not log.exists() or "10,0.1" not in log.read_text()  # the old run's log went with it


def test_prepare_overwrite_keeps_the_training_unless_told(exported, short_clip, capsys):
    library, avatar = exported
    work = library.parent / "overwrite-lib"
    shutil.copytree(library / "sample", work / "sample")
    manifest = json.loads((work / "sample" / "avatar.json").read_text())
    (work / "sample" / "avatar.json").write_text(json.dumps({**manifest, "conditioning": 2}))  # made by an older release
    onnx = (work / "sample" / "engines" / "generator.onnx").read_bytes()
    state = (work / "sample" / "checkpoints" / "main" / "state.pt").read_bytes()
    assert main(["prepare", str(short_clip), "--name", "sample", "--overwrite", "--library", str(work)]) == 0
    out = capsys.readouterr().out
    assert "kept checkpoints/ and engines/" in out and "--discard-training" in out
    assert "kept conditioning version 2" in out  # what the kept generator was trained on
    assert Avatar.open(work, "sample").schema.conditioning == 2 and not Avatar.open(work, "sample").subject.eye_detail
    assert (work / "sample" / "engines" / "generator.onnx").read_bytes() == onnx
    assert (work / "sample" / "checkpoints" / "main" / "state.pt").read_bytes() == state
    argv = ["prepare", str(short_clip), "--name", "sample", "--overwrite", "--discard-training", "--library", str(work)]
    assert main(argv) == 0
    assert not (work / "sample" / "checkpoints" / "main").exists()
    assert not list((work / "sample" / "engines").iterdir())
    assert Avatar.open(work, "sample").schema.conditioning == CONDITIONING_VERSION  # a fresh start takes the current one


def test_a_killed_prepare_leaves_the_avatar_and_its_partial_folder_is_cleaned(prepared, short_clip, tmp_path):
    library, _ = prepared
    work = tmp_path / "lib"
    shutil.copytree(library / "sample", work / "sample", ignore=shutil.ignore_patterns("checkpoints"))
    manifest = (work / "sample" / "avatar.json").read_bytes()
    proc = _h2h("prepare", str(short_clip), "--name", "sample", "--overwrite", "--library", str(work))
    deadline = time.time() + 120
    while time.time() < deadline and not list(work.glob(".sample.partial-*/frames/000010.png")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(work.glob(".sample.partial-*")), "killed before it started writing"
    assert (work / "sample" / "avatar.json").read_bytes() == manifest  # the good avatar is untouched
    assert list_avatars(work) == ["sample"]  # the partial folder is not listed
    Avatar.open(work, "sample")
    assert main(["prepare", str(short_clip), "--name", "other", "--library", str(work)]) == 0
    assert list(work.glob(".sample.partial-*")), "another name's prepare leaves it alone"
    assert main(["prepare", str(short_clip), "--name", "sample", "--overwrite", "--library", str(work)]) == 0
    assert not list(work.glob(".*")), "the next prepare of the name cleans what the killed one left"


def test_a_truncated_video_says_how_many_frames_it_claimed(short_clip, tmp_path, capsys):
    data = short_clip.read_bytes()
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    assert main(["prepare", str(truncated), "--name", "cut", "--library", str(tmp_path / "lib")]) == 0
    err = capsys.readouterr().err
    assert "claims 36 frames but only" in err and "truncated" in err


def test_a_still_image_is_named_as_such(tmp_path, capsys):
    import cv2

    from h2h.models.video import read_frames

    from .conftest import SAMPLE_CLIP

    photo = tmp_path / "me.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(next(read_frames(SAMPLE_CLIP)), cv2.COLOR_RGB2BGR))
    still = tmp_path / "me.mp4"  # a photo under a video's name: the one-shot path needs its real extension
    still.write_bytes(photo.read_bytes())
    assert main(["prepare", str(still), "--name", "me", "--library", str(tmp_path / "lib")]) == 1
    err = capsys.readouterr().err
    assert "is a still image" in err and ".jpg" in err and "video" in err


def test_a_replace_killed_between_its_two_renames_is_restored(prepared, tmp_path):
    from h2h.models.avatar import clean_partials

    library, _ = prepared
    shutil.copytree(library / "sample", tmp_path / ".sample.old-abcd1234", ignore=shutil.ignore_patterns("checkpoints"))
    clean_partials(tmp_path, "sample")
    assert list_avatars(tmp_path) == ["sample"] and not list(tmp_path.glob(".*"))
    Avatar.open(tmp_path, "sample")
