"""Convolution of linear images with blur kernels (point spread functions).

A blurred image is the sharp image convolved with the kernel *in linear light*:
:math:`B(x) = \\sum_m k(m)\\, I(x - m)` (a true convolution: the kernel is flipped, which
matters for asymmetric camera-shake kernels). 8-bit images are decoded with their camera
response first and re-encoded with rounding after (:func:`blur_u8`).

Borders
-------
``"reflect"``
    Same-size output; outside the image the values are mirrored about the edge pixel without
    repeating it (``dcb|abcd|cba``): OpenCV's ``BORDER_REFLECT_101``, NumPy's
    ``np.pad(mode="reflect")``, torch's ``F.pad(mode="reflect")``, SciPy ndimage's
    ``mode="mirror"``. Pads wider than the image keep reflecting (period ``2 (n - 1)``).
``"valid"``
    Only the pixels whose whole kernel footprint lies inside the image: the output shrinks by
    ``K - 1`` along each axis. No border value is invented.

Zero padding is deliberately not offered: it darkens every pixel within ``K // 2`` of the
edge (the seed project's 306 -> 256 crop leaked it for 71 px kernels).

Routes and their measurement
----------------------------
:func:`convolve` picks the faster of two OpenCV routes by kernel area:

- area < 130 (up to 11x11): ``cv2.filter2D`` on the flipped kernel, which for float32 is a
  direct sum below that area (OpenCV switches to its own tiled DFT at 130);
- otherwise one real ``cv2.dft`` of the whole padded image per channel, sized to an even
  7-smooth length (:func:`fast_len`), multiplied with the kernel's spectrum (computed once
  for all channels) and transformed back; the circular wrap-around falls only on the padding
  that is cropped off.

Measured on the 2-core development machine (OpenCV 5.0, SciPy 1.17, torch 2.13 CPU), 1280x720
RGB float32 with 65x65 kernels, ms per image (``benchmarks/bench_shake.py``, median of
interleaved runs): this single-DFT route 19, ``scipy.fft.rfft2``/``irfft2`` float32 with 2
workers 28, ``convolve_torch`` on the CPU 30-35, ``scipy.signal.fftconvolve`` float32 over
both axes 35, ``cv2.filter2D`` (its tiled DFT) 38, ``scipy.signal.oaconvolve`` 75, and
per-channel ``scipy.signal.fftconvolve`` in float64 (the baseline) 76-79. A per-channel
``cv2.dft`` with complex output is 100 and ``nonzeroRows`` hints make OpenCV's DFT 3-4x
slower. Every float32 route stays within 5e-7 of the float64 result (linear 0-1 scale).
Crossover: at 11x11 the direct sum takes 0.8 ms on a 256x256 RGB crop and 12 ms at 720p
against 2.6 and 17 ms for the DFT route; at 13x13 ``filter2D`` turns to its tiled DFT (5.5
and 27 ms) and the single DFT wins.

The torch version :func:`convolve_torch` convolves a batch, each image with its own kernel,
with ``torch.fft`` on whatever device the batch is on (torch is imported only when called).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import ArrayLike

from blursynth_ext.dispatch import encode_linear

from .crf import CRF, get_crf
from .errors import ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["BORDERS", "check_kernel", "convolve", "blur_u8", "convolve_torch", "fast_len"]

#: Border modes: name -> description (``--help`` lists these).
BORDERS = {
    "reflect": "same size; mirrored about the edge pixel (OpenCV BORDER_REFLECT_101)",
    "valid": "only pixels whose whole kernel lies inside the image (shrinks by K-1)",
}

# Kernel area from which the single-DFT route beats filter2D (see "Routes" above): OpenCV's own
# direct-sum limit for float32, below which its direct sum is the faster route.
_DFT_AREA = 130
_SUM_TOL = 1e-3  # |sum - 1| allowed for a blur kernel (float32 generators and files)


def fast_len(n: int) -> int:
    """Smallest even length >= `n` whose prime factors are all <= 7.

    OpenCV's real DFT is fastest on such lengths: at 720p a 784-row (2^4 7^2) forward and
    inverse pair takes ~1.4 ms, 788 rows (2^2 197) ~3.2 ms, and odd widths are slow (1323 =
    3^3 7^2 columns: 6.2 ms, 1344 = 2^6 3 7: 4.0 ms). Over kernels of 13-71 px on 128^2 to
    720p images, even 7-smooth sizes beat both plain 7-smooth ones and
    ``cv2.getOptimalDFTSize`` (5-smooth) by 7-8 % in total.
    """
    m = max(int(n), 2)
    m += m % 2
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 2


# -- validation ----------------------------------------------------------------------------


def _check_border(border: str) -> None:
    if border not in BORDERS:
        raise ParameterError(f"border: expected one of {', '.join(BORDERS)}, got {border!r}")


def check_kernel(kernel: ArrayLike, *, normalised: bool = False,
                 what: str = "kernel") -> np.ndarray:
    """Validate a blur kernel and return it as a C-contiguous 2-D float array.

    Parameters
    ----------
    kernel : array_like
        ``(Kh, Kw)`` real values, both sides odd (the centre pixel is the origin).
    normalised : bool
        Also require a point spread function: values >= 0 summing to 1 (within 1e-3).
    what : str
        Name used in error messages (e.g. ``"bank.npz, kernel 3"``).

    Returns
    -------
    kernel : ndarray of float32 or float64
        float64 input stays float64; anything else becomes float32.

    Raises
    ------
    ParameterError
        Not 2-D, an even side, NaN or infinity, or (with `normalised`) a negative value or a
        sum other than 1.
    """
    k = np.asarray(kernel)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ParameterError(f"{what}: expected a 2-D kernel with odd sides, got shape {k.shape}")
    if not (np.issubdtype(k.dtype, np.floating) or np.issubdtype(k.dtype, np.integer)):
        raise ParameterError(f"{what}: expected real numbers, got dtype {k.dtype}")
    k = np.ascontiguousarray(k, dtype=np.float64 if k.dtype == np.float64 else np.float32)
    if not np.all(np.isfinite(k)):
        raise ParameterError(f"{what}: contains NaN or infinite values")
    if normalised:
        if k.min() < 0:
            raise ParameterError(f"{what}: expected values >= 0, got a minimum of {k.min():.3g}")
        s = float(k.sum(dtype=np.float64))
        if abs(s - 1.0) > _SUM_TOL:
            raise ParameterError(f"{what}: expected a kernel summing to 1, got {s:.6g}")
    return k


def _check_image(linear: ArrayLike) -> np.ndarray:
    img = np.asarray(linear)
    if img.dtype not in (np.float32, np.float64):
        raise ParameterError(
            f"convolve: expected a float32 or float64 linear image, got dtype {img.dtype} "
            "(decode 8-bit images with blursynth.crf.decode_u8, or use blur_u8)")
    if img.ndim not in (2, 3) or 0 in img.shape:
        raise ParameterError(f"convolve: expected an (H, W) or (H, W, C) image, got shape "
                             f"{img.shape}")
    return img


# -- NumPy / OpenCV ------------------------------------------------------------------------


def _direct(plane: np.ndarray, flipped: np.ndarray, border: str) -> np.ndarray:
    """filter2D correlates: with the flipped kernel it convolves."""
    out = cv2.filter2D(plane, -1, flipped, borderType=cv2.BORDER_REFLECT_101)
    if border == "valid":
        rh, rw = flipped.shape[0] // 2, flipped.shape[1] // 2
        out = out[rh:out.shape[0] - rh, rw:out.shape[1] - rw]
    return out


class _Spectral:
    """Whole-image DFT convolution with one kernel, for every plane of the same size."""

    def __init__(self, kernel: np.ndarray, shape: tuple[int, int], border: str):
        self.kh, self.kw = kernel.shape
        self.border = border
        rh, rw = (self.kh // 2, self.kw // 2) if border == "reflect" else (0, 0)
        self.pad = (rh, rw)
        # Padded size, then the DFT size: circular convolution wraps only into the first
        # K-1 rows/columns, which are cropped, so no zero guard band is needed.
        self.hp, self.wp = shape[0] + 2 * rh, shape[1] + 2 * rw
        hd, wd = fast_len(self.hp), fast_len(self.wp)
        self.extra = (hd - self.hp, wd - self.wp)
        kpad = np.zeros((hd, wd), kernel.dtype)
        kpad[:self.kh, :self.kw] = kernel  # origin at [0, 0]: a true (flipped) convolution
        self.spectrum = cv2.dft(kpad)  # CCS-packed real spectrum, as mulSpectrums expects

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        (rh, rw), (eh, ew) = self.pad, self.extra
        # One call pads the border and grows to the DFT size; values in the extra rows and
        # columns never reach the cropped output.
        src = cv2.copyMakeBorder(plane, rh, rh + eh, rw, rw + ew, cv2.BORDER_REFLECT_101)
        prod = cv2.mulSpectrums(cv2.dft(src), self.spectrum, 0)
        full = cv2.dft(prod, flags=cv2.DFT_INVERSE | cv2.DFT_SCALE | cv2.DFT_REAL_OUTPUT)
        return full[self.kh - 1:self.hp, self.kw - 1:self.wp]


def convolve(linear: ArrayLike, kernel: ArrayLike, *, border: str = "reflect") -> np.ndarray:
    """Convolve a linear image with a kernel, each channel alike.

    Parameters
    ----------
    linear : ndarray of float32 or float64
        ``(H, W)`` or ``(H, W, C)`` linear values (0-1 for images; any real values work).
    kernel : array_like
        ``(Kh, Kw)``, both sides odd; the centre pixel is the origin. Not flipped by the
        caller: this is a true convolution.
    border : {"reflect", "valid"}
        ``"reflect"``: same size, mirrored borders (``BORDER_REFLECT_101``, see the module
        docstring); ``"valid"``: ``(H - Kh + 1, W - Kw + 1)``.

    Returns
    -------
    out : ndarray
        Same dtype and channel count as `linear`. Values match the exact convolution to about
        1e-6 relative to the image's range (DFT rounding), so a zero input pixel may come out
        as -1e-8; :func:`blur_u8` rounds such values to code 0.

    Raises
    ------
    ParameterError
        `linear` is not a float (H, W[, C]) array, `kernel` is not 2-D with odd sides or holds
        NaN/inf, `border` is unknown, or ``"valid"`` with a kernel larger than the image.

    Notes
    -----
    :math:`out(y, x) = \\sum_{i, j} k(i, j)\\, I(y + K_h/2 - i,\\; x + K_w/2 - j)` with integer
    halves; the route (direct sum or one DFT per channel) is chosen by kernel area, see the
    module docstring for the measurements.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((5, 5), np.float32); img[2, 2] = 1
    >>> k = np.zeros((3, 3), np.float32); k[0, 1] = 1  # the tap above the centre
    >>> np.argwhere(convolve(img, k) == 1).tolist()     # so the impulse moves up
    [[1, 2]]
    """
    img = _check_image(linear)
    k = check_kernel(kernel).astype(img.dtype, copy=False)
    _check_border(border)
    h, w = img.shape[:2]
    if border == "valid" and (h < k.shape[0] or w < k.shape[1]):
        raise ParameterError(f"border='valid': a {k.shape[0]}x{k.shape[1]} kernel does not fit "
                             f"in a {h}x{w} image")
    if k.size < _DFT_AREA:
        flipped = np.ascontiguousarray(k[::-1, ::-1])
        run = lambda p: _direct(p, flipped, border)  # noqa: E731
    else:
        run = _Spectral(k, (h, w), border)
    if img.ndim == 2:
        return run(np.ascontiguousarray(img))
    planes = [run(np.ascontiguousarray(img[:, :, c])) for c in range(img.shape[2])]
    return np.stack(planes, axis=-1)


def blur_u8(u8: np.ndarray, kernel: ArrayLike, crf: str | CRF = "srgb",
            border: str = "reflect") -> np.ndarray:
    """Blur an 8-bit encoded image in linear light.

    Parameters
    ----------
    u8 : ndarray of uint8
        ``(H, W)`` or ``(H, W, C)`` codes 0-255, encoded with `crf`.
    kernel : array_like
        A point spread function: ``(Kh, Kw)`` odd sides, values >= 0 summing to 1.
    crf : str or CRF
        Camera response of `u8` (see :func:`blursynth.crf.get_crf`).
    border : {"reflect", "valid"}
        As :func:`convolve`.

    Returns
    -------
    out : ndarray of uint8
        Codes 0-255 encoded with `crf`, rounded to nearest in the encoded domain; same size
        as `u8` (``"reflect"``) or smaller by ``K - 1`` (``"valid"``).

    Raises
    ------
    ParameterError
        `u8` is not uint8, the kernel is not a normalised odd PSF, or as :func:`convolve`.

    Notes
    -----
    ``encode_u8(convolve(decode_u8(u8, crf), kernel), crf)``, with the curve's decode table
    applied by ``cv2.LUT`` and the exact numba encoder
    (:func:`blursynth_ext.dispatch.encode_linear`, the same codes as
    :func:`blursynth.crf.encode_u8`): at 720p decoding takes 0.7 ms instead of 5 and encoding
    a few ms instead of ~100 (NumPy ``searchsorted``). A constant image stays exactly
    constant (the kernel sums to 1 and decoded codes lie half a code away from the rounding
    thresholds). A black/white sRGB step blurred by a box averages the *linear* values:
    half black, half white gives linear 0.5, code 188, not the sRGB average 128.
    """
    codes = np.asarray(u8)
    if codes.dtype != np.uint8:
        raise ParameterError(f"blur_u8: expected a uint8 image, got dtype {codes.dtype}")
    k = check_kernel(kernel, normalised=True)
    curve = get_crf(crf)
    # = decode_u8(codes, curve), 7x faster; flat, so any channel count keeps its shape
    linear = cv2.LUT(codes.reshape(-1), curve.decode_lut()).reshape(codes.shape)
    return encode_linear(convolve(linear, k, border=border), curve)


# -- torch ---------------------------------------------------------------------------------


def _reflect_index(n: int, before: int, after: int, device) -> "torch.Tensor":
    """Source indices of a BORDER_REFLECT_101 pad of any width (period 2 (n - 1))."""
    import torch

    i = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    j = torch.remainder(i, period)
    return torch.where(j < n, j, period - j)


def convolve_torch(x: "torch.Tensor", kernels, *, border: str = "reflect") -> "torch.Tensor":
    """Convolve a batch of linear images, each with its own kernel, with ``torch.fft``.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, C, H, W)`` floating point linear values, on any device.
    kernels : torch.Tensor or ndarray
        ``(B, Kh, Kw)`` (image b uses ``kernels[b]`` on every channel) or ``(Kh, Kw)`` (one
        for all); odd sides. Moved to `x`'s device.
    border : {"reflect", "valid"}
        As :func:`convolve` (``"reflect"`` is torch's and OpenCV's reflect-101).

    Returns
    -------
    out : torch.Tensor
        `x`'s dtype and device; ``(B, C, H, W)`` or ``(B, C, H - Kh + 1, W - Kw + 1)``.
        Computed in float32 (float64 for float64 input); agrees with :func:`convolve` to about
        1e-6 on 0-1 images.

    Raises
    ------
    ImportError
        torch is not installed.
    ParameterError
        Shapes or dtypes as described are not met, or `border` is unknown.

    Notes
    -----
    The batch is padded (reflect-101, by index gathering, so pads wider than the image work),
    zero-extended to even 7-smooth sizes (:func:`fast_len`), and multiplied with the kernels' spectra (``rfft2``);
    wrap-around lands only in the cropped first ``K - 1`` rows and columns. Kernels of
    different sizes in one batch: zero-pad them to a common odd size around their centre
    (the result is unchanged).
    """
    import torch

    _check_border(border)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ParameterError(f"convolve_torch: expected a (B, C, H, W) float tensor, got {got}")
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    k = torch.as_tensor(kernels).to(device=x.device, dtype=work)
    b, _, h, w = x.shape
    if k.ndim == 2:
        k = k.expand(b, *k.shape)
    if k.ndim != 3 or k.shape[0] != b or k.shape[1] % 2 == 0 or k.shape[2] % 2 == 0:
        raise ParameterError(f"convolve_torch: expected kernels of shape ({b}, Kh, Kw) or "
                             f"(Kh, Kw) with odd sides, got {tuple(k.shape)}")
    kh, kw = k.shape[1:]
    if border == "valid" and (h < kh or w < kw):
        raise ParameterError(f"border='valid': a {kh}x{kw} kernel does not fit in a {h}x{w} "
                             "image")
    xs = x.to(work)
    if border == "reflect":
        rows = _reflect_index(h, kh // 2, kh // 2, x.device)
        cols = _reflect_index(w, kw // 2, kw // 2, x.device)
        xs = xs.index_select(2, rows).index_select(3, cols)
    hp, wp = xs.shape[-2:]
    size = (fast_len(hp), fast_len(wp))
    spec = torch.fft.rfft2(xs, s=size) * torch.fft.rfft2(k, s=size)[:, None]
    out = torch.fft.irfft2(spec, s=size)[..., kh - 1:hp, kw - 1:wp]
    return out.to(x.dtype).contiguous()
