"""Flow-based motion blur: integrate each exposure from flow-interpolated sub-frames.

Each output frame integrates the scene over its exposure window ``[c - e K / 2, c + e K / 2]``
(``e`` in frame intervals, ``K`` the decimation factor, ``c`` the centre input frame, which is also
the sharp target). Between every two decoded frames the scene at intermediate times is rebuilt by
backward-warping both neighbours along the bidirectional flow, weighted by occlusion
(:mod:`blursynth_ext.warpsum`); the number of sub-frames per interval is chosen from the flow so
that no pixel moves more than ``max_step`` pixels between sub-frames. Everything is averaged in
linear light (:mod:`blursynth.crf`) and encoded once at the end, with rounding.

The core, :func:`flowblur_frames`, is a generator over in-memory frames; :func:`flowblur_video`
in :mod:`blursynth.flowblur_video` reads, writes and records.
"""
from __future__ import annotations

import collections
import math
import queue
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable, Iterator

import cv2
import numba
import numpy as np

from blursynth_ext.dispatch import (analyse_pair, concurrent_kernels, encode_linear,
                                    fill_covered, prefilter, snap_flow, upsample2, warpsum)
from blursynth_ext.interp import TAU
from blursynth_ext.warpsum import SEGMENT

from .crf import CRF, decode_u8, get_crf
from .errors import ParameterError
from .flow import BACKENDS, DIS_PRESETS, get_backend, runs_as, to_grey
from .flowfine import fine_flows


__all__ = [
    "FlowBlurParams",
    "ACCURATE",
    "flow_backend",
    "flow_backend_name",
    "flow_scale_of",
    "output_size",
    "interp_of",
    "with_given_flows",
    "Window",
    "BlurFrame",
    "exposure_windows",
    "interval_samples",
    "subframes_per_interval",
    "flowblur_frames",
    "flowblur_array",
]


@dataclass(frozen=True)
class FlowBlurParams:
    """Parameters of flow-based blur synthesis (every CLI option of ``flowblur`` maps to one).

    Parameters
    ----------
    exposure : float
        Exposure ``e`` in (0, 2], in frame intervals of the output (1.0 is a 360-degree shutter).
    decimate : int
        Input frames per output frame ``K`` (high-frame-rate sources: 240 fps footage with
        ``K = 8`` gives 30 fps output whose exposure spans ``e K`` input intervals).
    crf : str
        Camera response used to linearise inputs and encode outputs (``srgb``, ``gamma:2.2``,
        ``exp:7``, ``linear``, ``table:FILE``).
    flow : str
        Flow backend (see :data:`blursynth.flow.BACKENDS`).
    flow_preset : str or None
        DIS preset (``ultrafast``, ``fast``, ``medium``) as OpenCV defines it; None means
        ``medium``, with 12 instead of 25 gradient-descent iterations per patch on flow grids
        of 360 rows or more without ``refine_boundaries``, and a patch every 6 instead of 3 px
        where that grid is also smaller than the frames (as accurate there, and faster).
        At ``flow_scale = 0.5`` it is about as fast as ``fast`` at full size and more accurate
        on motion boundaries. Other backends take no preset.
    flow_scale : float or None
        Resolution at which flow is computed, as a fraction of the frame size (0, 1]. None
        (default): half size for frames 720 px or more on their shorter side, and finer below
        that, up to full size, so the flow grid keeps 360 rows (:func:`flow_scale_of`).
    max_step : float
        Largest motion, in pixels, allowed between consecutive sub-frames.
    local_subframes : bool
        Apply `max_step` piece by piece: the pixels of each 128-pixel piece of a row, away
        from motion boundaries, get only as many sub-frames as the fastest motion in that
        piece needs (never more than the interval's count, which the fastest motion in the
        frame sets, and that count where a piece would save less than a quarter of it).
        The same rule, where it is needed; static and slow regions cost less.
    min_subframes, max_subframes : int
        Bounds on the number of sub-frames per input frame interval.
    scale : float
        Output size as a fraction of the input size (resampled in linear light).
    scene_cut : float
        Fraction of pixels whose flow-compensated grey difference exceeds 0.1 above which an
        interval is a scene cut; exposures spanning a cut are skipped. ``1`` disables detection.
    interp : {"linear", "upsampled", "cubic"} or None
        How sub-frames sample the frames: ``linear``, shifted-linear interpolation of
        prefiltered coefficients (2x2 samples); ``upsampled``, bilinear in the frames
        upsampled 2x with Keys' cubic (2x2 samples, 4x the memory; at 720p +0.1 to +2.2 dB of
        mean over ``linear`` on the benchmark scenes, and translation's worst tile 36.9 instead
        of 35.2 dB, at ~7% less speed); ``cubic``, Keys' cubic convolution (a = -1/2, 4x4
        samples) of the frames (+1.4 to +5.2 dB of mean over ``linear``, at 1.6x the CPU time
        at 720p). None (default): ``cubic`` below 720 rows, ``upsampled`` from 720 rows
        (:func:`interp_of`).
    iters : int or None
        Fixed-point iterations per sub-frame sample (see :mod:`blursynth_ext.warpsum`). None
        (default): 2 in pairs with fine flows (``fine_boundaries``; one iteration there leaves
        the occlusion scene's worst tile at 33 dB), else 1 (a second changes nothing on the
        grid).
    tau : float
        Occlusion softness: fixed-point residual, in pixels, at which a side's weight halves.
    snap_boundaries : bool
        Where the flow ramps across a motion boundary, give each pixel the vector, found a few
        pixels away on one side or the other, that best explains the other frame of the pair
        or (for points about to be covered) the frame beyond (:mod:`blursynth_ext.flowsnap`).
        In a clip's first pair, which has no frame beyond, the points about to be covered take
        the motion of the surface the next pair finds behind, or else of the neighbour nearest
        in colour (:mod:`blursynth_ext.flowfill`).
        On by default: +1.4 dB mean on the occlusion scene at 720p, +2.3 dB at 360p, the other
        scenes within 0.1 dB; about 2% more time on a camera pan, 10% with moving objects.
    refine_boundaries : bool
        Recompute the flow around motion boundaries and occlusions (the regions where the
        sub-frames are iterated) with DIS matching patches down to the flow grid's own
        resolution: sharper boundaries where they matter, at a fraction of the cost of doing
        it everywhere; snapping, if on, runs after it (the occlusion scene at 720p: +0.4 dB
        over snapping alone). The cost grows with the length of the moving edges: at 720p,
        two moving objects take about 1.5x the time, a camera pan 1.1x. DIS backend only.
    fine_boundaries : bool
        Where the flow grid is smaller than the frames and the flow is more than one affine
        motion (objects moving over the background), snap it again at the output's resolution
        near motion boundaries, with the frame's affine motion layers as candidates, for the
        fixed point of the warp (:mod:`blursynth.flowfine`). Needs ``snap_boundaries``. The
        occlusion scene at 720p: worst tile 32.98 -> 36.02 dB at e = 1, 34.36 -> 38.11 at
        e = 2; the other scenes, one motion each, are untouched.
    """

    exposure: float = 1.0
    decimate: int = 1
    crf: str = "srgb"
    flow: str = "dis"
    flow_preset: str | None = None
    flow_scale: float | None = None
    max_step: float = 1.0
    local_subframes: bool = True
    min_subframes: int = 1
    max_subframes: int = 64
    scale: float = 1.0
    scene_cut: float = 0.5
    interp: str | None = None
    iters: int | None = None
    tau: float = 0.5
    snap_boundaries: bool = True
    refine_boundaries: bool = False
    fine_boundaries: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.exposure <= 2:
            raise ParameterError(f"exposure: expected 0 < e <= 2 frame intervals, got {self.exposure}")
        if int(self.decimate) != self.decimate or self.decimate < 1:
            raise ParameterError(f"decimate: expected an integer >= 1, got {self.decimate}")
        if self.flow_scale is not None and not 0 < self.flow_scale <= 1:
            raise ParameterError(f"flow_scale: expected 0 < s <= 1, got {self.flow_scale}")
        if not 0 < self.scale <= 1:
            raise ParameterError(f"scale: expected 0 < s <= 1, got {self.scale}")
        if not self.max_step > 0:
            raise ParameterError(f"max_step: expected > 0 pixels, got {self.max_step}")
        if not 1 <= self.min_subframes <= self.max_subframes:
            raise ParameterError(
                f"subframes: expected 1 <= min_subframes <= max_subframes, got "
                f"{self.min_subframes} and {self.max_subframes}")
        if not 0 < self.scene_cut <= 1:
            raise ParameterError(f"scene_cut: expected 0 < fraction <= 1, got {self.scene_cut}")
        if self.interp not in (None, *INTERPOLATORS):
            raise ParameterError(f"interp: expected one of {INTERPOLATORS} or None, got "
                                 f"{self.interp!r}")
        if (self.iters is not None and self.iters < 1) or self.tau <= 0:
            raise ParameterError(f"iters/tau: expected iters >= 1 and tau > 0, got {self.iters}, {self.tau}")
        get_crf(self.crf)  # validates the spec
        # The backend and its preset, checked before any work starts.
        if self.flow not in BACKENDS:
            raise ParameterError(f"flow: expected one of {sorted(BACKENDS)}, got {self.flow!r}")
        if self.flow_preset is not None:
            if self.flow not in ("dis", "auto", "cuda"):
                raise ParameterError(f"flow_preset: only the dis backend has presets, got "
                                     f"{self.flow_preset!r} with flow {self.flow!r}")
            if self.flow_preset not in DIS_PRESETS:
                raise ParameterError(f"flow_preset: expected one of {sorted(DIS_PRESETS)}, "
                                     f"got {self.flow_preset!r}")

    def to_dict(self) -> dict:
        return asdict(self)


