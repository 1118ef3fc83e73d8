"""Per-pixel analysis of a bidirectional flow pair, fused into one pass over the flow grid.

For flows ``F_ab``, ``F_ba`` (in output pixels, on a grid ``sx``, ``sy`` times the output size):

- forward-backward error ``e_a(x) = |F_ab(x) + F_ba(x + F_ab(x))|`` (0 where ``x + F_ab(x)``
  leaves the frame: nothing to check it against), and the soft visibility
  ``q_a = 1 / (1 + (e_a / (1 + 0.05 |F_ab|))^4)``: is the point seen in the other frame?
- the second-order term ``J F`` (J the Jacobian of the flow per output pixel, central
  differences with reflected borders) and ``|J|_1``;
- the "hard" test: ``|J|_1 > jac_max`` or ``q < vis_min`` on either _side, in textured regions;
- the scene-cut test: ``|b(x + F_ab(x)) - a(x)| > 25`` grey levels.

:func:`analyse_reference` is the NumPy reference, :func:`analyse_cpu` the numba version.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import float32 as f4, int32 as i4

from .interp import _out

__all__ = ["analyse_reference", "analyse_cpu"]


def _bilinear(img, mx, my):
    h, w = img.shape[:2]
    x = np.clip(mx, 0, w - 1)
    y = np.clip(my, 0, h - 1)
    x0 = np.minimum(x.astype(np.int64), w - 1)
    y0 = np.minimum(y.astype(np.int64), h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    ax = x - x0
    ay = y - y0
    if img.ndim == 3:
        ax, ay = ax[..., None], ay[..., None]
    return ((1 - ay) * ((1 - ax) * img[y0, x0] + ax * img[y0, x1])
            + ay * ((1 - ax) * img[y1, x0] + ax * img[y1, x1]))


def _central(f, axis):
    # Central difference with reflect-101 borders (0 on the border row/column).
    p = np.pad(f, [(1, 1) if a == axis else (0, 0) for a in range(f.ndim)], mode="reflect")
    sl = [slice(None)] * f.ndim
    sl[axis] = slice(2, None)
    hi = p[tuple(sl)]
    sl[axis] = slice(None, -2)
    return 0.5 * (hi - p[tuple(sl)])


def analyse_reference(fab, fba, ga, gb, textured, sx, sy, jac_max, vis_min):
    """Analyse a flow pair (NumPy reference).

    Parameters
    ----------
    fab, fba : numpy.ndarray
        float32 (h, w, 2) flows in output pixels on the flow grid.
    ga, gb : numpy.ndarray
        uint8 (h, w) grey frames on the flow grid.
    textured : numpy.ndarray
        bool or uint8 (h, w): where image detail makes flow errors visible.
    sx, sy : float
        Flow grid size over output size.
    jac_max, vis_min : float
        Thresholds of the hard test.

    Returns
    -------
    fab5, fba5 : numpy.ndarray
        float32 (h, w, 5): (dx, dy, visibility in the other frame, J F).
    bad : numpy.ndarray
        uint8 (h, w): 1 where the hard test fires.
    mag : numpy.ndarray
        float32 (h, w): ``max(|F_ab|, |F_ba|)``, or -1 where either _side is not seen (q < 0.5).
    cut : int
        Pixels whose flow-compensated grey difference exceeds 25.
    """
    h, w = ga.shape
    gy, gx = np.mgrid[:h, :w].astype(np.float64)
    out, jn = [], []
    for f, g in ((fab, fba), (fba, fab)):
        f = f.astype(np.float64)
        mx = gx + f[..., 0] * sx
        my = gy + f[..., 1] * sy
        err = np.sqrt(((f + _bilinear(g.astype(np.float64), mx, my)) ** 2).sum(-1))
        err[(mx < 0) | (mx > w - 1) | (my < 0) | (my > h - 1)] = 0.0
        q = 1.0 / (1.0 + (err / (1.0 + 0.05 * np.sqrt((f ** 2).sum(-1)))) ** 4)
        dux, duy = _central(f[..., 0], 1) * sx, _central(f[..., 0], 0) * sy
        dvx, dvy = _central(f[..., 1], 1) * sx, _central(f[..., 1], 0) * sy
        jf = np.stack([dux * f[..., 0] + duy * f[..., 1], dvx * f[..., 0] + dvy * f[..., 1]], -1)
        out.append(np.concatenate([f, q[..., None], jf], -1).astype(np.float32))
        jn.append(np.abs(dux) + np.abs(duy) + np.abs(dvx) + np.abs(dvy))
    qa, qb = out[0][..., 2], out[1][..., 2]
    bad = ((jn[0] > jac_max) | (jn[1] > jac_max) | (qa < vis_min) | (qb < vis_min)) & (textured != 0)
    mag = np.sqrt(np.maximum((fab.astype(np.float64) ** 2).sum(-1), (fba.astype(np.float64) ** 2).sum(-1)))
    mag = np.where((qa > 0.5) & (qb > 0.5), mag, -1.0).astype(np.float32)
    mx = gx + fab[..., 0] * sx
    my = gy + fab[..., 1] * sy
    warped = _bilinear(gb.astype(np.float64), mx, my)
    cut = int(np.sum(np.abs(warped - ga) > 25))
    return out[0], out[1], bad.astype(np.uint8), mag, cut


@numba.njit(fastmath=True, inline="always")
def _bil(img, x, y, c):
    h, w = img.shape[0], img.shape[1]
    x = min(max(x, f4(0.0)), f4(w - 1))
    y = min(max(y, f4(0.0)), f4(h - 1))
    x0, y0 = i4(x), i4(y)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = x - f4(x0), y - f4(y0)
    return ((f4(1) - ay) * ((f4(1) - ax) * img[y0, x0, c] + ax * img[y0, x1, c])
            + ay * ((f4(1) - ax) * img[y1, x0, c] + ax * img[y1, x1, c]))

@numba.njit(fastmath=True, inline="always")
def _side(f, g, out, x, y, sx, sy):
    h, w = f.shape[0], f.shape[1]
    u, v = f[y, x, 0], f[y, x, 1]
    mx, my = f4(x) + u * sx, f4(y) + v * sy
    if mx < 0 or mx > w - 1 or my < 0 or my > h - 1:
        err = f4(0.0)
    else:
        eu = u + _bil(g, mx, my, 0)
        ev = v + _bil(g, mx, my, 1)
        err = np.sqrt(eu * eu + ev * ev)
    r = err / (f4(1.0) + f4(0.05) * np.sqrt(u * u + v * v))
    r2 = r * r
    q = f4(1.0) / (f4(1.0) + r2 * r2)
    xl, xr = (x + 1 if x == 0 else x - 1), (x - 1 if x == w - 1 else x + 1)
    yu, yd = (y + 1 if y == 0 else y - 1), (y - 1 if y == h - 1 else y + 1)
    dux = f4(0.5) * (f[y, xr, 0] - f[y, xl, 0]) * sx
    duy = f4(0.5) * (f[yd, x, 0] - f[yu, x, 0]) * sy
    dvx = f4(0.5) * (f[y, xr, 1] - f[y, xl, 1]) * sx
    dvy = f4(0.5) * (f[yd, x, 1] - f[yu, x, 1]) * sy
    out[y, x, 0], out[y, x, 1], out[y, x, 2] = u, v, q
    out[y, x, 3] = dux * u + duy * v
    out[y, x, 4] = dvx * u + dvy * v
    return q, abs(dux) + abs(duy) + abs(dvx) + abs(dvy), u * u + v * v

@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _analyse_kernel(fab, fba, ga, gb, textured, sx, sy, jac_max, vis_min, oa, ob, bad, mag, cuts):
    h, w = ga.shape
    for y in numba.prange(h):
        c = 0
        for x in range(w):
            qa, ja, ma = _side(fab, fba, oa, x, y, sx, sy)
            qb, jb, mb = _side(fba, fab, ob, x, y, sx, sy)
            bad[y, x] = 1 if (textured[y, x] != 0 and (ja > jac_max or jb > jac_max
                                                        or qa < vis_min or qb < vis_min)) else 0
            mag[y, x] = np.sqrt(max(ma, mb)) if (qa > f4(0.5) and qb > f4(0.5)) else f4(-1.0)
            # Flow-compensated grey difference, for the scene-cut test.
            mx, my = f4(x) + fab[y, x, 0] * sx, f4(y) + fab[y, x, 1] * sy
            mx = min(max(mx, f4(0.0)), f4(w - 1))
            my = min(max(my, f4(0.0)), f4(h - 1))
            x0, y0 = i4(mx), i4(my)
            x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
            ax, ay = mx - f4(x0), my - f4(y0)
            gv = ((f4(1) - ay) * ((f4(1) - ax) * f4(gb[y0, x0]) + ax * f4(gb[y0, x1]))
                  + ay * ((f4(1) - ax) * f4(gb[y1, x0]) + ax * f4(gb[y1, x1])))
            if abs(gv - f4(ga[y, x])) > f4(25.0):
                c += 1
        cuts[y] = c



def analyse_cpu(fab, fba, ga, gb, textured, sx, sy, jac_max, vis_min, out=None):
    """numba version of :func:`analyse_reference` (same parameters and returns); ``out``, two
    C-contiguous float32 (h, w, 5) arrays to write ``fab5`` and ``fba5`` into, or None."""
    h, w = ga.shape
    fab = np.ascontiguousarray(fab, np.float32)
    fba = np.ascontiguousarray(fba, np.float32)
    oa, ob = (None, None) if out is None else out
    oa, ob = _out(oa, (h, w, 5)), _out(ob, (h, w, 5))
    bad = np.empty((h, w), np.uint8)
    mag = np.empty((h, w), np.float32)
    cuts = np.empty(h, np.int64)
    _analyse_kernel(fab, fba, np.ascontiguousarray(ga), np.ascontiguousarray(gb),
               np.ascontiguousarray(textured, np.uint8), np.float32(sx), np.float32(sy),
               np.float32(jac_max), np.float32(vis_min), oa, ob, bad, mag, cuts)
    return oa, ob, bad, mag, int(cuts.sum())
