"""Compat/baseline mode: the blur of the original ``synthblur`` tool ("the seed method").

The seed project (Wieschollek et al., "Learning Blind Motion Deblurring", ICCV 2017) made its
blurry frames with a small C++/CUDA program, ``synthblur/convert``. This module reproduces its
blur, as a library function, so that blursynth's flow-based synthesis
(:mod:`blursynth.flowblur`) can be compared with it and old datasets can be regenerated. It is
a *baseline*, not a recommended way to make blur: it averages gamma-encoded values, loses all
sub-pixel motion, has no occlusion handling and an effective exposure of two frame intervals.

The seed's algorithm, for a centre frame ``I_t`` with neighbours ``I_{t-1}`` and ``I_{t+1}``
(see ``shared/research/seed-synthesis.md`` section 1.2):

1. Farneback flow (pyramid scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5,
   poly_sigma 1.2, flags 0) on grey frames, from ``I_t`` to ``I_{t-1}`` and from ``I_t`` to
   ``I_{t+1}``. Each flow component is truncated toward zero to an integer.
2. Ratios from a float32 ``linspace`` with ``steps = 20``: before the centre ``1, 18/19, ...,
   1/19``, after it ``1/19, ..., 1``: 38 sub-frames; the centre frame itself (ratio 0) is not
   one of them.
3. Each sub-frame starts as a copy of ``I_t``; every source pixel ``x`` (in raster order) is
   written to ``int(x + r * trunc(f(x)))``, clamped to the image, overwriting what was there:
   the last writer wins, and pixels nobody writes keep the sharp value.
4. The blurry frame is the mean of the 38 sub-frames, rounded (ties to even) and saturated to
   8 bits. Everything stays in encoded 8-bit values: no linearisation.

For locally constant integer flows this is ``B(x) = mean_k I_t(x - s_k)`` with displacements
``s_k = floor(r_k f)``, ``r_k`` in ``{1/19, ..., 1}``, ``f`` each of the two flows: a blur path
from the pixel's position in ``I_{t-1}`` to its position in ``I_{t+1}``, i.e. an exposure of
**two** frame intervals (:data:`SEED_EXPOSURE`).

Differences from the original, all deliberate:

- The original first resized every frame by 0.5 (bicubic). Comparisons here are made at the
  input resolution, so :func:`synthblur_frame` and :func:`synthblur_frames` default to
  ``downscale=1.0``; pass ``downscale=SEED_SCALE`` (0.5) for the original behaviour.
- The original ran OpenCV's CUDA Farneback; this uses the CPU one
  (``cv2.calcOpticalFlowFarneback`` through :func:`blursynth.flow.get_backend`) with the same
  parameters. The two implementations differ slightly, so truncated flows can differ by one
  pixel where the flow is close to an integer.
- The original wrote lossy ``mp4v`` videos; here frames are returned as arrays and the caller
  decides how to store them.

Apart from the flow estimator, the arithmetic is reproduced bit for bit: the float32 ratios,
the mixed float32/float64 target computation and its truncation, the clamp, the overwrite
order, and OpenCV's float32 scale-and-round in the final 8-bit conversion. The mixed-precision
target computation has a side effect the seed's authors surely did not intend: where a
truncated flow component is 0 (or a multiple of 19 px), about half of the splats land one pixel
left/up of ``x + floor(r s)``, so static regions come out jittered (see :func:`splat_average`).
``seed_rounding=False`` switches to the exact positions of the model above; the default keeps
the original's behaviour.

The splatting runs in a numba kernel (sub-frames in parallel, each one a serial raster-order
loop, so "last writer wins" is exact), so that timings against it are fair to the baseline.
"""
from __future__ import annotations

import numbers
from typing import Iterable, Iterator

import cv2
import numpy as np

from .errors import ParameterError
from .flow import FARNEBACK_DEFAULTS, FlowBackend, get_backend, to_grey

__all__ = [
    "SEED_STEPS",
    "SEED_SCALE",
    "SEED_EXPOSURE",
    "SEED_FARNEBACK",
    "seed_ratios",
    "seed_flows",
    "splat_average",
    "synthblur_frame",
    "iter_synthblur",
    "synthblur_frames",
]

