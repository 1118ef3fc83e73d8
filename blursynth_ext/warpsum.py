"""Fused flow-warped sub-frame accumulation (the inner loop of flow-based blur).

For one pair of frames (a, b) and their bidirectional flows, every pixel ``x`` of every requested
sub-frame time ``s`` in [0, 1] is reconstructed from both neighbours and added, with a weight, to
one of several accumulators (one per output exposure), without ever materialising a sub-frame.

Per pixel and sample (Notes give the maths):

1. Follow the motion backwards to frame a: solve ``z = x - s F_ab(z)`` by fixed-point iteration,
   starting from the previous sample's solution (samples are sorted by time, so one or two steps
   suffice), with ``F_ab`` read at the nearest flow-grid node (bilinear interpolation across a
   motion discontinuity invents motions no surface has). Likewise ``y = x - (1 - s) F_ba(y)``
   in frame b.
2. The size of the last fixed-point step, ``r``, says whether a consistent motion path through x
   exists in that frame. Where x is occluded in a frame there is none: the iteration jumps between
   the occluder's and the background's motion and ``r`` stays large.
3. Forward-backward visibility ``q`` (a third flow channel) ranks the two candidates: a point
   seen in both frames is in front of one that only its own frame sees (being covered or just
   revealed), which counts only where the other side has no consistent path.
4. Blend ``c = (w_a I_a(z) + w_b I_b(y)) / (w_a + w_b)`` with
   ``w_a = (1 - s) (eps + (1 - eps) q_a) g(r_a)``, ``w_b = s (eps + (1 - eps) q_b) g(r_b)``,
   ``g(r) = 1 / (1 + (r / tau)^4)`` and ``eps = 0.02``; but where both sides agree (``g`` and
   ``q`` above 0.9 on each: consistent paths to points seen in both frames), the nearer frame
   alone, as on the smooth path.
5. ``acc[target] += weight * c``.

Where the flow is smooth (the "hard" mask is 0) each sample comes from the nearer frame by the
second-order closed form, and each 128-pixel piece of a row may use a sample set of its own
(``smooth``): slow regions need fewer samples than the fastest motion in the frame. Near motion
boundaries the iterated path always uses the full set.

Frames are sampled bilinearly: shifted-linear coefficients (``shift``), or the frames upsampled
2x (``up``); or with Keys' cubic convolution (``cubic``).

Flows may be given at a reduced resolution (vectors in full-resolution pixels); they are sampled
bilinearly at the full-resolution positions (at the nearest node inside the fixed-point
iteration), which fuses the upsampling into this pass. The fixed-point iteration may read
full-resolution flows instead (``fine``): a half-size grid places a motion boundary only to
within a grid pixel, two output pixels, and the iteration drags what lies in between along
with the wrong side.

Implementations: :func:`warpsum_reference` (NumPy, for tests), a numba CPU kernel
(``parallel=True``) and a numba CUDA kernel built from the same per-pixel code. Use
:func:`blursynth_ext.dispatch.warpsum` to choose.
"""
from __future__ import annotations

import types

import numba
import numpy as np
from numba import float32 as f4, int32 as i4, prange, uint32 as u4

__all__ = ["warpsum_reference", "warpsum_cpu", "device_pixel", "EPS", "SEGMENT"]

EPS = 0.02  # relative weight of a candidate that only its own frame sees
EPS32 = np.float32(EPS)
# Both sides agree where each side's residual weight g(r) and visibility q exceed 0.9:
# g(r) = 1 / (1 + R) > 0.9 with R = (r / tau)^4 < 1 / 9 (r < 0.58 tau).
AGREE = 0.9
AGREE_R = np.float32(1.0 / AGREE - 1.0)
AGREE_Q = np.float32(AGREE)

#: Width, in output pixels, of the row pieces whose smooth pixels may each use a sample set of
#: their own (``smooth`` of :func:`warpsum_reference`).
SEGMENT = 128


# The per-pixel functions are plain Python, compiled twice: for the CPU below (module-level
# dispatchers, so numba's on-disk cache works) and as CUDA device functions in warpsum_cuda.
def _cell(f, x, y, sx, sy):
    # The bilinear cell of position (x, y) in a grid of sx, sy times the frame size: pixel
    # centres map as (x + 0.5) * sx - 0.5, clamped at the borders.
    h = f.shape[0]
    w = f.shape[1]
    gx = min(max((x + f4(0.5)) * sx - f4(0.5), f4(0.0)), f4(w - 1))
    gy = min(max((y + f4(0.5)) * sy - f4(0.5), f4(0.0)), f4(h - 1))
    x0 = i4(gx)
    y0 = i4(gy)
    # Unsigned indices: numba wraps a signed index that might be negative (a compare and a
    # select each), not an unsigned one.
    return (u4(x0), u4(y0), u4(min(x0 + 1, w - 1)), u4(min(y0 + 1, h - 1)), gx - f4(x0),
            gy - f4(y0))


def _lerp(f, x0, y0, x1, y1, ax, ay, c):
    return ((f4(1.0) - ay) * ((f4(1.0) - ax) * f[y0, x0, c] + ax * f[y0, x1, c])
            + ay * ((f4(1.0) - ax) * f[y1, x0, c] + ax * f[y1, x1, c]))


