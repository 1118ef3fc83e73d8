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
the samples within the fit's threshold.

Snapped with the layers as candidates, a pixel whose vector is still a blend of two motions sits
where neither side's match is clear: in a band about to be covered or just revealed. Of two
surfaces meeting there the front one is seen whole in both frames, so such a pixel belongs to
the nearest layer in front (:func:`snap_to_front`). Depth comes from the occlusions each layer
suffers (:func:`depth_order`): points not seen in the other frame lie on the surface behind.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["motion_layers", "layer_flow", "one_motion", "depth_order", "snap_to_front"]


def _samples(flow: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    # float32 (n, 2) points every `step` px from step // 2, and where the flow takes them.
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    p = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)
    return p, p + flow[ys.ravel(), xs.ravel()].astype(np.float32)


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
    p, q = _samples(flow, step)
    left = np.ones(len(p), bool)
    least = max(3, int(np.ceil(min_share * len(p))))
    out: list[np.ndarray] = []
    while len(out) < n and left.sum() >= least:
        m, inliers = cv2.estimateAffine2D(p[left], q[left], method=cv2.RANSAC,
                                          ransacReprojThreshold=fit_tol, maxIters=500,
                                          confidence=0.99)
        if m is None or inliers.sum() < least:
            break
        idx = np.flatnonzero(left)
        miss = np.abs(p[idx] @ m[:, :2].T + m[:, 2] - q[idx]).max(-1)
        left[idx[miss <= claim]] = False
        # Least squares on the samples within the fit's own threshold: the looser claim also
        # takes the blends of a boundary ramp, which pull the motion towards the other side
        # (the occlusion benchmark at 720p, worst tile at e = 2: 36.9 dB against 38.1).
        tight = idx[miss <= fit_tol]
        x = np.hstack([p[tight], np.ones((len(tight), 1), np.float32)]).astype(np.float64)
        out.append(np.linalg.lstsq(x, q[tight].astype(np.float64), rcond=None)[0].T)
    return out


