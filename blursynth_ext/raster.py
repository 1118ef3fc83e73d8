"""Compute kernels of camera-shake PSFs (:mod:`blursynth.psf`): rasterisation, and the two
trajectory models that are sequential loops (Matern-3/2 state space, Boracchi-Foi walk).

Rasterisation turns a trajectory, sampled at equal time steps, into a kernel:

1. Positions are multiplied by ``scale`` (pixels per trajectory unit).
2. Each sample carries a mass: its shutter weight ``rho`` times the time it stands for
   (trapezoid rule: half a step at both ends), i.e. the dwell time.
3. If consecutive samples are more than :data:`MAX_STEP` pixels apart the path is refined by
   linear interpolation (``m`` sub-steps per step, rho interpolated too), so a sparse
   trajectory still rasterises as a continuous path, not dots.
4. The path is shifted so its mass-weighted centroid lands on the centre pixel
   ``(size - 1) / 2``, and, only if it then leaves the support, shrunk about the centroid until
   it fits (never rejected, never looped).
5. Every point is splatted bilinearly onto its four neighbouring pixels. Bilinear splatting
   keeps the first moment (``(1 - f) x0 + f (x0 + 1) = x``), so the kernel's centroid is the
   path's centroid: exactly the centre pixel.
6. The kernel is normalised to sum 1.

Implementations: :func:`rasterize_reference` (NumPy, one kernel, for tests) and
:func:`rasterize_cpu` (numba, a batch in parallel; a kernel's bits do not depend on the batch
it was computed in). :func:`splat_reference` / :func:`splat_cpu` are step 5 alone, for moving
existing kernels (:func:`blursynth.kernel_bank.load_bank` re-centring). :func:`matern32_walk` and
:func:`boracchi_walk` draw trajectories from given normals and uniforms; their ``.py_func``
(plain Python) is the reference.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

__all__ = ["MAX_STEP", "rasterize_reference", "rasterize_cpu", "interpolate_path",
           "splat_reference", "splat_cpu", "matern32_walk", "boracchi_walk"]

#: Largest distance in pixels between consecutive rasterised points: sparser paths are
#: refined. At 1/4 px the bilinear splat of a straight path has no visible ripple.
MAX_STEP = 0.25


# -- numba: one kernel ----------------------------------------------------------------------------

def _refine(traj, rho, m):
    # The path with m points per step (linear interpolation of positions and shutter weights),
    # and each point's mass: its weight times its time cell, half a cell at either end.
    n = traj.shape[0]
    nf = (n - 1) * m + 1
    xs = np.empty(nf)
    ys = np.empty(nf)
    cs = np.empty(nf)
    j = 0
    for i in range(n - 1):
        dx = traj[i + 1, 0] - traj[i, 0]
        dy = traj[i + 1, 1] - traj[i, 1]
        dr = rho[i + 1] - rho[i]
        for k in range(m):
            a = k / m
            xs[j] = traj[i, 0] + a * dx
            ys[j] = traj[i, 1] + a * dy
            cs[j] = rho[i] + a * dr
            j += 1
    xs[j] = traj[n - 1, 0]
    ys[j] = traj[n - 1, 1]
    cs[j] = rho[n - 1]
    cs[0] *= 0.5
    cs[nf - 1] *= 0.5
    return xs, ys, cs


def _moments(xs, ys, cs):
    # Mass-weighted centroid, and the largest per-axis distance from it of a point with mass.
    w = 0.0
    sx = 0.0
    sy = 0.0
    x0 = np.inf
    x1 = -np.inf
    y0 = np.inf
    y1 = -np.inf
    for j in range(xs.shape[0]):
        c = cs[j]
        if c > 0.0:
            w += c
            sx += c * xs[j]
            sy += c * ys[j]
            x0 = min(x0, xs[j])
            x1 = max(x1, xs[j])
            y0 = min(y0, ys[j])
            y1 = max(y1, ys[j])
    cx = sx / w
    cy = sy / w
    return cx, cy, max(x1 - cx, cx - x0, y1 - cy, cy - y0)


def _splat_point(acc, x, y, c):
    # Bilinear splat of mass c at (x, y), clamped to the support; the cell's left/top pixel is
    # at most size - 2, so x = size - 1 puts its whole mass on the last pixel.
    size = acc.shape[0]
    top = size - 1.0
    x = min(max(x, 0.0), top)
    y = min(max(y, 0.0), top)
    x0 = min(int(x), size - 2)
    y0 = min(int(y), size - 2)
    fx = min(max(x - x0, 0.0), 1.0)
    fy = min(max(y - y0, 0.0), 1.0)
    acc[y0, x0] += c * (1.0 - fx) * (1.0 - fy)
    acc[y0, x0 + 1] += c * fx * (1.0 - fy)
    acc[y0 + 1, x0] += c * (1.0 - fx) * fy
    acc[y0 + 1, x0 + 1] += c * fx * fy


def _raster_one(traj, rho, scale, acc):
    half = (acc.shape[0] - 1) / 2.0
    # Coarse pass: how much the path must shrink to fit, hence how finely to refine it.
    xs, ys, cs = refine(traj, rho, 1)
    cx, cy, r = moments(xs, ys, cs)
    shrink = 1.0 if r * scale <= half else half / (r * scale)
    seg = 0.0
    for i in range(xs.shape[0] - 1):
        seg = max(seg, math.hypot(xs[i + 1] - xs[i], ys[i + 1] - ys[i]))
    m = max(1, int(math.ceil(seg * scale * shrink / MAX_STEP)))
    if m > 1:
        xs, ys, cs = refine(traj, rho, m)
        cx, cy, r = moments(xs, ys, cs)
        shrink = 1.0 if r * scale <= half else half / (r * scale)
    k = scale * shrink
    for j in range(xs.shape[0]):
        if cs[j] > 0.0:
            splat_point(acc, half + (xs[j] - cx) * k, half + (ys[j] - cy) * k, cs[j])
    return shrink


_inline = numba.njit(inline="always", cache=True)
refine = _inline(_refine)
moments = _inline(_moments)
splat_point = _inline(_splat_point)
raster_one = _inline(_raster_one)


def _raster_batch(trajs, rhos, scales, out, shrinks):
    size = out.shape[1]
    for b in prange(trajs.shape[0]):
        acc = np.zeros((size, size))
        shrinks[b] = raster_one(trajs[b], rhos[b], scales[b], acc)
        # Explicit loops: the same summation order in the serial and the parallel build, so a
        # kernel's bits do not depend on the batch it was made in.
        total = 0.0
        for y in range(size):
            for x in range(size):
                total += acc[y, x]
        for y in range(size):
            for x in range(size):
                out[b, y, x] = acc[y, x] / total


# Small batches (one kernel, e.g. drawn online in a data-loader worker) run serially: no thread
# start-up, and safe in forked processes (GNU OpenMP is not fork-safe).
_raster_parallel = numba.njit(parallel=True, nogil=True, cache=True)(_raster_batch)
_raster_serial = numba.njit(nogil=True, cache=True)(_raster_batch)
#: Batches at least this large are rasterised in parallel.
PARALLEL_MIN = 32


@numba.njit(nogil=True, cache=True)
def _splat_kernel(points, masses, acc):
    for i in range(points.shape[0]):
        if masses[i] != 0.0:
            splat_point(acc, points[i, 0], points[i, 1], masses[i])


# -- public ---------------------------------------------------------------------------------------

def rasterize_cpu(trajs: np.ndarray, rhos: np.ndarray, size: int,
                  scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numba version of :func:`rasterize_reference` for a batch (in parallel from
    :data:`PARALLEL_MIN` kernels).

    Parameters
    ----------
    trajs : numpy.ndarray
        float64 (B, N, 2) trajectories (x, y), N >= 1 samples at equal time steps.
    rhos : numpy.ndarray
        float64 (B, N) shutter weights >= 0, each row with a positive sum.
    size : int
        Odd kernel size >= 3.
    scales : numpy.ndarray
        float64 (B,) pixels per trajectory unit, >= 0.

    Returns
    -------
    kernels : numpy.ndarray
        float32 (B, size, size), each non-negative, summing to 1, centroid at the centre.
    shrinks : numpy.ndarray
        float64 (B,) factor in (0, 1] applied to fit each path in the support (1: none).
    """
    trajs = np.ascontiguousarray(trajs, np.float64)
    out = np.empty((trajs.shape[0], size, size), np.float32)
    shrinks = np.empty(trajs.shape[0], np.float64)
    fn = _raster_parallel if len(trajs) >= PARALLEL_MIN else _raster_serial
    fn(trajs, np.ascontiguousarray(rhos, np.float64), np.ascontiguousarray(scales, np.float64),
       out, shrinks)
    return out, shrinks


