"""`h2h train`: the Head2Head++ sequential GAN on an avatar's train split (DESIGN 5).

Self-reenactment: conditioning -> the target's own frames. The generator runs over short
sequences feeding its own previous outputs; image, mouth and dynamics discriminators,
feature matching, VGG19 perceptual (when weights are present), flow-warp temporal loss.
Runs plain or under torchrun (DistributedDataParallel: gloo on CPU, NCCL on GPU). Ctrl-C and
SIGTERM stop it between steps, after a checkpoint, so a resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import io
import logging
import os
import shutil
import time
from pathlib import Path
from dataclasses import replace
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from .avatar import Avatar, AvatarError, AvatarFiles
from .checkpoint import GENERATOR_FILE, GENERATOR_META, STATE_FILE, CheckpointError, load_state, save_generator, save_state
from .base_model import Base, bases_folder, find_base, load_base
from .dataset import WINDOW, Augment, AvatarFrames, Batch, to_image, to_tensor
from .distributed import Distributed
from .interrupts import Interrupted, deferred_signals
from .mixed_precision import MixedPrecision
from .io_utils import atomic_write_bytes
from .manifest import CONDITIONING_VERSION, CONDITIONING_VERSIONS
from .thread_tuner import training_threads
from .train_config import RunOptions, TrainConfig, config_from_dict, config_to_dict, finetune_preset
from .library import LibraryError, check_run_name
from .geometry.face_model import load_face_model
from .losses import (
    PerceptualLoss,
    compose_flows,
    feature_matching_loss,
    flow_valid_mask,
    gan_loss,
    laplacian_pyramid_l1,
    load_vgg19,
    warp_loss,
)
from .gan_modules import Critic, SequenceRunner, d_inputs, dynamics_starts, face_part_l1, judge
from .networks import (
    RGB_CHANNELS,
    FEWSHOT_PRESETS,
    DynamicsDiscriminator,
    ProjectionDiscriminator,
    SequentialGenerator,
    count_parameters,
    fold_identity,
    generator_config,
    image_discriminator,
    mouth_discriminator,
    split_output,
)

log = logging.getLogger(__name__)
LOSS_NAMES = ("g_image", "g_fm_image", "g_mouth", "g_fm_mouth", "g_dynamics", "g_fm_dynamics", "g_warp",
              "g_vgg", "g_lap", "g_l1", "g_parts", "g_mask", "g_match", "d_image", "d_mouth", "d_dynamics")
EMBED_FRAMES = 32  # frames of the new person the base's embedder averages
LOG_COLUMNS = ("step", "minutes", "lr", "seq_len", "threads", *LOSS_NAMES)  # fixed, so phases with fewer losses line up


class Mark(NamedTuple):
    """A point in a run: steps taken, seconds of training, frames generated."""

    step: int
    elapsed: float
    frames: int


def saved_config(state: dict, where: Path) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with (what --resume must continue)."""
    try:
        return config_from_dict(state["train_config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{where}: its training settings are unreadable ({exc}); train a new --run") from exc


def resolve_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError("CUDA was asked for but no CUDA GPU/driver is available; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise CheckpointError(f"unknown device {device!r}; use cpu or cuda")
    return torch.device(device)


class Trainer:
    def __init__(self, avatar: Avatar, config: TrainConfig, options: RunOptions) -> None:
        avatar.require_video("training")
        self.avatar = avatar
        self._setup(config, options, avatar.files, f"checkpoints/{options.run}")
        self.data = AvatarFrames(avatar, load_face_model(), "train", options.progress and self.world.main, config.frames,
                                 masks=config.mask > 0)
        self._finish_setup()

    def _setup(self, config: TrainConfig, options: RunOptions, files: AvatarFiles, folder: str) -> None:
        """Devices, run folder and networks; `folder` is the run's place inside `files`."""
        self.config, self.options = config, options
        self.device = resolve_device(options.device)
        self.world = Distributed(options.device)
        if self.world.device.type == "cuda":
            self.device = self.world.device
        try:
            check_run_name(options.run)
        except LibraryError as exc:
            raise CheckpointError(str(exc)) from exc
        self.files, self.run_folder = files, folder
        self.folder = files.path(folder)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
        try:
            self.amp = MixedPrecision(options.precision, self.device)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from exc
        self._check_run_is_free()
        torch.manual_seed(config.seed)
        self.generator = self._make_generator().to(self.device)
        self.ema = copy.deepcopy(self.generator).requires_grad_(False) if config.ema > 0 else None
        self._ema_loaded = False
        self.single = config.ablation == "l1-single"
        self.discriminators = nn.ModuleDict()
        if not self.single:
            d = dict(ndf=config.ndf, n_layers=config.d_layers, scales=config.d_scales)
            people = dict(rows=self._identity_rows(), identity_dim=self._identity_dim()) if config.projection else {}
            self.discriminators["image"] = image_discriminator(**d, **people)
            self.discriminators["mouth"] = mouth_discriminator(**d)
            self.discriminators["dynamics"] = DynamicsDiscriminator(**d)
        self.discriminators.to(self.device)
        self.opt_g = self._adam(self.generator)
        self.opt_d = self._adam(self.discriminators) if not self.single else None
        self.perceptual = None
        if not self.single and config.weights.vgg > 0:
            vgg = load_vgg19(options.vgg_weights)
            self.perceptual = PerceptualLoss(vgg).to(self.device) if vgg is not None else None
        self.step = 0
        self.elapsed = 0.0
        self.gan_start: Mark | None = None  # where the GAN phase began
        self.frames_seen = 0  # generated training frames over all processes (epochs = this / train frames)
        self.augment = Augment()

    def _finish_setup(self) -> None:
        """After the data is loaded: resume or initialise, then wrap the modules for DDP."""
        if self.options.resume:
            self._resume()
        elif self.options.init:
            self._init_from(self.options.init)
        self.runner = self.world.wrap(SequenceRunner(self.generator))  # DDP broadcasts rank 0's weights
        self.critic = self.world.wrap(Critic(self.discriminators, self.config.adversarial)) if not self.single else None
        if self.ema is not None and not self._ema_loaded:
            self.ema.load_state_dict(self.generator.state_dict())

    def _make_generator(self) -> nn.Module:
        return SequentialGenerator(generator_config(self.config.preset, mask=self.config.mask > 0))

    def _identity_rows(self) -> int:
        """Rows of a projection D_I: one per person trained."""
        return 1

    def _identity_dim(self) -> int:
        return FEWSHOT_PRESETS[self.config.preset].identity_dim if self.config.preset in FEWSHOT_PRESETS else 256

    @property
    def name(self) -> str:
        """What is trained, for logs and metadata."""
        return self.avatar.name

    def _check_run_is_free(self) -> None:
        """A new run never silently replaces a trained one: --resume it or --overwrite it."""
        for name in (STATE_FILE, GENERATOR_FILE, GENERATOR_META, "log.csv", "samples"):
            self._run_file(name)  # a link planted in a received folder is refused before any work
        if self.options.resume or not self.files.is_file(f"{self.run_folder}/{STATE_FILE}"):
            return
        if not self.options.overwrite:
            raise CheckpointError(
                f"run '{self.options.run}' of {self.name} already has a checkpoint; add --resume to continue it, "
                f"--overwrite to start it again, or --run NEW_NAME for a separate run"
            )
        if self.world.main:
            shutil.rmtree(self.folder)

    def _adam(self, module: nn.Module) -> torch.optim.Adam:
        c = self.config
        return torch.optim.Adam(module.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))

    # ----- schedule -------------------------------------------------------------------
    @property
    def warming_up(self) -> bool:
        """True during the single-frame L1 warm-up that opens the run (config.warmup)."""
        return self.config.ablation is None and self.gan_start is None and self.progress() < self.config.warmup

    @property
    def single_frame(self) -> bool:
        return self.single or self.warming_up

    def progress(self, at: Mark | None = None) -> float:
        """Fraction of the run done at a point (default now): by epochs (frames generated),
        or by steps or time when --max-steps or --max-minutes binds sooner."""
        at = at or self.mark()
        p = at.frames / (self.config.epochs * len(self.data))
        if self.options.max_steps:
            p = max(p, at.step / self.options.max_steps)
        if self.options.max_minutes:
            p = max(p, at.elapsed / (self.options.max_minutes * 60))
        return min(p, 1.0)

    def mark(self) -> Mark:
        return Mark(self.step, self.elapsed, self.frames_seen)

    def gan_progress(self) -> float:
        """Fraction of the GAN phase (or of an ablation run) done.

        Measured from where the phase began, so a finished run resumed with a larger
        --max-minutes continues its GAN phase: the learning rate rises again and decays anew.
        """
        if self.gan_start is None:
            return self.progress() if self.single else 0.0  # the ablation's whole run; or not begun
        start = self.progress(self.gan_start)
        if start >= 1.0:
            return 1.0
        return max(0.0, self.progress() - start) / (1.0 - start)

    def sequence_length(self) -> int:
        if self.single_frame:
            return 1
        c = self.config
        grown = c.seq_start + int(self.gan_progress() * 2 * (c.seq_max - c.seq_start + 1))
        return min(grown, c.seq_max)

    def learning_rate(self) -> float:
        left = 1.0 - self.gan_progress()
        return self.config.lr * min(1.0, left / self.config.decay_fraction)

    # ----- one iteration --------------------------------------------------------------
    def _batch(self) -> Batch:
        """This process's share of the step's batch: item g of the global batch (all processes)
        is drawn from its own generator seeded (seed, step, g), so N processes of batch B see
        exactly what one process of batch N*B sees."""
        first = self.world.rank * self.config.batch
        rngs = [np.random.default_rng([self.config.seed, self.step, g]) for g in range(first, first + self.config.batch)]
        torch.manual_seed(self.config.seed * 1_000_003 + self.step)
        batch = self.data.sample(rngs, self.sequence_length(), self.augment, self.config.rare_expressions)
        return batch.to(self.device, pin=self.device.type == "cuda")

    def _generate(self, batch: Batch, generator: nn.Module) -> torch.Tensor:
        """A generator (the average, for samples) over the batch's sequence."""
        return SequenceRunner(generator)(batch.cond, batch.real.shape[1], not self.single_frame, batch.references)[0]

    def train_step(self) -> dict[str, float]:
        if self.gan_start is None and not self.single_frame:
            self.gan_start = self.mark()
            if self.step:  # after a warm-up: its Adam moments were fitted to the L1 loss alone, and
                self.opt_g = self._adam(self.generator)  # carried over they turn the GAN's larger gradients into huge first steps
        for group in self.opt_g.param_groups + (self.opt_d.param_groups if self.opt_d else []):
            group["lr"] = self.learning_rate()
        batch = self._batch()
        with self.amp.autocast():
            fake, identity = self.runner(batch.cond, batch.real.shape[1], not self.single_frame, batch.references)
            losses_g = self._reconstruction_losses(batch, fake, identity)
            if not self.single_frame:
                losses_g.update(self._generator_losses(batch, fake))
        self.frames_seen += fake.shape[0] * fake.shape[1] * self.world.world
        self.opt_g.zero_grad(set_to_none=True)
        self.amp.backward_step("g", sum(losses_g.values()), self.opt_g)
        self._update_ema()
        losses_d = {}
        if not self.single_frame:
            self.opt_d.zero_grad(set_to_none=True)  # also drops what the G loss left in D
            with self.amp.autocast():
                losses_d = self.critic(batch, fake)
            self.amp.backward_step("d", sum(losses_d.values()), self.opt_d)
        return {k: float(v.detach()) for k, v in {**losses_g, **losses_d}.items()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        for averaged, current in zip(self.ema.state_dict().values(), self.generator.state_dict().values()):
            if averaged.is_floating_point():
                averaged.lerp_(current, 1.0 - self.config.ema)
            else:
                averaged.copy_(current)

    @property
    def inference_generator(self) -> SequentialGenerator:
        """What is saved for export and samples: the weight average when there is one."""
        return self.ema if self.ema is not None else self.generator

    def _reconstruction_losses(self, batch: Batch, fake: torch.Tensor, identity: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The terms of every step, warm-up included: L1 (whole frame and face parts), the mask's
        L1, and embedding matching of the identity vector with its D_I row."""
        c = self.config
        rgb, mask = split_output(fake, dim=2)
        g = {"g_l1": F.l1_loss(rgb, batch.real) * c.l1} if c.l1 > 0 or self.single_frame else {}
        if c.face_parts > 0:
            g["g_parts"] = face_part_l1(batch, rgb) * c.face_parts
        if mask is not None and c.mask > 0:
            g["g_mask"] = F.l1_loss(mask, batch.mask) * c.mask
        if identity is not None and c.match > 0:
            rows = self.discriminators["image"].rows[batch.identity].detach()  # E_id's term (paper eq. 8)
            g["g_match"] = (1 - F.cosine_similarity(identity.float(), rows, dim=1)).mean() * c.match
        return g

    def _generator_losses(self, batch: Batch, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Adversarial, feature-matching, warp and perceptual terms of G. The discriminators run
        unwrapped here: their gradients from this pass are dropped."""
        w, ds, mode = self.config.weights, self.discriminators, self.config.adversarial
        fake = fake[:, :, :RGB_CHANNELS]
        real_pair, real_mouth = d_inputs(batch, batch.real)
        fake_pair, fake_mouth = d_inputs(batch, fake)
        g = {}
        for name, real_in, fake_in, weight in (
            ("image", real_pair, fake_pair, 1.0),
            ("mouth", real_mouth, fake_mouth, w.mouth),
        ):
            with torch.no_grad():
                pred_real = judge(ds[name], real_in, batch)
            pred_fake = judge(ds[name], fake_in, batch)
            g[f"g_{name}"] = gan_loss(pred_fake, True, mode, generator=True) * w.gan * weight
            g[f"g_fm_{name}"] = feature_matching_loss(pred_fake, pred_real) * w.feature_matching * weight
        dynamics = ds["dynamics"]
        flows = [compose_flows(batch.flow, s) for s in dynamics.skips]
        starts = dynamics_starts(fake.shape[1], dynamics)
        with torch.no_grad():
            dyn_real = dynamics(batch.real, flows, starts)
        if dyn_real:
            dyn_fake = dynamics(fake, flows, starts)
            g["g_dynamics"] = sum(gan_loss(p, True, mode, generator=True) for p in dyn_fake.values()) * w.dynamics
            g["g_fm_dynamics"] = sum(
                feature_matching_loss(dyn_fake[s], dyn_real[s]) for s in dyn_fake
            ) * (w.feature_matching * w.dynamics)
        if fake.shape[1] > 1 and w.flow_warp > 0:
            flow = batch.flow[:, 1:].flatten(0, 1)
            cur, prev = fake[:, 1:].flatten(0, 1), fake[:, :-1].detach().flatten(0, 1)
            g["g_warp"] = warp_loss(cur, prev, flow, flow_valid_mask(flow)) * w.flow_warp
        if self.perceptual is not None:
            g["g_vgg"] = self.perceptual(fake.flatten(0, 1), batch.real.flatten(0, 1)) * w.vgg
        elif self.config.laplacian > 0:
            g["g_lap"] = laplacian_pyramid_l1(fake.flatten(0, 1), batch.real.flatten(0, 1)) * self.config.laplacian
        return g

    # ----- state ----------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "generator": self.generator.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "discriminators": self.discriminators.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else {},
            "step": self.step,
            "elapsed": self.elapsed,
            "gan_start": list(self.gan_start) if self.gan_start else None,
            "frames_seen": self.frames_seen,
            "rng": torch.get_rng_state(),
            "grad_scalers": self.amp.state_dict(),
            "train_config": config_to_dict(self.config),
            "avatar": self.name,
        }

    def save_state_only(self) -> None:
        """Atomic state.pt, what --resume continues from."""
        self.folder.mkdir(parents=True, exist_ok=True)
        save_state(self.folder / STATE_FILE, self.state())

    def save(self) -> None:
        """Atomic state.pt (resume) and generator files (inference); main process only."""
        if not self.world.main:
            return
        self.save_state_only()
        meta = {
            "avatar": self.avatar.name,
            "preset": self.config.preset,
            "ablation": self.config.ablation,
            "sequential": not self.single,
            "ema": self.config.ema,
            "step": self.step,
            "train_minutes": round(self.elapsed / 60, 2),
            "resolution": self.avatar.resolution,
        }
        save_generator(self.folder, self.inference_generator, meta)

    def _resume(self) -> None:
        state = load_state(self.folder / STATE_FILE, self.files)
        self._check_resumable(state)
        self._load_weights(state)
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            if self.opt_d:
                self.opt_d.load_state_dict(state["opt_d"])
            self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
            self.frames_seen = int(state.get("frames_seen", self.step * self.config.batch * self.world.world))
            start = state.get("gan_start", (0, 0.0, 0))  # checkpoints from before the warm-up began with the GAN
            self.gan_start = Mark(int(start[0]), float(start[1]), int(start[2])) if start is not None else None
            if isinstance(state.get("rng"), torch.Tensor):
                torch.set_rng_state(state["rng"])
            self.amp.load_state_dict(state.get("grad_scalers") or {})
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise CheckpointError(f"{self.folder / STATE_FILE}: damaged training state ({type(exc).__name__}); train a new --run") from exc
        if self.world.main:
            self._trim_log()

    def _check_resumable(self, state: dict) -> None:
        """Refuse a checkpoint trained with other settings (BaseTrainer: also other people)."""
        saved = saved_config(state, self.folder / STATE_FILE)
        if saved != self.config:
            diffs = [f.name for f in dataclasses.fields(TrainConfig) if getattr(saved, f.name) != getattr(self.config, f.name)]
            raise CheckpointError(
                f"--resume: the checkpoint was trained with different settings ({', '.join(diffs)}); "
                f"use the same --preset/flags as before, or train a new --run"
            )

    def _trim_log(self) -> None:
        """Drop log rows of steps after the checkpoint (they will be trained again)."""
        relative = f"{self.run_folder}/log.csv"
        if not self.files.is_file(relative):
            return
        text = self.files.read_bytes(relative).decode("utf-8", errors="replace")
        rows = [row for row in csv.DictReader(io.StringIO(text)) if (row.get("step") or "").isdigit() and int(row["step"]) <= self.step]
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self._run_file("log.csv"), out.getvalue().encode())

    def _load_weights(self, state: dict) -> None:
        try:
            self.generator.load_state_dict(state["generator"])
            self._ema_loaded = bool(state.get("ema")) and self.ema is not None
            if self._ema_loaded:
                self.ema.load_state_dict(state["ema"])
            if state.get("discriminators") and not self.single:
                self.discriminators.load_state_dict(state["discriminators"])
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint does not fit the '{self.config.preset}' networks; pick the preset it was trained with") from exc

    def _init_from(self, source: str) -> None:
        """Start from a multi-person base (fine-tuning, Head2HeadFS 3.4), another avatar's run
        (its name, or its folder) or a state.pt file you name."""
        base = find_base(source, bases_folder(self.options.bases, self.avatar.path.parent))
        if base is not None:
            self._init_from_base(load_base(base), source)
            return
        path = Path(source)
        if path.is_file():
            self._load_weights(load_state(path))
            return
        try:
            other = Avatar.open_path(path) if path.is_dir() else Avatar.open(self.avatar.path.parent, source)
        except AvatarError as exc:
            raise CheckpointError(f"--init {source}: not a checkpoint file or an avatar ({exc})") from exc
        self._load_weights(load_state(other.path / "checkpoints" / self.options.run / STATE_FILE, other.files))

    @torch.no_grad()
    def _init_from_base(self, base: Base, source: str) -> None:
        """Head2HeadFS 3.4: embed this person's frames, fold the identity's affines into the base
        generator's convs, and start D_I's row for this person at the identity vector."""
        expected = replace(base.generator.config, norm="none")
        if not isinstance(self.generator, SequentialGenerator) or self.generator.config != expected:
            layout = base.generator.fewshot.generator
            raise CheckpointError(f"--init {source}: the base is a '{layout}' few-shot generator; "
                                  f"fine-tune it with --preset {finetune_preset(layout)}")
        if base.meta.get("resolution", self.avatar.resolution) != self.avatar.resolution:
            raise CheckpointError(f"--init {source}: the base works at {base.meta.get('resolution')} px, {self.name} at {self.avatar.resolution}")
        picks = np.linspace(0, len(self.data) - 1, min(EMBED_FRAMES, len(self.data))).round().astype(int)
        identity = base.embed(to_tensor(self.data.frames[picks]))
        self.generator.load_state_dict(fold_identity(base.generator, identity).state_dict())
        if not self.single:
            if not isinstance(self.discriminators["image"], ProjectionDiscriminator):
                raise CheckpointError(f"--init {source}: fine-tuning a base needs its projection discriminator (--preset finetune)")
            weights = {k: v for k, v in base.discriminators.items() if k != "image.rows"}
            try:
                result = self.discriminators.load_state_dict(weights, strict=False)
            except RuntimeError as exc:
                raise CheckpointError(f"--init {source}: the base's discriminators do not fit this preset's") from exc
            if set(result.missing_keys) != {"image.rows"} or result.unexpected_keys:
                raise CheckpointError(f"--init {source}: the base's discriminators do not fit this preset's")
            self.discriminators["image"].reset_rows(identity[None])
            self.opt_d = self._adam(self.discriminators)  # the row is a new parameter
        log.info("fine-tuning from base %s (%s; %s steps): identity from %d frames",
                 source, ", ".join(base.meta.get("people", [])), base.meta.get("step", "?"), len(picks))

    # ----- outputs --------------------------------------------------------------------
    def write_sample(self) -> None:
        """samples/step_N.png: conditioning | generated | real (| predicted mask) for a few frames
        (the saved generator on this step's batch; the RNG is left as it was, so samples change nothing)."""
        if not self.world.main:
            return
        with torch.random.fork_rng(), torch.no_grad():
            batch = self._batch()
            fake = self._generate(batch, self.inference_generator)
        rows = []
        for t in range(min(fake.shape[1], 3)):
            cond = batch.cond[0, t + WINDOW - 1]
            nmfc, eyes = to_image(cond[:3]), to_image(cond[3:])
            shown = np.where(eyes.any(-1, keepdims=True), eyes, nmfc)
            panels = [shown, to_image(fake[0, t, :RGB_CHANNELS]), to_image(batch.real[0, t])]
            if fake.shape[2] > RGB_CHANNELS:
                panels.append(to_image(fake[0, t, RGB_CHANNELS:].expand(3, -1, -1)))
            rows.append(np.concatenate(panels, 1))
        png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))[1].tobytes()
        for name in (f"step_{self.step:07d}.png", "latest.png"):
            atomic_write_bytes(self._run_file(f"samples/{name}"), png)

    def _run_file(self, name: str) -> Path:
        """A file of this run, checked like every path into the avatar (no links on the way)."""
        return self.files.path(f"{self.run_folder}/{name}")

    def log_row(self, losses: dict[str, float]) -> None:
        if not self.world.main:
            return
        path = self._run_file("log.csv")
        row = {"step": self.step, "minutes": round(self.elapsed / 60, 3), "lr": self.learning_rate(),
               "seq_len": self.sequence_length(), "threads": torch.get_num_threads(), **{k: round(v, 5) for k, v in losses.items()}}
        new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with os.fdopen(fd, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _percent_done(self) -> float:
        return round(100 * self.progress(), 2)

    def finished(self) -> bool:
        if self.options.max_steps is not None and self.step >= self.options.max_steps:
            return True
        if self.options.max_minutes is not None and self.elapsed >= self.options.max_minutes * 60:
            return True
        return self.frames_seen >= self.config.epochs * len(self.data)

    def run(self) -> dict:
        """Train until epochs, --max-steps or --max-minutes; checkpoint on the way and at the end."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.threads = training_threads(self.options.threads, self.device.type == "cpu")
        self._announce()
        # the bar counts percent of the run (the schedule's own progress), so its ETA holds across
        # the cheap warm-up steps and the slower sequential GAN steps
        bar = tqdm(
            total=100.0, initial=self._percent_done(), bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}",
            disable=not (self.options.progress and self.world.main),
        )
        with deferred_signals() as stop:
            try:
                losses = self._loop(bar, stop)
            finally:
                bar.close()
            self.save()  # at a step boundary: a signal only stops the loop between steps
            if stop.set:
                self.world.close()
                raise Interrupted(stop.signum)
        self.write_sample()
        self.world.close()
        return {"step": self.step, "minutes": self.elapsed / 60, "losses": losses, "folder": str(self.folder)}

    def _announce(self) -> None:
        """The log lines that open a run: what is trained, how big, on what."""
        log.info(
            "training %s (%s%s): G %.2f M params, D %.2f M, %d train frames, perceptual loss %s",
            self.name, self.config.preset, f", ablation {self.config.ablation}" if self.config.ablation else "",
            count_parameters(self.generator) / 1e6, count_parameters(self.discriminators) / 1e6,
            len(self.data), "VGG" if self.perceptual is not None else ("Laplacian pyramid" if self.config.laplacian > 0 else "off"),
        )
        version = self.avatar.schema.conditioning
        if version < CONDITIONING_VERSION:
            log.info("%s has version-%d conditioning (%s); h2h prepare VIDEO --name %s --overwrite --discard-training "
                     "renders version %d (%s) for a new training", self.avatar.name, version, CONDITIONING_VERSIONS[version],
                     self.avatar.name, CONDITIONING_VERSION, CONDITIONING_VERSIONS[CONDITIONING_VERSION])

    def _loop(self, bar: tqdm, stop) -> dict[str, float]:
        """Steps until the run is finished or a stop signal arrived (checked between steps)."""
        last_sample = last_ckpt = time.perf_counter()
        losses: dict[str, float] = {}
        while not self.world.agree(self.finished() or stop.set):
            self.threads.before_step()
            t0 = time.perf_counter()
            warming, frames = self.warming_up, self.frames_seen
            losses = self.train_step()
            self.step += 1
            took = time.perf_counter() - t0
            probe = self.threads.after_step(took, self.frames_seen - frames)
            if probe and self.world.main and self.options.progress:
                cost = ", ".join(f"{n}: {1e3 * c:.0f} ms" for n, c in probe.items())
                tqdm.write(f"step {self.step}: torch threads per generated frame {cost}; using {self.threads.chosen}")
            self.elapsed = self.world.maximum(self.elapsed + took)
            bar.update(self._percent_done() - bar.n)
            if warming and not self.warming_up and self.world.main:
                tqdm.write(f"step {self.step}: single-frame L1 warm-up done after {self.elapsed / 60:.1f} min; sequential GAN from here")
            bar.set_postfix(step=self.step, epoch=f"{self.frames_seen / len(self.data):.1f}", L=self.sequence_length(), **{k: f"{v:.3f}" for k, v in losses.items() if k in ("g_l1", "g_image", "d_image", "g_warp")})
            if self.step % 10 == 0:
                self.log_row(losses)
            now = time.perf_counter()
            if now - last_sample >= self.options.sample_minutes * 60:
                self.write_sample()
                last_sample = now
            due_steps = self.options.checkpoint_steps and self.step % self.options.checkpoint_steps == 0
            if due_steps or now - last_ckpt >= self.options.checkpoint_minutes * 60:
                self.save()
                last_ckpt = now
        return losses
