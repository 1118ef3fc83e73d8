"""Camera-shake point spread functions: trajectory models, rasterisation and kernel banks.

A camera that shakes during the exposure blurs a (distant, static) scene with a kernel that is
the path its optical axis traced on the image, weighted by how long it dwelt at each point.
This module draws such paths (:data:`MODELS`), turns them into kernels (:func:`rasterize`) and
makes reproducible banks of them (:func:`kernel_bank`); :mod:`blursynth.kernel_bank` reads,
writes, describes and shows banks.

Every kernel is odd-sized, float32, non-negative, sums to 1 and has its centroid on the centre
pixel ``(K - 1) / 2``, by construction: the path is centred on its dwell-weighted centroid before
bilinear splatting (which keeps centroids), and shrunk to fit the support if it would leave it;
nothing is rejected, rolled or shifted afterwards (:mod:`blursynth_ext.raster`).

Units. A trajectory is (N, 2) positions (x, y) at N equal time steps over the exposure, in
trajectory units: one unit is ``SUPPORT_FILL * (K - 1)`` pixels, the seed generator's convention
(its Gaussian process lives on [0, 1] mapped onto the support). So the kernel size alone sets
the blur strength, as in the seed (extent about 0.6 K for ``gp``); ``extent=E`` instead scales
the whole trajectory so its larger bounding-box side spans E pixels. x points right and y down.

Randomness. A model parameter given as a pair ``(lo, hi)`` is drawn uniformly per kernel. Every
draw comes from the generator passed in; :func:`kernel_bank` gives kernel ``i`` the generator
``item_rng(seed, f"{model}/{i}", "psf")``, so any kernel can be remade alone and a bank does not
depend on how it was split. Per kernel the draws are: the model's parameters (in the order of
:func:`model_parameters`), its noise, then ``extent`` and ``exposure`` if they are ranges.

References: Schuler et al., "A machine learning approach for non-blind image deconvolution",
CVPR 2013 (``gp``); Boracchi & Foi, "Modeling the performance of image restoration from motion
blur", IEEE TIP 2012 (``boracchi``); Zhang et al., KAIR ``blurkernel_synthesis`` (``randomwalk``).
"""
from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.signal import lfilter

from blursynth_ext.raster import boracchi_walk, interpolate_path, matern32_walk, rasterize_cpu

from .errors import ParameterError
from .log import progress
from .seeding import item_rng

log = logging.getLogger("blursynth")

__all__ = [
    "MODELS", "SUPPORT_FILL", "EXTENT_THRESHOLD", "model_parameters", "trajectory",
    "exposure_weights", "rasterize", "exposure_kernels", "make_kernel", "kernel_bank",
]

#: Pixels per trajectory unit, as a fraction of ``K - 1``. The seed maps its trajectories'
#: [0, 1] onto the support and rejects the ~30% that leave it, which favours small shakes;
#: fitting every trajectory instead matches the seed's extent statistics (mean 0.66 K at
#: K = 17 to 0.60 K at K = 71) when a unit spans 0.9 (K - 1) pixels.
SUPPORT_FILL = 0.9
#: Fraction of a kernel's maximum above which a pixel counts as support (the seed's measure).
EXTENT_THRESHOLD = 0.01
#: Kernels whose centroid is farther than this from the centre (pixels) are re-centred on load.
CENTRE_TOLERANCE = 1e-3
#: Boracchi's path length (pixels of his 64-pixel canvas): his walk is simulated at this scale,
#: where his constants were tuned, then scaled to ``length``.
_BORACCHI_LENGTH = 60.0
#: Fewest samples a trajectory gets before a partial exposure is cut from it, so the
#: shutter closes within 1/1000 of the exposure even for a sparse path (``line``).
_EXPOSURE_SAMPLES = 1001
_CHUNK = 512  # kernels rasterised per batch, and at most this many trajectory samples:
_CHUNK_SAMPLES = 1 << 22  # (64 MiB of positions)


# -- models and their parameters -------------------------------------------------------------------

@dataclass(frozen=True)
class _Param:
    default: object  # a number, a (lo, hi) pair drawn per kernel, or None (see help)
    low: float
    high: float
    help: str
    integer: bool = False
    low_open: bool = False


