"""Flows at the output's resolution near motion boundaries, for a flow grid coarser than it.

At 720p the flow grid is half size: a motion boundary is placed to the nearest grid node, two
output pixels, and the occlusion-aware warp drags a pixel-wide seam of the wrong surface along
each moving edge (the occlusion benchmark's worst 32x32 tile: 33 dB at e = 1). Here the pair's
snapped grid flows are upsampled (nearest, so no new blends appear) and snapped again at the
output's resolution (:mod:`blursynth_ext.flowsnap`) with the frame's affine motion layers as
further candidates at every pixel (:mod:`blursynth_ext.flowlayers`): the shifted vectors reach
only a few pixels, and in a ramp wider than that every one of them is a blend. A vector that is
still a blend then takes the front-most layer beside it (``F_ab`` only: the points of ``a`` about
to be covered, which snapping alone leaves to the occluder). A clip's first pair fills its
about-to-be-covered points as on the grid (:mod:`blursynth_ext.flowfill`), at full size. The
fixed point of the warp reads the result (``warpsum(fine=...)``).

Only pairs with moving objects pay: where the flow is one affine motion (a camera pan, zoom or
turn) nothing is done.
"""
from __future__ import annotations

import cv2
import numpy as np

from blursynth_ext.dispatch import analyse_pair, fill_covered, snap_flow
from blursynth_ext.flowlayers import depth_order, motion_layers, one_motion, snap_to_front
from blursynth_ext.flowsnap import boundary_mask

__all__ = ["RADII", "BONUS", "PENALTY", "TOL", "fine_flows"]

#: Candidate distances, output pixels (the grid's own radii would reach across small objects).
RADII = (2, 4, 8)
#: Grey levels a layer's vector gains against the shifted ones (they are blends more often
#: than not where a grid ramp is upsampled). No bonus where there is no frame beyond: with
#: one frame to match, a layer wins too often where the point is about to be covered.
BONUS = 4.0
#: Grey levels a shifted vector within :data:`TOL` of no layer pays (it is a blend).
PENALTY = 4.0
#: A vector within this many px (either component) of a layer's is that layer's.
TOL = 1.0


def _upsample(f: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Nearest: every vector is one the grid found, no blends between nodes.
    return cv2.resize(f, size[::-1], interpolation=cv2.INTER_NEAREST_EXACT)


def _snap(flow, mask, a, b, other, opposite=None, layers=None):
    # Snap one side at full size; with `opposite` (F_ab's side) blends go to the front layer.
    if not mask.any():
        return flow
    layers = motion_layers(flow) if layers is None else layers
    out = snap_flow(flow, a, b, other, mask=mask, radii=RADII, layers=layers,
                    bonus=BONUS if other is not None else 0.0, penalty=PENALTY, tol=TOL,
                    border=True)
    if opposite is not None and layers:
        out = snap_to_front(out, mask, layers, depth_order(layers, out, opposite, mask, TOL),
                            TOL)
    return out


def _mask(flow):
    return boundary_mask(flow, radii=RADII)


def fine_flows(fab: np.ndarray, fba: np.ndarray, a: np.ndarray, b: np.ndarray,
               before: np.ndarray | None, after: np.ndarray | None, rgb_a: np.ndarray,
               nxt: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(F_ab, F_ba)`` at the output size for ``warpsum(fine=...)``, or None without a boundary.

    Parameters
    ----------
    fab, fba : numpy.ndarray
        float32 (h, w, 2): the pair's snapped flows on the grid (a clip's first pair: before its
        fill), displacements in output pixels.
    a, b : numpy.ndarray
        uint8 (H, W) grey frames at the output size.
    before, after : numpy.ndarray or None
        uint8 (H, W) grey frames one interval before ``a`` and after ``b``, or None at the ends
        of the clip.
    rgb_a : numpy.ndarray
        uint8 (H, W, 3) frame ``a`` (the first pair's fill matches colours).
    nxt : tuple of numpy.ndarray, optional
        For a clip's first pair (``before`` None): the next pair's flows ``(F_bc, F_cb)`` on the
        grid in output pixels, as estimated (the fill reads its depth order).

    Returns
    -------
    tuple of numpy.ndarray or None
        float32 (H, W, 3) each: (dx, dy, visibility in the other frame); None where the
        flow is one affine motion (a camera's: no surface passes another, nothing to place
        more finely) or has no boundary.
    """
    if one_motion(fab, step=8):  # on the grid: cheap, and enough samples
        return None
    size = a.shape
    fab, fba = _upsample(fab, size), _upsample(fba, size)
    layers = motion_layers(fab)
    if len(layers) < 2:
        return None
    mab, mba = _mask(fab), _mask(fba)
    if not (mab.any() or mba.any()):
        return None
    sab = _snap(fab, mab, a, b, before, opposite=fba, layers=layers)
    sba = _snap(fba, mba, b, a, after)
    if before is None:
        if nxt is not None and after is not None:
            bc, cb = (_upsample(f, size) for f in nxt)
            nxt = (_snap(bc, _mask(bc), b, after, a, opposite=cb),
                   _snap(cb, _mask(cb), after, b, None))
        else:
            nxt = None
        sab = fill_covered(sab, sba, rgb_a, 1.0, nxt)
    # Visibility only: the hard test (every point counts as textured) is the grid's business.
    f5ab, f5ba, *_ = analyse_pair(sab, sba, a, b, np.ones(size, bool), 1.0, 1.0, 0.3, 0.5)
    return (np.ascontiguousarray(f5ab[..., :3]), np.ascontiguousarray(f5ba[..., :3]))
