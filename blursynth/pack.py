"""pack: sample clips into a training dataset (native LMDB, compatibility LMDBs, folder layouts).

Burst formats (``native``, ``tensorpack``) store :class:`~blursynth.sampling.Sample` bursts
with shared crops; run formats (``basicsr`` and the trainer folder layouts of
:data:`blursynth.formats.layouts.LAYOUTS`) store whole frames of the filtered runs, since
those trainers crop on the fly.

Every clip gets a record in the manifest ``<OUT>.pack.jsonl`` beside the output: the
parameters, how many candidates each filter rejected, what was written, or why the clip failed.
A clip's record is appended only once its samples are committed, so a re-run skips finished
clips and the writers skip samples already present: an interrupted run resumes without
duplicates or gaps and ends with the same dataset as an uninterrupted one.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from .clips import Clip, collect_clips
from .errors import BlursynthError, ParameterError
from .log import progress
from .manifest import Manifest, base_record, read_manifest
from .sampling import SampleParams, frame_runs, sample_bursts

__all__ = ["BURST_FORMATS", "formats", "manifest_path", "pack", "tensorpack_defaults"]

log = logging.getLogger(__name__)

STAGE = "pack"
#: Formats that store sampled bursts; every other format stores whole-frame runs.
BURST_FORMATS = {
    "native": "blursynth's LMDB: msgpack records of PNG/JPEG/raw bursts with provenance",
    "tensorpack": "learning-blind-motion-deblurring's 2017 LMDB: 5 blurry + 5 sharp JPEGs",
}


def _run_formats() -> dict[str, str]:
    from .formats.layouts import LAYOUTS
    return {"basicsr": "BasicSR paired LMDBs (blur.lmdb, sharp.lmdb) with meta_info.txt",
            **{k: v.description for k, v in LAYOUTS.items()}}


def formats() -> dict[str, str]:
    """Every output format: name -> one-line description."""
    return {**BURST_FORMATS, **_run_formats()}


def manifest_path(out: str | os.PathLike) -> Path:
    """The manifest of a pack output: ``<out>.pack.jsonl`` beside it (never inside, where
    a trainer's loader would trip over a stray file)."""
    out = Path(out)
    return out.with_name(out.name + ".pack.jsonl")


def tensorpack_defaults(params: SampleParams) -> SampleParams:
    """`params` with what the learning-blind-motion-deblurring reader needs: 5 frames, the
    last as reference, 512x512 patches (it drops patches under 306x306)."""
    return SampleParams(**{**params.to_dict(), "frames": 5, "ref": "last", "patch": (512, 512)})


def _open_writer(fmt: str, out: Path, *, encoding: str, quality: int, shard_size: int | None,
                 workers: int, meta: dict):
    if fmt == "native":
        from .formats.native_lmdb import NativeLmdbWriter
        return NativeLmdbWriter(out, encoding=encoding, quality=quality, shard_size=shard_size,
                                workers=workers, meta=meta, resume=True)
    from .formats.tensorpack_lmdb import TensorpackLmdbWriter
    return TensorpackLmdbWriter(out, quality=quality, workers=workers, resume=True)


def _write_runs(fmt: str, runs: list, out: Path, split: str, name: str | None) -> dict:
    if fmt == "basicsr":
        from .formats.basicsr_lmdb import write_basicsr_lmdb
        return write_basicsr_lmdb(runs, out)
    from .formats.layouts import write_layout
    return write_layout(fmt, runs, out, split=split, name=name)


def _needs_video(fmt: str) -> bool:
    """Whether a run format's trainer reads consecutive frames (clips of several frames)."""
    from .formats.layouts import LAYOUTS
    return fmt in LAYOUTS and LAYOUTS[fmt].min_frames > 1


def _remove_output(out: Path, man: Path) -> None:
    """Delete a previous pack output (refusing anything pack did not write)."""
    if not man.is_file():
        raise ParameterError(f"{out}: exists and has no pack manifest ({man.name}); refusing "
                             "to delete what blursynth did not write")
    for p in [out, *out.parent.glob(f"{out.stem}-[0-9][0-9][0-9][0-9][0-9]{out.suffix}")]:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    man.unlink()


def pack(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *, fmt: str = "native",
         params: SampleParams | None = None, seed: int = 0, encoding: str = "png",
         quality: int = 95, shard_size: int | None = None, workers: int = 2,
         split: str = "train", name: str | None = None, overwrite: bool = False,
         show_progress: bool | None = None) -> dict:
    """Sample clips into a dataset.

    Parameters
    ----------
    inputs : iterable of path
        Clip files or folders (see :func:`blursynth.clips.find_clips`).
    out : path
        The LMDB (``native``, ``tensorpack``), the BasicSR folder, or the layout's root folder.
    fmt : str
        One of :func:`formats`.
    params : SampleParams, optional
        Burst length, crops and filter thresholds (run formats use only the filters).
    seed : int
        Run seed; each clip draws from its own stream, so the dataset does not depend on the
        other inputs, the worker count or interruptions.
    encoding : {'png', 'jpeg', 'raw'}
        Frame encoding of the native LMDB.
    quality : int
        JPEG quality (``jpeg`` encoding and ``tensorpack``).
    shard_size : int, optional
        Native LMDB: records per shard (``OUT-00000.lmdb``, ...); default one database.
    workers : int
        Encoding threads of the LMDB writers (raw frames are copied without threads).
    split : str
        Split folder of the layouts (``train``, ``test``, ...).
    name : str, optional
        Dataset name inside a layout's tree (``dvd``: ``{split}_{name}``; ``afb``: the root
        folder, default ``b-aist++``, which selects the consumer's reader).
    overwrite : bool
        Delete a previous output of pack at `out` first (otherwise it is resumed).
    show_progress : bool or None
        Progress bar over clips (None: when stderr is a terminal and not quiet).

    Returns
    -------
    dict
        ``out``, ``manifest``, ``format``, ``done`` (clip names packed now), ``resumed``
        (clip names already packed before), ``failed`` (list of ``{"clip", "error"}``),
        ``written`` (samples, or the frames in the written tree for run formats), ``report`` (the filters' counts
        summed over clips, see :func:`blursynth.sampling.sample_bursts`), ``seconds``.

    Raises
    ------
    ParameterError
        Unknown format or encoding, or `out` holds a pack output made with other parameters.
    OutputError
        The output cannot be written (disk full, permission, ...): what was committed stays.
    """
    t0 = time.perf_counter()
    p = params or SampleParams()
    known = formats()
    if fmt not in known:
        raise ParameterError(f"format: expected one of {', '.join(known)}, got {fmt!r}")
    if encoding not in ("png", "jpeg", "raw"):
        raise ParameterError(f"encoding: expected png, jpeg or raw, got {encoding!r}")
    out = Path(out)
    man_path = manifest_path(out)
    if overwrite and (out.exists() or man_path.exists()):
        _remove_output(out, man_path)
    run_params = {"format": fmt, "sampling": p.to_dict(), "seed": seed, "split": split,
                  "name": name,
                  **({"encoding": encoding, "quality": quality, "shard_size": shard_size}
                     if fmt in BURST_FORMATS else {})}
    previous = [r for r in read_manifest(man_path, missing_ok=True) if r.get("status") == "ok"]
    if previous and previous[-1].get("params") != run_params:
        raise ParameterError(
            f"{out}: was packed with other parameters (see {man_path}); pass --overwrite to "
            "start again, or choose another output")
    job = _Job(Manifest(man_path), run_params, seed)
    clips, errors = collect_clips(inputs)
    for path, e in errors:
        job.fail(path, e)
    bar = progress(clips, desc=f"pack {fmt}", unit="clip",
                   disable=None if show_progress is None else not show_progress)
    if fmt in BURST_FORMATS:
        _pack_bursts(job, bar, out, fmt, p, seed, encoding=encoding, quality=quality,
                     shard_size=shard_size, workers=workers)
    else:
        _pack_runs(job, bar, out, fmt, p, split, name)
    return {"out": str(out), "manifest": str(man_path), "format": fmt, "done": job.done,
            "resumed": job.resumed, "failed": job.failed, "written": job.written,
            "report": job.report, "seconds": round(time.perf_counter() - t0, 3)}


class _Job:
    """Bookkeeping of one pack run: manifest records and totals."""

    def __init__(self, manifest: Manifest, params: dict, seed: int):
        self.manifest, self.params, self.seed = manifest, params, seed
        self.done: list[str] = []
        self.resumed: list[str] = []
        self.failed: list[dict] = []
        self.report: Counter = Counter()
        self.written = 0

    def fail(self, item: str, exc: Exception) -> None:
        self.failed.append({"clip": item, "error": str(exc)})
        self.manifest.append({**base_record(STAGE, item, self.params, self.seed),
                              "status": "failed", "error": str(exc)})
        log.error("%s", exc)

    def record(self, clip: Clip, report: Counter, written: int, **extra) -> dict:
        return {**base_record(STAGE, clip.name, self.params, self.seed), "status": "ok",
                "clip": {"blurry": str(clip.blurry), "sharp": str(clip.sharp),
                         "frames": clip.n_frames, "size": [clip.height, clip.width],
                         "crf": clip.crf, "exposure": clip.exposure},
                "report": dict(report), "written": written, **extra}

    def count(self, clip: Clip, report: Counter, written: int) -> None:
        self.report.update(report)
        self.written += written
        self.done.append(clip.name)


def _pack_bursts(job: _Job, clips: Iterable[Clip], out: Path, fmt: str, p: SampleParams,
                 seed: int, **writer_options) -> None:
    writer = None
    try:
        for clip in clips:
            rec = job.manifest.done(clip.name)
            if rec is not None and rec.get("params") == job.params:
                job.resumed.append(clip.name)
                job.report.update(rec["report"])
                job.written += rec["written"]
                continue
            if writer is None:
                writer = _open_writer(fmt, out, meta={"pack": job.params}, **writer_options)
            r: Counter = Counter()
            n = 0
            try:
                for s in sample_bursts(clip, p, seed, report=r):
                    writer.add(s)
                    n += 1
                writer.flush()  # the clip's record must only follow its committed samples
            except BlursynthError as e:
                job.fail(clip.name, e)
                continue
            job.manifest.append(job.record(clip, r, n))
            job.count(clip, r, n)
    finally:
        if writer is not None:
            writer.close()


def _pack_runs(job: _Job, clips: Iterable[Clip], out: Path, fmt: str, p: SampleParams,
               split: str, name: str | None) -> None:
    runs, records = [], []
    for clip in clips:
        r: Counter = Counter()
        try:
            if clip.stills and _needs_video(fmt):
                raise ParameterError(f"{clip.name}: holds independent photos (segblur output), "
                                     f"but layout {fmt}'s trainer reads videos")
            clip_runs = frame_runs(clip, p, report=r)
        except BlursynthError as e:
            job.fail(clip.name, e)
            continue
        runs.extend(clip_runs)
        n = sum(len(x) for x in clip_runs)
        records.append(job.record(clip, r, n, runs=[[x.start, x.stop] for x in clip_runs]))
        job.count(clip, r, n)
    if not runs:
        return
    result = _write_runs(fmt, runs, out, split, name)
    job.written = result["frames"]  # the layout may drop or cut runs (length limits)
    # The files exist now: the records (resume markers) follow them.
    for rec in records:
        rec["layout"] = result
        job.manifest.append(rec)
