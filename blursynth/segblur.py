"""Segmentation-based non-uniform blur: moving objects and a shaking camera in one photo.

A photo and the masks of some of its objects (:mod:`blursynth.segmasks`) become a blurry/sharp
pair in which every object moves with its own kernel and the background with the camera's.
Two image-formation models are offered (:data:`MODELS`), both in linear light:

``sbdd``
    Carbajal et al.'s Segmentation-Based Deblurring Dataset formula, reproduced as published
    (research notes 2.2). With :math:`M_0 = 1 - \\bigcup_i M_i` and every kernel applied to the
    *whole* image:

    .. math:: W_i = k_i \\ast M_i, \\quad \\alpha_i = W_i / (\\textstyle\\sum_j W_j + 10^{-6}),
              \\quad y = \\sum_i \\alpha_i\\, (k_i \\ast x).

    Occlusion is not modelled: next to a moving object the smear mixes the object's blur of the
    *whole* photo, so the background's colours are smeared along the object's motion and the
    background it uncovers is never seen.
``layered`` (default)
    Occlusion-aware layers composited back to front (Porter-Duff "over" on premultiplied
    colour). The background layer is the clean plate :math:`B` (given, or the photo with the
    objects filled in) blurred by the camera's kernel; then each object :math:`i`, with
    :math:`V_i` its *visible* mask (its mask minus those of the objects in front of it):

    .. math:: C_i = k_i \\ast (V_i\\, x), \\quad A_i = k_i \\ast V_i, \\quad
              y \\leftarrow C_i + (1 - A_i)\\, y.

    A moving object's smear carries its own colour, and the background it uncovers shows
    through where its alpha is below 1.

Kernels are PSFs in blursynth's convention: a true convolution
(:func:`blursynth.convolve.convolve`), odd-sized, sum 1, centred. SBDD's code applies a bank
kernel :math:`K` as ``fftconvolve(x, K[::-1, ::-1])``, a correlation with :math:`K`: pass
``K[::-1, ::-1]`` to :func:`sbdd_blur` to reproduce its numbers from its bank
(``benchmarks/bench_segblur.py`` does, and matches SBDD's float64 code within 1e-6). An
object's kernel is its whole apparent motion on the sensor (camera and object together), as in
SBDD, where the object's kernel replaces the camera's inside its mask.

Exactness by construction: a kernel that is the centred delta (a 1 in the middle) is applied
as the identity, so with all kernels the delta both models return the input (``sbdd`` to its
:math:`10^{-6}` normalisation, ``layered`` exactly: the visible masks partition the image and
the plate equals the photo outside the objects).

Work is limited to where it matters: :math:`k_i \\ast M_i` vanishes farther than ``K // 2``
pixels from the mask, so each object's layer (and, for ``sbdd``, its blur of the photo, whose
weight :math:`\\alpha_i` vanishes there too) is computed on the mask's bounding box grown by
``K // 2 + 1`` (plus ``K // 2`` of context for the photo): the same numbers as whole-image
convolutions, at a fraction of the cost. Everything is computed at full size with reflected
borders and cropped by ``K // 2`` for ``border="valid"``; no output pixel of the valid crop
depends on a reflected value.

The driver over files is :mod:`blursynth.segblur_files`.

References
----------
G. Carbajal, P. Vitoria, J. Lezama, P. Musé, "Assessing the Role of Datasets in the
Generalization of Motion Deblurring Methods to Real Images", arXiv 2209.12675 (SBDD).
T. Porter, T. Duff, "Compositing Digital Images", SIGGRAPH 1984.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np
from numpy.typing import ArrayLike

from blursynth_ext.dispatch import encode_linear

from .convolve import BORDERS, check_kernel, convolve
from .crf import decode_u8, get_crf
from .errors import ParameterError
from .shake import kernel_from_info, load_kernels

if TYPE_CHECKING:  # pragma: no cover
    from .segmasks import SegItem

__all__ = ["STAGE", "MODELS", "SegParams", "SegResult", "sbdd_blur", "layered_blur",
           "fill_background", "illuminate", "plan_item_kernels", "segblur_item"]

#: Stage name: manifests' "stage" and the random streams' stage key.
STAGE = "segblur"
#: Image-formation models: name -> description (``--help`` lists these).
MODELS = {
    "layered": "occlusion-aware layers, back to front: each object's colour and alpha blurred "
               "by its kernel and composited over the blurred background (its smear carries "
               "its own colour)",
    "sbdd": "SBDD as published: soft weights from each mask blurred by its kernel, every "
            "kernel blurs the whole photo (no occlusion; background colours smear)",
}
_SBDD_EPS = 1e-6  # SBDD's guard in alpha_i = W_i / (sum_j W_j + 1e-6)
_SEED_BOUND = 1 << 63  # kernel seeds fit a signed int64, as shake's
_FILL_DILATE = 3  # px: the fill samples the photo this far outside the masks (edge fringes)


# -- parameters ----------------------------------------------------------------------------


def _range(name: str, v, low: float, high: float, *, low_open: bool = False):
    """``v`` as a (lo, hi) float pair with low <= lo <= hi <= high, or None."""
    if v is None:
        return None
    try:
        lo, hi = (float(a) for a in v)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}: expected (min, max), got {v!r}") from None
    ok_lo = lo > low if low_open else lo >= low
    if not (math.isfinite(lo) and math.isfinite(hi) and ok_lo and lo <= hi <= high):
        raise ParameterError(f"{name}: expected {low:g} {'<' if low_open else '<='} min <= max "
                             f"<= {high:g}, got {v!r}")
    return lo, hi


@dataclass(frozen=True)
class SegParams:
    """How segmentation-based blur is drawn and rendered.

    Parameters
    ----------
    model : {"layered", "sbdd"}
        Image-formation model (:data:`MODELS`).
    psf_model : str or None
        Kernel trajectory model, a key of :data:`blursynth.psf.MODELS` (``gp``: smooth
        wandering Matern paths). Set to None when `bank` is given.
    bank : str or None
        A kernel bank (``.npz``, ``.mat``, PNG folder; :func:`blursynth.shake.load_kernels`):
        background and objects draw uniformly from it, as SBDD did, and the extents do not
        apply (set to None). Stored as an absolute path; `size` becomes the bank's K.
    object_extent, camera_extent : (float, float) or None
        Blur extent ranges in pixels (larger side of the kernel's path), one value drawn
        uniformly per object kernel and per camera kernel; ``0 <= min <= max <= size - 1``
        (0 is a still object or camera: the delta kernel). None: the model's own scale.
    size : int
        Kernel side K in pixels, odd, >= 3 (SBDD: 33 or 65).
    crf : str
        Camera response of the 8-bit photos (:func:`blursynth.crf.get_crf`): ``srgb``, or
        ``gamma:2.2`` as SBDD. Stored as the canonical spec.
    illumination : (float, float) or None
        SBDD's illumination augmentation: the linear photo's HSV value is multiplied by a factor
        drawn uniformly from this range (SBDD's COCO set: (0.5, 1.5)); values pushed above 1
        saturate at the final clip. None: off (factor 1).
    border : {"reflect", "valid"}
        ``"reflect"``: same size as the photo; ``"valid"``: both images cropped by ``K // 2`` on
        every side (SBDD's output size, ``(H - K + 1, W - K + 1)``).
    save_masks, save_kernels : bool
        Also write each object's coverage of the blurry image and the kernels
        (:mod:`blursynth.segblur_files`).

    Raises
    ------
    ParameterError
        An unknown model, psf model, border or crf; a size that is not an odd integer >= 3;
        an extent range outside [0, K - 1] or an illumination range not within (0, inf).
    InputFileError
        `bank` is missing or not a bank of normalised odd kernels.
    """

    model: str = "layered"
    psf_model: str | None = "gp"
    bank: str | None = None
    object_extent: tuple[float, float] | None = (5.0, 45.0)
    camera_extent: tuple[float, float] | None = (2.0, 20.0)
    size: int = 65
    crf: str = "srgb"
    illumination: tuple[float, float] | None = None
    border: str = "reflect"
    save_masks: bool = False
    save_kernels: bool = False

    def __post_init__(self) -> None:
        from .psf import MODELS as PSF_MODELS  # late, like shake: convolve users need no psf

        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen)
        if self.model not in MODELS:
            raise ParameterError(f"model: expected one of {', '.join(MODELS)}, "
                                 f"got {self.model!r}")
        if self.border not in BORDERS:
            raise ParameterError(f"border: expected one of {', '.join(BORDERS)}, "
                                 f"got {self.border!r}")
        set_("crf", get_crf(self.crf).spec)
        set_("illumination", _range("illumination", self.illumination, 0.0, math.inf,
                                    low_open=True))
        for name in ("save_masks", "save_kernels"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ParameterError(f"{name}: expected True or False, got "
                                     f"{getattr(self, name)!r}")
        if self.bank is not None:
            set_("bank", os.path.abspath(os.fspath(self.bank)))
            set_("size", int(load_kernels(self.bank).shape[1]))
            for name in ("psf_model", "object_extent", "camera_extent"):
                set_(name, None)
            return
        if self.psf_model not in PSF_MODELS:
            raise ParameterError(f"psf_model: expected one of {', '.join(PSF_MODELS)}, "
                                 f"got {self.psf_model!r}")
        s = self.size
        if not (isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 3
                and s % 2 == 1):
            raise ParameterError(f"size: expected an odd kernel side >= 3 in pixels, got {s!r}")
        set_("size", int(s))
        for name in ("object_extent", "camera_extent"):
            set_(name, _range(name, getattr(self, name), 0.0, s - 1.0))

    def to_dict(self) -> dict:
        """The parameters as JSON-able types (manifests)."""
        d = asdict(self)
        for k in ("object_extent", "camera_extent", "illumination"):
            d[k] = None if d[k] is None else list(d[k])
        return d


# -- array cores ---------------------------------------------------------------------------


def _is_delta(k: np.ndarray) -> bool:
    """The centred delta, i.e. the identity kernel."""
    c = (k.shape[0] // 2, k.shape[1] // 2)
    return k[c] == 1 and np.count_nonzero(k) == 1


def _conv(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Same-size convolution with reflected borders; the delta is applied exactly."""
    return img.copy() if _is_delta(k) else convolve(img, k, border="reflect")


def _footprint(mask: np.ndarray, grow: int) -> tuple[slice, slice] | None:
    """The bounding box of `mask` grown by `grow` px (clipped to the image), or None if empty.

    A blur of the mask by a ``K x K`` kernel is zero outside its box grown by ``K // 2``;
    growing by ``K // 2 + 1`` also makes a reflected border at the crop's inner edges reflect
    only zeros, so convolving the crop gives the whole-image result inside it.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    h, w = mask.shape
    return (slice(max(rows[0] - grow, 0), min(rows[-1] + 1 + grow, h)),
            slice(max(cols[0] - grow, 0), min(cols[-1] + 1 + grow, w)))


def _grow(box: tuple[slice, slice], by: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    return tuple(slice(max(s.start - by, 0), min(s.stop + by, n)) for s, n in zip(box, shape))


def _inner(outer: tuple[slice, slice], box: tuple[slice, slice]) -> tuple[slice, slice]:
    """`box` in the coordinates of the crop `outer` (which contains it)."""
    return tuple(slice(b.start - o.start, b.stop - o.start) for o, b in zip(outer, box))


def _check_inputs(linear: ArrayLike, masks: ArrayLike, kernels: ArrayLike, border: str,
                  what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(linear)
    if x.dtype not in (np.float32, np.float64) or x.ndim != 3 or 0 in x.shape:
        raise ParameterError(f"{what}: expected an (H, W, C) float32 linear image, got "
                             f"{x.dtype} {x.shape}")
    m = np.asarray(masks)
    if m.ndim != 3 or m.shape[1:] != x.shape[:2]:
        raise ParameterError(f"{what}: expected masks of shape (n, {x.shape[0]}, {x.shape[1]}), "
                             f"got {m.shape}")
    k = np.asarray(kernels)
    if k.ndim != 3 or len(k) != len(m) + 1:
        raise ParameterError(f"{what}: expected {len(m) + 1} kernels (background first, then "
                             f"one per mask) as an (n + 1, K, K) array, got shape {k.shape}")
    k = np.stack([check_kernel(ki, normalised=True, what=f"{what}: kernel {i}")
                  for i, ki in enumerate(k)]).astype(np.float32, copy=False)
    if border not in BORDERS:
        raise ParameterError(f"border: expected one of {', '.join(BORDERS)}, got {border!r}")
    kh, kw = k.shape[1:]
    if border == "valid" and (x.shape[0] < kh or x.shape[1] < kw):
        raise ParameterError(f"border='valid': a {kh}x{kw} kernel does not fit in a "
                             f"{x.shape[0]}x{x.shape[1]} image")
    return np.ascontiguousarray(x, np.float32), m.astype(bool, copy=False), k


def _crop(a: np.ndarray, kshape: tuple[int, ...], border: str, *, lead: int = 0) -> np.ndarray:
    """The valid part of a same-size result (``K // 2`` off every side), or `a` itself;
    the image axes follow `lead` leading axes."""
    if border != "valid":
        return a
    rh, rw = kshape[0] // 2, kshape[1] // 2
    h, w = a.shape[lead:lead + 2]
    return np.ascontiguousarray(a[(slice(None),) * lead + (slice(rh, h - rh), slice(rw, w - rw))])


def sbdd_blur(linear: ArrayLike, masks: ArrayLike, kernels: ArrayLike, *,
              border: str = "reflect", return_weights: bool = False):
    """Blur a photo with per-object kernels by SBDD's published formula.

    Parameters
    ----------
    linear : ndarray of float32
        ``(H, W, C)`` linear light, 0-1 (values above 1 allowed: illuminated photos).
    masks : ndarray of bool
        ``(n, H, W)`` object masks (overlaps allowed, as in SBDD); ``n`` may be 0.
    kernels : ndarray
        ``(n + 1, K, K)`` PSFs (odd, >= 0, sum 1): ``kernels[0]`` the background's (camera),
        ``kernels[i]`` that of ``masks[i - 1]``. True-convolution convention (see the module
        docstring for SBDD's flipped one).
    border : {"reflect", "valid"}
        ``"valid"``: ``(H - K + 1, W - K + 1)`` output, SBDD's.
    return_weights : bool
        Also return the objects' weights :math:`\\alpha_1 \\dots \\alpha_n`.

    Returns
    -------
    out : ndarray of float32
        ``(H', W', C)`` linear, not clipped.
    weights : ndarray of float32, optional
        ``(n, H', W')``: the share of each blurry pixel rendered with object ``i``'s kernel.

    Raises
    ------
    ParameterError
        Shapes that do not match, a kernel that is not a normalised odd PSF, an unknown
        border, or an image smaller than the kernel with ``"valid"``.

    Notes
    -----
    :math:`M_0 = 1 - \\bigcup_i M_i`, :math:`W_i = k_i \\ast M_i`,
    :math:`y = \\sum_i W_i (k_i \\ast x) / (\\sum_j W_j + 10^{-6})` (research notes 2.2, steps
    3-6). :math:`W_i` is zero beyond ``K // 2`` px of mask ``i``, so object ``i``'s terms are
    computed on that neighbourhood only (the result is the whole-image formula's).

    Examples
    --------
    >>> x = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    >>> k = np.zeros((1, 5, 5), np.float32); k[0, 2, 2] = 1  # no objects, still camera
    >>> bool(np.abs(sbdd_blur(x, np.zeros((0, 32, 32), bool), k) - x).max() < 1e-5)
    True
    """
    x, m, k = _check_inputs(linear, masks, kernels, border, "sbdd_blur")
    h, w, c = x.shape
    r = max(k.shape[1:]) // 2  # a kernel's reach, pixels
    full = _conv(np.dstack([x, ~m.any(axis=0)]).astype(np.float32, copy=False), k[0])
    den = full[..., c].copy()                   # sum_j W_j, starting with W_0
    num = full[..., :c] * full[..., c:]         # sum_j W_j (k_j * x)
    parts = []  # (object index, box, W_i on the box)
    for i, (mi, ki) in enumerate(zip(m, k[1:])):
        box = _footprint(mi, r + 1)
        if box is None:
            continue
        ctx = _grow(box, r, (h, w))  # the photo's context for k_i * x inside box
        out = _conv(np.dstack([x[ctx], mi[ctx]]).astype(np.float32, copy=False), ki)
        out = out[_inner(ctx, box)]
        wi = out[..., c]
        num[box] += wi[..., None] * out[..., :c]
        den[box] += wi
        parts.append((i, box, wi))
    den += _SBDD_EPS
    y = _crop(num / den[..., None], k.shape[1:], border)
    if not return_weights:
        return y
    alphas = np.zeros((len(m), h, w), np.float32)
    for i, box, wi in parts:
        alphas[i][box] = wi / den[box]
    return y, _crop(alphas, k.shape[1:], border, lead=1)


def fill_background(linear: ArrayLike, hole: ArrayLike) -> np.ndarray:
    """A clean plate: the photo with the `hole` filled from its surroundings (push-pull).

    Parameters
    ----------
    linear : ndarray of float32
        ``(H, W, C)`` linear light.
    hole : ndarray of bool
        ``(H, W)``: pixels to fill (the objects).

    Returns
    -------
    plate : ndarray of float32
        ``(H, W, C)``: equal to `linear` outside `hole` (exactly), a smooth fill inside.

    Notes
    -----
    The fill samples the photo outside the hole grown by 3 px, so an object's edge fringe
    (masks are rarely pixel-exact) does not bleed into it. It is a push-pull (pyramid) fill:
    premultiplied colour and coverage are reduced with ``cv2.pyrDown`` until no pixel is
    empty, then expanded back, each level keeping its own colour where covered
    (:math:`f_l = c_l + (1 - w_l)\\, \\mathrm{up}(f_{l+1})`); the weights are positive, so the
    fill stays within the photo's range. At 720p with a quarter of the frame missing
    (``benchmarks/bench_segblur.py``'s masks) it takes 10-20 ms, against 240 ms for
    ``cv2.inpaint`` (Telea) on three float32 channels, at a similar error on the hidden photo
    (mean absolute linear error 0.15 against 0.14); Telea's float path also assumes a 0-255
    scale (on 0-1 data it overshoots to [-1.6, 2.5]). Only the background that moving objects
    uncover, blurred by the camera's kernel, is ever seen.
    """
    x = np.ascontiguousarray(linear, np.float32)
    hole_u8 = np.asarray(hole, bool).view(np.uint8)
    if not hole_u8.any():
        return x.copy()
    known = cv2.dilate(hole_u8, np.ones((2 * _FILL_DILATE + 1,) * 2, np.uint8)) == 0
    known_u8 = known.view(np.uint8)
    w = known.astype(np.float32)
    c = cv2.copyTo(x, known_u8, np.zeros_like(x)).reshape(x.shape)  # x * w (premultiplied)
    levels = [(c, w)]
    while w.min() <= 0 and min(w.shape) > 1:
        c, w = cv2.pyrDown(c), cv2.pyrDown(w)
        c = c if c.ndim == 3 else c[..., None]
        levels.append((c, w))
    f = c / np.maximum(w, 1e-12)[..., None]  # coarsest: every pixel covered (or a 1-px image)
    for c, w in reversed(levels[1:-1]):
        f = c + (1.0 - w)[..., None] * _up(f, w.shape)
    # Full size: inside the hole w = 0 and c = 0, so the fill is the level above, upsampled.
    up = _up(f, hole_u8.shape) if len(levels) > 1 else f
    return cv2.copyTo(up, hole_u8, x.copy()).reshape(x.shape)


def _up(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    up = cv2.pyrUp(img, dstsize=(shape[1], shape[0]))
    return up if up.ndim == 3 else up[..., None]


def layered_blur(linear: ArrayLike, masks: ArrayLike, kernels: ArrayLike, *,
                 background: ArrayLike | None = None, border: str = "reflect",
                 return_weights: bool = False):
    """Blur a photo with per-object kernels, compositing occluding layers back to front.

    Parameters
    ----------
    linear : ndarray of float32
        ``(H, W, C)`` linear light, 0-1 (above 1 allowed).
    masks : ndarray of bool
        ``(n, H, W)`` object masks, ordered back to front; a pixel belongs to the front-most
        mask that covers it.
    kernels : ndarray
        ``(n + 1, K, K)`` PSFs: ``kernels[0]`` the background's (camera), then one per mask.
    background : ndarray of float32, optional
        ``(H, W, C)`` clean plate (the scene without the objects), when known. Default:
        :func:`fill_background` of the photo over the union of the masks.
    border : {"reflect", "valid"}
        As :func:`sbdd_blur`.
    return_weights : bool
        Also return each object's share of every blurry pixel.

    Returns
    -------
    out : ndarray of float32
        ``(H', W', C)`` linear, not clipped.
    weights : ndarray of float32, optional
        ``(n, H', W')``: object ``i``'s alpha after the objects in front of it took their
        share, :math:`A_i \\prod_{j > i} (1 - A_j)`; the background has the rest.

    Raises
    ------
    ParameterError
        As :func:`sbdd_blur`, or a `background` of another shape.

    Notes
    -----
    Porter-Duff "over" on premultiplied colour (Porter & Duff 1984), in linear light:
    :math:`y_0 = k_0 \\ast B`, then for each object :math:`C_i = k_i \\ast (V_i x)`,
    :math:`A_i = k_i \\ast V_i`, :math:`y \\leftarrow C_i + (1 - A_i) y`, with :math:`V_i` the
    visible part of mask ``i`` (in front of it, the photo shows another object, whose colour
    must not be smeared by ``k_i``). An opaque object translating over a still background
    is rendered exactly (the average of the composites at each instant of the exposure), and
    so are several objects whose smears do not meet; where they do, compositing the
    exposure-averaged layers approximates averaging the per-instant composites. With every
    kernel the delta the output is the input, bit for bit.

    Examples
    --------
    >>> x = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    >>> m = np.zeros((1, 32, 32), bool); m[0, 8:20, 8:20] = True
    >>> k = np.zeros((2, 5, 5), np.float32); k[:, 2, 2] = 1
    >>> bool((layered_blur(x, m, k) == x).all())
    True
    """
    x, m, k = _check_inputs(linear, masks, kernels, border, "layered_blur")
    h, w, c = x.shape
    r = max(k.shape[1:]) // 2  # a kernel's reach, pixels
    union = m.any(axis=0)
    if background is None:
        plate = fill_background(x, union)
    else:
        plate = np.asarray(background, np.float32)
        if plate.shape != x.shape:
            raise ParameterError(f"layered_blur: expected a background of shape {x.shape}, "
                                 f"got {plate.shape}")
    y = _conv(plate, k[0])
    weights = np.zeros((len(m), h, w), np.float32) if return_weights else None
    covered = np.zeros((h, w), bool)
    visible = np.empty_like(m)
    for i in range(len(m) - 1, -1, -1):  # front to back: what is in front hides the rest
        visible[i] = m[i] & ~covered
        covered |= m[i]
    for i, (vi, ki) in enumerate(zip(visible, k[1:])):
        box = _footprint(vi, r + 1)
        if box is None:
            continue
        a = vi[box].astype(np.float32)[..., None]
        out = _conv(np.concatenate([x[box] * a, a], axis=2), ki)
        alpha = out[..., c:]
        y[box] = out[..., :c] + (1.0 - alpha) * y[box]
        if weights is not None:
            weights[(slice(0, i),) + box] *= 1.0 - alpha[..., 0]
            weights[i][box] = alpha[..., 0]
    y = _crop(y, k.shape[1:], border)
    if weights is None:
        return y
    return y, _crop(weights, k.shape[1:], border, lead=1)


def illuminate(linear: ArrayLike, factor: float) -> np.ndarray:
    """SBDD's illumination augmentation: scale the HSV value of a linear image.

    Parameters
    ----------
    linear : ndarray of float
        ``(H, W, 3)`` linear RGB, 0-1.
    factor : float
        > 0. Values pushed above 1 are kept (they saturate at the final clip, on purpose).

    Returns
    -------
    out : ndarray of float32
        ``linear * factor``.

    Raises
    ------
    ParameterError
        `factor` is not a finite number > 0.

    Notes
    -----
    SBDD computes ``hsv2rgb(H, S, factor * V)`` of the linear image (skimage, which does not
    clip). With :math:`V = \\max(R, G, B)`, :math:`S = (V - \\min) / V` and a hue that depends
    only on ratios of channel differences, scaling the value with hue and saturation fixed
    scales every channel by the factor: it *is* ``linear * factor`` (equal within float
    rounding; ``tests/test_segblur.py`` checks it against skimage).
    """
    if not (isinstance(factor, numbers.Real) and math.isfinite(factor) and factor > 0):
        raise ParameterError(f"illumination factor: expected a finite number > 0, "
                             f"got {factor!r}")
    return np.multiply(linear, np.float32(factor), dtype=np.float32)


# -- one item ------------------------------------------------------------------------------


class SegResult(NamedTuple):
    """What :func:`segblur_item` returns."""

    blurry: np.ndarray
    """``(H', W', 3)`` uint8, encoded with the CRF, rounded."""
    sharp: np.ndarray
    """``(H', W', 3)`` uint8: the illuminated photo, cropped like `blurry`."""
    facts: dict
    """JSON-able record: kernels (infos), crf, illumination, model, sizes, saturation."""
    kernels: np.ndarray
    """``(n + 1, K, K)`` float32: camera first, then one per object."""
    coverage: np.ndarray | None
    """``(n, H', W')`` float32 object weights (``params.save_masks``), else None."""


def _draw_kernel(params: SegParams, rng: np.random.Generator,
                 extent: tuple[float, float] | None) -> dict:
    """One kernel info in :mod:`blursynth.shake`'s format (:func:`kernel_from_info`)."""
    if params.bank is not None:
        bank = load_kernels(params.bank)
        return {"bank": params.bank, "index": int(rng.integers(len(bank))),
                "size": int(bank.shape[1])}
    e = None if extent is None else float(rng.uniform(*extent))
    return {"model": params.psf_model, "size": params.size, "extent": e,
            "seed": int(rng.integers(_SEED_BOUND, dtype=np.uint64))}


def plan_item_kernels(params: SegParams, rng: np.random.Generator, n: int) -> list[dict]:
    """Draw the kernel infos of an item: the camera's, then one per object.

    Parameters
    ----------
    params : SegParams
    rng : numpy.random.Generator
        The item's stream, ``item_rng(seed, key, "segblur")``.
    n : int
        Number of objects.

    Returns
    -------
    list of dict
        ``n + 1`` infos, :mod:`blursynth.shake`'s format (``{"model", "size", "extent",
        "seed"}`` or ``{"bank", "index", "size"}``);
        :func:`blursynth.shake.kernel_from_info` regenerates each kernel. Draws, in order:
        per kernel its extent (models only) and its seed, or its bank index.
    """
    return ([_draw_kernel(params, rng, params.camera_extent)]
            + [_draw_kernel(params, rng, params.object_extent) for _ in range(n)])


def segblur_item(item: SegItem, rgb: np.ndarray, params: SegParams,
                 rng: np.random.Generator) -> SegResult:
    """Make one blurry/sharp pair from a photo and its object masks.

    Parameters
    ----------
    item : SegItem
        Its ``masks`` (``(n, H, W)`` bool, back to front) are used; key, image and meta are
        only recorded by the driver.
    rgb : ndarray of uint8
        ``(H, W, 3)`` the photo, encoded with ``params.crf``, 0-255.
    params : SegParams
    rng : numpy.random.Generator
        The item's stream, ``item_rng(seed, item.key, "segblur")``: kernels
        (:func:`plan_item_kernels`), then the illumination factor (when on).

    Returns
    -------
    SegResult
        ``blurry``, ``sharp`` (uint8), ``facts`` (JSON-able: ``model``, ``crf``,
        ``illumination``, ``kernels``, ``objects``, ``size`` and ``output_size`` as [H, W],
        ``saturated``: fraction of blurry channel values clipped at 1), ``kernels``,
        ``coverage`` (with ``params.save_masks``).

    Raises
    ------
    ParameterError
        `rgb` is not (H, W, 3) uint8, the masks do not match it, or it is smaller than the
        kernel with ``border="valid"``.
    InputFileError
        The kernel bank cannot be read.

    Notes
    -----
    Linearise with the CRF, illuminate (:func:`illuminate`), blur (:data:`MODELS`), then clip
    to [0, 1] and encode with rounding to the nearest code (SBDD truncated). The sharp image
    is the illuminated photo, clipped and encoded alike: its brightness matches the blurry's.
    """
    u8 = np.asarray(rgb)
    if u8.dtype != np.uint8 or u8.ndim != 3 or u8.shape[2] != 3:
        raise ParameterError(f"segblur_item: expected an (H, W, 3) uint8 photo, got "
                             f"{u8.dtype} {u8.shape}")
    masks = np.asarray(item.masks)
    if masks.ndim != 3 or masks.shape[1:] != u8.shape[:2]:
        raise ParameterError(f"segblur_item: {item.key}: the masks are {masks.shape[1:]} but "
                             f"the photo is {u8.shape[:2]}")
    infos = plan_item_kernels(params, rng, len(masks))
    factor = 1.0 if params.illumination is None else float(rng.uniform(*params.illumination))
    kernels = np.stack([kernel_from_info(info) for info in infos])
    crf = get_crf(params.crf)
    linear = illuminate(decode_u8(u8, crf), factor)
    blur = layered_blur if params.model == "layered" else sbdd_blur
    out = blur(linear, masks, kernels, border=params.border, return_weights=params.save_masks)
    y, coverage = out if params.save_masks else (out, None)
    sharp = _crop(linear, kernels.shape[1:], params.border)
    facts = {"model": params.model, "crf": crf.spec, "illumination": factor, "kernels": infos,
             "objects": len(masks), "size": list(u8.shape[:2]), "output_size": list(y.shape[:2]),
             "saturated": float(np.count_nonzero(y > 1.0)) / y.size}
    return SegResult(encode_linear(y, crf), encode_linear(sharp, crf), facts, kernels, coverage)
