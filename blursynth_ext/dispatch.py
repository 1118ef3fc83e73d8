"""One place that chooses between the NumPy, numba CPU and numba CUDA kernels.

``device`` is ``"auto"`` (CUDA when numba sees a GPU, else CPU), ``"cpu"``, ``"cuda"`` or
``"numpy"`` (the slow reference). The environment variable ``BLURSYNTH_DEVICE`` sets the default.
"""
from __future__ import annotations

import functools
import os

import numpy as np

__all__ = [
    "DEVICES", "cuda_available", "resolve_device", "warpsum", "encode_linear", "prefilter",
    "upsample2", "analyse_pair", "snap_flow", "fill_covered", "flow_color", "concurrent_kernels",
]

DEVICES = {
    "auto": "CUDA when a GPU is visible to numba, else the CPU",
    "cpu": "numba, parallel over the CPU cores",
    "cuda": "numba.cuda on the GPU",
    "numpy": "the NumPy reference (slow; for checking)",
}


@functools.lru_cache(maxsize=None)
def cuda_available() -> bool:
    """True if numba can run CUDA kernels here (a GPU and driver, or the simulator)."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # no driver, broken toolkit: the CPU path works regardless
        return False


def resolve_device(device: str | None = None) -> str:
    """Turn ``auto``/None into ``cuda`` or ``cpu``; reject unknown names."""
    from blursynth.errors import FlowBackendError, ParameterError

    device = device or os.environ.get("BLURSYNTH_DEVICE", "auto")
    if device not in DEVICES:
        raise ParameterError(f"device: expected one of {sorted(DEVICES)}, got {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise FlowBackendError("device 'cuda': numba finds no CUDA GPU here; use --device cpu")
    return device


def warpsum(ia, ib, fab, fba, times, weights, targets, acc, *, hard=None, smooth=None,
            fine=None, iters: int = 2, tau: float = 0.5, shift: float = 0.0,
            cubic: bool = False, up: int = 1, device: str | None = None) -> np.ndarray:
    """Accumulate flow-warped sub-frames; see :func:`blursynth_ext.warpsum.warpsum_reference`."""
    dev = resolve_device(device)
    if dev == "cuda":
        from .warpsum_cuda import warpsum_cuda as fn
    elif dev == "cpu":
        from .warpsum import warpsum_cpu as fn
    else:
        from .warpsum import warpsum_reference as fn
    return fn(ia, ib, fab, fba, times, weights, targets, acc, hard=hard, smooth=smooth,
              fine=fine, iters=iters, tau=tau, shift=shift, cubic=cubic, up=up)


@functools.lru_cache(maxsize=16)
def _tables(crf):
    from .encode import threshold_table

    thr = np.ascontiguousarray(crf.thresholds(), np.float32)
    return thr, threshold_table(thr)


def encode_linear(lin: np.ndarray, crf, scale: float = 1.0, *, device: str | None = None) -> np.ndarray:
    """Encode linear float values ``scale * lin`` to uint8 with ``crf``, rounding exactly.

    Parameters
    ----------
    lin : numpy.ndarray
        float32 linear values (any shape); clipped to [0, 1] after scaling.
    crf : blursynth.crf.CRF
        Camera response.
    scale : float
        Multiplier applied first (1 / the accumulated weight).

    Returns
    -------
    numpy.ndarray
        uint8 codes of the same shape.
    """
    from .encode import encode_cpu, encode_reference

    thr, table = _tables(crf)
    if resolve_device(device) == "numpy":
        return encode_reference(lin, thr, scale)
    return encode_cpu(lin, thr, table, scale)


def prefilter(img: np.ndarray, *, lut: np.ndarray | None = None, out: np.ndarray | None = None,
              device: str | None = None) -> np.ndarray:
    """Shifted-linear interpolation coefficients (:mod:`blursynth_ext.interp`).

    ``img`` is float32, or uint8 codes linearised through ``lut`` in the same pass; ``out``, a
    C-contiguous float32 array of the result's shape to write into, or None.
    """
    from .interp import prefilter_cpu, prefilter_reference

    if resolve_device(device) == "numpy":
        return _into(out, prefilter_reference(img if lut is None else lut[img]))
    return prefilter_cpu(img, lut=lut, out=out)


def upsample2(img: np.ndarray, *, lut: np.ndarray, out: np.ndarray | None = None,
              device: str | None = None) -> np.ndarray:
    """uint8 (H, W, 3) codes, linearised through ``lut``, upsampled 2x with Keys' cubic
    (:func:`blursynth_ext.interp.upsample2_reference`): float32 (2 H - 1, 2 W - 1, 3),
    written into ``out`` if given (as in :func:`prefilter`)."""
    from .interp import upsample2_cpu, upsample2_reference

    if resolve_device(device) == "numpy":
        return _into(out, upsample2_reference(lut[img]))
    return upsample2_cpu(img, lut=lut, out=out)


def _into(out: np.ndarray | None, result: np.ndarray) -> np.ndarray:
    # The NumPy references return a new array: copy it into out, checked as the CPU path does.
    from .interp import _out

    if out is None:
        return result
    _out(out, result.shape)[...] = result
    return out


def analyse_pair(fab, fba, ga, gb, textured, sx, sy, jac_max, vis_min, *, out=None,
                 device: str | None = None):
    """Consistency, visibility, second-order terms and hard test of a flow pair
    (:func:`blursynth_ext.flowcheck.analyse_reference`). Runs on the CPU (a small grid).
    ``out``: two C-contiguous float32 (h, w, 5) arrays for the augmented flows, or None."""
    from .flowcheck import analyse_cpu, analyse_reference

    if resolve_device(device) != "numpy":
        return analyse_cpu(fab, fba, ga, gb, textured, sx, sy, jac_max, vis_min, out=out)
    fab5, fba5, *rest = analyse_reference(fab, fba, ga, gb, textured, sx, sy, jac_max, vis_min)
    if out is not None:
        fab5, fba5 = _into(out[0], fab5), _into(out[1], fba5)
    return (fab5, fba5, *rest)


def snap_flow(flow, a, b, other, *, mask=None, radii=None, layers=(), bonus: float = 0.0,
              penalty: float = 0.0, tol: float = 1.0, border: bool = False,
              device: str | None = None) -> np.ndarray:
    """Snap a flow to one side's motion across its motion boundaries
    (:mod:`blursynth_ext.flowsnap`). Runs on the CPU (a small grid, or a band).

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (h, w, 2) flow from ``a`` to ``b`` in grid pixels.
    a, b, other : numpy.ndarray
        uint8 (h, w) grey frames on the flow grid; ``other`` is the frame one interval before
        ``a`` on the side away from ``b``, or None.
    mask : numpy.ndarray, optional
        uint8 (h, w): the pixels that may change. Default: the flow's
        :func:`~blursynth_ext.flowsnap.boundary_mask` for ``radii``.
    radii : sequence of int, optional
        Candidate distances in grid pixels. Default: :data:`~blursynth_ext.flowsnap.RADII`.
    layers, bonus, penalty, tol, border
        Affine motions offered at every pixel and the rules that go with them, as in
        :func:`~blursynth_ext.flowsnap.snap_reference`.

    Returns
    -------
    numpy.ndarray
        float32 (h, w, 2), the flow with the vectors in its boundary ramps replaced.
    """
    from .flowsnap import MARGIN, RADII, boundary_mask, snap_cpu, snap_reference

    radii = RADII if radii is None else radii
    mask = boundary_mask(flow, radii=radii) if mask is None else mask
    fn = snap_reference if resolve_device(device) == "numpy" else snap_cpu
    return fn(flow, a, b, other, mask, MARGIN, radii, layers=layers, bonus=bonus,
              penalty=penalty, tol=tol, border=border)


def fill_covered(flow, opposite, a, scale: float = 1.0, next_flows=None, *,
                 device: str | None = None) -> np.ndarray:
    """Give the points of ``a`` about to be covered in ``b`` the vector of the side they belong
    to, for a pair with no frame before ``a`` (:mod:`blursynth_ext.flowfill`). Runs on the CPU.

    Parameters
    ----------
    flow, opposite : numpy.ndarray
        float32 (h, w, 2) flows from ``a`` to ``b`` and from ``b`` to ``a``, in grid pixels.
    a : numpy.ndarray
        uint8 (h, w, 3) RGB (or (h, w) grey) frame ``a`` on the flow grid.
    scale : float
        The flow grid's size over the output's.
    next_flows : tuple of numpy.ndarray, optional
        The next pair's flows ``(F_bc, F_cb)``, ``F_bc`` snapped with ``a`` as its frame
        before: its about-to-be-covered points tell which side is behind. Without them colour
        alone decides.

    Returns
    -------
    numpy.ndarray
        float32 (h, w, 2), ``flow`` with the vectors of those points replaced.
    """
    from .flowfill import (BEHIND_RADIUS, behind, covered_cpu, covered_reference, fill_behind,
                           fill_cpu, fill_reference, grid_radii)

    radii, lam = grid_radii(scale)
    if resolve_device(device) == "numpy":
        covered, fill = covered_reference, fill_reference
    else:
        covered, fill = covered_cpu, fill_cpu
    holes = covered(flow, opposite)
    out = fill(flow, a, holes, radii, lam)
    if next_flows is not None:
        far = behind(covered(*next_flows), opposite)
        out = fill_behind(out, holes, far, BEHIND_RADIUS * scale)
    return out


def flow_color(f: np.ndarray, scale: float, *, device: str | None = None) -> np.ndarray:
    """Middlebury colours of the flow ``f`` (float (H, W, 2)), full saturation at length
    ``scale`` (:mod:`blursynth_ext.colorwheel`): uint8 (H, W, 3) RGB. Runs on the CPU."""
    from .colorwheel import color_cpu, color_reference

    fn = color_reference if resolve_device(device) == "numpy" else color_cpu
    return fn(f, scale)


def _touch(x):
    import numba

    @numba.njit(parallel=True)
    def one(a):
        for i in numba.prange(a.shape[0]):
            a[i] += 1.0

    one(x)


@functools.lru_cache(maxsize=None)
def concurrent_kernels() -> bool:
    """True if numba's threading layer accepts parallel kernels launched from several threads
    at once (``omp``, ``tbb``); ``workqueue`` aborts the process on such a launch."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # chosen at the first parallel launch: make one
        _touch(np.zeros(2))
        layer = numba.threading_layer()
    return layer in ("omp", "tbb")
