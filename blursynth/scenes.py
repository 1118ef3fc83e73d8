"""Synthetic scenes with known motion: real photos moved by known transforms.

A :class:`Scene` is a stack of layers (a background that covers the frame, then objects with
masks, back to front), each a real photograph moving with a known affine motion (translation in
px/frame, rotation in degrees/frame, zoom per frame). It renders the sharp frame at any continuous
time and the ground-truth blur of any exposure window by integrating the scene at high temporal
resolution. The demo, the tests and the fidelity benchmarks all use these scenes, so every one of
them knows its answer.

All rendering is in float32 linear light; 8-bit frames cross the boundary through a camera
response (:mod:`blursynth.crf`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .crf import get_crf, decode_u8, encode_u8
from .errors import ParameterError

__all__ = ["Motion", "Layer", "Scene", "photo_mosaic", "disc_sprite", "make_scene", "SCENES"]


@dataclass(frozen=True)
class Motion:
    """Affine motion of a layer over time (t in frame intervals).

    A texture point q maps to the frame point ``position(t) + zoom(t) * R(angle(t)) (q - anchor)``.

    Parameters
    ----------
    position : (float, float)
        Frame position (x, y) of the texture anchor at t = 0, in pixels.
    velocity : (float, float)
        Translation of the anchor, pixels per frame.
    angle : float
        Rotation at t = 0, degrees (counter-clockwise in image coordinates with y down).
    spin : float
        Rotation speed, degrees per frame.
    zoom : float
        Scale at t = 0.
    zoom_rate : float
        Relative scale change per frame: ``zoom(t) = zoom * (1 + zoom_rate) ** t``.
    """

    position: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    spin: float = 0.0
    zoom: float = 1.0
    zoom_rate: float = 0.0

    def matrix(self, t: float, anchor: tuple[float, float]) -> np.ndarray:
        """The 2x3 affine matrix mapping texture (x, y) to frame (x, y) at time ``t``."""
        th = math.radians(self.angle + self.spin * t)
        s = self.zoom * (1.0 + self.zoom_rate) ** t
        c, n = s * math.cos(th), s * math.sin(th)
        px = self.position[0] + self.velocity[0] * t
        py = self.position[1] + self.velocity[1] * t
        ax, ay = anchor
        return np.array([[c, -n, px - c * ax + n * ay], [n, c, py - n * ax - c * ay]], np.float64)


@dataclass
class Layer:
    """A textured layer: linear float32 RGB texture, optional alpha mask, and its motion."""

    texture: np.ndarray
    motion: Motion
    alpha: np.ndarray | None = None
    anchor: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        h, w = self.texture.shape[:2]
        if self.anchor is None:
            self.anchor = ((w - 1) / 2.0, (h - 1) / 2.0)


@dataclass
class Scene:
    """Layers composited back to front into frames of ``size = (height, width)``.

    Parameters
    ----------
    size : (int, int)
        Frame height and width in pixels.
    layers : list of Layer
        The first layer is the background and must cover the frame (it is extended by
        reflection at its borders); later layers need an alpha mask.
    supersample : int
        Each render is drawn at this many times the resolution and area-averaged down, so object
        edges are anti-aliased as a camera's would be.
    crf : str
        Camera response used to encode frames (default ``srgb``).
    """

    size: tuple[int, int]
    layers: list[Layer]
    supersample: int = 2
    crf: str = "srgb"
    name: str = "scene"
    max_speed: float = field(default=0.0)

    def render(self, t: float) -> np.ndarray:
        """Sharp linear frame at continuous time ``t``: float32 (H, W, 3) in [0, 1]."""
        h, w = self.size
        ss = self.supersample
        big = (w * ss, h * ss)
        scale = np.diag([ss, ss, 1.0])[:2]
        out = None
        for layer in self.layers:
            m = self.motion_matrix(layer, t)
            # Texture -> supersampled frame: scale about pixel centres, (x + 0.5) * ss - 0.5.
            m_ss = scale @ np.vstack([m, [0, 0, 1]])
            m_ss[:, 2] += 0.5 * ss - 0.5
            tex = cv2.warpAffine(layer.texture, m_ss, big, flags=cv2.INTER_CUBIC,
                                 borderMode=cv2.BORDER_REFLECT101)
            if out is None:
                out = tex
                continue
            a = cv2.warpAffine(layer.alpha, m_ss, big, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
            out = out + a * (tex - out)
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
        return np.clip(out, 0.0, 1.0)

    def motion_matrix(self, layer: Layer, t: float) -> np.ndarray:
        return layer.motion.matrix(t, layer.anchor)

    def true_flow(self, t0: float, t1: float, cover: float = 0.5) -> np.ndarray:
        """Exact flow from time ``t0`` to ``t1``: float32 (H, W, 2), (dx, dy) in pixels.

        Each pixel follows the top-most layer covering at least ``cover`` (in (0, 1]) of it
        at ``t0``: 0.5, the layer that covers most of it; a small value gives the pixels on a
        layer's edge to that layer (the occluder) wherever it covers any part of them.
        """
        if not 0 < cover <= 1:
            raise ParameterError(f"cover: expected 0 < cover <= 1, got {cover}")
        h, w = self.size
        yy, xx = np.mgrid[:h, :w].astype(np.float64)
        pts = np.stack([xx, yy, np.ones_like(xx)], -1)
        out = np.zeros((h, w, 2), np.float64)
        for layer in self.layers:
            m0 = np.vstack([self.motion_matrix(layer, t0), [0, 0, 1]])
            m1 = np.vstack([self.motion_matrix(layer, t1), [0, 0, 1]])
            f = pts @ (m1 @ np.linalg.inv(m0))[:2].T - pts[..., :2]
            if layer.alpha is None:
                out[...] = f
                continue
            a = cv2.warpAffine(layer.alpha, m0[:2], (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            out[a >= cover] = f[a >= cover]
        return out.astype(np.float32)

    def frames(self, n: int, *, t0: float = 0.0) -> np.ndarray:
        """``n`` encoded frames at t = t0, t0 + 1, ...: uint8 (n, H, W, 3)."""
        crf = get_crf(self.crf)
        return np.stack([encode_u8(self.render(t0 + i), crf) for i in range(n)])

    def blur(self, t: float, exposure: float, samples: int | None = None) -> np.ndarray:
        """Ground-truth blur: the scene integrated over ``[t - e/2, t + e/2]`` in linear light.

        Parameters
        ----------
        t : float
            Centre of the exposure, in frames.
        exposure : float
            Exposure ``e`` in frame intervals.
        samples : int, optional
            Number of renders averaged (midpoint rule). Default: enough that nothing moves more
            than 0.1 px between renders.

        Returns
        -------
        numpy.ndarray
            float32 (H, W, 3), linear, in [0, 1].
        """
        if samples is None:
            samples = max(8, int(math.ceil(exposure * max(self.max_speed, 1.0) / 0.1)))
        acc = np.zeros(self.size + (3,), np.float64)
        for k in range(samples):
            acc += self.render(t - exposure / 2 + exposure * (k + 0.5) / samples)
        return (acc / samples).astype(np.float32)


def _load_photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def photo_mosaic(height: int, width: int, *, names=("astronaut", "coffee", "chelsea", "rocket"),
                 crf: str = "srgb") -> np.ndarray:
    """A linear float32 (height, width, 3) canvas tiled with real photos at native resolution.

    Photos keep their native detail (no upscaling), so textures stay as sharp as the photos are;
    only the seams between photos are softened, as a lens would draw such an edge.
    """
    c = get_crf(crf)
    rows, y = [], 0
    i = 0
    seam_rows, seam_cols = [], []
    while y < height:
        row, x, rh = [], 0, None
        while x < width:
            if x:
                seam_cols.append((y, y + (rh or 0), x))
            p = _load_photo(names[i % len(names)])
            if i // len(names) % 2:
                p = p[:, ::-1]
            rh = rh or p.shape[0]
            p = cv2.resize(p, (round(p.shape[1] * rh / p.shape[0]), rh), interpolation=cv2.INTER_AREA) \
                if p.shape[0] != rh else p
            row.append(p)
            x += p.shape[1]
            i += 1
        rows.append(np.concatenate(row, axis=1)[:, :width])
        y += rh
    canvas = decode_u8(np.ascontiguousarray(np.concatenate(rows, axis=0)[:height]), c)
    # Where two photos meet the step is one pixel wide, sharper than any lens draws an edge:
    # soften the seams only (a few pixels either side); the photos keep their own detail.
    seams = np.zeros((height, width), np.uint8)
    for y in seam_rows:
        seams[max(y - 1, 0):y + 1] = 1
    for y0, y1, x in seam_cols:
        seams[y0:y1, max(x - 1, 0):x + 1] = 1
    soft = cv2.GaussianBlur(canvas, (0, 0), 1.0)
    m = cv2.GaussianBlur(cv2.dilate(seams, np.ones((5, 5), np.uint8)).astype(np.float32), (0, 0), 1.0)
    return (canvas + m[..., None] * (soft - canvas)).astype(np.float32)


def disc_sprite(photo: str, radius: int, *, crf: str = "srgb") -> tuple[np.ndarray, np.ndarray]:
    """A round object cut from a real photo: (texture float32 linear, alpha float32 in [0, 1])."""
    p = _load_photo(photo)
    h, w = p.shape[:2]
    d = 2 * radius + 1
    cy, cx = h // 2, w // 2
    tex = p[max(cy - radius, 0):cy - radius + d, max(cx - radius, 0):cx - radius + d]
    tex = cv2.resize(tex, (d, d), interpolation=cv2.INTER_AREA) if tex.shape[:2] != (d, d) else tex
    yy, xx = np.mgrid[:d, :d]
    alpha = ((xx - radius) ** 2 + (yy - radius) ** 2 <= radius ** 2).astype(np.float32)
    return decode_u8(np.ascontiguousarray(tex), get_crf(crf)), alpha


def _translation(h, w, speed):
    bg = photo_mosaic(h + 64 + int(4 * speed), w + 64 + int(40 * speed))
    mo = Motion(position=((w - 1) / 2, (h - 1) / 2), velocity=(speed, speed * 0.3))
    return [Layer(bg, mo)]


def _rotation_zoom(h, w, speed):
    bg = photo_mosaic(int(1.6 * h) + 64, int(1.6 * w) + 64)
    # Rotation and zoom about the centre; `speed` sets the motion at the frame corner.
    r = math.hypot(h, w) / 2
    spin = math.degrees(0.7 * speed / r)
    return [Layer(bg, Motion(position=((w - 1) / 2, (h - 1) / 2), spin=spin, zoom=1.05,
                             zoom_rate=0.7 * speed / r))]


def _occlusion(h, w, speed):
    bg = photo_mosaic(h + 64, w + 64 + int(20 * speed), names=("coffee", "rocket", "astronaut"))
    layers = [Layer(bg, Motion(position=((w - 1) / 2, (h - 1) / 2), velocity=(0.25 * speed, 0.0)))]
    rad = max(8, min(h, w) // 5)
    t1, a1 = disc_sprite("chelsea", rad)
    t2, a2 = disc_sprite("astronaut", int(rad * 0.8))
    # Two objects crossing in opposite directions: the second passes in front of the first.
    layers.append(Layer(t1, Motion(position=(w * 0.3, h * 0.5), velocity=(speed, 0.1 * speed)), a1))
    layers.append(Layer(t2, Motion(position=(w * 0.7, h * 0.45), velocity=(-speed, 0.0)), a2))
    return layers


SCENES = {
    "translation": (_translation, "the whole frame translates (camera pan)"),
    "rotation_zoom": (_rotation_zoom, "camera rotates and zooms about the frame centre"),
    "occlusion": (_occlusion, "two objects cross in opposite directions over a panning background"),
}


def make_scene(kind: str, size: tuple[int, int] = (180, 320), speed: float = 8.0, *,
               supersample: int = 2, crf: str = "srgb") -> Scene:
    """Build a named scene.

    Parameters
    ----------
    kind : str
        One of ``SCENES``: ``translation``, ``rotation_zoom``, ``occlusion``.
    size : (int, int)
        Frame (height, width).
    speed : float
        The fastest image motion in the scene, pixels per frame.

    Returns
    -------
    Scene
    """
    if kind not in SCENES:
        raise ParameterError(f"scene: expected one of {sorted(SCENES)}, got {kind!r}")
    if speed < 0:
        raise ParameterError(f"speed: expected >= 0 px/frame, got {speed}")
    h, w = size
    layers = SCENES[kind][0](h, w, speed)
    return Scene(size=(h, w), layers=layers, supersample=supersample, crf=crf, name=kind,
                 max_speed=float(speed))