# flowblur's own DIS default (blursynth.flow defaults to "fast" for one-off flows): the medium
# preset, with 12 gradient-descent iterations per patch instead of its 25 on flow grids of 360
# rows or more: 3 ms less per 640x360 flow, the same fidelity there (every benchmark scene
# within 0.1 dB of mean at 360p and 720p, worst tiles -0.6 to +1.1 dB). On small grids the
# pyramid is shallow and needs them all (the 48x80 demo: 34.8 against 39.2 dB), and so does
# `refine_boundaries` (the fast scene at 720p, e = 2: worst tile 35.2 against 43.3 dB).
# Where the grid is also smaller than the frames (720p and up), patches every 6 px instead of
# every 3: half the flow time (27 against 46 ms per 720p frame, both flows, one thread) at the
# same fidelity (720p scenes within 0.14 dB of mean at e = 1 and 2, worst tiles -0.4 to +1.0
# dB). On a full-size grid (360p) the occlusion scene's worst tile drops from 37.4 to 34.8 dB
# with it.
FLOWBLUR_DIS_PRESET = "medium"
FLOWBLUR_DIS_DESCENT = 12
FLOWBLUR_DIS_STRIDE = 6

#: The accurate settings (``blursynth flowblur --accurate``; ``FlowBlurParams(**ACCURATE)``):
#: DeepFlow on a full-size flow grid, 2 fixed-point iterations per sample. On the 720p
#: benchmark it scores above the default on every scene (the occlusion scene: mean 52.9
#: against 50.4 dB), at about 5 s of flow per pair on 2 cores instead of ~30 ms.
ACCURATE: dict = {"flow": "deepflow", "flow_scale": 1.0, "iters": 2}

#: Values of ``FlowBlurParams.interp``.
INTERPOLATORS = ("linear", "upsampled", "cubic")

# Frames of fewer rows than this (after `scale`) get the finer, dearer defaults: a flow grid
# of up to full size, cubic interpolation.
FINE_BELOW = 720

# The flow grid's shorter side that the automatic flow scale keeps (down to half size).
AUTO_FLOW_GRID = FINE_BELOW // 2


