"""``blursynth check``: find what a trainer would silently get wrong in a dataset tree.

Each consumer lists and pairs frames by its own rule (:mod:`blursynth.formats.layouts`); a
tree that is slightly off rarely makes it fail loudly. It pairs the wrong frames, skips
videos, reads a stray file as a frame, or (Animation-from-Blur) loops forever. This module
applies the consumer's own listing rule to a tree and reports each such case with what the
consumer would do.
"""
from __future__ import annotations

import os
import pickle
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from glob import escape, glob
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..errors import InputFileError
from .layouts import AFB_BAISTPP_TAG, IMAGE_EXTS, Layout, _layout, afb_video_lists, read_video_list
from .scan import cdvd_list, deepdeblur_list, pvdnet_list, srn_list

__all__ = ["Problem", "check_layout"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}


@dataclass(frozen=True)
class Problem:
    """One thing the consumer would get wrong.

    Attributes
    ----------
    severity : {"error", "warning"}
        ``error``: the consumer fails, pairs wrong frames or loses data; ``warning``: it
        works but wastes or crops data, or a detail may bite.
    path : str
        The file or folder concerned (the first one, when a rule hits several in a folder).
    message : str
        What is wrong and what the consumer does about it.
    rule : str
        Short identifier of the rule (``"pair-mismatch"``, ``"too-small"``, ...).
    """

    severity: str
    path: str
    message: str
    rule: str = ""

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


class ImageInfo(NamedTuple):
    height: int
    width: int
    kind: str   # "RGB", "RGBA", "grey", ...
    bits: int   # per channel


