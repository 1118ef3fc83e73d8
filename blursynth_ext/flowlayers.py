"""The few affine motions that explain most of a flow field (its motion layers).

Near a motion boundary the snap (:mod:`.flowsnap`) chooses among vectors found a few pixels
away; where the flow's ramp is wider than its reach, or every nearby vector is itself a blend,
none of them is a motion any surface has. The layers are: a frame of moving objects over a
moving background is, to a pixel or so, a handful of affine motions, and each is a candidate
at every pixel.

Fit: sequential RANSAC on the flow sampled every ``step`` pixels. Each affine motion is fitted
to the samples left with a tight inlier threshold (``fit_tol``); then every sample within
``claim`` of it is removed before the next fit. The claim is looser than the fit because the
noise of patch-based flow on a textured surface (DIS: some 0.5-1 px) exceeds a tight threshold,
and removing only the tight inliers leaves the rest of the same surface to be fitted again as a
"second layer" in place of the next object. Each layer is then refitted by least squares to
all the samples it claims.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["motion_layers", "layer_flow"]


def motion_layers(flow: np.ndarray, *, n: int = 3, step: int = 8, fit_tol: float = 0.5,
                  claim: float = 1.5, min_share: float = 0.03) -> list[np.ndarray]:
    """Affine motions of a flow field, the one explaining most samples first.

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (h, w, 2) displacements (dx, dy) in pixels.
    n : int
        At most this many layers.
    step : int
        The flow is sampled every ``step`` pixels (from ``step // 2``) each way.
    fit_tol : float
        RANSAC's inlier threshold, pixels.
    claim : float
        Samples within this many pixels (in either component) of a fitted motion belong to it
        and are not fitted again.
    min_share : float
        A fit stops when fewer samples than this share of all are left, or fit it.

    Returns
    -------
    list of numpy.ndarray
        float64 (2, 3) matrices ``M``: the point ``(x, y)`` moves to ``M @ (x, y, 1)``.
        OpenCV's RANSAC seeds itself with a constant: the same flow gives the same layers.
    """
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    p = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)
    q = p + flow[ys.ravel(), xs.ravel()].astype(np.float32)
    left = np.ones(len(p), bool)
    least = max(3, int(np.ceil(min_share * len(p))))
    out: list[np.ndarray] = []
    while len(out) < n and left.sum() >= least:
        m, inliers = cv2.estimateAffine2D(p[left], q[left], method=cv2.RANSAC,
                                          ransacReprojThreshold=fit_tol, maxIters=500,
                                          confidence=0.99)
        if m is None or inliers.sum() < least:
            break
        moved = p[left] @ m[:, :2].T + m[:, 2]
        mine = np.flatnonzero(left)[np.abs(moved - q[left]).max(-1) <= claim]
        left[mine] = False
        # Least squares on every claimed sample: RANSAC's refinement sees only the tight
        # inliers, a truncated sample of the noise (0.3 px off at the corners of a 640x360 pan
        # with 0.3 px of noise, against 0.1).
        x = np.hstack([p[mine], np.ones((len(mine), 1), np.float32)]).astype(np.float64)
        out.append(np.linalg.lstsq(x, q[mine].astype(np.float64), rcond=None)[0].T)
    return out


def layer_flow(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The flow of the affine motion ``m`` (float (2, 3), :func:`motion_layers`) on a grid of
    ``shape`` = (h, w): float32 (h, w, 2), ``M @ (x, y, 1) - (x, y)``."""
    gy, gx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
    fx = m[0, 0] * gx + m[0, 1] * gy + m[0, 2] - gx
    fy = m[1, 0] * gx + m[1, 1] * gy + m[1, 2] - gy
    return np.stack([fx, fy], -1).astype(np.float32)
