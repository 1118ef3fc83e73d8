"""Snap a flow field to one side's motion across motion boundaries.

Patch-based flow with smoothness (DIS's variational refinement, Farneback's windows) blurs the
flow across a motion boundary: between an object moving at -8 px and a background moving at
+2 px it ramps over some 14 grid pixels, and every value in that ramp is a motion no surface
has. Warping with it drags thin background structure along with the object.

Near a boundary the right vector is almost always one already found a few pixels away, on one
side or the other. So, for each pixel ``x`` of the region where the flow changes fast (the
``mask``), every candidate field ``F(. + d_k)`` (the flow shifted by an offset ``d_k``; ``d_0 = 0``
keeps the flow) is scored by how well it explains the frames on a 3x3 window ``N(x)``:

    C_k(x) = min( mean_{p in N(x)} |a(p) - b(p + F(p + d_k))|,
                  mean_{p in N(x)} |a(p) - o(p - F(p + d_k))| )

``o`` is the frame on the other side of ``a`` (for ``F_ab``, frame ``a - 1``; for ``F_ba``,
frame ``b + 1``): a point about to be covered in ``b`` was still visible there, and under
constant velocity it sat at ``p - F``. The smaller of the two scores lets such points choose
their own motion instead of the occluder's. ``C_0`` is lowered by ``margin`` so the flow only
changes on clear evidence (flat or ambiguous texture keeps it). Each pixel takes the
candidate of lowest score.

Offsets: 8 directions at the radii :data:`RADII` (grid pixels) plus the zero offset.

:func:`snap_reference` is the NumPy reference, :func:`snap_cpu` the numba version; both
clamp positions at the frame borders.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import float32 as f4, int32 as i4, prange

from .flowcheck import _bilinear

__all__ = ["RADII", "MARGIN", "offsets", "boundary_mask", "snap_reference", "snap_cpu"]

#: Candidate distances in flow-grid pixels: wider than DIS's ramp (about 14 px) is not needed,
#: and the ramp's half-width must be covered from every pixel in it.
RADII = (5, 16)
#: Grey levels (mean over the window) by which a candidate must beat the current vector.
MARGIN = 2.0


def offsets(radii=RADII) -> np.ndarray:
    """Candidate offsets ``(dx, dy)`` (int32 (K, 2)): zero first, then 8 directions per radius."""
    out = [(0, 0)]
    for r in radii:
        d = int(round(r / np.sqrt(2.0)))
        out += [(r, 0), (-r, 0), (0, r), (0, -r), (d, d), (-d, d), (d, -d), (-d, -d)]
    return np.asarray(out, np.int32)


def boundary_mask(flow: np.ndarray, slope: float = 0.3, grow: int = 7, spread: float = 1.0,
                  radii=RADII) -> np.ndarray:
    """Where the flow changes by more than ``slope`` px per grid px, grown by ``grow`` px, and
    the candidates differ from the current vector by more than ``spread`` px.

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (h, w, 2) flow in grid pixels.
    slope : float
        Largest change of either component between neighbouring grid pixels that is not a
        boundary.
    grow : int
        Radius of the square the steep pixels are grown by (the ramp's tails are shallower).
    spread : float
        Pixels whose candidate vectors all lie within this many grid px of their own (in
        either component) are left out: there is no second motion to snap to.
    radii : sequence of int
        The candidates' distances (:func:`offsets`).

    Returns
    -------
    numpy.ndarray
        uint8 (h, w), 1 inside the region to snap.
    """
    import cv2

    f = np.ascontiguousarray(flow, np.float32)
    grown = cv2.dilate(_steep(f, np.float32(slope)), np.ones((2 * grow + 1,) * 2, np.uint8))
    _drop_uniform(f, grown, offsets(radii), np.float32(spread))
    return grown


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _drop_uniform(f, mask, offs, spread):
    h, w = mask.shape
    for y in prange(h):
        for x in range(w):
            if mask[y, x]:
                far = False
                for k in range(1, offs.shape[0]):
                    sy = min(max(y + offs[k, 1], 0), h - 1)
                    sx = min(max(x + offs[k, 0], 0), w - 1)
                    if abs(f[sy, sx, 0] - f[y, x, 0]) > spread or abs(f[sy, sx, 1] - f[y, x, 1]) > spread:
                        far = True
                        break
                if not far:
                    mask[y, x] = 0


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _steep(f, slope):
    # 1 where the flow differs by more than slope from its right or lower neighbour
    # (branch-free passes over contiguous rows: vectorised).
    h, w = f.shape[0], f.shape[1]
    out = np.zeros((h, w), np.uint8)
    for y in prange(h):
        r = f[y].reshape(-1)  # (u, v) interleaved
        d = f[min(y + 1, h - 1)].reshape(-1)  # the last row against itself: no difference
        o = out[y]
        for x in range(w):
            o[x] = (abs(d[2 * x] - r[2 * x]) > slope) | (abs(d[2 * x + 1] - r[2 * x + 1]) > slope)
        for x in range(w - 1):
            o[x] |= ((abs(r[2 * x + 2] - r[2 * x]) > slope)
                     | (abs(r[2 * x + 3] - r[2 * x + 1]) > slope))
    return out


def _shifted(f, dx, dy):
    h, w = f.shape[:2]
    ys = np.clip(np.arange(h) + dy, 0, h - 1)
    xs = np.clip(np.arange(w) + dx, 0, w - 1)
    return f[ys][:, xs]


def _box3(e):
    # 3x3 mean with replicated borders.
    p = np.pad(e, 1, mode="edge")
    h, w = e.shape
    return sum(p[j:j + h, i:i + w] for j in range(3) for i in range(3)) / 9.0


def snap_reference(flow, a, b, other, mask, margin: float = MARGIN, radii=RADII, *,
                   layers=(), bonus: float = 0.0, penalty: float = 0.0, tol: float = 1.0,
                   border: bool = False) -> np.ndarray:
    """Snap ``flow`` inside ``mask`` (NumPy reference).

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (h, w, 2) flow from ``a`` to ``b`` in grid pixels.
    a, b : numpy.ndarray
        uint8 (h, w) grey frames on the flow grid.
    other : numpy.ndarray or None
        uint8 (h, w) grey frame on the far side of ``a`` (one frame interval away, opposite
        ``b``), or None where there is none (the first or last pair of a clip).
    mask : numpy.ndarray
        uint8 or bool (h, w): pixels that may change (:func:`boundary_mask`).
    margin : float
        Grey levels by which a candidate must beat the current vector.
    radii : sequence of int
        Candidate distances in grid pixels.
    layers : sequence of numpy.ndarray
        Affine motions (float (2, 3), :func:`blursynth_ext.flowlayers.motion_layers`), each a
        further candidate at every pixel. With layers, a vector within ``tol`` px (either
        component) of no layer is a blend: the current one gets no margin, a shifted one pays
        ``penalty`` grey levels, and a layer's own vector gains ``bonus``.
    bonus, penalty, tol : float
        See ``layers``.
    border : bool
        Leave the vectors that carry their point out of the frame (towards ``b`` and, given
        ``other``, towards it too) as they are, and never pick such a vector: nothing in the
        frames can score it.

    Returns
    -------
    numpy.ndarray
        float32 (h, w, 2): the snapped flow (``flow`` itself outside ``mask``).
    """
    from .flowlayers import layer_flow

    h, w = a.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    a64 = a.astype(np.float64)
    best = np.full((h, w), np.inf)
    out = np.array(flow, np.float32, copy=True)
    lays = [layer_flow(m, (h, w)) for m in layers]

    def near_layer(c):
        if not lays:
            return np.ones((h, w), bool)
        return np.any([np.abs(c - f).max(-1) <= tol for f in lays], axis=0)

    def leaves(c):
        def outside(px, py):
            return ~((px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1))
        out_b = outside(gx + c[..., 0], gy + c[..., 1])
        return out_b & outside(gx - c[..., 0], gy - c[..., 1]) if other is not None else out_b

    offs = offsets(radii)
    for k, c in enumerate([_shifted(flow, dx, dy) for dx, dy in offs] + lays):
        c64 = c.astype(np.float64)
        cost = _box3(np.abs(a64 - _bilinear(b.astype(np.float64), gx + c64[..., 0],
                                            gy + c64[..., 1])))
        if other is not None:
            back = np.abs(a64 - _bilinear(other.astype(np.float64), gx - c64[..., 0],
                                          gy - c64[..., 1]))
            cost = np.minimum(cost, _box3(back))
        if k == 0:
            cost = np.where(near_layer(c), cost - margin, cost)
        elif k < len(offs):
            cost = np.where(near_layer(c), cost, cost + penalty)
        else:
            cost = cost - bonus
        if border:
            cost = np.where(leaves(c), -np.inf if k == 0 else np.inf, cost)
        better = (cost < best) & (np.asarray(mask) != 0)
        best = np.where(better, cost, best)
        out[better] = c[better]
    return out


@numba.njit(fastmath=True, inline="always")
def _bil(img, x, y):
    h, w = img.shape
    x = min(max(x, f4(0.0)), f4(w - 1))
    y = min(max(y, f4(0.0)), f4(h - 1))
    x0, y0 = i4(x), i4(y)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = x - f4(x0), y - f4(y0)
    return ((f4(1) - ay) * ((f4(1) - ax) * f4(img[y0, x0]) + ax * f4(img[y0, x1]))
            + ay * ((f4(1) - ax) * f4(img[y1, x0]) + ax * f4(img[y1, x1])))


_BAND = 8  # rows per parallel task; each task recomputes the errors of one row above and below


@numba.njit(fastmath=True, inline="always")
def _layer_at(m, y, x):
    # The vector of the affine motion m (float64 (2, 3)) at (y, x).
    return (f4(m[0, 0] * x + m[0, 1] * y + m[0, 2] - x),
            f4(m[1, 0] * x + m[1, 1] * y + m[1, 2] - y))


@numba.njit(fastmath=True, inline="always")
def _candidate(flow, offs, layers, k, y, x):
    # Vector of candidate k at (y, x): the flow shifted by offs[k], or layer k - len(offs).
    n = offs.shape[0]
    if k < n:
        h, w = flow.shape[0], flow.shape[1]
        sy, sx = min(max(y + offs[k, 1], 0), h - 1), min(max(x + offs[k, 0], 0), w - 1)
        return flow[sy, sx, 0], flow[sy, sx, 1]
    return _layer_at(layers[k - n], y, x)


@numba.njit(fastmath=True, inline="always")
def _near_layer(layers, u, v, y, x, tol):
    # Whether (u, v) at (y, x) is within tol (either component) of a layer's vector there;
    # True where there are no layers (no rule applies).
    if layers.shape[0] == 0:
        return True
    for j in range(layers.shape[0]):
        lu, lv = _layer_at(layers[j], y, x)
        if abs(u - lu) <= tol and abs(v - lv) <= tol:
            return True
    return False


@numba.njit(fastmath=True, inline="always")
def _leaves(u, v, y, x, h, w, has_other):
    # Whether the point carried by (u, v) leaves the frame towards b (and, with a frame on the
    # other side, towards it too): nothing in the frames can score such a vector.
    out_b = not (0.0 <= x + u <= w - 1 and 0.0 <= y + v <= h - 1)
    if has_other:
        return out_b and not (0.0 <= x - u <= w - 1 and 0.0 <= y - v <= h - 1)
    return out_b


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _snap_kernel(flow, a, b, other, has_other, ys, xs, starts, ny, nx, nstarts, offs, layers,
                 n_cand, margin, bonus, penalty, tol, border, out, score):
    # Pixel lists in row order: the masked ones (ys, xs) and those their windows read (ny, nx);
    # starts[r] / nstarts[r]: the first entry on row r or below. One task per band of rows.
    # Candidates 0 .. n_cand - 1 of: the shifted flows of offs, then the layers (float64
    # (L, 2, 3)). score[m]: the winning candidate's cost, with its margin, bonus or penalty.
    h, w = a.shape
    for band in prange((h + _BAND - 1) // _BAND):
        y0 = band * _BAND
        y1 = min(y0 + _BAND, h)
        m0, m1 = starts[y0], starts[y1]
        if m0 == m1:
            continue
        r0, r1 = max(y0 - 1, 0), min(y1 + 1, h)
        n0, n1 = nstarts[r0], nstarts[r1]
        err = np.zeros((r1 - r0, w + 2, 2), np.float32)  # (to b, to other), a column each side
        row = np.zeros((r1 - r0, w, 2), np.float32)  # sums of three along the row
        best = np.full(m1 - m0, np.inf, np.float32)
        pick = np.zeros(m1 - m0, np.int32)
        for k in range(n_cand):
            # Per-pixel errors of candidate k wherever a window needs them...
            for q in range(n0, n1):
                y, x = ny[q], nx[q]
                u, v = _candidate(flow, offs, layers, k, y, x)
                av = f4(a[y, x])
                err[y - r0, x + 1, 0] = abs(av - _bil(b, f4(x) + u, f4(y) + v))
                if has_other:
                    err[y - r0, x + 1, 1] = abs(av - _bil(other, f4(x) - u, f4(y) - v))
            # ...their 3x3 means (separably; replicated borders), and the running best.
            for q in range(n0, n1):
                y, x = ny[q] - r0, nx[q]
                xl = x + 1 if x > 0 else x + 2  # x - 1 in err, or x itself at the border
                xr = x + 1 if x == w - 1 else x + 2
                for c in range(2):
                    row[y, x, c] = err[y, xl - 1, c] + err[y, x + 1, c] + err[y, xr, c]
            for m in range(m0, m1):
                y, x = ys[m], xs[m]
                yu, yd = max(y - 1, 0) - r0, min(y + 1, h - 1) - r0
                cost = (row[yu, x, 0] + row[y - r0, x, 0] + row[yd, x, 0]) / f4(9.0)
                if has_other:
                    cost = min(cost, (row[yu, x, 1] + row[y - r0, x, 1] + row[yd, x, 1]) / f4(9.0))
                u, v = _candidate(flow, offs, layers, k, y, x)
                if border and _leaves(u, v, y, x, h, w, has_other):
                    if k > 0:
                        continue
                    cost = -np.inf  # the current vector leaves the frame: kept
                elif k == 0:
                    if _near_layer(layers, u, v, y, x, tol):
                        cost -= margin
                elif k < offs.shape[0]:
                    if not _near_layer(layers, u, v, y, x, tol):
                        cost += penalty
                else:
                    cost -= bonus
                if cost < best[m - m0]:
                    best[m - m0] = cost
                    pick[m - m0] = k
        for m in range(m0, m1):
            y, x, k = ys[m], xs[m], pick[m - m0]
            score[m] = best[m - m0]
            out[y, x, 0], out[y, x, 1] = _candidate(flow, offs, layers, k, y, x)


@numba.njit(nogil=True, inline="always")
def _mark_window(near, y, x):
    # Set the 3x3 window around (y, x), clipped to the grid.
    h, w = near.shape
    for yy in range(max(y - 1, 0), min(y + 2, h)):
        for xx in range(max(x - 1, 0), min(x + 2, w)):
            near[yy, xx] = 1


@numba.njit(nogil=True, cache=True)
def _pixel_lists(mask):
    # Row-ordered lists of the masked pixels and of those their 3x3 windows read, with the
    # index of each row's first entry (h + 1 of them).
    h, w = mask.shape
    near = np.zeros((h, w), np.uint8)
    n_mask = 0
    for y in range(h):
        for x in range(w):
            if mask[y, x]:
                n_mask += 1
                _mark_window(near, y, x)
    ys = np.empty(n_mask, np.int32)
    xs = np.empty(n_mask, np.int32)
    starts = np.empty(h + 1, np.int64)
    n_near = 0
    for y in range(h):
        for x in range(w):
            n_near += near[y, x]
    ny = np.empty(n_near, np.int32)
    nx = np.empty(n_near, np.int32)
    nstarts = np.empty(h + 1, np.int64)
    m = q = 0
    for y in range(h):
        starts[y], nstarts[y] = m, q
        for x in range(w):
            if mask[y, x]:
                ys[m], xs[m] = y, x
                m += 1
            if near[y, x]:
                ny[q], nx[q] = y, x
                q += 1
    starts[h], nstarts[h] = m, q
    return ys, xs, starts, ny, nx, nstarts


@numba.njit(nogil=True, cache=True)
def _sub_lists(h, w, ys, xs, keep, ny, nx):
    # _pixel_lists of the masked pixels where keep is set, from the lists of all of them
    # (their windows read a subset of the same pixels).
    near = np.zeros((h, w), np.uint8)
    n_mask = 0
    for m in range(ys.size):
        if keep[m]:
            n_mask += 1
            _mark_window(near, ys[m], xs[m])
    ys2 = np.empty(n_mask, np.int32)
    xs2 = np.empty(n_mask, np.int32)
    starts = np.zeros(h + 1, np.int64)
    j = 0
    for m in range(ys.size):
        if keep[m]:
            ys2[j], xs2[j] = ys[m], xs[m]
            starts[ys[m] + 1] += 1
            j += 1
    n_near = 0
    for q in range(ny.size):
        n_near += near[ny[q], nx[q]]
    ny2 = np.empty(n_near, np.int32)
    nx2 = np.empty(n_near, np.int32)
    nstarts = np.zeros(h + 1, np.int64)
    j = 0
    for q in range(ny.size):
        if near[ny[q], nx[q]]:
            ny2[j], nx2[j] = ny[q], nx[q]
            nstarts[ny[q] + 1] += 1
            j += 1
    for y in range(h):  # counts per row -> index of each row's first entry
        starts[y + 1] += starts[y]
        nstarts[y + 1] += nstarts[y]
    return ys2, xs2, starts, ny2, nx2, nstarts


def snap_cpu(flow, a, b, other, mask, margin: float = MARGIN, radii=RADII, *, layers=(),
             bonus: float = 0.0, penalty: float = 0.0, tol: float = 1.0,
             border: bool = False) -> np.ndarray:
    """Snap ``flow`` inside ``mask`` (numba, parallel); see :func:`snap_reference`."""
    flow = np.ascontiguousarray(flow, np.float32)
    out = flow.copy()
    mask = np.ascontiguousarray(mask, np.uint8)
    has_other = other is not None
    frames = (np.ascontiguousarray(a, np.uint8), np.ascontiguousarray(b, np.uint8),
              np.ascontiguousarray(other if has_other else a, np.uint8), has_other)
    offs = offsets(radii)
    lays = np.asarray(layers, np.float64).reshape(-1, 2, 3)
    rules = (np.float32(margin), np.float32(bonus), np.float32(penalty), np.float32(tol),
             bool(border))
    # First the current vectors alone. Costs are >= 0, so where a vector explains the frames
    # to within the margin (its score below anything a candidate can reach: 0, or -bonus with
    # layers) no candidate can beat it: only the rest are searched (70-90% of the mask drops
    # out on the benchmark clips without layers; the same result).
    floor = min(0.0, -bonus) if len(lays) else 0.0
    lists = _pixel_lists(mask)
    score = np.empty(lists[0].size, np.float32)
    if lists[0].size:
        _snap_kernel(flow, *frames, *lists, offs, lays, 1, *rules, out, score)
        ys, xs, _, ny, nx, _ = lists
        lists = _sub_lists(*mask.shape, ys, xs, score >= floor, ny, nx)
    if lists[0].size:
        _snap_kernel(flow, *frames, *lists, offs, lays, len(offs) + len(lays), *rules, out,
                     np.empty(lists[0].size, np.float32))
    return out
