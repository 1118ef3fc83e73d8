"""Trainer folder layouts: write frame runs the way each training codebase reads them
(:mod:`blursynth.formats.scan` lists the pairs that codebase would form from a tree).

Every consumer finds its frames its own way (key substrings in a full path, sorted positions,
a text list, fixed names), and most of them fail silently when a tree is slightly off. Each
layout below is written so its consumer's own rule pairs every blurry frame with the sharp
frame of the same instant; :func:`blursynth.formats.scan.scan_layout` re-implements that rule
so tests (and ``blursynth check``) can verify it.

======  =================================  ==========================================================
layout  consumer                           tree under ``OUT``
======  =================================  ==========================================================
gopro   DeepDeblur-PyTorch (GOPRO_Large)   ``{split}/{video}/{blur_gamma,blur,sharp}/{i:06d}.png``
reds    DeepDeblur-PyTorch (REDS)          ``{split}/{split}_{blur,sharp}/{video}/{i:08d}.png``
srn     SRN-Deblur                         ``{video}/{sharp,blur}/{i:06d}.png`` + ``datalist.txt``
dvd     PVDNet (DVD)                       ``{split}_{name}/{video}/{input,GT}/{i:05d}.png``
cdvd    CDVD-TSP                           ``{split}/{blur,gt}/{video}/{i:05d}.png``, 5-100 frames
afb     Animation-from-Blur                ``{name}/{video}/{blur,sharp,blur_anno,trend+_avg}/...``
                                           + ``{name}_{split}_videos.yaml``
======  =================================  ==========================================================

Frames are 8-bit RGB PNGs without alpha, numbered from 0 within each video. The facts about
each consumer (digits, clip lengths, sizes, splits) live in :data:`LAYOUTS` and nowhere else.

References
----------
The rules are those of ``shared/research/consumers.md`` (sections 1-5, 8 and 10), taken from
jiangsutx/SRN-Deblur, SeungjunNah/DeepDeblur-PyTorch, csbhr/CDVD-TSP, codeslake/PVDNet and
zzh-tech/Animation-from-Blur.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..clips import Clip
from ..errors import InputFileError, OutputError, ParameterError
from ..files import atomic_path, atomic_write_bytes, atomic_write_text, link_or_copy
from ..log import progress
from ..sampling import Run

__all__ = ["Layout", "LAYOUTS", "write_layout", "quantise_trend", "sanitise_name",
           "afb_video_lists", "read_video_list"]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
Item = tuple[Path, ...]


@dataclass(frozen=True)
class Layout:
    """What one consumer needs from a folder tree.

    Attributes
    ----------
    name : str
        Registry key (``--layout NAME``).
    base : str
        The folder of a split's videos under the output root, a template of ``{split}`` and
        ``{name}`` (the dataset name).
    files : tuple of (role, template)
        Each file of frame ``{n}`` (the zero-padded number) of ``{video}``, relative to
        `base`: roles ``blurry`` and ``sharp`` (or ``sharp_{j}``, one per sub-frame ``j``),
        ``blurry_link`` (a hard link of ``blurry``), ``bbox``, ``trend``.
    consumer : str
        The training codebase that reads it.
    description : str
        One line for ``--help``.
    digits : int
        Zero-padded digits of the frame numbers.
    splits : tuple of str
        Split names the consumer knows; ``splits[0]`` is the training split.
    min_frames, max_frames : int, int or None
        Frames per video the consumer handles (shorter runs are dropped, longer ones split).
    min_size : int
        Smallest height and width the consumer's training crop accepts, in pixels.
    multiple, multiple_splits, multiple_fatal : int, tuple of str, bool
        On `multiple_splits` the consumer feeds whole frames and needs H and W divisible by
        `multiple`; `multiple_fatal` says it then fails (rather than crops or pads).
    subframes : int
        Sharp sub-frames stored per blurry frame (0: one sharp frame).
    needs_flow : bool
        Needs the clip's flow (trend guidance).
    edge_margin : int
        Frames the consumer ignores at each end of a video.
    path_keys : tuple of str
        Substrings the consumer looks for anywhere in a frame's full path: the output root
        must not contain them.
    strict_rgb : bool
        The consumer reads PNGs as stored: anything but 8-bit RGB breaks it (others convert).
    default_name : str or None
        Default of the dataset name used in the tree (None: the layout takes no name).
    folder_name : str or None
        The name the consumer needs for the output root itself (DeepDeblur picks its reader
        by it), if any.
    """

    name: str
    base: str
    files: tuple[tuple[str, str], ...]
    consumer: str
    description: str
    digits: int
    splits: tuple[str, ...]
    min_frames: int = 1
    max_frames: int | None = None
    min_size: int = 1
    multiple: int = 1
    multiple_splits: tuple[str, ...] = ()
    multiple_fatal: bool = False
    subframes: int = 0
    needs_flow: bool = False
    edge_margin: int = 0
    path_keys: tuple[str, ...] = ()
    strict_rgb: bool = False
    default_name: str | None = None
    folder_name: str | None = None

    @property
    def train_split(self) -> str:
        return self.splits[0]


LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (
    Layout("gopro", "{split}", (("blurry", "{video}/blur_gamma/{n}.png"),
                                ("blurry_link", "{video}/blur/{n}.png"),
                                ("sharp", "{video}/sharp/{n}.png")),
           "DeepDeblur-PyTorch",
           "DeepDeblur GOPRO_Large: {split}/{video}/{blur_gamma,blur,sharp}/NNNNNN.png",
           digits=6, splits=("train", "test"), min_size=256, multiple=4,
           multiple_splits=("test",), multiple_fatal=True, path_keys=("blur_gamma/", "sharp/"),
           folder_name="GOPRO_Large"),
    Layout("reds", "{split}", (("blurry", "{split}_blur/{video}/{n}.png"),
                               ("sharp", "{split}_sharp/{video}/{n}.png")),
           "DeepDeblur-PyTorch",
           "DeepDeblur REDS: {split}/{split}_{blur,sharp}/{video}/NNNNNNNN.png",
           digits=8, splits=("train", "val", "test"), min_size=256, multiple=4,
           multiple_splits=("val", "test"), multiple_fatal=True,
           path_keys=("blur/", "sharp/", "blur_comp/", "blur_bicubic/", "sharp_bicubic/"),
           folder_name="REDS"),
    Layout("srn", ".", (("blurry", "{video}/blur/{n}.png"), ("sharp", "{video}/sharp/{n}.png")),
           "SRN-Deblur",
           "SRN-Deblur: {video}/{sharp,blur}/NNNNNN.png + datalist.txt (GT first)",
           digits=6, splits=("train",), min_size=256, multiple=16, multiple_splits=("train",)),
    Layout("dvd", "{split}_{name}", (("blurry", "{video}/input/{n}.png"),
                                     ("sharp", "{video}/GT/{n}.png")),
           "PVDNet",
           "PVDNet: {split}_NAME/{video}/{input,GT}/NNNNN.png; 13+ frames, over 256x256",
           digits=5, splits=("train", "test"), min_frames=13, min_size=257,
           default_name="blursynth"),
    Layout("cdvd", "{split}", (("blurry", "blur/{video}/{n}.png"), ("sharp", "gt/{video}/{n}.png")),
           "CDVD-TSP",
           "CDVD-TSP: {split}/{blur,gt}/{video}/NNNNN.png; 5 to 100 frames per video",
           digits=5, splits=("train", "test"), min_frames=5, max_frames=100, min_size=256,
           multiple=4, multiple_splits=("test",), strict_rgb=True),
    Layout("afb", "{name}", (("blurry", "{video}/blur/{n}.png"),
                             ("sharp_{j}", "{video}/sharp/{n}_{j:03d}.png"),
                             ("bbox", "{video}/blur_anno/{n}.pkl"),
                             ("trend", "{video}/trend+_avg/{n}_trend.npy")),
           "Animation-from-Blur",
           "Animation-from-Blur: NAME/{video}/{blur,sharp x7,blur_anno,trend+_avg} + YAML lists",
           digits=8, splits=("train", "valid"), subframes=7, needs_flow=True, edge_margin=40,
           default_name="b-aist++"),
)}

#: Animation-from-Blur reads a root with its BAistPP class (bbox pkl, trend+_avg, 40-frame
#: margins) only when this string is in the root path; otherwise with GenBlur.
AFB_BAISTPP_TAG = "b-aist++"
#: Image extensions the consumers read as frames.
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


# -- names and paths ---------------------------------------------------------------------------


def sanitise_name(name: str) -> str:
    """A video folder name every consumer pairs correctly: ``[A-Za-z0-9_-]`` only.

    Dots break PVDNet's and CDVD-TSP's name handling, spaces SRN's datalist, and a leading
    ``@`` makes PVDNet drop the folder; every other character becomes ``_``.

    Examples
    --------
    >>> sanitise_name("GOPR0372 07.00")
    'GOPR0372_07_00'
    """
    out = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return out or "video"


def _layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ParameterError(f"layout: expected one of {', '.join(LAYOUTS)}, got {name!r}") from None


def _split_name(lay: Layout, split: str) -> str:
    if split not in lay.splits:
        raise ParameterError(f"split: layout {lay.name} has splits {', '.join(lay.splits)}, "
                             f"got {split!r}")
    return split


def _dataset_name(lay: Layout, name: str | None) -> str | None:
    if lay.default_name is None:
        if name is not None:
            raise ParameterError(f"name: layout {lay.name} takes no dataset name (OUT itself is "
                                 f"the dataset), got {name!r}")
        return None
    name = lay.default_name if name is None else name
    if not re.fullmatch(r"[A-Za-z0-9_+-]+", name):
        raise ParameterError(f"name: expected letters, digits, '_', '+' or '-' (no dots or "
                             f"spaces: the consumers split paths on them), got {name!r}")
    return name


def _base(lay: Layout, root: Path, split: str, name: str | None) -> Path:
    """The folder holding the split's videos."""
    return root / lay.base.format(split=split, name=name)