def rasterize_reference(traj: np.ndarray, rho: np.ndarray, size: int,
                        scale: float) -> tuple[np.ndarray, float]:
    """Rasterise one trajectory into a centred, normalised kernel (the steps in the module notes).

    Parameters
    ----------
    traj : numpy.ndarray
        float (N, 2) positions (x, y) in trajectory units, at equal time steps, N >= 1.
    rho : numpy.ndarray
        float (N,) shutter weight of each sample, >= 0 with a positive sum.
    size : int
        Odd kernel size >= 3.
    scale : float
        Pixels per trajectory unit, >= 0 (0 gives the identity kernel).

    Returns
    -------
    kernel : numpy.ndarray
        float64 (size, size), non-negative, summing to 1, mass-weighted centroid at pixel
        ``((size - 1) / 2, (size - 1) / 2)``.
    shrink : float
        Factor in (0, 1] applied so the centred path fits in the support (1: none).
    """
    traj = np.asarray(traj, np.float64)
    rho = np.asarray(rho, np.float64)
    half = (size - 1) / 2.0

    def refine(m):
        pr = interpolate_path(np.column_stack([traj, rho]), m)
        p, r = pr[:, :2], pr[:, 2].copy()
        r[0] *= 0.5
        r[-1] *= 0.5
        c = (r[:, None] * p).sum(0) / r.sum()
        radius = np.abs(p[r > 0] - c).max()
        return p, r, c, (1.0 if radius * scale <= half else half / (radius * scale))

    p, r, c, shrink = refine(1)
    seg = np.hypot(*np.diff(traj, axis=0).T).max() if len(traj) > 1 else 0.0
    m = max(1, int(np.ceil(seg * scale * shrink / MAX_STEP)))
    if m > 1:
        p, r, c, shrink = refine(m)
    q = half + (p - c) * (scale * shrink)
    acc = splat_reference(q[r > 0], r[r > 0], size)
    return acc / acc.sum(), shrink


