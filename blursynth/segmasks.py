"""Instance masks for segmentation-based blur: COCO annotations, mask folders, plain images.

Every source yields :class:`SegItem` objects: one photo and the masks of the objects that will
move with their own kernels, ordered back to front (the compositing order).

Three sources share one protocol: ``len(source)`` is the number of images considered, iterating
yields :class:`SegItem` or, for an item that cannot be used, :class:`ItemError` (the batch goes
on; the driver records it), and ``source.report`` (a :class:`collections.Counter`, reset by each
iteration) counts what happened.

==========================  ==============================================================
:class:`CocoSource`         COCO instances JSON + image folder (``--coco``, ``--images``)
:class:`MaskFolderSource`   per-image instance masks or label images (``--masks``)
:class:`PlainSource`        images without masks: background (camera) blur only
==========================  ==============================================================

Objects pass a :class:`MaskFilter` (crowd, categories, minimum area in mask pixels), are sorted
by one of the :data:`ORDERS` rules, and the first ``max_objects`` are kept in that order.

Notes
-----
SBDD's COCO script rasterised only the first polygon of each annotation and skipped RLE masks;
here every polygon part is merged and RLE masks (compressed or not) are decoded, with
pycocotools.
"""
from __future__ import annotations

import contextlib
import io
import json
import numbers
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from scipy import ndimage

from .clips import IMAGE_EXTS
from .errors import InputFileError, ParameterError

__all__ = ["SegItem", "ItemError", "ORDERS", "MaskFilter", "order_objects", "CocoSource",
           "coco_items", "MaskFolderSource", "PlainSource"]

ORDERS: dict[str, str] = {
    "bottom": "by the lower edge of the bounding box, ascending: an object whose lower edge is "
              "higher up in the image is farther (ground-plane depth cue) and composited first",
    "area": "by mask area (pixels), descending: larger objects behind smaller ones",
    "sbdd": "by bounding-box area (width x height, pixels), ascending, as SBDD's COCO script",
    "id": "by annotation id (COCO), label value or file order (mask folders), ascending",
}


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


@dataclass(frozen=True)
class ItemError:
    """An item that cannot be used; yielded (not raised) so that the batch goes on.

    Attributes
    ----------
    key : str
        The item's key (image stem), or ``"image_id-N"`` for annotations of a missing image.
    path : pathlib.Path
        The offending file.
    message : str
        What is wrong.
    """

    key: str
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


_DEFAULT_SUPER = ("person", "vehicle", "animal")


