"""The segblur stage over files: photos and masks in, blurry/sharp pairs and a manifest out.

:func:`segblur` takes a mask source of :mod:`blursynth.segmasks` (COCO, mask folders, plain
photos), renders each item with :func:`blursynth.segblur.segblur_item` and writes::

    OUT/sharp/<key>.png        the (illuminated) sharp photo, cropped like the blurry one
    OUT/blurry/<key>.png       the blurry photo
    OUT/masks/<key>_<i>.png    optional: object i's share of each blurry pixel (i = 1..n, 0-255)
    OUT/kernels/<key>.npz      optional: "kernels" (n + 1, K, K) float32, camera first; "infos"
    OUT/train_list.txt         "sharp/<key>.png blurry/<key>.png" per line, sorted by key
    OUT/segblur.jsonl          the manifest: one record per item (ok or failed)

``train_list.txt`` follows SRN-Deblur's list convention (and SBDD's
``generate_training_lists.py``): sharp path first, then blurry, relative to ``OUT``.

Every output is written under a temporary name and renamed when complete; an item's manifest
record is written after its files, so it marks the item done: a re-run skips items already
done (same seed and parameters) and redoes any other. Items run in a local process pool
(``workers``); each draws only from ``item_rng(seed, key, "segblur")``, so the bytes written
do not depend on the number of workers or the order items finish in.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cv2
import numpy as np

from .clips import read_image
from .errors import BlursynthError, InputFileError, OutputError, ParameterError
from .files import atomic_path, atomic_write_text, file_identity
from .log import progress
from .manifest import base_record, run_manifest
from .segblur import STAGE, SegParams, segblur_item
from .segmasks import ItemError, SegItem
from .seeding import item_rng

__all__ = ["MANIFEST", "TRAIN_LIST", "item_outputs", "segblur"]

log = logging.getLogger(__name__)

#: Manifest file name inside the output folder.
MANIFEST = "segblur.jsonl"
#: Training list file name inside the output folder.
TRAIN_LIST = "train_list.txt"
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]
_IN_FLIGHT = 2  # items queued per worker: keeps workers busy without holding every mask
PathLike = str | os.PathLike


# -- outputs -------------------------------------------------------------------------------


def item_outputs(key: str, params: SegParams, objects: int) -> dict:
    """Output paths of an item, relative to the output folder (POSIX strings).

    Returns
    -------
    dict
        ``sharp``, ``blurry``; ``masks`` (a list, one per object, with ``save_masks``);
        ``kernels`` (with ``save_kernels``).
    """
    out = {"sharp": f"sharp/{key}.png", "blurry": f"blurry/{key}.png"}
    if params.save_masks:
        out["masks"] = [f"masks/{key}_{i}.png" for i in range(1, objects + 1)]
    if params.save_kernels:
        out["kernels"] = f"kernels/{key}.npz"
    return out


def _flat(outputs: dict) -> list[str]:
    return [p for v in outputs.values() for p in (v if isinstance(v, list) else [v])]


def _save_png(path: Path, img: np.ndarray) -> None:
    """Write uint8 RGB or grey `img` as PNG, atomically."""
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    with atomic_path(path, suffix=".png") as tmp:
        try:
            ok = cv2.imwrite(str(tmp), bgr, _PNG)
        except cv2.error as exc:
            raise OutputError(path, f"cannot write PNG: {exc}") from None
        if not ok:
            raise OutputError(path, "cannot write PNG (OpenCV refused)")


def _save_kernels(path: Path, kernels: np.ndarray, infos: list[dict]) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, kernels=kernels, infos=np.array([json.dumps(i) for i in infos]))


def _check_key(key) -> str | None:
    """Why `key` cannot name output files, or None."""
    if not isinstance(key, str) or not key:
        return f"expected a non-empty file name as the item key, got {key!r}"
    if "/" in key or "\\" in key or "\0" in key or key.startswith("."):
        return f"the item key {key!r} cannot name an output file (a path separator or a " \
               "leading dot)"
    return None


# -- one item (runs in a worker) -----------------------------------------------------------


def _render(item: SegItem, out: str, params: SegParams, seed: int) -> tuple[str, dict]:
    """Render and write one item: ``("ok", facts)`` or ``("failed", {"error": message})``.

    Errors come back as text: blursynth's exceptions take (path, problem) and would not
    survive pickling between processes.
    """
    try:
        rgb = read_image(item.image)
        ident = file_identity(item.image)
        res = segblur_item(item, rgb, params, item_rng(seed, item.key, STAGE))
        root = Path(out)
        outputs = item_outputs(item.key, params, len(res.facts["kernels"]) - 1)
        for i, rel in enumerate(outputs.get("masks", [])):  # the images last: they mark done
            _save_png(root / rel, np.rint(np.clip(res.coverage[i], 0, 1) * 255).astype(np.uint8))
        if "kernels" in outputs:
            _save_kernels(root / outputs["kernels"], res.kernels, res.facts["kernels"])
        _save_png(root / outputs["sharp"], res.sharp)
        _save_png(root / outputs["blurry"], res.blurry)
    except (InputFileError, OutputError) as e:  # their messages name the file
        return "failed", {"input": {"path": str(item.image)}, "error": str(e)}
    except BlursynthError as e:
        return "failed", {"input": {"path": str(item.image)}, "error": f"{item.image}: {e}"}
    return "ok", {"input": ident, "source": item.meta, "outputs": outputs, **res.facts}


# -- the driver ----------------------------------------------------------------------------


class _Job:
    """The manifest, resume checks and totals of one run."""

    def __init__(self, out: Path, params: SegParams, seed: int, overwrite: bool):
        self.out = out
        self.params, self.seed = params.to_dict(), int(seed)
        self.manifest = run_manifest(out / MANIFEST, self.params, self.seed,
                                     overwrite=overwrite, what="items")
        self.done: list[str] = []
        self.resumed: list[str] = []
        self.failed: list[dict] = []

    def finished(self, key: str) -> bool:
        rec = self.manifest.done(key)
        if rec is not None and all((self.out / p).exists() for p in _flat(rec["outputs"])):
            self.resumed.append(key)
            return True
        return False

    def record(self, key: str, status: str, facts: dict) -> None:
        self.manifest.append({**base_record(STAGE, key, self.params, self.seed),
                              "status": status, **facts})
        if status == "ok":
            self.done.append(key)
        else:
            self.failed.append({"item": key, "error": facts["error"]})
            log.error("%s", facts["error"])

    def write_list(self) -> Path:
        """``train_list.txt`` from every item done (now or before), sorted by key."""
        keys = sorted({r["item"] for r in self.manifest.records() if r.get("status") == "ok"})
        lines = []
        for key in keys:
            o = self.manifest.done(key)["outputs"]
            if (self.out / o["sharp"]).exists() and (self.out / o["blurry"]).exists():
                lines.append(f"{o['sharp']} {o['blurry']}\n")
        path = self.out / TRAIN_LIST
        atomic_write_text(path, "".join(lines))
        return path


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes that start clean: no forked copy of the parent's OpenMP/numba
    threads (forkserver where available, else spawn)."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["blursynth.segblur_files"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def segblur(source: Iterable[SegItem | ItemError], out_dir: PathLike,
            params: SegParams | None = None, seed: int = 0, *, workers: int = 1,
            overwrite: bool = False, show_progress: bool | None = None) -> dict:
    """Render every item of a mask source into blurry/sharp pairs, resumably.

    Parameters
    ----------
    source : iterable of SegItem or ItemError
        A :mod:`blursynth.segmasks` source (``CocoSource``, ``MaskFolderSource``,
        ``PlainSource``) or any iterable of items; an :class:`~blursynth.segmasks.ItemError`
        is recorded as a failed item.
    out_dir : path
        Output folder (layout in the module docstring).
    params : SegParams, optional
        Default ``SegParams()`` (layered, gp kernels, srgb, reflect borders).
    seed : int
        Run seed >= 0; item ``key`` draws from ``item_rng(seed, key, "segblur")`` only.
    workers : int
        Processes rendering items (1: in this process). The output bytes are the same for
        any number.
    overwrite : bool
        Forget the manifest and redo every item (outputs replaced atomically).
    show_progress : bool or None
        Progress bar (None: when stderr is a terminal and not quiet).

    Returns
    -------
    dict
        ``out``, ``manifest``, ``train_list`` (paths), ``done`` / ``resumed`` (keys rendered
        now / skipped as done before), ``failed`` (``{"item", "error"}``), ``report`` (the
        source's counts, e.g. ``skipped_no_objects``; empty if it keeps none), ``seconds``.

    Raises
    ------
    ParameterError
        A bad seed or worker count, or `out_dir` holds items made with another seed or
        other parameters (and not `overwrite`); raised before anything is written.
    OutputError
        The manifest or the training list cannot be written.
    BlursynthError
        A worker process died (what was finished is kept and resumes).

    Notes
    -----
    Manifest records hold ``params``, ``seed``, ``item`` (the key), ``input`` (the photo's
    path, size, time and SHA-256), ``source`` (the item's meta: annotation ids, categories,
    ...), ``model``, ``crf``, ``illumination`` (the factor), ``kernels`` (one info per
    kernel, camera first: :func:`blursynth.shake.kernel_from_info` regenerates it),
    ``objects``, ``size`` and ``output_size`` ([H, W]), ``saturated`` and ``outputs``; a
    failed item's record holds ``error``. A failure (an unreadable photo, masks of another
    size, an ``ItemError`` of the source) is recorded and the batch goes on.
    """
    t0 = time.perf_counter()
    p = params or SegParams()
    if not isinstance(p, SegParams):
        raise ParameterError(f"params: expected a SegParams, got {type(p).__name__}")
    item_rng(seed, "", STAGE)  # validates the seed before any side effect
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers: expected an integer >= 1, got {workers!r}")
    out = Path(out_dir)
    job = _Job(out, p, seed, overwrite)
    total = len(source) if hasattr(source, "__len__") else None
    bar = progress(total=total, desc="segblur", unit="image",
                   disable=None if show_progress is None else not show_progress)
    pool = _pool(workers) if workers > 1 else None
    pending: dict[Future, str] = {}

    def collect(futures) -> None:
        for f in futures:
            job.record(pending.pop(f), *f.result())
            bar.update()

    try:
        with bar:
            for obj in source:
                if isinstance(obj, ItemError):
                    job.record(str(obj.key), "failed", {"input": {"path": str(obj.path)},
                                                        "error": str(obj)})
                    bar.update()
                    continue
                if not isinstance(obj, SegItem):
                    raise ParameterError(f"source: expected SegItem or ItemError items, got "
                                         f"{type(obj).__name__}")
                why = _check_key(obj.key)
                if why:
                    job.record(str(obj.key), "failed", {"input": {"path": str(obj.image)},
                                                        "error": f"{obj.image}: {why}"})
                elif job.finished(obj.key):
                    pass
                elif pool is None:
                    job.record(obj.key, *_render(obj, str(out), p, seed))
                else:
                    pending[pool.submit(_render, obj, str(out), p, seed)] = obj.key
                    if len(pending) >= _IN_FLIGHT * workers:
                        collect(wait(pending, return_when=FIRST_COMPLETED).done)
                    continue  # counted when collected
                bar.update()
            collect(list(pending))
    except BrokenProcessPool:
        raise BlursynthError(
            f"segblur {out}: a worker process stopped abruptly (killed, out of memory, or a "
            "script the workers cannot re-import, such as one read from stdin); the items "
            "finished so far are kept: run again to resume") from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    listing = job.write_list()
    return {"out": str(out), "manifest": str(job.manifest.path), "train_list": str(listing),
            "done": job.done, "resumed": job.resumed, "failed": job.failed,
            "report": dict(getattr(source, "report", {}) or {}),
            "seconds": round(time.perf_counter() - t0, 3)}