def output_size(p: FlowBlurParams, height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` of the outputs for inputs of this size: ``p.scale`` of it, rounded."""
    if p.scale == 1.0:
        return height, width
    return max(1, round(height * p.scale)), max(1, round(width * p.scale))


def flow_scale_of(p: FlowBlurParams, height: int, width: int) -> float:
    """The flow scale used on frames of this size (after ``p.scale``).

    ``p.flow_scale`` if set; otherwise ``min(1, max(0.5, 360 / min(height, width)))``. Half
    size is the cheaper choice where the frames are large (at 720p it keeps the flow grid at
    640x360); on smaller frames DIS's 8-pixel patches on a half-size grid span 16 output pixels
    and blur motion boundaries. At 360p a full-size grid gives +1.0 dB of mean and +1.0 dB on
    the worst tile on the occlusion benchmark (e = 1), +1.0 and +0.8 dB on rotation_zoom, at
    2.2x the time: 16 instead of 35 frames/s end to end on 2 cores.
    """
    if p.flow_scale is not None:
        return float(p.flow_scale)
    return min(1.0, max(0.5, AUTO_FLOW_GRID / max(1, min(height, width))))


def interp_of(p: FlowBlurParams, height: int, width: int) -> str:
    """The interpolator used on frames of this size (after ``p.scale``): ``p.interp`` if set;
    otherwise ``cubic`` when the shorter side is below 720 px, ``upsampled`` from 720 px."""
    if p.interp is not None:
        return p.interp
    return "cubic" if min(height, width) < FINE_BELOW else "upsampled"


def flow_backend_name(p: FlowBlurParams) -> str:
    """The backend that runs for ``p``: ``auto`` resolved, ``cuda`` without CUDA -> ``dis``."""
    return runs_as(p.flow)


def flow_backend(p: FlowBlurParams, grid: tuple[int, int] | None = None,
                 frame: tuple[int, int] | None = None):
    """The flow backend object for ``p`` (see :func:`blursynth.flow.get_backend`) on a flow
    grid of ``grid`` = (rows, columns) for frames of ``frame`` = (rows, columns), if known.

    ``cuda`` where OpenCV has no CUDA support falls back to ``dis`` with a warning
    (:func:`flow_backend_name` says which one runs; the driver records it). A preset given
    with ``cuda`` applies to that fallback only.
    """
    name = runs_as(p.flow, warn=True)
    if name == "dis":
        if p.flow_preset is not None:
            return get_backend("dis", preset=p.flow_preset)
        if grid is None or min(grid) < AUTO_FLOW_GRID or p.refine_boundaries:
            return get_backend("dis", preset=FLOWBLUR_DIS_PRESET)
        tuned = {"descent_iterations": FLOWBLUR_DIS_DESCENT}
        if frame is not None and grid[0] < frame[0]:
            tuned["patch_stride"] = FLOWBLUR_DIS_STRIDE
        return get_backend("dis", preset=FLOWBLUR_DIS_PRESET, **tuned)
    return get_backend(name)


class _FlowPair:
    """Both flows of a frame pair, ``(F_ab, F_ba)``.

    On the CPU backends the two directions run at once, in two threads with one OpenCV thread
    each: DIS's own two-thread split costs ~45% more CPU for a smaller speed-up (720p, medium
    preset at half size: 65 CPU-ms and 32 ms per pair, against 47 and 25 this way).
    """

    def __init__(self, p: FlowBlurParams, grid: tuple[int, int], frame: tuple[int, int]):
        self._fwd = flow_backend(p, grid, frame)
        name = flow_backend_name(p)
        self._pool = None
        self._bwd = self._fwd
        if name != "cuda":
            self._bwd = get_backend(name, **self._fwd.options)
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="blursynth-flow")

    def __call__(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._pool is None:
            return self._fwd(a, b), self._bwd(b, a)
        n = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            back = self._pool.submit(self._bwd, b, a)
            return self._fwd(a, b), back.result()
        finally:
            cv2.setNumThreads(n)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


class _GivenFlows:
    """Flows supplied by the caller, ``(F_ab, F_ba)`` per pair in the frames' own pixels,
    served as :class:`_FlowPair` serves the backend's: on the flow grid, in grid pixels.

    A grid pixel takes the vector at the frame pixel nearest its centre (interpolating across a
    motion boundary would invent motions no surface has).
    """

    def __init__(self, flows: Iterable, grid: tuple[int, int], frame: tuple[int, int]):
        self._it = iter(flows)
        self._frame = frame
        self._n = 0
        (gh, gw), (h, w) = grid, frame
        self._ys = np.minimum(((np.arange(gh) + 0.5) * (h / gh)).astype(np.intp), h - 1)
        self._xs = np.minimum(((np.arange(gw) + 0.5) * (w / gw)).astype(np.intp), w - 1)
        self._to_grid = np.float32([gw / w, gh / h])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._n += 1
        try:
            given = tuple(next(self._it))
        except StopIteration:
            raise ParameterError(f"flows: ran out after {self._n - 1} pairs; expected one "
                                 f"(F_ab, F_ba) per pair of consecutive frames") from None
        want = self._frame + (2,)
        if len(given) != 2 or any(np.shape(f) != want for f in given):
            raise ParameterError(f"flows: pair {self._n} (frames {self._n - 1} and {self._n}): "
                                 f"expected two {want} arrays, got shapes "
                                 f"{[np.shape(f) for f in given]}")
        out = []
        for f in given:
            f = np.asarray(f, np.float32)
            if not np.isfinite(f).all():
                raise ParameterError(f"flows: pair {self._n} holds NaN or infinite vectors")
            out.append(np.ascontiguousarray(f[self._ys][:, self._xs] * self._to_grid))
        return out[0], out[1]

    def close(self) -> None:
        pass


def with_given_flows(p: FlowBlurParams) -> FlowBlurParams:
    """``p`` as it applies to flows the caller gives: the flow grid full size unless
    ``p.flow_scale`` is set (a coarser grid would give away the flows' detail)."""
    return p if p.flow_scale is not None else replace(p, flow_scale=1.0)


@dataclass(frozen=True)
class Window:
    """One output frame's exposure: output ``index``, sharp ``centre`` input frame, ``[t0, t1]``."""

    index: int
    centre: int
    t0: float
    t1: float


@dataclass
class BlurFrame:
    """One synthesised output frame.

    Attributes
    ----------
    window : Window
    blurry, sharp : numpy.ndarray
        uint8 (H, W, 3) encoded RGB.
    flow : numpy.ndarray or None
        float32 (h, w, 2) flow from the centre frame to the next input frame, in output pixels
        per input frame, at flow resolution (``flow_scale``); None for the last frame.
    subframes : numpy.ndarray or None
        uint8 (n, H, W, 3) evenly spaced sub-frames of the exposure, if requested.
    stats : dict
        Sub-frame count, flow statistics and the scene-cut flag, for the manifest.
    """

    window: Window
    blurry: np.ndarray | None
    sharp: np.ndarray
    flow: np.ndarray | None
    subframes: np.ndarray | None
    stats: dict = field(default_factory=dict)


def exposure_windows(n_frames: int, exposure: float, decimate: int = 1) -> list[Window]:
    """Exposure windows that fit inside ``n_frames`` decoded frames.

    Parameters
    ----------
    n_frames : int
        Number of input frames (times 0 .. n_frames - 1).
    exposure : float
        Exposure in output frame intervals.
    decimate : int
        Input frames per output frame.

    Returns
    -------
    list of Window
        Centres ``c_m = c_0 + m K`` with half-width ``h = e K / 2`` and ``c_0 = ceil(h)``, kept
        while ``c_m + h <= n_frames - 1``: the first and last exposures that would reach outside
        the clip are dropped rather than extrapolated.

    Examples
    --------
    >>> [(w.centre, w.t0, w.t1) for w in exposure_windows(4, 1.0)]
    [(1, 0.5, 1.5), (2, 1.5, 2.5)]
    """
    h = exposure * decimate / 2.0
    c = int(math.ceil(h - 1e-9))
    out = []
    while c + h <= n_frames - 1 + 1e-9:
        out.append(Window(len(out), c, c - h, c + h))
        c += decimate
    return out


def subframes_per_interval(max_motion: float, max_step: float, lo: int, hi: int) -> int:
    """Sub-frames per frame interval so that nothing moves more than ``max_step`` px between two."""
    return int(min(max(math.ceil(max_motion / max_step - 1e-9), lo), hi))


def segment_motion(motion: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fastest motion that the smooth pixels of each piece of each output row read.

    Parameters
    ----------
    motion : numpy.ndarray
        float32 (h, w): motion in output pixels per frame interval on the flow grid.
    shape : tuple of int
        Output ``(H, W)``.

    Returns
    -------
    numpy.ndarray
        float32 (H, ceil(W / SEGMENT)): the largest ``motion`` of the grid nodes that the
        pixels of each :data:`~blursynth_ext.warpsum.SEGMENT`-pixel piece of each row sample
        bilinearly.
    """
    h, w = shape
    gh, gw = motion.shape
    # A pixel reads the node at or before it and the next one, in both directions: the 3x3
    # maximum at the node before it covers all four.
    grown = cv2.dilate(motion, np.ones((3, 3), np.uint8))
    before = lambda n, size, g: np.clip(  # noqa: E731
        np.floor((n + 0.5) * (g / size) - 0.5).astype(np.int64), 0, g - 1)
    pieces = np.maximum.reduceat(grown, before(np.arange(0, w, SEGMENT), w, gw), axis=1)
    return pieces[before(np.arange(h), h, gh)]


def interval_samples(windows: Iterable[tuple[int, Window]], i: int, n: int, subframes: int = 0):
    """Sample times in interval ``[i, i + 1]`` for every window that overlaps it.

    Parameters
    ----------
    windows : iterable of (int, Window)
        Candidate windows with the accumulator slot each one writes to.
    i : int
        The interval starts at input frame ``i``.
    n : int
        Sub-frames per whole interval; a window covering a fraction ``f`` of the interval gets
        ``ceil(n f)`` samples at the midpoints of equal parts (midpoint rule of the box shutter).
    subframes : int
        Also place the evenly spaced sub-frames ``j = 0 .. subframes - 1`` of each window (times
        ``t0 + (j + 0.5)(t1 - t0) / subframes``) that fall in this interval, as target
        ``slot * (1 + subframes) + 1 + j`` with weight 1.

    Returns
    -------
    times, weights, targets : numpy.ndarray
        Local times in [0, 1], weights in input frame intervals, and accumulator indices
        (``slot * (1 + subframes)`` for the exposure average).

    Examples
    --------
    >>> t, w, k = interval_samples([(0, Window(0, 1, 0.5, 1.5))], 0, 4)
    >>> t.tolist(), w.tolist(), k.tolist()
    ([0.625, 0.875], [0.25, 0.25], [0, 0])
    """
    times, weights, targets = [], [], []
    for slot, w in windows:
        s0, s1 = max(w.t0 - i, 0.0), min(w.t1 - i, 1.0)
        base = slot * (1 + subframes)
        if s1 > s0 + 1e-12:
            m = max(1, int(math.ceil(n * (s1 - s0) - 1e-9)))
            d = (s1 - s0) / m
            for k in range(m):
                times.append(s0 + (k + 0.5) * d)
                weights.append(d)
                targets.append(base)
        for j in range(subframes):
            t = w.t0 + (j + 0.5) * (w.t1 - w.t0) / subframes
            if i <= t < i + 1:
                times.append(t - i)
                weights.append(1.0)
                targets.append(base + 1 + j)
    return (np.asarray(times, np.float32), np.asarray(weights, np.float32),
            np.asarray(targets, np.int64))


class _Prepared:
    """A decoded frame in the forms the synthesis needs (encoded, linear, grey at flow scale,
    and on demand grey at the output size)."""

    __slots__ = ("u8", "coef", "grey", "_full", "__weakref__")

    def __init__(self, u8: np.ndarray, coef: np.ndarray, grey: np.ndarray):
        self.u8, self.coef, self.grey, self._full = u8, coef, grey, None

    def full_grey(self) -> np.ndarray:
        if self._full is None:
            self._full = self.grey if self.grey.shape == self.u8.shape[:2] else to_grey(self.u8)
        return self._full


class _Buffers:
    """float32 arrays of one shape per frame or pair, each reused once its owner is gone.

    Upsampled, a 720p frame is 44 MB: a fresh array that size is a fresh mapping, whose page
    faults cost ~6 CPU-ms per frame (~2.5 for the two augmented flows of a pair). Nothing but
    the owner may refer to a buffer it was given.
    """

    def __init__(self) -> None:
        self._free: collections.deque = collections.deque()  # atomic appends and pops

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        while self._free:  # only the thread preparing the frames takes
            buf = self._free.pop()
            if buf.shape == shape:
                return buf
        return np.empty(shape, np.float32)

    def give_back(self, owner, *arrays: np.ndarray):
        """Return ``owner``; its ``arrays`` come back for reuse once it is gone."""
        # Runs in whichever thread drops the last reference to owner.
        weakref.finalize(owner, self._free.extend, arrays)
        return owner


def _prepare(index: int, frame: np.ndarray, p: FlowBlurParams, crf: CRF, buffers: _Buffers
             ) -> _Prepared:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ParameterError(f"frame {index}: expected uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if p.scale != 1.0:
        h, w = frame.shape[:2]
        size = output_size(p, h, w)[::-1]  # cv2: (width, height)
        lin = cv2.resize(decode_u8(frame, crf), size, interpolation=cv2.INTER_AREA)  # linear light
        frame = encode_linear(lin, crf)
    h, w = frame.shape[:2]
    grey = to_grey(frame)
    fs = flow_scale_of(p, h, w)
    if fs != 1.0:
        grey = cv2.resize(grey, (max(8, round(w * fs)), max(8, round(h * fs))),
                          interpolation=cv2.INTER_AREA)
    # Linear light, in the form the warp samples: the frame itself (cubic), upsampled 2x
    # (upsampled), or its shifted-linear coefficients (linear), linearised in the same pass.
    lut = crf.decode_lut()
    mode = interp_of(p, h, w)
    if mode == "cubic":
        coef = np.take(lut, frame, out=buffers.take(frame.shape))
    elif mode == "upsampled":
        coef = upsample2(frame, lut=lut, out=buffers.take((2 * h - 1, 2 * w - 1, 3)))
    else:
        coef = prefilter(frame, lut=lut, out=buffers.take(frame.shape))
    return buffers.give_back(_Prepared(frame, coef, grey), coef)


# Where the flow bends faster than this (output px per px) or a point is not seen in both
# frames, the closed form is not trusted and the fixed point is iterated with occlusion weights.
_HARD_JACOBIAN = 0.3
_HARD_VISIBILITY = 0.5
_FLAT_GRADIENT = 16.0  # mean |Sobel| of the grey frame (0-255), ~2 grey levels per pixel


def _analyse_pair(fab: np.ndarray, fba: np.ndarray, ga: np.ndarray, gb: np.ndarray,
                  sx: float, sy: float, out=None):
    """Flows augmented for :func:`blursynth_ext.dispatch.warpsum`, the hard mask and statistics.

    Flows are in output pixels on the flow grid (``sx``, ``sy``: grid size / output size);
    :mod:`blursynth_ext.flowcheck` gives the per-pixel definitions. ``out``: arrays for the
    augmented flows (as in :func:`blursynth_ext.dispatch.analyse_pair`), or None.

    Returns
    -------
    fab5, fba5 : numpy.ndarray
        float32 (h, w, 5): (dx, dy, visibility in the other frame, J F).
    hard : numpy.ndarray
        uint8 (h, w): 1 within half a motion length of a flow discontinuity or occlusion.
    stats : dict
        ``bad`` (uint8 (h, w): where the hard test fires, before growing), ``motion`` (float32
        (h, w): ``max(|F_ab|, |F_ba|)``, infinite where a side is not seen), ``flow_max``
        (99.9th percentile of the motion of textured points seen in both frames, px),
        ``flow_mean``, ``occluded`` (fraction of points not seen in both frames), ``hard``
        (fraction of the hard mask) and ``cut_score`` (fraction of pixels whose
        flow-compensated grey difference exceeds 25 of 255).
    """
    # In flat regions flow is unreliable but every path gives the same colour: never hard.
    grad = cv2.add(cv2.convertScaleAbs(cv2.Sobel(ga, cv2.CV_16S, 1, 0), alpha=0.5),
                   cv2.convertScaleAbs(cv2.Sobel(ga, cv2.CV_16S, 0, 1), alpha=0.5))
    textured = cv2.blur(grad, (5, 5)) > _FLAT_GRADIENT / 2
    fab5, fba5, bad, mag, cuts = analyse_pair(fab, fba, ga, gb, textured, sx, sy,
                                              _HARD_JACOBIAN, _HARD_VISIBILITY, out=out)
    # Sub-frame spacing matters only where there is detail to ghost: take the motion of
    # textured points seen in both frames (flow in flat regions is unreliable and harmless).
    seen = mag[(mag >= 0) & textured]
    if seen.size < 0.05 * mag.size:  # almost nothing consistent (a cut): use every vector
        seen = np.sqrt(np.maximum((fab ** 2).sum(-1), (fba ** 2).sum(-1))).ravel()
    # 99.9th percentile: one wild vector must not force max_subframes on every interval.
    k = max(0, int(seen.size * 0.999) - 1)
    flow_max = float(np.partition(seen, k)[k])
    # The smooth path reads the nearer frame, at most half a motion length away: grow the
    # mask by that much so no smooth pixel reads across a boundary.
    r = int(np.ceil(0.5 * flow_max * max(sx, sy))) + 1
    hard = cv2.dilate(bad, np.ones((2 * r + 1, 2 * r + 1), np.uint8))
    stats = {
        "bad": bad,
        "motion": np.where(mag >= 0, mag, np.float32(np.inf)),
        "flow_max": flow_max,
        "flow_mean": float(seen.mean()) if seen.size else 0.0,
        "occluded": float(np.mean(mag < 0)),
        "hard": float(hard.mean()),
        "cut_score": cuts / ga.size,
    }
    return fab5, fba5, hard, stats


def _refine_boundaries(fab, fba, where, ga, gb, sx, sy, flow_max, refiner) -> float:
    """Recompute ``fab``/``fba`` (output pixels, flow grid) near ``where``, in place.

    ``where`` (flow discontinuities and occlusions) grown by a margin of one motion length plus
    8 grid pixels (every flow sample the iterated path can take, with room for matching;
    neighbouring regions merge into one crop) is cut into boxes; flows are recomputed on each box in both directions with ``refiner``,
    fused with the current flow (per pixel, the candidate with the lower local warping error)
    and pasted back without the margin. Returns the fraction of the grid recomputed.
    """
    h, w = ga.shape
    m = int(math.ceil(flow_max * max(sx, sy))) + 8
    grown = cv2.dilate(where, np.ones((2 * m + 1, 2 * m + 1), np.uint8))
    n, _, boxes, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    done = 0
    for x0, y0, bw, bh, _ in boxes[1:n]:
        x1, y1 = x0 + bw, y0 + bh
        if min(bw, bh) < 32:  # too small for DIS's pyramid: leave it
            continue
        # Paste back only what lies at least a margin inside the crop (or at the frame edge).
        px0, py0 = (x0 + m if x0 > 0 else 0), (y0 + m if y0 > 0 else 0)
        px1, py1 = (x1 - m if x1 < w else w), (y1 - m if y1 < h else h)
        if px1 <= px0 or py1 <= py0:
            continue
        for f, a, b in ((fab, ga, gb), (fba, gb, ga)):
            ca = np.ascontiguousarray(a[y0:y1, x0:x1])
            cb = np.ascontiguousarray(b[y0:y1, x0:x1])
            new = refiner(ca, cb)  # grid pixels
            old = f[y0:y1, x0:x1] * np.float32([sx, sy])
            # Keep, per pixel, the candidate that explains the pair better: a small crop limits
            # DIS's pyramid, so very fast motion can be matched worse than on the whole frame.
            keep_new = _warp_error(ca, cb, new) < _warp_error(ca, cb, old)
            inner = (slice(py0 - y0, py1 - y0), slice(px0 - x0, px1 - x0))
            fused = np.where(keep_new[..., None], new, old)[inner]
            f[py0:py1, px0:px1] = fused / np.float32([sx, sy])
        done += bw * bh
    return done / (h * w)


def _warp_error(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Box-averaged |a(x) - b(x + f(x))| (grey levels), the evidence for a flow candidate."""
    hh, ww = a.shape
    gx, gy = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(hh, dtype=np.float32))
    warped = cv2.remap(b, gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return cv2.blur(np.abs(warped.astype(np.float32) - a), (5, 5))


def flowblur_frames(frames: Iterable[np.ndarray], params: FlowBlurParams | None = None, *,
                    subframes: int = 0, keep_flow: bool = False,
                    flows: Iterable[tuple[np.ndarray, np.ndarray]] | None = None
                    ) -> Iterator[BlurFrame]:
    """Synthesise blurry frames from a stream of sharp frames.

    Parameters
    ----------
    frames : iterable of numpy.ndarray
        uint8 (H, W, 3) RGB frames, encoded with ``params.crf``, in time order.
    params : FlowBlurParams, optional
        Synthesis parameters (defaults if None).
    subframes : int
        Also return this many evenly spaced sub-frames of each exposure.
    keep_flow : bool
        Return the flow from each centre frame to the next.
    flows : iterable of (numpy.ndarray, numpy.ndarray), optional
        The flows to use instead of the backend's (from a flow network, or a scene's exact
        motion): for each pair of consecutive frames (i - 1, i), ``(F_ab, F_ba)``, float32
        (H, W, 2) pixel displacements from frame i - 1 to frame i and back, at the frames'
        size. The flow grid is then full size unless ``params.flow_scale`` says otherwise
        (a grid pixel takes the vector nearest its centre); snapping and refinement apply as
        ``params`` says.

    Yields
    ------
    BlurFrame
        In output order. A window that spans a scene cut is yielded with ``blurry=None`` and
        ``stats["scene_cut"] = True``.

    Notes
    -----
    The exposure of output ``m`` is ``B(x) = 1/(t1 - t0) \\int_{t0}^{t1} L(x, t) dt`` in linear
    light, evaluated with the midpoint rule over sub-frames ``L(x, i + s)`` rebuilt from frames i
    and i + 1 (see :func:`blursynth_ext.warpsum.warpsum_reference`), then encoded with rounding.
    Only five frames (two read ahead: snapping a pair's flow consults the frame after it) and
    the open exposures are held in memory. Reading the frames, the flow and its analysis run
    one pair ahead in a thread (where numba's threading layer allows concurrent kernels);
    close the generator to stop it early.
    """
    p = params or FlowBlurParams()
    if flows is not None:
        p = with_given_flows(p)
    crf = get_crf(p.crf)
    h_exp = p.exposure * p.decimate / 2.0
    c0 = int(math.ceil(h_exp - 1e-9))
    nslot = 1 + subframes
    ring_len = int(math.ceil(p.exposure)) + 2  # windows open at once, at most
    ring = None  # (ring_len * nslot, H, W, 3) accumulators; window m uses slot m % ring_len

    open_windows: list[tuple[Window, dict]] = []
    sharp_buf: dict[int, np.ndarray] = {}
    flow_buf: dict[int, np.ndarray] = {}
    next_index = 0
    prev: _Prepared | None = None
    # Decoding, flow and its analysis run a pair ahead, in a thread, while this one warps.
    pairs = _pairs(frames, p, crf, numba.get_num_threads(), flows)
    with closing(_ahead(pairs) if concurrent_kernels() else pairs) as pairs:
        for i, cur, pair in pairs:
            sharp_buf[i] = cur.u8
            if pair is None:  # the first frame: nothing to warp yet
                ring = np.zeros((ring_len * nslot,) + cur.u8.shape, np.float32)
                mode = interp_of(p, *cur.u8.shape[:2])
                sampling = {"shift": TAU if mode == "linear" else 0.0,
                            "cubic": mode == "cubic", "up": 2 if mode == "upsampled" else 1}
                prev = cur
                continue
            # Open the windows whose exposure starts before the end of this interval [i - 1, i].
            while c0 + next_index * p.decimate - h_exp < i - 1e-9:
                c = c0 + next_index * p.decimate
                open_windows.append((Window(next_index, c, c - h_exp, c + h_exp),
                                     {"subframes": 0, "flow_max": 0.0, "flow_mean": [],
                                      "occluded": [], "hard": [], "scene_cut": False}))
                next_index += 1
            if keep_flow:
                flow_buf[i - 1] = pair.flow
            fst = pair.stats
            n = subframes_per_interval(fst["flow_max"], p.max_step, p.min_subframes, p.max_subframes)
            active = [(w, st) for w, st in open_windows if w.t0 < i and w.t1 > i - 1]
            slots = [(w.index % ring_len, w) for w, _ in active]
            times, weights, targets = interval_samples(slots, i - 1, n, subframes)
            # Sub-frames in a call of their own: the iterated path warm-starts from the previous
            # sample, so mixing them in would change the exposures by a hair.
            is_sub = targets % nslot != 0
            smooth = (_local_sets(fst["motion"], cur.u8.shape[:2], n, p, slots, i - 1, nslot)
                      if p.local_subframes else None)
            for sel, sets in ((~is_sub, smooth), (is_sub, None)):
                if sel.any():
                    warpsum(prev.coef, cur.coef, pair.fab, pair.fba, times[sel], weights[sel],
                            targets[sel], ring, hard=pair.hard, smooth=sets, fine=pair.fine,
                            iters=p.iters or (1 if pair.fine is None else 2), tau=p.tau,
                            **sampling)
            for w, st in active:
                st["subframes"] += int(np.sum(targets == (w.index % ring_len) * nslot))
                st["flow_max"] = max(st["flow_max"], fst["flow_max"])
                st["flow_mean"].append(fst["flow_mean"])
                st["occluded"].append(fst["occluded"])
                st["hard"].append(fst["hard"])
                st["scene_cut"] |= fst["cut_score"] > p.scene_cut
            # Emit the windows that are complete.
            while open_windows and open_windows[0][0].t1 <= i + 1e-9:
                w, st = open_windows.pop(0)
                slots = ring[(w.index % ring_len) * nslot:(w.index % ring_len + 1) * nslot]
                yield _finish(w, slots, st, sharp_buf, flow_buf, crf, subframes)
                slots[...] = 0.0
            keep_from = min([w.centre for w, _ in open_windows] + [c0 + next_index * p.decimate])
            for k in [k for k in sharp_buf if k < keep_from]:
                del sharp_buf[k]
                flow_buf.pop(k, None)
            prev = cur


def _local_sets(motion: np.ndarray, shape: tuple[int, int], n: int, p: FlowBlurParams,
                slots: list, i: int, nslot: int):
    """``smooth`` of :func:`blursynth_ext.dispatch.warpsum` for interval ``[i, i + 1]``: each
    row piece gets the sub-frames its own fastest motion needs, or ``n`` where that saves less
    than a quarter (each run of pieces costs a pass of its own); None where all take ``n``."""
    need = np.clip(np.ceil(segment_motion(motion, shape) / p.max_step - 1e-9),
                   p.min_subframes, n).astype(np.int64)
    counts, levels = np.unique(np.where(4 * need > 3 * n, n, need), return_inverse=True)
    if counts[0] == n:
        return None
    sets = []
    for c in counts:
        t, wt, tg = interval_samples(slots, i, int(c))
        sets.append((t, wt, tg * nslot))  # the exposure slots, as interval_samples numbers them
    return levels.reshape(need.shape).astype(np.int32), sets


class _Pair:
    """What the warp needs of a frame pair: augmented flows, the hard mask, statistics, the
    plain a->b flow (output pixels on the flow grid) for the driver, and the flows at the
    output size near motion boundaries or None (:mod:`blursynth.flowfine`)."""

    __slots__ = ("fab", "fba", "hard", "stats", "flow", "fine", "__weakref__")

    def __init__(self, fab, fba, hard, stats, flow, fine=None):
        self.fab, self.fba, self.hard, self.stats, self.flow = fab, fba, hard, stats, flow
        self.fine = fine


def _pairs(frames: Iterable[np.ndarray], p: FlowBlurParams, crf: CRF, threads: int,
           given: Iterable | None = None) -> Iterator[tuple[int, _Prepared, _Pair | None]]:
    """``(i, frame i prepared, its pair with frame i - 1 or None)`` for each frame in turn,
    with ``threads`` numba threads (numba's setting is per thread: this may run in another),
    and the flows of ``given`` (see :func:`flowblur_frames`) or else the backend's.

    A pair is finished once the frame after it has been read: snapping ``F_ba`` consults it.
    """
    numba.set_num_threads(threads)
    flows: _FlowPair | _GivenFlows | None = None  # made for the first frame's flow grid
    # Patches down to the grid's own resolution, at a wider stride than the preset's (as
    # accurate on this job, about half the cost), with one variational iteration instead of the
    # medium preset's five: those smooth the flow across the very edges being refined (same or
    # better at 720p, ~7% less CPU on a clip with moving objects).
    refiner = (get_backend("dis", preset=p.flow_preset or FLOWBLUR_DIS_PRESET, finest_scale=0,
                           patch_stride=4, variational_iterations=1)
               if p.refine_boundaries and flow_backend_name(p) == "dis" else None)
    buffers = _Buffers()  # the frames' sampled forms
    flow_buffers = _Buffers()  # the pairs' augmented flows
    before: _Prepared | None = None  # frames i - 2 and i - 1
    prev: _Prepared | None = None
    pending = None  # (i, frames i - 2 .. i, F_ab, F_ba) waiting for frame i + 1
    try:
        for i, frame in enumerate(frames):
            cur = _prepare(i, np.asarray(frame), p, crf, buffers)
            if prev is not None and cur.u8.shape != prev.u8.shape:
                raise ParameterError(f"frame {i}: expected size {prev.u8.shape[:2]}, "
                                     f"got {cur.u8.shape[:2]}")
            fl = None if prev is None else flows(prev.grey, cur.grey)
            if pending is not None:
                # The clip's first pair also reads this pair's flows (its depth order).
                yield _pair(*pending, cur, p, refiner, flow_buffers,
                            fl if pending[1] is None else None)
                pending = None
            if prev is None:
                flows = (_FlowPair(p, cur.grey.shape, cur.u8.shape[:2]) if given is None
                         else _GivenFlows(given, cur.grey.shape, np.shape(frame)[:2]))
                yield i, cur, None
            else:
                pending = (i, before, prev, cur, *fl)
            before, prev = prev, cur
        if pending is not None:
            yield _pair(*pending, None, p, refiner, flow_buffers)
    finally:
        if flows is not None:
            flows.close()


def _pair(i: int, before: _Prepared | None, a: _Prepared, b: _Prepared, fab: np.ndarray,
          fba: np.ndarray, after: _Prepared | None, p: FlowBlurParams, refiner,
          buffers: _Buffers, nxt: tuple | None = None) -> tuple[int, _Prepared, _Pair]:
    """Frame pair (a, b) = frames (i - 1, i), its flows in grid pixels, and the frames on
    either side of it (None at the ends of the clip) -> ``(i, b, its _Pair)``. ``nxt``: the
    flows of pair (b, after), given to a clip's first pair."""
    sx = a.grey.shape[1] / a.u8.shape[1]  # flow grid / output size
    sy = a.grey.shape[0] / a.u8.shape[0]
    # Around discontinuities and occlusions a flow smeared across a moving object's edge
    # misplaces what is covered and revealed: match those regions again, more finely...
    if refiner is not None:
        to_output = np.float32([1 / sx, 1 / sy])
        fab, fba = fab * to_output, fba * to_output
        fst = _analyse_pair(fab, fba, a.grey, b.grey, sx, sy)[3]
        if fst["bad"].any():
            _refine_boundaries(fab, fba, fst["bad"], a.grey, b.grey, sx, sy, fst["flow_max"],
                               refiner)
        fab, fba = fab / to_output, fba / to_output
    # ...and snap what still ramps across them to the motion of one side.
    unfilled, raw_nxt = fab, nxt
    if p.snap_boundaries:
        fab = unfilled = snap_flow(fab, a.grey, b.grey, None if before is None else before.grey)
        fba = snap_flow(fba, b.grey, a.grey, None if after is None else after.grey)
        if before is None:  # no frame to match the points about to be covered in: fill them
            rgb = (a.u8 if a.u8.shape[:2] == a.grey.shape
                   else cv2.resize(a.u8, a.grey.shape[::-1], interpolation=cv2.INTER_AREA))
            if nxt is not None:  # snapped as its own turn will, but with no frame after it
                nxt = (snap_flow(nxt[0], b.grey, after.grey, a.grey),
                       snap_flow(nxt[1], after.grey, b.grey, None))
            fab = fill_covered(fab, fba, rgb, sx, nxt)  # a new array: `unfilled` stays

    def to_output(f):  # flow grid -> output pixels, in place
        f[..., 0] /= sx
        f[..., 1] /= sy
        return f

    for f in (fab, fba):
        to_output(f)
    fine = None
    if p.fine_boundaries and p.snap_boundaries and a.grey.shape != a.u8.shape[:2]:
        fine = fine_flows(fab if unfilled is fab else to_output(unfilled), fba, a.full_grey(),
                          b.full_grey(), None if before is None else before.full_grey(),
                          None if after is None else after.full_grey(), a.u8,
                          None if raw_nxt is None else tuple(to_output(f.copy()) for f in raw_nxt))
    shape = fab.shape[:2] + (5,)
    fab5, fba5, hard, fst = _analyse_pair(fab, fba, a.grey, b.grey, sx, sy,
                                          out=(buffers.take(shape), buffers.take(shape)))
    return i, b, buffers.give_back(_Pair(fab5, fba5, hard, fst, fab, fine), fab5, fba5)


_END = object()


def _ahead(items: Iterator, depth: int = 1) -> Iterator:
    """Iterate ``items`` in a thread, up to ``depth`` items ahead of the consumer.

    An exception in the thread is raised in the consumer; closing the returned generator stops
    the thread (after the item it is working on) and closes ``items`` there.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as e:  # raised again in the consumer
            put((_END, e))
        finally:
            if hasattr(items, "close"):  # a generator's cleanup runs in its own thread
                items.close()

    t = threading.Thread(target=run, name="blursynth-ahead", daemon=True)
    t.start()
    try:
        while True:
            item, error = q.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        t.join()


def _finish(w: Window, acc: np.ndarray, st: dict, sharp_buf, flow_buf, crf: CRF,
            subframes: int) -> BlurFrame:
    stats = {
        "subframes": st["subframes"],
        "flow_max": round(st["flow_max"], 4),
        "flow_mean": round(float(np.mean(st["flow_mean"])), 4) if st["flow_mean"] else 0.0,
        "occluded": round(float(np.mean(st["occluded"])), 5) if st["occluded"] else 0.0,
        "hard": round(float(np.mean(st["hard"])), 5) if st["hard"] else 0.0,
        "scene_cut": st["scene_cut"],
    }
    blurry = None if st["scene_cut"] else encode_linear(acc[0], crf, 1.0 / (w.t1 - w.t0))
    subs = None
    if subframes and not st["scene_cut"]:
        subs = np.stack([encode_linear(acc[1 + j], crf) for j in range(subframes)])
    return BlurFrame(w, blurry, sharp_buf[w.centre], flow_buf.get(w.centre), subs, stats)


def flowblur_array(frames: np.ndarray, params: FlowBlurParams | None = None, **kwargs):
    """Convenience wrapper: (N, H, W, 3) uint8 in, ``(blurry, sharp, windows)`` arrays out.

    Windows that span a scene cut are left out of the returned arrays.
    """
    out = [r for r in flowblur_frames(frames, params, **kwargs) if r.blurry is not None]
    if not out:
        return (np.zeros((0,) + frames.shape[1:], np.uint8),) * 2 + ([],)
    return (np.stack([r.blurry for r in out]), np.stack([r.sharp for r in out]),
            [r.window for r in out])
