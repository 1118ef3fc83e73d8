"""Fidelity of synthesised blur against the scenes' high-temporal-resolution ground truth.

Standalone (no pytest)::

    .venv/bin/python benchmarks/bench_fidelity.py [--size 360x640] [--frames 5] [--lead-in 0]
        [--scenes translation,rotation_zoom,occlusion,fast]

Each scene (:mod:`blursynth.scenes`: real photos moved by known motions) is rendered as
``--frames`` sharp 8-bit frames at t = 0, 1, ...; every method blurs them, and each output
frame centred on t = 1 .. frames - 2 is compared with the scene integrated over its exposure
window at high temporal resolution (``Scene.blur``'s sampling: renders no more than 0.1 px
apart, averaged in linear light; sRGB-encoded to 8 bits with rounding; see
:func:`ground_truth`). Everything stays in memory and lossless (no video encoding).
``--lead-in K`` renders K more frames before t = 0 that every method sees but that are not
scored: the first scored window then has a frame before its first pair, as every window but a
clip's first does (snapping matches points about to be covered in that frame).

Scenes (motion in px per frame at the fastest point): ``translation`` 8, ``rotation_zoom`` 8
(at the frame corners), ``occlusion`` 8 (two discs crossing over a panning background),
``fast`` = translation at 20.

Methods:

- ``ours`` at e = 1 and e = 2: :func:`blursynth.flowblur.flowblur_array` with default
  :class:`~blursynth.flowblur.FlowBlurParams` (only the exposure changed), against the ground
  truth at the same exposure; ``ours refined`` adds ``--refine-boundaries``, ``ours
  unsnapped`` turns ``--snap-boundaries`` off, ``ours, deepflow`` is the slow, accurate
  ``--accurate`` (``--flow deepflow --flow-scale 1 --iters 2``; :data:`VARIANTS`); ``ours,
  exact flow`` is given the scene's exact flow (``flows=``: a full-size flow grid; no
  snapping; 2 fixed-point iterations), the synthesis's own ceiling.
- ``seed``: :func:`blursynth.compat.synthblur_frames`, the original synthblur tool's blur,
  whose effective exposure is 2 frame intervals, against the ground truth at e = 2; once with
  the original's arithmetic (``seed_rounding=True``, the faithful reproduction) and once with
  exact splat positions (``seed exact-pos``, the blur its authors intended).
- ``average``: neighbouring frames averaged in linear light with trapezoid weights: (1/4, 1/2,
  1/4) over t - 1, t, t + 1 is the exact integral over [t - 1, t + 1] of a scene that
  cross-fades linearly between frames, so it is compared with e = 2; (1/8, 3/4, 1/8) is the
  same over [t - 1/2, t + 1/2], compared with e = 1. It is what blur without motion
  compensation gives (ghosting).

Metrics, computed on the sRGB 8-bit frames away from a 16 px border: the mean over output
frames of the frame PSNR, and the worst PSNR of any 32 x 32 tile in any output frame.

Goals for ``ours``: mean PSNR >= 48 dB on every scene, worst tile >= 36 dB, and >= 10 dB above
the seed method at the same exposure (e = 2).

Time on 2 cores: about 1 minute at 360x640 and 2.5-3 minutes at 720x1280, most of it
rendering the ground truth (the occlusion scene renders slowest).
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from common import PSNR_CAP, machine_line, markdown_table, parse_size, psnr, tile_psnrs

from blursynth.compat import SEED_EXPOSURE, synthblur_frames
from blursynth.crf import decode_u8, encode_u8, get_crf
from blursynth.flowblur import ACCURATE, FlowBlurParams, flowblur_array
from blursynth.scenes import make_scene

#: name -> (scene kind, speed in px/frame)
SCENES = {
    "translation": ("translation", 8.0),
    "rotation_zoom": ("rotation_zoom", 8.0),
    "occlusion": ("occlusion", 8.0),
    "fast": ("translation", 20.0),
}
BORDER = 16
TILE = 32
GOAL_MEAN = 48.0
GOAL_TILE = 36.0
GOAL_MARGIN = 10.0
DEEPFLOW = "ours, deepflow"
#: Our method's rows: label -> FlowBlurParams options besides the exposure.
VARIANTS = {"ours": {}, "ours refined": {"refine_boundaries": True},
            "ours unsnapped": {"snap_boundaries": False},
            DEEPFLOW: ACCURATE,  # --accurate: DeepFlow, full-size grid, 2 iterations
            # The synthesis given the scene's exact flow (on a full-size grid, which given flows
            # get): what a perfect flow would reach.
            "ours, exact flow": {"snap_boundaries": False, "iters": 2}}
EXACT = "ours, exact flow"
#: Edge pixels follow the occluding layer wherever it covers at least this much of them
#: (`Scene.true_flow`'s cover): 1 dB better worst tiles than following the larger part.
EXACT_COVER = 0.01
#: Trapezoid weights of frames t - 1, t, t + 1 for a linear cross-fade, by exposure.
AVERAGE_WEIGHTS = {1.0: (0.125, 0.75, 0.125), 2.0: (0.25, 0.5, 0.25)}


def ground_truth(scene, centres: list[int], crf) -> dict[float, dict[int, np.ndarray]]:
    """Encoded ground truth at e = 1 and e = 2 for every centre, sharing renders.

    ``Scene.blur(c, e)`` averages renders at ``c - e/2 + e (k + 1/2) / n_e`` with, by default,
    ``n_e = max(8, ceil(e * max_speed / 0.1))``. With ``n_2 = 2 n_1`` (and ``n_1`` even) those
    times all lie on one grid of ``n_1`` renders per frame interval, so both exposures of all
    centres are sums of half-interval partial sums: each render is done once instead of up to
    six times (the exposures of neighbouring centres overlap). Same times, same midpoint rule,
    so the same result as ``Scene.blur`` up to float64 summation order; any other sample
    counts fall back to calling ``Scene.blur``.
    """
    n1, n2 = (max(8, math.ceil(e * max(scene.max_speed, 1.0) / 0.1)) for e in (1.0, 2.0))
    if n2 != 2 * n1 or n1 % 2:
        return {e: {c: encode_u8(scene.blur(c, e), crf) for c in centres} for e in (1.0, 2.0)}
    half = n1 // 2
    # Partial sum m covers times [m / 2, (m + 1) / 2).
    parts = {}
    for m in range(2 * (min(centres) - 1), 2 * (max(centres) + 1)):
        acc = np.zeros(scene.size + (3,), np.float64)
        for k in range(half):
            acc += scene.render(m / 2 + (k + 0.5) / n1)
        parts[m] = acc
    return {
        1.0: {c: encode_u8((parts[2 * c - 1] + parts[2 * c]) / n1, crf) for c in centres},
        2.0: {c: encode_u8(sum(parts[m] for m in range(2 * c - 2, 2 * c + 2)) / n2, crf)
              for c in centres},
    }


def average_blur(frames: np.ndarray, centre: int, exposure: float, crf) -> np.ndarray:
    """Weighted average of frames centre - 1 .. centre + 1 in linear light, encoded to uint8."""
    w = AVERAGE_WEIGHTS[exposure]
    lin = sum(wi * decode_u8(frames[centre + k], crf) for wi, k in zip(w, (-1, 0, 1)))
    return encode_u8(lin, crf)


def score(outputs: dict[int, np.ndarray], truth: dict[int, np.ndarray]) -> tuple[float, float]:
    """(mean frame PSNR, worst tile PSNR) over the output frames, both in dB."""
    frame = [psnr(outputs[c], truth[c], BORDER) for c in sorted(outputs)]
    tiles = [tile_psnrs(outputs[c], truth[c], BORDER, TILE).min() for c in sorted(outputs)]
    return float(np.mean(frame)), float(np.min(tiles))


def run_scene(name: str, size: tuple[int, int], n_frames: int,
              lead_in: int = 0) -> tuple[list[tuple], dict]:
    """Every method on one scene: table rows and timings (seconds).

    ``lead_in`` frames at t = -lead_in .. -1 are rendered before the clip and given to every
    method but not scored, so the first scored window's first pair has a frame before it.
    """
    kind, speed = SCENES[name]
    scene = make_scene(kind, size=size, speed=speed)
    crf = get_crf(scene.crf)
    centres = list(range(1, n_frames - 1))
    times = {}

    t0 = time.perf_counter()
    frames = scene.frames(n_frames + lead_in, t0=-lead_in)
    truth = ground_truth(scene, centres, crf)
    times["ground truth"] = time.perf_counter() - t0

    exact = [(scene.true_flow(t, t + 1, EXACT_COVER), scene.true_flow(t + 1, t, EXACT_COVER))
             for t in range(-lead_in, n_frames - 1)]
    results: list[tuple[str, float, float, float]] = []  # method, exposure, mean, worst tile
    for label, options in VARIANTS.items():
        for e in (1.0, 2.0):
            t0 = time.perf_counter()
            blurry, _, windows = flowblur_array(frames, FlowBlurParams(exposure=e, **options),
                                                flows=exact if label == EXACT else None)
            times[f"{label} e={e:g}"] = time.perf_counter() - t0
            out = {w.centre - lead_in: b for w, b in zip(windows, blurry)
                   if w.centre - lead_in in truth[e]}
            if sorted(out) != centres:
                raise RuntimeError(f"{name}: {label} e={e}: expected centres {centres}, "
                                   f"got {sorted(out)}")
            results.append((label, e, *score(out, truth[e])))

    for label, rounding in (("seed", True), ("seed exact-pos", False)):
        t0 = time.perf_counter()
        blurry, _ = synthblur_frames(frames, seed_rounding=rounding)
        times[label] = time.perf_counter() - t0
        # Output i is centred on input i + 1, at t = i + 1 - lead_in.
        out = {i + 1 - lead_in: b for i, b in enumerate(blurry) if i + 1 - lead_in in centres}
        results.append((label, SEED_EXPOSURE, *score(out, truth[SEED_EXPOSURE])))

    for e in (1.0, 2.0):
        out = {c: average_blur(frames, c + lead_in, e, crf) for c in centres}
        results.append(("average", e, *score(out, truth[e])))
    rows = [(name, m, f"{e:g}", f"{mean:.2f}", f"{tile:.2f}") for m, e, mean, tile in results]
    return rows, {"results": results, "times": times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(360, 640),
                        help="frame size HxW (default 360x640; 720x1280 takes ~4x longer)")
    parser.add_argument("--frames", type=int, default=5,
                        help="input frames per scene; outputs are centred on 1 .. frames-2 "
                             "(default 5: three output frames)")
    parser.add_argument("--lead-in", type=int, default=0, metavar="K",
                        help="render K more frames before t = 0, given to every method but not "
                             "scored: the first scored pair then has a frame before it, as every "
                             "pair but a clip's first does (default 0)")
    parser.add_argument("--scenes", default=",".join(SCENES),
                        help=f"comma-separated subset of {', '.join(SCENES)}")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.scenes.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENES]
    if unknown or not names:
        parser.error(f"--scenes: expected names from {', '.join(SCENES)}, got {args.scenes!r}")
    if args.frames < 3:
        parser.error("--frames: expected at least 3")
    if args.lead_in < 0:
        parser.error("--lead-in: expected K >= 0")

    t_start = time.perf_counter()
    h, w = args.size
    print(f"# Blur fidelity against the ground truth at {h}x{w}\n")
    print(f"- {machine_line()}")
    print(f"- {args.frames} input frames per scene, {args.frames - 2} output frames (centred "
          f"on t = 1 .. {args.frames - 2}"
          + (f"; {args.lead_in} more rendered before t = 0, not scored" if args.lead_in else "")
          + f"); metrics on sRGB 8-bit values, {BORDER} px border "
          f"excluded; worst tile = lowest PSNR of any {TILE}x{TILE} tile; "
          f"PSNR capped at {PSNR_CAP:g} dB\n", flush=True)

    rows, per_scene = [], {}
    for name in names:
        r, info = run_scene(name, args.size, args.frames, args.lead_in)
        rows += r
        per_scene[name] = info
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in info["times"].items())
        print(f"  {name}: {timing}", file=sys.stderr, flush=True)

    print(markdown_table(["scene", "method", "exposure", "mean PSNR (dB)", "worst tile (dB)"],
                         rows, "lllrr"))

    # Goals.
    print("\n## Goals (ours)\n")
    goal_rows = []
    ok_all = True
    for name, info in per_scene.items():
        res = {(m, e): (mean, tile) for m, e, mean, tile in info["results"]}
        ours = [res[("ours", 1.0)], res[("ours", 2.0)]]
        worst_mean = min(m for m, _ in ours)
        worst_tile = min(t for _, t in ours)
        margin = res[("ours", 2.0)][0] - res[("seed", 2.0)][0]
        margin_exact = res[("ours", 2.0)][0] - res[("seed exact-pos", 2.0)][0]
        ok = (worst_mean >= GOAL_MEAN, worst_tile >= GOAL_TILE, margin >= GOAL_MARGIN)
        ok_all &= all(ok)
        mark = lambda b: "met" if b else "**missed**"  # noqa: E731
        other = [[res[(label, 1.0)], res[(label, 2.0)]]
                 for label in ("ours refined", "ours unsnapped", DEEPFLOW, EXACT)]
        goal_rows.append((name, f"{worst_mean:.2f} ({mark(ok[0])})",
                          f"{worst_tile:.2f} ({mark(ok[1])})",
                          f"{margin:+.2f} ({mark(ok[2])})", f"{margin_exact:+.2f}",
                          *(f"{min(m for m, _ in v):.2f} / {min(t for _, t in v):.2f}" for v in other)))
    print(markdown_table(
        ["scene", f"ours mean, lower of e=1/e=2 (goal >= {GOAL_MEAN:g})",
         f"ours worst tile (goal >= {GOAL_TILE:g})",
         f"ours e=2 - seed, mean (goal >= +{GOAL_MARGIN:g})", "ours e=2 - seed exact-pos",
         "ours --refine-boundaries: mean / worst tile",
         "ours --no-snap-boundaries: mean / worst tile",
         "ours --accurate (DeepFlow): mean / worst tile",
         "ours with the exact flow: mean / worst tile"],
        goal_rows, "lrrrrrrrr"))
    print(f"\nAll goals met: {'yes' if ok_all else 'no'}")
    print(f"Wall time: {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