@dataclass(frozen=True)
class _Model:
    params: dict
    build: Callable  # (rng, samples, values) -> float64 (samples, 2)


def _gp(rng, n, p):
    return matern32_walk(rng.standard_normal((2, n)), p["length_scale"], p["spread"])


def _boracchi(rng, n, p):
    angle = rng.uniform(0.0, 2.0 * math.pi)
    uniforms = rng.random((n - 1, 2))
    normals = rng.standard_normal((n - 1, 2))
    walk = boracchi_walk(n, _BORACCHI_LENGTH / (n - 1), p["anxiety"], p["shake"],
                         p["centripetal"], p["impulse"], angle, uniforms, normals)
    return walk * (p["length"] / _BORACCHI_LENGTH)


def _randomwalk(rng, n, p):
    # KAIR / tkkcc: a 3-D particle whose velocity and orientation take random forces that decay
    # as 1/(t + 1); the orientation force also feeds back on itself, so late steps curl.
    v0 = rng.standard_normal(3)
    f_rot = rng.standard_normal((n - 1, 3))
    f_trans = rng.standard_normal((n - 1, 3))
    decay = 1.0 / np.arange(2.0, n + 1.0)[:, None]
    turn = 2.0 * math.pi / n
    # r_t = r_{t-1} + turn (f / (t + 1) + r_{t-1}), r_0 = 0
    r = lfilter([turn], [1.0, -(1.0 + turn)], f_rot * decay, axis=0)
    v = v0 + np.cumsum(f_trans * decay, axis=0)
    c, s = np.cos(r), np.sin(r)
    # Rotate by Rz(r2) Ry(r1) Rx(r0); only x and y are kept (the projection on the sensor).
    a1 = c[:, 0] * v[:, 1] - s[:, 0] * v[:, 2]
    a2 = s[:, 0] * v[:, 1] + c[:, 0] * v[:, 2]
    b0 = c[:, 1] * v[:, 0] + s[:, 1] * a2
    step = np.stack([c[:, 2] * b0 - s[:, 2] * a1, s[:, 2] * b0 + c[:, 2] * a1], axis=1)
    x = np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])
    span = np.ptp(x, axis=0).max()
    return x * (p["span"] / span) if span > 0 else x


def _line(rng, n, p):
    angle = math.radians(rng.uniform(0.0, 180.0) if p["angle"] is None else p["angle"])
    t = np.linspace(-0.5, 0.5, n)[:, None]
    return t * (p["length"] * np.array([math.cos(angle), math.sin(angle)]))


_SAMPLES = "Samples of the trajectory, at equal time steps over the exposure."
_INF = math.inf

#: name -> one-line description of each trajectory model.
MODELS: dict[str, str] = {
    "gp": "the seed's: x, y independent Matern-3/2 Gaussian processes; smooth, wandering",
    "boracchi": "Boracchi & Foi: constant-speed particle, Gaussian shake, inertia, jerks",
    "randomwalk": "KAIR-style 3-D random walk with decaying forces, projected; curly",
    "line": "straight constant-velocity blur (a baseline)",
}

_MODELS: dict[str, _Model] = {
    "gp": _Model({
        "samples": _Param(1000, 2, 1e6, _SAMPLES, integer=True),
        "length_scale": _Param(0.3, 0.0, _INF, "Matern-3/2 length scale, in exposures.",
                               low_open=True),
        "spread": _Param(0.25, 0.0, _INF, "Standard deviation of each coordinate, in units.",
                         low_open=True),
    }, _gp),
    "boracchi": _Model({
        "samples": _Param(2000, 2, 1e6, _SAMPLES, integer=True),
        "length": _Param(1.0, 0.0, _INF, "Path length over the full exposure, in units "
                         "(Boracchi: 60 px on a 64 px canvas).", low_open=True),
        "anxiety": _Param((0.001, 0.01), 0.0, 1.0, "Amount of shake (0: a straight line); "
                          "also scales the chance of impulsive jerks. Default: DeblurGAN's "
                          "range (Boracchi's 0.1 U(0, 1) gives tangled blobs)."),
        "shake": _Param((0.0, 10.0), 0.0, _INF, "Gaussian shake strength."),
        "centripetal": _Param((0.0, 0.7), 0.0, _INF, "Inertial pull back to the start."),
        "impulse": _Param((0.0, 0.2), 0.0, 1.0, "Probability factor of impulsive jerks."),
    }, _boracchi),
    "randomwalk": _Model({
        "samples": _Param(250, 2, 1e6, "Steps of the walk (KAIR: 250).", integer=True),
        "span": _Param((0.3, 0.9), 0.0, _INF, "Larger bounding-box side of the path, in units.",
                       low_open=True),
    }, _randomwalk),
    "line": _Model({
        "samples": _Param(2, 2, 1e6, _SAMPLES + " Two suffice: paths are refined when "
                          "rasterised.", integer=True),
        "length": _Param((0.3, 0.9), 0.0, _INF, "Length, in units."),
        "angle": _Param(None, -_INF, _INF, "Direction in degrees from +x towards +y "
                        "(clockwise on screen); default: uniform in [0, 180)."),
    }, _line),
}


