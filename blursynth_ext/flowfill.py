"""Motion for the points about to be covered in a clip's first pair.

Snapping (:mod:`.flowsnap`) finds the motion of a point of ``a`` that ``b`` no longer shows (it
is about to be covered) by matching it in the frame before ``a``. A clip's first pair has no
frame before it, so such points keep what the flow's smoothness gave them, mostly the
occluder's vector, and the sub-frames drag them along with the occluder.

Those points are found as the holes of the opposite flow's splat: each grid point of ``b`` is
carried to ``a`` by ``F_ba`` and spreads a unit weight bilinearly over its four nearest points;
a point of ``a`` that collects less than :data:`COVERED` is not seen in ``b`` (unless its own
vector carries it out of the frame: it leaves, it is not covered). Each such point then takes
the vector of the point, among 8 directions at the distances :data:`RADII` and not itself a
hole, whose 3x3 mean colour (the candidate's surface) is nearest the point's own colour, with
:data:`LAM` levels added per pixel of distance (both in output pixels; :func:`grid_radii`): a
point most often belongs to the surface whose colour it continues. Colour, not grey: a dark
wall and a dark coat may share a grey and differ in hue.

Colour cannot tell a band that belongs to the far surface from the near surface's own edge
where the two look alike; the next pair can. Depth order holds over three frames: the points of
``b`` that the next pair finds about to be covered (snapped with ``a`` as the frame before) lie
on the same far surface, just beyond ``a``'s band. Carried back to ``a`` by ``F_ba`` they mark
that surface (:func:`behind`); a covered point within :data:`BEHIND_RADIUS` of a marked point
takes the vector of the nearest one, the others fall back to colour.

:func:`fill_reference` is the NumPy reference, :func:`fill_cpu` the numba version.
"""
from __future__ import annotations

import cv2
import numba
import numpy as np
from numba import prange

from .flowsnap import _box3, offsets

__all__ = ["COVERED", "RADII", "LAM", "BEHIND_RADIUS", "grid_radii", "covered_reference",
           "covered_cpu", "fill_reference", "fill_cpu", "behind", "fill_behind"]

#: Splat weight under which a point of ``a`` counts as not seen in ``b``.
COVERED = 0.5
#: Candidate distances in output pixels (:func:`grid_radii`): the band being covered is as wide
#: as the relative motion of the two surfaces, and one of its sides must be in reach of every
#: point in it (bands up to 16 px). Farther candidates (16 and 24 px) reach other surfaces too:
#: on the occlusion scene at 720p with DeepFlow and colour alone, 35.3 against 36.0 dB on the
#: worst tile of the first window (e = 2).
RADII = (2, 4, 8)
#: Levels (0-255) per output pixel of distance: a nearer candidate wins unless a farther one is
#: clearly nearer in colour.
LAM = 1.0


#: Output pixels within which a covered point takes the vector of a point the next pair marks
#: as the far surface (:func:`fill_behind`): about the width of a band at 8-12 px/frame.
BEHIND_RADIUS = 12


def grid_radii(scale: float, radii=RADII, lam: float = LAM) -> tuple[tuple[int, ...], float]:
    """:data:`RADII` and :data:`LAM` on a flow grid ``scale`` times the output size:
    ``(radii, lam)`` in grid pixels."""
    return tuple(max(1, round(r * scale)) for r in radii), lam / scale


def _holes(cov: np.ndarray, flow: np.ndarray, threshold: float) -> np.ndarray:
    h, w = cov.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    tx, ty = gx + flow[..., 0], gy + flow[..., 1]
    stays = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    hole = (cov < threshold) & stays
    # Single points and one-pixel lines are gaps between splats, not covered bands: keep the
    # points of some 2x2 square of holes (an opening; cv2's shifts even kernels by a pixel).
    sq = hole[:-1, :-1] & hole[1:, :-1] & hole[:-1, 1:] & hole[1:, 1:]
    out = np.zeros((h, w), np.uint8)
    for dy in (0, 1):
        for dx in (0, 1):
            out[dy:h - 1 + dy, dx:w - 1 + dx] |= sq
    return out


