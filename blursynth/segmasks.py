"""Instance masks for segmentation-based blur: COCO annotations, mask folders, plain images.

Every source yields :class:`SegItem` objects: one photo and the masks of the objects that will
move with their own kernels, ordered back to front (the compositing order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["SegItem"]


@dataclass
class SegItem:
    """One photo and its moving objects.

    Attributes
    ----------
    key : str
        Stable identifier of the item (seeds its random draws; names its outputs), e.g.
        ``"000000123456"`` for a COCO image id or the image file's stem.
    image : pathlib.Path
        The sharp photo.
    masks : numpy.ndarray
        ``(n, H, W)`` bool, one per object, ordered back to front; ``n`` may be 0 (camera
        blur only).
    meta : dict
        JSON-able provenance: source (``"coco"``, ``"masks"``, ``"plain"``), image id,
        annotation ids, category names, areas, the ordering rule.
    """

    key: str
    image: Path
    masks: np.ndarray
    meta: dict = field(default_factory=dict)