def model_parameters(model: str) -> dict[str, tuple[object, str]]:
    """The parameters a model takes: name -> (default, one-line help), in draw order.

    Parameters
    ----------
    model : str
        A key of :data:`MODELS`.

    Returns
    -------
    dict
        A default ``(lo, hi)`` is drawn uniformly per kernel; ``None`` is explained by the help.

    Raises
    ------
    ParameterError
        If `model` is unknown.
    """
    return {k: (p.default, p.help) for k, p in _model(model).params.items()}


def _model(model: str) -> _Model:
    if model not in _MODELS:
        raise ParameterError(f"model: expected one of {', '.join(_MODELS)}, got {model!r}")
    return _MODELS[model]


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _value(name: str, v, low: float, high: float, *, low_open: bool = False,
           integer: bool = False):
    """``v`` checked: a number in range, or (when not integer) a (lo, hi) pair in range."""
    def ok(x):
        return (_is_number(x) and math.isfinite(x) and (x > low if low_open else x >= low)
                and x <= high and (not integer or float(x).is_integer()))

    bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    kind = "an integer" if integer else "a number"
    if isinstance(v, (tuple, list)) and not integer:
        if len(v) == 2 and ok(v[0]) and ok(v[1]) and v[0] <= v[1]:
            return float(v[0]), float(v[1])
        raise ParameterError(f"{name}: expected a range (lo, hi) with lo <= hi in {bounds}, "
                             f"got {v!r}")
    if not ok(v):
        raise ParameterError(f"{name}: expected {kind} in {bounds}"
                             + ("" if integer else " or a range (lo, hi)") + f", got {v!r}")
    return int(v) if integer else float(v)


def _resolve(model: str, params: dict) -> tuple[_Model, dict]:
    """Validate a model's parameters (all of them, before anything is drawn)."""
    m = _model(model)
    unknown = sorted(set(params) - set(m.params))
    if unknown:
        raise ParameterError(f"{unknown[0]}: not a parameter of model {model!r}; expected one "
                             f"of {', '.join(m.params)}")
    out = {}
    for name, p in m.params.items():
        v = params.get(name, p.default)
        if v is None and p.default is None:
            out[name] = None
        else:
            out[name] = _value(name, v, p.low, p.high, low_open=p.low_open, integer=p.integer)
    return m, out


def _draw(v, rng: np.random.Generator):
    return float(rng.uniform(v[0], v[1])) if isinstance(v, tuple) else v


def trajectory(model: str, rng: np.random.Generator, *, samples: int | None = None,
               **params) -> np.ndarray:
    """Draw one camera trajectory.

    Parameters
    ----------
    model : str
        A key of :data:`MODELS`.
    rng : numpy.random.Generator
        Source of every random draw.
    samples : int, optional
        Number of samples N >= 2 (default: the model's, see :func:`model_parameters`).
    **params
        The model's parameters (:func:`model_parameters`): numbers, or ``(lo, hi)`` pairs
        drawn uniformly.

    Returns
    -------
    numpy.ndarray
        float64 (N, 2) positions (x, y) in trajectory units (see the module notes), at the
        times ``linspace(0, 1, N)`` of the exposure.

    Raises
    ------
    ParameterError
        Unknown model or parameter, or a value out of range.

    Examples
    --------
    >>> t = trajectory("line", np.random.default_rng(0), length=0.5, angle=90.0, samples=3)
    >>> np.round(t, 6) + 0.0  # (+ 0.0 turns -0.0 into 0.0)
    array([[ 0.  , -0.25],
           [ 0.  ,  0.  ],
           [ 0.  ,  0.25]])
    """
    if samples is not None:
        params = dict(params, samples=samples)
    m, spec = _resolve(model, params)
    return _sample(m, spec, rng)


