"""Checks on an ONNX generator from an avatar folder before ONNX Runtime sees it: no tensor
may name external data (a path that could point anywhere on disk), and the graph must be the
generator step (cond, prev -> frame at the avatar's resolution)."""
from __future__ import annotations

from collections.abc import Iterator

from .base import EngineError

INPUTS = ("cond", "prev")
STANDARD_DOMAINS = ("", "ai.onnx")  # no contrib ops: com.microsoft's EPContext embeds engines (code)
OUTPUTS = ("frame",)


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


def check_generator_onnx(data: bytes, size: int, label: str) -> None:
    """Raise EngineError unless `data` is a self-contained generator step of `size` pixels."""
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
        raise EngineError(f"{label}: refused, it uses {what}; the exported generator uses standard ONNX operators only")
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    names = (tuple(i.name for i in inputs), tuple(o.name for o in model.graph.output))
    if (sorted(names[0]), names[1]) != (sorted(INPUTS), OUTPUTS):  # bound by name, so any order
        raise EngineError(f"{label}: inputs {list(names[0])} -> outputs {list(names[1])} are not the generator step's (cond, prev -> frame)")
    for value in (*inputs, *model.graph.output):
        dims = _dims(value)
        if len(dims) != 4 or dims[0] != 1 or dims[2:] != [size, size] or not (isinstance(dims[1], int) and dims[1] > 0):
            shown = "x".join(str(d) for d in dims)
            raise EngineError(f"{label}: '{value.name}' is {shown}, expected 1xCx{size}x{size} (the avatar's resolution)")
    if _dims(model.graph.output[0])[1] not in (3, 4):
        raise EngineError(f"{label}: 'frame' must have 3 channels (RGB) or 4 (RGB and the foreground mask)")
