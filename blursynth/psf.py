"""Camera-shake point spread functions: trajectory models, rasterisation and kernel banks.

A camera that shakes during the exposure blurs a (distant, static) scene with a kernel that is
the path its optical axis traced on the image, weighted by how long it dwelt at each point.
This module draws such paths (:data:`MODELS`), turns them into kernels (:func:`rasterize`), makes
reproducible banks of them (:func:`kernel_bank`), reads and writes banks (:func:`load_bank`,
:func:`save_bank`), describes them (:func:`kernel_stats`, :func:`bank_stats`) and shows them
(:func:`preview_grid`); :func:`write_bank` is the driver behind ``blursynth kernels``.

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

import json
import logging
import math
import numbers
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from scipy.signal import lfilter

from blursynth_ext.raster import (boracchi_walk, interpolate_path, matern32_walk, rasterize_cpu,
                                  splat_cpu)

from .errors import InputFileError, OutputError, ParameterError
from .files import atomic_path, output_error
from .log import progress
from .seeding import item_rng

log = logging.getLogger("blursynth")

__all__ = [
    "MODELS", "SUPPORT_FILL", "EXTENT_THRESHOLD", "model_parameters", "trajectory",
    "exposure_weights", "rasterize", "exposure_kernels", "make_kernel", "kernel_bank",
    "save_bank", "load_bank", "bank_meta", "write_bank", "kernel_stats", "bank_stats",
    "format_summary", "preview_grid", "write_preview",
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
_BANK_FORMAT = "blursynth.psf.bank/1"
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


# -- banks on disk ---------------------------------------------------------------------------------

def _clean(k: np.ndarray, path, label: Callable[[int], str]) -> np.ndarray:
    """Validate (N, K, K) kernels read from ``path`` and normalise each to sum 1 (float32)."""
    try:
        k = np.asarray(k, np.float64)
    except (TypeError, ValueError):
        raise InputFileError(path, f"expected numeric kernels, got {k.dtype}") from None
    if k.ndim != 3 or k.shape[1] != k.shape[2]:
        raise InputFileError(path, f"expected square kernels, got {' x '.join(map(str, k.shape))}")
    if k.shape[1] % 2 == 0:
        raise InputFileError(path, f"expected kernels of odd size (a centre pixel), got "
                             f"{k.shape[1]} x {k.shape[2]}")
    if len(k) == 0:
        raise InputFileError(path, "no kernels")
    bad = ~np.isfinite(k).all(axis=(1, 2))
    if bad.any():
        raise InputFileError(path, f"{label(int(np.argmax(bad)))}not finite (NaN or inf)")
    # Tiny negatives are round-off of the tools that made the bank; real ones are an error.
    floor = -1e-6 * np.abs(k).max(axis=(1, 2))
    neg = k.min(axis=(1, 2)) < floor
    if neg.any():
        i = int(np.argmax(neg))
        raise InputFileError(path, f"{label(i)}negative values (min {k[i].min():.3g}); a blur "
                             "kernel must be non-negative")
    k = np.maximum(k, 0.0)
    sums = k.sum(axis=(1, 2))
    if (sums <= 0).any():
        raise InputFileError(path, f"{label(int(np.argmax(sums <= 0)))}all zero")
    return (k / sums[:, None, None]).astype(np.float32)


def _recentre(bank: np.ndarray) -> np.ndarray:
    """Move each kernel's centroid onto the centre by splatting its pixels' masses.

    Bilinear splatting keeps the sum, the sign and moves the centroid exactly; a fractional
    offset blurs by under a pixel. The bank grows (equally on every side) if mass would
    otherwise fall off the border.
    """
    n, size = bank.shape[0], bank.shape[1]
    grid = np.arange(size, dtype=np.float64)
    mass = bank.sum(axis=(1, 2), dtype=np.float64)
    off = np.stack([(bank.sum(1, dtype=np.float64) * grid).sum(1) / mass,
                    (bank.sum(2, dtype=np.float64) * grid).sum(1) / mass], 1) - (size - 1) / 2
    moving = np.flatnonzero(np.abs(off).max(1) > CENTRE_TOLERANCE)
    if not len(moving):
        return bank
    pad = 0
    for i in moving:
        ys, xs = np.nonzero(bank[i])
        lo = min(xs.min() - off[i, 0], ys.min() - off[i, 1])
        hi = max(xs.max() - off[i, 0], ys.max() - off[i, 1])
        pad = max(pad, math.ceil(-lo), math.ceil(hi - (size - 1)))
    out = np.pad(bank, ((0, 0), (pad, pad), (pad, pad))) if pad else bank.copy()
    for i in moving:
        ys, xs = np.nonzero(bank[i])
        pts = np.stack([xs + pad - off[i, 0], ys + pad - off[i, 1]], 1)
        k = splat_cpu(pts, bank[i, ys, xs], size + 2 * pad)
        out[i] = k / k.sum()
    log.info("re-centred %d of %d kernels (largest centroid offset %.2f px)%s", len(moving), n,
             float(np.abs(off).max()), f"; padded to {size + 2 * pad} px" if pad else "")
    return out


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = [k for k in z.files if k != "meta"]
            if not names:
                raise InputFileError(path, "no arrays in the .npz file")
            k = z["kernels"] if "kernels" in z.files else z[names[0]]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise InputFileError(path, f"not a readable .npz file ({e})") from e
    return k[None] if k.ndim == 2 else k


def _read_mat(path: Path) -> np.ndarray:
    import scipy.io

    try:
        d = scipy.io.loadmat(path)
    except NotImplementedError as e:  # v7.3 files are HDF5
        raise InputFileError(path, "MATLAB v7.3 (HDF5) files are not supported; re-save it "
                             "with save(..., '-v7')") from e
    except (ValueError, TypeError, OSError) as e:
        raise InputFileError(path, f"not a readable MATLAB file ({e})") from e
    names = [k for k in d if not k.startswith("__")]
    if "K" in d:
        k = d["K"]
    elif len(names) == 1:
        k = d[names[0]]
    else:
        raise InputFileError(path, f"expected a variable 'K', found {', '.join(names) or 'none'}")
    if k.dtype == object:  # a cell array of kernels, in MATLAB's (column-major) order
        try:
            cells = [np.asarray(c, np.float64) for c in k.ravel(order="F")]
        except (TypeError, ValueError):
            raise InputFileError(path, "K: expected a cell array of numeric kernels") from None
        shapes = {c.shape for c in cells}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise InputFileError(path, f"expected a cell array of equal 2-D kernels, got "
                                 f"shapes {sorted(shapes)}")
        return np.stack(cells)
    if k.ndim == 2:
        return k[None]
    if k.ndim == 3 and k.shape[0] == k.shape[1]:  # MATLAB's K x K x N (also when N == K)
        return np.moveaxis(k, 2, 0)
    if k.ndim == 3 and k.shape[1] == k.shape[2]:
        return k
    raise InputFileError(path, f"K: expected K x K, K x K x N, N x K x K or a cell array, got "
                         f"shape {' x '.join(map(str, k.shape))}")


def _read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputFileError(path, "not a readable image")
    if img.ndim == 3:
        colour = img[..., :3]
        if not (colour == colour[..., :1]).all():
            raise InputFileError(path, "a colour image; expected a grey kernel")
        img = colour[..., 0]
    return img[None].astype(np.float64)


def _read_npy(path: Path) -> np.ndarray:
    try:
        k = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputFileError(path, f"not a readable .npy file ({e})") from e
    return k[None] if k.ndim == 2 else k


_READERS = {".npz": _read_npz, ".npy": _read_npy, ".mat": _read_mat, ".png": _read_png}


def _read_file(path: Path) -> np.ndarray:
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputFileError(path, f"unsupported kernel file type; expected a folder or one of "
                             f"{', '.join(_READERS)}")
    k = reader(path)
    return _clean(k, path, lambda i: f"kernel {i}: " if len(k) > 1 else "")


def load_bank(path: str | os.PathLike, *, center: bool = True) -> np.ndarray:
    """Read a kernel bank.

    Parameters
    ----------
    path : str or os.PathLike
        One of:

        - ``.npz``: the array ``kernels`` (as :func:`save_bank` writes), else the first array;
          (N, K, K) or one (K, K) kernel.
        - ``.npy``: (N, K, K) or (K, K).
        - ``.mat`` (MATLAB v4-v7.2), variable ``K`` (or the file's only variable), as SBDD's
          banks (one K x K kernel per file). Stacks are read as MATLAB's K x K x N when the
          first two sizes match (so also when N == K), else as N x K x K; a cell array is read
          in MATLAB's column-major order.
        - a folder: every ``.png`` (8- or 16-bit grey), ``.mat``, ``.npy`` and ``.npz`` file
          in it, in name order (hidden files skipped).
    center : bool
        Move every kernel whose centroid is more than 0.001 px off the centre onto it
        (bilinear, mass-preserving; the bank grows if mass would fall off the border), so
        that applying it does not shift the image.

    Returns
    -------
    numpy.ndarray
        float32 (N, K, K): odd, non-negative, each normalised to sum 1.

    Raises
    ------
    InputFileError
        Missing or unreadable file, unknown type, or a kernel that is not square, has an even
        size, NaN/inf, negative values (beyond round-off of 1e-6 of its maximum) or is all zero;
        the message names the file and the kernel index. Files of one folder must share a
        size.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                       and f.suffix.lower() in _READERS)
        if not files:
            raise InputFileError(p, f"no kernel files ({', '.join(_READERS)}) in this folder")
        parts = []
        for f in files:
            k = _read_file(f)
            if parts and k.shape[1:] != parts[0].shape[1:]:
                raise InputFileError(f, f"kernels of {k.shape[1]} x {k.shape[2]}, but "
                                     f"{files[0].name} has {parts[0].shape[1]} x "
                                     f"{parts[0].shape[2]}; a bank has one size")
            parts.append(k)
        bank = np.concatenate(parts)
    elif p.exists():
        bank = _read_file(p)
    else:
        raise InputFileError(p, "no such file or folder")
    return _recentre(bank) if center else bank