def _flow_at(f, x, y, sx, sy):
    # Channels 0-2 of the flow: (dx, dy, visibility in the other frame).
    x0, y0, x1, y1, ax, ay = cell(f, x, y, sx, sy)
    return (lerp(f, x0, y0, x1, y1, ax, ay, 0), lerp(f, x0, y0, x1, y1, ax, ay, 1),
            lerp(f, x0, y0, x1, y1, ax, ay, 2))


def _curv_at(f, x, y, sx, sy):
    # Channels 3-4 of the flow: the second-order term J F (J the flow's Jacobian).
    x0, y0, x1, y1, ax, ay = cell(f, x, y, sx, sy)
    return lerp(f, x0, y0, x1, y1, ax, ay, 3), lerp(f, x0, y0, x1, y1, ax, ay, 4)


def _image_at(im, x, y):
    # Bilinear sample of a (H, W, 3) image at (x, y), clamped at the borders.
    x0, y0, x1, y1, ax, ay = cell(im, x, y, f4(1.0), f4(1.0))
    return (lerp(im, x0, y0, x1, y1, ax, ay, 0), lerp(im, x0, y0, x1, y1, ax, ay, 1),
            lerp(im, x0, y0, x1, y1, ax, ay, 2))


def _keys(t):
    # Keys' cubic convolution weights (a = -1/2, third order) of the samples at offsets
    # -1, 0, 1, 2 from a position t in [0, 1] past sample 0; they sum to 1.
    u = f4(1.0) - t
    w0 = f4(-0.5) * t * u * u
    w3 = f4(-0.5) * t * t * u
    w1 = (f4(1.5) * t - f4(2.5)) * t * t + f4(1.0)
    return w0, w1, f4(1.0) - w0 - w1 - w3, w3


def _cubic4(im, y, x0, x1, x2, x3, a0, a1, a2, a3, ch):
    return a0 * im[y, x0, ch] + a1 * im[y, x1, ch] + a2 * im[y, x2, ch] + a3 * im[y, x3, ch]


def _image_cubic(im, x, y):
    # Keys cubic (4x4 samples) of a (H, W, 3) image at (x, y), clamped at the borders.
    h = im.shape[0]
    w = im.shape[1]
    px = min(max(x, f4(0.0)), f4(w - 1))
    py = min(max(y, f4(0.0)), f4(h - 1))
    x1 = i4(px)
    y1 = i4(py)
    a0, a1, a2, a3 = keys(px - f4(x1))
    b0, b1, b2, b3 = keys(py - f4(y1))
    x0 = u4(max(x1 - 1, 0))
    x2 = u4(min(x1 + 1, w - 1))
    x3 = u4(min(x1 + 2, w - 1))
    y0 = u4(max(y1 - 1, 0))
    y2 = u4(min(y1 + 1, h - 1))
    y3 = u4(min(y1 + 2, h - 1))
    ux1 = u4(x1)  # unsigned, as in cell()
    uy1 = u4(y1)
    out = [f4(0.0), f4(0.0), f4(0.0)]
    for ch in range(3):
        out[ch] = (b0 * cubic4(im, y0, x0, ux1, x2, x3, a0, a1, a2, a3, ch)
                   + b1 * cubic4(im, uy1, x0, ux1, x2, x3, a0, a1, a2, a3, ch)
                   + b2 * cubic4(im, y2, x0, ux1, x2, x3, a0, a1, a2, a3, ch)
                   + b3 * cubic4(im, y3, x0, ux1, x2, x3, a0, a1, a2, a3, ch))
    return out[0], out[1], out[2]


def _sample(im, x, y, shift, cubic, up):
    # A frame at output position (x, y): Keys cubic of the linear frame itself; or bilinear
    # in im at up (x, y) - shift: the shifted-linear interpolant of coefficients (up = 1,
    # shift = TAU), or a frame upsampled up times (samples at multiples of 1 / up px).
    if cubic:
        return image_cubic(im, x, y)
    return image_at(im, up * x - shift, up * y - shift)


def _node(g, x, y, sx, sy):
    # The node of grid g (sx, sy times the frame size) whose cell holds position (x, y).
    return (u4(min(max(i4((x + f4(0.5)) * sx), 0), g.shape[1] - 1)),
            u4(min(max(i4((y + f4(0.5)) * sy), 0), g.shape[0] - 1)))


def _flow_nn(f, x, y, sx, sy):
    # Channels 0-2 of the flow at the grid node nearest to (x, y). Inside the fixed-point
    # iteration: across a motion discontinuity bilinear interpolation blends two motions into
    # one that no surface has, and the points on a moving edge would find no consistent path.
    gx, gy = node(f, x, y, sx, sy)
    return f[gy, gx, 0], f[gy, gx, 1], f[gy, gx, 2]


def _fixed_point(f, xf, yf, u, v, q, d, iters, sx, sy):
    # Solve z = x - d F(z) by fixed-point steps, starting from the flow (u, v) (visibility q)
    # at the previous solution. Returns z, the flow and visibility there, and the squared size
    # of the last step (the residual).
    zx = xf - d * u
    zy = yf - d * v
    r = f4(0.0)
    for _ in range(iters):
        u, v, q = flow_nn(f, zx, zy, sx, sy)
        nx = xf - d * u
        ny = yf - d * v
        r = (nx - zx) * (nx - zx) + (ny - zy) * (ny - zy)
        zx = nx
        zy = ny
    return zx, zy, u, v, q, r


