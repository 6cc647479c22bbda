"""Checks on an ONNX model from an avatar folder before ONNX Runtime sees it: no tensor may
name external data (a path that could point anywhere on disk), and the graph must be the
generator step (cond, prev and, for a one-shot avatar, corr -> frame at the avatar's
resolution), the 2x upsampler
(frame -> hires) or DenseFaceReg (crop -> points)."""
from __future__ import annotations

from collections.abc import Iterator

from ..models.manifest import MAX_PHOTOS
from .base import CORRESPONDENCE, EngineError

INPUTS = ("cond", "prev")
ONESHOT_INPUTS = (*INPUTS, CORRESPONDENCE)  # a one-shot step that takes the exact correspondence
STANDARD_DOMAINS = ("", "ai.onnx")  # no contrib ops: com.microsoft's EPContext embeds engines (code)
OUTPUTS = ("frame",)
UPSAMPLER_INPUTS = ("frame",)
UPSAMPLER_OUTPUTS = ("hires",)
FACEREG_SIZES = range(16, 513, 16)  # crop heights DenseFaceReg may take


def _messages(message) -> Iterator:
    """Every protobuf message inside `message` (graphs, subgraphs, functions, attributes,
    sparse tensors, ...), found by walking the fields, so no nesting is missed."""
    yield message
    for descriptor, value in message.ListFields():
        if descriptor.type != descriptor.TYPE_MESSAGE:
            continue
        for item in value if descriptor.label == descriptor.LABEL_REPEATED else (value,):
            yield from _messages(item)


def _dims(value_info) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _checked_model(data: bytes, label: str):
    """The parsed model, refused when any tensor names external data or a node uses a
    non-standard operator domain or a model-local function."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise EngineError(f"{label}: not an ONNX model ({type(exc).__name__}); run h2h export again") from exc
    everything = list(_messages(model))
    external = [m.name for m in everything if isinstance(m, onnx.TensorProto)
                and (m.data_location == onnx.TensorProto.EXTERNAL or len(m.external_data))]
    if external:
        raise EngineError(f"{label}: refused, tensor '{external[0]}' names an external data file; a shared avatar must carry its weights inside the .onnx")
    foreign = sorted({m.domain for m in everything if isinstance(m, onnx.NodeProto) and m.domain not in STANDARD_DOMAINS})
    if foreign or model.functions:
        what = f"operators of domain '{foreign[0]}'" if foreign else "model-local functions"
        raise EngineError(f"{label}: refused, it uses {what}; the exported models use standard ONNX operators only")
    return model


def _graph_io(model) -> tuple[list, list]:
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    return inputs, list(model.graph.output)


def _check_image(value, label: str, size: int, channels: tuple[int, ...] | None = None) -> None:
    """`value` must be 1 x C x size x size (C in `channels` when given)."""
    dims = _dims(value)
    if len(dims) != 4 or dims[0] != 1 or dims[2:] != [size, size] or not (isinstance(dims[1], int) and dims[1] > 0) \
            or (channels is not None and dims[1] not in channels):
        shown = "x".join(str(d) for d in dims)
        wanted = "C" if channels is None else "|".join(str(c) for c in channels)
        raise EngineError(f"{label}: '{value.name}' is {shown}, expected 1x{wanted}x{size}x{size}")


def check_generator_onnx(data: bytes, size: int, label: str) -> None:
    """Raise EngineError unless `data` is a self-contained generator step of `size` pixels."""
    inputs, outputs = _graph_io(_checked_model(data, label))
    names = (tuple(i.name for i in inputs), tuple(o.name for o in outputs))
    if sorted(names[0]) not in (sorted(INPUTS), sorted(ONESHOT_INPUTS)) or names[1] != OUTPUTS:  # bound by name, so any order
        raise EngineError(f"{label}: inputs {list(names[0])} -> outputs {list(names[1])} are not the generator step's (cond, prev[, corr] -> frame)")
    for value in inputs:
        _check_image(value, label, size)
        channels = _dims(value)[1]
        if value.name == CORRESPONDENCE and (channels % 3 or channels > 3 * MAX_PHOTOS):
            raise EngineError(f"{label}: 'corr' must have 3 channels (x, y, coverage) for each of 1 to {MAX_PHOTOS} photos")
    if _dims(outputs[0])[1] not in (3, 4):
        raise EngineError(f"{label}: 'frame' must have 3 channels (RGB) or 4 (RGB and the foreground mask)")
    _check_image(outputs[0], label, size)


def check_upsampler_onnx(data: bytes, size: int, label: str) -> None:
    """Raise EngineError unless `data` is a self-contained 2x upsampler of `size`-pixel frames."""
    inputs, outputs = _graph_io(_checked_model(data, label))
    names = ([i.name for i in inputs], [o.name for o in outputs])
    if names != (list(UPSAMPLER_INPUTS), list(UPSAMPLER_OUTPUTS)):
        raise EngineError(f"{label}: inputs {names[0]} -> outputs {names[1]} are not the upsampler's (frame -> hires)")
    _check_image(inputs[0], label, size, (3,))
    _check_image(outputs[0], label, 2 * size, (3,))


def check_facereg_onnx(data: bytes, label: str, points: int, aspect: int, batch: int = 1) -> tuple[int, int]:
    """(crop height H, batch B) of a self-contained DenseFaceReg network that predicts `points`
    points from B crops `aspect` times as wide as high (crop Bx3xHx(aspect H) -> points BxPx3), B
    being 1 or `batch` (all the crops a tracker reads in a frame); EngineError otherwise."""
    inputs, outputs = _graph_io(_checked_model(data, label))
    if [i.name for i in inputs] != ["crop"] or [o.name for o in outputs] != ["points"]:
        raise EngineError(f"{label}: inputs {[i.name for i in inputs]} -> outputs {[o.name for o in outputs]} are not DenseFaceReg's (crop -> points)")
    dims = _dims(inputs[0])
    batches = sorted({1, batch})
    if len(dims) != 4 or dims[0] not in batches or dims[1] != 3 or dims[2] not in FACEREG_SIZES or dims[3] != aspect * dims[2]:
        raise EngineError(f"{label}: 'crop' is {'x'.join(map(str, dims))}, expected "
                          f"{'|'.join(map(str, batches))}x3xHx{aspect}H with H 16-512 in steps of 16")
    if _dims(outputs[0]) != [dims[0], points, 3]:
        raise EngineError(f"{label}: 'points' must be {dims[0]}x{points}x3")
    return dims[2], dims[0]
