"""NMFC rendering (DESIGN 4.5): the posed mesh, each triangle flat-filled with the
normalised mean-face coordinates of its centre; orthographic, z-buffered, black background.
The same rasteriser also interpolates any per-vertex values over the visible surface
(`render_values`): e.g. where each pixel of a posed mesh lies on another pose of it, an exact
correspondence.

Two rasterisers behind one function: moderngl (headless EGL when there is no display) and a
numpy reference used by tests to check it.
"""
from __future__ import annotations

import os

import numpy as np

from .face_model import FaceModel

RESOLUTION = 256
_VERTEX_SHADER = """
#version 330
uniform vec3 scale;
uniform vec3 offset;
in vec3 in_pos;
in vec3 in_value;
out vec3 value;
void main() {
    gl_Position = vec4(in_pos * scale + offset, 1.0);
    value = in_value;
}
"""
_FRAGMENT_SHADER = """
#version 330
in vec3 value;
out vec4 frag;
void main() { frag = vec4(value, 1.0); }
"""


def _depth_range(vertices: np.ndarray) -> tuple[float, float]:
    """Map the mesh's z (smaller = nearer) into the open clip range (-1, 1)."""
    z = vertices[:, 2]
    lo, hi = float(z.min()), float(z.max())
    span = max(hi - lo, 1e-3) * 1.1
    return 2.0 / span, -2.0 * (lo + hi) / 2.0 / span


class GLRenderer:
    """moderngl rasteriser; create and use it on one thread (it owns the GL context)."""

    def __init__(self, model: FaceModel, size: int = RESOLUTION) -> None:
        import moderngl

        self.size = size
        self.model = model
        self.ctx = _create_context(moderngl)
        self.backend = self.ctx.info.get("GL_RENDERER", "unknown")
        self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        tris = model.topology.triangles
        self._triangles = tris.reshape(-1)
        colors = np.repeat(model.triangle_colors, 3, axis=0).astype("f4")
        self.positions = self.ctx.buffer(reserve=len(self._triangles) * 12)
        self.colors = self.ctx.buffer(colors.tobytes())
        self.vao = self.ctx.vertex_array(
            self.program, [(self.positions, "3f", "in_pos"), (self.colors, "3f", "in_value")]
        )
        self.fbo = self.ctx.simple_framebuffer((size, size), components=4)
        self.fbo.use()
        self._values = None  # value buffer, vertex array and float target of render_values, made on first use

    def render(self, vertices: np.ndarray) -> np.ndarray:
        """RGB uint8 (size, size, 3) NMFC image of posed vertices (V, 3) in pixels."""
        self._draw(self.vao, self.fbo, vertices)
        data = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(self.size, self.size, 3)[::-1].copy()

    def render_values(self, vertices: np.ndarray, values: np.ndarray, off: float = np.nan) -> np.ndarray:
        """float32 (size, size, 3): per-vertex values (V, 3) interpolated over the visible surface
        of posed vertices (V, 3) in pixels; `off` off the mesh (0: a view of the read pixels)."""
        if self._values is None:  # the NMFC's shaders, fed values instead of colours, into float pixels
            buffer = self.ctx.buffer(reserve=len(self._triangles) * 12)
            vao = self.ctx.vertex_array(self.program, [(self.positions, "3f", "in_pos"), (buffer, "3f", "in_value")])
            target = self.ctx.framebuffer(color_attachments=[self.ctx.texture((self.size, self.size), 4, dtype="f4")],
                                          depth_attachment=self.ctx.depth_renderbuffer((self.size, self.size)))
            self._values = (buffer, vao, target)
        buffer, vao, target = self._values
        buffer.write(np.ascontiguousarray(values[self._triangles], dtype="f4").tobytes())
        self._draw(vao, target, vertices, background=0.0)
        out = np.frombuffer(target.read(components=4, dtype="f4"), np.float32).reshape(self.size, self.size, 4)[::-1]
        if off == 0.0:  # the target is cleared to 0
            return out[..., :3]
        values = out[..., :3].copy()
        values[out[..., 3] <= 0.5] = off
        return values

    def _draw(self, vao, target, vertices: np.ndarray, background: float = 1.0) -> None:
        """Rasterise posed vertices (V, 3) in pixels into `target`, nearest surface kept."""
        zs, zo = _depth_range(vertices)
        self.program["scale"].value = (2.0 / self.size, -2.0 / self.size, zs)
        self.program["offset"].value = (-1.0, 1.0, zo)
        self.positions.write(np.ascontiguousarray(vertices[self._triangles], dtype="f4").tobytes())
        target.use()
        target.clear(0.0, 0.0, 0.0, background, depth=1.0)
        self.ctx.enable(self.ctx.DEPTH_TEST)
        vao.render()

    def release(self) -> None:
        self.ctx.release()