def _names(value, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ParameterError(f"{name}: expected a tuple of names or None, got the string "
                             f"{value!r} (write ({value!r},))")
    try:
        out = tuple(value)
    except TypeError:
        raise ParameterError(f"{name}: expected a tuple of names or None, got {value!r}") from None
    if not out or not all(isinstance(v, str) and v for v in out):
        raise ParameterError(f"{name}: expected non-empty names (None for no filter), got {out!r}")
    return out


@dataclass(frozen=True)
class MaskFilter:
    """Which objects move, and in what order they are composited.

    Attributes
    ----------
    categories : tuple of str or None
        COCO category names to keep; None keeps every category.
    supercategories : tuple of str or None
        COCO supercategory names to keep; None keeps every supercategory. An object must pass
        both filters (each that is not None).
    min_area : float
        Minimum object area in pixels of the rasterised mask (not COCO's ``area`` field);
        objects with ``area >= min_area`` (and at least one pixel) are kept.
    max_objects : int
        At most this many objects per image: the first ones in ``order``.
    order : str
        Ordering rule, a key of :data:`ORDERS`; it is also the back-to-front order.
    include_crowd : bool
        Keep COCO ``iscrowd`` annotations (groups of objects, usually RLE).

    Raises
    ------
    ParameterError
        Any attribute has an invalid value.
    """

    categories: tuple[str, ...] | None = None
    supercategories: tuple[str, ...] | None = _DEFAULT_SUPER
    min_area: float = 4000
    max_objects: int = 5
    order: str = "bottom"
    include_crowd: bool = False

    def __post_init__(self):
        # frozen: normalise lists (click's multiple=True gives tuples, users lists) in place
        object.__setattr__(self, "categories", _names(self.categories, "categories"))
        object.__setattr__(self, "supercategories",
                           _names(self.supercategories, "supercategories"))
        a = self.min_area
        if isinstance(a, bool) or not isinstance(a, numbers.Real) or not np.isfinite(a) or a < 0:
            raise ParameterError(f"min_area: expected a number of pixels >= 0, got {a!r}")
        m = self.max_objects
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ParameterError(f"max_objects: expected an integer >= 1, got {m!r}")
        if self.order not in ORDERS:
            raise ParameterError(f"order: expected one of {', '.join(ORDERS)}, got {self.order!r}")
        if not isinstance(self.include_crowd, bool):
            raise ParameterError(f"include_crowd: expected a bool, got {self.include_crowd!r}")


def order_objects(rule: str, ids, areas, boxes) -> np.ndarray:
    """Back-to-front order of objects under an ordering rule.

    Parameters
    ----------
    rule : str
        A key of :data:`ORDERS`.
    ids : array_like
        ``(n,)`` int: annotation ids, label values or instance numbers.
    areas : array_like
        ``(n,)`` mask areas in pixels.
    boxes : array_like
        ``(n, 4)`` bounding boxes of the masks, ``x, y, w, h`` in pixels (``y + h`` is the row
        below the lowest mask pixel).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int64 indices, back to front; ties are broken by ascending id.

    Raises
    ------
    ParameterError
        Unknown rule.

    Examples
    --------
    >>> order_objects("bottom", [1, 2], [10, 10], [[0, 20, 5, 5], [0, 0, 5, 5]]).tolist()
    [1, 0]
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keys = {"bottom": lambda: boxes[:, 1] + boxes[:, 3], "area": lambda: -areas,
            "sbdd": lambda: boxes[:, 2] * boxes[:, 3], "id": lambda: ids}
    if rule not in keys:
        raise ParameterError(f"order: expected one of {', '.join(ORDERS)}, got {rule!r}")
    return np.lexsort((ids, keys[rule]()))  # last key is primary


def _select(filt: MaskFilter, ids, areas, boxes, counts: Counter) -> np.ndarray:
    """Indices of the objects kept, back to front; counts too_small and over_max."""
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    ok = np.flatnonzero((areas >= filt.min_area) & (areas > 0))
    ranked = ok[order_objects(filt.order, np.asarray(ids)[ok], areas[ok],
                              np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[ok])]
    kept = ranked[:filt.max_objects]
    counts["too_small"] += len(areas) - len(ok)
    counts["over_max"] += len(ranked) - len(kept)
    return kept


def _image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image from its header (PIL), else from a full OpenCV decode.

    Raises InputFileError for a missing or unreadable file. The pixels are not checked: the
    driver's ``read_image`` does that.
    """
    if not path.is_file():
        raise InputFileError(path, "no such file")
    try:
        with Image.open(path) as im:
            w, h = im.size
        return int(h), int(w)
    except Exception:  # PIL lacks some formats OpenCV reads (and raises many types): cv2 decides
        pass
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputFileError(path, "not a readable image")
    return int(img.shape[0]), int(img.shape[1])


def _natural(name: str) -> list:
    """Sort key comparing digit runs as numbers (``m2.png`` before ``m10.png``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS


def _visible_files(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")),
                  key=lambda p: _natural(p.name))


class _Source:
    """Shared protocol: ``__len__``, ``report`` and key de-duplication."""

    report: Counter

    def __init__(self):
        self.report = Counter()
        self._keys: dict[str, Path] = {}

    def _start(self) -> None:
        self.report = Counter()
        self._keys = {}

    def _counted(self, make: Callable[[Counter], SegItem | ItemError | None]
                 ) -> SegItem | ItemError | None:
        """One image: ``make(counts)``, then into the report: ``failed`` for an ItemError,
        its ``counts`` otherwise. Returns what ``make`` returned (None: nothing to yield)."""
        self.report["images"] += 1
        counts = Counter()
        out = make(counts)
        if isinstance(out, ItemError):
            self.report["failed"] += 1
        else:
            self.report.update(counts)
        return out

    def _claim(self, key: str, path: Path) -> ItemError | None:
        """An ItemError if another item already has this key (its outputs would collide)."""
        first = self._keys.setdefault(key, path)
        if first != path:
            return ItemError(key, path, f"key {key!r} is already used by {first}")
        return None


# ---------------------------------------------------------------------------------- COCO

_COCO_FIELDS = {"images": ("id", "file_name", "height", "width"),
                "annotations": ("id", "image_id", "category_id", "segmentation"),
                "categories": ("id", "name")}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _quoted(names) -> str:
    return ", ".join(map(repr, names))


def _check_entries(path: Path, key: str, entries, fields: tuple[str, ...]) -> set[int]:
    """Check one COCO list (objects with ``fields``, unique integer ids); return the ids."""
    if not isinstance(entries, list):
        raise InputFileError(path, f"{key!r}: expected a list, got {type(entries).__name__}")
    ids = set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise InputFileError(path, f"{key}[{i}]: expected an object, got {type(e).__name__}")
        lacking = [f for f in fields if f not in e]
        if lacking:
            raise InputFileError(path, f"{key}[{i}]: missing {_quoted(lacking)}")
        if not _is_int(e["id"]) or e["id"] in ids:
            what = "duplicate" if _is_int(e["id"]) else "expected an integer"
            raise InputFileError(path, f"{key}[{i}]: {what} id {e['id']!r}")
        ids.add(e["id"])
    return ids


def _check_coco(path: Path, data) -> None:
    """Raise InputFileError unless ``data`` has the structure of a COCO instances file."""
    if not isinstance(data, dict):
        raise InputFileError(path, "expected a COCO instances object with 'images', 'annotations'"
                                   f" and 'categories', got a JSON {type(data).__name__}")
    missing = [k for k in _COCO_FIELDS if k not in data]
    if missing:
        raise InputFileError(path, f"not a COCO instances file: missing {_quoted(missing)} "
                                   "(expected 'images', 'annotations' and 'categories' lists)")
    ids = {k: _check_entries(path, k, data[k], f) for k, f in _COCO_FIELDS.items()}
    for i, e in enumerate(data["images"]):
        if not isinstance(e["file_name"], str) or not e["file_name"]:
            raise InputFileError(path, f"images[{i}] (id {e['id']}): expected a file_name, got "
                                       f"{e['file_name']!r}")
        if not all(_is_int(e[k]) and e[k] > 0 for k in ("height", "width")):
            raise InputFileError(path, f"images[{i}] (id {e['id']}): expected positive integer "
                                       f"height and width, got {e['height']!r}, {e['width']!r}")
    for i, e in enumerate(data["annotations"]):
        if e["category_id"] not in ids["categories"]:
            raise InputFileError(path, f"annotations[{i}] (id {e['id']}): category_id "
                                       f"{e['category_id']!r} is not in 'categories'")


def _load_coco(path: Path) -> COCO:
    """Read and check a COCO instances JSON, then index it with pycocotools (silenced)."""
    if not path.is_file():
        raise InputFileError(path, "no such file")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise InputFileError(path, f"not valid JSON ({e.msg} at line {e.lineno}, "
                                   f"column {e.colno})") from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not valid JSON (not UTF-8 text)") from None
    except OSError as e:
        raise InputFileError(path, f"cannot read: {e.strerror}") from None
    _check_coco(path, data)
    coco = COCO()  # no file: COCO(path) would parse again and print
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _ann_rle(segm, h: int, w: int) -> dict:
    """Compressed RLE of one COCO segmentation: all polygon parts merged, or the RLE itself.

    Raises ValueError for a malformed segmentation.
    """
    if isinstance(segm, list):
        parts = []
        for part in segm:
            if (not isinstance(part, list) or len(part) % 2
                    or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in part)):
                raise ValueError("a polygon must be a list of finite x, y numbers")
            # < 3 points has no area; pycocotools would also read a 4-number part as a box
            if len(part) >= 6:
                parts.append([float(v) for v in part])
        if not parts:
            return mask_utils.encode(np.zeros((h, w), dtype=np.uint8, order="F"))
        return mask_utils.merge(mask_utils.frPyObjects(parts, h, w))
    if isinstance(segm, dict) and {"size", "counts"} <= segm.keys():
        if list(segm["size"]) != [h, w]:
            raise ValueError(f"RLE size {segm['size']} differs from the image's [height, width] "
                             f"[{h}, {w}]")
        counts = segm["counts"]
        if isinstance(counts, list):  # uncompressed RLE (crowd annotations)
            if sum(counts) != h * w:
                raise ValueError(f"RLE counts sum to {sum(counts)}, expected {h}*{w} = {h * w}")
            return mask_utils.frPyObjects(segm, h, w)
        if isinstance(counts, str):  # JSON holds text; pycocotools wants bytes
            counts = counts.encode("ascii")
        if isinstance(counts, bytes):
            return {"size": [h, w], "counts": counts}
    raise ValueError("segmentation must be a list of polygons or an RLE object with 'size' and "
                     "'counts'")


def _decode(rles: list[dict], h: int, w: int) -> np.ndarray:
    """``(n, H, W)`` bool masks from compressed RLEs."""
    if not rles:
        return np.zeros((0, h, w), dtype=bool)
    with warnings.catch_warnings():
        # pycocotools 2.0.11's Cython decode trips NumPy 2's __array__(copy=) deprecation
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        masks = mask_utils.decode(rles)
    return np.ascontiguousarray(masks.transpose(2, 0, 1), dtype=bool)


class CocoSource(_Source):
    """Photos and object masks from a COCO instances file.

    Parameters
    ----------
    instances : str or os.PathLike
        COCO instances JSON (``images``, ``annotations``, ``categories``).
    images : str or os.PathLike
        Folder holding the images, found by their COCO ``file_name``.
    filt : MaskFilter
        Which objects move and their order.
    keep_empty : bool
        Also yield images with no qualifying object (with ``n = 0`` masks).

    Yields
    ------
    SegItem or ItemError
        First one ItemError per missing ``image_id`` that annotations refer to (key
        ``"image_id-N"``, listing the annotation ids); then, in the file's image order, one
        SegItem per image with at least one qualifying object (``key`` = the file's stem,
        ``masks`` ``(n, H, W)`` bool back to front, ``meta`` with ``source="coco"``,
        ``image_id``, ``file_name``, ``annotation_ids``, ``categories``, ``areas`` in pixels,
        ``order``), or an ItemError for an image file that is missing, unreadable, of another
        size than the annotation says, whose key is taken, or with a malformed segmentation.

    Raises
    ------
    InputFileError
        At construction: ``instances`` is missing, not JSON, or not COCO instances (missing or
        malformed ``images``/``annotations``/``categories``, duplicate ids, unknown
        ``category_id``); ``images`` is not a folder.
    ParameterError
        At construction: a name in ``filt.categories`` is not in the file, or no category
        passes the filter.

    Notes
    -----
    Per annotation: crowd (``iscrowd``) is excluded unless ``filt.include_crowd``, then the
    category filters, then the area of the rasterised mask (every polygon part merged, RLE
    compressed or not; counted by pycocotools on the RLE) against ``filt.min_area``; the
    survivors are sorted by ``filt.order`` using the rasterised mask's bounding box (which
    can differ from COCO's float ``bbox`` by under a pixel per side) and the first
    ``filt.max_objects`` are kept. Images without a qualifying object are skipped before their
    file is looked at. ``report`` counts ``images``, ``with_objects``, ``skipped_no_objects``,
    ``kept_empty``, ``objects``, ``crowd_excluded``, ``filtered_category``, ``too_small``,
    ``over_max`` (object counts over the images that did not fail) and ``failed`` (ItemErrors).
    """

    def __init__(self, instances: str | os.PathLike, images: str | os.PathLike,
                 filt: MaskFilter = MaskFilter(), *, keep_empty: bool = False):
        super().__init__()
        if not isinstance(filt, MaskFilter):
            raise ParameterError(f"filt: expected a MaskFilter, got {type(filt).__name__}")
        self.instances, self.images = Path(instances), Path(images)
        self.filt, self.keep_empty = filt, bool(keep_empty)
        if not self.images.is_dir():  # before the (possibly long) JSON load
            raise InputFileError(self.images, "no such folder")
        self.coco = _load_coco(self.instances)
        self.cats = self._categories()

    def _categories(self) -> dict[int, str]:
        """Names of the categories that pass the filter, by id."""
        cats, f = self.coco.cats.values(), self.filt
        unknown = sorted(set(f.categories or ()) - {c["name"] for c in cats})
        if unknown:
            known = ", ".join(sorted(c["name"] for c in cats))
            raise ParameterError(f"categories: {_quoted(unknown)} not in {self.instances} "
                                 f"(it has {known})")
        out = {c["id"]: c["name"] for c in cats
               if (f.categories is None or c["name"] in f.categories)
               and (f.supercategories is None or c.get("supercategory") in f.supercategories)}
        if not out:
            raise ParameterError(f"no category of {self.instances} passes categories="
                                 f"{f.categories}, supercategories={f.supercategories} (an object "
                                 "must pass both; use None to drop a filter)")
        return out

    def __len__(self) -> int:
        return len(self.coco.dataset["images"])

    def __iter__(self) -> Iterator[SegItem | ItemError]:
        self._start()
        for err in self._orphans():
            self.report["failed"] += 1
            yield err
        for img in self.coco.dataset["images"]:
            out = self._counted(lambda counts: self._item(img, counts))
            if out is not None:
                yield out

    def _orphans(self) -> Iterator[ItemError]:
        by_image = defaultdict(list)
        for a in self.coco.dataset["annotations"]:
            if a["image_id"] not in self.coco.imgs:
                by_image[a["image_id"]].append(a["id"])
        for image_id, ann_ids in by_image.items():
            shown = ", ".join(map(str, ann_ids[:10])) + (", ..." if len(ann_ids) > 10 else "")
            yield ItemError(f"image_id-{image_id}", self.instances,
                            f"annotation(s) {shown} refer to image_id {image_id!r}, which is not "
                            "in 'images'")

    def _item(self, img: dict, counts: Counter) -> SegItem | ItemError | None:
        """The SegItem of one image entry, an ItemError, or None when it is skipped."""
        path = self.images / img["file_name"]
        key, h, w = Path(img["file_name"]).stem, img["height"], img["width"]
        cand = []  # (annotation, rle, area, box) of the annotations that pass crowd and category
        for a in self.coco.imgToAnns.get(img["id"], []):
            if a.get("iscrowd", 0) and not self.filt.include_crowd:
                counts["crowd_excluded"] += 1
            elif a["category_id"] not in self.cats:
                counts["filtered_category"] += 1
            else:
                try:
                    rle = _ann_rle(a["segmentation"], h, w)
                except (ValueError, TypeError) as e:
                    return ItemError(key, self.instances, f"annotation {a['id']} (image id "
                                                          f"{img['id']}): {e}")
                cand.append((a, rle, int(mask_utils.area(rle)), mask_utils.toBbox(rle)))
        kept = _select(self.filt, [c[0]["id"] for c in cand], [c[2] for c in cand],
                       [c[3] for c in cand], counts)
        if len(kept) == 0 and not self.keep_empty:
            counts["skipped_no_objects"] += 1
            return None
        err = self._claim(key, path) or self._check_file(key, path, img)
        if err:
            return err
        counts["with_objects" if len(kept) else "kept_empty"] += 1
        counts["objects"] += len(kept)
        sel = [cand[i] for i in kept]
        meta = {"source": "coco", "image_id": img["id"], "file_name": img["file_name"],
                "annotation_ids": [c[0]["id"] for c in sel],
                "categories": [self.coco.cats[c[0]["category_id"]]["name"] for c in sel],
                "areas": [c[2] for c in sel], "order": self.filt.order}
        return SegItem(key, path, _decode([c[1] for c in sel], h, w), meta)

    def _check_file(self, key: str, path: Path, img: dict) -> ItemError | None:
        try:
            h, w = _image_size(path)
        except InputFileError as e:
            return ItemError(key, path, f"{e.problem} (image id {img['id']} in "
                                        f"{self.instances.name})")
        if (h, w) != (img["height"], img["width"]):
            return ItemError(key, path, f"image is {w}x{h} (WxH) but {self.instances.name} says "
                                        f"{img['width']}x{img['height']} (image id {img['id']})")
        return None


def coco_items(instances: str | os.PathLike, images: str | os.PathLike,
               filt: MaskFilter = MaskFilter(), *, keep_empty: bool = False) -> CocoSource:
    """COCO photos and masks: ``CocoSource(instances, images, filt, keep_empty=...)``.

    Returns the source (iterate it for :class:`SegItem` / :class:`ItemError`; its ``report``
    counts); see :class:`CocoSource` for parameters and errors.
    """
    return CocoSource(instances, images, filt, keep_empty=keep_empty)


# ---------------------------------------------------------------------------- mask folders

def _read_mask(path: Path) -> np.ndarray:
    """A mask PNG as read (8/16-bit, grey or colour); InputFileError if unreadable."""
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise InputFileError(path, "not a readable image")
    return m


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``x, y, w, h`` of the nonzero pixels of a 2-D mask (zeros if none)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1


@dataclass
class _Objects:
    """The objects of one image's masks: ``ids``, ``areas`` (pixels) and ``boxes`` ``(n, 4)``
    x, y, w, h; ``take(indices)`` builds their ``(k, H, W)`` bool masks; ``files`` names the
    instance PNGs (None for a label image)."""

    ids: np.ndarray
    areas: np.ndarray
    boxes: np.ndarray
    take: Callable[[np.ndarray], np.ndarray]
    files: list[str] | None


class MaskFolderSource(_Source):
    """Photos and object masks from a folder of masks named after the images.

    Two layouts, detected per image ``IMAGE`` (any of ``IMAGE_EXTS`` in ``images_dir``):

    * instances: ``masks_dir/<IMAGE stem>/*.png``, one PNG per object, nonzero (in any
      colour channel; alpha ignored) = object; files in natural name order, instance id =
      1-based position in that order;
    * label: ``masks_dir/<IMAGE stem>.png``, one single-channel 8- or 16-bit image,
      0 = background, every other value one object (instance id = the value).

    Parameters
    ----------
    masks_dir, images_dir : str or os.PathLike
        The mask folder and the image folder (files directly in it).
    filt : MaskFilter
        ``min_area``, ``max_objects`` and ``order`` apply; the masks have no category names,
        so ``categories``, ``supercategories`` and ``include_crowd`` must keep their defaults
        (the default supercategories are ignored).
    keep_empty : bool
        Also yield images whose masks have no qualifying object (with ``n = 0``).

    Yields
    ------
    SegItem or ItemError
        First an ItemError per mask entry with no image of its stem; then per image (name
        order): a SegItem (``meta``: ``source="masks"``, ``layout``, ``instance_ids``,
        ``mask_files`` (file names, instances layout) or ``label_file``, ``areas``,
        ``order``); an image with no mask entry is yielded with ``n = 0`` (counted
        ``no_masks``); an image whose masks have no qualifying object is skipped unless
        ``keep_empty``; an ItemError for an unreadable image or mask, a mask of another size
        than its image, a colour label image, both layouts present, or a key already taken.

    Raises
    ------
    InputFileError
        A folder does not exist.
    ParameterError
        ``filt`` sets category filters or crowd.

    Notes
    -----
    ``report`` counts ``images``, ``with_objects``, ``no_masks``, ``skipped_no_objects``,
    ``kept_empty``, ``objects``, ``too_small``, ``over_max`` and ``failed``.
    """

    def __init__(self, masks_dir: str | os.PathLike, images_dir: str | os.PathLike,
                 filt: MaskFilter = MaskFilter(), *, keep_empty: bool = False):
        super().__init__()
        self.masks_dir, self.images_dir = Path(masks_dir), Path(images_dir)
        for d in (self.masks_dir, self.images_dir):
            if not d.is_dir():
                raise InputFileError(d, "no such folder")
        if not isinstance(filt, MaskFilter):
            raise ParameterError(f"filt: expected a MaskFilter, got {type(filt).__name__}")
        if (filt.categories is not None or filt.supercategories != _DEFAULT_SUPER
                or filt.include_crowd):
            raise ParameterError("categories, supercategories and include_crowd apply to COCO "
                                 "annotations only: mask folders have no category names")
        self.filt, self.keep_empty = filt, bool(keep_empty)
        self._images = [p for p in _visible_files(self.images_dir) if _is_image(p)]

    def __len__(self) -> int:
        return len(self._images)

    def __iter__(self) -> Iterator[SegItem | ItemError]:
        self._start()
        stems = {p.stem for p in self._images}
        for entry in sorted(self.masks_dir.iterdir(), key=lambda p: _natural(p.name)):
            stem = entry.name if entry.is_dir() else entry.stem
            mask_like = entry.is_dir() or entry.suffix.lower() == ".png"
            if mask_like and not entry.name.startswith(".") and stem not in stems:
                self.report["failed"] += 1
                yield ItemError(stem, entry, f"no image named {stem}.* in {self.images_dir}")
        for path in self._images:
            out = self._counted(lambda counts: self._claim(path.stem, path)
                                or self._item(path, counts))
            if out is not None:
                yield out

    def _item(self, path: Path, counts: Counter) -> SegItem | ItemError | None:
        key = path.stem
        folder, label = self.masks_dir / key, self.masks_dir / f"{key}.png"
        if folder.is_dir() and label.is_file():
            return ItemError(key, folder, f"both a mask folder and a label image {label} exist "
                                          f"for {path.name}; keep one")
        try:
            size = _image_size(path)
            if folder.is_dir():
                objs, meta = self._instances(folder, path, size), {"layout": "instances"}
            elif label.is_file():
                objs, meta = self._labels(label, path, size), {"layout": "label",
                                                                "label_file": label.name}
            else:
                counts["no_masks"] += 1
                return SegItem(key, path, np.zeros((0, *size), dtype=bool),
                               {"source": "masks", "layout": None, "instance_ids": [],
                                "areas": [], "order": self.filt.order})
        except InputFileError as e:
            return ItemError(key, Path(e.path), e.problem)
        kept = _select(self.filt, objs.ids, objs.areas, objs.boxes, counts)
        if len(kept) == 0 and not self.keep_empty:
            counts["skipped_no_objects"] += 1
            return None
        counts["with_objects" if len(kept) else "kept_empty"] += 1
        counts["objects"] += len(kept)
        if objs.files is not None:
            meta["mask_files"] = [objs.files[i] for i in kept]
        meta.update({"source": "masks", "instance_ids": [int(objs.ids[i]) for i in kept],
                     "areas": [int(objs.areas[i]) for i in kept], "order": self.filt.order})
        masks = objs.take(kept) if len(kept) else np.zeros((0, *size), dtype=bool)
        return SegItem(key, path, masks, meta)

    @staticmethod
    def _check_size(mask_path: Path, image_path: Path, shape, size) -> None:
        if tuple(shape[:2]) != tuple(size):
            raise InputFileError(mask_path, f"mask is {shape[1]}x{shape[0]} (WxH) but its image "
                                            f"{image_path} is {size[1]}x{size[0]}")

    def _instances(self, folder: Path, image: Path, size) -> _Objects:
        """The objects of a folder of instance PNGs; id = 1-based position in name order."""
        files = [p for p in _visible_files(folder) if p.suffix.lower() == ".png"]
        masks = []
        for p in files:
            m = _read_mask(p)
            self._check_size(p, image, m.shape, size)
            m = m[..., :3] if m.ndim == 3 else m  # colour: any channel; alpha is not the mask
            masks.append(m.any(axis=2) if m.ndim == 3 else m > 0)
        return _Objects(ids=np.arange(1, len(files) + 1),
                        areas=np.array([m.sum() for m in masks], dtype=np.int64),
                        boxes=np.array([_box(m) for m in masks], dtype=np.int64).reshape(-1, 4),
                        take=lambda idx: np.stack([masks[i] for i in idx]),
                        files=[p.name for p in files])

    def _labels(self, label: Path, image: Path, size) -> _Objects:
        """The objects of a label image; id = label value."""
        lab = _read_mask(label)
        if lab.ndim == 3 and lab.shape[2] != 1:
            raise InputFileError(label, f"expected a single-channel 8- or 16-bit label image, "
                                        f"got {lab.shape[2]} channels")
        lab = lab.reshape(lab.shape[:2])
        self._check_size(label, image, lab.shape, size)
        ids = np.unique(lab[lab > 0]).astype(np.int64)
        slices = ndimage.find_objects(lab)  # slices[v - 1]: the extent of label value v
        boxes = [(s[1].start, s[0].start, s[1].stop - s[1].start, s[0].stop - s[0].start)
                 for s in (slices[v - 1] for v in ids)]
        return _Objects(ids=ids, areas=np.bincount(lab.ravel())[ids],
                        boxes=np.array(boxes, dtype=np.int64).reshape(-1, 4),
                        take=lambda idx: lab[None] == ids[idx].astype(lab.dtype)[:, None, None],
                        files=None)


# ----------------------------------------------------------------------------- plain images

class PlainSource(_Source):
    """Images without masks: background (camera) blur only.

    Parameters
    ----------
    paths : str, os.PathLike or iterable of them
        Image files and folders of images (files directly in a folder, hidden files ignored,
        natural name order).

    Yields
    ------
    SegItem or ItemError
        Per file: a SegItem (``key`` = stem, ``masks`` ``(0, H, W)`` bool, ``meta``
        ``{"source": "plain"}``), or an ItemError for a missing path, a file that is not an
        image (extension not in ``IMAGE_EXTS``, or unreadable header) or a key already taken.

    Notes
    -----
    ``report`` counts ``images``, ``plain`` and ``failed``.
    """

    def __init__(self, paths: str | os.PathLike | Iterable[str | os.PathLike]):
        super().__init__()
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files = []
        for p in map(Path, paths):
            files.extend(_visible_files(p) if p.is_dir() else [p])
        self._files = list(dict.fromkeys(files))  # a file named twice is one item

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[SegItem | ItemError]:
        self._start()
        for path in self._files:
            self.report["images"] += 1
            out = self._item(path)
            self.report["failed" if isinstance(out, ItemError) else "plain"] += 1
            yield out

    def _item(self, path: Path) -> SegItem | ItemError:
        if not path.exists():
            return ItemError(path.stem, path, "no such file or folder")
        if not _is_image(path):
            return ItemError(path.stem, path, f"not an image: expected one of "
                                              f"{', '.join(IMAGE_EXTS)}, got "
                                              f"{path.suffix or 'no extension'!r}")
        err = self._claim(path.stem, path)
        if err:
            return err
        try:
            h, w = _image_size(path)
        except InputFileError as e:
            return ItemError(path.stem, path, e.problem)
        return SegItem(path.stem, path, np.zeros((0, h, w), dtype=bool), {"source": "plain"})