def bank_meta(path: str | os.PathLike) -> dict:
    """The parameters :func:`save_bank` stored with a bank (``{}`` if none).

    Raises
    ------
    InputFileError
        If ``path`` is not a readable ``.npz`` file.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"])) if "meta" in z.files else {}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise InputFileError(path, f"not a readable .npz file ({e})") from e


def save_bank(path: str | os.PathLike, kernels: np.ndarray, meta: dict | None = None) -> Path:
    """Write a kernel bank to ``.npz`` atomically, with its parameters.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.npz``; parent folders are created.
    kernels : numpy.ndarray
        (N, K, K) or (K, K) kernels: odd, non-negative; each is normalised to sum 1 and
        stored as float32 under ``kernels``.
    meta : dict, optional
        JSON-serialisable parameters (model, seed, ...), stored as JSON under ``meta`` and read
        back by :func:`bank_meta`.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ParameterError
        If ``path`` does not end in ``.npz``, ``meta`` is not JSON-serialisable, or the kernels
        are not valid kernels.
    OutputError
        If writing fails (nothing is left under ``path`` then).
    """
    p = Path(path)
    if p.suffix.lower() != ".npz":
        raise ParameterError(f"path: expected a file name ending in .npz, got {str(p)!r}")
    k = np.asarray(kernels)
    try:
        k = _clean(k[None] if k.ndim == 2 else k, "kernels", lambda i: f"kernel {i}: ")
    except InputFileError as e:
        raise ParameterError(str(e)) from None
    try:
        text = json.dumps({"format": _BANK_FORMAT, **(meta or {})},
                          default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    except (TypeError, ValueError) as e:
        raise ParameterError(f"meta: expected a JSON-serialisable dict ({e})") from None
    try:
        with atomic_path(p) as tmp:
            np.savez_compressed(tmp, kernels=k, meta=np.array(text))
    except OSError as e:  # e.g. a missing or unwritable folder that atomic_path did not name
        raise output_error(e, p) from e
    return p


def write_bank(out: str | os.PathLike, model: str, count: int, size: int, seed: int = 0, *,
               extent: float | tuple[float, float] | None = None,
               exposure: float | tuple[float, float] = 1.0, preview: bool = True,
               show_progress: bool | None = False, **params) -> dict:
    """Make a kernel bank and write it, with a preview and its statistics (``blursynth kernels``).

    Parameters
    ----------
    out : str or os.PathLike
        The bank, ending in ``.npz`` (:func:`save_bank`; the parameters go in its ``meta``).
    model, count, size, seed, extent, exposure, show_progress, **params
        As in :func:`kernel_bank`.
    preview : bool
        Also write ``<stem>_preview.png`` beside it (:func:`write_preview`).

    Returns
    -------
    dict
        ``bank`` and ``preview`` (paths; ``preview`` None if not written), ``meta`` (as
        stored), ``stats`` (:func:`bank_stats`) and ``seconds`` (generation time).

    Raises
    ------
    ParameterError
        Any bad parameter, including ``out`` not ending in ``.npz``; checked before any work.
    OutputError
        If a file cannot be written (nothing partial is left).
    """
    import time

    from . import __version__

    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise ParameterError(f"out: expected a file name ending in .npz, got {str(out)!r}")
    _, spec, size, _, _ = _prepare(model, size, extent, exposure, params)
    t0 = time.perf_counter()
    bank = kernel_bank(model, count, size, seed, extent=extent, exposure=exposure,
                       show_progress=show_progress, **params)
    seconds = time.perf_counter() - t0
    meta = {"model": model, "count": count, "size": size, "seed": seed, "extent": extent,
            "exposure": exposure, "params": spec, "support_fill": SUPPORT_FILL,
            "kernel_i": f"item_rng(seed, '{model}/<i>', 'psf')", "blursynth": __version__}
    save_bank(out, bank, meta)
    png = write_preview(out.with_name(out.stem + "_preview.png"), bank) if preview else None
    return {"bank": out, "preview": png, "meta": meta, "stats": bank_stats(bank),
            "seconds": seconds}


# -- statistics ------------------------------------------------------------------------------------

def _path_length(skel: np.ndarray) -> float:
    # 4-neighbour links count 1; diagonal links sqrt(2), unless a 4-path joins the two pixels.
    s = skel
    h = (s[:, :-1] & s[:, 1:]).sum() + (s[:-1, :] & s[1:, :]).sum()
    d = ((s[:-1, :-1] & s[1:, 1:] & ~s[:-1, 1:] & ~s[1:, :-1]).sum()
         + (s[:-1, 1:] & s[1:, :-1] & ~s[:-1, :-1] & ~s[1:, 1:]).sum())
    return float(h + math.sqrt(2.0) * d)


def kernel_stats(k: np.ndarray, *, threshold: float = EXTENT_THRESHOLD) -> dict:
    """Measure one kernel.

    Parameters
    ----------
    k : numpy.ndarray
        (K, K) non-negative kernel with a positive sum.
    threshold : float
        Support: pixels above ``threshold * k.max()`` (default 1%, the seed's measure).

    Returns
    -------
    dict
        ``extent`` (int): the larger side of the support's bounding box, in pixels (a path
        spanning E pixels measures E + 1 or E + 2); ``length`` (float): length of the support's
        8-connected skeleton, in pixels (a trace of the path, each stretch counted once;
        exact for horizontal, vertical and diagonal paths, up to 8% long at other angles);
        ``curvature`` (float): ``length / span - 1``, ``span`` the skeleton's extent along its
        principal axis (0 for an axis-aligned or diagonal line, about 0.05 for other lines,
        0.3 for a right angle, over 2 for a loop);
        ``centroid`` ((float, float)): (x, y) centre of mass in pixels; ``centroid_error``
        (float): its larger distance from the centre pixel along x or y.

    Raises
    ------
    ParameterError
        If ``k`` is not a square 2-D array with a positive maximum.
    """
    from skimage.morphology import skeletonize

    k = np.asarray(k, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or not k.max() > 0:
        raise ParameterError(f"k: expected a square kernel with a positive maximum, got "
                             f"shape {k.shape}")
    mask = k > threshold * k.max()
    ys, xs = np.nonzero(mask)
    skel = skeletonize(mask)
    length = _path_length(skel)
    pts = np.argwhere(skel).astype(np.float64)
    span = 0.0
    if len(pts) > 1:
        pts -= pts.mean(0)
        axis = np.linalg.eigh(pts.T @ pts)[1][:, -1]
        span = float(np.ptp(pts @ axis))
    grid = np.arange(k.shape[0])
    c = ((k.sum(0) * grid).sum() / k.sum(), (k.sum(1) * grid).sum() / k.sum())
    half = (k.shape[0] - 1) / 2
    return {
        "extent": int(max(np.ptp(xs), np.ptp(ys)) + 1),
        "length": length,
        "curvature": max(length / span - 1.0, 0.0) if span > 0 else 0.0,
        "centroid": (float(c[0]), float(c[1])),
        "centroid_error": float(max(abs(c[0] - half), abs(c[1] - half))),
    }


_STATS = ("extent", "length", "curvature", "centroid_error")


def bank_stats(bank: np.ndarray, *, bins: int = 10) -> dict:
    """Statistics of a bank: per-kernel measures, summaries and histograms.

    Parameters
    ----------
    bank : numpy.ndarray
        (N, K, K) kernels.
    bins : int
        Histogram bins.

    Returns
    -------
    dict
        ``count``, ``size``; for each of ``extent``, ``length``, ``curvature`` and
        ``centroid_error`` (see :func:`kernel_stats`): the float64 (N,) values under its name,
        ``summary[name]`` = {mean, std, min, p5, p50, p95, max} and
        ``histogram[name]`` = (counts, edges) from :func:`numpy.histogram`.
    """
    bank = np.asarray(bank)
    if bank.ndim != 3 or len(bank) == 0:
        raise ParameterError(f"bank: expected (N, K, K) kernels, N >= 1, got shape {bank.shape}")
    per = [kernel_stats(k) for k in bank]
    out: dict = {"count": len(bank), "size": int(bank.shape[1]), "summary": {}, "histogram": {}}
    for name in _STATS:
        v = np.array([s[name] for s in per], np.float64)
        out[name] = v
        pct = np.percentile(v, [5, 50, 95])
        out["summary"][name] = {"mean": float(v.mean()), "std": float(v.std()),
                                "min": float(v.min()), "p5": float(pct[0]),
                                "p50": float(pct[1]), "p95": float(pct[2]), "max": float(v.max())}
        out["histogram"][name] = np.histogram(v, bins=bins)
    return out


def format_summary(stats: dict, *, width: int = 30) -> str:
    """A text summary of :func:`bank_stats`: a table and a histogram per measure."""
    rows = [f"{stats['count']} kernels of {stats['size']} x {stats['size']} px",
            f"{'':18}{'mean':>8}{'std':>8}{'min':>8}{'p5':>8}{'p50':>8}{'p95':>8}{'max':>8}"]
    names = {"extent": "extent (px)", "length": "length (px)", "curvature": "curvature"}
    for key, label in names.items():
        s = stats["summary"][key]
        rows.append(f"{label:18}" + "".join(f"{s[c]:8.2f}" for c in
                                            ("mean", "std", "min", "p5", "p50", "p95", "max")))
    rows.append(f"{'centroid error':18}{stats['summary']['centroid_error']['max']:8.1e} px max")
    for key, label in names.items():
        counts, edges = stats["histogram"][key]
        rows.append(f"{label}:")
        top = max(int(counts.max()), 1)
        for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
            rows.append(f"  {lo:7.2f} - {hi:7.2f} {'#' * round(width * c / top):{width}} {c}")
    return "\n".join(rows)


# -- preview ---------------------------------------------------------------------------------------

def preview_grid(bank: np.ndarray, *, limit: int = 64, cols: int = 8,
                 cell: int = 96) -> np.ndarray:
    """A grid picture of the first ``limit`` kernels, each scaled by its own maximum.

    Parameters
    ----------
    bank : numpy.ndarray
        (N, K, K) kernels.
    limit : int
        Most kernels shown.
    cols : int
        Kernels per row.
    cell : int
        Target tile size in pixels: kernels are enlarged by the integer ``max(1, cell // K)``
        (nearest neighbour, so pixels stay visible).

    Returns
    -------
    numpy.ndarray
        uint8 (H, W, 3) RGB; white is each kernel's maximum.
    """
    from .preview import contact_sheet

    bank = np.asarray(bank, np.float32)
    if bank.ndim != 3 or len(bank) == 0:
        raise ParameterError(f"bank: expected (N, K, K) kernels, N >= 1, got shape {bank.shape}")
    zoom = max(1, cell // bank.shape[1])
    tiles = []
    for k in bank[:limit]:
        t = np.round(255 * k / max(float(k.max()), 1e-30)).astype(np.uint8)
        tiles.append(t.repeat(zoom, axis=0).repeat(zoom, axis=1))
    blank = np.zeros_like(tiles[0])
    rows = [tiles[i:i + cols] for i in range(0, len(tiles), cols)]
    if len(rows) > 1:
        rows[-1] += [blank] * (cols - len(rows[-1]))
    return contact_sheet(rows, gap=2)


def write_preview(path: str | os.PathLike, bank: np.ndarray, **options) -> Path:
    """Write :func:`preview_grid` of ``bank`` as a PNG, atomically; ``options`` go to it.

    Raises
    ------
    OutputError
        If the PNG cannot be written.
    """
    img = preview_grid(bank, **options)
    p = Path(path)
    with atomic_path(p, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(img[..., ::-1])):
            raise OutputError(p, "cv2.imwrite failed")
    return p
