"""Dense optical flow between video frames.

Every flow field in blursynth follows one convention: a field ``f`` of shape ``(H, W, 2)``,
dtype ``float32``, holds for each pixel of the *first* frame ``a`` its displacement in pixels
to the matching point of the *second* frame ``b``::

    a[y, x] ~= b[y + f[y, x, 1], x + f[y, x, 0]]

so ``f[..., 0]`` is the horizontal (column, ``dx``) component, positive to the right, and
``f[..., 1]`` the vertical (row, ``dy``) component, positive downwards. This is the convention
of OpenCV's dense flow algorithms and of the Middlebury ``.flo`` format, so fields can be
passed to ``cv2.remap`` and written to disk without conversion.

Flow is computed by a *backend*. For a video, build the backend once with
:func:`get_backend` and call :func:`compute_flow` for every frame pair: backends hold
algorithm instances and buffers that are expensive to recreate. :func:`flow` is the one-shot
convenience for a single pair.

Backends (see :data:`BACKENDS`):

``dis``
    Dense Inverse Search (Kroeger et al., ECCV 2016), CPU. The default: fast enough for the
    synthesis pipeline (two flows per output frame) at 720p on two cores.
``farneback``
    Farneback's polynomial expansion, CPU, with the parameters of the original synthblur tool.
``deepflow``
    DeepFlow (Weinzaepfel et al., ICCV 2013), CPU. Most accurate, seconds per 720p pair.
    A pair whose dominant motion (the median of a small DIS flow) is 8 px or more is first
    aligned by it in whole pixels: OpenCV's DeepFlow has no matching step and loses motions
    much beyond 10 px.
``cuda``
    Farneback on an NVIDIA GPU through OpenCV's CUDA modules; only in OpenCV builds with CUDA.
``auto``
    ``cuda`` when it can run, otherwise ``dis``.
"""
from __future__ import annotations

import hashlib
import logging
import math
import numbers
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np
import numpy.typing as npt
from blursynth_ext.dispatch import flow_color

from .errors import FlowBackendError, InputFileError, OutputError, ParameterError

__all__ = [
    "BACKENDS",
    "DIS_PRESETS",
    "DEFAULT_DIS_PRESET",
    "FARNEBACK_DEFAULTS",
    "FlowBackend",
    "get_backend",
    "compute_flow",
    "flow",
    "resize_flow",
    "to_grey",
    "flow_to_color",
    "write_flo",
    "read_flo",
    "pair_flow_path",
    "read_pair_flows",
    "pair_flows_stamp",
    "cuda_available",
    "runs_as",
]

#: Backend name -> one-line description (for ``--help`` texts).
BACKENDS: dict[str, str] = {
    "dis": "DIS (dense inverse search), CPU, fast; presets ultrafast, fast, medium",
    "farneback": "Farneback polynomial expansion, CPU; the original synthblur parameters",
    "deepflow": "DeepFlow, CPU; most accurate, very slow (seconds per 720p pair)",
    "cuda": "Farneback on an NVIDIA GPU; needs an OpenCV built with CUDA (flowblur falls "
    "back to dis with a warning)",
    "auto": "cuda when available, otherwise dis",
}

#: DIS preset name -> OpenCV preset constant.
DIS_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# Chosen with benchmarks/bench_flow.py (1280x720, 2 cores, ~8 px motion): "fast" takes ~10 ms
# per flow at mean end-point error 0.16 px; "ultrafast" ~6 ms at 0.29 px (17x more pixels off
# by > 1 px); "medium" 50 ms at 0.11 px, over the ~20 ms per-flow budget of 10 output fps
# with two flows per frame; and "medium" at scale 0.5 (14 ms, 0.18 px) is slower *and* less
# accurate than "fast" at full size (whose finest DIS level is already 1/4 resolution).
DEFAULT_DIS_PRESET = "fast"

#: Default Farneback parameters (those of the original synthblur tool); every one can be
#: overridden by a keyword option of the same name.
FARNEBACK_DEFAULTS: dict[str, float | int] = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}

_FLO_MAGIC = b"PIEH"  # the float32 202021.25 in little-endian byte order
_FLO_HEADER_BYTES = 12

_NO_CUDA_MESSAGE = (
    "the installed OpenCV has no CUDA support; use --flow dis (the CPU default) "
    "or install an OpenCV built with CUDA"
)


# --------------------------------------------------------------------------------------------
# Input helpers
# --------------------------------------------------------------------------------------------


