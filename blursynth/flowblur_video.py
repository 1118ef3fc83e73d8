"""The flowblur stage driver: read a video, synthesise blur, write outputs and a manifest.

For an input ``NAME.EXT`` it writes, in ``out_dir``:

- ``NAME_blurry.mp4``: the synthesised exposures (lossless RGB by default).
- ``NAME_sharp.mp4``: the sharp target of each exposure, its centre frame.
- ``NAME_flow.mp4``: a colour picture of the flow from each centre frame to the next
  (Middlebury wheel, saturated at ``flow_vis_max`` px/frame so frames compare), at the
  resolution the flow was computed at (``flow_scale`` of the frame size: half at 720p); a
  preview, so lossy unless ``quality`` says otherwise.
- on request: ``NAME_flow/NNNNNN.npy`` or ``.flo`` (the flow itself), ``NAME_blurry/`` and
  ``NAME_sharp/`` PNG folders, ``NAME_subframes/NNNNNN_KK.png``.
- ``flowblur.jsonl``: one record per output frame and one per video, written last; it is the
  resume marker. A re-run skips videos whose record, parameters, input and outputs all match.

Every file is written under a temporary name and renamed when complete, so an interrupted run
never leaves a truncated file under a final name.
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from .errors import BlursynthError, InputFileError, ParameterError, VideoError
from .files import atomic_path, file_identity
from .flow import flow_to_color, pair_flows_stamp, read_pair_flows, write_flo
from .flowblur import (FlowBlurParams, flow_backend_name, flow_scale_of, flowblur_frames,
                       interp_of, output_size, with_given_flows)
from .log import progress
from .manifest import Manifest, base_record, record_failure
from .video import VideoReader, VideoWriter, probe

__all__ = ["flowblur_video", "flowblur_videos", "output_paths", "FLOW_FORMATS"]

log = logging.getLogger("blursynth")

FLOW_FORMATS = {"npy": "NumPy float32 (H, W, 2) arrays", "flo": "Middlebury .flo files"}
STAGE = "flowblur"


def output_paths(input_path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict:
    """The output paths for one input video (``out_dir`` defaults to the input's folder)."""
    src = Path(input_path)
    out = Path(out_dir) if out_dir is not None else src.parent
    n = src.stem
    return {
        "blurry": out / f"{n}_blurry.mp4",
        "sharp": out / f"{n}_sharp.mp4",
        "flow_video": out / f"{n}_flow.mp4",
        "flow_dir": out / f"{n}_flow",
        "blurry_dir": out / f"{n}_blurry",
        "sharp_dir": out / f"{n}_sharp",
        "subframes_dir": out / f"{n}_subframes",
        "manifest": out / "flowblur.jsonl",
    }


class _AsyncWriter:
    """Feeds a :class:`VideoWriter` from a thread, so encoding overlaps synthesis."""

    def __init__(self, path: Path, fps: float, quality: int | None, preset: str = "veryfast"):
        self._writer = VideoWriter(path, fps, quality=quality, preset=preset)
        self._q: queue.Queue = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            frame = self._q.get()
            if frame is None:
                return
            if self._error is None:
                try:
                    self._writer.write(frame)
                except BaseException as e:  # re-raised in the caller's thread
                    self._error = e

    def write(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(frame)

    def close(self, ok: bool) -> None:
        self._q.put(None)
        self._t.join()
        if ok and self._error is None:
            self._writer.close()
        else:
            self._writer.abort()
            if ok and self._error is not None:
                raise self._error


def _png(path: Path, rgb: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[..., ::-1])):
            raise OSError(f"cv2.imwrite failed for {path}")


def _flow_picture(f: np.ndarray, vis_max: float) -> np.ndarray:
    """Colour picture of a flow at its own grid size, coloured at about 200 rows and upscaled
    (a preview of a smooth field: the colour wheel at full size costs several times more)."""
    k = max(1, -(-f.shape[0] // 200))
    if k == 1:
        return flow_to_color(f, max_radius=vis_max)
    small = cv2.resize(f, (f.shape[1] // k, f.shape[0] // k), interpolation=cv2.INTER_AREA)
    col = flow_to_color(small, max_radius=vis_max)
    return cv2.resize(col, (f.shape[1], f.shape[0]), interpolation=cv2.INTER_LINEAR)


def _flow_full(f: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Vectors are already in output pixels: resample the field only.
    return cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _record_matches(rec: dict | None, params: dict, ident: dict) -> bool:
    if not rec or rec.get("params") != params:
        return False
    src = rec.get("input", {})
    if (src.get("size"), src.get("sha256")) != (ident["size"], ident["sha256"]):
        return False
    for p, size in rec.get("outputs", {}).items():
        if not Path(p).is_file() or Path(p).stat().st_size != size:
            return False
    # Optional folders (PNGs, flow files, sub-frames): each must still hold its files.
    for d, names in rec.get("output_dirs", {}).items():
        if any(not (Path(d) / n).is_file() for n in names):
            return False
    return True


def flowblur_video(input_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                   params: FlowBlurParams | None = None, *, start: int = 0,
                   end: int | None = None, stride: int = 1, flow_files: str | None = None,
                   frames: bool = False, subframes: int = 0, quality: int | None = None,
                   flow_video: bool = True, flow_vis_max: float = 16.0,
                   flows: str | os.PathLike | None = None, resume: bool = True,
                   show_progress: bool | None = None) -> dict:
    """Synthesise blurry/sharp videos from one input video.

    Parameters
    ----------
    input_path : path
        Any video ffmpeg reads.
    out_dir : path, optional
        Output folder (created); default: the input's folder.
    params : FlowBlurParams, optional
        Synthesis parameters.
    start, end, stride : int
        Input frames used: ``start, start + stride, ...`` before ``end`` (exclusive). Exposure
        is measured in these frames' intervals.
    flow_files : {None, 'npy', 'flo'}
        Also write the flow from each centre frame to the next, at output resolution, in output
        pixels per (strided) input frame.
    frames : bool
        Also write PNG folders of the blurry and sharp frames.
    subframes : int
        Also write this many evenly spaced sub-frames of every exposure (PNG).
    quality : int or None
        None: lossless RGB training data. An int 0-51 (x264 CRF): smaller lossy previews.
    flow_video : bool
        Write ``NAME_flow.mp4``.
    flow_vis_max : float
        Motion (px per input frame) shown at full colour saturation in the flow video.
    flows : path, optional
        A pair-flow folder (:func:`blursynth.flow.pair_flow_path`) whose flows replace the
        backend's: for each pair (a, b) of consecutive input frames used, ``AAAAAA_BBBBBB.flo``
        and ``BBBBBB_AAAAAA.flo`` (or ``.npy``) in the input's pixels. ``{name}`` in it stands
        for the input's name without suffix. The flow grid is then full size unless
        ``params.flow_scale`` is set.
    resume : bool
        Skip the video when the manifest shows it finished with the same parameters and input
        (and, with ``flows``, flow files of the same names, sizes and modification times:
        :func:`blursynth.flow.pair_flows_stamp`), and its outputs are intact.
    show_progress : bool or None
        Progress bar (None: when logging is not quiet and stderr is a terminal).

    Returns
    -------
    dict
        The video's manifest record: outputs and their sizes, frame counts, timing, the
        ``"resumed"`` flag.

    Raises
    ------
    InputFileError, VideoError
        The input is missing, not a video, or has too few frames for one exposure; or a flow
        file of ``flows`` is missing or wrong.
    ParameterError
        Invalid options.
    OutputError
        An output cannot be written (nothing partial is left under a final name).
    """
    p = params or FlowBlurParams()
    if flow_files not in (None, *FLOW_FORMATS):
        raise ParameterError(f"flow_files: expected one of {sorted(FLOW_FORMATS)} or None, got {flow_files!r}")
    if subframes < 0:
        raise ParameterError(f"subframes: expected >= 0, got {subframes}")
    if flow_vis_max <= 0:
        raise ParameterError(f"flow_vis_max: expected > 0 px, got {flow_vis_max}")
    src = Path(input_path)
    info = probe(src)  # fails early, with the file named, on a missing or non-video input
    if flows is not None:
        flows = Path(str(flows).replace("{name}", src.stem))
        if not flows.is_dir():
            raise InputFileError(flows, "flows: not a folder")
        p = with_given_flows(p)  # so the record says which grid ran
    paths = output_paths(src, out_dir)
    out = paths["manifest"].parent
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(paths["manifest"])
    item = src.stem
    run_params = {**p.to_dict(), "start": start, "end": end, "stride": stride,
                  "flow_files": flow_files, "frames": frames, "subframes": subframes,
                  "quality": quality, "flow_video": flow_video, "flow_vis_max": flow_vis_max,
                  "flows": None if flows is None else str(flows),
                  # replaced flow files in the same folder must not pass for the ones used
                  "flows_stamp": None if flows is None else pair_flows_stamp(flows)}
    ident = file_identity(src)
    done = manifest.done(item) if resume else None
    if _record_matches(done, run_params, ident):
        log.info("%s: already done (manifest %s), skipping", src, paths["manifest"])
        return {**done, "resumed": True}

    fps = info.fps / (stride * p.decimate)
    t_start = time.perf_counter()
    reader = VideoReader(src, start=start, end=end, stride=stride)
    expected = None
    if info.n_frames:
        avail = max(0, min(info.n_frames, end if end is not None else info.n_frames) - start)
        n_in = (avail + stride - 1) // stride
        expected = max(0, int((n_in - 1 - p.exposure * p.decimate) // p.decimate) + 1)
    writers: dict[str, _AsyncWriter] = {}
    n_out = n_skipped = 0
    ok = False
    frame_records = []
    try:
        bar = progress(total=expected, desc=src.name, unit="frame", disable=(
            None if show_progress is None else not show_progress))
        # Closed before the reader whatever happens: it reads the frames in a thread.
        given = (None if flows is None else
                 read_pair_flows(flows, itertools.count(start, stride), (info.height, info.width)))
        with closing(flowblur_frames(reader, p, subframes=subframes,
                                     keep_flow=flow_video or flow_files is not None,
                                     flows=given)) as results:
            for r in results:
                w = r.window
                rec = base_record(STAGE, f"{item}/{w.index:06d}", {}, None)
                rec.pop("versions", None)
                rec.pop("params", None)
                rec.update({"video": item, "index": w.index,
                            "centre_frame": start + w.centre * stride,
                            "window": [start + w.t0 * stride, start + w.t1 * stride],
                            "exposure": p.exposure, "crf": p.crf, **r.stats})
                if r.blurry is None:
                    # A scene cut inside the exposure would average two shots into a ghost.
                    rec["status"] = "skipped"
                    rec["reason"] = "scene cut inside the exposure"
                    n_skipped += 1
                    frame_records.append(rec)
                    bar.update(1)
                    continue
                rec["status"] = "ok"
                rec["output_index"] = n_out
                if not writers:
                    writers["blurry"] = _AsyncWriter(paths["blurry"], fps, quality)
                    writers["sharp"] = _AsyncWriter(paths["sharp"], fps, quality)
                    if flow_video:
                        # A smooth colour picture: the fastest preset costs it nothing visible.
                        writers["flow_video"] = _AsyncWriter(paths["flow_video"], fps,
                                                             18 if quality is None else quality,
                                                             preset="ultrafast")
                writers["blurry"].write(r.blurry)
                writers["sharp"].write(r.sharp)
                size = r.blurry.shape[:2]
                if r.flow is not None and flow_video:
                    writers["flow_video"].write(_flow_picture(r.flow, flow_vis_max))
                if r.flow is not None and flow_files:
                    f = _flow_full(r.flow, size)
                    dst = paths["flow_dir"] / f"{n_out:06d}.{flow_files}"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    if flow_files == "npy":
                        with atomic_path(dst) as tmp:
                            np.save(tmp, f)
                    else:
                        with atomic_path(dst) as tmp:
                            write_flo(tmp, f)
                if frames:
                    for kind in ("blurry", "sharp"):
                        d = paths[f"{kind}_dir"]
                        d.mkdir(parents=True, exist_ok=True)
                        _png(d / f"{n_out:06d}.png", getattr(r, kind))
                if r.subframes is not None:
                    d = paths["subframes_dir"]
                    d.mkdir(parents=True, exist_ok=True)
                    for j, sf in enumerate(r.subframes):
                        _png(d / f"{n_out:06d}_{j:02d}.png", sf)
                frame_records.append(rec)
                n_out += 1
                bar.update(1)
        bar.close()
        if n_out == 0:
            if n_skipped:
                raise VideoError(src, f"every one of {n_skipped} exposures spans a scene cut")
            h = p.exposure * p.decimate / 2
            need = int(np.ceil(np.ceil(h - 1e-9) + h - 1e-9)) + 1
            raise VideoError(src, f"expected at least {need} frames for one exposure of "
                                  f"{p.exposure * p.decimate:g} frame intervals, got "
                                  f"{reader.frames_read}")
        ok = True
    finally:
        reader.close()
        for wr in writers.values():
            wr.close(ok)
    for rec in frame_records:
        manifest.append(rec)
    written = [paths["blurry"], paths["sharp"]] + ([paths["flow_video"]] if flow_video else [])
    elapsed = time.perf_counter() - t_start
    rec = base_record(STAGE, item, run_params, None)
    size_out = output_size(p, info.height, info.width)
    rec.update({
        "status": "ok",
        "input": ident,
        "input_info": {"width": info.width, "height": info.height, "fps": info.fps,
                       "n_frames": info.n_frames, "codec": info.codec},
        "truncated": reader.truncated,
        "frames_read": reader.frames_read,
        "frames_out": n_out,
        "frames_skipped": n_skipped,
        "fps_out": fps,
        "flow_backend": "files" if flows is not None else flow_backend_name(p),
        "flow_scale": flow_scale_of(p, *size_out),
        "interp": interp_of(p, *size_out),
        "seconds": round(elapsed, 3),
        "outputs": {str(q): q.stat().st_size for q in written},
        # The optional folders this run asked for, with their files.
        "output_dirs": {str(d): sorted(f.name for f in d.iterdir() if not f.name.startswith("."))
                        for d, asked in ((paths["flow_dir"], flow_files),
                                         (paths["blurry_dir"], frames),
                                         (paths["sharp_dir"], frames),
                                         (paths["subframes_dir"], subframes))
                        if asked and d.is_dir()},
    })
    if reader.truncated:
        log.warning("%s: truncated; used the %d frames that decoded", src, reader.frames_read)
    manifest.append(rec)  # last: the resume marker
    log.debug("%s: %d frames (%d skipped at scene cuts) in %.1f s (%.1f frames/s) -> %s",
              src.name, n_out, n_skipped, elapsed, n_out / max(elapsed, 1e-9), out)
    return {**rec, "resumed": False}


def flowblur_videos(inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
                    params: FlowBlurParams | None = None, **kwargs) -> tuple[list[dict], list[dict]]:
    """Run :func:`flowblur_video` on each input; a failure is recorded and the batch goes on.

    Returns
    -------
    done, failed : list of dict
        The records of finished videos, and ``{"input", "error"}`` for each failed one (also
        appended to the manifest with ``status: failed``).
    """
    done, failed = [], []
    for path in inputs:
        try:
            done.append(flowblur_video(path, out_dir, params, **kwargs))
        except BlursynthError as e:
            log.error("%s", e)
            failed.append({"input": str(path), "error": str(e)})
            record_failure(output_paths(path, out_dir)["manifest"], STAGE, path,
                           (params or FlowBlurParams()).to_dict(), e)
    return done, failed
