"""The flow stage driver: optical flow of a video's consecutive frames, both ways, as files.

For an input ``NAME.EXT`` it writes, in ``out_dir`` (default: ``flows/`` beside the input):

- ``NAME/AAAAAA_BBBBBB.flo`` (or ``.npy``): for every pair (a, b) of consecutive frames used,
  the flow from input frame a to b and from b to a, at the frames' size in input pixels
  (:func:`blursynth.flow.pair_flow_path`'s layout, which ``blursynth flowblur --flows
  out_dir/{name}`` reads). Computing the flow once pays where the backend is slow (DeepFlow:
  seconds per 720p pair) and the blur is made several times (exposures, decimations).
- ``flow.jsonl``: a record per pair as soon as its two files are written, and one per video,
  written last. A re-run skips the video when that last record, the parameters and the input
  match; after an interruption it recomputes only the pairs without a matching record.

Every file is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import inspect
import logging
import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import BlursynthError, ParameterError, VideoError
from .files import atomic_path, file_identity
from .flow import (BACKENDS, DIS_PRESETS, PAIR_FLOW_SUFFIXES, compute_flow, get_backend,
                   pair_flow_path, runs_as, to_grey, write_flo)
from .log import progress
from .manifest import Manifest, base_record, record_failure
from .video import VideoReader, probe

__all__ = ["pair_flows_video", "pair_flows_videos", "flows_folder", "FORMATS"]

log = logging.getLogger("blursynth")

STAGE = "flow"
#: File format -> description.
FORMATS = {"flo": "Middlebury .flo files", "npy": "NumPy float32 (H, W, 2) arrays"}
#: DIS preset unless one is given: files are made once and used many times, so the accurate
#: one (at 720p ~50 ms per flow on 2 cores, against ~10 for fast).
FILES_DIS_PRESET = "medium"


def flows_folder(input_path: str | os.PathLike, out_dir: str | os.PathLike | None = None
                 ) -> tuple[Path, Path]:
    """``(folder of the video's flow files, manifest path)`` for one input video."""
    src = Path(input_path)
    out = Path(out_dir) if out_dir is not None else src.parent / "flows"
    return out / src.stem, out / "flow.jsonl"


def _resolve(flow: str, preset: str | None, warn: bool = False) -> tuple[str, str | None]:
    """The backend that runs for ``flow`` (:func:`blursynth.flow.runs_as`) and its preset."""
    if flow not in BACKENDS:
        raise ParameterError(f"flow: expected one of {', '.join(BACKENDS)}, got {flow!r}")
    if preset is not None and preset not in DIS_PRESETS:
        raise ParameterError(f"preset: expected one of {', '.join(DIS_PRESETS)}, got {preset!r}")
    name = runs_as(flow, warn=warn)
    if preset is not None and name != "dis":
        raise ParameterError(f"preset: only the dis backend takes one (flow is {name!r})")
    return name, (preset or FILES_DIS_PRESET) if name == "dis" else None


def _check(fmt: str, scale: float, start: int, end: int | None, stride: int) -> None:
    if fmt not in FORMATS:
        raise ParameterError(f"fmt: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not 0.0 < scale <= 1.0:
        raise ParameterError(f"scale: expected 0 < scale <= 1, got {scale}")
    if start < 0 or stride < 1 or (end is not None and end <= start):
        raise ParameterError(f"frames: expected 0 <= start < end and stride >= 1, got start "
                             f"{start}, end {end}, stride {stride}")


def _write(path: Path, f: np.ndarray) -> int:
    if path.suffix == ".flo":
        write_flo(path, f)
    else:
        with atomic_path(path) as tmp:
            np.save(tmp, f)
    # A file of the other format left by an earlier run would be read instead (.flo first).
    for suffix in PAIR_FLOW_SUFFIXES:
        if suffix != path.suffix:
            path.with_suffix(suffix).unlink(missing_ok=True)
    return path.stat().st_size


def _pair_done(rec: dict | None, folder: Path, names: tuple[str, str]) -> bool:
    # The record says which files it wrote and their sizes: both must still be there.
    return rec is not None and all(
        (folder / n).is_file() and (folder / n).stat().st_size == rec.get("files", {}).get(n)
        for n in names)


def pair_flows_video(input_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                     *, flow: str = "dis", preset: str | None = None, scale: float = 1.0,
                     fmt: str = "flo", start: int = 0, end: int | None = None, stride: int = 1,
                     resume: bool = True, show_progress: bool | None = None) -> dict:
    """Compute and write the flows of every pair of consecutive frames of one video, both ways.

    Parameters
    ----------
    input_path : path
        Any video ffmpeg reads.
    out_dir : path, optional
        Output folder (created); the files go to ``out_dir/NAME/``. Default: ``flows/``
        beside the input.
    flow : str
        Backend, a key of :data:`blursynth.flow.BACKENDS` (``cuda`` without CUDA: ``dis``,
        with a warning).
    preset : str or None
        DIS preset (:data:`blursynth.flow.DIS_PRESETS`); None: :data:`FILES_DIS_PRESET` for
        ``dis``, and nothing for the other backends, which take none.
    scale : float
        In (0, 1]: compute on frames resized by this much, vectors brought back to full size
        (:func:`blursynth.flow.compute_flow`).
    fmt : {'flo', 'npy'}
        File format.
    start, end, stride : int
        Input frames used: ``start, start + stride, ...`` before ``end`` (exclusive); the file
        names carry these input frame numbers, as ``flowblur --flows`` with the same
        ``start``/``stride`` expects.
    resume : bool
        Skip the video when the manifest shows it finished with the same parameters and input
        and its files are intact; otherwise skip each pair that is.
    show_progress : bool or None
        Progress bar (None: when logging is not quiet and stderr is a terminal).

    Returns
    -------
    dict
        The video's manifest record (``folder``, ``pairs``, frame counts, timing) with a
        ``"resumed"`` flag.

    Raises
    ------
    InputFileError, VideoError
        The input is missing, not a video, or has fewer than 2 frames.
    ParameterError
        Invalid options.
    OutputError
        A file cannot be written (nothing partial is left under a final name; the pairs
        already written stay, with their records).
    """
    _check(fmt, scale, start, end, stride)
    src = Path(input_path)
    info = probe(src)  # fails early, with the file named, on a missing or non-video input
    name, preset = _resolve(flow, preset, warn=True)
    backend = get_backend(name, **({"preset": preset} if preset else {}))
    folder, manifest_path = flows_folder(src, out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(manifest_path)
    item = src.stem
    params = {"flow": name, "preset": preset, "scale": scale,
              "format": fmt, "start": start, "end": end, "stride": stride}
    ident = file_identity(src)

    def same(rec: dict) -> bool:  # made with these options from this input
        return (rec.get("params") == params
                and rec.get("input", {}).get("sha256") == ident["sha256"])

    # The last success of each item (the video, and each of its pairs) made as now asks.
    old = {r["item"]: r for r in (manifest.records() if resume else [])
           if r.get("status") == "ok" and r.get("stage") == STAGE}
    old = {k: r for k, r in old.items() if same(r)}
    done = old.get(item)
    if done and all(_pair_done({"files": files}, folder, tuple(files))
                    for files in done.get("pairs", {}).values()):
        log.info("%s: already done (manifest %s), skipping", src, manifest_path)
        return {**done, "resumed": True}

    t0 = time.perf_counter()
    reader = VideoReader(src, start=start, end=end, stride=stride)
    total = None
    if info.n_frames:
        avail = max(0, min(info.n_frames, end if end is not None else info.n_frames) - start)
        total = max(0, (avail + stride - 1) // stride - 1)
    pairs, computed = {}, 0
    bar = progress(total=total, desc=src.name, unit="pair",
                   disable=None if show_progress is None else not show_progress)
    try:
        prev = None
        for k, frame in enumerate(reader):
            cur = to_grey(frame)
            a, b = start + (k - 1) * stride, start + k * stride
            if prev is not None:
                paths = (pair_flow_path(folder, a, b, "." + fmt),
                         pair_flow_path(folder, b, a, "." + fmt))
                key = f"{item}/{paths[0].stem}"
                names = tuple(p.name for p in paths)
                rec = old.get(key)
                if not _pair_done(rec, folder, names):
                    files = {p.name: _write(p, compute_flow(backend, x, y, scale=scale))
                             for p, x, y in ((paths[0], prev, cur), (paths[1], cur, prev))}
                    rec = base_record(STAGE, key, params, None)
                    rec.pop("versions", None)
                    rec.update({"status": "ok", "input": {"sha256": ident["sha256"]},
                                "files": files})
                    manifest.append(rec)  # the pair is done: an interruption keeps it
                    computed += 1
                pairs[f"{a:06d}_{b:06d}"] = rec["files"]
                bar.update(1)
            prev = cur
    finally:
        bar.close()
        reader.close()
    if not pairs:
        raise VideoError(src, f"expected at least 2 frames for a flow, got {reader.frames_read}")
    if reader.truncated:
        log.warning("%s: truncated; used the %d frames that decode", src, reader.frames_read)
    rec = base_record(STAGE, item, params, None)
    rec.update({"status": "ok", "input": ident, "folder": str(folder),
                "size": [info.height, info.width], "truncated": reader.truncated,
                "frames_read": reader.frames_read, "pairs_computed": computed,
                "seconds": round(time.perf_counter() - t0, 3), "pairs": pairs})
    manifest.append(rec)  # last: the resume marker
    return {**rec, "resumed": False}


def pair_flows_videos(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
                      **kwargs) -> tuple[list[dict], list[dict]]:
    """Run :func:`pair_flows_video` on each input; a failure is recorded and the batch goes on.

    Returns
    -------
    done, failed : list of dict
        The records of finished videos, and ``{"input", "error"}`` for each failed one (also
        appended to the manifest with ``status: failed``).
    """
    # Bad options fail once, before any video, not once per video.
    defaults = inspect.signature(pair_flows_video).parameters
    _check(*(kwargs.get(k, defaults[k].default)
             for k in ("fmt", "scale", "start", "end", "stride")))
    _resolve(kwargs.get("flow", defaults["flow"].default), kwargs.get("preset"))
    done, failed = [], []
    for path in inputs:
        try:
            done.append(pair_flows_video(path, out_dir, **kwargs))
        except BlursynthError as e:
            log.error("%s", e)
            failed.append({"input": str(path), "error": str(e)})
            record_failure(flows_folder(path, out_dir)[1], STAGE, path, {}, e)
    return done, failed