def layer_flow(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The flow of the affine motion ``m`` (float (2, 3), :func:`motion_layers`) on a grid of
    ``shape`` = (h, w): float32 (h, w, 2), ``M @ (x, y, 1) - (x, y)``."""
    gy, gx = np.mgrid[:shape[0], :shape[1]]
    return np.stack(_vectors_at(m, gy, gx), -1).astype(np.float32)


def one_motion(flow: np.ndarray, *, step: int = 8, claim: float = 1.5,
               min_share: float = 0.03) -> bool:
    """Whether one affine motion explains the flow: all but ``min_share`` of its samples lie
    within ``claim`` px of it (a camera's pan, zoom or turn, with a few faults). Cheap (a
    short RANSAC): the test before :func:`motion_layers`.

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (h, w, 2) displacements in pixels, sampled every ``step`` pixels.
    step, claim, min_share
        As in :func:`motion_layers`.

    Returns
    -------
    bool
    """
    p, q = _samples(flow, step)
    # Inliers within the claim itself: the one motion either holds or it does not.
    m, inliers = cv2.estimateAffine2D(p, q, method=cv2.RANSAC, ransacReprojThreshold=claim,
                                      maxIters=100, confidence=0.99)
    return m is not None and float(np.mean(inliers == 0)) < min_share


def _vectors_at(m: np.ndarray, ys: np.ndarray, xs: np.ndarray):
    # (u, v) of the affine motion m (2, 3), or of one motion per point (n, 2, 3), at the points.
    x, y = xs.astype(np.float64), ys.astype(np.float64)
    return (m[..., 0, 0] * x + m[..., 0, 1] * y + m[..., 0, 2] - x,
            m[..., 1, 0] * x + m[..., 1, 1] * y + m[..., 1, 2] - y)


def _owners(flow: np.ndarray, layers, ys: np.ndarray, xs: np.ndarray, tol: float) -> np.ndarray:
    # bool (L, n): whether the vector at each point (ys, xs) is within tol of each layer's.
    u, v = flow[ys, xs, 0], flow[ys, xs, 1]
    return np.stack([(np.abs(u - lu) <= tol) & (np.abs(v - lv) <= tol)
                     for lu, lv in (_vectors_at(m, ys, xs) for m in layers)])


def depth_order(layers, flow: np.ndarray, opposite: np.ndarray, mask: np.ndarray,
                tol: float = 1.0) -> np.ndarray:
    """Depth rank of each layer, from the share of its pixels that the other frame hides.

    Parameters
    ----------
    layers : sequence of numpy.ndarray
        Affine motions (float (2, 3), :func:`motion_layers`) of the flow from ``a`` to ``b``.
    flow, opposite : numpy.ndarray
        float32 (h, w, 2) flows from ``a`` to ``b`` and from ``b`` to ``a``, pixels.
    mask : numpy.ndarray
        uint8 or bool (h, w): the pixels counted (near motion boundaries, where the occlusions
        are).
    tol : float
        A pixel belongs to a layer whose vector is within this many px (either component).

    Returns
    -------
    numpy.ndarray
        int64 (L,): 0 for the layer hidden most (the farthest), L - 1 for the front.
    """
    from .flowfill import covered_cpu  # the points of a that no point of b lands near

    ys, xs = np.nonzero(mask)
    hidden = covered_cpu(flow, opposite)[ys, xs] != 0
    share = [(hidden & own).sum() / max(own.sum(), 1)
             for own in _owners(flow, layers, ys, xs, tol)]
    ranks = np.empty(len(share), np.int64)
    ranks[np.argsort(share, kind="stable")[::-1]] = np.arange(len(share))
    return ranks


def snap_to_front(flow: np.ndarray, mask: np.ndarray, layers, ranks, tol: float = 1.0,
                  reach: int = 1) -> np.ndarray:
    """Give each blended vector of ``mask`` the vector of the front-most layer beside it.

    Parameters
    ----------
    flow : numpy.ndarray
        float32 (h, w, 2) flow, pixels (already snapped, with the layers as candidates).
    mask : numpy.ndarray
        uint8 or bool (h, w): the pixels that may change.
    layers : sequence of numpy.ndarray
        Affine motions (float (2, 3)).
    ranks : sequence of int
        Their depth ranks (:func:`depth_order`; higher is nearer).
    tol : float
        A vector within this many px (either component) of a layer's is that layer's; one
        within ``tol`` of none is a blend.
    reach : int
        A layer is beside a pixel if one of its pixels lies in the ``(2 reach + 1)`` square
        around it.

    Returns
    -------
    numpy.ndarray
        float32 (h, w, 2): ``flow`` with each blended vector of ``mask`` that has a layer
        beside it replaced by the nearest-in-front such layer's vector.
    """
    out = np.array(flow, np.float32, copy=True)
    if not len(layers):
        return out
    mask = np.asarray(mask, np.uint8)
    box = np.ones((2 * reach + 1,) * 2, np.uint8)
    ry, rx = np.nonzero(cv2.dilate(mask, box))  # the masked pixels and their neighbours
    owners = _owners(out, layers, ry, rx, tol)
    inside = mask[ry, rx] != 0  # both in row order: the masked pixels are ry[inside], ...
    ys, xs = ry[inside], rx[inside]
    blend = ~owners[:, inside].any(0)
    front = np.full(ys.size, -1, np.int64)  # rank of the nearest layer beside, per pixel
    pick = np.zeros(ys.size, np.int64)
    own = np.zeros(mask.shape, np.uint8)
    for j in np.argsort(ranks):  # back to front: nearer layers overwrite
        own[ry, rx] = owners[j]
        beside = cv2.dilate(own, box)[ys, xs] != 0
        front[beside] = ranks[j]
        pick[beside] = j
    fix = blend & (front >= 0)
    u, v = _vectors_at(np.asarray(layers, np.float64)[pick[fix]], ys[fix], xs[fix])
    out[ys[fix], xs[fix], 0], out[ys[fix], xs[fix], 1] = u, v
    return out