def _sample(m: _Model, spec: dict, rng: np.random.Generator) -> np.ndarray:
    values = {k: _draw(v, rng) for k, v in spec.items()}
    return m.build(rng, values.pop("samples"), values)


def exposure_weights(samples: int, fraction: float) -> np.ndarray:
    """Shutter weights of the first ``fraction`` of an exposure, per trajectory sample.

    Parameters
    ----------
    samples : int
        N >= 2, samples at the times ``linspace(0, 1, N)``.
    fraction : float
        Exposure fraction in (0, 1]: the shutter is open over ``[0, fraction]``.

    Returns
    -------
    numpy.ndarray
        float64 (N,) in [0, 1]: the part of each sample's time cell (half a step either side)
        inside the open shutter. All ones for ``fraction = 1``; for ``f < g`` the weights of
        ``f`` are <= those of ``g`` (nested exposures, Boracchi & Foi's exposure knob).

    Examples
    --------
    >>> exposure_weights(5, 0.5).tolist()
    [1.0, 1.0, 0.5, 0.0, 0.0]
    """
    n = _value("samples", samples, 2, 1e9, integer=True)
    f = _value("fraction", fraction, 0.0, 1.0, low_open=True)
    t = np.linspace(0.0, 1.0, n)
    h = 0.5 / (n - 1)
    lo, hi = np.maximum(t - h, 0.0), np.minimum(t + h, 1.0)
    return np.clip(np.minimum(hi, f) - lo, 0.0, None) / (hi - lo)


# -- rasterisation ---------------------------------------------------------------------------------

def _check_size(size) -> int:
    if not (isinstance(size, numbers.Integral) and not isinstance(size, bool)
            and size >= 3 and size % 2 == 1):
        raise ParameterError(f"size: expected an odd integer >= 3 (the kernel needs a centre "
                             f"pixel), got {size!r}")
    return int(size)


def _check_extent(extent, size: int):
    if extent is None:
        return None
    return _value("extent", extent, 0.0, size - 1.0)


def _scale(traj: np.ndarray, size: int, extent: float | None) -> float:
    """Pixels per trajectory unit: the fixed unit, or so the larger bbox side spans ``extent``."""
    if extent is None:
        return SUPPORT_FILL * (size - 1)
    span = float(np.ptp(traj, axis=0).max())
    return extent / span if span > 0 else 0.0


