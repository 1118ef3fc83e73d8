"""Speed against accuracy of flowblur's settings at 720x1280.

Standalone (no pytest)::

    .venv/bin/python benchmarks/bench_settings.py [--size 720x1280] [--repeat 3]

For each setting (:data:`SETTINGS`): the mean PSNR of one output frame (centre t = 2, e = 1,
from input frames t = 0 .. 4, so every pair has neighbours on both sides) against the scene
integrated at high temporal resolution, for the ``translation``, ``rotation_zoom`` and
``occlusion`` scenes of ``bench_fidelity.py``; and the synthesis rate in memory
(``flowblur_frames`` on 12 frames of the translation scene already decoded, best of
``--repeat``, wall clock, after a warm-up). About 2.5 minutes on 2 cores, most of it the
occlusion scene's ground truth.
"""
from __future__ import annotations

import argparse
import sys
import time

from bench_fidelity import BORDER, SCENES, ground_truth
from common import machine_line, markdown_table, parse_size, psnr

from blursynth.crf import get_crf
from blursynth.flowblur import FlowBlurParams, flowblur_array, flowblur_frames
from blursynth.scenes import make_scene

#: label -> FlowBlurParams options.
SETTINGS = {
    "default (DIS medium, flow at half size, frames upsampled 2x at 720p)": {},
    "`--interp linear` (shifted-linear)": {"interp": "linear"},
    "`--interp cubic` (Keys, 4x4)": {"interp": "cubic"},
    "`--no-snap-boundaries`": {"snap_boundaries": False},
    "`--refine-boundaries`": {"refine_boundaries": True},
    "`--flow-scale 1` (flow at full size)": {"flow_scale": 1.0},
    "`--flow-preset fast`": {"flow_preset": "fast"},
    "`--flow-scale 0.4`": {"flow_scale": 0.4},
}
SCORED = ("translation", "rotation_zoom", "occlusion")
CENTRE = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(720, 1280), help="frame size HxW")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per setting (best kept)")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()

    scenes = {}
    for name in SCORED:
        kind, speed = SCENES[name]
        scene = make_scene(kind, size=args.size, speed=speed)
        truth = ground_truth(scene, [CENTRE], get_crf(scene.crf))[1.0][CENTRE]
        scenes[name] = (scene.frames(5), truth)
        print(f"  {name}: ground truth done", file=sys.stderr, flush=True)
    kind, speed = SCENES["translation"]
    clip = make_scene(kind, size=args.size, speed=speed, supersample=1).frames(12)
    list(flowblur_frames(clip[:4]))  # compile

    rows = []
    for label, options in SETTINGS.items():
        p = FlowBlurParams(**options)
        scores = []
        for name in SCORED:
            frames, truth = scenes[name]
            blurry, _, windows = flowblur_array(frames, p)
            scores.append(psnr(blurry[[w.centre for w in windows].index(CENTRE)], truth, BORDER))
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            n = sum(1 for _ in flowblur_frames(clip, p))
            best = min(best, time.perf_counter() - t0)
        rows.append((label, *(f"{s:.1f}" for s in scores), f"{n / best:.1f}"))
        print(f"  {label}: done", file=sys.stderr, flush=True)

    h, w = args.size
    print(f"# Speed against accuracy at {h}x{w}\n")
    print(f"- {machine_line()}\n")
    print(markdown_table(["setting", *SCORED, "frames/s"], rows, "lrrrr"))
    print(f"\nWall time: {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
