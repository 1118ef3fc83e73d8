"""Contact sheets: look at a flowblur result at a glance.

:func:`contact_sheet` lays out images in a labelled grid (arrays in, array out);
:func:`preview` reads a few frames of a ``flowblur`` output set (``NAME_sharp.mp4``,
``NAME_blurry.mp4``, ``NAME_flow.mp4``) and writes a PNG with one row per frame and the columns

``sharp | blurry | flow | difference``

where *difference* is ``|blurry - sharp|`` on the 8-bit encoded values, amplified x4 and clipped:
black where the synthesis left the frame unchanged (still regions), bright along moving edges.
A result whose difference column is black everywhere has no blur; one bright all over
suggests a misaligned pair.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .errors import InputFileError, OutputError, ParameterError
from .files import atomic_path
from .video import VideoReader, probe

__all__ = ["contact_sheet", "preview", "find_output_set", "DIFF_GAIN", "LABEL_HEIGHT",
           "MAX_WIDTH"]

#: Amplification of ``|blurry - sharp|`` in the difference column.
DIFF_GAIN = 4
#: Height in pixels of the label strip above the columns (when labels are given).
LABEL_HEIGHT = 20
#: Default upper bound on the width of a preview sheet, in pixels.
MAX_WIDTH = 1600
#: Background (gaps, label strip, unused cell area) of a sheet: dark grey, so black tiles
#: (an all-zero difference) still show their extent.
BACKGROUND = 32

_SUFFIXES = ("_blurry.mp4", "_sharp.mp4", "_flow.mp4")


def _as_rgb(img: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ParameterError(f"{where}: expected dtype uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ParameterError(f"{where}: expected shape (H, W) or (H, W, 3), got {a.shape}")
    return a


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], *, labels: Sequence[str] | None = None,
                  gap: int = 4) -> np.ndarray:
    """Lay out images in a grid, with optional column labels.

    Parameters
    ----------
    rows : sequence of sequences of numpy.ndarray
        ``rows[r][c]`` is the image in row ``r``, column ``c``: uint8 (H, W, 3) RGB or (H, W)
        grey. Every row has the same number of images; sizes may differ.
    labels : sequence of str, optional
        One label per column, drawn in a strip of :data:`LABEL_HEIGHT` px above the grid
        (clipped to the column width).
    gap : int
        Pixels of background between cells and around the border.

    Returns
    -------
    numpy.ndarray
        uint8 (H, W, 3) RGB. Column ``c`` is as wide as its widest image and row ``r`` as tall
        as its tallest; each image sits at the top-left of its cell, the rest is background
        (:data:`BACKGROUND`). Image ``(r, c)`` starts at ``y = gap + L + sum(heights[:r]) +
        r * gap``, ``x = gap + sum(widths[:c]) + c * gap`` with ``L = LABEL_HEIGHT`` if labels
        are given, else 0.

    Raises
    ------
    ParameterError
        Empty or ragged ``rows``, images that are not uint8 RGB/grey, a label count that is
        not the column count, or a negative ``gap``.

    Examples
    --------
    >>> a = np.full((10, 10, 3), 200, np.uint8)
    >>> s = contact_sheet([(a, a)], gap=4)
    >>> s.shape, s[4, 4].tolist(), s[0, 0].tolist()
    ((18, 32, 3), [200, 200, 200], [32, 32, 32])
    """
    if not rows or not all(len(r) for r in rows):
        raise ParameterError("rows: expected at least one row of at least one image")
    ncol = len(rows[0])
    if any(len(r) != ncol for r in rows):
        raise ParameterError(f"rows: expected {ncol} images in every row, got "
                             f"{[len(r) for r in rows]}")
    if labels is not None and len(labels) != ncol:
        raise ParameterError(f"labels: expected {ncol} (one per column), got {len(labels)}")
    if int(gap) != gap or gap < 0:
        raise ParameterError(f"gap: expected an integer >= 0 pixels, got {gap}")
    gap = int(gap)
    grid = [[_as_rgb(img, f"rows[{r}][{c}]") for c, img in enumerate(row)]
            for r, row in enumerate(rows)]
    widths = [max(grid[r][c].shape[1] for r in range(len(grid))) for c in range(ncol)]
    heights = [max(img.shape[0] for img in row) for row in grid]
    top = gap + (LABEL_HEIGHT if labels is not None else 0)
    xs = np.cumsum([gap] + [w + gap for w in widths])
    ys = np.cumsum([top] + [h + gap for h in heights])
    sheet = np.full((int(ys[-1]), int(xs[-1]), 3), BACKGROUND, np.uint8)
    for r, row in enumerate(grid):
        for c, img in enumerate(row):
            h, w = img.shape[:2]
            sheet[ys[r]:ys[r] + h, xs[c]:xs[c] + w] = img
    if labels is not None:
        for c, text in enumerate(labels):
            # Draw into the column's own strip so a long label is clipped, not spilled over.
            strip = np.ascontiguousarray(sheet[gap:top, xs[c]:xs[c] + widths[c]])
            cv2.putText(strip, str(text), (2, LABEL_HEIGHT - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (255, 255, 255), 1, cv2.LINE_AA)
            sheet[gap:top, xs[c]:xs[c] + widths[c]] = strip
    return sheet


def find_output_set(path: str | os.PathLike) -> dict[str, Path | None]:
    """Locate a flowblur output set from its blurry video or the folder holding it.

    Parameters
    ----------
    path : path
        ``NAME_blurry.mp4`` (or ``NAME_sharp.mp4`` / ``NAME_flow.mp4`` of the same set), or a
        folder holding exactly one ``*_blurry.mp4``.

    Returns
    -------
    dict
        ``name`` (str), ``blurry``, ``sharp`` and ``flow`` (Path; ``flow`` is None when the set
        has no flow video).

    Raises
    ------
    InputFileError
        ``path`` does not exist, or the set lacks its blurry or sharp video.
    ParameterError
        ``path`` is a file not named like a flowblur output, or a folder with no or several
        sets (the message lists what it found).
    """
    p = Path(path)
    if p.is_dir():
        found = sorted(q.name for q in p.glob("*_blurry.mp4"))
        if len(found) != 1:
            raise ParameterError(
                f"{p}: expected a folder with exactly one flowblur output set (NAME_blurry.mp4), "
                f"found {len(found)}" + (f": {', '.join(found)}; pass one of them" if found
                                         else ""))
        folder, name = p, found[0][:-len("_blurry.mp4")]
    elif p.exists():
        suffix = next((s for s in _SUFFIXES if p.name.endswith(s)), None)
        if suffix is None:
            raise ParameterError(f"{p}: expected a flowblur output NAME_blurry.mp4 (or a folder "
                                 f"holding one), got a file named {p.name!r}")
        folder, name = p.parent, p.name[:-len(suffix)]
    else:
        raise InputFileError(p, "no such file or folder")
    out = {"name": name}
    for kind, suffix in zip(("blurry", "sharp", "flow"), _SUFFIXES):
        q = folder / f"{name}{suffix}"
        if not q.is_file():
            if kind == "flow":
                q = None
            else:
                raise InputFileError(q, f"missing: the {kind} video of the set {name!r} "
                                        f"in {folder}")
        out[kind] = q
    return out


def _read_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """The frames at ``indices`` (sorted), decoding sequentially and keeping only those."""
    want = set(indices)
    got: dict[int, np.ndarray] = {}
    with VideoReader(path, end=max(indices) + 1) as reader:
        for i, frame in enumerate(reader):
            if i in want:
                got[i] = frame
    return got


def _difference(blurry: np.ndarray, sharp: np.ndarray) -> np.ndarray:
    d = np.abs(blurry.astype(np.int16) - sharp.astype(np.int16)) * DIFF_GAIN
    return np.minimum(d, 255).astype(np.uint8)


def preview(path: str | os.PathLike, *, n: int = 4, out: str | os.PathLike | None = None,
            max_width: int = MAX_WIDTH, gap: int = 4) -> Path:
    """Write a PNG contact sheet of a flowblur output set.

    Parameters
    ----------
    path : path
        ``NAME_blurry.mp4``, or a folder holding exactly one flowblur output set
        (see :func:`find_output_set`).
    n : int
        Number of frames (rows), evenly spaced from the first output frame to the last;
        fewer if the video is shorter.
    out : path, optional
        The PNG to write; default ``NAME_preview.png`` beside the videos.
    max_width : int
        Frames are downscaled (area averaging) so that the sheet is at most this wide.
    gap : int
        Pixels between cells.

    Returns
    -------
    pathlib.Path
        The PNG written (atomically: a reader never sees a partial file).

    Raises
    ------
    InputFileError, VideoError
        The set is missing a video, or a video cannot be decoded.
    ParameterError
        ``n < 1``, or ``path`` does not name a single output set.
    OutputError
        The PNG cannot be written.

    Notes
    -----
    Columns: ``sharp | blurry | flow | difference`` (``flow`` is left out when the set has no
    flow video). The difference is ``min(255, 4 |blurry - sharp|)`` per channel on the encoded
    frames, computed at full resolution before any downscaling.
    """
    if int(n) != n or n < 1:
        raise ParameterError(f"n: expected an integer >= 1 frames, got {n}")
    if out is not None and Path(out).suffix.lower() != ".png":
        raise ParameterError(f"out: expected a .png file, got {os.fspath(out)!r}")
    files = find_output_set(path)
    count = probe(files["blurry"]).n_frames
    if not count:  # the container does not say: count by decoding
        with VideoReader(files["blurry"]) as reader:
            count = sum(1 for _ in reader)
    idx = sorted(set(np.linspace(0, count - 1, min(int(n), count)).round().astype(int).tolist()))
    blurry = _read_frames(files["blurry"], idx)
    sharp = _read_frames(files["sharp"], idx)
    flow = _read_frames(files["flow"], idx) if files["flow"] is not None else None
    idx = [i for i in idx if i in blurry and i in sharp]  # the container may over-count
    if not idx:
        raise InputFileError(files["blurry"], "no frame could be read")
    labels = (["sharp", "blurry"] + (["flow"] if flow is not None else [])
              + [f"difference x{DIFF_GAIN}"])
    h, w = blurry[idx[0]].shape[:2]
    ncol = len(labels)
    scale = min(1.0, (max_width - gap * (ncol + 1)) / (ncol * w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    rows = []
    for i in idx:
        b, s = blurry[i], sharp[i]
        tiles = [s, b]
        if flow is not None:  # at the flow's own resolution: shown at the frames' size
            f = flow.get(i, np.zeros_like(b))
            tiles.append(f if f.shape == b.shape else
                         cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR))
        tiles.append(_difference(b, s))
        if scale < 1.0:
            tiles = [cv2.resize(t, size, interpolation=cv2.INTER_AREA) for t in tiles]
        rows.append(tiles)
    sheet = contact_sheet(rows, labels=labels, gap=gap)
    dst = Path(out) if out is not None else files["blurry"].parent / f"{files['name']}_preview.png"
    with atomic_path(dst, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(sheet[..., ::-1])):
            raise OutputError(dst, "OpenCV could not write the PNG")
    return dst