def interpolate_path(values: np.ndarray, m: int) -> np.ndarray:
    """Refine samples at equal time steps by linear interpolation, ``m`` points per step.

    Parameters
    ----------
    values : numpy.ndarray
        (N, C) samples, N >= 1.
    m : int
        Points per step, >= 1.

    Returns
    -------
    numpy.ndarray
        float64 ((N - 1) m + 1, C): sample ``i`` is row ``i m``; rows in between lie on the
        straight line to the next sample, evenly spaced.
    """
    v = np.asarray(values, np.float64)
    if m <= 1 or len(v) < 2:
        return v.copy()
    a = np.arange(m) / m
    fine = v[:-1, None, :] + a[None, :, None] * np.diff(v, axis=0)[:, None, :]
    return np.concatenate([fine.reshape(-1, v.shape[1]), v[-1:]])


def splat_reference(points: np.ndarray, masses: np.ndarray, size: int) -> np.ndarray:
    """Bilinear splat of point masses onto a square grid (NumPy).

    Parameters
    ----------
    points : numpy.ndarray
        float (M, 2) positions (x, y) in pixels; clamped to ``[0, size - 1]``.
    masses : numpy.ndarray
        float (M,) masses.
    size : int
        Grid size >= 2.

    Returns
    -------
    numpy.ndarray
        float64 (size, size): each mass split over the four pixels around its point with
        bilinear weights, so the sum and (inside the grid) the centroid are kept exactly.
    """
    p = np.clip(np.asarray(points, np.float64), 0.0, size - 1.0)
    masses = np.asarray(masses, np.float64)
    i0 = np.minimum(p.astype(np.int64), size - 2)
    f = np.clip(p - i0, 0.0, 1.0)
    acc = np.zeros((size, size))
    for dy in (0, 1):
        for dx in (0, 1):
            w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
            np.add.at(acc, (i0[:, 1] + dy, i0[:, 0] + dx), masses * w)
    return acc


def splat_cpu(points: np.ndarray, masses: np.ndarray, size: int) -> np.ndarray:
    """numba version of :func:`splat_reference` (same parameters and result)."""
    acc = np.zeros((size, size))
    _splat_kernel(np.ascontiguousarray(points, np.float64),
                  np.ascontiguousarray(masses, np.float64), acc)
    return acc