def to_grey(frame: npt.ArrayLike) -> np.ndarray:
    """Convert a frame to the 8-bit grey image the flow backends work on.

    Parameters
    ----------
    frame : (H, W) or (H, W, 3) ndarray of uint8
        A grey image, or an RGB image in **RGB** channel order (as decoded by blursynth and
        scikit-image, *not* OpenCV's BGR). A single-channel ``(H, W, 1)`` image is accepted.

    Returns
    -------
    grey : (H, W) ndarray of uint8
        C-contiguous. A grey input is returned as is (no copy) when already contiguous.

    Raises
    ------
    ParameterError
        If ``frame`` is not uint8 or not of one of the shapes above.

    Notes
    -----
    Uses ``cv2.COLOR_RGB2GRAY`` (ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B). Float
    frames are refused rather than converted: their range (0-1 or 0-255) cannot be guessed,
    and a wrong guess silently produces a black or saturated image and garbage flow.
    """
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise ParameterError(f"frame: expected dtype uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)
    raise ParameterError(
        f"frame: expected shape (H, W) grey or (H, W, 3) RGB, got {arr.shape}"
    )


def _check_flow_field(f: npt.ArrayLike, name: str = "f") -> np.ndarray:
    """Return ``f`` as a float array of shape (H, W, 2), or raise ParameterError."""
    arr = np.asarray(f)
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ParameterError(f"{name}: expected a flow field of shape (H, W, 2), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ParameterError(f"{name}: expected a real-valued flow field, got dtype {arr.dtype}")
    return arr


def _check_scale(scale: Any) -> float:
    # bool is a numbers.Real; True would silently mean scale 1.
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ParameterError(f"scale: expected a number in (0, 1], got {scale!r}")
    s = float(scale)
    if not (0.0 < s <= 1.0):  # also rejects NaN
        raise ParameterError(f"scale: expected a number in (0, 1], got {scale!r}")
    return s


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair of grey uint8 frames of equal shape for a backend call."""
    a = np.asarray(a)
    b = np.asarray(b)
    for name, img in (("a", a), ("b", b)):
        if img.dtype != np.uint8 or img.ndim != 2:
            raise ParameterError(
                f"{name}: a flow backend expects a grey (H, W) uint8 frame, got shape "
                f"{img.shape} dtype {img.dtype} (use to_grey or compute_flow)"
            )
    if a.shape != b.shape:
        raise ParameterError(f"frames differ in size: a is {a.shape}, b is {b.shape}")
    # OpenCV's DIS asserts continuous input; copying here is a no-op for normal frames.
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


class FlowBackend:
    """A reusable optical flow estimator: ``backend(a, b) -> f``.

    Create instances with :func:`get_backend`. An instance keeps its OpenCV algorithm object
    (and, for ``cuda``, its GPU buffers) between calls, so build one per video and reuse it
    for every frame pair.

    Instances are **not thread-safe**: OpenCV's flow objects keep per-call scratch buffers
    inside the instance. Use one backend per thread (or process). They do not carry state
    from one pair to the next: the result for a pair does not depend on earlier calls.

    Attributes
    ----------
    name : str
        The backend name, a key of :data:`BACKENDS`.
    options : dict
        The effective options, defaults included.
    """

    name: str = ""

    def __init__(self, options: dict[str, Any]):
        self.options = dict(options)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from ``a`` to ``b``.

        Parameters
        ----------
        a, b : (H, W) ndarray of uint8
            Grey frames of the same size (see :func:`to_grey`).

        Returns
        -------
        f : (H, W, 2) ndarray of float32
            Displacement from ``a`` to ``b`` at the size of the inputs, ``a(x) ~ b(x + f(x))``,
            ``f[..., 0]`` = dx (columns), ``f[..., 1]`` = dy (rows).
        """
        a, b = _check_pair(a, b)
        f = self._calc(a, b)
        return np.ascontiguousarray(f, dtype=np.float32)

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"<FlowBackend {self.name}({opts})>"


def _reject_unknown(backend: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        allowed_txt = ", ".join(sorted(allowed)) if allowed else "none"
        raise ParameterError(
            f"flow backend {backend!r}: unknown option(s) {', '.join(unknown)}; "
            f"accepted: {allowed_txt}"
        )


class _DISBackend(FlowBackend):
    name = "dis"

    def __init__(self, preset: str = DEFAULT_DIS_PRESET, finest_scale: int | None = None,
                 patch_stride: int | None = None, descent_iterations: int | None = None,
                 variational_iterations: int | None = None, **options: Any):
        _reject_unknown("dis", options, {"preset", "finest_scale", "patch_stride",
                                         "descent_iterations", "variational_iterations"})
        if not isinstance(preset, str) or preset not in DIS_PRESETS:
            raise ParameterError(
                f"dis preset: expected one of {', '.join(DIS_PRESETS)}, got {preset!r}"
            )
        ints = {"finest_scale": (finest_scale, 0), "patch_stride": (patch_stride, 1),
                "descent_iterations": (descent_iterations, 1),
                "variational_iterations": (variational_iterations, 0)}
        for name, (value, lo) in ints.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < lo):
                raise ParameterError(f"dis {name}: expected an int >= {lo}, got {value!r}")
        super().__init__({"preset": preset, **{k: v for k, (v, _) in ints.items()
                                               if v is not None}})
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
        if finest_scale is not None:
            # The finest pyramid level the patches are matched at (0: the input's own size);
            # finer levels follow motion boundaries more closely and cost more.
            self._dis.setFinestScale(finest_scale)
        if patch_stride is not None:
            self._dis.setPatchStride(patch_stride)
        if descent_iterations is not None:
            self._dis.setGradientDescentIterations(descent_iterations)
        if variational_iterations is not None:
            self._dis.setVariationalRefinementIterations(variational_iterations)
        self._preset_finest = self._dis.getFinestScale()
        self._patch = self._dis.getPatchSize()

    def _coarsest_scale(self, h: int, w: int) -> int:
        # The pyramid depth OpenCV's DIS picks for this size: the expression of dis_flow.cpp
        # with its arithmetic (double division in the first term, *integer* division in the
        # second, truncation toward zero), so the two agree on every size.
        p = self._patch
        if min(w, h) < p:  # log(0) in OpenCV: it refuses such frames
            return -1
        return min(
            int(math.log(max(w, h) / (4.0 * p)) / math.log(2.0) + 0.5),
            int(math.log(min(w, h) // p) / math.log(2.0)),
        )

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        h, w = a.shape
        coarsest = self._coarsest_scale(h, w)
        if coarsest < 0:
            raise ParameterError(
                f"dis: frames of {w}x{h} px are too small (DIS needs at least "
                f"{self._patch} px on the short side and 12 px on the long side; "
                "with scale < 1 this is the size after scaling)"
            )
        # When the pyramid is shallower than the preset's finest scale (small or wide-and-short
        # frames, e.g. 100x15 px with every preset, 300x31 with ultrafast and fast), OpenCV
        # (fix of opencv/opencv#14554, still in 5.0) re-derives patch size and scales from the
        # *width only* -- which segfaults for wide, short frames -- and keeps them in the
        # instance, silently changing every later call. Lowering the finest scale ourselves,
        # per call, keeps OpenCV off that path; a finer finest scale is valid, and more accurate.
        finest = min(self._preset_finest, coarsest)
        if self._dis.getFinestScale() != finest:
            self._dis.setFinestScale(finest)
        return self._dis.calc(a, b, None)


def _farneback_params(
    backend: str, options: dict[str, Any], extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Farneback parameters: defaults overridden by ``options``, validated."""
    _reject_unknown(backend, options, set(FARNEBACK_DEFAULTS) | set(extra))
    p = {**FARNEBACK_DEFAULTS, **{k: v for k, v in options.items() if k in FARNEBACK_DEFAULTS}}

    def integer(key: str, lo: int) -> int:
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise ParameterError(f"{backend} {key}: expected an integer >= {lo}, got {v!r}")
        return int(v)

    def real(key: str, lo: float, hi: float) -> float:
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (lo < v < hi):
            raise ParameterError(f"{backend} {key}: expected a number in ({lo}, {hi}), got {v!r}")
        return float(v)

    out = {
        "pyr_scale": real("pyr_scale", 0.0, 1.0),
        "levels": integer("levels", 1),
        "winsize": integer("winsize", 1),
        "iterations": integer("iterations", 1),
        "poly_n": integer("poly_n", 1),
        "poly_sigma": real("poly_sigma", 0.0, math.inf),
        "flags": integer("flags", 0),
    }
    if out["poly_n"] not in (5, 7):  # the only neighbourhoods OpenCV implements
        raise ParameterError(f"{backend} poly_n: expected 5 or 7, got {out['poly_n']!r}")
    # OPTFLOW_USE_INITIAL_FLOW would read an uninitialised output buffer: we never pass one.
    if out["flags"] & ~cv2.OPTFLOW_FARNEBACK_GAUSSIAN:
        raise ParameterError(
            f"{backend} flags: expected 0 or cv2.OPTFLOW_FARNEBACK_GAUSSIAN "
            f"({cv2.OPTFLOW_FARNEBACK_GAUSSIAN}), got {out['flags']!r}"
        )
    return out


class _FarnebackBackend(FlowBackend):
    name = "farneback"

    def __init__(self, **options: Any):
        super().__init__(_farneback_params("farneback", options))

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        o = self.options
        return cv2.calcOpticalFlowFarneback(
            a, b, None, o["pyr_scale"], o["levels"], o["winsize"], o["iterations"],
            o["poly_n"], o["poly_sigma"], o["flags"],
        )


class _DeepFlowBackend(FlowBackend):
    """OpenCV's DeepFlow is variational only (no matching step): coarse to fine it loses motions
    much beyond 10 px (a 720p pan at 20 px/frame: worst tile 27 dB against 44 with the exact
    flow). So a pair whose dominant motion (the median of a DIS flow on frames of about 180
    rows) reaches :attr:`ALIGN_MIN` is first aligned by it, rounded to whole pixels (an exact
    shift: nothing is resampled), and DeepFlow finds the rest. Smaller motions are left to
    DeepFlow alone: aligning by the background adds its motion to that of the objects moving
    against it (the occlusion scene at 90x160, aligned by 2 px: 35.7 against 41.5 dB)."""

    name = "deepflow"
    #: Rows of the frames the dominant motion is measured on.
    GUIDE_ROWS = 180
    #: Dominant motion (px, either component) from which a pair is aligned first.
    ALIGN_MIN = 8
    #: Where the shift carries points out of ``b``, the residual is taken from this many pixels
    #: further inside: DeepFlow's own near there is pulled by the replicated border.
    EDGE_MARGIN = 8

    def __init__(self, **options: Any):
        _reject_unknown("deepflow", options, set())
        super().__init__({})
        self._df = cv2.optflow.createOptFlow_DeepFlow()
        self._guide = _DISBackend("fast")

    def dominant_shift(self, a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
        """The median motion from grey ``a`` to ``b`` in whole pixels, ``(dx, dy)``."""
        h, w = a.shape
        s = min(1.0, self.GUIDE_ROWS / min(h, w))
        size = (max(1, round(w * s)), max(1, round(h * s)))
        small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if s < 1 else f for f in (a, b)]
        if self._guide._coarsest_scale(size[1], size[0]) < 0:
            return 0, 0  # too small for DIS: DeepFlow alone
        f = self._guide._calc(*small)
        dx, dy = np.median(f.reshape(-1, 2), axis=0) * np.float32([w / size[0], h / size[1]])
        return int(round(float(dx))), int(round(float(dy)))

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dx, dy = self.dominant_shift(a, b)
        if max(abs(dx), abs(dy)) < self.ALIGN_MIN:
            return self._df.calc(a, b, None)
        h, w = a.shape
        # b seen from a's pixels: shifted[y, x] = b[y + dy, x + dx], replicated at the borders.
        ys = np.clip(np.arange(h) + dy, 0, h - 1)
        xs = np.clip(np.arange(w) + dx, 0, w - 1)
        f = self._df.calc(a, np.ascontiguousarray(b[ys][:, xs]), None)
        m = self.EDGE_MARGIN
        if dx > 0:
            k = max(w - dx - m, 1)
            f[:, k:] = f[:, k - 1:k]
        elif dx < 0:
            k = min(-dx + m, w - 1)
            f[:, :k] = f[:, k:k + 1]
        if dy > 0:
            k = max(h - dy - m, 1)
            f[k:] = f[k - 1:k]
        elif dy < 0:
            k = min(-dy + m, h - 1)
            f[:k] = f[k:k + 1]
        f[..., 0] += dx
        f[..., 1] += dy
        return f


def _cv2_lookup(*dotted: str) -> Any:
    """The first of several spellings of an OpenCV name that exists, else None.

    OpenCV's Python bindings have exposed the CUDA classes both as ``cv2.cuda_X`` and as
    ``cv2.cuda.X`` depending on the version; trying both keeps us working across 4.x and 5.x.
    """
    for name in dotted:
        obj: Any = cv2
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def cuda_available() -> bool:
    """Whether OpenCV was built with CUDA and sees at least one CUDA device.

    Returns
    -------
    bool
        ``cv2.cuda.getCudaEnabledDeviceCount() > 0``. False, never an exception, when the
        function is missing or fails (OpenCV without CUDA returns 0; a broken driver -1 or an
        error).

    Notes
    -----
    The ``cuda`` flow backend additionally needs OpenCV's ``cudaoptflow`` module;
    ``get_backend("cuda")`` reports when it is missing.
    """
    count = _cv2_lookup("cuda.getCudaEnabledDeviceCount")
    if count is None:
        return False
    try:
        return int(count()) > 0
    except Exception:  # cv2.error from a broken driver/runtime: treat as "no CUDA"
        return False


def runs_as(name: str, *, warn: bool = False) -> str:
    """The backend that runs for backend ``name``: ``auto`` resolved, and ``cuda`` where it
    cannot run (:func:`cuda_available`) replaced by ``dis``, the CPU default, with a warning
    logged if ``warn``. Other names are returned as they are."""
    if name not in ("auto", "cuda"):
        return name
    if cuda_available():
        return "cuda"
    if warn and name == "cuda":
        logging.getLogger("blursynth").warning(
            "flow 'cuda': the installed OpenCV has no CUDA support (or sees no GPU); using dis, "
            "the CPU default")
    return "dis"


def _opencv_built_with_cuda() -> bool:
    # Only used to word the error message: a CUDA build without a usable device needs a
    # different fix (driver, CUDA_VISIBLE_DEVICES) than a build without CUDA.
    try:
        info = cv2.getBuildInformation()
    except Exception:
        return False
    return re.search(r"^\s*NVIDIA CUDA:\s*YES", info, re.MULTILINE) is not None


def _cuda_farneback_create() -> Callable[..., Any] | None:
    return _cv2_lookup("cuda.FarnebackOpticalFlow_create", "cuda_FarnebackOpticalFlow.create")


def _cuda_ready() -> bool:
    return cuda_available() and _cuda_farneback_create() is not None


class _CudaFarnebackBackend(FlowBackend):
    # Farneback rather than Brox/TV-L1 (float input, slow) or NVIDIA's hardware flow (needs
    # Turing+ GPUs and a matching driver SDK): it runs on every CUDA device OpenCV supports and
    # with the same parameters it approximates the CPU farneback backend.
    name = "cuda"

    def __init__(self, **options: Any):
        if not cuda_available():
            if _opencv_built_with_cuda():
                raise FlowBackendError(
                    "the installed OpenCV was built with CUDA but finds no usable CUDA device "
                    "(cv2.cuda.getCudaEnabledDeviceCount() is not > 0); use --flow dis (the "
                    "CPU default) or check the GPU driver and CUDA_VISIBLE_DEVICES"
                )
            raise FlowBackendError(_NO_CUDA_MESSAGE)
        create = _cuda_farneback_create()
        gpumat = _cv2_lookup("cuda.GpuMat", "cuda_GpuMat")
        if create is None or gpumat is None:
            raise FlowBackendError(
                "the installed OpenCV sees a CUDA device but lacks the cudaoptflow module; "
                "use --flow dis (the CPU default) or install an OpenCV built with "
                "opencv_contrib's CUDA modules"
            )
        fast_pyramids = options.get("fast_pyramids", False)
        if not isinstance(fast_pyramids, bool):
            raise ParameterError(
                f"cuda fast_pyramids: expected True or False, got {fast_pyramids!r}"
            )
        params = _farneback_params("cuda", options, extra=("fast_pyramids",))
        super().__init__({**params, "fast_pyramids": fast_pyramids})
        # Positional, in the order of cv::cuda::FarnebackOpticalFlow::create(numLevels,
        # pyrScale, fastPyramids, winSize, numIters, polyN, polySigma, flags).
        self._of = create(
            params["levels"], params["pyr_scale"], fast_pyramids, params["winsize"],
            params["iterations"], params["poly_n"], params["poly_sigma"], params["flags"],
        )
        # Kept across calls: upload() reuses the device allocation while the size is unchanged.
        self._g0 = gpumat()
        self._g1 = gpumat()

    def _calc(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self._g0.upload(a)
        self._g1.upload(b)
        out = self._of.calc(self._g0, self._g1, None)
        # calc returns a GpuMat (CV_32FC2); some binding versions hand back a host array.
        return out.download() if hasattr(out, "download") else np.asarray(out)


_BACKEND_CLASSES: dict[str, type[FlowBackend]] = {
    "dis": _DISBackend,
    "farneback": _FarnebackBackend,
    "deepflow": _DeepFlowBackend,
    "cuda": _CudaFarnebackBackend,
}


def get_backend(name: str = "dis", **options: Any) -> FlowBackend:
    """Build a reusable flow backend.

    Parameters
    ----------
    name : str
        A key of :data:`BACKENDS`: ``"dis"``, ``"farneback"``, ``"deepflow"``, ``"cuda"`` or
        ``"auto"`` (case-insensitive).
    **options
        Backend options:

        - ``dis``: ``preset`` in :data:`DIS_PRESETS` (default :data:`DEFAULT_DIS_PRESET`), and
          ``finest_scale`` (int >= 0), ``patch_stride`` (int >= 1), ``descent_iterations``
          (int >= 1) and ``variational_iterations`` (int >= 0), by default the preset's: the
          finest pyramid level matched, the spacing of the patches, the gradient-descent
          iterations that match each patch and the iterations of the variational refinement
          that smooths the matched flow.
        - ``farneback``: any of :data:`FARNEBACK_DEFAULTS` (``pyr_scale``, ``levels``,
          ``winsize``, ``iterations``, ``poly_n`` (5 or 7), ``poly_sigma``, ``flags``
          (0 or ``cv2.OPTFLOW_FARNEBACK_GAUSSIAN``)).
        - ``cuda``: the farneback options plus ``fast_pyramids`` (bool, default False).
        - ``deepflow``: none.
        - ``auto``: none, since which backend it picks depends on the machine.

    Returns
    -------
    FlowBackend
        Callable as ``backend(a_grey_u8, b_grey_u8) -> (H, W, 2) float32``.

    Raises
    ------
    ParameterError
        For an unknown backend name, an unknown option or an invalid option value.
    FlowBackendError
        For ``"cuda"`` when OpenCV has no CUDA support or sees no CUDA device.

    Notes
    -----
    Backends are not thread-safe; see :class:`FlowBackend`.
    """
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise ParameterError(
            f"flow backend: expected one of {', '.join(BACKENDS)}, got {name!r}"
        )
    key = name.strip().lower()
    if key == "auto":
        # Options differ between the backends auto may pick (dis presets vs farneback
        # parameters), so accepting them would make the same call fail on some machines.
        if options:
            raise ParameterError(
                f"flow backend 'auto' takes no options (got {', '.join(sorted(options))}); "
                "name the backend explicitly to pass options"
            )
        key = "cuda" if _cuda_ready() else "dis"
    return _BACKEND_CLASSES[key](**options)


# --------------------------------------------------------------------------------------------
# Computing flow
# --------------------------------------------------------------------------------------------


def _scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return max(1, round(h * scale)), max(1, round(w * scale))


def compute_flow(
    backend: FlowBackend, a: npt.ArrayLike, b: npt.ArrayLike, *, scale: float = 1.0
) -> np.ndarray:
    """Optical flow from frame ``a`` to frame ``b`` with a reusable backend.

    Parameters
    ----------
    backend : FlowBackend
        From :func:`get_backend`; reuse it for all pairs of a video.
    a, b : (H, W) or (H, W, 3) ndarray of uint8
        Grey or RGB (RGB channel order) frames of the same size.
    scale : float, optional
        In (0, 1]. Below 1 the flow is computed on frames resized by ``scale`` (area
        averaging, ``cv2.INTER_AREA``) and brought back to full size with :func:`resize_flow`
        (bilinear, vectors multiplied by about ``1/scale``). Faster, coarser.

    Returns
    -------
    f : (H, W, 2) ndarray of float32
        Displacement from ``a`` to ``b`` in full-resolution pixels: ``a(x) ~ b(x + f(x))``,
        ``f[..., 0]`` = dx (columns, positive right), ``f[..., 1]`` = dy (rows, positive down).

    Raises
    ------
    ParameterError
        For frames that are not uint8 grey/RGB, frames of different sizes, an invalid
        ``scale``, or frames too small for the backend.

    Notes
    -----
    The reduced size is ``round(H * scale) x round(W * scale)``; the vectors are multiplied by
    the exact per-axis size ratio (``W / round(W * scale)`` for dx, likewise for dy), which
    differs from ``1 / scale`` when the rounding is not exact.
    """
    if not isinstance(backend, FlowBackend):
        raise ParameterError(
            f"backend: expected a FlowBackend from get_backend(), got {type(backend).__name__}"
        )
    s = _check_scale(scale)
    ga = to_grey(a)
    gb = to_grey(b)
    if ga.shape != gb.shape:
        raise ParameterError(f"frames differ in size: a is {ga.shape[:2]}, b is {gb.shape[:2]}")
    h, w = ga.shape
    if s == 1.0:
        return backend(ga, gb)
    sh, sw = _scaled_size(h, w, s)
    # INTER_AREA averages the pixels a small pixel covers: an anti-aliased reduction, so
    # the reduced frames carry no aliasing the flow algorithm could lock onto.
    sa = cv2.resize(ga, (sw, sh), interpolation=cv2.INTER_AREA)
    sb = cv2.resize(gb, (sw, sh), interpolation=cv2.INTER_AREA)
    return resize_flow(backend(sa, sb), (h, w))


def flow(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    backend: str = "dis",
    scale: float = 1.0,
    **options: Any,
) -> np.ndarray:
    """Optical flow from frame ``a`` to frame ``b`` (one-shot convenience).

    Parameters
    ----------
    a, b : (H, W) or (H, W, 3) ndarray of uint8
        Grey or RGB (RGB channel order) frames of the same size.
    backend : str, optional
        A key of :data:`BACKENDS`; default ``"dis"``.
    scale : float, optional
        In (0, 1]; compute at reduced resolution (see :func:`compute_flow`).
    **options
        Backend options (see :func:`get_backend`), e.g. ``preset="medium"`` for ``dis``.

    Returns
    -------
    f : (H, W, 2) ndarray of float32
        ``a(x) ~ b(x + f(x))``; ``f[..., 0]`` = dx (columns), ``f[..., 1]`` = dy (rows).

    Raises
    ------
    ParameterError
        Invalid frames, backend name, option or scale.
    FlowBackendError
        The backend is not available (``"cuda"`` without CUDA).

    Notes
    -----
    Builds a new backend on every call. For videos use :func:`get_backend` once and
    :func:`compute_flow` per pair.

    Examples
    --------
    >>> f = flow(frame0, frame1, preset="medium", scale=0.5)  # doctest: +SKIP
    """
    s = _check_scale(scale)  # before building a backend: cheap errors first
    return compute_flow(get_backend(backend, **options), a, b, scale=s)


def resize_flow(f: npt.ArrayLike, size: tuple[int, int]) -> np.ndarray:
    """Resample a flow field to another image size, rescaling its vectors.

    Parameters
    ----------
    f : (h, w, 2) array_like of float
        Flow field in pixels of an ``h x w`` image (``f[..., 0]`` = dx, ``f[..., 1]`` = dy).
    size : tuple of 2 int
        The new size as ``(height, width)`` -- NumPy/scikit-image order, not OpenCV's
        ``(width, height)``.

    Returns
    -------
    g : (height, width, 2) ndarray of float32
        The field sampled at the new pixel centres, with ``g[..., 0]`` multiplied by
        ``width / w`` and ``g[..., 1]`` by ``height / h`` so that displacements are in pixels
        of the new size. A new array, also when the size is unchanged.

    Raises
    ------
    ParameterError
        If ``f`` is not (h, w, 2) or ``size`` is not two positive integers.

    Notes
    -----
    Bilinear interpolation (``cv2.INTER_LINEAR``) when enlarging along either axis, area
    averaging (``cv2.INTER_AREA``) when shrinking along both, which avoids aliasing the field.
    Both use OpenCV's pixel-centre alignment (pixel ``i`` of the new grid lies at
    ``(i + 0.5) * w / width - 0.5`` of the old one), the same geometry as ``cv2.resize`` of the
    frames, so the field stays registered with frames resized the same way. A constant
    field stays constant up to float32 rounding (OpenCV's bilinear weights are float32, so
    values may move by one unit in the last place).
    """
    arr = _check_flow_field(f)
    try:
        new_h, new_w = size
    except (TypeError, ValueError):
        raise ParameterError(f"size: expected (height, width), got {size!r}") from None
    for v in (new_h, new_w):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ParameterError(
                f"size: expected two positive integers (height, width), got {size!r}"
            )
    new_h, new_w = int(new_h), int(new_w)
    h, w = arr.shape[:2]
    src = np.ascontiguousarray(arr, dtype=np.float32)
    if (new_h, new_w) == (h, w):
        return src.copy() if src is arr else src
    shrinking = new_h <= h and new_w <= w
    g = cv2.resize(
        src, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )
    g[..., 0] *= new_w / w
    g[..., 1] *= new_h / h
    return g


# --------------------------------------------------------------------------------------------
# Visualisation
# --------------------------------------------------------------------------------------------


def flow_to_color(f: npt.ArrayLike, *, max_radius: float | None = None) -> np.ndarray:
    """Render a flow field with the Middlebury colour code (Baker et al. 2011).

    Parameters
    ----------
    f : (H, W, 2) array_like of float
        Flow field, ``f[..., 0]`` = dx, ``f[..., 1]`` = dy (image coordinates, y down).
    max_radius : float, optional
        Flow magnitude (pixels) drawn at full saturation. Default: the largest finite
        magnitude in ``f``, but at least 1, so that sub-pixel noise in an almost static frame
        is drawn pale instead of being blown up to full colour.

    Returns
    -------
    rgb : (H, W, 3) ndarray of uint8
        RGB image (RGB order; reverse the channels for ``cv2.imwrite``).

    Raises
    ------
    ParameterError
        If ``f`` is not (H, W, 2) or ``max_radius`` is not a positive finite number.

    Notes
    -----
    Hue encodes direction, saturation magnitude, as in the Middlebury ``colorcode.cpp`` /
    ``computeColor.m``: with ``(u, v) = f / max_radius``, the angle
    ``atan2(-v, -u) / pi`` in [-1, 1] indexes the 55-colour wheel (RY 15, YG 6, GC 4, CB 11,
    BM 13, MR 6) with linear interpolation between neighbouring colours. Motion to the right
    (+x) is red, down (+y) yellow, left cyan-blue and up blue-violet. Zero motion is white;
    the colour desaturates towards white as ``1 - r (1 - colour)`` for radius ``r <= 1`` and
    is darkened to 75 % beyond ``max_radius``. Pixels with a non-finite component (unknown
    flow) are black. Channels are truncated to integers as in the reference code. Like the
    reference, the wheel index runs to 54 and wraps only from 54 to 0, so directions just
    above the +x axis (v slightly negative) get the last wheel colour (255, 0, 42) rather
    than pure red.
    """
    arr = _check_flow_field(f)
    if max_radius is None:
        rad = np.hypot(arr[..., 0].astype(np.float64), arr[..., 1].astype(np.float64))
        finite = rad[np.isfinite(rad)]
        scale = max(float(finite.max()) if finite.size else 0.0, 1.0)
    else:
        if (
            isinstance(max_radius, bool)
            or not isinstance(max_radius, numbers.Real)
            or not (0.0 < float(max_radius) < math.inf)
        ):
            raise ParameterError(f"max_radius: expected a positive number, got {max_radius!r}")
        scale = float(max_radius)
    return flow_color(arr, scale)


# --------------------------------------------------------------------------------------------
# Middlebury .flo files
# --------------------------------------------------------------------------------------------


def write_flo(path: str | os.PathLike, f: npt.ArrayLike) -> None:
    """Write a flow field as a Middlebury ``.flo`` file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; replaced atomically (written to a temporary file in the same directory,
        then renamed), so a failed write leaves no partial file.
    f : (H, W, 2) array_like of float
        Flow field, stored as float32 (float64 input is rounded; float32 input is stored
        bit-exactly, NaN and infinities included).

    Raises
    ------
    ParameterError
        If ``f`` is not (H, W, 2).
    OutputError
        If the file cannot be written.

    Notes
    -----
    Format (little-endian): 4 bytes ``b"PIEH"`` (the float32 202021.25), int32 width, int32
    height, then ``H * W`` float32 pairs ``(u, v)`` in row-major order.
    """
    arr = _check_flow_field(f)
    h, w = arr.shape[:2]
    data = np.ascontiguousarray(arr, dtype="<f4")
    header = _FLO_MAGIC + np.array([w, h], dtype="<i4").tobytes()
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=".tmp-", suffix=".flo", dir=directory
        )
        with os.fdopen(fd, "wb") as fh:
            fh.write(header)
            fh.write(data.tobytes())
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as e:
        raise OutputError(target, f"cannot write .flo file: {e.strerror or e}") from e
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury ``.flo`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    f : (H, W, 2) ndarray of float32
        The stored field (native byte order, writable).

    Raises
    ------
    InputFileError
        If the file cannot be read, does not start with the ``b"PIEH"`` magic, declares a
        non-positive size, or its length is not exactly ``12 + 8 * W * H`` bytes
        (truncated, or with trailing data). The message names the file.

    Notes
    -----
    See :func:`write_flo` for the format.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise InputFileError(name, f"cannot read .flo file: {e.strerror or e}") from e
    if len(data) < _FLO_HEADER_BYTES:
        raise InputFileError(
            name,
            f"not a .flo file: expected a {_FLO_HEADER_BYTES}-byte header, "
            f"got {len(data)} bytes",
        )
    magic = data[:4]
    if magic != _FLO_MAGIC:
        raise InputFileError(
            name, f"not a .flo file: expected magic {_FLO_MAGIC!r} (202021.25), got {magic!r}"
        )
    w, h = (int(x) for x in np.frombuffer(data, dtype="<i4", count=2, offset=4))
    if w < 1 or h < 1:
        raise InputFileError(
            name, f"invalid .flo size: expected positive width and height, got {w}x{h}"
        )
    expected = _FLO_HEADER_BYTES + 8 * w * h
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing data"
        raise InputFileError(
            name,
            f".flo file {what}: expected {expected} bytes for {w}x{h}, got {len(data)}",
        )
    f = np.frombuffer(data, dtype="<f4", count=2 * w * h, offset=_FLO_HEADER_BYTES)
    return f.reshape(h, w, 2).astype(np.float32)  # copy: native order, writable


#: Suffixes of a pair-flow folder's files, in the order they are looked for.
PAIR_FLOW_SUFFIXES = (".flo", ".npy")


def pair_flow_path(folder: str | os.PathLike, a: int, b: int, suffix: str = ".flo") -> Path:
    """Where a pair-flow folder keeps the flow from frame ``a`` to frame ``b``:
    ``AAAAAA_BBBBBB.flo`` (or ``.npy``), the video's 0-based frame numbers on six digits.

    ``blursynth flowblur --flows DIR`` reads this layout: flows computed elsewhere (a flow
    network on a GPU, say), both directions of every pair of consecutive frames used.
    """
    if suffix not in PAIR_FLOW_SUFFIXES:
        raise ParameterError(f"suffix: expected one of {PAIR_FLOW_SUFFIXES}, got {suffix!r}")
    return Path(folder) / f"{a:06d}_{b:06d}{suffix}"


def pair_flows_stamp(folder: str | os.PathLike) -> str:
    """A fingerprint of a pair-flow folder: the hex SHA-256 of the names, sizes and
    modification times (ns) of its flow files (:data:`PAIR_FLOW_SUFFIXES`).

    A resumed run compares it to tell replaced flow files from the ones it used. It reads no
    file contents (a 720p clip's flows run to gigabytes), so a file rewritten with the same size
    inside the file system's timestamp resolution goes unnoticed.
    """
    h = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.suffix in PAIR_FLOW_SUFFIXES and path.is_file():
            st = path.stat()
            h.update(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_pair_flow(folder, a: int, b: int, shape: tuple[int, int] | None) -> np.ndarray:
    for suffix in PAIR_FLOW_SUFFIXES:
        path = pair_flow_path(folder, a, b, suffix)
        if path.is_file():
            break
    else:
        raise InputFileError(pair_flow_path(folder, a, b),
                             f"missing: the flow from frame {a} to frame {b} (.flo or .npy)")
    if suffix == ".flo":
        f = read_flo(path)
    else:
        try:
            f = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputFileError(path, f"cannot read .npy file: {e}") from e
    if f.ndim != 3 or f.shape[2] != 2 or (shape is not None and f.shape[:2] != tuple(shape)):
        want = "(H, W, 2)" if shape is None else str(tuple(shape) + (2,))
        raise InputFileError(path, f"expected a {want} flow, got shape {f.shape}")
    f = np.asarray(f, np.float32)
    if not np.isfinite(f).all():
        raise InputFileError(path, "holds NaN or infinite vectors")
    return f


def read_pair_flows(folder: str | os.PathLike, frames: Iterable[int],
                    shape: tuple[int, int] | None = None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The flows of consecutive frames, from a pair-flow folder (:func:`pair_flow_path`), one
    pair at a time, as ``flows=`` of :func:`blursynth.flowblur.flowblur_frames` takes them.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder.
    frames : iterable of int
        The video's frame numbers in the order used (``start, start + stride, ...``); it may
        be endless: a pair is read when it is asked for.
    shape : (int, int), optional
        The frames' (height, width), which every flow must have.

    Yields
    ------
    (numpy.ndarray, numpy.ndarray)
        ``(F_ab, F_ba)`` for each pair ``(a, b)`` of consecutive numbers: float32 (H, W, 2)
        displacements in pixels from frame ``a`` to frame ``b`` and back.

    Raises
    ------
    InputFileError
        A flow file is missing (named by its ``.flo`` path), unreadable, of the wrong shape, or
        holds NaN or infinite vectors.
    """
    it = iter(frames)
    a = next(it, None)
    for b in it:
        yield _read_pair_flow(folder, a, b, shape), _read_pair_flow(folder, b, a, shape)
        a = b