def covered_reference(flow: np.ndarray, opposite: np.ndarray,
                      threshold: float = COVERED) -> np.ndarray:
    """Points of ``a`` about to be covered in ``b`` (NumPy reference).

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (h, w, 2) flow from ``a`` to ``b`` in grid pixels.
    opposite : numpy.ndarray
        float32 (h, w, 2) flow from ``b`` to ``a`` in grid pixels.
    threshold : float
        Splat weight under which a point is not seen in ``b``.

    Returns
    -------
    numpy.ndarray
        uint8 (h, w), 1 at the points of ``a`` about to be covered.
    """
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    tx, ty = gx + opposite[..., 0], gy + opposite[..., 1]
    x0, y0 = np.floor(tx).astype(np.int64), np.floor(ty).astype(np.int64)
    ax, ay = tx - x0, ty - y0
    cov = np.zeros((h, w))
    for dx, dy, wt in ((0, 0, (1 - ax) * (1 - ay)), (1, 0, ax * (1 - ay)),
                       (0, 1, (1 - ax) * ay), (1, 1, ax * ay)):
        x, y = x0 + dx, y0 + dy
        ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        np.add.at(cov, (y[ok], x[ok]), wt[ok])
    return _holes(cov, flow, threshold)


@numba.njit(fastmath=True, nogil=True, cache=True)
def _coverage_kernel(opposite, cov):
    # Serial: the splats of different points add into the same cells.
    h, w = cov.shape
    for y in range(h):
        for x in range(w):
            tx = x + np.float64(opposite[y, x, 0])
            ty = y + np.float64(opposite[y, x, 1])
            if not (tx > -1.0 and tx < w and ty > -1.0 and ty < h):
                continue
            x0, y0 = int(np.floor(tx)), int(np.floor(ty))
            ax, ay = tx - x0, ty - y0
            for dy in range(2):
                yy = y0 + dy
                if yy < 0 or yy >= h:
                    continue
                wy = ay if dy else 1.0 - ay
                for dx in range(2):
                    xx = x0 + dx
                    if 0 <= xx < w:
                        cov[yy, xx] += wy * (ax if dx else 1.0 - ax)


def covered_cpu(flow: np.ndarray, opposite: np.ndarray, threshold: float = COVERED) -> np.ndarray:
    """Points of ``a`` about to be covered in ``b`` (numba); see :func:`covered_reference`."""
    cov = np.zeros(flow.shape[:2], np.float64)
    _coverage_kernel(np.ascontiguousarray(opposite, np.float32), cov)
    return _holes(cov, flow, threshold)


def _colours(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # float64 (h, w, C) of the frame and of its 3x3 means, channel by channel.
    own = np.asarray(a, np.float64)
    own = own[..., None] if own.ndim == 2 else own
    return own, np.stack([_box3(own[..., c]) for c in range(own.shape[2])], -1)


def fill_reference(flow: np.ndarray, a: np.ndarray, holes: np.ndarray, radii=RADII,
                   lam: float = LAM) -> np.ndarray:
    """Give each hole the vector of the non-hole candidate nearest in colour (NumPy reference).

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (h, w, 2) flow from ``a`` in grid pixels.
    a : numpy.ndarray
        uint8 (h, w) grey or (h, w, C) colour frame on the flow grid; a colour difference is
        the mean over the channels.
    holes : numpy.ndarray
        uint8 or bool (h, w): the points to fill (:func:`covered_reference`).
    radii : sequence of int
        Candidate distances in grid pixels (8 directions each).
    lam : float
        Levels (0-255) added per grid pixel of a candidate's distance.

    Returns
    -------
    numpy.ndarray
        float32 (h, w, 2): ``flow`` with its holes filled (a hole with no candidate keeps its
        vector).
    """
    h, w = flow.shape[:2]
    own, col = _colours(a)
    hole = np.asarray(holes) != 0
    ys, xs = np.nonzero(hole)
    out = np.array(flow, np.float32, copy=True)
    best = np.full(ys.size, np.inf)
    for dx, dy in offsets(radii)[1:]:
        y, x = np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)
        cost = np.abs(own[ys, xs] - col[y, x]).mean(-1) + lam * np.hypot(dx, dy)
        cost[hole[y, x]] = np.inf
        better = cost < best
        best[better] = cost[better]
        out[ys[better], xs[better]] = flow[y[better], x[better]]
    return out