def _pixel(ia, ib, fab, fba, hard, sx, sy, na, nb, nsx, nsy, times, weights, targets, levels,
           ltimes, lweights, ltargets, lcount, acc, y, x, iters, inv_tau2, shift, cubic, up):
    xf = f4(x)
    yf = f4(y)
    ua, va, qa = flow_at(fab, xf, yf, sx, sy)
    ub, vb, qb = flow_at(fba, xf, yf, sx, sy)
    gx, gy = node(hard, xf, yf, sx, sy)
    if hard[gy, gx] == 0:
        # Smooth flow seen by both frames: the fixed point to second order,
        # z = x - s F + s^2 J F, and a plain cross-fade.
        ca, da = curv_at(fab, xf, yf, sx, sy)
        cb, db = curv_at(fba, xf, yf, sx, sy)
        lev = levels[y, x // SEGMENT]  # the sample set of this piece of the row
        for k in range(lcount[lev]):
            s = ltimes[lev, k]
            t = f4(1.0) - s
            # Each sub-frame from the nearer frame: half the work and half the warp.
            if s < f4(0.5):
                r, g, b = sample(ia, xf - s * ua + s * s * ca, yf - s * va + s * s * da,
                                 shift, cubic, up)
            else:
                r, g, b = sample(ib, xf - t * ub + t * t * cb, yf - t * vb + t * t * db,
                                 shift, cubic, up)
            c = lweights[lev, k]
            j = ltargets[lev, k]
            acc[j, y, x, 0] += c * r
            acc[j, y, x, 1] += c * g
            acc[j, y, x, 2] += c * b
        return
    # Near motion boundaries and occlusions: iterate, starting each sample from the
    # previous solution (s = 0, resp. 1, has the solution x itself).
    for k in range(times.shape[0]):
        s = times[k]
        t = f4(1.0) - s
        # Frame a: z = x - s F_ab(z); frame b: y = x - (1 - s) F_ba(y).
        # (na, nb: the flows the iteration reads, the grid's or finer ones, at scale nsx, nsy.)
        za_x, za_y, ua, va, qa, ra = fixed_point(na, xf, yf, ua, va, qa, s, iters, nsx, nsy)
        zb_x, zb_y, ub, vb, qb, rb = fixed_point(nb, xf, yf, ub, vb, qb, t, iters, nsx, nsy)
        # A candidate seen in both frames (q ~ 1) is in front of one that only its own frame
        # sees (q ~ 0, being covered or revealed): the latter counts only when the other
        # side has no consistent path (large residual, g ~ 0).
        ra = ra * ra * inv_tau2 * inv_tau2
        rb = rb * rb * inv_tau2 * inv_tau2
        if ra < AGREE_R and rb < AGREE_R and qa > AGREE_Q and qb > AGREE_Q:
            # Both sides find a consistent path to a point seen in both frames: they agree,
            # so, as on the smooth path, the nearer frame alone (half the samples).
            if s < f4(0.5):
                r, g, b = sample(ia, za_x, za_y, shift, cubic, up)
            else:
                r, g, b = sample(ib, zb_x, zb_y, shift, cubic, up)
            c = weights[k]
        else:
            wa = t * (EPS32 + (f4(1.0) - EPS32) * qa) / (f4(1.0) + ra)
            wb = s * (EPS32 + (f4(1.0) - EPS32) * qb) / (f4(1.0) + rb)
            ws = wa + wb
            if ws < f4(1e-6):
                wa = t
                wb = s
                ws = f4(1.0)
            ar, ag, ab_ = sample(ia, za_x, za_y, shift, cubic, up)
            br, bg, bb = sample(ib, zb_x, zb_y, shift, cubic, up)
            r, g, b = wa * ar + wb * br, wa * ag + wb * bg, wa * ab_ + wb * bb
            c = weights[k] / ws
        j = targets[k]
        acc[j, y, x, 0] += c * r
        acc[j, y, x, 1] += c * g
        acc[j, y, x, 2] += c * b


_inline = numba.njit(fastmath=True, inline="always", cache=True)
cell = _inline(_cell)
lerp = _inline(_lerp)
flow_at = _inline(_flow_at)
curv_at = _inline(_curv_at)
image_at = _inline(_image_at)
keys = _inline(_keys)
cubic4 = _inline(_cubic4)
image_cubic = _inline(_image_cubic)
sample = _inline(_sample)
node = _inline(_node)
flow_nn = _inline(_flow_nn)
fixed_point = _inline(_fixed_point)
pixel = _inline(_pixel)


def _flow_row(f, yf, sx, sy, tmp, out):
    # Flow channels (dx, dy) and J F of the grid f, bilinearly at every pixel of the
    # full-resolution row yf (as flow_at / curv_at) into out[0:4]: blend the two grid rows
    # once into tmp[0:4] (channel by channel), then along x.
    gh = f.shape[0]
    gw = f.shape[1]
    w = out.shape[1]
    gy = min(max((yf + f4(0.5)) * sy - f4(0.5), f4(0.0)), f4(gh - 1))
    y0 = i4(gy)
    ay = gy - f4(y0)
    r0 = f[y0]
    r1 = f[min(y0 + 1, gh - 1)]
    for i in range(gw):  # vectorised
        tmp[0, i] = r0[i, 0] + ay * (r1[i, 0] - r0[i, 0])
        tmp[1, i] = r0[i, 1] + ay * (r1[i, 1] - r0[i, 1])
        tmp[2, i] = r0[i, 3] + ay * (r1[i, 3] - r0[i, 3])
        tmp[3, i] = r0[i, 4] + ay * (r1[i, 4] - r0[i, 4])
    if w == 2 * gw and sx == f4(0.5):
        # A half-size grid (the default from 720 rows): pixels 2k + 1 and 2k + 2 lie 1/4 and
        # 3/4 of the way from node k to k + 1, the ends on the end nodes; the same values as
        # below, without a gather (~4x faster).
        for c in range(4):
            t = tmp[c]
            o = out[c]
            o[0] = t[0]
            o[w - 1] = t[gw - 1]
            for k in range(gw - 1):
                a = t[k]
                d = t[k + 1] - a
                o[2 * k + 1] = a + f4(0.25) * d
                o[2 * k + 2] = a + f4(0.75) * d
        return
    for x in range(w):
        g = min(max((f4(x) + f4(0.5)) * sx - f4(0.5), f4(0.0)), f4(gw - 1))
        x0 = u4(g)  # unsigned, as in cell()
        x1 = u4(min(i4(g) + 1, gw - 1))
        ax = g - f4(x0)
        for c in range(4):
            out[c, x] = tmp[c, x0] + ax * (tmp[c, x1] - tmp[c, x0])


flow_row = _inline(_flow_row)


def _keys_row(t, out):
    # keys() of every fraction t[x] into out[0:4, x] (vectorised).
    for x in range(t.shape[0]):
        out[0, x], out[1, x], out[2, x], out[3, x] = keys(t[x])


keys_row = _inline(_keys_row)


def _kernel(ia, ib, fab, fba, hard, sx, sy, na, nb, nsx, nsy, times, weights, targets, levels,
            ltimes, lweights, ltargets, lcount, acc, iters, inv_tau2, shift, cubic, up):
    h = acc.shape[1]  # the output; the frames are (up (h - 1) + 1, up (w - 1) + 1)
    w = acc.shape[2]
    ih = ia.shape[0]
    iw = ia.shape[1]
    nseg = levels.shape[1]
    tiny = h < 2 or w < 2  # the smooth path's cells need two pixels each way
    sh = f4(0.0) if cubic else shift  # cubic samples the frames themselves
    upf = f4(up)
    stride = np.uint64(3 * iw)  # floats per frame row
    for y in prange(h):
        # Row by row, sample by sample. The smooth path is split in two passes over the row:
        # positions, cells and fractions (arithmetic only, vectorised), then the gathers
        # (scalar); fused, neither vectorises and it runs ~1.5x slower.
        ra = np.empty((4, w), np.float32)  # F_ab along the row: dx, dy, J F
        rb = np.empty((4, w), np.float32)
        xi = np.empty(w, np.int32)
        yi = np.empty(w, np.int32)
        ax = np.empty(w, np.float32)
        ay = np.empty(w, np.float32)
        kx = np.empty((4, w), np.float32)  # cubic: Keys weights along x and y
        ky = np.empty((4, w), np.float32)
        tmp = np.empty((4, fab.shape[1]), np.float32)  # two grid rows blended
        is_hard = np.empty(w, np.uint8)
        yf = f4(y)
        any_hard = False
        for x in range(w):
            gx, gy = node(hard, f4(x), yf, sx, sy)
            is_hard[x] = 1 if tiny else hard[gy, gx]
            any_hard |= is_hard[x] != 0
        flow_row(fab, yf, sx, sy, tmp, ra)
        flow_row(fba, yf, sx, sy, tmp, rb)
        # Run by run of pieces that share a sample set (most rows are one run), sample by
        # sample.
        j1 = nseg if tiny else 0
        while j1 < nseg:
            j0 = j1
            lev = levels[y, j0]
            while j1 < nseg and levels[y, j1] == lev:
                j1 += 1
            x_lo = j0 * SEGMENT
            x_hi = min(j1 * SEGMENT, w)
            for k in range(lcount[lev]):
                s = ltimes[lev, k]
                wk = lweights[lev, k]
                row = acc[ltargets[lev, k], y]
                if s < f4(0.5):
                    im, fr, m = ia, ra, s
                else:
                    im, fr, m = ib, rb, f4(1.0) - s
                # Views from x_lo, so that the loops start at 0: from x_lo LLVM does not
                # vectorise the first and vectorises the gathers with AVX-512 gathers, 2x
                # slower than scalar loads.
                u, v, c, d = fr[0, x_lo:], fr[1, x_lo:], fr[2, x_lo:], fr[3, x_lo:]
                xs, ys, axs, ays = xi[x_lo:], yi[x_lo:], ax[x_lo:], ay[x_lo:]
                mm = m * m
                for i in range(x_hi - x_lo):
                    # The cell (x0, x0 + 1) x (y0, y0 + 1) of the frame, fractions in [0, 1]:
                    # at the last column the position is iw - 1 = (iw - 2) + 1, the same value
                    # as image_at's clamp.
                    px = min(max(upf * (f4(x_lo + i) - m * u[i] + mm * c[i]) - sh, f4(0.0)),
                             f4(iw - 1))
                    py = min(max(upf * (yf - m * v[i] + mm * d[i]) - sh, f4(0.0)),
                             f4(ih - 1))
                    x0 = min(i4(px), iw - 2)
                    y0 = min(i4(py), ih - 2)
                    xs[i] = x0
                    ys[i] = y0
                    axs[i] = px - f4(x0)
                    ays[i] = py - f4(y0)
                sk, rs = is_hard[x_lo:], row[x_lo:]
                if cubic:
                    # Keys weights (vectorised), then the 4x4 gathers; cells as above, so at
                    # the last column the fraction is 1 and the weights pick column w - 1.
                    kxs, kys = kx[:, x_lo:x_hi], ky[:, x_lo:x_hi]
                    keys_row(axs[:x_hi - x_lo], kxs)
                    keys_row(ays[:x_hi - x_lo], kys)
                    for i in range(x_hi - x_lo):
                        if sk[i]:
                            continue
                        x1 = xs[i]
                        y1 = ys[i]
                        # Unsigned, as in cell().
                        x0, x2, x3 = u4(max(x1 - 1, 0)), u4(x1 + 1), u4(min(x1 + 2, iw - 1))
                        y0, y2, y3 = u4(max(y1 - 1, 0)), u4(y1 + 1), u4(min(y1 + 2, ih - 1))
                        ux1 = u4(x1)
                        uy1 = u4(y1)
                        a0, a1, a2, a3 = kxs[0, i], kxs[1, i], kxs[2, i], kxs[3, i]
                        for ch in range(3):
                            rs[i, ch] += wk * (
                                kys[0, i] * cubic4(im, y0, x0, ux1, x2, x3, a0, a1, a2, a3, ch)
                                + kys[1, i] * cubic4(im, uy1, x0, ux1, x2, x3, a0, a1, a2, a3,
                                                     ch)
                                + kys[2, i] * cubic4(im, y2, x0, ux1, x2, x3, a0, a1, a2, a3, ch)
                                + kys[3, i] * cubic4(im, y3, x0, ux1, x2, x3, a0, a1, a2, a3,
                                                     ch))
                    continue
                flat = im.reshape(-1)  # read at unsigned offsets, as in cell()
                for i in range(x_hi - x_lo):
                    if sk[i]:
                        continue
                    o = np.uint64(ys[i]) * stride + np.uint64(3) * np.uint64(xs[i])
                    a = axs[i]
                    b = ays[i]
                    for ch in range(np.uint64(3)):
                        p00 = flat[o + ch]
                        p01 = flat[o + np.uint64(3) + ch]
                        p10 = flat[o + stride + ch]
                        p11 = flat[o + stride + np.uint64(3) + ch]
                        top = p00 + a * (p01 - p00)
                        bot = p10 + a * (p11 - p10)
                        rs[i, ch] += wk * (top + b * (bot - top))
        if any_hard:
            for x in range(w):
                if is_hard[x]:
                    pixel(ia, ib, fab, fba, hard, sx, sy, na, nb, nsx, nsy, times, weights,
                          targets, levels, ltimes, lweights, ltargets, lcount, acc, y, x, iters,
                          inv_tau2, shift, cubic, up)


_cpu_kernel = numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)(_kernel)


