"""Head2HeadFS few-shot networks (paper 003, sections 3.3-3.4): an identity embedder and a
sequential generator whose feature affines are set from the identity vector.

The generator is the `lite` layout with a mask output and a Modulation after every conv
(the places a normalisation sits in the paper). Head2HeadFS modulates instance-normalised
features (AdaIN); instance normalisation cost ~25% of a lite step in ONNX Runtime, so here the
affine acts on the raw features. For one person the affine is a constant per channel and
folds exactly into the conv before it (`fold_identity`): a fine-tuned avatar is a plain
SequentialGenerator, as fast as today's lite one, and exports like it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .sequential import GeneratorConfig, Modulation, SequentialGenerator, generator_config


@dataclass(frozen=True)
class FewShotConfig:
    """The base: generator layout, identity vector size, embedder width."""

    generator: str = "lite"
    identity_dim: int = 256
    embedder_width: int = 32

    def generator_config(self) -> GeneratorConfig:
        return generator_config(self.generator, norm="modulated", mask=True)


FEWSHOT_PRESETS: dict[str, FewShotConfig] = {
    "lite": FewShotConfig(),
    "tiny": FewShotConfig(generator="tiny", identity_dim=32, embedder_width=8),
}


def fewshot_config(name: str) -> FewShotConfig:
    try:
        return FEWSHOT_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown few-shot preset {name!r}; choose one of {sorted(FEWSHOT_PRESETS)}") from None


class IdentityEmbedder(nn.Module):
    """E_id: an RGB frame (B, 3, H, W) in [-1, 1] -> an identity vector (B, identity_dim).

    Stride-2 convs to 1/32 of the input, then global average pooling and a linear layer; the
    person's vector is the mean over M of their frames (paper eq. 4, `embed`)."""

    def __init__(self, identity_dim: int = 256, width: int = 32, levels: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for i in range(levels):
            out = min(width * 2**i, 8 * width)
            layers += [nn.Conv2d(channels, out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.project = nn.Linear(channels, identity_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(frames).mean(dim=(2, 3)))

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, M, 3, H, W) reference frames -> (B, identity_dim): the mean over M, scaled to unit
        length. Only its direction matters to the embedding matching (a cosine), and a cosine's
        gradient is orthogonal to the vector, so an unnormalised identity grows step after step
        until the affines it sets blow the generator up (a pretraining run diverged so at step
        7,530); normalised, the affines P h stay bounded."""
        b, m = frames.shape[:2]
        return unit(self(frames.flatten(0, 1)).view(b, m, -1).mean(1))


def unit(vectors: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length."""
    return torch.nn.functional.normalize(vectors, dim=-1)


class FewShotGenerator(nn.Module):
    """G(X[t-2:t], Y~[t-2:t-1], h): the sequential generator modulated by an identity vector,
    with the identity embedder E_id that computes h (trained with G, saved with it).

    Every Modulation layer of `body` gets (gamma, beta) = P h from its own projection P
    (paper eq. 6); P starts at zero, so an untrained base behaves as the plain generator."""

    def __init__(self, config: FewShotConfig | None = None) -> None:
        super().__init__()
        self.fewshot = config = config or FewShotConfig()
        self.embedder = IdentityEmbedder(config.identity_dim, config.embedder_width)
        self.body = SequentialGenerator(config.generator_config())
        self.modulations = [m for m in self.body.modules() if isinstance(m, Modulation)]
        self.projections = nn.ModuleList(nn.Linear(config.identity_dim, 2 * m.channels) for m in self.modulations)
        for p in self.projections:
            nn.init.zeros_(p.weight)
            nn.init.zeros_(p.bias)

    @property
    def config(self) -> GeneratorConfig:
        return self.body.config

    def forward(self, cond: torch.Tensor, prev: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        for modulation, projection in zip(self.modulations, self.projections):
            modulation.params = projection(identity)
        try:
            return self.body(cond, prev)
        finally:
            for modulation in self.modulations:
                modulation.params = None

    def bind(self, identity: torch.Tensor) -> "BoundGenerator":
        return BoundGenerator(self, identity)


class BoundGenerator(nn.Module):
    """A FewShotGenerator with its identity fixed: forward(cond, prev) like SequentialGenerator."""

    def __init__(self, generator: FewShotGenerator, identity: torch.Tensor) -> None:
        super().__init__()
        self.generator, self.identity = generator, identity

    @property
    def config(self) -> GeneratorConfig:
        return self.generator.config

    def forward(self, cond: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return self.generator(cond, prev, self.identity.expand(cond.shape[0], -1))


@torch.no_grad()
def fold_identity(generator: FewShotGenerator, identity: torch.Tensor) -> SequentialGenerator:
    """A plain SequentialGenerator computing exactly G(., ., identity) for one person.

    identity: (identity_dim,) or (1, identity_dim). Each Modulation follows a conv (directly,
    or through a PixelShuffle in the decoder), so y = (1 + gamma) * (W x + b) + beta becomes a
    conv with weights (1 + gamma) W and bias (1 + gamma) b + beta."""
    identity = identity.reshape(1, -1).float()
    plain = SequentialGenerator(replace(generator.config, norm="none"))
    plain.load_state_dict(generator.body.state_dict())
    params = {id(m): p(identity)[0] for m, p in zip(generator.modulations, generator.projections)}
    folded = 0
    for parent_name, parent in generator.body.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.children())
        for i, child in enumerate(children):
            if id(child) not in params:
                continue
            gamma, beta = params[id(child)].chunk(2)
            conv, repeat = _conv_before(children[i - 1] if i else None)
            target = plain.get_submodule(_conv_path(parent_name, i - 1, children[i - 1], conv))
            scale = (1 + gamma).repeat_interleave(repeat)
            target.weight.mul_(scale.view(-1, *([1] * (target.weight.dim() - 1))))
            target.bias.mul_(scale).add_(beta.repeat_interleave(repeat))
            folded += 1
    if folded != len(params):
        raise RuntimeError(f"folded {folded} of {len(params)} modulations; the generator layout is not foldable")
    return plain.eval()


def _conv_before(module: nn.Module | None) -> tuple[nn.Conv2d, int]:
    """The conv whose output a Modulation scales, and how many conv channels make one
    modulated channel (4 through a 2x PixelShuffle)."""
    if isinstance(module, nn.Conv2d) and module.bias is not None:
        return module, 1
    if isinstance(module, nn.Sequential):
        parts = list(module.children())
        if len(parts) == 2 and isinstance(parts[0], nn.Conv2d) and isinstance(parts[1], nn.PixelShuffle):
            return parts[0], parts[1].upscale_factor ** 2
    raise RuntimeError(f"a Modulation follows {type(module).__name__}, not a conv; cannot fold it")


def _conv_path(parent_name: str, index: int, module: nn.Module, conv: nn.Conv2d) -> str:
    base = f"{parent_name}.{index}" if parent_name else str(index)
    return base if module is conv else f"{base}.0"
