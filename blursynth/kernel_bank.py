"""Kernel banks on disk: load (``.npz``, ``.npy``, MATLAB ``.mat``, PNG folders), save, describe
(extent, length, curvature) and show (a preview grid); :func:`write_bank` is the driver behind
``blursynth kernels``. The kernels themselves come from :mod:`blursynth.psf`.
"""
from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import InputFileError, OutputError, ParameterError
from .files import atomic_path, output_error
from blursynth_ext.raster import splat_cpu

from .psf import CENTRE_TOLERANCE, EXTENT_THRESHOLD, SUPPORT_FILL, _prepare, kernel_bank

log = logging.getLogger("blursynth")

_BANK_FORMAT = "blursynth.psf.bank/1"

__all__ = ["save_bank", "load_bank", "bank_meta", "write_bank", "kernel_stats", "bank_stats",
           "format_summary", "preview_grid", "write_preview"]

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