def device_pixel(jit_device):
    """The per-pixel function compiled with ``jit_device`` (``cuda.jit(device=True)``)."""
    g = dict(globals())
    for name, fn in (("cell", _cell), ("lerp", _lerp), ("flow_at", _flow_at),
                     ("curv_at", _curv_at), ("image_at", _image_at), ("keys", _keys),
                     ("cubic4", _cubic4), ("image_cubic", _image_cubic), ("sample", _sample),
                     ("node", _node), ("flow_nn", _flow_nn), ("fixed_point", _fixed_point),
                     ("pixel", _pixel)):
        g[name] = jit_device(types.FunctionType(fn.__code__, g, name))
    return g["pixel"]


def _check(ia, ib, fab, fba, times, weights, targets, acc, hard, cubic=False, up=1,
           smooth=None, fine=None):
    if ia.shape != ib.shape or ia.ndim != 3 or ia.shape[2] != 3:
        raise ValueError(f"frames: expected two (H, W, 3) arrays, got {ia.shape} and {ib.shape}")
    if fab.shape != fba.shape or fab.ndim != 3 or fab.shape[2] not in (2, 3, 5):
        raise ValueError(f"flows: expected two (h, w, 2|3|5) arrays, got {fab.shape} and {fba.shape}")
    if hard is not None and hard.shape != fab.shape[:2]:
        raise ValueError(f"hard: expected shape {fab.shape[:2]}, got {hard.shape}")
    if fine is not None:
        want = tuple(acc.shape[1:3])
        if len(fine) != 2 or any(np.ndim(f) != 3 or np.shape(f)[:2] != want
                                 or np.shape(f)[2] not in (2, 3) for f in fine):
            raise ValueError(f"fine: expected two {want + (3,)} flows, got "
                             f"{[np.shape(f) for f in fine]}")
    sets = [(times, weights, targets)] + ([] if smooth is None else list(smooth[1]))
    for t, wt, tg in sets:
        if not (len(t) == len(wt) == len(tg)):
            raise ValueError("times, weights and targets must have the same length")
        if len(tg) and (np.min(tg) < 0 or np.max(tg) >= acc.shape[0]):
            raise ValueError("targets: index outside acc")
    if up not in (1, 2) or (cubic and up != 1):
        raise ValueError(f"up: expected 1 or 2 (1 with cubic), got {up}")
    if acc.ndim != 4 or acc.shape[3] != 3 or tuple(up * (n - 1) + 1 for n in acc.shape[1:3]) \
            != ia.shape[:2]:
        raise ValueError(f"acc: expected (n, H, W, 3) with frames of (up (H - 1) + 1, "
                         f"up (W - 1) + 1), got {acc.shape} and frames {ia.shape}, up = {up}")
    if smooth is not None:
        levels = np.asarray(smooth[0])
        want = (acc.shape[1], -(-acc.shape[2] // SEGMENT))
        if levels.shape != want:
            raise ValueError(f"smooth levels: expected shape {want}, got {levels.shape}")
        if levels.size and (levels.min() < 0 or levels.max() >= len(smooth[1])):
            raise ValueError(f"smooth levels: expected indices of the {len(smooth[1])} sets")


def _channels(f: np.ndarray, n: int) -> np.ndarray:
    # A flow with its first n channels; missing ones: visibility 1 (seen in the other frame)
    # and second-order term 0.
    f = np.asarray(f, dtype=np.float32)
    if f.shape[2] < n:
        extra = np.zeros(f.shape[:2] + (n - f.shape[2],), np.float32)
        if f.shape[2] == 2:
            extra[..., 0] = 1.0
        f = np.concatenate([f, extra], axis=2)
    return np.ascontiguousarray(f)


def _in_time_order(times, weights, targets):
    order = np.argsort(np.asarray(times, np.float64), kind="stable")
    return (np.ascontiguousarray(np.asarray(times)[order], np.float32),
            np.ascontiguousarray(np.asarray(weights)[order], np.float32),
            np.ascontiguousarray(np.asarray(targets)[order], np.int64))


def _prepare(ia, ib, fab, fba, times, weights, targets, hard, smooth, shape, fine=None):
    """The kernels' arguments: contiguous float32 frames, 5-channel flows, the flows the
    fixed point reads and their scale (``fine`` or the grid's), samples in time order, the hard
    mask (all 1 if None), and the smooth path's sets as padded tables (levels, times, weights,
    targets, counts)."""
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    hard = (np.ones(fab.shape[:2], np.uint8) if hard is None
            else np.ascontiguousarray(hard, dtype=np.uint8))
    main = _in_time_order(times, weights, targets)
    if smooth is None:
        levels = np.zeros((shape[0], -(-shape[1] // SEGMENT)), np.int32)
        sets = [main]
    else:
        levels = np.ascontiguousarray(smooth[0], np.int32)
        sets = [_in_time_order(*st) for st in smooth[1]]
    m = max(1, max(len(st[0]) for st in sets))
    tables = (np.zeros((len(sets), m), np.float32), np.zeros((len(sets), m), np.float32),
              np.zeros((len(sets), m), np.int64))
    for i, st in enumerate(sets):
        for table, values in zip(tables, st):
            table[i, :len(values)] = values
    counts = np.array([len(st[0]) for st in sets], np.int32)
    fab, fba = _channels(fab, 5), _channels(fba, 5)
    if fine is None:
        nn = (fab, fba, np.float32(fab.shape[1] / shape[1]), np.float32(fab.shape[0] / shape[0]))
    else:
        nn = (*(_channels(f, 3) for f in fine), np.float32(1.0), np.float32(1.0))
    return (f32(ia), f32(ib), fab, fba, *nn, *main, hard, levels, *tables, counts)


def warpsum_cpu(ia, ib, fab, fba, times, weights, targets, acc, *, hard=None, smooth=None,
                fine=None, iters: int = 2, tau: float = 0.5, shift: float = 0.0,
                cubic: bool = False, up: int = 1) -> np.ndarray:
    """numba CPU version of :func:`warpsum_reference` (same parameters); updates ``acc`` in place."""
    _check(ia, ib, fab, fba, times, weights, targets, acc, hard, cubic, up, smooth, fine)
    ia, ib, fab, fba, na, nb, nsx, nsy, times, weights, targets, hard, levels, lt, lw, lg, lc = \
        _prepare(ia, ib, fab, fba, times, weights, targets, hard, smooth, acc.shape[1:3], fine)
    sx = fab.shape[1] / acc.shape[2]
    sy = fab.shape[0] / acc.shape[1]
    _cpu_kernel(ia, ib, fab, fba, hard, np.float32(sx), np.float32(sy), na, nb, nsx, nsy, times,
                weights, targets, levels, lt, lw, lg, lc, acc, iters,
                np.float32(1.0 / (tau * tau)), np.float32(shift), bool(cubic), int(up))
    return acc


def _np_cell(im, x, y):
    # Positions clamped to the image: the sample left of / above them and the fractions.
    h, w = im.shape[:2]
    x = np.clip(x, 0.0, w - 1.0)
    y = np.clip(y, 0.0, h - 1.0)
    x0 = x.astype(np.int64)
    y0 = y.astype(np.int64)
    return x0, y0, (x - x0)[..., None], (y - y0)[..., None]


def _np_sample(im, x, y):
    # Vectorised bilinear sampling with clamped borders (the NumPy twin of image_at / flow_at).
    h, w = im.shape[:2]
    x0, y0, ax, ay = _np_cell(im, x, y)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    return ((1 - ay) * ((1 - ax) * im[y0, x0] + ax * im[y0, x1])
            + ay * ((1 - ax) * im[y1, x0] + ax * im[y1, x1]))


def _np_keys(t):
    u = 1 - t
    w0 = -0.5 * t * u * u
    w3 = -0.5 * t * t * u
    w1 = (1.5 * t - 2.5) * t * t + 1
    return w0, w1, 1 - w0 - w1 - w3, w3


def _np_sample_cubic(im, x, y):
    # Vectorised Keys cubic sampling with clamped borders (the NumPy twin of image_cubic).
    h, w = im.shape[:2]
    x1, y1, fx, fy = _np_cell(im, x, y)
    xs = [np.clip(x1 + k, 0, w - 1) for k in (-1, 0, 1, 2)]
    ys = [np.clip(y1 + k, 0, h - 1) for k in (-1, 0, 1, 2)]
    return sum(b * sum(a * im[yr, xc] for a, xc in zip(_np_keys(fx), xs))
               for b, yr in zip(_np_keys(fy), ys))


def warpsum_reference(ia, ib, fab, fba, times, weights, targets, acc, *, hard=None,
                      smooth=None, fine=None, iters: int = 2, tau: float = 0.5,
                      shift: float = 0.0, cubic: bool = False, up: int = 1) -> np.ndarray:
    """Accumulate flow-warped, occlusion-weighted sub-frames of the pair (a, b) into ``acc``.

    Parameters
    ----------
    ia, ib : numpy.ndarray
        float32 (H, W, 3) linear frames at times 0 and 1 (or what `shift`, `cubic` and `up`
        say they are).
    fab, fba : numpy.ndarray
        float32 (h, w, C) flows a->b and b->a at the full or a reduced resolution, sampled
        bilinearly at ``(x + 0.5) * w / W - 0.5`` (inside the fixed-point iteration at the
        nearest node, ``floor((x + 0.5) * w / W)``). Channels: the displacement (dx, dy) in
        full-resolution pixels; optionally the visibility in [0, 1] of each point in the other
        frame (forward-backward consistency; default 1); optionally the second-order term
        ``J F`` (J the Jacobian of the flow in full-resolution pixels; default 0).
    times : array_like of float
        Sub-frame times in [0, 1] (0 is frame a).
    weights : array_like of float
        Weight of each sub-frame in its accumulator (the shutter weight times the time step).
    targets : array_like of int
        Index into ``acc`` of each sub-frame.
    acc : numpy.ndarray
        float32 (n, H, W, 3) accumulators, updated in place.
    hard : numpy.ndarray, optional
        uint8 (h, w) on the flow grid: 1 near motion boundaries and occlusions, where the fixed
        point is iterated with occlusion weights; 0 where the flow is smooth and seen by both
        frames, where the second-order closed form and the nearer frame are used. Default:
        iterate everywhere.
    smooth : tuple (levels, sets), optional
        Sample sets for the smooth path, where slower motion needs fewer samples: ``sets``, a
        list of (times, weights, targets) like the three above; ``levels``, int (H, ceil(W /
        SEGMENT)): the set that the smooth pixels of each :data:`SEGMENT`-pixel piece of each
        row use. The iterated path always uses `times`, `weights` and `targets`. Default: they
        serve the smooth path too.
    fine : tuple of numpy.ndarray, optional
        ``(F_ab, F_ba)`` at the output size, float32 (H, W, 3): (dx, dy, visibility) (or
        (H, W, 2), visibility 1). The fixed-point iteration reads these at the pixel nearest
        to each position instead of the grid's nearest node: finer motion boundaries where
        the grid is coarse. Everything else still reads ``fab``/``fba``. Default: the grid.
    iters : int
        Fixed-point iterations per sample.
    tau : float
        Fixed-point residual, in pixels, at which a side's weight halves.
    shift : float
        Frames are sampled at ``position - shift``: 0 for plain bilinear interpolation of the
        frames, :data:`blursynth_ext.interp.TAU` when they are shifted-linear coefficients.
    cubic : bool
        Sample ``ia``/``ib`` (then the linear frames themselves; `shift` is not used) with
        Keys' cubic convolution (a = -1/2, 4x4 samples) instead of bilinearly.
    up : {1, 2}
        ``ia``/``ib`` hold the frames upsampled ``up`` times, ``(up (H - 1) + 1, up (W - 1)
        + 1, 3)`` samples at multiples of ``1 / up`` px (:func:`blursynth_ext.interp.upsample2`),
        and are sampled bilinearly at ``up x`` (then ``shift = 0``); ``acc`` keeps the
        frame size.

    Returns
    -------
    numpy.ndarray
        ``acc``.

    Notes
    -----
    With linear motion inside the interval a point at ``z`` in frame a is at ``z + s F_ab(z)`` at
    time s, so the point seen at x came from the solution of ``z = x - s F_ab(z)``; symmetric for
    b. Where the flow is smooth, ``F(z) ~ F(x) + J (z - x)`` gives ``z ~ x - s F + s^2 J F``,
    and the sub-frame is taken from the nearer frame alone (both agree there; this halves the
    work and the warp distance). Elsewhere each side's weight is its temporal proximity, ``(1 - s)`` or ``s`` (a linear
    cross-fade where both agree), times ``g(r) = 1 / (1 + (r / tau)^4)`` of its last fixed-point
    step ``r``, which is large where no consistent path exists (x is occluded in that frame),
    times ``eps + (1 - eps) q`` with ``q`` the forward-backward visibility of the candidate
    point in the other frame. Where both sides find a consistent path to different surfaces
    (behind a moving object: the object in a and the revealed background in b) the surface seen
    in both frames is in front; the one seen only in its own frame wins only where the other
    side has no path. Where both sides agree (``g`` and ``q`` above 0.9 on each) the sample is
    the nearer frame's, as on the smooth path. Samples are processed in time order and each
    starts from the previous solution.

    References
    ----------
    S. Baker, D. Scharstein, J. P. Lewis, S. Roth, M. J. Black, R. Szeliski, "A database and
    evaluation methodology for optical flow", IJCV 92(1), 2011 (occlusion reasoning of their
    frame interpolation, sec. 3.4).
    """
    _check(ia, ib, fab, fba, times, weights, targets, acc, hard, cubic, up, smooth, fine)
    ia, ib, fab, fba, na, nb, nsx, nsy, times, weights, targets, hard, levels, lt, lw, lg, lc = \
        _prepare(ia, ib, fab, fba, times, weights, targets, hard, smooth, acc.shape[1:3], fine)
    h, w = acc.shape[1:3]
    sx = fab.shape[1] / w
    sy = fab.shape[0] / h
    yy, xx = np.mgrid[:h, :w].astype(np.float32)

    def flow_at(f, x, y):
        return _np_sample(f, (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5)

    def flow_nn(f, x, y):
        gx = np.clip(((x + 0.5) * nsx).astype(np.int64), 0, f.shape[1] - 1)
        gy = np.clip(((y + 0.5) * nsy).astype(np.int64), 0, f.shape[0] - 1)
        return f[gy, gx]

    def sample(im, x, y):
        return (_np_sample_cubic(im, x, y) if cubic
                else _np_sample(im, up * x - shift, up * y - shift))

    def fixed_point(f, f_prev, d):
        # z = x - d F(z) from the previous solution's flow, F at the nearest grid node; the
        # squared last step too.
        z = np.stack([xx - d * f_prev[..., 0], yy - d * f_prev[..., 1]], -1)
        r = np.zeros((h, w), np.float32)
        for _ in range(iters):
            f_prev = flow_nn(f, z[..., 0], z[..., 1])
            n = np.stack([xx - d * f_prev[..., 0], yy - d * f_prev[..., 1]], -1)
            r = ((n - z) ** 2).sum(-1)
            z = n
        return z, f_prev, r

    gx = np.clip(((xx + 0.5) * sx).astype(np.int64), 0, hard.shape[1] - 1)
    gy = np.clip(((yy + 0.5) * sy).astype(np.int64), 0, hard.shape[0] - 1)
    is_hard = (hard[gy, gx] != 0)[..., None]
    f0a = flow_at(fab, xx, yy)
    f0b = flow_at(fba, xx, yy)
    # Smooth path: second-order closed form, from the nearer frame, with each piece's set.
    level = np.repeat(levels, SEGMENT, axis=1)[:, :w]
    for lev in range(len(lc)):
        mask = ((level == lev)[..., None] & ~is_hard).astype(np.float32)
        for k in range(lc[lev]):
            s, m = float(lt[lev, k]), lw[lev, k] * mask
            t = 1.0 - s
            if s < 0.5:
                smooth = sample(ia, xx - s * f0a[..., 0] + s * s * f0a[..., 3],
                                yy - s * f0a[..., 1] + s * s * f0a[..., 4])
            else:
                smooth = sample(ib, xx - t * f0b[..., 0] + t * t * f0b[..., 3],
                                yy - t * f0b[..., 1] + t * t * f0b[..., 4])
            acc[lg[lev, k]] += (m * smooth).astype(np.float32)
    # Hard path: fixed-point iteration with occlusion weights.
    fa, fb = f0a, f0b
    inv_tau2 = 1.0 / (tau * tau)
    for k in range(len(times)):
        s = float(times[k])
        t = 1.0 - s
        za, fa, ra = fixed_point(na, fa, s)
        zb, fb, rb = fixed_point(nb, fb, t)
        ra, rb = (ra * inv_tau2) ** 2, (rb * inv_tau2) ** 2
        wa = t * (EPS + (1 - EPS) * fa[..., 2]) / (1.0 + ra)
        wb = s * (EPS + (1 - EPS) * fb[..., 2]) / (1.0 + rb)
        ws = wa + wb
        low = ws < 1e-6
        wa = np.where(low, t, wa)
        wb = np.where(low, s, wb)
        ws = np.where(low, 1.0, ws)
        ca, cb = sample(ia, za[..., 0], za[..., 1]), sample(ib, zb[..., 0], zb[..., 1])
        c = (wa[..., None] * ca + wb[..., None] * cb) / ws[..., None]
        agree = (ra < AGREE_R) & (rb < AGREE_R) & (fa[..., 2] > AGREE_Q) & (fb[..., 2] > AGREE_Q)
        c = np.where(agree[..., None], ca if s < 0.5 else cb, c)
        acc[targets[k]] += (weights[k] * np.where(is_hard, c, 0.0)).astype(np.float32)
    return acc
