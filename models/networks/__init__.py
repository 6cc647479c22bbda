"""Networks of the video rendering stage, one module per family (DESIGN 5 and 12)."""
from .discriminators import (
    DynamicsDiscriminator,
    MultiscalePatchDiscriminator,
    PatchDiscriminator,
    ProjectionDiscriminator,
    crop_mouths,
    image_discriminator,
    mouth_discriminator,
    temporal_windows,
)
from .fewshot import FEWSHOT_PRESETS, BoundGenerator, FewShotConfig, FewShotGenerator, IdentityEmbedder, fewshot_config, fold_identity
from .sequential import (
    FLOW_CHANNELS,
    GENERATOR_PRESETS,
    RGB_CHANNELS,
    Encoder,
    GeneratorConfig,
    Modulation,
    ResidualBlock,
    SequentialGenerator,
    count_parameters,
    generator_config,
    split_output,
)

__all__ = [
    "FEWSHOT_PRESETS", "FLOW_CHANNELS", "GENERATOR_PRESETS", "RGB_CHANNELS", "BoundGenerator", "DynamicsDiscriminator",
    "Encoder", "FewShotConfig", "FewShotGenerator", "GeneratorConfig", "IdentityEmbedder", "Modulation",
    "MultiscalePatchDiscriminator", "PatchDiscriminator", "ProjectionDiscriminator", "ResidualBlock",
    "SequentialGenerator", "count_parameters", "crop_mouths", "fewshot_config", "fold_identity", "generator_config",
    "image_discriminator", "mouth_discriminator", "split_output", "temporal_windows",
]
