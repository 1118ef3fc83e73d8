"""End-to-end throughput of blur synthesis on a 1280x720 video: ours against the seed method.

Standalone (no pytest)::

    .venv/bin/python benchmarks/bench_flowblur.py [--frames 120] [--size 720x1280]

The input is a lossless mp4 of a synthetic scene (:func:`blursynth.scenes.make_scene`,
``translation`` at 8 px/frame: a pan over real photos), rendered once and cached (see
``--cache-dir``); rendering is not timed. Both methods then run end to end, from the file to
lossless mp4 outputs written with :mod:`blursynth.video`, in the same process, one after the
other:

- ours: :func:`blursynth.flowblur_video.flowblur_video` with default
  :class:`~blursynth.flowblur.FlowBlurParams` (decode, flow, synthesis, encode of
  ``_blurry``, ``_sharp`` and ``_flow`` videos, manifest). If the driver cannot be imported,
  the fallback times the same stages by hand: decode, :func:`blursynth.flowblur.flowblur_frames`,
  encode blurry and sharp (the output says which path ran).
- seed: decode, :func:`blursynth.compat.iter_synthblur` (the original synthblur blur at the
  input resolution: two 720p Farneback flows and 38 splatted sub-frames per output frame),
  encode blurry and sharp with the same writer.

Both are warmed up first on a tiny clip so numba compilation is not timed. Reported: output
frames, wall time, output frames per second, and the speed ratio. Ours runs end to end
``--repeat`` times (default 3, each into a fresh folder) and its row is the median run, with
every run's rate listed below the table: on a shared 2-core VM one run of the same code varies
by about +-15%. The seed runs once (a minute per run). Unless ``--no-breakdown``,
three more rows show where the time goes: each method's synthesis alone on frames decoded into
memory (no file I/O), and decoding alone. Goals (end-to-end rows): ours >= 10 output frames/s
at 720p and >= 3x the seed's rate.

Time: about 3.5 minutes on 2 cores with the default 120 frames, 4 s of 30 fps video (plus ~15 s
to render the clip the first time); ``--frames`` scales it linearly. Shorter clips show a lower
rate: starting four ffmpeg processes, the first pair's flow and the encoders' final flush are
paid once per video (at 40 frames, about 0.5 frame/s less).
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine_line, markdown_table, parse_size

from blursynth.compat import iter_synthblur, synthblur_frames
from blursynth.crf import encode_u8, get_crf
from blursynth.flowblur import FlowBlurParams, flowblur_array, flowblur_frames
from blursynth.scenes import make_scene
from blursynth.video import VideoReader, VideoWriter, probe, read_video

FPS = 30.0
GOAL_FPS = 10.0
GOAL_RATIO = 3.0


def make_clip(path: Path, size: tuple[int, int], n_frames: int, speed: float) -> float:
    """Render the benchmark clip to ``path`` unless it exists; seconds spent.

    The clip is high-quality lossy H.264 (CRF 18), like footage downloaded to make data from;
    a lossless RGB input would cost several times more to decode than any real source.
    """
    if path.is_file():
        return 0.0
    t0 = time.perf_counter()
    # supersample=1: edge anti-aliasing does not matter for a speed test, and it is 4x faster.
    scene = make_scene("translation", size=size, speed=speed, supersample=1)
    crf = get_crf(scene.crf)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, FPS, quality=18) as w:  # atomic: a cut-short render leaves no cache
        for i in range(n_frames):
            w.write(encode_u8(scene.render(float(i)), crf))
    return time.perf_counter() - t0


def warm_up() -> None:
    """Compile the numba kernels of both methods (cached on disk after the first run)."""
    rng = np.random.default_rng(0)
    tiny = rng.integers(0, 256, (4, 72, 128, 3), dtype=np.uint8)
    flowblur_array(tiny, FlowBlurParams())
    synthblur_frames(tiny)


def driver():
    """The video driver, or None (with the reason) while it is not importable."""
    try:
        from blursynth.flowblur_video import flowblur_video
    except ImportError as e:
        return None, f"{type(e).__name__}: {e}"
    return flowblur_video, ""


def run_ours_driver(fn, clip: Path, out_dir: Path) -> int:
    """Ours through the driver; returns the number of output frames."""
    kwargs = {"params": FlowBlurParams()}
    accepted = inspect.signature(fn).parameters
    # Fresh out_dir, so nothing is resumed; no progress bar in the timing.
    for name, value in (("resume", False), ("show_progress", False)):
        if name in accepted:
            kwargs[name] = value
    rec = fn(clip, out_dir, **kwargs)
    n = rec.get("frames_out") if isinstance(rec, dict) else None
    if n is None:  # count what was written
        n = len(read_video(out_dir / f"{clip.stem}_blurry.mp4")[0])
    return int(n)


def run_ours_fallback(clip: Path, out_dir: Path) -> int:
    """Ours by hand: decode, flowblur_frames, encode blurry + sharp."""
    frames, info = read_video(clip)
    n = 0
    with VideoWriter(out_dir / f"{clip.stem}_blurry.mp4", info.fps or FPS) as wb, \
            VideoWriter(out_dir / f"{clip.stem}_sharp.mp4", info.fps or FPS) as ws:
        for r in flowblur_frames(frames, FlowBlurParams()):
            if r.blurry is None:
                continue
            wb.write(r.blurry)
            ws.write(r.sharp)
            n += 1
    return n


def run_seed(clip: Path, out_dir: Path) -> int:
    """The seed method end to end: decode, synthblur, encode blurry + sharp."""
    fps = probe(clip).fps or FPS
    n = 0
    with VideoReader(clip) as reader, \
            VideoWriter(out_dir / f"{clip.stem}_seed_blurry.mp4", fps) as wb, \
            VideoWriter(out_dir / f"{clip.stem}_seed_sharp.mp4", fps) as ws:
        for blurry, sharp in iter_synthblur(reader):
            wb.write(blurry)
            ws.write(sharp)
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120,
                        help="input frames in the clip (default 120; outputs are 2 fewer)")
    parser.add_argument("--size", type=parse_size, default=(720, 1280),
                        help="frame size HxW (default 720x1280)")
    parser.add_argument("--speed", type=float, default=8.0, help="motion in px/frame (default 8)")
    cache = os.environ.get("BLURSYNTH_BENCH_CACHE",
                           Path(tempfile.gettempdir()) / "blursynth-bench")
    parser.add_argument("--cache-dir", type=Path, default=Path(cache),
                        help="where the rendered clip is kept (default: $BLURSYNTH_BENCH_CACHE "
                             "or <tmp>/blursynth-bench)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="end-to-end runs of ours; the median is reported (default 3: "
                             "on a shared 2-core VM one run varies by +-15%%)")
    parser.add_argument("--no-breakdown", action="store_true",
                        help="skip the in-memory synthesis and decode-only timings")
    args = parser.parse_args(argv)
    if args.frames < 4:
        parser.error("--frames: expected at least 4")
    if args.repeat < 1:
        parser.error("--repeat: expected at least 1")

    t_start = time.perf_counter()
    h, w = args.size
    clip = args.cache_dir / f"translation_{h}x{w}_v{args.speed:g}_{args.frames}f_crf18.mp4"
    t_render = make_clip(clip, args.size, args.frames, args.speed)
    warm_up()

    fn, why = driver()
    rows, rates, ours_rates = [], {}, []
    with tempfile.TemporaryDirectory(prefix="bench_flowblur_") as tmp:
        tmp = Path(tmp)
        runs = [("ours", "flowblur_video (decode, flow, synthesis, encode blurry+sharp+flow)"
                 if fn else "fallback: read_video + flowblur_frames + encode blurry+sharp",
                 (lambda d: run_ours_driver(fn, clip, d)) if fn
                 else (lambda d: run_ours_fallback(clip, d))),
                ("seed", "decode + compat.iter_synthblur + encode blurry+sharp",
                 lambda d: run_seed(clip, d))]
        for name, how, run in runs:
            times = []
            for k in range(args.repeat if name == "ours" else 1):
                out = tmp / f"{name}{k}"  # fresh each time: nothing is resumed
                out.mkdir()
                t0 = time.perf_counter()
                n = run(out)
                times.append(time.perf_counter() - t0)
                print(f"  {name}: {n} frames in {times[-1]:.2f} s", file=sys.stderr, flush=True)
            dt = float(np.median(times))
            rates[name] = n / dt
            if name == "ours":
                ours_rates = [n / t for t in times]
            rows.append([name if len(times) == 1 else f"{name} (median of {len(times)})", how,
                         n, f"{dt:.2f}", f"{n / dt:.2f}"])
        if not args.no_breakdown:
            # Where the time goes: the same work without file I/O, and decoding alone.
            frames, _ = read_video(clip)
            parts = [("ours", "synthesis only: flowblur_frames on decoded frames in memory",
                      lambda: sum(r.blurry is not None
                                  for r in flowblur_frames(frames, FlowBlurParams()))),
                     ("seed", "synthesis only: compat.synthblur_frames in memory",
                      lambda: len(synthblur_frames(frames)[0])),
                     ("decode", "read_video of the input alone (both methods include it)",
                      lambda: len(read_video(clip)[0]))]
            for name, how, run in parts:
                t0 = time.perf_counter()
                n = run()
                dt = time.perf_counter() - t0
                rates[f"{name} mem"] = n / dt
                rows.append([name, how, n, f"{dt:.2f}", f"{n / dt:.2f}"])
                print(f"  {name}: {how}: {n} frames in {dt:.2f} s", file=sys.stderr, flush=True)
            del frames
    ratio = rates["ours"] / rates["seed"]
    for r, key in zip(rows, ["ours", "seed", "ours mem", "seed mem", None]):
        base = rates["seed mem"] if key and key.endswith("mem") else rates["seed"]
        r.append(f"{rates[key] / base:.2f}x" if key else "")

    print(f"# End-to-end throughput at {w}x{h}\n")
    print(f"- {machine_line()}")
    print(f"- input: {clip.name} ({args.frames} frames, H.264 CRF 18, translation at "
          f"{args.speed:g} px/frame; rendered in {t_render:.1f} s"
          f"{'' if t_render else ', cached'}); outputs: lossless mp4 via blursynth.video")
    if not fn:
        print(f"- NOTE: blursynth.flowblur_video is not importable ({why}); ours was timed "
              "with the fallback (stages by hand, no flow video, no manifest)")
    print()
    print(markdown_table(["method", "what is timed", "frames", "wall (s)",
                          "frames/s", "vs seed (same kind of row)"], rows, "llrrrr"))
    if len(ours_rates) > 1:
        print("\n- ours, every run: " + ", ".join(f"{r:.2f}" for r in ours_rates) + " frames/s")
    print(f"\n- ours >= {GOAL_FPS:g} frames/s (median): {rates['ours']:.2f} -> "
          f"{'met' if rates['ours'] >= GOAL_FPS else '**missed**'}")
    print(f"- ours >= {GOAL_RATIO:g}x the seed: {ratio:.2f}x -> "
          f"{'met' if ratio >= GOAL_RATIO else '**missed**'}")
    print("- goals are judged on the end-to-end rows (first two)")
    print(f"\nWall time: {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