#: ``steps`` of the original tool: 19 sub-frames on each side of the centre frame.
SEED_STEPS = 20
#: The original tool's resize factor, applied (bicubic) to every frame before anything else.
SEED_SCALE = 0.5
#: Effective exposure of the seed blur, in frame intervals: from t - 1 to t + 1.
SEED_EXPOSURE = 2.0
#: Farneback parameters of the original tool (blursynth.flow's defaults are exactly these).
SEED_FARNEBACK: dict[str, float | int] = dict(FARNEBACK_DEFAULTS)


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
        raise ParameterError(f"steps: expected an integer >= 2, got {steps!r}")
    return int(steps)


def seed_ratios(steps: int = SEED_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """The seed's sub-frame ratios, computed in float32 exactly as its ``linspace`` did.

    Parameters
    ----------
    steps : int
        Points of each ``linspace`` (the seed used 20); each side gets ``steps - 1`` ratios.

    Returns
    -------
    before, after : numpy.ndarray
        float32 (steps - 1,): ``linspace(1, 0, steps)`` without its last point, and
        ``linspace(0, 1, steps)`` without its first point.

    Notes
    -----
    The seed's ``linspace`` computes ``start + delta * i`` in float32 with
    ``delta = (end - start) / (steps - 1)``, so the "before" ratios are ``1 - i delta`` rounded,
    not the complements of the "after" ones; the last "after" ratio is exactly 1 for
    ``steps = 20``.

    Examples
    --------
    >>> b, a = seed_ratios(3)
    >>> b.tolist(), a.tolist()
    ([1.0, 0.5], [0.5, 1.0])
    """
    steps = _check_steps(steps)
    f32 = np.float32

    def linspace(start: float, end: float) -> np.ndarray:
        delta = (f32(end) - f32(start)) / (f32(steps) - f32(1))
        # numpy float32 scalar arithmetic rounds each operation to float32, like the C++ code.
        return np.array([f32(start) + delta * f32(i) for i in range(steps)], np.float32)

    return linspace(1.0, 0.0)[:-1], linspace(0.0, 1.0)[1:]


_kernel = None


def _get_kernel():
    """Compile (once, cached on disk) the numba splat-and-average kernel."""
    global _kernel
    if _kernel is not None:
        return _kernel
    import numba

    @numba.njit(parallel=True, nogil=True, cache=True)
    def kernel(cur, flows, ratios, numer, inv_n, n_chunk, seed_rounding, out):
        # cur (H, W, 3) uint8; flows (2, H, W, 2) int32 (before, after); ratios (2, n) float32
        # and their exact numerators over n (for seed_rounding=False); n_chunk: groups of
        # sub-frames run in parallel (one accumulator each).
        h, w = cur.shape[0], cur.shape[1]
        n_side = ratios.shape[1]
        n_sub = 2 * n_side
        acc = np.zeros((n_chunk, h * w, 3), np.int32)
        src = cur.reshape(h * w, 3)
        # Sub-frames are independent, so they run in parallel; within one sub-frame the splat
        # is a serial raster-order loop, which is what makes "last writer wins" exact.
        for c in numba.prange(n_chunk):
            who = np.empty(h * w, np.int32)  # last source pixel written to each target
            a = acc[c]
            for j in range(c, n_sub, n_chunk):
                side = j // n_side
                r = np.float64(ratios[side, j % n_side])
                k = numer[side, j % n_side]
                keep = 1.0 - r
                who[:] = -1
                for y in range(h):
                    for x in range(w):
                        sx = flows[side, y, x, 0]
                        sy = flows[side, y, x, 1]
                        if seed_rounding:
                            # C++: int(float(r * float(x + sx)) + double(1 - r) * x); the float32
                            # product is exact in float64, so rounding it once to float32 matches.
                            tx = int(np.float64(np.float32(r * np.float64(x + sx))) + keep * x)
                            ty = int(np.float64(np.float32(r * np.float64(y + sy))) + keep * y)
                        else:
                            # The idealised model: floor(x + k s / n), in integers (floor division).
                            tx = x + (k * sx) // n_side
                            ty = y + (k * sy) // n_side
                        tx = w - 1 if tx >= w else (0 if tx < 0 else tx)
                        ty = h - 1 if ty >= h else (0 if ty < 0 else ty)
                        who[ty * w + tx] = y * w + x
                for t in range(h * w):
                    s = who[t]
                    if s < 0:  # a hole keeps the sharp pixel
                        s = t
                    a[t, 0] += src[s, 0]
                    a[t, 1] += src[s, 1]
                    a[t, 2] += src[s, 2]
        res = out.reshape(h * w, 3)
        for t in numba.prange(h * w):
            for ch in range(3):
                total = 0
                for c in range(n_chunk):
                    total += acc[c, t, ch]
                # OpenCV's convertTo(CV_8U, 1/n) from float32: float32 multiply, round half to
                # even, saturate (the sums are integers, so float32 holds them exactly).
                v = np.rint(np.float32(np.float64(np.float32(total)) * np.float64(inv_n)))
                res[t, ch] = np.uint8(min(max(v, 0.0), 255.0))

    _kernel = kernel
    return kernel


def _check_flow(name: str, f: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    f = np.asarray(f)
    if f.shape != shape + (2,):
        raise ParameterError(f"{name}: expected shape {shape + (2,)}, got {f.shape}")
    if not np.issubdtype(f.dtype, np.number):
        raise ParameterError(f"{name}: expected a numeric flow field, got dtype {f.dtype}")
    if np.issubdtype(f.dtype, np.floating) and not np.all(np.isfinite(f)):
        raise ParameterError(f"{name}: expected finite flow values, got NaN or inf")
    # astype truncates toward zero, like the seed's float -> int conversion.
    return f.astype(np.int32)


def splat_average(cur: np.ndarray, flow_prev: np.ndarray, flow_next: np.ndarray, *,
                  steps: int = SEED_STEPS, seed_rounding: bool = True) -> np.ndarray:
    """The seed's sub-frame splatting and averaging, for given flows.

    Parameters
    ----------
    cur : numpy.ndarray
        uint8 (H, W, 3) centre frame.
    flow_prev, flow_next : numpy.ndarray
        (H, W, 2) flows (dx, dy) from ``cur`` to the previous and to the next frame, in the
        convention ``cur(x) ~ other(x + f(x))``. Float flows are truncated toward zero per
        component first, as the seed did; integer flows are used as they are.
    steps : int
        The seed's ``steps`` (20): ``steps - 1`` sub-frames per side.
    seed_rounding : bool
        True (default) computes each target exactly as the C++ did (see Notes); False uses the
        idealised model ``x + floor(k s / (steps - 1))`` in exact integer arithmetic.

    Returns
    -------
    numpy.ndarray
        uint8 (H, W, 3): the mean of the ``2 (steps - 1)`` forward-splatted sub-frames,
        rounded half to even and saturated.

    Raises
    ------
    ParameterError
        For a frame that is not uint8 (H, W, 3), a flow of the wrong shape or with NaN/inf,
        or ``steps < 2``.

    Notes
    -----
    The seed computed a target column as ``int(ratio * (col + s) + (1.0 - ratio) * col)`` with
    a float32 ``ratio``: the first product is rounded to float32, the rest is float64, and the
    conversion truncates. This matters only where ``ratio * s`` is an integer and ``ratio < 1``,
    i.e. where the truncated flow component ``s`` is 0 (or a multiple of 19 px): there the exact
    sum is the integer ``col + ratio s``, and when the float32 rounding goes down the computed
    sum lands just below it and the pixel moves one further left (or up). That happens for about 47 % of
    (column, ratio) pairs. So the seed blur of a *static* clip is not the clip itself: it is
    jittered by up to one pixel and shifted by about half a pixel up and left; so are static
    regions and the slow axis (``|f| < 1`` px) of moving ones. Elsewhere ``ratio s`` is at
    least 1/19 away from an integer and both variants agree (after the clamp, truncation and
    floor also agree left of the image). ``seed_rounding=True`` keeps that behaviour (it is
    what the original produced); ``seed_rounding=False`` gives the blur its authors intended.

    Examples
    --------
    With exact positions a static scene (zero flow) is returned unchanged:

    >>> img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    >>> zero = np.zeros((2, 3, 2), np.float32)
    >>> bool(np.array_equal(splat_average(img, zero, zero, seed_rounding=False), img))
    True
    """
    steps = _check_steps(steps)
    cur = np.asarray(cur)
    if cur.dtype != np.uint8 or cur.ndim != 3 or cur.shape[2] != 3:
        raise ParameterError(f"cur: expected uint8 (H, W, 3), got {cur.dtype} {cur.shape}")
    shape = cur.shape[:2]
    flows = np.stack([_check_flow("flow_prev", flow_prev, shape),
                      _check_flow("flow_next", flow_next, shape)])
    before, after = seed_ratios(steps)
    ratios = np.stack([before, after])
    n = steps - 1
    numer = np.stack([np.arange(n, 0, -1), np.arange(1, n + 1)]).astype(np.int64)
    out = np.empty_like(cur)
    inv_n = np.float32(1.0 / (2 * (steps - 1)))  # OpenCV casts the double scale to float
    # Chosen here, not inside the kernel: numba.get_num_threads() there would stop on-disk caching.
    import numba

    n_chunk = max(1, min(numba.get_num_threads(), 2 * (steps - 1)))
    _get_kernel()(np.ascontiguousarray(cur), flows, ratios, numer, inv_n, n_chunk,
                  bool(seed_rounding), out)
    return out


def _scale(frame: np.ndarray, downscale: float) -> np.ndarray:
    if downscale == 1.0:
        return frame
    # As the seed: cv::resize(input, small, Size(), s, s, INTER_CUBIC).
    return cv2.resize(frame, None, fx=downscale, fy=downscale, interpolation=cv2.INTER_CUBIC)


def _check_downscale(downscale: float) -> float:
    if (isinstance(downscale, bool) or not isinstance(downscale, numbers.Real)
            or not 0 < downscale <= 1):
        raise ParameterError(f"downscale: expected 0 < s <= 1, got {downscale!r}")
    return float(downscale)


def _check_frame(name: str, frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ParameterError(f"{name}: expected uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


def _farneback(backend: FlowBackend | None) -> FlowBackend:
    return backend if backend is not None else get_backend("farneback", **SEED_FARNEBACK)


def seed_flows(prev: np.ndarray, cur: np.ndarray, nxt: np.ndarray, *,
               backend: FlowBackend | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The seed's two flows: Farneback from ``cur`` to ``prev`` and from ``cur`` to ``nxt``.

    Parameters
    ----------
    prev, cur, nxt : numpy.ndarray
        uint8 (H, W, 3) RGB frames (grey conversion is BT.601, as the seed's BGR2GRAY).
    backend : FlowBackend, optional
        A Farneback backend to reuse; default: one with :data:`SEED_FARNEBACK`.

    Returns
    -------
    flow_prev, flow_next : numpy.ndarray
        float32 (H, W, 2), not yet truncated.
    """
    be = _farneback(backend)
    g = to_grey(cur)
    return be(g, to_grey(prev)), be(g, to_grey(nxt))


def synthblur_frame(prev: np.ndarray, cur: np.ndarray, nxt: np.ndarray, *,
                    steps: int = SEED_STEPS, downscale: float = 1.0, seed_rounding: bool = True,
                    backend: FlowBackend | None = None) -> np.ndarray:
    """One blurry frame made the way the original ``synthblur`` tool made it.

    Parameters
    ----------
    prev, cur, nxt : numpy.ndarray
        uint8 (H, W, 3) RGB frames at t - 1, t and t + 1, all the same size.
    steps : int
        The seed's ``steps`` (20): 19 sub-frames on each side of ``cur``.
    downscale : float
        Resize factor applied (bicubic) to all three frames first. The original used 0.5
        (:data:`SEED_SCALE`); the default 1.0 keeps the input resolution so that results can be
        compared with other methods pixel for pixel.
    seed_rounding : bool
        Reproduce the original's target arithmetic, one-pixel quirk included (default); see
        :func:`splat_average`.
    backend : FlowBackend, optional
        Farneback backend to reuse across calls (built with :data:`SEED_FARNEBACK` if None).

    Returns
    -------
    numpy.ndarray
        uint8 (h, w, 3) blurry frame centred on ``cur``, with an effective exposure of two frame
        intervals (:data:`SEED_EXPOSURE`); ``(h, w)`` is the size after ``downscale``.

    Raises
    ------
    ParameterError
        For frames that are not uint8 (H, W, 3) of one size, or a bad ``steps``/``downscale``.

    See Also
    --------
    splat_average : the splatting core, for given flows.
    blursynth.flowblur.flowblur_frames : the physically based synthesis this is a baseline for.
    """
    downscale = _check_downscale(downscale)
    frames = [_scale(_check_frame(n, f), downscale)
              for n, f in (("prev", prev), ("cur", cur), ("nxt", nxt))]
    if len({f.shape for f in frames}) != 1:
        raise ParameterError(f"frames: expected one size, got {[f.shape for f in frames]}")
    fp, fn = seed_flows(*frames, backend=backend)
    return splat_average(frames[1], fp, fn, steps=steps, seed_rounding=seed_rounding)


def iter_synthblur(frames: Iterable[np.ndarray], *, steps: int = SEED_STEPS,
                   downscale: float = 1.0, seed_rounding: bool = True
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream the seed blur over a clip, holding three frames at a time.

    Parameters
    ----------
    frames : iterable of numpy.ndarray
        uint8 (H, W, 3) RGB frames in time order.
    steps, downscale, seed_rounding : see :func:`synthblur_frame`.

    Yields
    ------
    blurry, sharp : numpy.ndarray
        uint8 (h, w, 3) for input frames 1 .. N - 2 (the first and last have no two neighbours
        and are dropped, as in the seed); ``sharp`` is the (downscaled) centre frame.
    """
    steps = _check_steps(steps)
    downscale = _check_downscale(downscale)
    backend = _farneback(None)
    window: list[np.ndarray] = []
    for i, frame in enumerate(frames):
        f = _scale(_check_frame(f"frame {i}", frame), downscale)
        if window and f.shape != window[-1].shape:
            raise ParameterError(f"frame {i}: expected shape {window[-1].shape}, got {f.shape}")
        window = (window + [f])[-3:]
        if len(window) == 3:
            fp, fn = seed_flows(*window, backend=backend)
            yield splat_average(window[1], fp, fn, steps=steps,
                                seed_rounding=seed_rounding), window[1]


def synthblur_frames(frames: Iterable[np.ndarray], *, steps: int = SEED_STEPS,
                     downscale: float = 1.0, seed_rounding: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The seed blur of a whole clip, as arrays.

    Parameters
    ----------
    frames : numpy.ndarray or iterable of numpy.ndarray
        uint8 (N, H, W, 3) RGB frames in time order.
    steps, downscale, seed_rounding : see :func:`synthblur_frame`.

    Returns
    -------
    blurry, sharp : numpy.ndarray
        uint8 (N - 2, h, w, 3): output ``i`` is centred on input ``i + 1``; first and last
        input frames are dropped, as in the seed. Empty (0, h, w, 3) arrays for N < 3.
    """
    pairs = list(iter_synthblur(frames, steps=steps, downscale=downscale,
                                seed_rounding=seed_rounding))
    if not pairs:
        shape = np.shape(frames)[1:] if isinstance(frames, np.ndarray) else (0, 0, 3)
        if downscale != 1.0 and len(shape) == 3:
            w, h = round(shape[1] * downscale), round(shape[0] * downscale)
            shape = (h, w, 3)
        empty = np.zeros((0,) + tuple(shape), np.uint8)
        return empty, empty.copy()
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
