"""Blurry/sharp clips on disk: finding them and reading their frames.

A *clip* is a sequence of aligned (blurry, sharp) frame pairs, the unit every dataset
writer consumes. Three forms are recognised:

===================================  ==========================================================
flowblur output                      ``NAME_blurry.mp4`` + ``NAME_sharp.mp4`` (any folder);
                                     ``flowblur.jsonl`` beside them, when present, gives the
                                     CRF, exposure, fps and each frame's source frame, and
                                     ``NAME_subframes/`` / ``NAME_flow/`` the optional extras
flowblur ``--frames`` folders        ``NAME_blurry/`` + ``NAME_sharp/`` with ``NNNNNN.png``
pair folders                         ``DIR/blurry/`` + ``DIR/sharp/`` with identical image
                                     names (the clip is named ``DIR``); a segblur output
                                     folder is one of these, of independent photos
===================================  ==========================================================

Frames are uint8 RGB ``(H, W, 3)`` arrays, 0-255 encoded with the clip's CRF.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import InputFileError, ParameterError
from .flow import read_flo
from .manifest import read_manifest
from .video import VideoReader, probe

__all__ = ["Clip", "collect_clips", "find_clips", "read_image"]

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_SUBFRAME = re.compile(r"^(\d+)_(\d+)\.png$")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB.

    Parameters
    ----------
    path : str or os.PathLike
        Any image OpenCV reads; grey and alpha become RGB, 16-bit is scaled to 8 bits.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB, 0-255.

    Raises
    ------
    InputFileError
        The file is missing or not a readable image.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "no such file")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputFileError(p, "not a readable image")
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputFileError(p, f"expected an 8- or 16-bit image, got {img.dtype}")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code)


@dataclass
class Clip:
    """One clip of aligned blurry/sharp frames.

    Attributes
    ----------
    name : str
        Stable identifier (file or folder stem); used for seeding and output names.
    blurry, sharp : pathlib.Path
        Two mp4 files, or two folders of images with identical names.
    n_frames : int
        Number of frame pairs.
    height, width : int
        Frame size in pixels.
    fps : float or None
        Frame rate, when known.
    crf : str
        Camera response the frames are encoded with (from flowblur's or shake's manifest;
        default ``"srgb"``).
    exposure : float or None
        Exposure in input frame intervals (flowblur clips).
    source_frames : list of int or None
        For each frame, the index of the source-video frame at the centre of its exposure. Two
        neighbours whose source indices jump by more than the clip's usual step straddle frames
        that flowblur skipped at a scene cut.
    subframes_dir, flow_dir : pathlib.Path or None
        flowblur's optional sub-frame PNGs (``NNNNNN_JJ.png``) and flow files
        (``NNNNNN.npy``/``.flo``), indexed like the frames.
    record : dict
        flowblur's manifest record for the video (empty if there is none).
    stills : bool
        The frames are independent photos, not a video (a ``blursynth segblur`` output folder,
        recognised by its ``segblur.jsonl``): no burst may span two of them.
    """

    name: str
    blurry: Path
    sharp: Path
    n_frames: int
    height: int
    width: int
    fps: float | None = None
    crf: str = "srgb"
    exposure: float | None = None
    source_frames: list[int] | None = None
    subframes_dir: Path | None = None
    flow_dir: Path | None = None
    record: dict = field(default_factory=dict, repr=False)
    stills: bool = False

    @property
    def is_video(self) -> bool:
        """True if the frames are stored as mp4 files (read sequentially)."""
        return self.blurry.is_file()

    def _names(self) -> list[str]:
        return _image_names(self.blurry)

    def frames(self, indices: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(index, blurry, sharp)`` in increasing index order.

        Parameters
        ----------
        indices : iterable of int, optional
            Frames wanted (any order, duplicates ignored); default all. Videos are decoded
            sequentially up to the last one wanted.

        Yields
        ------
        index : int
        blurry, sharp : numpy.ndarray
            ``(H, W, 3)`` uint8 RGB.

        Raises
        ------
        InputFileError, VideoError
            A frame cannot be read, or the two sides disagree in length or size.
        """
        want = sorted(set(range(self.n_frames) if indices is None else indices))
        if not want:
            return
        if want[0] < 0 or want[-1] >= self.n_frames:
            raise ParameterError(f"{self.name}: frame index out of range 0..{self.n_frames - 1}")
        if not self.is_video:
            names = self._names()
            for i in want:
                yield i, read_image(self.blurry / names[i]), read_image(self.sharp / names[i])
            return
        wanted = set(want)
        with VideoReader(self.blurry, end=want[-1] + 1) as rb, \
                VideoReader(self.sharp, end=want[-1] + 1) as rs:
            i = -1
            for i, (b, s) in enumerate(zip(rb, rs)):
                if b.shape != s.shape:
                    raise InputFileError(self.sharp, f"frame {i} is {s.shape[1]}x{s.shape[0]}, "
                                                     f"the blurry video's {b.shape[1]}x{b.shape[0]}")
                if i in wanted:
                    yield i, b, s
            if i < want[-1]:
                short = self.blurry if rb.frames_read <= i else self.sharp
                raise InputFileError(short, f"ends after {i + 1} frames, expected "
                                            f"{self.n_frames}")

    def subframes(self, index: int) -> np.ndarray:
        """flowblur's sub-frames of frame `index`, ``(K, H, W, 3)`` uint8 in time order.

        Raises
        ------
        InputFileError
            The clip has no sub-frames (run flowblur with ``--subframes K``) or some are missing.
        """
        d = self.subframes_dir
        if d is None:
            raise InputFileError(self.blurry, "no sub-frames: run flowblur with --subframes K")
        files = sorted(d.glob(f"{index:06d}_*.png"))
        if not files:
            raise InputFileError(d, f"no sub-frames for frame {index}")
        return np.stack([read_image(f) for f in files])

    def n_subframes(self) -> int:
        """Sub-frames stored per frame (0 when there are none)."""
        if self.subframes_dir is None:
            return 0
        return len(list(self.subframes_dir.glob("000000_*.png")))

    def flow(self, index: int) -> np.ndarray:
        """flowblur's flow at frame `index`: ``(H, W, 2)`` float32, pixels per source frame.

        Raises
        ------
        InputFileError
            The clip has no flow files (run flowblur with ``--flow-files npy``) or one is missing.
        """
        d = self.flow_dir
        if d is None:
            raise InputFileError(self.blurry, "no flow files: run flowblur with --flow-files npy")
        for ext, load in ((".npy", np.load), (".flo", read_flo)):
            f = d / f"{index:06d}{ext}"
            if f.is_file():
                return np.asarray(load(f), dtype=np.float32)
        raise InputFileError(d, f"no flow file for frame {index}")


