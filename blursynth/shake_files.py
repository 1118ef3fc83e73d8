"""The shake stage over files: images, clip folders and native LMDBs.

Drivers around the cores of :mod:`blursynth.shake`; each is resumable, writes atomically,
appends one manifest record per item, and records failed items and goes on:

- :func:`shake_images`: images or folders of images -> PNGs + ``OUT/shake.jsonl``;
- :func:`shake_clips`: clips (:func:`blursynth.clips.find_clips`) -> ``OUT/NAME_blurry/`` and
  ``OUT/NAME_sharp/`` PNG folders (only blurry frames are shaken) + ``OUT/shake.jsonl``; a
  clip is one burst (``per_frame=False``: one kernel for the whole clip);
- :func:`shake_lmdb`: native LMDB -> native LMDB; each record's ``meta["shake"]`` holds the
  kernel infos, sharp frames are kept (byte for byte with ``border="reflect"``); manifest
  ``DST.shake.jsonl`` beside the output;
- :func:`shake`: classify inputs and call the drivers above (the command line's one call).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import msgpack
import numpy as np

from .clips import IMAGE_EXTS, Clip, collect_clips, read_image
from .errors import BlursynthError, InputFileError, OutputError, ParameterError
from .files import atomic_path, file_identity, is_inside, link_or_copy
from .log import progress
from .manifest import base_record, run_manifest
from .seeding import item_rng
from .shake import (
    STAGE, BurstKernels, ShakeParams, crop_margin, plan_kernels, resolve_crf, shake_burst,
    shake_frame, shake_margin, shake_sample,
)

__all__ = ["MANIFEST", "KINDS", "input_kind", "shake_images", "shake_clips", "shake_lmdb",
           "lmdb_manifest_path", "shake"]

log = logging.getLogger(__name__)

#: Manifest of image and clip outputs, inside the output folder.
MANIFEST = "shake.jsonl"
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]
PathLike = str | os.PathLike


# -- files ---------------------------------------------------------------------------------


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG to `path` (a temporary name: callers rename)."""
    try:
        ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _PNG)
    except cv2.error as exc:
        raise OutputError(path, f"cannot write PNG: {exc}") from None
    if not ok:
        raise OutputError(path, "cannot write PNG (OpenCV refused)")


def _save_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        _write_png(tmp, rgb)


class _Job:
    """One driver run: manifest records, resume checks and totals."""

    def __init__(self, manifest: Path, params: ShakeParams, seed: int, overwrite: bool,
                 out: Path):
        self.params, self.seed = params.to_dict(), int(seed)
        self.manifest = run_manifest(manifest, self.params, self.seed, overwrite=overwrite,
                                     what="items shaken", out=out)
        self.done: list[str] = []
        self.resumed: list[str] = []
        self.failed: list[dict] = []

    def finished(self, key: str, outputs: Iterable[Path]) -> bool:
        rec = self.manifest.done(key)
        if rec is not None and all(p.exists() for p in outputs):
            self.resumed.append(key)
            return True
        return False

    def fail(self, key: str, exc: Exception) -> None:
        self.failed.append({"item": key, "error": str(exc)})
        self.manifest.append({**base_record(STAGE, key, self.params, self.seed),
                              "status": "failed", "error": str(exc)})
        log.error("%s", exc)

    def ok(self, key: str, **facts) -> None:
        self.manifest.append({**base_record(STAGE, key, self.params, self.seed),
                              "status": "ok", **facts})
        self.done.append(key)

    def result(self, out: Path, t0: float, **extra) -> dict:
        return {"out": str(out), "manifest": str(self.manifest.path), "done": self.done,
                "resumed": self.resumed, "failed": self.failed,
                "seconds": round(time.perf_counter() - t0, 3), **extra}


def _bar(items: list, desc: str, unit: str, show_progress: bool | None):
    return progress(items, desc=desc, unit=unit,
                    disable=None if show_progress is None else not show_progress)




# -- images --------------------------------------------------------------------------------


