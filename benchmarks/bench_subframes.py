"""Sub-frames piece by piece (``--local-subframes``) against one count for the whole frame.

Standalone (no pytest)::

    .venv/bin/python benchmarks/bench_subframes.py [--size 720x1280] [--repeat 3]

For each scene of ``bench_fidelity.py``: the synthesis rate in memory (``flowblur_frames`` on
12 frames already decoded, one thread each way, best of ``--repeat``, the two settings
alternating, wall clock, after a warm-up), and the smooth path's samples per pixel and
interval with each setting. Fidelity is ``bench_fidelity.py``'s (the default is piece by
piece). About 1.5 minutes on 2 cores at 720p.
"""
from __future__ import annotations

import argparse
import sys
import time

import numba
import numpy as np
from bench_fidelity import SCENES
from common import machine_line, markdown_table, parse_size

import blursynth.flowblur as fb
from blursynth.flowblur import FlowBlurParams, flowblur_frames
from blursynth.scenes import make_scene


def samples_per_pixel(clip: np.ndarray, p: FlowBlurParams) -> float:
    """Mean over intervals and pixels of the smooth path's exposure samples."""
    seen = []
    real = fb.warpsum

    def counting(*args, **kw):
        times, acc, smooth = args[4], args[7], kw["smooth"]
        if smooth is None:
            seen.append(float(len(times)))
        else:
            levels, sets = smooth
            counts = np.array([len(t) for t, _, _ in sets], np.float64)
            width = np.minimum(acc.shape[2] - np.arange(levels.shape[1]) * fb.SEGMENT,
                               fb.SEGMENT)
            seen.append(float((counts[levels] * width).sum() / (levels.shape[0] * width.sum())))
        return real(*args, **kw)

    fb.warpsum = counting
    try:
        list(flowblur_frames(clip, p))
    finally:
        fb.warpsum = real
    return float(np.mean(seen))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(720, 1280), help="frame size HxW")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per setting (best kept)")
    args = parser.parse_args(argv)
    numba.set_num_threads(1)  # the kernel's own time, not how two threads share it
    t_start = time.perf_counter()
    settings = {"whole frame": FlowBlurParams(local_subframes=False),
                "piece by piece": FlowBlurParams()}

    rows = []
    for name, (kind, speed) in SCENES.items():
        clip = make_scene(kind, size=args.size, speed=speed, supersample=1).frames(12)
        list(flowblur_frames(clip[:4]))  # compile
        best = {label: float("inf") for label in settings}
        for _ in range(args.repeat):
            for label, p in settings.items():
                t0 = time.perf_counter()
                n = sum(1 for _ in flowblur_frames(clip, p))
                best[label] = min(best[label], time.perf_counter() - t0)
        fps = {label: n / t for label, t in best.items()}
        spp = {label: samples_per_pixel(clip, p) for label, p in settings.items()}
        rows.append((name, f"{spp['whole frame']:.2f}", f"{spp['piece by piece']:.2f}",
                     f"{fps['whole frame']:.2f}", f"{fps['piece by piece']:.2f}",
                     f"{fps['piece by piece'] / fps['whole frame']:.2f}x"))
        print(f"  {name}: done", file=sys.stderr, flush=True)

    h, w = args.size
    print(f"# Sub-frames piece by piece at {h}x{w}\n")
    print(f"- {machine_line()}\n")
    print(markdown_table(["scene", "samples/px, whole frame", "samples/px, piece by piece",
                          "frames/s, whole frame", "frames/s, piece by piece", "ratio"],
                         rows, "lrrrrr"))
    print(f"\nWall time: {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
