"""Helpers shared by the benchmarks: image metrics, machine description, markdown tables.

The benchmarks are scripts (``python benchmarks/bench_X.py``), so this module is imported as
``common`` from the script's own folder.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
from typing import Sequence

import numpy as np

#: PSNR reported for identical images (the MSE is zero), so tables stay numeric.
PSNR_CAP = 99.0


def parse_size(text: str) -> tuple[int, int]:
    """``"360x640"`` -> ``(360, 640)`` (height x width), for argparse ``type=``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 360x640, got {text!r}") from None
    if h < 64 or w < 64:
        raise argparse.ArgumentTypeError(f"expected a size of at least 64x64, got {text!r}")
    return h, w


def psnr_from_mse(mse: np.ndarray | float, peak: float = 255.0) -> np.ndarray | float:
    """PSNR in dB for mean squared errors on a 0..``peak`` scale, capped at :data:`PSNR_CAP`."""
    mse = np.maximum(np.asarray(mse, np.float64), 1e-12)
    out = np.minimum(10.0 * np.log10(peak * peak / mse), PSNR_CAP)
    return float(out) if out.ndim == 0 else out


def psnr(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    """PSNR of two uint8 images (all channels), ignoring ``border`` pixels on every side."""
    d = _diff(a, b, border)
    return float(psnr_from_mse(np.mean(d * d)))


def tile_psnrs(a: np.ndarray, b: np.ndarray, border: int = 0, tile: int = 32) -> np.ndarray:
    """PSNR of every whole ``tile`` x ``tile`` block of the interior (partial blocks dropped).

    A mean PSNR hides small regions that are badly wrong (an occlusion edge, a flow failure);
    the worst tile shows them.
    """
    d = _diff(a, b, border)
    h, w = (d.shape[0] // tile) * tile, (d.shape[1] // tile) * tile
    sq = (d[:h, :w] ** 2).reshape(h // tile, tile, w // tile, tile, -1)
    return psnr_from_mse(sq.mean(axis=(1, 3, 4)))


def _diff(a: np.ndarray, b: np.ndarray, border: int) -> np.ndarray:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    d = a.astype(np.float64) - b.astype(np.float64)
    return d[border:d.shape[0] - border, border:d.shape[1] - border] if border else d


def photo(size: tuple[int, int]) -> np.ndarray:
    """The astronaut photo as ``(H, W, 3)`` uint8 sRGB at `size`."""
    import cv2
    from skimage import data

    h, w = size
    return cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_CUBIC)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
                   align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` has one of ``l``/``r`` per column (default: left)."""
    align = align or "l" * len(headers)
    sep = ["---:" if c == "r" else "---" for c in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def machine_line() -> str:
    """One line describing where the numbers came from (CPU count, threads, versions)."""
    import cv2
    import numba

    return (f"{_dt.date.today().isoformat()}, {platform.machine()} "
            f"{platform.processor() or ''}".rstrip()
            + f", os.cpu_count() = {os.cpu_count()}, numba threads = {numba.get_num_threads()}, "
              f"cv2 threads = {cv2.getNumThreads()}, OpenCV {cv2.__version__}, "
              f"numpy {np.__version__}, Python {platform.python_version()}"
              # Other processes on a small machine skew timings: say how busy it was.
              + (f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""))