@numba.njit(nogil=True, cache=True)
def matern32_walk(xi, length_scale, spread):
    """Exact samples of Matern-3/2 Gaussian processes on an even time grid, in O(N).

    The Matern-3/2 process ``f`` with covariance ``s^2 (1 + lam r) exp(-lam r)``,
    ``lam = sqrt(3) / l``, is the first coordinate of the Gauss-Markov state ``(f, f')`` of
    ``d(f, f') = F (f, f') dt + noise``, ``F = [[0, 1], [-lam^2, -2 lam]]``, with stationary
    covariance ``P = diag(s^2, lam^2 s^2)``. Over a step ``dt`` the state moves by
    ``A = exp(F dt) = a [[1 + u, dt], [-lam u, 1 - u]]`` (``a = exp(-u)``, ``u = lam dt``) plus
    noise of covariance ``Q = P - A P A^T`` (Sarkka & Solin, Applied Stochastic Differential
    Equations, 2019, sec. 12.3). Each sample is drawn from its exact conditional distribution
    given the earlier ones, which a Kalman filter on the state gives in O(1) per step (the
    state's posterior covariance is ``diag(0, p)`` once ``f`` is known): the joint distribution
    is exactly the process's, with one normal per sample and no N x N Cholesky factor.

    Parameters
    ----------
    xi : numpy.ndarray
        float64 (D, N) standard normals, N >= 2.
    length_scale : float
        ``l`` > 0, in units of the whole time span [0, 1].
    spread : float
        ``s`` > 0, the standard deviation of ``f``.

    Returns
    -------
    numpy.ndarray
        float64 (N, D): D independent processes at the times ``linspace(0, 1, N)``.
    """
    dims = xi.shape[0]
    n = xi.shape[1]
    dt = 1.0 / (n - 1)
    lam = math.sqrt(3.0) / length_scale
    u = lam * dt
    a = math.exp(-u)
    s2 = spread * spread
    q11 = s2 * (1.0 - a * a * (1.0 + 2.0 * u + 2.0 * u * u))
    q12 = s2 * 2.0 * lam * u * u * a * a
    q22 = s2 * lam * lam * (1.0 - a * a * (1.0 - 2.0 * u + 2.0 * u * u))
    out = np.empty((n, dims))
    g = np.zeros(dims)  # posterior mean of f' given the samples so far (prior: 0)
    for d in range(dims):
        out[0, d] = spread * xi[d, 0]
    p = lam * lam * s2  # posterior variance of f' (f' is independent of f at one time)
    for k in range(1, n):
        # Predicted covariance A diag(0, p) A^T + Q, with A e2 = a (dt, 1 - u).
        v00 = p * a * a * dt * dt + q11
        v01 = p * a * a * dt * (1.0 - u) + q12
        v11 = p * a * a * (1.0 - u) * (1.0 - u) + q22
        sd = math.sqrt(v00)
        gain = v01 / v00
        p = v11 - v01 * gain
        for d in range(dims):
            f = out[k - 1, d]
            pf = a * ((1.0 + u) * f + dt * g[d])
            pg = a * ((1.0 - u) * g[d] - lam * u * f)
            out[k, d] = pf + sd * xi[d, k]
            g[d] = pg + gain * (out[k, d] - pf)
    return out


@numba.njit(nogil=True, cache=True)
def boracchi_walk(n, step, anxiety, shake, centripetal, impulse, angle, uniforms, normals):
    """Boracchi & Foi's random camera trajectory (Algorithm 1 of the 2012 paper).

    A particle moves at constant speed ``step`` per sample. Each step its velocity ``v`` gets
    ``dv = jump + anxiety * (shake * g - centripetal * x) * step`` (``g`` a complex standard
    normal, ``x`` the position: Gaussian shake plus inertial pull back to the start) and is
    renormalised to length ``step``; with probability ``impulse * anxiety`` the jump
    ``2 v exp(i (pi + u - 1/2))`` roughly reverses it (impulsive shake).

    Parameters
    ----------
    n : int
        Samples, >= 1.
    step : float
        Distance per sample (the path length is ``(n - 1) * step``).
    anxiety, shake, centripetal, impulse : float
        Boracchi's ``anxiety`` in [0, 1], Gaussian shake, centripetal (inertial) pull, and
        probability factor of impulsive shakes.
    angle : float
        Initial direction in radians.
    uniforms : numpy.ndarray
        float64 (n - 1, 2) in [0, 1): per step, the impulse test and its angle jitter.
    normals : numpy.ndarray
        float64 (n - 1, 2) standard normals: per step, the Gaussian shake.

    Returns
    -------
    numpy.ndarray
        float64 (n, 2) positions (x, y), starting at the origin.
    """
    out = np.zeros((n, 2))
    vx = step * math.cos(angle)
    vy = step * math.sin(angle)
    x = 0.0
    y = 0.0
    for t in range(1, n):
        jx = 0.0
        jy = 0.0
        if uniforms[t - 1, 0] < impulse * anxiety:
            phi = math.pi + (uniforms[t - 1, 1] - 0.5)
            jx = 2.0 * (vx * math.cos(phi) - vy * math.sin(phi))
            jy = 2.0 * (vx * math.sin(phi) + vy * math.cos(phi))
        wx = vx + jx + anxiety * (shake * normals[t - 1, 0] - centripetal * x) * step
        wy = vy + jy + anxiety * (shake * normals[t - 1, 1] - centripetal * y) * step
        norm = math.hypot(wx, wy)
        if norm > 0.0:  # else keep the old direction (a measure-zero event)
            vx = wx / norm * step
            vy = wy / norm * step
        x += vx
        y += vy
        out[t, 0] = x
        out[t, 1] = y
    return out
