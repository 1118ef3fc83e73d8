"""Linear float -> 8-bit encoded values, rounded exactly in the encoded domain.

An 8-bit code k is the nearest code to ``255 * crf(x)`` exactly when ``t_k <= x < t_{k+1}`` with
the linear decision thresholds ``t_k = crf^-1((k - 1/2) / 255)``. A 65536-entry table indexed by
``x`` gives the code to within one step, and one comparison with each neighbouring threshold makes
it exact, so encoding costs a lookup instead of a power function per value.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["encode_reference", "encode_cpu", "threshold_table"]

_TABLE_SIZE = 65536


def threshold_table(thresholds: np.ndarray) -> np.ndarray:
    """uint8 table: code for linear value ``i / (N - 1)``, ``N = 65536`` (exact at those points)."""
    grid = np.arange(_TABLE_SIZE, dtype=np.float64) / (_TABLE_SIZE - 1)
    return np.searchsorted(thresholds.astype(np.float64), grid, side="right").astype(np.uint8)


def encode_reference(lin: np.ndarray, thresholds: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Encode ``scale * lin`` (float, linear, clipped to [0, 1]) to uint8 codes.

    Parameters
    ----------
    lin : numpy.ndarray
        Linear values, any shape.
    thresholds : numpy.ndarray
        float32 (255,) increasing linear decision thresholds (:meth:`blursynth.crf.CRF.thresholds`).
    scale : float
        Multiplier applied first (1 / total weight of an accumulator).

    Returns
    -------
    numpy.ndarray
        uint8 codes, same shape as ``lin``.
    """
    v = np.clip(np.asarray(lin, np.float32) * np.float32(scale), 0.0, 1.0)
    return np.searchsorted(thresholds, v, side="right").astype(np.uint8)


@numba.njit(parallel=True, nogil=True, cache=True)
def _encode_kernel(flat, out, thr, table, scale):
    top = np.float32(table.shape[0] - 1)
    for i in numba.prange(flat.shape[0]):
        v = flat[i] * scale
        v = min(max(v, np.float32(0.0)), np.float32(1.0))
        c = int(table[int(v * top)])
        # The table entry is exact at the grid point below v; v may have crossed the next
        # threshold (never more than one here: the grid is far finer than the codes).
        while c < 255 and v >= thr[c]:
            c += 1
        while c > 0 and v < thr[c - 1]:
            c -= 1
        out[i] = c



def encode_cpu(lin: np.ndarray, thresholds: np.ndarray, table: np.ndarray,
               scale: float = 1.0) -> np.ndarray:
    """numba version of :func:`encode_reference`; ``table`` is :func:`threshold_table` of it."""
    flat = np.ascontiguousarray(lin, dtype=np.float32).reshape(-1)
    out = np.empty(flat.shape, np.uint8)
    _encode_kernel(flat, out, np.ascontiguousarray(thresholds, np.float32), table, np.float32(scale))
    return out.reshape(np.shape(lin))
