"""The Middlebury flow colour code (Baker et al. 2011), per pixel: the code itself is described
in :func:`blursynth.flow.flow_to_color`. :func:`color_reference` is the NumPy reference,
:func:`color_cpu` the numba version (float64 like the reference, ~3x faster on one core).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

__all__ = ["WHEEL", "color_reference", "color_cpu"]


def _wheel() -> np.ndarray:
    # Segment lengths (RY 15, YG 6, GC 4, CB 11, BM 13, MR 6) follow Baker et al.: perceptually
    # similar hue steps. Integer division as in colorcode.cpp, so colours match it exactly.
    segments = [  # (length, start RGB, which channel ramps, direction)
        (15, (255, 0, 0), 1, +1),  # red -> yellow: G rises
        (6, (255, 255, 0), 0, -1),  # yellow -> green: R falls
        (4, (0, 255, 0), 2, +1),  # green -> cyan: B rises
        (11, (0, 255, 255), 1, -1),  # cyan -> blue: G falls
        (13, (0, 0, 255), 0, +1),  # blue -> magenta: R rises
        (6, (255, 0, 255), 2, -1),  # magenta -> red: B falls
    ]
    rows = []
    for n, start, ch, direction in segments:
        for i in range(n):
            c = list(start)
            step = 255 * i // n
            c[ch] = step if direction > 0 else 255 - step
            rows.append(c)
    return np.asarray(rows, dtype=np.float64) / 255.0


#: The 55-colour wheel, (55, 3) float64 in [0, 1], red -> yellow -> ... -> red.
WHEEL = _wheel()


def color_reference(f: np.ndarray, scale: float) -> np.ndarray:
    """Colour of each vector of ``f`` (float (H, W, 2)) drawn at full saturation at length
    ``scale`` (> 0): uint8 (H, W, 3) RGB."""
    u = f[..., 0].astype(np.float64)
    v = f[..., 1].astype(np.float64)
    known = np.isfinite(u) & np.isfinite(v)
    u = np.where(known, u, 0.0)
    v = np.where(known, v, 0.0)
    rad = np.hypot(u, v) / scale
    n = len(WHEEL)
    fk = (np.arctan2(-v, -u) / np.pi + 1.0) / 2.0 * (n - 1)
    k0 = np.floor(fk).astype(np.intp)
    k1 = k0 + 1
    k1[k1 == n] = 0
    frac = (fk - k0)[..., None]
    col = (1.0 - frac) * WHEEL[k0] + frac * WHEEL[k1]
    col = np.where((rad <= 1.0)[..., None], 1.0 - rad[..., None] * (1.0 - col), col * 0.75)
    rgb = np.floor(255.0 * col).astype(np.uint8)
    rgb[~known] = 0
    return rgb


@numba.njit(parallel=True, nogil=True, cache=True)
def _color_kernel(f, scale, wheel, out):
    h, w = f.shape[0], f.shape[1]
    n = wheel.shape[0]
    for y in prange(h):
        for x in range(w):
            u = np.float64(f[y, x, 0])
            v = np.float64(f[y, x, 1])
            if not (math.isfinite(u) and math.isfinite(v)):
                out[y, x, 0] = out[y, x, 1] = out[y, x, 2] = 0
                continue
            rad = math.hypot(u, v) / scale
            fk = (math.atan2(-v, -u) / math.pi + 1.0) / 2.0 * (n - 1)
            k0 = int(math.floor(fk))
            k1 = 0 if k0 + 1 == n else k0 + 1
            frac = fk - k0
            for c in range(3):
                col = (1.0 - frac) * wheel[k0, c] + frac * wheel[k1, c]
                col = 1.0 - rad * (1.0 - col) if rad <= 1.0 else col * 0.75
                out[y, x, c] = np.uint8(math.floor(255.0 * col))


def color_cpu(f: np.ndarray, scale: float) -> np.ndarray:
    """numba version of :func:`color_reference` (same parameters and return)."""
    out = np.empty(f.shape[:2] + (3,), np.uint8)
    _color_kernel(np.ascontiguousarray(f), float(scale), WHEEL, out)
    return out
