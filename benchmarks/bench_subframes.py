"""Sub-frames piece by piece (``--local-subframes``) against one count for the whole frame.

Standalone (no pytest)::

    .venv/bin/python benchmarks/bench_subframes.py [--size 720x1280] [--repeat 3]

For each scene of ``bench_fidelity.py``, with each setting: the smooth path's exposure samples
per pixel and interval, the time in the warp kernel per output frame (one numba thread; the
only stage the setting changes) and the whole synthesis rate in memory (``flowblur_frames`` on
12 frames already decoded, wall clock), from the run with the least warp time of
``--repeat``, the settings alternating, after a warm-up. Fidelity is ``bench_fidelity.py``'s
(its default is piece by piece). About 1.5 minutes on 2 cores at 720p.
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


def run(clip: np.ndarray, p: FlowBlurParams) -> tuple[float, float, float]:
    """Synthesis of ``clip``: (wall seconds, seconds in the warp kernel, the smooth path's
    exposure samples per pixel and interval, averaged over intervals)."""
    seen, warp = [], [0.0]
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
        t0 = time.perf_counter()
        out = real(*args, **kw)
        warp[0] += time.perf_counter() - t0
        return out

    fb.warpsum = counting
    try:
        t0 = time.perf_counter()
        list(flowblur_frames(clip, p))
        return time.perf_counter() - t0, warp[0], float(np.mean(seen))
    finally:
        fb.warpsum = real


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
        best = {label: (float("inf"),) * 3 for label in settings}
        for _ in range(args.repeat):
            for label, p in settings.items():
                best[label] = min(best[label], run(clip, p), key=lambda r: r[1])
        (wall0, warp0, spp0), (wall1, warp1, spp1) = best.values()
        n = len(clip) - 2  # exposures centred on frames 1 .. n
        rows.append((name, f"{spp0:.2f}", f"{spp1:.2f}", f"{1000 * warp0 / n:.0f}",
                     f"{1000 * warp1 / n:.0f}", f"{warp0 / warp1:.2f}x",
                     f"{n / wall0:.2f}", f"{n / wall1:.2f}"))
        print(f"  {name}: done", file=sys.stderr, flush=True)

    h, w = args.size
    print(f"# Sub-frames piece by piece at {h}x{w}\n")
    print(f"- {machine_line()}\n")
    print(markdown_table(["scene", "samples/px: whole frame", "piece by piece",
                          "warp ms/frame: whole frame", "piece by piece", "warp speed-up",
                          "frames/s: whole frame", "piece by piece"], rows, "lrrrrrrr"))
    print(f"\nWall time: {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