def _image_names(folder: Path) -> list[str]:
    return sorted(f.name for f in folder.iterdir()
                  if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."))


def _flowblur_records(folder: Path) -> tuple[dict, dict]:
    """Video records and per-frame source indices from the stage manifests in `folder`.

    ``flowblur.jsonl`` gives them directly; ``shake.jsonl`` (clips whose blurry frames
    ``blursynth shake`` re-blurred) carries the same facts in each clip's record.
    """
    videos: dict[str, dict] = {}
    frames: dict[str, dict[int, int]] = {}
    m = folder / "flowblur.jsonl"
    for rec in read_manifest(m) if m.is_file() else []:
        item = rec.get("item")
        if rec.get("status") != "ok" or not isinstance(item, str):
            continue
        if "/" in item:
            if "output_index" in rec and "centre_frame" in rec:
                frames.setdefault(rec["video"], {})[rec["output_index"]] = rec["centre_frame"]
        else:
            videos[item] = rec
    m = folder / "shake.jsonl"
    for rec in read_manifest(m) if m.is_file() else []:
        item = rec.get("item")
        if rec.get("status") == "ok" and isinstance(item, str) and "clip" in rec:
            videos[item] = {"frames_out": rec["clip"].get("frames"),
                            "params": {"crf": rec.get("crf"), "exposure": rec.get("exposure")}}
            if rec.get("source_frames"):
                frames[item] = dict(enumerate(rec["source_frames"]))
    return videos, frames


def _clip(name: str, blurry: Path, sharp: Path, n: int, size: tuple[int, int],
          fps: float | None, videos: dict, frames: dict) -> Clip:
    rec = videos.get(name, {})
    params = rec.get("params", {})
    src = frames.get(name, {})
    parent = blurry.parent
    sub, flow = parent / f"{name}_subframes", parent / f"{name}_flow"
    return Clip(name=name, blurry=blurry, sharp=sharp, n_frames=int(n), height=size[0],
                width=size[1], fps=rec.get("fps_out") or fps, crf=params.get("crf", "srgb"),
                exposure=params.get("exposure"),
                source_frames=[src[i] for i in range(n)] if all(i in src for i in range(n)) else None,
                subframes_dir=sub if sub.is_dir() else None,
                flow_dir=flow if flow.is_dir() else None, record=rec)


def _video_clip(name: str, blurry: Path, sharp: Path, videos: dict, frames: dict) -> Clip:
    if not sharp.is_file():
        raise InputFileError(blurry, f"has no sharp partner (expected {sharp.name} beside it)")
    ib, is_ = probe(blurry), probe(sharp)
    if (ib.width, ib.height) != (is_.width, is_.height):
        raise InputFileError(sharp, f"is {is_.width}x{is_.height}, its blurry partner "
                                    f"{ib.width}x{ib.height}")
    n = videos.get(name, {}).get("frames_out") or min(
        (x for x in (ib.n_frames, is_.n_frames) if x), default=0)
    if not n:
        raise InputFileError(blurry, "cannot tell how many frames it holds")
    return _clip(name, blurry, sharp, n, (ib.height, ib.width), ib.fps, videos, frames)


def _folder_clip(name: str, blurry: Path, sharp: Path, videos: dict, frames: dict) -> Clip:
    if not sharp.is_dir():
        raise InputFileError(blurry, f"has no sharp partner folder (expected {sharp})")
    nb, ns = _image_names(blurry), _image_names(sharp)
    if nb != ns:
        diff = sorted(set(nb) ^ set(ns))
        raise InputFileError(sharp, f"image names differ from {blurry}'s "
                                    f"({len(diff)} unmatched, e.g. {diff[0]})")
    if not nb:
        raise InputFileError(blurry, "holds no images")
    h, w = read_image(blurry / nb[0]).shape[:2]
    return _clip(name, blurry, sharp, len(nb), (h, w), None, videos, frames)


def _clips_in(folder: Path) -> list[Clip]:
    videos, frames = _flowblur_records(folder)
    clips: dict[str, Clip] = {}
    for f in sorted(folder.glob("*_blurry.mp4")):
        name = f.name[: -len("_blurry.mp4")]
        clips[name] = _video_clip(name, f, folder / f"{name}_sharp.mp4", videos, frames)
    for d in sorted(folder.glob("*_blurry")):
        name = d.name[: -len("_blurry")]
        if d.is_dir() and name not in clips:
            clips[name] = _folder_clip(name, d, folder / f"{name}_sharp", videos, frames)
    if (folder / "blurry").is_dir():
        name = folder.resolve().name
        clip = _folder_clip(name, folder / "blurry", folder / "sharp", {}, {})
        clip.stills = (folder / "segblur.jsonl").is_file()
        clips.setdefault(name, clip)
    return list(clips.values())


def find_clips(paths: Iterable[str | os.PathLike], *, recursive: bool = True) -> list[Clip]:
    """Find the clips under the given files and folders.

    Parameters
    ----------
    paths : iterable of path
        ``NAME_blurry.mp4`` files, flowblur output folders, or pair folders (see the module
        docstring). Folders are searched recursively unless `recursive` is False.
    recursive : bool
        Also look in sub-folders.

    Returns
    -------
    list of Clip
        Sorted by name; names are unique.

    Raises
    ------
    InputFileError
        A path does not exist, a blurry file lacks its sharp partner, the partners disagree in
        size or names, or two clips share a name. A folder with no clip at all is an error too.
    """
    found: list[Clip] = []
    for p in map(Path, paths):
        if p.is_file():
            if not p.name.endswith("_blurry.mp4"):
                raise InputFileError(p, "expected a NAME_blurry.mp4 file or a folder of clips")
            videos, frames = _flowblur_records(p.parent)
            name = p.name[: -len("_blurry.mp4")]
            found.append(_video_clip(name, p, p.with_name(f"{name}_sharp.mp4"), videos, frames))
        elif p.is_dir():
            folders = [p] + (sorted(d for d in p.rglob("*") if d.is_dir() and not _skip(d, p))
                             if recursive else [])
            here = [c for d in folders for c in _clips_in(d)]
            if not here:
                raise InputFileError(p, "holds no clips (NAME_blurry.mp4 + NAME_sharp.mp4, "
                                        "NAME_blurry/ + NAME_sharp/, or blurry/ + sharp/)")
            found.extend(here)
        else:
            raise InputFileError(p, "no such file or folder")
    by_name: dict[str, Clip] = {}
    for c in found:
        other = by_name.get(c.name)
        if other is not None and other.blurry.resolve() != c.blurry.resolve():
            raise InputFileError(c.blurry, f"clip name {c.name!r} is also used by {other.blurry}")
        by_name[c.name] = c
    return [by_name[k] for k in sorted(by_name)]


def _skip(d: Path, root: Path) -> bool:
    """Folders that belong to a clip (its frames, sub-frames, flow) or are hidden."""
    rel = d.relative_to(root).parts
    return any(part.startswith(".") or part in ("blurry", "sharp")
               or part.endswith(("_blurry", "_sharp", "_subframes", "_flow")) for part in rel)


def collect_clips(paths: Iterable[str | os.PathLike]) -> tuple[list[Clip], list[tuple[str, Exception]]]:
    """:func:`find_clips` for each path on its own, for batch drivers that go on past a bad one.

    Parameters
    ----------
    paths : iterable of path
        As :func:`find_clips`.

    Returns
    -------
    clips : list of Clip
        In the order of `paths`, each path's clips sorted by name.
    errors : list of (str, InputFileError)
        The path that failed and why, including a clip whose name another path already used
        (names seed the random draws and key the manifests, so they must be unique).
    """
    clips: list[Clip] = []
    errors: list[tuple[str, Exception]] = []
    seen: dict[str, Clip] = {}
    for path in paths:
        try:
            found = find_clips([path])
        except InputFileError as e:
            errors.append((str(path), e))
            continue
        for c in found:
            other = seen.get(c.name)
            if other is not None and other.blurry.resolve() != c.blurry.resolve():
                errors.append((str(c.blurry), InputFileError(
                    c.blurry, f"clip name {c.name!r} is also used by {other.blurry}")))
            elif other is None:
                seen[c.name] = c
                clips.append(c)
    return clips, errors