def _image_items(inputs: Iterable[PathLike], out_dir: Path) -> tuple[list, list]:
    """``(key, path)`` per image (key: output path relative to `out_dir`, ``.png``), and
    ``(key, error)`` for inputs that cannot be taken."""
    items, bad, seen = [], [], {}
    for p in map(Path, inputs):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.suffix.lower() in IMAGE_EXTS and not is_inside(f, out_dir)
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                bad.append((str(p), InputFileError(p, f"holds no images ({' '.join(IMAGE_EXTS)})")))
            pairs = [(f.relative_to(p).with_suffix(".png").as_posix(), f) for f in files]
        else:
            pairs = [(Path(p.name).with_suffix(".png").as_posix(), p)]
        for key, f in pairs:
            if key in seen:
                bad.append((str(f), InputFileError(f, f"its output {key} is also the output of "
                                                      f"{seen[key]}; shake them separately")))
                continue
            seen[key] = f
            items.append((key, f))
    return items, bad


def shake_images(inputs: Iterable[PathLike], out_dir: PathLike,
                 params: ShakeParams | None = None, seed: int = 0, *,
                 overwrite: bool = False, show_progress: bool | None = None) -> dict:
    """Shake images: one PNG per input image, kernels recorded in ``OUT/shake.jsonl``.

    Parameters
    ----------
    inputs : iterable of path
        Image files (any format :func:`blursynth.clips.read_image` reads) or folders, searched
        recursively for ``.png``, ``.jpg``, ... files (hidden ones and `out_dir` skipped).
    out_dir : path
        Output folder: ``NAME.png`` for a file given directly, the relative path (with
        ``.png``) for a file found in a folder. That relative name is also the item key of
        the random stream, so an image gets the same kernel wherever the input folder lives.
    params : ShakeParams, optional
        Default :class:`ShakeParams` (``crf`` None means srgb: image files carry no CRF).
    seed : int
        Run seed.
    overwrite : bool
        Start again: forget the manifest and redo every image (outputs replaced atomically).
    show_progress : bool or None
        Progress bar (None: when stderr is a terminal and not quiet).

    Returns
    -------
    dict
        ``out``, ``manifest``, ``done`` / ``resumed`` (item keys shaken now / skipped as
        already done), ``failed`` (``{"item", "error"}``), ``seconds``.

    Raises
    ------
    ParameterError
        `out_dir` holds items shaken with other parameters (and not `overwrite`).
    OutputError
        An output or the manifest cannot be written.
    """
    t0 = time.perf_counter()
    p = params or ShakeParams()
    out = Path(out_dir)
    job = _Job(out / MANIFEST, p, seed, overwrite, out)
    items, bad = _image_items(inputs, out)
    for key, exc in bad:
        job.fail(key, exc)
    crf = resolve_crf(p)
    for key, path in _bar(items, "shake images", "image", show_progress):
        target = out / key
        if job.finished(key, [target]):
            continue
        try:
            if target.exists() and target.resolve() == path.resolve():
                raise InputFileError(path, "the output would overwrite this input; choose "
                                           "another output folder")
            img = read_image(path)
            ident = file_identity(path)
            frames, infos = shake_burst(img[None], p, item_rng(seed, key, STAGE), crf)
            _save_png(target, frames[0])
        except BlursynthError as e:
            job.fail(key, e)
            continue
        job.ok(key, input=ident, output=str(target), size=list(frames.shape[1:3]),
               crf=crf.spec, margin=shake_margin(p), kernels=infos)
    return job.result(out, t0)


# -- clips ---------------------------------------------------------------------------------


