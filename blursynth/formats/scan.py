"""The pairs each trainer forms from a folder tree, by the trainer's own listing rule.

:func:`scan_layout` re-implements, for every layout of :data:`blursynth.formats.layouts.LAYOUTS`,
how its consumer lists and pairs files (key substrings in full paths, sorted positions, a text
list, fixed names), so tests, ``blursynth check`` and :class:`blursynth.data.LayoutBursts` see
exactly what the trainer would see. The rules are those of ``shared/research/consumers.md``.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from glob import escape, glob
from pathlib import Path

from ..errors import InputFileError
from .layouts import (AFB_BAISTPP_TAG, LAYOUTS, Layout, _dataset_name, _layout, _split_name,
                      afb_video_lists, read_video_list)

__all__ = ["scan_layout", "deepdeblur_list", "pvdnet_list", "pvdnet_base_name", "cdvd_list",
           "srn_list", "afb_samples", "dvd_split_dir"]

PathLike = str | os.PathLike
Item = tuple[Path, ...]


# -- the consumers' own listing rules ----------------------------------------------------------


def deepdeblur_list(subset_root: str, key: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """DeepDeblur-PyTorch ``Dataset._scan``: files of leaf folders whose full path plus ``/``
    contains `key` and none of `exclude`, sorted by full path (hidden files included)."""
    found = []
    for sub, dirs, files in os.walk(subset_root):
        if not dirs:
            p = os.path.join(sub, "")
            if key in p and not any(x in p for x in exclude):
                found += [os.path.join(sub, f) for f in files]
    return sorted(found)


def pvdnet_list(root_path: str, child: str) -> list[list[str]]:
    """PVDNet ``load_file_list``: per leaf folder named `child` (sorted by path), its files
    sorted by path, skipping names starting with ``.`` and ``Thumbs.db``; walk roots whose
    path string starts with ``.`` are skipped, and a first sub-folder starting with ``@``."""
    folders, files_per = [], []
    for root, dirnames, filenames in os.walk(root_path):
        if dirnames and dirnames[0][0] == "@":
            del dirnames[0]
        if dirnames or root[0] == "." or Path(root).name != child:
            continue
        folders.append(root)
        files_per.append(sorted(os.path.join(root, f) for f in filenames
                                if f[0] != "." and f != "Thumbs.db"))
    order = sorted(range(len(folders)), key=lambda j: folders[j])
    return [files_per[j] for j in order]


def pvdnet_base_name(path: str) -> str:
    """PVDNet ``get_base_name``: the basename of everything before the first dot of the path."""
    return os.path.basename(path.split(".")[0])


def cdvd_list(dir_data: str, *, train: bool, max_frames: int = 100
              ) -> tuple[list[str], list[str], list[list[str]], list[list[str]]]:
    """CDVD-TSP ``VIDEODATA._scan``: sorted ``gt/*`` and ``blur/*`` video folders and the
    sorted ``*`` entries of each (glob: hidden files skipped, no extension filter); training
    keeps the first `max_frames` of each video."""
    gt_v = sorted(glob(os.path.join(dir_data, "gt", "*")))
    blur_v = sorted(glob(os.path.join(dir_data, "blur", "*")))
    cut = slice(None, max_frames if train else None)
    gt_f = [sorted(glob(os.path.join(v, "*")))[cut] for v in gt_v]
    blur_f = [sorted(glob(os.path.join(v, "*")))[cut] for v in blur_v]
    return gt_v, blur_v, gt_f, blur_f


def srn_list(root: Path) -> list[list[str]]:
    """SRN-Deblur: ``datalist.txt`` lines split on single spaces, ``[sharp, blur]``."""
    p = root / "datalist.txt"
    try:
        return [line.split(" ") for line in p.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise InputFileError(p, f"cannot read SRN's datalist: {exc.strerror or exc}") from None


def afb_samples(root_dir: Path, videos: list[str], *, num_gts: int = 7,
                baistpp: bool | None = None) -> list[tuple[str, Item]]:
    """Animation-from-Blur ``gen_samples`` with ``num_past = num_fut = 0``: for each listed video
    that has a ``blur/`` folder, frames ``i`` of ``range(len(png files in blur/))`` minus the
    BAistPP margins, each ``(blur, sharp_0 .. sharp_{num_gts-1})``; BAistPP drops frames
    without ``blur_anno/{i}.pkl``. `baistpp` defaults to the consumer's own test, the tag in
    the root path."""
    margin = LAYOUTS["afb"].edge_margin
    if baistpp is None:
        baistpp = AFB_BAISTPP_TAG in str(root_dir)
    samples = []
    for video in videos:
        v = root_dir / video
        try:
            n = len([f for f in os.listdir(v / "blur") if f.endswith("png")])
        except OSError:
            continue  # the consumer prints "missing videos" and goes on
        lo, hi = (margin, n - margin) if baistpp else (0, n)
        for i in range(lo, hi):
            if baistpp and not (v / "blur_anno" / f"{i:08d}.pkl").exists():
                continue
            samples.append((video, (v / "blur" / f"{i:08d}.png",
                                    *(v / "sharp" / f"{i:08d}_{j:03d}.png" for j in range(num_gts)))))
    return samples


# -- scanning ----------------------------------------------------------------------------------


def _group(items: Iterable[tuple[str, Item]]) -> list[tuple[str, list[Item]]]:
    groups: list[tuple[str, list[Item]]] = []
    for video, item in items:
        if not groups or groups[-1][0] != video:
            groups.append((video, []))
        groups[-1][1].append(item)
    return groups


def _scan_deepdeblur(lay: Layout, subset: str) -> list[tuple[str, Item]]:
    if lay.name == "gopro":
        blur, sharp = deepdeblur_list(subset, "blur_gamma/"), deepdeblur_list(subset, "sharp/")
    else:
        blur = deepdeblur_list(subset, "blur/", ("blur_comp/", "blur_bicubic/"))
        sharp = deepdeblur_list(subset, "sharp/", ("sharp_bicubic/",))
    if sharp and len(blur) != len(sharp):
        raise InputFileError(subset, f"{lay.consumer} would stop on its assertion: {len(blur)} "
                                     f"blurry files but {len(sharp)} sharp ones")
    level = (lambda p: p.parent.parent.name) if lay.name == "gopro" else (lambda p: p.parent.name)
    return [(level(Path(b)), (Path(b), Path(s))) for b, s in zip(blur, sharp)]


def _scan_pvdnet(lay: Layout, data_path: str) -> list[tuple[str, Item]]:
    inp, gt = pvdnet_list(data_path, "input"), pvdnet_list(data_path, "GT")
    if len(inp) != len(gt):
        raise InputFileError(data_path, f"{lay.consumer} pairs videos by position: "
                                        f"{len(inp)} input/ folders but {len(gt)} GT/ folders")
    items = []
    for fi, fg in zip(inp, gt):
        if len(fi) != len(fg):
            raise InputFileError(Path(fi[0] if fi else fg[0]).parent,
                                 f"{lay.consumer} would index past the end: {len(fi)} input "
                                 f"frames but {len(fg)} GT frames")
        for b, s in zip(fi, fg):
            pb, ps = Path(b), Path(s)
            if pb.parent.parent.name != ps.parent.parent.name or \
                    pvdnet_base_name(b) != pvdnet_base_name(s):
                raise InputFileError(b, f"{lay.consumer} would stop on its assertion: paired "
                                        f"with {s} (video or file name differs)")
            items.append((pb.parent.parent.name, (pb, ps)))
    return items


def _scan_cdvd(lay: Layout, dir_data: str, train: bool) -> list[tuple[str, Item]]:
    gt_v, blur_v, gt_f, blur_f = cdvd_list(dir_data, train=train, max_frames=lay.max_frames)
    if len(gt_v) != len(blur_v):
        raise InputFileError(dir_data, f"{lay.consumer} would stop on its assertion: "
                                       f"{len(gt_v)} gt/ videos but {len(blur_v)} blur/ videos")
    items = []
    for fg, fb in zip(gt_f, blur_f):
        if len(fb) < len(fg):
            raise InputFileError(Path(fb[0] if fb else fg[0]).parent,
                                 f"{lay.consumer} would index past the end: {len(fb)} blur "
                                 f"frames for {len(fg)} gt frames")
        items += [(Path(b).parent.name, (Path(b), Path(g))) for g, b in zip(fg, fb)]
    return items


def _scan_srn(lay: Layout, root: Path) -> list[tuple[str, Item]]:
    items = []
    for n, cols in enumerate(srn_list(root), 1):
        if len(cols) != 2:
            raise InputFileError(root / "datalist.txt", f"line {n}: {lay.consumer} needs "
                                 f"exactly 'SHARP BLUR' separated by one space, got {len(cols)} "
                                 "fields")
        sharp, blur = cols
        items.append((sharp.split("/")[0], (root / blur, root / sharp)))
    return items


def scan_layout(layout: str, root: PathLike, *, split: str = "train",
                name: str | None = None) -> list[tuple[str, list[Item]]]:
    """The (blurry, sharp) pairs the layout's consumer would form from a tree, by its own rule.

    Parameters
    ----------
    layout : str
        A key of :data:`LAYOUTS`.
    root : str or os.PathLike
        The tree's root, as given to :func:`write_layout` (used as given, relative or not,
        because some consumers look at the path string itself).
    split : str, optional
        One of the layout's splits.
    name : str, optional
        dvd: the ``{split}_{name}`` folder (default: the only ``{split}_*`` folder); afb: the
        root folder name (default ``b-aist++``).

    Returns
    -------
    list of (video, items)
        In the consumer's order, grouped by video. Each item is ``(blurry, sharp)``; for afb
        it is ``(blur, sharp_0, ..., sharp_6)``, the sample of one blurry frame (the trend
        is ``{video}/trend+_avg/{i:08d}_trend.npy`` beside them).

    Raises
    ------
    InputFileError
        The split's folder is missing, or the consumer would stop on the tree (an assertion
        or an index past the end): the message says which.
    ParameterError
        Unknown layout, split or name.

    Notes
    -----
    ======  ====================================================================================
    gopro   ``os.walk`` leaf folders whose path contains ``blur_gamma/`` / ``sharp/``; each list
            sorted by full path; paired by position (DeepDeblur-PyTorch ``_scan``)
    reds    the same with keys ``blur/`` (not ``blur_comp/``, ``blur_bicubic/``) and ``sharp/``
            (not ``sharp_bicubic/``)
    srn     ``datalist.txt``: ``SHARP BLUR`` per line, relative to the root
    dvd     leaf folders named exactly ``input`` / ``GT``, sorted; videos and frames paired by
            position; video and base names asserted equal (PVDNet ``load_file_list``)
    cdvd    ``sorted(glob(gt/*))`` x ``sorted(glob(video/*))`` against the same for ``blur``,
            by position; the first 100 frames of each video when training
    afb     the split's YAML video list; fixed names ``blur/{i:08d}.png``,
            ``sharp/{i:08d}_{j:03d}.png``; with ``b-aist++`` in the root path (BAistPP) 40
            frames skipped at each end and frames without a bbox pkl dropped
    ======  ====================================================================================
    """
    lay = _layout(layout)
    split = _split_name(lay, split)
    root_s = str(root)
    if lay.name in ("gopro", "reds"):
        sub = os.path.join(root_s, split)
        _need_dir(sub)
        return _group(_scan_deepdeblur(lay, sub))
    if lay.name == "srn":
        return _group(_scan_srn(lay, Path(root_s)))
    if lay.name == "cdvd":
        sub = os.path.join(root_s, split)
        _need_dir(sub)
        return _group(_scan_cdvd(lay, sub, split == lay.train_split))
    if lay.name == "dvd":
        return _group(_scan_pvdnet(lay, dvd_split_dir(root_s, split, name)))
    name = _dataset_name(lay, name)
    lists = afb_video_lists(root_s, name)
    videos = read_video_list(lists[split])
    return _group(afb_samples(Path(root_s) / name, videos, num_gts=lay.subframes))


def dvd_split_dir(root: str, split: str, name: str | None = None) -> str:
    """PVDNet's data path for `split`: ``root/{split}_{name}``, or the only ``{split}_*``
    folder when `name` is None."""
    if name is not None:
        sub = os.path.join(root, f"{split}_{_dataset_name(LAYOUTS['dvd'], name)}")
        _need_dir(sub)
        return sub
    found = sorted(glob(os.path.join(escape(root), f"{split}_*")))
    found = [f for f in found if os.path.isdir(f)]
    if len(found) != 1:
        raise InputFileError(root, f"expected one {split}_NAME folder, found "
                                   f"{len(found) or 'none'}: pass name=")
    return found[0]


def _need_dir(path: str) -> None:
    if not os.path.isdir(path):
        raise InputFileError(path, "no such folder")