def _frame_files(lay: Layout, base: Path, split: str, video: str, k: int) -> dict[str, Path]:
    """Every file of frame `k` of `video`, by role (see :class:`Layout`)."""
    n = f"{k:0{lay.digits}d}"
    files = {}
    for role, template in lay.files:
        for j in range(lay.subframes) if "{j" in role else (None,):
            files[role.format(j=j)] = base / template.format(split=split, video=video, n=n, j=j)
    return files


def afb_video_lists(root: PathLike, name: str = "b-aist++") -> dict[str, Path]:
    """The YAML video list of each Animation-from-Blur split: ``{split: OUT/NAME_{split}_videos.yaml}``.

    Point the consumer's config at them: ``dataset_args.root_dir: [OUT/NAME]`` and
    ``dataset_args.video_list: {NAME: {train: ..., valid: ...}}``.
    """
    return {s: Path(root) / f"{name}_{s}_videos.yaml" for s in LAYOUTS["afb"].splits}


def read_video_list(path: PathLike) -> list[str]:
    """The entries of a YAML block list (``- name`` lines, optionally quoted), in order.

    Raises
    ------
    InputFileError
        The file is missing or holds anything but a block list of names.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(p, f"cannot read the video list: {exc.strerror or exc}") from None
    names = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.fullmatch(r"-\s+(?:'((?:[^']|'')*)'|\"([^\"]*)\"|([^'\"#]*?))\s*", s)
        if m is None:
            raise InputFileError(p, f"line {n}: expected a YAML list entry '- name', got {s!r}")
        quoted = m.group(1)
        names.append(quoted.replace("''", "'") if quoted is not None else (m.group(2) or m.group(3)))
    return names


def _yaml_list(names: list[str]) -> str:
    # Quoted so that names like 001 or yes stay strings for yaml.full_load.
    return "".join(f"- '{n}'\n" for n in names)


# -- planning ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Video:
    name: str
    clip: Clip
    start: int
    stop: int


def _chunks(start: int, stop: int, max_frames: int | None) -> list[tuple[int, int]]:
    """``[start, stop)`` cut into the fewest near-equal chunks of at most `max_frames` (so no
    chunk is much shorter than the others: 230 frames by 100 give 77, 77, 76)."""
    n = stop - start
    k = 1 if max_frames is None else -(-n // max_frames)
    bounds = [start + (n * j) // k for j in range(k + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _check_run(run: Run) -> None:
    if not isinstance(run, Run):
        raise ParameterError(f"runs: expected blursynth.sampling.Run items, got {type(run).__name__}")
    if not 0 <= run.start < run.stop <= run.clip.n_frames:
        raise ParameterError(f"runs: {run.clip.name}: expected 0 <= start < stop <= "
                             f"{run.clip.n_frames}, got {run.start}..{run.stop}")


def _plan(lay: Layout, runs: Iterable[Run]) -> tuple[list[_Video], Counter]:
    """Videos to write (runs split to the layout's lengths, named uniquely) and dropped runs."""
    per_clip: dict[str, list[tuple[Clip, int, int]]] = {}
    dropped: Counter = Counter()
    for run in runs:
        _check_run(run)
        if len(run) < lay.min_frames:
            dropped[f"shorter than {lay.min_frames} frames"] += 1
            continue
        per_clip.setdefault(run.clip.name, []).extend(
            (run.clip, a, b) for a, b in _chunks(run.start, run.stop, lay.max_frames))
    videos, owner = [], {}
    for clip_name, parts in per_clip.items():
        base = sanitise_name(clip_name)
        for clip, a, b in parts:
            name = base if len(parts) == 1 else f"{base}_{a:06d}"
            if name in owner:
                raise ParameterError(f"runs: clips {owner[name]!r} and {clip_name!r} would both "
                                     f"write video {name!r} (same name after sanitising, or "
                                     f"two runs starting at frame {a})")
            if b - a > 10 ** lay.digits:
                raise ParameterError(f"runs: {clip_name}: {b - a} frames do not fit "
                                     f"{lay.digits}-digit names")
            owner[name] = clip_name
            videos.append(_Video(name, clip, a, b))
    return videos, dropped


def _check_clip_extras(lay: Layout, clip: Clip) -> None:
    """Animation-from-Blur needs sub-frames, flow and the exposure; checked before writing."""
    if lay.subframes and clip.n_subframes() != lay.subframes:
        raise InputFileError(clip.blurry, f"{lay.consumer} needs {lay.subframes} sharp "
                                          f"sub-frames per blurry frame, the clip has "
                                          f"{clip.n_subframes()}: run blursynth flowblur "
                                          f"--subframes {lay.subframes}")
    if lay.needs_flow and clip.flow_dir is None:
        raise InputFileError(clip.blurry, f"{lay.consumer} needs the motion of every frame, the "
                                          "clip has no flow files: run blursynth flowblur "
                                          "--flow-files npy")
    if lay.needs_flow and clip.exposure is None:
        raise InputFileError(clip.blurry, "exposure unknown (no flowblur.jsonl record for the "
                                          "clip): the trend needs the motion within the exposure")


# -- trend guidance ----------------------------------------------------------------------------


def quantise_trend(flow: np.ndarray, *, ratio: float = 0.5,
                   threshold: float | None = None) -> np.ndarray:
    """Animation-from-Blur's motion guidance ("trend") from a known motion field.

    Parameters
    ----------
    flow : numpy.ndarray
        ``(H, W, 2k)`` float, the motion during the exposure in pixels (x right, y down,
        forward in time), as ``k`` interleaved x, y fields that are averaged.
    ratio : float, optional
        Scale of the guidance: 0.5 gives the "1/2X" files the consumer reads (``trend+_avg``).
    threshold : float, optional
        Magnitude, in pixels at the guidance scale, below which a pixel is static. Default
        ``0.5 * ratio`` (the consumer's ``0.5 * flow_ratio``), i.e. 0.5 px at full size.

    Returns
    -------
    numpy.ndarray
        ``(int(H * ratio), int(W * ratio), 2)`` int8 in {-1, 0, +1}: (0, 0) static, otherwise
        a diagonal direction (x, y).

    Notes
    -----
    The rule of ``valid_video.py::gen_flow`` (consumers.md section 5b): resize the flow with
    ``INTER_AREA`` and scale the vectors by `ratio`; average the x and the y fields; a pixel
    whose magnitude is below `threshold` is static; otherwise take the signs, and force the
    axis-aligned cases onto diagonals: (0, +1) -> (+1, +1), (0, -1) -> (-1, -1),
    (+1, 0) -> (+1, -1), (-1, 0) -> (-1, +1). So every moving pixel is one of the four
    labels the consumer's guidance classes know.

    Examples
    --------
    >>> f = np.zeros((4, 4, 2), np.float32); f[..., 0] = 3.0   # 3 px to the right
    >>> quantise_trend(f)[0, 0].tolist()
    [1, -1]
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] % 2 or flow.shape[2] == 0:
        raise ParameterError(f"flow: expected shape (H, W, 2k), got {flow.shape}")
    if not 0 < ratio <= 1:
        raise ParameterError(f"ratio: expected 0 < ratio <= 1, got {ratio}")
    threshold = 0.5 * ratio if threshold is None else threshold
    h, w = flow.shape[:2]
    size = (int(ratio * w), int(ratio * h))
    if min(size) < 1:
        raise ParameterError(f"flow: {w}x{h} is too small for ratio {ratio}")
    small = ratio * cv2.resize(flow, size, interpolation=cv2.INTER_AREA).reshape(
        size[1], size[0], flow.shape[2])
    x = small[..., 0::2].mean(axis=-1)
    y = small[..., 1::2].mean(axis=-1)
    moving = np.sqrt(x * x + y * y) >= threshold
    tx = np.where(moving, np.sign(x), 0)
    ty = np.where(moving, np.sign(y), 0)
    # Axis-aligned motion goes onto a diagonal, in the consumer's order (x fixed first).
    tx = np.where((tx == 0) & (ty != 0), ty, tx)
    ty = np.where((ty == 0) & (tx != 0), -tx, ty)
    return np.stack([tx, ty], axis=-1).astype(np.int8)


def _exposure_motion_scale(clip: Clip) -> float:
    """Source-frame intervals in one exposure: flow (px per source frame) times this is the
    motion during the exposure (flowblur's exposure is in output frames of `decimate` inputs)."""
    decimate = clip.record.get("params", {}).get("decimate", 1) or 1
    return float(clip.exposure) * float(decimate)


# -- writing -----------------------------------------------------------------------------------


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(path, "OpenCV could not encode the frame as PNG")
    atomic_write_bytes(path, buf.tobytes())




def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, arr)


def _write_frame(files: dict[str, Path], clip: Clip, i: int, blurry: np.ndarray,
                 sharp: np.ndarray, motion_scale: float) -> None:
    """Write the files of one frame that are missing (the others are complete: atomic)."""
    todo = {role for role, p in files.items() if not p.exists()}
    if "blurry" in todo:
        _write_png(files["blurry"], blurry)
    if "blurry_link" in todo:
        link_or_copy(files["blurry"], files["blurry_link"])
    if "sharp" in todo:
        _write_png(files["sharp"], sharp)
    if any(r.startswith("sharp_") for r in todo):
        subs = clip.subframes(i)
        if len(subs) != sum(r.startswith("sharp_") for r in files):
            raise InputFileError(clip.subframes_dir, f"frame {i} has {len(subs)} sub-frames, "
                                                     f"frame 0 has {clip.n_subframes()}")
        for j, sub in enumerate(subs):
            if f"sharp_{j}" in todo:
                _write_png(files[f"sharp_{j}"], sub)
    if "bbox" in todo:  # the whole frame, pascal_voc [x_min, y_min, x_max, y_max]
        h, w = blurry.shape[:2]
        atomic_write_bytes(files["bbox"], pickle.dumps({"bbox": [0, 0, w, h]}, protocol=4))
    if "trend" in todo:
        _save_npy(files["trend"], quantise_trend(motion_scale * clip.flow(i)))


def _merge_entries(path: Path, new: list[str], read: Callable[[Path], list[str]],
                   render: Callable[[list[str]], str]) -> None:
    """Write `path` as its existing entries followed by the new ones it lacks (no duplicates)."""
    old = read(path) if path.is_file() else []
    merged = list(dict.fromkeys(old + new))
    if merged != old or not path.is_file():
        atomic_write_text(path, render(merged))


def _write_sidecars(lay: Layout, root: Path, split: str, name: str | None,
                    videos: list[_Video]) -> None:
    if lay.name == "srn":
        lines = []
        for v in videos:
            for k in range(v.stop - v.start):
                f = _frame_files(lay, root, split, v.name, k)
                lines.append(f"{f['sharp'].relative_to(root).as_posix()} "
                             f"{f['blurry'].relative_to(root).as_posix()}")
        _merge_entries(root / "datalist.txt", lines,
                       lambda p: p.read_text(encoding="utf-8").splitlines(),
                       lambda xs: "".join(x + "\n" for x in xs))
    elif lay.name == "afb":
        _merge_entries(afb_video_lists(root, name)[split], [v.name for v in videos],
                       read_video_list, _yaml_list)


def _check_out(lay: Layout, out: Path, split: str) -> None:
    """Refuse an output root whose path would make a key-substring consumer match everything."""
    subset = os.path.join(os.path.abspath(out), split, "")
    hits = [k for k in lay.path_keys if k in subset]
    if hits:
        raise ParameterError(f"out: {out} contains {hits[0]!r}: {lay.consumer} finds blurry and "
                             f"sharp frames by that substring anywhere in the path, so every "
                             f"frame below would match; choose a folder without it")


def _warnings(lay: Layout, out_dir: Path, split: str, name: str | None,
              videos: list[_Video]) -> list[str]:
    out = []
    if lay.folder_name and out_dir.resolve().name != lay.folder_name:
        out.append(f"{lay.consumer} picks its reader by the dataset folder's name: name "
                   f"{out_dir} {lay.folder_name}")
    for v in videos:
        h, w = v.clip.height, v.clip.width
        if split == lay.train_split and min(h, w) < lay.min_size:
            out.append(f"{v.name}: {w}x{h} frames are too small for {lay.consumer}'s training "
                       f"crop, which needs {lay.min_size} pixels or more on both sides")
        if split in lay.multiple_splits and (h % lay.multiple or w % lay.multiple):
            out.append(f"{v.name}: {w}x{h} is not a multiple of {lay.multiple}")
        if (lay.edge_margin and AFB_BAISTPP_TAG in (name or "")
                and v.stop - v.start <= 2 * lay.edge_margin):
            out.append(f"{v.name}: {v.stop - v.start} frames give no sample: {lay.consumer} "
                       f"skips {lay.edge_margin} frames at each end of a video")
    return out


def write_layout(layout: str, runs: Iterable[Run], out: PathLike, *, split: str = "train",
                 name: str | None = None, show_progress: bool | None = None) -> dict:
    """Write frame runs as a trainer's folder tree.

    Each :class:`~blursynth.sampling.Run` becomes one video folder, named after its clip
    (:func:`sanitise_name`; ``{clip}_{start:06d}`` when a clip gives several videos) with its
    frames renumbered from 0. Runs shorter than the layout's ``min_frames`` are dropped and
    counted; longer than ``max_frames`` are cut into near-equal chunks.

    Parameters
    ----------
    layout : str
        A key of :data:`LAYOUTS` (see the module docstring for each tree).
    runs : iterable of Run
        Consecutive accepted frames of clips; frames are uint8 RGB.
    out : str or os.PathLike
        Output root (created). For gopro name it ``GOPRO_Large`` and for reds ``REDS``:
        DeepDeblur picks its reader by that name. For srn it is SRN's ``./training_set``.
    split : str, optional
        One of the layout's splits (``Layout.splits``; srn has only ``train``).
    name : str, optional
        Dataset name inside the tree: dvd ``{split}_{name}`` (default ``blursynth``), afb
        root folder ``{name}`` (default ``b-aist++``, which makes Animation-from-Blur use its
        BAistPP reader, the one that reads the bbox and ``trend+_avg`` files written here).
        Other layouts take none.
    show_progress : bool, optional
        Progress bar; default as :func:`blursynth.log.progress`.

    Returns
    -------
    report : dict
        ``root`` (str), ``layout``, ``split``, ``videos`` (names written), ``frames`` (frames
        in them), ``frames_written`` (new this call), ``frames_resumed`` (already complete),
        ``runs_dropped`` (int), ``dropped`` (reason -> count) and ``warnings`` (list of str:
        frames the consumer will refuse or crop).

    Raises
    ------
    ParameterError
        Unknown layout, split or name; two videos would share a name; `out` contains a key
        substring of the consumer (gopro, reds).
    InputFileError
        A frame cannot be read; for afb, a clip lacks 7 sub-frames, flow files or a known
        exposure (checked before anything is written).
    OutputError
        Writing failed; no partial file is left under a final name.

    Notes
    -----
    - gopro: blursynth's blurry frame is averaged in linear light through the clip's CRF,
      which is what GOPRO's ``blur_gamma/`` means, and DeepDeblur reads only ``blur_gamma/``
      (it fails if ``blur/`` is alone: consumers.md 10.2). ``blur/`` is a hard link to the
      same file (a copy where links fail) for codebases that read ``blur/``; both hold the
      same linear-light average.
    - srn: ``datalist.txt`` lines are ``{video}/sharp/N.png {video}/blur/N.png`` (GT first),
      relative to `out`; pass ``--datalist OUT/datalist.txt`` and make ``./training_set``
      point at `out`.
    - afb: ``sharp/{i}_{j:03d}.png`` are the clip's 7 sub-frames in time order,
      ``blur_anno/{i}.pkl`` is ``{"bbox": [0, 0, W, H]}`` (the full frame) and
      ``trend+_avg/{i}_trend.npy`` is :func:`quantise_trend` of the motion during the
      exposure (flow x exposure x decimate). The split's videos are added to
      ``OUT/{name}_{split}_videos.yaml`` (:func:`afb_video_lists`).
    - Every file is written under a temporary name and renamed, so a frame file that exists
      is complete: a re-run skips frames whose files all exist and rewrites only the rest,
      and list files gain only entries they lack.
    """
    lay = _layout(layout)
    split = _split_name(lay, split)
    name = _dataset_name(lay, name)
    out = Path(out)
    _check_out(lay, out, split)
    videos, dropped = _plan(lay, runs)
    for clip in {id(v.clip): v.clip for v in videos}.values():
        _check_clip_extras(lay, clip)
    base = _base(lay, out, split, name)
    total = sum(v.stop - v.start for v in videos)
    written = resumed = 0
    bar = progress(total=total, desc=f"{layout} {split}", unit="frame",
                   disable=None if show_progress is None else not show_progress)
    try:
        for v in videos:
            files = {i: _frame_files(lay, base, split, v.name, i - v.start)
                     for i in range(v.start, v.stop)}
            todo = [i for i, f in files.items() if not all(p.exists() for p in f.values())]
            resumed += (v.stop - v.start) - len(todo)
            bar.update((v.stop - v.start) - len(todo))
            scale = _exposure_motion_scale(v.clip) if lay.needs_flow else 0.0
            for i, blurry, sharp in v.clip.frames(todo):
                _write_frame(files[i], v.clip, i, blurry, sharp, scale)
                written += 1
                bar.update(1)
    finally:
        bar.close()
    _write_sidecars(lay, out, split, name, videos)
    warnings = _warnings(lay, out, split, name, videos)
    for w in warnings:
        log.warning("%s: %s", layout, w)
    return {"root": str(out), "layout": layout, "split": split,
            "videos": [v.name for v in videos], "frames": total, "frames_written": written,
            "frames_resumed": resumed, "runs_dropped": sum(dropped.values()),
            "dropped": dict(dropped), "warnings": warnings}
