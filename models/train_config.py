"""What shapes a training run (TrainConfig, stored in every checkpoint, with named presets)
and how long and where it runs (RunOptions, free to change on --resume)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace

from .losses import ADVERSARIAL_MODES, LossWeights

ABLATIONS = ("l1-single",)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run; stored in every checkpoint."""

    preset: str = "lite"
    epochs: int = 60
    decay_fraction: float = 1 / 3  # the last third decays the learning rate linearly to 0
    batch: int = 1
    seq_start: int = 3
    seq_max: int = 6
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    ndf: int = 32
    d_layers: int = 3
    d_scales: int = 2
    weights: LossWeights = field(default_factory=LossWeights)
    l1: float = 10.0  # pixel reconstruction; stands in for VGG when its weights are absent
    laplacian: float = 0.0  # Laplacian-pyramid L1, a multi-scale term used when VGG's weights are absent
    warmup: float = 0.0  # fraction of the run spent on single-frame L1 before the GAN starts
    ema: float = 0.0  # decay of the generator's weight average that is saved for inference (0: off)
    face_parts: float = 0.0  # extra L1 inside the eye regions and the mouth crop (blinks, brows, open mouths)
    rare_expressions: float = 0.0  # share of sequences drawn favouring unusual expressions
    mask: float = 0.0  # > 0: the generator also predicts the foreground mask, with this L1 weight (Head2HeadFS)
    adversarial: str = "lsgan"  # or "hinge" (Head2HeadFS)
    projection: bool = False  # D_I scores "real and this person" with a learnable row per identity (Head2HeadFS eq. 7)
    match: float = 0.0  # embedding matching: identity vector vs its D_I row (Head2HeadFS eq. 8; multi-person base only)
    references: int = 4  # frames the identity embedder averages (multi-person base only)
    frames: int | None = None  # train on the first N valid frames of the train split only (few-shot: 50-500)
    ablation: str | None = None
    seed: int = 0


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # the first 45% of the run is a single-frame L1 warm-up, then the GAN on short sequences:
    # on a CPU the GAN phase needs as many generator updates as it can get (a 4-frame step
    # costs ~1.3 s, a 6-frame one ~2 s on 2 cores), and starting it from a good reconstruction
    # avoids the checkerboard noise a GAN from scratch makes in its first hour. The saved
    # generator is a running average of the weights (~330-step horizon), which smooths the
    # speckle a short GAN phase leaves at hair and eye edges (docs/RESULTS.md has the sweep).
    # Blinks, winks, brow motion and open mouths are small in area and rare in a talking-head
    # video, so eye and mouth regions get their own L1 and half the sequences favour unusual
    # expressions (docs/RESULTS.md, "Transfer fidelity")
    "lite": TrainConfig(warmup=0.45, seq_max=4, ema=0.997, face_parts=3.0, rare_expressions=0.5),
    # the paper's reconstruction term is VGG; without its weights (none can be downloaded) a
    # Laplacian-pyramid L1 takes its place, so the GAN is never trained without one
    "paper": TrainConfig(preset="paper", ndf=64, l1=0.0, laplacian=10.0, seq_max=9),
    # for tests and smoke runs: tiny networks, short sequences
    "tiny": TrainConfig(preset="tiny", ndf=8, d_layers=2, d_scales=1, seq_start=2, seq_max=3),
    # the Head2HeadFS multi-person base (h2h pretrain): identity-modulated lite generator with a
    # mask output, hinge loss, projection D_I and embedding matching (lambda 10 as in the paper)
    "base": TrainConfig(warmup=0.3, seq_max=4, ema=0.999, face_parts=3.0, rare_expressions=0.5, mask=10.0,
                        adversarial="hinge", projection=True, match=10.0, epochs=1000),
    "base-tiny": TrainConfig(preset="tiny", ndf=8, d_layers=2, d_scales=1, seq_start=2, seq_max=3, mask=10.0,
                             adversarial="hinge", projection=True, match=10.0, references=2),
    # fine-tuning one person from a base (Head2HeadFS 3.4): the base's networks, the same losses.
    # Half the time on single-frame L1 first: on this CPU a single-frame step costs a seventh of
    # a 4-frame GAN step, and 10 minutes that way fit the new person far better than 10 minutes
    # of the GAN alone (docs/RESULTS.md has the schedules tried). The weight average's horizon is
    # ~100 steps
    "finetune": TrainConfig(warmup=0.5, seq_max=4, ema=0.99, face_parts=3.0, rare_expressions=0.5, mask=10.0,
                            adversarial="hinge", projection=True),
    "finetune-tiny": TrainConfig(preset="tiny", warmup=0.5, ndf=8, d_layers=2, d_scales=1, seq_start=2, seq_max=3, mask=10.0,
                                 adversarial="hinge", projection=True),
}


def finetune_preset(layout: str) -> str:
    """The TRAIN_PRESETS entry that fine-tunes a base of this generator layout."""
    return "finetune-tiny" if layout == "tiny" else "finetune"


def train_config(preset: str, **overrides: object) -> TrainConfig:
    if preset not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(TRAIN_PRESETS)}")
    if overrides.get("adversarial", "lsgan") not in ADVERSARIAL_MODES:
        raise ValueError(f"unknown adversarial loss {overrides['adversarial']!r}; choose one of {ADVERSARIAL_MODES}")
    if overrides.get("ablation") not in (None, *ABLATIONS):
        raise ValueError(f"unknown ablation {overrides['ablation']!r}; choose one of {ABLATIONS}")
    return replace(TRAIN_PRESETS[preset], **overrides)


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(data: dict) -> TrainConfig:
    data = dict(data)
    data["weights"] = LossWeights(**data["weights"])
    return TrainConfig(**data)


@dataclass
class RunOptions:
    """How long and where; not part of the model, may change on --resume."""

    run: str = "main"
    max_minutes: float | None = None
    max_steps: int | None = None
    resume: bool = False
    overwrite: bool = False  # replace an existing run of this name (its checkpoint, log and samples)
    init: str | None = None  # "base" (shipped), a base's name or folder, an avatar, or a state.pt
    bases: str | None = None  # where pretrained bases are looked up (default: beside the library)
    device: str = "cpu"
    vgg_weights: str | None = None
    sample_minutes: float = 5.0
    checkpoint_minutes: float = 5.0
    checkpoint_steps: int | None = None
    progress: bool = True
    threads: int | None = None
    precision: str = "auto"  # auto: bf16 (else fp16) autocast on a GPU, fp32 on a CPU