def _create_context(moderngl):
    """A standalone context: the display's if there is one, else headless EGL."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        try:
            return moderngl.create_standalone_context()
        except Exception:
            pass
    return moderngl.create_standalone_context(backend="egl")


def render_reference(vertices: np.ndarray, model: FaceModel, size: int = RESOLUTION) -> np.ndarray:
    """Numpy z-buffer rasteriser with pixel-centre sampling; slow, for checking GL output."""
    image = rasterise_reference(vertices, model, size, lambda t, w: np.broadcast_to(model.triangle_colors[t], w.shape[:-1] + (3,)))
    return np.round(np.nan_to_num(image) * 255).astype(np.uint8)


def values_reference(vertices: np.ndarray, values: np.ndarray, model: FaceModel, size: int = RESOLUTION) -> np.ndarray:
    """render_values by the numpy reference rasteriser: per-vertex values (V, 3) interpolated
    with barycentric weights; NaN off the mesh."""
    triangles = model.topology.triangles
    return rasterise_reference(vertices, model, size, lambda t, w: w @ values[triangles[t]].astype(np.float64))


def rasterise_reference(vertices: np.ndarray, model: FaceModel, size: int, shade) -> np.ndarray:
    """float32 (size, size, 3), NaN off the mesh: each pixel centre takes shade(triangle index,
    barycentric weights (..., 3)) of the nearest triangle covering it."""
    image = np.full((size, size, 3), np.nan, np.float32)
    depth = np.full((size, size), np.inf, np.float32)
    for t, tri in enumerate(model.topology.triangles):
        p = vertices[tri].astype(np.float64)
        x0, y0 = np.floor(p[:, :2].min(0) - 0.5).astype(int)
        x1, y1 = np.ceil(p[:, :2].max(0) - 0.5).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size - 1), min(y1, size - 1)
        if x0 > x1 or y0 > y1:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        (ax, ay), (bx, by), (cx, cy) = p[:, :2]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(area) < 1e-9:
            continue
        w0 = ((bx - xs) * (cy - ys) - (by - ys) * (cx - xs)) / area
        w1 = ((cx - xs) * (ay - ys) - (cy - ys) * (ax - xs)) / area
        w2 = 1.0 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        z = w0 * p[0, 2] + w1 * p[1, 2] + w2 * p[2, 2]
        region = depth[y0 : y1 + 1, x0 : x1 + 1]
        closer = inside & (z < region)
        region[closer] = z[closer]
        image[y0 : y1 + 1, x0 : x1 + 1][closer] = shade(t, np.stack([w0, w1, w2], -1))[closer]
    return image


class NMFCRenderer:
    """One entry point: GL when available (or asked for), else the numpy reference."""

    def __init__(self, model: FaceModel, size: int = RESOLUTION, backend: str = "auto") -> None:
        self.model = model
        self.size = size
        self._gl: GLRenderer | None = None
        if backend not in ("auto", "gl", "reference"):
            raise ValueError(f"unknown NMFC backend {backend!r}")
        if backend != "reference":
            try:
                self._gl = GLRenderer(model, size)
            except Exception as exc:
                if backend == "gl":
                    raise RuntimeError(f"OpenGL rendering is unavailable ({exc}); install Mesa EGL (libegl1)") from exc
        self.backend = f"moderngl ({self._gl.backend})" if self._gl else "numpy reference"

    def render(self, vertices: np.ndarray) -> np.ndarray:
        if self._gl is not None:
            return self._gl.render(vertices)
        return render_reference(vertices, self.model, self.size)

    def render_values(self, vertices: np.ndarray, values: np.ndarray, off: float = np.nan) -> np.ndarray:
        """See GLRenderer.render_values."""
        if self._gl is not None:
            return self._gl.render_values(vertices, values, off)
        return np.nan_to_num(values_reference(vertices, values, self.model, self.size), nan=off)

    def close(self) -> None:
        if self._gl is not None:
            self._gl.release()
            self._gl = None


def correspondence(renderer: NMFCRenderer, vertices: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    """float32 (1, 3K, size, size), a one-shot generator's `corr` input: where each pixel of
    posed vertices (V, 3) lies on each of K other poses of the same mesh (V, 3), in grid_sample
    units (x, y), and 1 where the mesh covers the pixel (0 and position 0 elsewhere)."""
    scale = np.array([2.0 / renderer.size, 2.0 / renderer.size, 0.0], np.float32)
    shift = np.array([-1.0, -1.0, 1.0], np.float32)
    maps = np.empty((1, 3 * len(targets), renderer.size, renderer.size), np.float32)
    for k, target in enumerate(targets):  # values already in grid units with a third channel of 1: the map itself
        maps[0, 3 * k : 3 * k + 3] = renderer.render_values(vertices, target * scale + shift, off=0.0).transpose(2, 0, 1)
    return maps