def _png_frames(folder: Path) -> list[Path] | None:
    """A folder clip's frame files in clip order, if all are PNG (then they can be linked)."""
    files = sorted(f for f in folder.iterdir()
                   if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."))
    return files if files and all(f.suffix.lower() == ".png" for f in files) else None




def _shake_clip(clip: Clip, out: Path, p: ShakeParams, seed: int) -> dict:
    crf = resolve_crf(p, clip.crf)
    m = shake_margin(p)
    if min(clip.height, clip.width) <= 2 * m:
        raise InputFileError(clip.blurry, f"frames of {clip.height}x{clip.width} are too small "
                                          f"for border='valid' with a {m} px margin")
    infos = plan_kernels(p, item_rng(seed, clip.name, STAGE), clip.n_frames)
    kernels = BurstKernels(infos)
    linkable = None if clip.is_video or m else _png_frames(clip.sharp)
    if linkable is not None and len(linkable) != clip.n_frames:
        linkable = None
    with atomic_path(out / f"{clip.name}_sharp", suffix="") as tmp_s, \
            atomic_path(out / f"{clip.name}_blurry", suffix="") as tmp_b:
        tmp_s.mkdir()
        tmp_b.mkdir()
        for i, blurry, sharp in clip.frames():
            name = f"{i:06d}.png"
            _write_png(tmp_b / name, shake_frame(blurry, kernels[i], crf, p.border, m))
            if linkable is not None:  # lossless already: link (or copy) the file
                link_or_copy(linkable[i], tmp_s / name)
            else:
                _write_png(tmp_s / name, crop_margin(sharp, m))
    return {"clip": {"blurry": str(clip.blurry), "sharp": str(clip.sharp),
                     "frames": clip.n_frames, "size": [clip.height, clip.width]},
            "size": [clip.height - 2 * m, clip.width - 2 * m], "crf": crf.spec, "margin": m,
            "exposure": clip.exposure, "source_frames": clip.source_frames, "kernels": infos}


def shake_clips(inputs: Iterable[PathLike], out_dir: PathLike,
                params: ShakeParams | None = None, seed: int = 0, *,
                overwrite: bool = False, show_progress: bool | None = None) -> dict:
    """Shake the blurry frames of clips into ``NAME_blurry/`` + ``NAME_sharp/`` PNG folders.

    Parameters
    ----------
    inputs : iterable of path
        Clips or folders of clips (:func:`blursynth.clips.find_clips`: flowblur videos,
        ``--frames`` folders, ``blurry/`` + ``sharp/`` pair folders).
    out_dir : path
        Output folder (not inside an input folder): ``NAME_blurry/NNNNNN.png`` (shaken) and
        ``NAME_sharp/NNNNNN.png`` (the sharp frames: hard-linked, else copied, when they are
        PNG files already and no margin is cropped; decoded and written otherwise).
    params : ShakeParams, optional
        ``crf`` None: each clip's own (flowblur's manifest), else srgb.
    seed : int
        Run seed; the clip name is the item key. A clip is one burst: ``per_frame=False``
        gives one kernel for the whole clip, and the kernel size is drawn once per clip.
    overwrite, show_progress
        As :func:`shake_images`.

    Returns
    -------
    dict
        As :func:`shake_images` (item keys are clip names), plus ``frames`` (shaken now).

    Raises
    ------
    ParameterError
        `out_dir` is inside an input folder, or holds clips shaken with other parameters.
    OutputError
        An output or the manifest cannot be written.

    Notes
    -----
    Each clip's two folders are written under temporary names and renamed when complete;
    its manifest record (with one kernel info per frame) follows them, so an interrupted run
    redoes only the clip it was in.
    """
    t0 = time.perf_counter()
    p = params or ShakeParams()
    out = Path(out_dir)
    inputs = [Path(x) for x in inputs]
    for x in inputs:
        if x.is_dir() and is_inside(out, x):
            raise ParameterError(f"out: {out} is inside the input folder {x}; a later run would "
                                 "take its outputs as clips: choose a folder outside it")
    job = _Job(out / MANIFEST, p, seed, overwrite, out)
    clips, errors = collect_clips(inputs)
    for path, e in errors:
        job.fail(path, e)
    frames = 0
    for clip in _bar(clips, "shake clips", "clip", show_progress):
        outputs = [out / f"{clip.name}_blurry", out / f"{clip.name}_sharp"]
        if job.finished(clip.name, outputs):
            continue
        try:
            if any(o.resolve() in (clip.blurry.resolve(), clip.sharp.resolve()) for o in outputs):
                raise InputFileError(clip.blurry, "the output would overwrite this clip; choose "
                                                  "another output folder")
            facts = _shake_clip(clip, out, p, seed)
        except BlursynthError as e:
            job.fail(clip.name, e)
            continue
        job.ok(clip.name, outputs=[str(o) for o in outputs], **facts)
        frames += clip.n_frames
    return job.result(out, t0, frames=frames)


# -- native LMDB ---------------------------------------------------------------------------


def lmdb_manifest_path(dst: PathLike) -> Path:
    """The manifest of a shaken LMDB: ``<dst>.shake.jsonl`` beside it."""
    dst = Path(dst)
    return dst.with_name(dst.name + ".shake.jsonl")


def _keep_sharp(encoded: bytes, source: bytes) -> bytes:
    """`encoded` with the sharp frame bytes of the `source` record (no JPEG re-encoding)."""
    new = msgpack.unpackb(encoded, raw=False)
    new["sharp"] = msgpack.unpackb(source, raw=False)["sharp"]
    return msgpack.packb(new, use_bin_type=True)  # key order kept: frames stay last


def shake_lmdb(src: PathLike | Iterable[PathLike], dst: PathLike,
               params: ShakeParams | None = None, seed: int = 0, *,
               shard_size: int | None = None, workers: int = 2, overwrite: bool = False,
               show_progress: bool | None = None) -> dict:
    """Shake the blurry frames of a native LMDB into a new native LMDB.

    Parameters
    ----------
    src : path or iterable of paths
        Native LMDB(s) (:class:`blursynth.formats.native_lmdb.NativeLmdbReader`); sample ids
        must be unique across them.
    dst : path
        Output LMDB (``OUT.lmdb``), written with the source's encoding and quality; its
        ``__meta__["meta"]`` holds ``shake`` (the parameters), ``seed``, ``source`` (paths) and
        ``source_meta`` (the source's run description).
    params : ShakeParams, optional
        ``crf`` None: each record's ``meta["crf"]``, else srgb.
    seed : int
        Run seed; the sample id is the item key.
    shard_size : int, optional
        Records per output shard (``OUT-00000.lmdb``, ...); default one database.
    workers : int
        Encoding threads of the writer.
    overwrite : bool
        Delete a previous output at `dst` (and its manifest) first; default resume it.
    show_progress : bool or None
        Progress bar over samples.

    Returns
    -------
    dict
        ``out``, ``manifest``, ``done`` (ids shaken now), ``resumed`` (ids already in `dst`),
        ``failed`` (``{"item", "error"}`` per sample that could not be read or shaken),
        ``seconds``.

    Raises
    ------
    InputFileError
        `src` is not a native LMDB.
    ParameterError
        `dst` is `src`, or `dst` was written with other parameters or options.
    OutputError
        The output cannot be written (what was committed stays).

    Notes
    -----
    Records keep their id, ref and meta; ``meta["shake"]`` is added (:func:`shake_sample`).
    With ``border="reflect"`` the sharp frames are stored exactly as in the source (for JPEG
    the source's bytes are copied, so they are not re-encoded); with ``"valid"`` they are
    cropped like the blurry ones. The output's ids are the resume marker: a re-run skips
    the ids already committed. The manifest ``DST.shake.jsonl`` gets a record per failed
    sample and one summary record per completed run.
    """
    from .formats.native_lmdb import NativeLmdbReader, NativeLmdbWriter, encode_sample

    t0 = time.perf_counter()
    p = params or ShakeParams()
    dst = Path(dst)
    man = lmdb_manifest_path(dst)
    with NativeLmdbReader(src) as reader:
        if any(_same(dst, x) for x in reader.paths):
            raise ParameterError(f"dst: {dst} is the source LMDB; write to another path")
        if overwrite and man.exists():
            man.unlink()
        job = _Job(man, p, seed, False, dst)
        meta = reader.meta
        enc = meta["encoding"]
        # Absolute source paths: a resume from another folder must find the same meta.
        run_meta = {"shake": p.to_dict(), "seed": int(seed),
                    "source": [str(x.resolve()) for x in reader.paths],
                    "source_meta": meta.get("meta")}
        keep_bytes = enc == "jpeg" and shake_margin(p) == 0
        ids = reader.ids()
        with NativeLmdbWriter(dst, encoding=enc, quality=meta.get("quality") or 95,
                              png_level=meta.get("png_level") or 1, shard_size=shard_size,
                              meta=run_meta, workers=0 if keep_bytes else workers,
                              resume=True, overwrite=overwrite) as writer:
            for i in _bar(range(len(ids)), "shake lmdb", "sample", show_progress):
                sid = ids[i]
                if writer.has(sid):
                    job.resumed.append(sid)
                    continue
                try:
                    new = shake_sample(reader[i], p, seed)
                    if keep_bytes:
                        writer.add_encoded(_keep_sharp(
                            encode_sample(new, enc, writer.quality), reader.raw(i)))
                    else:
                        writer.add(new)
                except BlursynthError as e:
                    job.fail(sid, e)
                    continue
                job.done.append(sid)
    job.manifest.append({**base_record(STAGE, ",".join(run_meta["source"]), job.params, seed),
                         "status": "ok", "output": str(dst), "shaken": len(job.done),
                         "resumed": len(job.resumed), "failed": len(job.failed)})
    return job.result(dst, t0)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# -- dispatch ------------------------------------------------------------------------------

#: Input kinds of :func:`shake`: name -> description.
KINDS = {
    "images": "image files, or folders searched recursively for images",
    "clips": "NAME_blurry.mp4 files, or folders of clips (flowblur outputs, NAME_blurry/ + "
             "NAME_sharp/ or blurry/ + sharp/ folders)",
    "lmdb": "native LMDBs (OUT.lmdb, or the name of a sharded one)",
}


def _has_clips(folder: Path) -> bool:
    if (folder / "blurry").is_dir():
        return True
    return any(True for _ in folder.rglob("*_blurry.mp4")) or \
        any(d.is_dir() for d in folder.rglob("*_blurry"))


def input_kind(path: PathLike) -> str:
    """What an input is: ``"lmdb"``, ``"clips"`` or ``"images"`` (see :data:`KINDS`).

    An LMDB directory (``data.mdb`` inside) or the name of a sharded native LMDB is
    ``lmdb``; a ``NAME_blurry.mp4`` file, or a folder holding ``blurry/``, ``*_blurry/`` or
    ``*_blurry.mp4``, is ``clips``; anything else (image files, image folders, missing or
    unreadable paths, which then fail as images) is ``images``.
    """
    from .formats.native_lmdb import find_envs

    p = Path(path)
    if p.is_dir() and (p / "data.mdb").is_file():
        return "lmdb"
    if not p.exists():
        try:
            if find_envs(p)[0]:
                return "lmdb"
        except InputFileError:
            pass
    if p.is_file() and p.name.endswith("_blurry.mp4"):
        return "clips"
    if p.is_dir() and _has_clips(p):
        return "clips"
    return "images"


def shake(inputs: Iterable[PathLike], *, out: PathLike | None = None,
          lmdb_out: PathLike | None = None, params: ShakeParams | None = None, seed: int = 0,
          kind: str = "auto", overwrite: bool = False,
          show_progress: bool | None = None) -> dict:
    """Shake any mix of images, clips and native LMDBs (what ``blursynth shake`` calls).

    Parameters
    ----------
    inputs : iterable of path
        Classified by :func:`input_kind` (or all taken as `kind`).
    out : path, optional
        Output folder of images and clips (required if there are any).
    lmdb_out : path, optional
        Output LMDB for the LMDB inputs (required if there are any; all of them go into it).
    params, seed, overwrite, show_progress
        As the drivers.
    kind : {"auto", "images", "clips", "lmdb"}
        Take every input as this kind instead of classifying.

    Returns
    -------
    dict
        ``images``, ``clips``, ``lmdb``: each driver's result, or None if it had no input;
        ``failed``: every failure of all of them.

    Raises
    ------
    ParameterError
        An unknown kind, or inputs of a kind whose output was not given (before any work).
    """
    if kind != "auto" and kind not in KINDS:
        raise ParameterError(f"kind: expected auto or one of {', '.join(KINDS)}, got {kind!r}")
    groups: dict[str, list[Path]] = {k: [] for k in KINDS}
    for x in map(Path, inputs):
        groups[input_kind(x) if kind == "auto" else kind].append(x)
    if (groups["images"] or groups["clips"]) and out is None:
        raise ParameterError("out: images and clips need an output folder (--out DIR)")
    if groups["lmdb"] and lmdb_out is None:
        raise ParameterError("lmdb_out: LMDB inputs need an output LMDB (--lmdb-out OUT.lmdb)")
    p = params or ShakeParams()
    opts = dict(seed=seed, show_progress=show_progress)
    # Images and clips share the folder's manifest: only the first driver starts it again.
    res = {
        "images": shake_images(groups["images"], out, p, overwrite=overwrite, **opts)
        if groups["images"] else None,
        "clips": shake_clips(groups["clips"], out, p,
                             overwrite=overwrite and not groups["images"], **opts)
        if groups["clips"] else None,
        "lmdb": None,
    }
    if groups["lmdb"]:
        try:
            res["lmdb"] = shake_lmdb(groups["lmdb"], lmdb_out, p, overwrite=overwrite, **opts)
        except InputFileError as e:  # a source that is no native LMDB: report it like an item
            log.error("%s", e)
            res["lmdb"] = {"out": str(lmdb_out), "manifest": str(lmdb_manifest_path(lmdb_out)),
                           "done": [], "resumed": [], "seconds": 0.0,
                           "failed": [{"item": e.path, "error": str(e)}]}
    res["failed"] = [f for r in res.values() if r for f in r["failed"]]
    return res