def _check_traj(traj, weights) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(traj, np.float64)
    if t.ndim != 2 or t.shape[1] != 2 or len(t) < 1:
        raise ParameterError(f"traj: expected (N, 2) positions, N >= 1, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ParameterError("traj: expected finite positions, got NaN or inf")
    if weights is None:
        return t, np.ones(len(t))
    w = np.asarray(weights, np.float64)
    if w.shape != (len(t),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ParameterError(f"weights: expected ({len(t)},) finite values >= 0 with a "
                             f"positive sum, got shape {w.shape}")
    return t, w


def rasterize(traj: np.ndarray, size: int, *, extent: float | None = None,
              weights: np.ndarray | None = None) -> np.ndarray:
    """Turn a trajectory into a blur kernel.

    Parameters
    ----------
    traj : numpy.ndarray
        (N, 2) positions (x, y) in trajectory units at equal time steps (:func:`trajectory`).
    size : int
        Kernel size K: odd, >= 3.
    extent : float, optional
        Larger bounding-box side of the whole trajectory, in pixels, 0 <= extent <= K - 1
        (all samples count, also those with zero weight, so a shorter exposure of the same
        path gives a shorter blur). Default: one trajectory unit is
        ``SUPPORT_FILL * (K - 1)`` pixels.
    weights : numpy.ndarray, optional
        (N,) shutter weights >= 0 with a positive sum (:func:`exposure_weights`); default all
        1. Between samples they are interpolated linearly, like the positions.

    Returns
    -------
    numpy.ndarray
        float32 (K, K), non-negative, sum 1 (to float32 rounding), centroid on pixel
        ``((K - 1) / 2, (K - 1) / 2)``.

    Raises
    ------
    ParameterError
        Bad trajectory, weights, size or extent.

    Notes
    -----
    Each sample's mass is its weight times its time step (trapezoid rule), i.e. its dwell
    time; the path is refined where samples are more than 1/4 px apart, centred on its
    mass-weighted centroid, shrunk about it only if it would leave the support, and splatted
    bilinearly (:mod:`blursynth_ext.raster`). The measured support (:func:`kernel_stats`) of a
    path spanning E pixels is E + 1 or E + 2 pixels, depending on the sub-pixel phase.

    Examples
    --------
    >>> k = rasterize(np.array([[0.0, 0.0], [1.0, 0.0]]), 5, extent=2.0)
    >>> (k[2] * 8).tolist()
    [0.0, 2.0, 4.0, 2.0, 0.0]
    """
    size = _check_size(size)
    extent = _check_extent(extent, size)
    if isinstance(extent, tuple):
        raise ParameterError(f"extent: expected one number of pixels here, got {extent!r}")
    t, w = _check_traj(traj, weights)
    k, _ = rasterize_cpu(t[None], w[None], size, np.array([_scale(t, size, extent)]))
    return k[0]


def exposure_kernels(traj: np.ndarray, size: int, fractions, *,
                     extent: float | None = None) -> np.ndarray:
    """Kernels of increasing exposure from one trajectory (Boracchi & Foi's exposure knob).

    Parameters
    ----------
    traj : numpy.ndarray
        (N, 2) trajectory, N >= 2 (:func:`trajectory`); the full exposure is all of it.
    size : int
        Odd kernel size >= 3.
    fractions : sequence of float
        Exposure fractions in (0, 1]; kernel ``i`` integrates the path over
        ``[0, fractions[i]]`` of the exposure (the path is first refined to at least 1001
        samples by linear interpolation, so the shutter edge is sharp).
    extent : float, optional
        As in :func:`rasterize`, for the full trajectory.

    Returns
    -------
    numpy.ndarray
        float32 (len(fractions), K, K). All kernels share one pixel scale, so a longer
        exposure's kernel contains the shorter one's path (each is centred on its own
        centroid); if any would leave the support, all are shrunk by the same factor.

    Raises
    ------
    ParameterError
        Bad trajectory, size, extent or fractions.
    """
    size = _check_size(size)
    extent = _check_extent(extent, size)
    t, _ = _check_traj(traj, None)
    fr = list(fractions) if np.ndim(fractions) else [fractions]
    if not fr:
        raise ParameterError("fractions: expected at least one exposure fraction")
    t = _dense_in_time(t)
    rhos = np.stack([exposure_weights(len(t), f) for f in fr])
    trajs = np.broadcast_to(t, (len(fr),) + t.shape)
    scale = _scale(t, size, extent)
    k, shrinks = rasterize_cpu(trajs, rhos, size, np.full(len(fr), scale))
    if shrinks.min() < 1.0:  # fit is linear in the scale: after this, none needs shrinking
        k, _ = rasterize_cpu(trajs, rhos, size, np.full(len(fr), scale * shrinks.min()))
    return k


def _dense_in_time(t: np.ndarray) -> np.ndarray:
    """The same path with at least ``_EXPOSURE_SAMPLES`` samples (a whole number per step)."""
    if len(t) < 2:
        raise ParameterError(f"traj: expected at least 2 samples to cut an exposure from, got "
                             f"{len(t)}")
    return interpolate_path(t, -(-(_EXPOSURE_SAMPLES - 1) // (len(t) - 1)))


def _check_exposure(exposure):
    return _value("exposure", exposure, 0.0, 1.0, low_open=True)


def _prepare(model, size, extent, exposure, params):
    m, spec = _resolve(model, params)
    size = _check_size(size)
    return m, spec, size, _check_extent(extent, size), _check_exposure(exposure)


def _one(m, spec, rng, size, extent, exposure):
    """Trajectory, shutter weights and scale of one kernel (all its random draws)."""
    t = _sample(m, spec, rng)
    e = _draw(extent, rng)
    f = _draw(exposure, rng)
    if exposure == 1.0:  # decided by the spec, not the draw: a bank's paths share a length
        return t, np.ones(len(t)), _scale(t, size, e)
    t = _dense_in_time(t)
    return t, exposure_weights(len(t), f), _scale(t, size, e)


def make_kernel(model: str, size: int, rng: np.random.Generator, *,
                extent: float | tuple[float, float] | None = None,
                exposure: float | tuple[float, float] = 1.0, **params) -> np.ndarray:
    """Draw one camera-shake kernel.

    Parameters
    ----------
    model : str
        A key of :data:`MODELS`.
    size : int
        Kernel size K: odd, >= 3.
    rng : numpy.random.Generator
        Source of every random draw.
    extent : float or (float, float), optional
        Blur size in pixels (see :func:`rasterize`), in [0, K - 1], or a range drawn uniformly.
        Overrides the model's own scale (``spread``, ``length``, ``span``). Default: the
        model's scale with one unit = ``SUPPORT_FILL * (K - 1)`` pixels.
    exposure : float or (float, float)
        Fraction of the trajectory's exposure integrated, in (0, 1] (1: all of it), as in
        :func:`exposure_kernels`; the pixel scale is the full path's, so a shorter exposure of
        the same shake is a shorter blur.
    **params
        Model parameters (:func:`model_parameters`).

    Returns
    -------
    numpy.ndarray
        float32 (K, K), non-negative, sum 1, centroid on the centre pixel.

    Raises
    ------
    ParameterError
        Unknown model or parameter, or a value out of range.

    Examples
    --------
    >>> k = make_kernel("gp", 17, np.random.default_rng(0))
    >>> k.shape, k.dtype, round(float(k.sum(dtype=np.float64)), 6)
    ((17, 17), dtype('float32'), 1.0)
    """
    m, spec, size, extent, exposure = _prepare(model, size, extent, exposure, params)
    t, rho, scale = _one(m, spec, rng, size, extent, exposure)
    k, _ = rasterize_cpu(t[None], rho[None], size, np.array([scale]))
    return k[0]


def kernel_bank(model: str, count: int, size: int, seed: int = 0, *,
                extent: float | tuple[float, float] | None = None,
                exposure: float | tuple[float, float] = 1.0,
                show_progress: bool | None = False, **params) -> np.ndarray:
    """A reproducible bank of camera-shake kernels.

    Parameters
    ----------
    model : str
        A key of :data:`MODELS`.
    count : int
        Number of kernels, >= 1.
    size : int
        Kernel size K: odd, >= 3.
    seed : int
        Run seed >= 0. Kernel ``i`` is ``make_kernel(model, size,
        item_rng(seed, f"{model}/{i}", "psf"), ...)``, bit for bit.
    extent, exposure, **params
        As in :func:`make_kernel`.
    show_progress : bool, optional
        Progress bar on stderr (None: when stderr is a terminal).

    Returns
    -------
    numpy.ndarray
        float32 (count, K, K).

    Raises
    ------
    ParameterError
        Bad model, parameter, count, size or seed (checked before anything is drawn).
    """
    m, spec, size, extent, exposure = _prepare(model, size, extent, exposure, params)
    count = _value("count", count, 1, 1e12, integer=True)
    item_rng(seed, model, "psf")  # validates the seed up front
    out = np.empty((count, size, size), np.float32)
    shrunk = 0
    with progress(total=count, desc=f"{model} kernels", unit="kernel",
                  disable=None if show_progress is None else not show_progress) as bar:
        chunk = max(1, min(_CHUNK, _CHUNK_SAMPLES // max(spec["samples"], _EXPOSURE_SAMPLES)))
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            draws = [_one(m, spec, item_rng(seed, f"{model}/{i}", "psf"), size, extent, exposure)
                     for i in range(start, stop)]
            trajs, rhos, scales = (np.stack(a) for a in zip(*draws))
            out[start:stop], shrinks = rasterize_cpu(trajs, rhos, size, scales)
            shrunk += int((shrinks < 1.0).sum())
            bar.update(stop - start)
    if shrunk and extent is not None:
        log.info("%d of %d kernels were shrunk to fit the %d px support: extent too large "
                 "for the size", shrunk, count, size)
    return out