# No fastmath: a reordered or fused sum could break a near tie unlike the reference.
@numba.njit(parallel=True, nogil=True, cache=True)
def _fill_kernel(flow, own, col, hole, ys, xs, offs, dist, lam, out):
    h, w, nc = own.shape
    for m in prange(ys.size):
        y, x = ys[m], xs[m]
        best = np.inf
        for k in range(offs.shape[0]):
            sy = min(max(y + offs[k, 1], 0), h - 1)
            sx = min(max(x + offs[k, 0], 0), w - 1)
            if hole[sy, sx]:
                continue
            diff = 0.0
            for c in range(nc):
                diff += abs(own[y, x, c] - col[sy, sx, c])
            cost = diff / nc + lam * dist[k]
            if cost < best:
                best = cost
                out[y, x, 0] = flow[sy, sx, 0]
                out[y, x, 1] = flow[sy, sx, 1]


def fill_cpu(flow: np.ndarray, a: np.ndarray, holes: np.ndarray, radii=RADII,
             lam: float = LAM) -> np.ndarray:
    """Fill the holes of ``flow`` (numba, parallel); see :func:`fill_reference`."""
    flow = np.ascontiguousarray(flow, np.float32)
    out = flow.copy()
    hole = np.ascontiguousarray(holes, np.uint8)
    ys, xs = np.nonzero(hole)
    if ys.size:
        offs = offsets(radii)[1:]
        _fill_kernel(flow, *_colours(a), hole, ys, xs, offs,
                     np.hypot(offs[:, 0], offs[:, 1]), float(lam), out)
    return out


def behind(next_covered: np.ndarray, opposite: np.ndarray) -> np.ndarray:
    """The next pair's about-to-be-covered points carried back to ``a``.

    Parameters
    ----------
    next_covered : numpy.ndarray
        uint8 or bool (h, w): points of ``b`` about to be covered in the frame after ``b``
        (:func:`covered_cpu` of the next pair's flows).
    opposite : numpy.ndarray
        float32 (h, w, 2) flow from ``b`` to ``a`` in grid pixels.

    Returns
    -------
    numpy.ndarray
        uint8 (h, w), 1 where one of those points lands in ``a`` (rounded to the nearest point).
    """
    h, w = next_covered.shape
    ys, xs = np.nonzero(next_covered)
    qx = np.rint(xs + opposite[ys, xs, 0]).astype(np.intp)
    qy = np.rint(ys + opposite[ys, xs, 1]).astype(np.intp)
    ok = (qx >= 0) & (qx < w) & (qy >= 0) & (qy < h)
    out = np.zeros((h, w), np.uint8)
    out[qy[ok], qx[ok]] = 1
    return out


def fill_behind(flow: np.ndarray, holes: np.ndarray, far: np.ndarray,
                radius: float) -> np.ndarray:
    """Give each hole within ``radius`` of a marked point the vector of the nearest one.

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (h, w, 2) flow from ``a`` in grid pixels.
    holes : numpy.ndarray
        uint8 or bool (h, w): the points to fill.
    far : numpy.ndarray
        uint8 or bool (h, w): points of the far surface (:func:`behind`); holes among them are
        not used.
    radius : float
        Grid pixels (Euclidean) beyond which a hole is left as it is.

    Returns
    -------
    numpy.ndarray
        float32 (h, w, 2): ``flow`` with those holes filled.
    """
    hole = np.asarray(holes) != 0
    src = (np.asarray(far) != 0) & ~hole
    out = np.array(flow, np.float32, copy=True)
    if not src.any() or not hole.any():
        return out
    # Distance to (5x5 mask: within 2% of Euclidean; the exact one has no labels) and label
    # of the nearest source point; the labels number the zero pixels, the sources here.
    dist, lab = cv2.distanceTransformWithLabels((~src).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    sy, sx = np.nonzero(src)
    of_label = np.zeros(int(lab.max()) + 1, np.intp)
    of_label[lab[sy, sx]] = np.arange(sy.size)
    hy, hx = np.nonzero(hole & (dist <= radius))
    k = of_label[lab[hy, hx]]
    out[hy, hx] = flow[sy[k], sx[k]]
    return out
