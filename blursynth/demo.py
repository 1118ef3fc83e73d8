"""A self-checking demo: synthesise blur on a clip whose true blur is known, and measure it.

:func:`make_demo_clip` renders the ``occlusion`` scene of :mod:`blursynth.scenes` (a background
of real photos panning, and two discs cut from photos crossing in opposite directions, the
second passing in front of the first) into a lossless video. :func:`run_demo` runs the flowblur
stage on it, writes the preview sheet, and compares a few synthesised blurry frames with the
scene's exact blur (the scene integrated over the same exposure in linear light), so a user sees
in well under a minute both what blursynth makes and how close it is to the physics.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio

from .crf import encode_u8, get_crf
from .errors import ParameterError
from .flowblur import FlowBlurParams
from .flowblur_video import flowblur_video, output_paths
from .manifest import read_manifest
from .preview import preview
from .scenes import Scene, make_scene
from .video import read_video, write_video

__all__ = ["make_demo_clip", "run_demo"]

#: Largest motion, in pixels, between two renders averaged into the ground-truth blur. At the
#: demo's default size and speed this differs from a 0.1 px step by less than 1/3 of an 8-bit
#: code (> 65 dB), far below the errors measured, at a fifth of the cost.
_GT_STEP = 0.5


def _psnr(truth: np.ndarray, test: np.ndarray) -> float:
    # 8-bit encoded frames, peak 255.
    return float(peak_signal_noise_ratio(truth, test, data_range=255))


def make_demo_clip(path: str | os.PathLike, *, size: tuple[int, int] = (360, 640),
                   n_frames: int = 24, speed: float = 8.0, fps: float = 30) -> Scene:
    """Write a lossless clip of the ``occlusion`` scene and return the scene.

    Parameters
    ----------
    path : path
        Output video (``.mp4``, ``.mkv``, ...), written atomically.
    size : (int, int)
        Frame (height, width) in pixels.
    n_frames : int
        Number of frames, rendered at t = 0, 1, ..., n_frames - 1.
    speed : float
        Speed of the discs in pixels per frame (the background pans at a quarter of it).
    fps : float
        Frame rate written in the file.

    Returns
    -------
    Scene
        The scene: ``scene.blur(t, exposure)`` is the exact blur of any exposure of the clip.

    Raises
    ------
    ParameterError
        ``n_frames < 2``, a size below 16 px, or a negative speed.
    """
    if int(n_frames) != n_frames or n_frames < 2:
        raise ParameterError(f"n_frames: expected an integer >= 2, got {n_frames}")
    if len(size) != 2 or min(size) < 16:
        raise ParameterError(f"size: expected (height, width) of at least 16 px each, got {size}")
    scene = make_scene("occlusion", (int(size[0]), int(size[1])), speed)
    write_video(path, scene.frames(int(n_frames)), fps)  # quality=None: lossless
    return scene


def run_demo(out_dir: str | os.PathLike, *, size: tuple[int, int] = (360, 640),
             n_frames: int = 24, speed: float = 8.0, params: FlowBlurParams | None = None,
             n_checked: int = 3) -> dict:
    """Make the demo clip, synthesise its blur, write a preview, and measure the result.

    Parameters
    ----------
    out_dir : path
        Folder for the clip (``occlusion.mp4``), the flowblur outputs, the manifest and the
        preview (created if needed).
    size, n_frames, speed
        As in :func:`make_demo_clip`.
    params : FlowBlurParams, optional
        Synthesis parameters (default: the defaults).
    n_checked : int
        Number of blurry frames compared with the ground truth, evenly spaced.

    Returns
    -------
    dict
        ``clip``, ``blurry``, ``sharp``, ``flow_video``, ``manifest``, ``preview`` (paths);
        ``frames_out``; ``checked``: one ``{"output_index", "centre_frame", "psnr",
        "psnr_sharp"}`` per checked frame; ``psnr_mean`` (dB, synthesised blur vs the true
        blur) and ``psnr_sharp_mean`` (dB, the sharp frame vs the true blur: what no blur at
        all would score); ``seconds`` (``flowblur`` and total).

    Notes
    -----
    The true blur of an output frame is ``scene.blur(c, e)``: the scene integrated in linear
    light over ``[c - e/2, c + e/2]`` (``c`` its centre frame, read from the manifest), then
    encoded with the same camera response as the synthesis.
    """
    p = params or FlowBlurParams()
    if p.decimate != 1:
        raise ParameterError(f"params.decimate: the demo clip is rendered at the output rate, "
                             f"expected 1, got {p.decimate}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clip = out / "occlusion.mp4"
    scene = make_demo_clip(clip, size=size, n_frames=n_frames, speed=speed)
    t1 = time.perf_counter()
    # resume=False: the demo is there to show the work being done.
    rec = flowblur_video(clip, out, p, resume=False)
    t2 = time.perf_counter()
    paths = output_paths(clip, out)
    sheet = preview(paths["blurry"])

    # The frame records of this run are the last ones for this video in the manifest.
    centre = {}
    for r in read_manifest(paths["manifest"]):
        if r.get("video") == clip.stem and r.get("status") == "ok" and "output_index" in r:
            centre[r["output_index"]] = r["centre_frame"]
    n_out = rec["frames_out"]
    picks = sorted(set(np.linspace(0, n_out - 1, min(n_checked, n_out)).round().astype(int)))
    blurry, _ = read_video(paths["blurry"], end=max(picks) + 1)
    sharp, _ = read_video(paths["sharp"], end=max(picks) + 1)
    crf = get_crf(p.crf)
    samples = max(8, math.ceil(p.exposure * max(speed, 1.0) / _GT_STEP))
    checked = []
    for k in picks:
        c = centre[int(k)]
        truth = encode_u8(scene.blur(c, p.exposure, samples=samples), crf)
        checked.append({"output_index": int(k), "centre_frame": int(c),
                        "psnr": round(_psnr(truth, blurry[k]), 2),
                        "psnr_sharp": round(_psnr(truth, sharp[k]), 2)})
    return {
        "clip": clip,
        "blurry": paths["blurry"],
        "sharp": paths["sharp"],
        "flow_video": paths["flow_video"],
        "manifest": paths["manifest"],
        "preview": sheet,
        "frames_out": n_out,
        "checked": checked,
        "psnr_mean": round(float(np.mean([c["psnr"] for c in checked])), 2),
        "psnr_sharp_mean": round(float(np.mean([c["psnr_sharp"] for c in checked])), 2),
        "seconds": {"clip": round(t1 - t0, 2), "flowblur": round(t2 - t1, 2),
                    "total": round(time.perf_counter() - t0, 2)},
    }