def image_info(path: str | os.PathLike) -> ImageInfo | None:
    """Size and pixel format of an image from its header (PNG) or by decoding it (others);
    None if unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError:
        return None
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return ImageInfo(h, w, _PNG_COLOUR.get(head[25], "unknown"), head[24])
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    channels = 1 if img.ndim == 2 else img.shape[2]
    kind = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}.get(channels, "unknown")
    return ImageInfo(img.shape[0], img.shape[1], kind, img.dtype.itemsize * 8)


class _Checker:
    """Collects problems for one layout and tree."""

    def __init__(self, lay: Layout, root: Path, given: str):
        self.lay, self.root = lay, root
        self.strays: set[str] = set()  # reported once by stray(), skipped by frames()
        self.given = given  # the path as the user wrote it: PVDNet looks at its first character
        self.problems: list[Problem] = []

    def add(self, severity: str, path, rule: str, message: str) -> None:
        self.problems.append(Problem(severity, str(path), message, rule))

    def collapsed(self) -> list[Problem]:
        """One problem per rule and folder: the first, with the count of files it hit."""
        groups: dict[tuple, list[Problem]] = {}
        for p in self.problems:
            groups.setdefault((p.severity, p.rule, str(Path(p.path).parent)), []).append(p)
        out = []
        for ps in groups.values():
            first = ps[0]
            more = f" (and {len(ps) - 1} more in {Path(first.path).parent})" if len(ps) > 1 else ""
            out.append(Problem(first.severity, first.path, first.message + more, first.rule))
        return out

    # -- rules shared by every layout ----------------------------------------------------------

    def stray(self, files: list[str], what: str) -> list[str]:
        """Report listed files that are not images (the consumer reads them as frames); return
        the images."""
        good = []
        for f in files:
            name = os.path.basename(f)
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTS \
                    or not os.path.isfile(f):
                self.add("error", f, "stray-file", f"not a frame, but {self.lay.consumer} "
                                                   f"{what} and reads it as one: remove it")
                self.strays.add(f)
            else:
                good.append(f)
        return good

    def frames(self, split: str, items: list[tuple[str, ...]]) -> None:
        """Per-pair rules: readable 8-bit RGB, blurry and sharp sizes equal, the training
        crop fits, whole-frame sizes are multiples, names follow the digit scheme."""
        lay = self.lay
        exts = "|".join(e.lstrip(".") for e in IMAGE_EXTS)
        sub = r"(_\d{3})?" if lay.subframes else ""  # Animation-from-Blur sub-frames
        name_re = re.compile(rf"\d{{{lay.digits}}}{sub}\.({exts})")
        for item in items:
            if self.strays.intersection(item):
                continue
            infos = [image_info(p) for p in item]
            for p, info in zip(item, infos):
                if info is None:
                    self.add("error", p, "unreadable", f"not a readable image: "
                                                       f"{lay.consumer} would crash on it")
                elif info.kind != "RGB" or info.bits != 8:
                    self.add("error" if lay.strict_rgb else "warning", p, "not-rgb8",
                             f"{info.bits}-bit {info.kind}, not 8-bit RGB: " + (
                                 f"{lay.consumer} reads PNGs as stored, so the channel slicing "
                                 "or the /255 scaling goes wrong" if lay.strict_rgb else
                                 f"{lay.consumer}'s reader converts it (alpha dropped, 16 bits "
                                 "cut), unlike what the model saw elsewhere"))
                if not name_re.fullmatch(os.path.basename(p)):
                    self.add("warning", p, "name-digits",
                             f"not a {lay.digits}-digit frame number: {lay.consumer} orders "
                             "frames by name, which may then not be time order")
            if any(i is None for i in infos):
                continue
            b = infos[0]
            for p, info in zip(item[1:], infos[1:]):
                if (info.height, info.width) != (b.height, b.width):
                    self.add("error", p, "size-mismatch",
                             f"{info.width}x{info.height}, its blurry frame {item[0]} is "
                             f"{b.width}x{b.height}: {lay.consumer} crops both at one offset")
            if split == lay.train_split and min(b.height, b.width) < lay.min_size:
                need = (f"larger than {lay.min_size - 1}" if lay.name == "dvd"
                        else f"at least {lay.min_size}")
                self.add("error", item[0], "too-small",
                         f"{b.width}x{b.height}: {lay.consumer}'s training crop needs frames "
                         f"{need} pixels on both sides and fails on smaller ones")
            if split in lay.multiple_splits and (b.height % lay.multiple or b.width % lay.multiple):
                self.add("error" if lay.multiple_fatal else "warning", item[0], "not-multiple",
                         f"{b.width}x{b.height} is not a multiple of {lay.multiple}: "
                         + _MULTIPLE_EFFECT[lay.name])

    def lengths(self, split: str, video_dir: str, n: int) -> None:
        lay = self.lay
        if lay.name == "cdvd" and n < lay.min_frames:
            self.add("error", video_dir, "too-few-frames",
                     f"{n} frames: {lay.consumer} counts {lay.min_frames - 1} frames less per "
                     f"video, so a video shorter than {lay.min_frames} silently shifts the "
                     "samples of the videos after it")
        elif lay.name == "dvd" and split == lay.train_split and n < lay.min_frames:
            self.add("warning", video_dir, "too-few-frames",
                     f"{n} frames: {lay.consumer} starts a training sample every "
                     f"{lay.min_frames} frames, so this video is never used")
        if lay.max_frames and split == lay.train_split and n > lay.max_frames:
            self.add("warning", video_dir, "too-many-frames",
                     f"{n} frames: {lay.consumer} trains on the first {lay.max_frames} frames "
                     f"of a video only; split it into clips of {lay.max_frames} or fewer")

    def pairs_by_position(self, blurs: list[str], sharps: list[str],
                          video_of: Callable[[str], str], how: str) -> list[tuple[str, str]]:
        """Pair two sorted lists by position, reporting pairs whose video or name differ."""
        pairs = list(zip(blurs, sharps))
        for b, s in pairs:
            if video_of(b) != video_of(s) or os.path.basename(b) != os.path.basename(s):
                self.add("error", b, "pair-mismatch",
                         f"{self.lay.consumer} {how}, so this blurry frame is paired with "
                         f"{os.path.relpath(s, self.root)}: the pairs are shifted")
        return pairs


_MULTIPLE_EFFECT = {
    "gopro": "DeepDeblur feeds test frames whole and unpadded, and its PixelShuffle sizes "
             "then mismatch",
    "reds": "DeepDeblur feeds validation and test frames whole and unpadded, and its "
            "PixelShuffle sizes then mismatch",
    "srn": "SRN-Deblur's test graph is built for a size that is a multiple of 16; pass "
           "--height/--width rounded up (frames are edge-padded to it)",
    "cdvd": "CDVD-TSP silently crops test frames to a multiple of 4, so the right and bottom "
            "edges are never evaluated",
}


# -- per layout --------------------------------------------------------------------------------


def _leaf_dirs(top: str) -> list[str]:
    return sorted(sub for sub, dirs, _ in os.walk(top) if not dirs)


def _check_deepdeblur(c: _Checker) -> None:
    lay, root = c.lay, c.root
    want = lay.folder_name
    if root.resolve().name != want:
        c.add("warning", root, "dataset-name",
              f"DeepDeblur-PyTorch picks its reader by the dataset folder's name: name this "
              f"folder {want} (or add data/{root.resolve().name.lower()}.py)")
    above = os.path.join(os.path.abspath(root), "")
    for key in (k for k in lay.path_keys if k in above):
        c.add("error", root, "path-key",
              f"the path to the dataset contains {key!r}: DeepDeblur-PyTorch matches that "
              "substring anywhere in a path, so it lists every frame below as "
              f"{key.rstrip('/')} and its pairing breaks; move the dataset")
    splits = [s for s in lay.splits if (root / s).is_dir()]
    if not splits:
        c.add("error", root, "missing", f"no split folder ({', '.join(lay.splits)})")
    for split in splits:
        subset = os.path.join(str(root), split)
        if lay.name == "gopro":
            key = "blur_gamma/"
            for vid in sorted(p for p in Path(subset).iterdir() if p.is_dir()):
                if (vid / "blur").is_dir() and not (vid / "blur_gamma").is_dir():
                    c.add("error", vid, "blur-only",
                          "blur/ without blur_gamma/: DeepDeblur-PyTorch's GOPRO_Large reader "
                          "reads only blur_gamma/, so its blurry and sharp lists differ in "
                          "length and it stops")
            blur = deepdeblur_list(subset, "blur_gamma/")
            sharp = deepdeblur_list(subset, "sharp/")
        else:
            key = "blur/"
            blur = deepdeblur_list(subset, "blur/", ("blur_comp/", "blur_bicubic/"))
            sharp = deepdeblur_list(subset, "sharp/", ("sharp_bicubic/",))
        used = {os.path.dirname(f) for f in blur + sharp}
        for leaf in _leaf_dirs(subset):
            if leaf not in used and not leaf.endswith(os.sep + "blur") and os.listdir(leaf):
                c.add("warning", leaf, "ignored-folder",
                      f"no {key!r} or 'sharp/' in its path: DeepDeblur-PyTorch ignores "
                      "the frames in it")
        what = "lists every file of a matching leaf folder"
        c.stray(blur + sharp, what)
        if sharp and len(blur) != len(sharp):
            c.add("error", subset, "count-mismatch",
                  f"{len(blur)} blurry frames but {len(sharp)} sharp ones: DeepDeblur-PyTorch "
                  "stops on its length assertion")
            continue
        level = 2 if lay.name == "gopro" else 1
        video_of = lambda p: Path(p).parts[-1 - level]  # noqa: E731
        pairs = c.pairs_by_position(blur, sharp, video_of,
                                    "pairs the sorted blurry and sharp lists by position")
        c.frames(split, pairs)


def _check_srn(c: _Checker) -> None:
    lay, root = c.lay, c.root
    if not (root / "datalist.txt").is_file():
        c.add("error", root / "datalist.txt", "missing",
              "no datalist: SRN-Deblur trains only on the pairs listed in it")
        return
    items, listed = [], set()
    for n, cols in enumerate(srn_list(root), 1):
        where = f"{root / 'datalist.txt'}:{n}"
        if len(cols) != 2 or not all(cols):
            c.add("error", where, "datalist-format",
                  f"{len(cols)} fields: SRN-Deblur splits each line on single spaces and "
                  "needs exactly 'SHARP BLUR' (no spaces in paths, no empty lines)")
            continue
        sharp, blur = cols
        if any(os.path.isabs(x) for x in cols):
            c.add("error", where, "datalist-format",
                  "absolute path: SRN-Deblur prepends ./training_set/ to every path")
            continue
        if Path(sharp).parent.name.startswith("blur") and Path(blur).parent.name == "sharp":
            c.add("error", where, "datalist-order",
                  "the blurry frame comes first: SRN-Deblur takes the first path as the "
                  "ground truth, so it would learn to blur")
            continue
        missing = [x for x in cols if not (root / x).is_file()]
        for x in missing:
            c.add("error", root / x, "missing-file",
                  f"listed in datalist.txt line {n} but missing: SRN-Deblur's input queue "
                  "fails on it")
        if not missing:
            items.append((str(root / blur), str(root / sharp)))
            listed.update(os.path.normpath(root / x) for x in cols)
    for f in sorted(glob(os.path.join(escape(str(root)), "*", "*", "*.png"))):
        if os.path.normpath(f) not in listed:
            c.add("warning", f, "unlisted", "not in datalist.txt: SRN-Deblur never uses it")
    c.frames(lay.train_split, items)


def _check_pvdnet(c: _Checker) -> None:
    lay, root = c.lay, c.root
    if c.given.startswith("."):
        c.add("warning", root, "leading-dot-root",
              "the path starts with '.': PVDNet skips os.walk roots whose path starts with a "
              "dot, so a data_offset written like this finds nothing; use an absolute path")
    bases = sorted(d for d in root.iterdir() if d.is_dir() and d.name.split("_")[0] in lay.splits
                   and "_" in d.name)
    if not bases:
        c.add("error", root, "missing", "no train_NAME or test_NAME folder")
    for base in bases:
        split = base.name.split("_")[0]
        for sub, dirs, _ in os.walk(base):
            for d in dirs:
                if "." in d:
                    c.add("error", Path(sub) / d, "dot-in-name",
                          "a dot in a folder name: PVDNet compares names up to the first dot "
                          "of the whole path, so its blur/sharp name check is silently off "
                          "and mismatched pairs load")
                if d.startswith("@"):
                    c.add("warning", Path(sub) / d, "at-folder",
                          "starts with '@': PVDNet drops such a folder from its walk")
        for leaf in _leaf_dirs(str(base)):
            if Path(leaf).name not in ("input", "GT") and os.listdir(leaf):
                c.add("warning", leaf, "ignored-folder",
                      "PVDNet reads only leaf folders named exactly 'input' and 'GT': the "
                      "frames here are ignored")
        inp, gt = pvdnet_list(str(base), "input"), pvdnet_list(str(base), "GT")
        if len(inp) != len(gt):
            c.add("error", base, "count-mismatch",
                  f"{len(inp)} input/ folders but {len(gt)} GT/ folders: PVDNet pairs videos "
                  "by position, so they are mismatched")
            continue
        for fi, fg in zip(inp, gt):
            what = "lists every file of input/ and GT/"
            fi, fg = c.stray(fi, what), c.stray(fg, what)
            if not fi:
                continue
            video = Path(fi[0]).parent.parent
            if len(fi) != len(fg):
                c.add("error", video, "count-mismatch",
                      f"{len(fi)} input frames but {len(fg)} GT frames: PVDNet pairs them by "
                      "position and indexes past the end")
                continue
            pairs = c.pairs_by_position(fi, fg, lambda p: Path(p).parent.parent.name,
                                        "pairs sorted videos and frames by position")
            c.lengths(split, str(video), len(fi))
            c.frames(split, pairs)


def _check_cdvd(c: _Checker) -> None:
    lay, root = c.lay, c.root
    splits = [s for s in lay.splits if (root / s).is_dir()]
    if not splits:
        c.add("error", root, "missing", f"no split folder ({', '.join(lay.splits)})")
    for split in splits:
        sub = root / split
        if not ((sub / "blur").is_dir() and (sub / "gt").is_dir()):
            c.add("error", sub, "missing", "needs both blur/ and gt/ (lower case): CDVD-TSP "
                                           "finds no videos otherwise")
            continue
        gt_v, blur_v, gt_f, blur_f = cdvd_list(str(sub), train=False)
        if len(gt_v) != len(blur_v):
            c.add("error", sub, "count-mismatch",
                  f"{len(blur_v)} blur/ videos but {len(gt_v)} gt/ videos: CDVD-TSP stops on "
                  "its assertion")
            continue
        for gv, bv, fg, fb in zip(gt_v, blur_v, gt_f, blur_f):
            if os.path.basename(gv) != os.path.basename(bv):
                c.add("error", bv, "pair-mismatch",
                      f"CDVD-TSP pairs sorted videos by position, so this blurry video is "
                      f"paired with gt/{os.path.basename(gv)}")
                continue
            what = "reads every entry of a video folder (no extension filter)"
            fg, fb = c.stray(fg, what), c.stray(fb, what)
            for f in fb:
                if "." in Path(f).stem:
                    c.add("warning", f, "dot-in-name",
                          "a dot in the frame name: CDVD-TSP names outputs by the text before "
                          "the first dot, so results overwrite each other")
            if len(fg) != len(fb):
                c.add("error", bv, "count-mismatch",
                      f"{len(fb)} blur frames but {len(fg)} gt frames: CDVD-TSP pairs them by "
                      "position and counts frames from gt/")
                continue
            pairs = c.pairs_by_position(fb, fg, lambda p: Path(p).parent.name,
                                        "pairs sorted frames by position")
            c.lengths(split, bv, len(fb))
            c.frames(split, pairs)


def _check_afb(c: _Checker) -> None:
    lay, root = c.lay, c.root
    lists = sorted(set(glob(os.path.join(escape(str(root)), "*_videos.yaml"))))
    names = sorted({m.group(1) for f in lists
                    if (m := re.fullmatch(rf"(.+)_({'|'.join(lay.splits)})_videos\.yaml",
                                          os.path.basename(f)))})
    if not names:
        c.add("error", root, "missing",
              "no NAME_train_videos.yaml / NAME_valid_videos.yaml: Animation-from-Blur takes "
              "its videos from these lists")
    for name in names:
        data = root / name
        if not data.is_dir():
            c.add("error", data, "missing", "the video lists name this root, which is missing")
            continue
        baist = AFB_BAISTPP_TAG in str(data)
        if not baist:
            c.add("warning", data, "generic-reader",
                  f"no {AFB_BAISTPP_TAG!r} in the root path: Animation-from-Blur then uses its "
                  "GenBlur reader, which ignores blur_anno/, reads trend+/ unless the config "
                  "sets trend_type: trend+_avg, and cannot use NearBBoxResizedSafeCrop")
        listed: set[str] = set()
        for split, path in afb_video_lists(root, name).items():
            if not path.is_file():
                continue
            try:
                videos = read_video_list(path)
            except InputFileError as e:
                c.add("error", path, "video-list", e.problem)
                continue
            listed.update(videos)
            loadable = sum(_check_afb_video(c, split, data / v, baist) for v in videos)
            if videos and not loadable:
                c.add("error", path, "no-samples",
                      "no sample of this split would load: Animation-from-Blur's __getitem__ "
                      "then loops forever")
        for d in sorted(p for p in data.iterdir() if p.is_dir() and p.name not in listed):
            c.add("warning", d, "unlisted", "in no video list: Animation-from-Blur never uses it")


def _check_afb_video(c: _Checker, split: str, video: Path, baist: bool) -> int:
    """Check one Animation-from-Blur video; return how many of its samples would load."""
    lay = c.lay
    if not (video / "blur").is_dir():
        c.add("warning", video, "missing",
              "listed but has no blur/ folder: Animation-from-Blur prints 'missing videos' and "
              "skips it")
        return 0
    names = sorted(f for f in os.listdir(video / "blur") if f.endswith("png"))
    n = len(names)
    expected = {f"{i:08d}.png" for i in range(n)}
    for f in names:
        if f not in expected:
            c.add("error", video / "blur" / f, "stray-file",
                  f"Animation-from-Blur counts every *png file of blur/ and then reads "
                  f"00000000.png to {n - 1:08d}.png, so this name shifts that count")
    if baist and n <= 2 * lay.edge_margin:
        c.add("warning", video, "margin",
              f"{n} frames: Animation-from-Blur's BAistPP reader skips {lay.edge_margin} "
              "frames at each end of a video, so this one gives no sample")
    dropped = "the sample is silently dropped"
    loadable, items = 0, []
    lo, hi = (lay.edge_margin, n - lay.edge_margin) if baist else (0, n)
    for i in range(n):
        blur = video / "blur" / f"{i:08d}.png"
        sharps = [video / "sharp" / f"{i:08d}_{j:03d}.png" for j in range(lay.subframes)]
        trend = video / "trend+_avg" / f"{i:08d}_trend.npy"
        anno = video / "blur_anno" / f"{i:08d}.pkl"
        missing = [p for p in [blur, *sharps, trend] + ([anno] if baist else []) if not p.exists()]
        for p in missing:
            c.add("error", p, "missing-file", f"missing: {dropped}")
        ok = not missing
        info = image_info(blur) if blur.exists() else None
        if ok and baist and not _bbox_ok(anno):
            c.add("error", anno, "bad-bbox", f"not a pickled dict with a 'bbox' list: {dropped}")
            ok = False
        if ok and info is not None and not _trend_ok(trend, info):
            c.add("error", trend, "bad-trend",
                  f"expected a ({info.height // 2}, {info.width // 2}, 2) array of -1, 0, +1 "
                  "(the 1/2X trend guidance)")
            ok = False
        if not missing:
            items.append((str(blur), *map(str, sharps)))
        loadable += ok and lo <= i < hi
    c.frames(split, items)
    return loadable


def _bbox_ok(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            box = pickle.load(f)["bbox"]  # noqa: S301 - the user's own dataset
        return len(box) in (4, 5)
    except Exception:
        return False


def _trend_ok(path: Path, info: ImageInfo) -> bool:
    try:
        t = np.load(path)
    except (OSError, ValueError):
        return False
    return (t.ndim == 3 and t.shape[2] == 2 and abs(t.shape[0] - info.height / 2) <= 1
            and abs(t.shape[1] - info.width / 2) <= 1 and np.isin(t, (-1, 0, 1)).all())


_CHECKS: dict[str, Callable[[_Checker], None]] = {
    "gopro": _check_deepdeblur, "reds": _check_deepdeblur, "srn": _check_srn,
    "dvd": _check_pvdnet, "cdvd": _check_cdvd, "afb": _check_afb,
}


def check_layout(layout: str, path: str | os.PathLike) -> list[Problem]:
    """Check a dataset tree against its consumer's rules.

    Parameters
    ----------
    layout : str
        A key of :data:`blursynth.formats.layouts.LAYOUTS`.
    path : str or os.PathLike
        The tree's root, as written by :func:`~blursynth.formats.layouts.write_layout` (the
        ``OUT`` folder). Used as given: PVDNet and DeepDeblur look at the path string.

    Returns
    -------
    list of Problem
        Empty when the consumer would read every pair as intended. A rule that hits several
        files of one folder is reported once, with the count.

    Raises
    ------
    ParameterError
        Unknown layout.

    Notes
    -----
    The rules (consumers.md sections 1-5, 8, 10): file and folder names (digits, identical
    basenames on both sides, no dots or spaces where the consumer splits on them), pairs
    formed by the consumer's own listing rule are the same frame, blurry and sharp sizes
    agree, training frames fit the 256x256 crop (PVDNet: larger than 256), whole-frame
    splits are multiples of 4 (DeepDeblur, CDVD-TSP) or 16 (SRN), clip lengths (CDVD-TSP
    5-100, PVDNet 13+), stray files the consumer would read as frames, DeepDeblur's key
    substrings above the dataset, Animation-from-Blur's per-frame files (a missing one drops
    the sample; none loading loops forever), and 8-bit RGB PNGs without alpha.
    """
    lay = _layout(layout)
    root = Path(path)
    if not root.is_dir():
        return [Problem("error", str(root), "no such folder", "missing")]
    c = _Checker(lay, root, os.fspath(path))
    _CHECKS[lay.name](c)
    return c.collapsed()
