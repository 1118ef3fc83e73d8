"""numba.cuda version of :func:`blursynth_ext.warpsum.warpsum_reference` (one thread per pixel).

The per-pixel code is the same Python source as the CPU kernel, compiled as CUDA device
functions. Under ``NUMBA_ENABLE_CUDASIM=1`` it runs in numba's simulator (tests, tiny inputs).
"""
from __future__ import annotations

import numpy as np
from numba import cuda  # a module global: the simulator replaces it inside kernels

from .warpsum import _check, _prepare, device_pixel

__all__ = ["warpsum_cuda"]

_kernel = None


def _get_kernel():
    global _kernel
    if _kernel is None:
        pixel = device_pixel(cuda.jit(device=True))

        @cuda.jit
        def kernel(ia, ib, fab, fba, hard, sx, sy, na, nb, nsx, nsy, times, weights, targets,
                   levels, ltimes, lweights, ltargets, lcount, acc, iters, inv_tau2, shift, cubic,
                   up):
            x, y = cuda.grid(2)
            if y < acc.shape[1] and x < acc.shape[2]:
                pixel(ia, ib, fab, fba, hard, sx, sy, na, nb, nsx, nsy, times, weights, targets,
                      levels, ltimes, lweights, ltargets, lcount, acc, y, x, iters, inv_tau2,
                      shift, cubic, up)

        _kernel = kernel
    return _kernel


def warpsum_cuda(ia, ib, fab, fba, times, weights, targets, acc, *, hard=None, smooth=None,
                 fine=None, iters: int = 2, tau: float = 0.5, shift: float = 0.0,
                 cubic: bool = False, up: int = 1) -> np.ndarray:
    """CUDA twin of :func:`blursynth_ext.warpsum.warpsum_reference`; ``acc`` may be a host array
    (copied to the device and back) or a device array (updated in place on the device)."""
    _check(ia, ib, fab, fba, times, weights, targets, acc, hard, cubic, up, smooth, fine)
    ia, ib, fab, fba, na, nb, nsx, nsy, *samples, hard, levels, lt, lw, lg, lc = _prepare(
        ia, ib, fab, fba, times, weights, targets, hard, smooth, acc.shape[1:3], fine)
    on_host = not cuda.is_cuda_array(acc) if hasattr(cuda, "is_cuda_array") else True
    d_acc = cuda.to_device(acc) if on_host else acc
    h, w = acc.shape[1:3]
    block = (16, 8)
    grid = ((w + block[0] - 1) // block[0], (h + block[1] - 1) // block[1])
    dev = cuda.to_device
    # Where the fixed point reads the grid, it is the same array: copy it once.
    d_fab, d_fba = dev(fab), dev(fba)
    d_na, d_nb = (d_fab, d_fba) if fine is None else (dev(na), dev(nb))
    _get_kernel()[grid, block](dev(ia), dev(ib), d_fab, d_fba, dev(hard),
                               np.float32(fab.shape[1] / w), np.float32(fab.shape[0] / h),
                               d_na, d_nb, nsx, nsy, *map(dev, samples),
                               *map(dev, (levels, lt, lw, lg, lc)), d_acc, iters,
                               np.float32(1.0 / (tau * tau)), np.float32(shift), bool(cubic),
                               int(up))
    if on_host:
        d_acc.copy_to_host(acc)
    return acc
