"""Camera response functions (CRFs): encoded pixel values <-> linear light.

Blur has to be synthesised in linear light: averaging gamma-encoded frames darkens
highlights and produces the wrong blur profile. A :class:`CRF` maps an *encoded* value
``y`` in [0, 1] (an 8-bit code ``k`` is ``y = k / 255``) to a *linear* value ``x`` in
[0, 1] and back.

Curves are selected with a short string spec (see :func:`get_crf`), and every curve knows
its canonical spec (:attr:`CRF.spec`) so manifests can record exactly what was used.

8-bit encoding is exact: :func:`encode_u8` rounds to the nearest code *in the encoded
domain*, implemented as a binary search over the linear decision boundaries
(:meth:`CRF.thresholds`), so no inverse CRF is evaluated per pixel and
``encode_u8(decode_u8(k)) == k`` holds for every code ``k``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from .errors import InputFileError, ParameterError

__all__ = ["CRF", "get_crf", "decode_u8", "encode_u8", "CRF_SPECS"]

#: Human-readable list of accepted spec forms, used in error messages and CLI help.
CRF_SPECS = (
    "srgb",
    "gamma[:G] (G > 0, default 2.2)",
    "exp[:A] (A > 0, default 7)",
    "linear",
    "table:PATH (.npy, .txt or .csv)",
)

_DEFAULT_GAMMA = 2.2
_DEFAULT_EXP = 7.0

# IEC 61966-2-1 sRGB constants.
_SRGB_Y_BREAK = 0.04045
_SRGB_SLOPE = 12.92
_SRGB_EXP = 2.4
_SRGB_OFF = 0.055
# The standard's encoding break (0.0031308) is the decoding break rounded; using the exact
# image of the decoding break keeps to_encoded an exact inverse of to_linear.
_SRGB_X_BREAK = _SRGB_Y_BREAK / _SRGB_SLOPE

_CODES = np.arange(256, dtype=np.float64)


def _fmt(v: float) -> str:
    """Shortest round-tripping text for a float, without a trailing ``.0``."""
    s = repr(float(v))
    return s[:-2] if s.endswith(".0") else s


@dataclass(frozen=True)
class CRF:
    """A camera response curve.

    Build instances with :func:`get_crf`; the constructor is low level.

    Parameters
    ----------
    kind : {'srgb', 'gamma', 'exp', 'linear', 'table'}
        Curve family.
    param : float, optional
        ``G`` for ``'gamma'``, ``A`` for ``'exp'``; ``None`` otherwise.
    source : str, optional
        For ``'table'``: the absolute path of the file the table was read from.
    encoded, linear : tuple of float, optional
        For ``'table'``: the knots of the piecewise-linear curve (both strictly
        increasing from 0 to 1).

    Raises
    ------
    ParameterError
        If the parameters are out of range, or the curve is so steep that distinct 8-bit
        codes would decode to the same float32 value (e.g. ``gamma:30``), in which case no
        exact 8-bit round trip is possible.

    Notes
    -----
    Instances are immutable and hashable; two curves compare equal when their kind and
    parameters (or table knots) are equal. The 256-entry decode LUT and the 255 decision
    thresholds are computed once at construction.
    """

    kind: str
    param: float | None = None
    source: str | None = None
    encoded: tuple[float, ...] | None = field(default=None, repr=False)
    linear: tuple[float, ...] | None = field(default=None, repr=False)
    _lut32: np.ndarray = field(init=False, repr=False, compare=False, hash=False)
    _thr32: np.ndarray = field(init=False, repr=False, compare=False, hash=False)
    _thr64: np.ndarray = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.kind in ("gamma", "exp"):
            p = self.param
            if p is None or not math.isfinite(p) or p <= 0:
                name = "G" if self.kind == "gamma" else "A"
                raise ParameterError(
                    f"crf {self.kind}:{name}: expected a finite {name} > 0, got {p!r}"
                )
        elif self.kind == "table":
            if self.encoded is None or self.linear is None:
                raise ParameterError("crf table: encoded and linear knots are required")
            # Contract: validated by _load_table; re-check cheaply for direct construction.
            e, l = np.asarray(self.encoded), np.asarray(self.linear)
            if (e.shape != l.shape or e.size < 2 or np.any(np.diff(e) <= 0)
                    or np.any(np.diff(l) <= 0) or e[0] != 0 or e[-1] != 1
                    or l[0] != 0 or l[-1] != 1):
                raise ParameterError(
                    f"crf {self.spec}: knots must be strictly increasing from 0 to 1"
                )
        elif self.kind not in ("srgb", "linear"):
            raise ParameterError(
                f"crf: unknown kind {self.kind!r}; expected one of: " + ", ".join(CRF_SPECS)
            )
        self._build_tables()

    # -- spec ---------------------------------------------------------------------------

    @property
    def spec(self) -> str:
        """Canonical spec string; ``get_crf(crf.spec)`` rebuilds an equal curve."""
        if self.kind in ("gamma", "exp"):
            return f"{self.kind}:{_fmt(self.param)}"
        if self.kind == "table":
            return f"table:{self.source}"
        return self.kind

    def __str__(self) -> str:
        return self.spec

    # -- formulas (float64 core) --------------------------------------------------------

    def _to_linear64(self, y: np.ndarray) -> np.ndarray:
        y = np.clip(y, 0.0, 1.0)
        k = self.kind
        if k == "srgb":
            x = np.where(
                y <= _SRGB_Y_BREAK,
                y / _SRGB_SLOPE,
                ((np.maximum(y, _SRGB_Y_BREAK) + _SRGB_OFF) / (1 + _SRGB_OFF)) ** _SRGB_EXP,
            )
        elif k == "gamma":
            x = y ** self.param
        elif k == "exp":
            a = self.param
            # Inverse of y = (1 - e^{-a x}) / (1 - e^{-a}); log1p/expm1 keep small a exact.
            # For a > ~37, expm1(-a) == -1 and y = 1 gives log1p(-1) = -inf -> clipped to 1.
            with np.errstate(divide="ignore"):
                x = -np.log1p(y * np.expm1(-a)) / a
        elif k == "table":
            x = np.interp(y, self.encoded, self.linear)
        else:  # linear
            x = y
        return np.clip(x, 0.0, 1.0)

    def _to_encoded64(self, x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0.0, 1.0)
        k = self.kind
        if k == "srgb":
            y = np.where(
                x <= _SRGB_X_BREAK,
                x * _SRGB_SLOPE,
                (1 + _SRGB_OFF) * np.maximum(x, _SRGB_X_BREAK) ** (1 / _SRGB_EXP) - _SRGB_OFF,
            )
        elif k == "gamma":
            y = x ** (1.0 / self.param)
        elif k == "exp":
            a = self.param
            y = np.expm1(-a * x) / np.expm1(-a)
        elif k == "table":
            y = np.interp(x, self.linear, self.encoded)
        else:  # linear
            y = x
        return np.clip(y, 0.0, 1.0)

    # -- public conversions -------------------------------------------------------------

    def to_linear(self, y: ArrayLike) -> np.ndarray:
        """Decode encoded values to linear light.

        Parameters
        ----------
        y : array_like of float
            Encoded values; clipped to [0, 1]. NaN propagates.

        Returns
        -------
        x : ndarray of float32
            Linear values in [0, 1], same shape as `y` (a 0-d input gives a float32 scalar).

        Notes
        -----
        Evaluated in float64 and rounded once to float32. The curves are

        - srgb: :math:`x = y/12.92` for :math:`y \\le 0.04045`, else
          :math:`x = ((y + 0.055)/1.055)^{2.4}` [1]_;
        - gamma:G: :math:`x = y^G`;
        - exp:A: :math:`x = -\\ln(1 - y(1 - e^{-A}))/A`;
        - table: piecewise-linear interpolation between the knots;
        - linear: :math:`x = y`.

        References
        ----------
        .. [1] IEC 61966-2-1:1999, Multimedia systems and equipment - Colour measurement
           and management - Part 2-1: Default RGB colour space - sRGB.
        """
        out = self._to_linear64(np.asarray(y, dtype=np.float64)).astype(np.float32)
        return out[()] if out.ndim == 0 else out

    def to_encoded(self, x: ArrayLike) -> np.ndarray:
        """Encode linear values; the exact inverse of :meth:`to_linear` (up to rounding).

        Parameters
        ----------
        x : array_like of float
            Linear values; clipped to [0, 1]. NaN propagates.

        Returns
        -------
        y : ndarray of float32
            Encoded values in [0, 1], same shape as `x`.

        Notes
        -----
        - srgb: :math:`y = 12.92\\,x` for :math:`x \\le 0.04045/12.92`, else
          :math:`y = 1.055\\,x^{1/2.4} - 0.055`. IEC 61966-2-1 writes the break as
          0.0031308, the rounded value of 0.04045/12.92; the unrounded break makes this an
          exact inverse of :meth:`to_linear`.
        - gamma:G: :math:`y = x^{1/G}`.
        - exp:A: :math:`y = (1 - e^{-A x})/(1 - e^{-A})`.
        """
        out = self._to_encoded64(np.asarray(x, dtype=np.float64)).astype(np.float32)
        return out[()] if out.ndim == 0 else out

    # -- 8-bit tables -------------------------------------------------------------------

    def _build_tables(self) -> None:
        lut64 = self._to_linear64(_CODES / 255.0)
        lut32 = lut64.astype(np.float32)
        thr64 = self._to_linear64((_CODES[1:] - 0.5) / 255.0)
        # Round thresholds *up* to float32: for a float32 x, x >= t (exact) iff
        # x >= ceil32(t), so float32 comparisons make the same decisions as float64 ones.
        thr32 = thr64.astype(np.float32)
        low = thr32.astype(np.float64) < thr64
        thr32[low] = np.nextafter(thr32[low], np.float32(np.inf))
        expect = np.arange(256)
        ok32 = np.array_equal(np.searchsorted(thr32, lut32, side="right"), expect)
        ok64 = np.array_equal(
            np.searchsorted(thr64, lut32.astype(np.float64), side="right"), expect
        )
        if not (ok32 and ok64):
            raise ParameterError(
                f"crf {self.spec}: curve too steep for float32; adjacent 8-bit codes decode "
                "to the same or unseparable linear values, so 8-bit round trips cannot be "
                "exact (use a milder parameter)"
            )
        for a in (lut32, thr32, thr64):
            a.flags.writeable = False
        object.__setattr__(self, "_lut32", lut32)
        object.__setattr__(self, "_thr32", thr32)
        object.__setattr__(self, "_thr64", thr64)

    def decode_lut(self) -> np.ndarray:
        """Linear value of every 8-bit code.

        Returns
        -------
        lut : ndarray of float32, shape (256,)
            ``lut[k] = to_linear(k / 255)``; strictly increasing, ``lut[0] = 0``,
            ``lut[255] = 1``.
        """
        return self._lut32.copy()

    def thresholds(self) -> np.ndarray:
        """Linear decision boundaries between adjacent 8-bit codes.

        Returns
        -------
        t : ndarray of float32, shape (255,)
            ``t[k-1]`` is the boundary between codes ``k-1`` and ``k``, i.e.
            :math:`t_k = \\mathrm{to\\_linear}((k - 1/2)/255)`, rounded *up* to float32.
            The nearest code of a float32 linear value ``x`` in the encoded domain is
            ``np.searchsorted(t, x, side='right')`` (ties round up).

        Notes
        -----
        Rounding up (rather than to nearest) makes the float32 comparison ``x >= t32``
        agree with the exact comparison ``x >= t`` for every float32 ``x``. Construction
        verifies that every entry of :meth:`decode_lut` maps back to its own code.
        """
        return self._thr32.copy()


# -- parsing ---------------------------------------------------------------------------


def _parse_float(spec: str, name: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ParameterError(
            f"crf {spec!r}: expected a number for {name}, got {text!r}"
        ) from None
    if not math.isfinite(v) or v <= 0:
        raise ParameterError(f"crf {spec!r}: expected a finite {name} > 0, got {text!r}")
    return v


def _read_table_file(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputFileError(path, "crf table not found" if not path.exists()
                             else "crf table is not a regular file")
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            delim = "," if "," in text else None
            arr = np.loadtxt(text.splitlines(), delimiter=delim, comments="#",
                             ndmin=2, dtype=np.float64)
    except OSError as exc:
        raise InputFileError(path, f"cannot read crf table: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"crf table is not a numeric array: {exc}") from exc
    return np.asarray(arr)


def _load_table(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Read and validate a tabulated curve; return (encoded, linear) knots."""
    arr = _read_table_file(path)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputFileError(path, f"crf table: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim == 2 and arr.shape[0] == 1:  # one text row of values
        arr = arr[0]
    if arr.ndim == 1:
        lin = arr
        enc = np.linspace(0.0, 1.0, lin.size)
    elif arr.ndim == 2 and arr.shape[1] == 2:
        enc, lin = arr[:, 0].copy(), arr[:, 1].copy()
    else:
        raise InputFileError(
            path, f"crf table: expected N values or N rows of (encoded, linear), "
            f"got shape {arr.shape}"
        )
    if lin.size < 2:
        raise InputFileError(path, f"crf table: expected at least 2 entries, got {lin.size}")
    if not (np.all(np.isfinite(enc)) and np.all(np.isfinite(lin))):
        raise InputFileError(path, "crf table: contains NaN or infinite values")
    tol = 1e-6
    for name, v in (("encoded", enc), ("linear", lin)):
        if np.any(np.diff(v) <= 0):
            i = int(np.argmax(np.diff(v) <= 0))
            raise InputFileError(
                path, f"crf table: {name} values must be strictly increasing; "
                f"entry {i + 1} ({v[i + 1]!r}) <= entry {i} ({v[i]!r})"
            )
        if abs(v[0]) > tol or abs(v[-1] - 1) > tol:
            raise InputFileError(
                path, f"crf table: {name} values must run from 0 to 1, "
                f"got {v[0]!r} .. {v[-1]!r}"
            )
        # Snap text-rounding noise so endpoints map exactly to 0 and 1.
        v[0], v[-1] = 0.0, 1.0
    return tuple(enc.tolist()), tuple(lin.tolist())


def get_crf(spec: str | CRF) -> CRF:
    """Return the camera response curve named by `spec`.

    Parameters
    ----------
    spec : str or CRF
        One of (case-insensitive kind, surrounding whitespace ignored):

        ``srgb``
            IEC 61966-2-1 piecewise curve (linear toe below 0.04045, power 2.4 above).
        ``gamma[:G]``
            Pure power law :math:`y = x^{1/G}`; ``gamma`` alone is ``gamma:2.2``, the
            gamma used to synthesise the GoPro dataset's ``blur_gamma`` images [1]_.
        ``exp[:A]``
            Exponential CRF :math:`y = 1 - e^{-A x}` as used by SBDD, normalised (see
            Notes); ``exp`` alone is ``exp:7``.
        ``linear``
            Identity (data already linear).
        ``table:PATH``
            Tabulated curve from a ``.npy`` or text/CSV file: either N >= 2 linear values
            at evenly spaced encoded levels ``0, 1/(N-1), ..., 1``, or N rows of
            ``encoded, linear``. Both columns must be strictly increasing from 0 to 1
            (endpoints within 1e-6 are snapped). ``#`` starts a comment in text files.
            Interpolation is piecewise linear in both directions.

        A :class:`CRF` is returned unchanged.

    Returns
    -------
    crf : CRF

    Raises
    ------
    ParameterError
        Unknown spec (the message lists the valid forms), or a parameter that is not a
        finite number > 0.
    InputFileError
        The table file is missing, unreadable or invalid; the message names the file.

    Notes
    -----
    The raw exponential curve :math:`1 - e^{-A x}` reaches only :math:`1 - e^{-A}` at
    :math:`x = 1` (0.99909 for A = 7), so white would not encode to code 255. It is
    normalised to

    .. math:: y = \\frac{1 - e^{-A x}}{1 - e^{-A}},

    which maps [0, 1] onto [0, 1] and differs from the raw curve by at most
    :math:`e^{-A}` (9.1e-4 for A = 7, a quarter of an 8-bit step).

    References
    ----------
    .. [1] S. Nah, T. H. Kim, K. M. Lee, "Deep Multi-scale Convolutional Neural Network
       for Dynamic Scene Deblurring", CVPR 2017.

    Examples
    --------
    >>> get_crf("gamma").spec
    'gamma:2.2'
    >>> float(get_crf("srgb").to_linear(0.5))  # doctest: +ELLIPSIS
    0.2140411...
    """
    if isinstance(spec, CRF):
        return spec
    if not isinstance(spec, str):
        raise ParameterError(f"crf: expected a spec string or CRF, got {type(spec).__name__}")
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    if kind in ("srgb", "linear") and not sep:
        return CRF(kind)
    if kind == "gamma":
        g = _parse_float(spec, "G", arg.strip()) if sep else _DEFAULT_GAMMA
        return CRF("gamma", g)
    if kind == "exp":
        a = _parse_float(spec, "A", arg.strip()) if sep else _DEFAULT_EXP
        return CRF("exp", a)
    if kind == "table" and sep:
        if not arg.strip():
            raise ParameterError(f"crf {spec!r}: table needs a file path, as table:PATH")
        # Keep the path text as given apart from making it absolute (no strip: a file
        # name may legitimately end in a space; expanduser for convenience).
        path = Path(os.path.abspath(os.path.expanduser(arg)))
        enc, lin = _load_table(path)
        try:
            return CRF("table", source=str(path), encoded=enc, linear=lin)
        except ParameterError as exc:
            raise InputFileError(path, str(exc)) from None
    raise ParameterError(
        f"crf: unknown spec {spec!r}; expected one of: " + ", ".join(CRF_SPECS)
    )


# -- 8-bit conversion ------------------------------------------------------------------


def decode_u8(u8: np.ndarray, crf: str | CRF) -> np.ndarray:
    """Decode 8-bit encoded pixels to linear float32 via the curve's LUT.

    Parameters
    ----------
    u8 : ndarray of uint8
        Encoded codes, any shape.
    crf : str or CRF
        Curve or spec (see :func:`get_crf`).

    Returns
    -------
    linear : ndarray of float32
        Same shape as `u8`; ``linear = crf.decode_lut()[u8]``.

    Raises
    ------
    ParameterError
        If `u8` is not a uint8 array.
    """
    crf = get_crf(crf)
    u8 = np.asarray(u8)
    if u8.dtype != np.uint8:
        raise ParameterError(f"decode_u8: expected a uint8 array, got dtype {u8.dtype}")
    return crf._lut32[u8]


def encode_u8(linear: ArrayLike, crf: str | CRF) -> np.ndarray:
    """Encode linear values to 8-bit codes, rounding to nearest in the encoded domain.

    Parameters
    ----------
    linear : array_like of float
        Linear values, any shape. Values below 0 give code 0, above 1 give 255;
        NaN gives 0.
    crf : str or CRF
        Curve or spec (see :func:`get_crf`).

    Returns
    -------
    codes : ndarray of uint8
        Same shape as `linear`;
        :math:`k = \\lfloor 255\\,\\mathrm{to\\_encoded}(x) + 1/2 \\rfloor`.

    Raises
    ------
    ParameterError
        If `linear` is not a floating-point array.

    Notes
    -----
    Implemented as ``searchsorted(thresholds, x, side='right')`` against the linear
    decision boundaries :math:`t_k = \\mathrm{to\\_linear}((k - 1/2)/255)`, which is exact
    with respect to the float64 curve: float32 input is compared with thresholds rounded up
    to float32, float64 input with float64 thresholds. This is the NumPy reference; it does
    not evaluate the inverse curve per pixel. Ties (x exactly on a boundary) round up.
    """
    crf = get_crf(crf)
    x = np.asarray(linear)
    if not np.issubdtype(x.dtype, np.floating):
        raise ParameterError(
            f"encode_u8: expected a floating-point array of linear values, got dtype {x.dtype}"
        )
    if x.dtype.itemsize >= 8:  # float64 (longdouble is narrowed to it)
        x = x.astype(np.float64, copy=False)
        thr = crf._thr64
    else:  # float32; float16 widens to float32 exactly
        x = x.astype(np.float32, copy=False)
        thr = crf._thr32
    codes = np.searchsorted(thr, x, side="right").astype(np.uint8)
    # searchsorted orders NaN last (-> 255); map it to 0 like a plain `x >= t` test does.
    nan = np.isnan(x)
    if nan.any():
        codes[nan] = 0
    return codes
