"""Camera shake: random blur kernels (PSFs) drawn per item and applied to bursts.

A hand-held camera turns during the exposure, so the whole frame is convolved with a point
spread function; on top of the motion blur of a flowblur clip this gives the composite
degradation :math:`B_t = k_t * A_t` of learning-blind-motion-deblurring, but computed in
linear light, with reflect (or valid) borders and rounding (see :mod:`blursynth.convolve`).

Kernels come from a model of :mod:`blursynth.psf` (``gp``, ``boracchi``, ``randomwalk``,
``line``) or from a bank file. Every draw for an item comes from
``item_rng(seed, item, "shake")`` in a fixed order: for a model, the kernel size (one of
``sizes``), the extent (when a range is given) and then one 63-bit kernel seed per frame
(``per_frame=True``, as the seed project did) or one for the whole burst; for a bank, one
index per frame or per burst. Each frame's *kernel info* records what regenerates its kernel
exactly (:func:`kernel_from_info`)::

    {"model": "gp", "size": 21, "extent": null, "seed": 4120...}   # make_kernel(..., PCG64(seed))
    {"bank": "/abs/bank.npz", "index": 17, "size": 35}            # load_bank(bank)[index]

Cores (arrays in, arrays out): :func:`shake_burst` (NumPy), :func:`shake_sample` (a
:class:`~blursynth.sampling.Sample`, also the NumPy path of
:class:`blursynth.data.ShakeTransform`) and :func:`shake_batch` (torch batches on their
device). The drivers over image files, clip folders and LMDBs are in
:mod:`blursynth.shake_files`.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .convolve import BORDERS, blur_u8, check_kernel, convolve_torch
from .crf import CRF, get_crf
from .errors import InputFileError, ParameterError
from .sampling import Sample
from .seeding import item_rng

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "STAGE", "ShakeParams", "kernel_limit", "shake_margin", "load_kernels", "plan_kernels",
    "kernel_from_info", "BurstKernels", "crop_margin", "shake_frame", "shake_burst", "shake_sample",
    "shake_batch", "resolve_crf",
]

#: Stage name: manifests' "stage" and the random streams' stage key.
STAGE = "shake"
_SEED_BOUND = 1 << 63  # kernel seeds fit a signed int64 (msgpack, JSON readers)

PathLike = str | os.PathLike


# -- parameters ----------------------------------------------------------------------------


def _models() -> dict[str, str]:
    from .psf import MODELS  # imported late: blursynth.convolve users need no psf
    return MODELS


@dataclass(frozen=True)
class ShakeParams:
    """How shake kernels are drawn and applied.

    Parameters
    ----------
    model : str or None
        Kernel model, a key of :data:`blursynth.psf.MODELS` (``gp`` = the seed project's
        Matern Gaussian-process trajectories). Ignored (recorded as None) with `bank`.
    bank : str or None
        A kernel bank (``.npz``, ``.mat`` or a PNG folder; :func:`blursynth.kernel_bank.load_bank`):
        kernels are drawn uniformly from it instead of generated. Stored as an absolute path.
    sizes : tuple of int
        Kernel sizes K (odd, >= 3, pixels) drawn uniformly, one per burst; without `extent` the
        blur length grows with K. The seed project trained with (17, 21, 25).
    extent : (float, float) or None
        Blur extent range in pixels: one value drawn uniformly per burst and passed to
        ``make_kernel(extent=...)``; the maximum must fit the smallest size (<= K - 1).
        None: the model's own scale for the size.
    per_frame : bool
        True: an independent kernel for every frame of a burst (the camera shakes
        differently in each exposure); False: one kernel for the whole burst.
    border : {"reflect", "valid"}
        ``"reflect"``: frames keep their size. ``"valid"``: every frame, blurry and sharp, is
        cropped by a margin of ``K_max // 2`` pixels on each side (:func:`shake_margin`), so no
        output pixel depends on invented border values.
    crf : str or None
        Camera response of the 8-bit frames (:func:`blursynth.crf.get_crf` spec). None: the
        input's own (a clip's or LMDB record's ``crf``), else ``srgb``.
    psf_params : dict
        Extra keyword arguments of the model (:func:`blursynth.psf.make_kernel`), JSON-able.

    Raises
    ------
    ParameterError
        An unknown model or border, sizes that are not odd integers >= 3, an empty or
        inverted extent range, an invalid crf spec, or model parameters (or an extent) the
        model rejects: one kernel is drawn at construction to check them.
    """

    model: str | None = "gp"
    bank: str | None = None
    sizes: tuple[int, ...] = (17, 21, 25)
    extent: tuple[float, float] | None = None
    per_frame: bool = True
    border: str = "reflect"
    crf: str | None = None
    psf_params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen)
        if self.bank is not None:
            set_("bank", os.path.abspath(os.fspath(self.bank)))
            set_("model", None)
        elif self.model not in _models():
            raise ParameterError(f"model: expected one of {', '.join(_models())}, "
                                 f"got {self.model!r}")
        sizes = tuple(self.sizes) if isinstance(self.sizes, Iterable) else (self.sizes,)
        if not sizes or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                and s >= 3 and s % 2 == 1 for s in sizes):
            raise ParameterError(f"sizes: expected odd kernel sizes >= 3 in pixels, "
                                 f"got {self.sizes!r}")
        set_("sizes", tuple(int(s) for s in sizes))
        if self.extent is not None:
            try:
                lo, hi = (float(v) for v in self.extent)
            except (TypeError, ValueError):
                raise ParameterError(f"extent: expected (min, max) in pixels, "
                                     f"got {self.extent!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
                raise ParameterError(f"extent: expected 0 < min <= max, got {self.extent!r}")
            set_("extent", (lo, hi))
        if self.border not in BORDERS:
            raise ParameterError(f"border: expected one of {', '.join(BORDERS)}, "
                                 f"got {self.border!r}")
        if self.crf is not None:
            set_("crf", get_crf(self.crf).spec)
        if not isinstance(self.psf_params, Mapping):
            raise ParameterError(f"psf_params: expected a dict, got {self.psf_params!r}")
        set_("psf_params", dict(self.psf_params))
        if self.model is not None:
            self._trial_draw()

    def _trial_draw(self) -> None:
        """Draw one kernel now, so a model parameter or an extent the sizes cannot hold fails
        here, before any item is processed, rather than on every item."""
        from .psf import make_kernel

        extent = None if self.extent is None else self.extent[1]
        try:
            make_kernel(self.model, min(self.sizes), np.random.default_rng(0), extent=extent,
                        **self.psf_params)
        except ParameterError as e:
            what = "psf_params/extent/sizes" if self.psf_params else "extent/sizes"
            raise ParameterError(f"{what}: model {self.model!r} with size {min(self.sizes)} "
                                 f"and extent {extent}: {e}") from None
        except TypeError as e:  # a keyword make_kernel does not take
            raise ParameterError(f"psf_params: {e}") from None

    def to_dict(self) -> dict:
        """The parameters as JSON-able types (manifests, LMDB meta)."""
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        d["extent"] = None if self.extent is None else list(self.extent)
        return d


# -- kernels -------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _bank(path: str, stamp: tuple) -> np.ndarray:
    from .kernel_bank import load_bank

    bank = np.asarray(load_bank(path))
    if bank.ndim != 3 or bank.shape[0] == 0 or bank.shape[1] != bank.shape[2]:
        raise InputFileError(path, f"expected a (N, K, K) kernel bank, got shape {bank.shape}")
    try:
        bank = np.stack([check_kernel(k, normalised=True, what=f"kernel {i}")
                         for i, k in enumerate(bank)]).astype(np.float32)
    except ParameterError as e:
        raise InputFileError(path, str(e)) from None
    bank.flags.writeable = False
    return bank


def load_kernels(path: PathLike) -> np.ndarray:
    """A kernel bank, validated and cached (reloaded when the file changes).

    Parameters
    ----------
    path : path
        ``.npz``, ``.mat`` or a folder of PNGs (:func:`blursynth.kernel_bank.load_bank`).

    Returns
    -------
    bank : ndarray of float32, shape (N, K, K)
        Read-only; each kernel odd, >= 0, summing to 1.

    Raises
    ------
    InputFileError
        Missing, unreadable, or a kernel that is not a normalised odd PSF.
    """
    p = Path(os.path.abspath(os.fspath(path)))
    try:
        st = p.stat()
    except OSError:
        raise InputFileError(p, "kernel bank not found") from None
    return _bank(str(p), (st.st_mtime_ns, st.st_size))


def kernel_limit(params: ShakeParams) -> int:
    """Largest kernel side the parameters can draw (the bank's K, or ``max(sizes)``)."""
    if params.bank is not None:
        return int(load_kernels(params.bank).shape[1])
    return max(params.sizes)


def shake_margin(params: ShakeParams) -> int:
    """Pixels cropped from every side of every frame: ``kernel_limit // 2`` with
    ``border="valid"`` (the same for all items of a run, so outputs stay aligned), else 0."""
    return kernel_limit(params) // 2 if params.border == "valid" else 0


def plan_kernels(params: ShakeParams, rng: np.random.Generator, frames: int) -> list[dict]:
    """Draw the kernel infos of a burst (see the module docstring for their fields).

    Parameters
    ----------
    params : ShakeParams
    rng : numpy.random.Generator
        The item's stream, ``item_rng(seed, item, "shake")``.
    frames : int
        Burst length T.

    Returns
    -------
    list of dict
        T JSON-able infos, frame order; all equal when ``per_frame`` is False.
    """
    n = frames if params.per_frame else 1
    if params.bank is not None:
        bank = load_kernels(params.bank)
        idx = rng.integers(len(bank), size=n)
        infos = [{"bank": params.bank, "index": int(i), "size": int(bank.shape[1])}
                 for i in idx]
    else:
        size = params.sizes[int(rng.integers(len(params.sizes)))]
        extent = None if params.extent is None else float(rng.uniform(*params.extent))
        seeds = rng.integers(_SEED_BOUND, size=n, dtype=np.uint64)
        extra = {"params": dict(params.psf_params)} if params.psf_params else {}
        infos = [{"model": params.model, "size": size, "extent": extent, "seed": int(s),
                  **extra} for s in seeds]
    return infos if params.per_frame else [dict(infos[0]) for _ in range(frames)]


def kernel_from_info(info: Mapping) -> np.ndarray:
    """Regenerate a kernel from its info.

    Returns
    -------
    kernel : ndarray of float32, shape (K, K)
        ``load_kernels(bank)[index]``, or ``make_kernel(model, size, rng, extent=extent,
        **params)`` with ``rng = numpy.random.Generator(numpy.random.PCG64(seed))``.

    Raises
    ------
    ParameterError
        An info with neither a bank nor a model, or a generated kernel that is not a
        normalised odd PSF.
    InputFileError
        The bank cannot be read.
    """
    if "bank" in info:
        return load_kernels(info["bank"])[int(info["index"])]
    if "model" not in info or "seed" not in info:
        raise ParameterError(f"kernel info: expected 'bank' and 'index' or 'model', 'size' and "
                             f"'seed', got {dict(info)}")
    from .psf import make_kernel

    rng = np.random.Generator(np.random.PCG64(int(info["seed"])))
    k = make_kernel(info["model"], int(info["size"]), rng, extent=info.get("extent"),
                    **info.get("params", {}))
    return check_kernel(k, normalised=True,
                        what=f"psf {info['model']} size {info['size']} seed {info['seed']}")


class BurstKernels:
    """The kernels of a burst's infos, indexed by frame; a repeated info is generated once.

    Parameters
    ----------
    infos : sequence of dict
        One kernel info per frame (:func:`plan_kernels`).

    Notes
    -----
    ``kernels[t]`` is :func:`kernel_from_info` of ``infos[t]``. The last kernel is kept, so a
    per-burst kernel (all infos equal) is generated once however long the clip, while a
    per-frame clip of any length holds one kernel at a time.
    """

    def __init__(self, infos: Sequence[Mapping]):
        self.infos = infos
        self._last: tuple[str, np.ndarray] | None = None

    def __getitem__(self, t: int) -> np.ndarray:
        key = json.dumps(self.infos[t], sort_keys=True)
        if self._last is None or self._last[0] != key:
            self._last = (key, kernel_from_info(self.infos[t]))
        return self._last[1]


# -- cores: arrays in, arrays out ----------------------------------------------------------


def crop_margin(frames: np.ndarray, m: int) -> np.ndarray:
    """Remove `m` pixels from every side of ``(..., H, W, C)`` frames (no copy when 0)."""
    if m == 0:
        return frames
    return np.ascontiguousarray(frames[..., m:frames.shape[-3] - m, m:frames.shape[-2] - m, :])


def shake_frame(frame: np.ndarray, kernel: np.ndarray, crf: CRF, border: str,
                margin: int) -> np.ndarray:
    """Blur one ``(H, W, 3)`` uint8 frame (:func:`blursynth.convolve.blur_u8`); with
    ``border="valid"`` the result is ``(H - 2 margin, W - 2 margin, 3)`` whatever the kernel's
    size (`margin` >= ``K // 2``, :func:`shake_margin`), so every frame of a run aligns."""
    out = blur_u8(frame, kernel, crf, border)
    if border == "valid":  # "valid" took K // 2; the rest of the run's margin comes off here
        return crop_margin(out, margin - kernel.shape[0] // 2)
    return out


def _check_frames(frames: np.ndarray, margin: int, what: str) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 \
            or 0 in frames.shape:
        raise ParameterError(f"{what}: expected a (T, H, W, 3) uint8 burst, got "
                             f"{frames.dtype} {frames.shape}")
    if min(frames.shape[1:3]) <= 2 * margin:
        raise ParameterError(f"{what}: frames of {frames.shape[1]}x{frames.shape[2]} are too "
                             f"small for border='valid' with a {margin} px margin")


def shake_burst(blurry: np.ndarray, params: ShakeParams, rng: np.random.Generator,
                crf: str | CRF = "srgb") -> tuple[np.ndarray, list[dict]]:
    """Blur every frame of a burst with its shake kernel, in linear light.

    Parameters
    ----------
    blurry : ndarray of uint8, shape (T, H, W, 3)
        Encoded RGB frames, 0-255.
    params : ShakeParams
        Kernel model or bank, sizes, per-frame or per-burst, border (``params.crf`` is not
        consulted here: pass the curve as `crf`).
    rng : numpy.random.Generator
        The item's stream, ``item_rng(seed, item, "shake")``; draws as :func:`plan_kernels`.
    crf : str or CRF
        Camera response of the frames.

    Returns
    -------
    frames : ndarray of uint8, shape (T, H', W', 3)
        Shaken frames, encoded with `crf` and rounded. ``H' = H - 2 m`` with ``m =
        shake_margin(params)`` (0 unless ``border="valid"``).
    kernel_info : list of dict
        One info per frame (:func:`plan_kernels`); :func:`kernel_from_info` regenerates it.

    Raises
    ------
    ParameterError
        Not a (T, H, W, 3) uint8 burst, frames too small for the valid margin, an invalid
        crf, or a kernel that is not a normalised odd PSF.
    """
    frames = np.asarray(blurry)
    m = shake_margin(params)
    _check_frames(frames, m, "shake_burst")
    curve = get_crf(crf)
    infos = plan_kernels(params, rng, len(frames))
    kernels = BurstKernels(infos)
    out = np.stack([shake_frame(f, kernels[t], curve, params.border, m)
                    for t, f in enumerate(frames)])
    return out, infos


def resolve_crf(params: ShakeParams, *candidates: str | CRF | None) -> CRF:
    """The curve to use: ``params.crf``, else the first given of the input's own
    (`candidates`, e.g. a clip's or record's ``crf``), else srgb."""
    return get_crf(params.crf or next((c for c in candidates if c), "srgb"))


def shake_sample(sample: Sample, params: ShakeParams, seed: int = 0, *,
                 key: str | None = None) -> Sample:
    """Shake the blurry frames of a sample (the sharp ones are kept, or cropped alike).

    Parameters
    ----------
    sample : blursynth.sampling.Sample
        ``(T, H, W, 3)`` uint8 bursts encoded with ``meta["crf"]`` (srgb if absent).
    params : ShakeParams
    seed : int
        Run seed.
    key : str, optional
        Item key of the random stream ``item_rng(seed, key, "shake")``; default the sample id.

    Returns
    -------
    Sample
        Same id and ref; blurry shaken; with ``border="valid"`` both sides cropped by
        :func:`shake_margin` and ``meta["crop"]`` moved accordingly. ``meta["shake"]`` holds
        ``params``, ``seed``, ``key``, ``crf``, ``margin`` and ``kernels`` (one info per frame);
        a previous ``meta["shake"]`` is kept under ``"previous"``.

    Raises
    ------
    ParameterError
        As :func:`shake_burst`.
    """
    key = sample.id if key is None else key
    crf = resolve_crf(params, sample.meta.get("crf"))
    blurry, infos = shake_burst(sample.blurry, params, item_rng(seed, key, STAGE), crf)
    m = shake_margin(params)
    meta = dict(sample.meta)
    info = {"params": params.to_dict(), "seed": int(seed), "key": key, "crf": crf.spec,
            "margin": m, "kernels": infos}
    if "shake" in meta:
        info["previous"] = meta["shake"]
    meta["shake"] = info
    crop = meta.get("crop")
    if m and isinstance(crop, (list, tuple)) and len(crop) == 4:
        y, x, h, w = crop
        meta["crop"] = [y + m, x + m, h - 2 * m, w - 2 * m]
    return Sample(id=sample.id, blurry=blurry, sharp=crop_margin(np.asarray(sample.sharp), m),
                  ref=sample.ref, meta=meta)


# -- torch core ----------------------------------------------------------------------------


def _decode_torch(y: "torch.Tensor", crf: CRF) -> "torch.Tensor":
    """Encoded [0, 1] -> linear float32 through the curve's 8-bit LUT: exact on the 8-bit
    grid (what datasets hold), linearly interpolated between codes."""
    import torch

    lut = torch.as_tensor(crf.decode_lut(), device=y.device)
    c = y.to(torch.float32).clamp(0, 1) * 255
    r = c.round()
    i = c.floor().clamp(max=254)
    f = c - i
    lo = lut[i.long()]
    interp = lo + f * (lut[i.long() + 1] - lo)
    return torch.where((c - r).abs() < 1e-3, lut[r.long()], interp)


def _encode_torch(x: "torch.Tensor", crf: CRF, dtype) -> "torch.Tensor":
    """Linear -> the nearest 8-bit code / 255, exactly as :func:`blursynth.crf.encode_u8`."""
    import torch

    thr = torch.as_tensor(crf.thresholds(), device=x.device)
    codes = torch.searchsorted(thr, x.to(torch.float32).contiguous(), right=True)
    return codes.to(dtype) / 255


def _embed(kernel: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad an odd kernel to ``size x size`` around its centre (same convolution)."""
    out = np.zeros((size, size), np.float32)
    o = (size - kernel.shape[0]) // 2
    out[o:o + kernel.shape[0], o:o + kernel.shape[1]] = kernel
    return out


def shake_batch(blurry: "torch.Tensor", keys: Sequence[str], params: ShakeParams,
                seed: int = 0, *, crf: str | CRF | None = None
                ) -> tuple["torch.Tensor", list[list[dict]]]:
    """Shake a torch batch of bursts on its device (the core of the online transform).

    Parameters
    ----------
    blurry : torch.Tensor, shape (B, T, C, H, W)
        Encoded values / 255 in [0, 1] (as :class:`blursynth.data.NativeLmdbDataset` gives).
    keys : sequence of str
        B item keys: item b draws from ``item_rng(seed, keys[b], "shake")``.
    params : ShakeParams
    seed : int
        Run seed.
    crf : str or CRF, optional
        Used when ``params.crf`` is None; default srgb.

    Returns
    -------
    frames : torch.Tensor, shape (B, T, C, H', W')
        Shaken, re-encoded and rounded to the 8-bit grid (code / 255), `blurry`'s dtype and
        device; ``H' = H - 2 shake_margin(params)``.
    kernel_info : list of list of dict
        Per item, one info per frame (:func:`plan_kernels`).

    Raises
    ------
    ParameterError
        A tensor that is not (B, T, C, H, W) floating point, or a wrong number of keys.

    Notes
    -----
    Decoding uses the curve's 8-bit LUT and encoding its rounding thresholds, so on 8-bit
    inputs the result equals :func:`shake_burst`'s up to the float32 rounding of the two
    convolution routes (a code differs only where a value lands within ~1e-6 of a rounding
    threshold). All kernels are zero-padded to :func:`kernel_limit` and convolved in one
    :func:`blursynth.convolve.convolve_torch` call.
    """
    import torch

    if not isinstance(blurry, torch.Tensor) or blurry.ndim != 5 or not blurry.is_floating_point():
        got = (f"{blurry.dtype} {tuple(blurry.shape)}" if isinstance(blurry, torch.Tensor)
               else type(blurry).__name__)
        raise ParameterError(f"shake_batch: expected a (B, T, C, H, W) float tensor, got {got}")
    b, t, c, h, w = blurry.shape
    if len(keys) != b:
        raise ParameterError(f"shake_batch: expected {b} keys, got {len(keys)}")
    curve = resolve_crf(params, crf)
    size = kernel_limit(params)
    m = shake_margin(params)
    if min(h, w) <= 2 * m:
        raise ParameterError(f"shake_batch: frames of {h}x{w} are too small for "
                             f"border='valid' with a {m} px margin")
    infos = [plan_kernels(params, item_rng(seed, str(k), STAGE), t) for k in keys]
    stack = []
    for item in infos:
        kernels = BurstKernels(item)
        stack += [_embed(kernels[i], size) for i in range(t)]
    kt = torch.from_numpy(np.stack(stack)).to(blurry.device)
    lin = _decode_torch(blurry.reshape(b * t, c, h, w), curve)
    out = convolve_torch(lin, kt, border=params.border)
    out = _encode_torch(out, curve, blurry.dtype)
    return out.reshape(b, t, c, *out.shape[-2:]), infos
