"""Throughput of segmentation-based blur at 720p: ours against SBDD's code as published.

Standalone (no pytest)::

    .venv/bin/python benchmarks/bench_segblur.py [--size 720x1280] [--kernel 65] [--objects 5]
                                                 [--rounds 3]

Input: a real photo (``skimage.data.astronaut()`` resized to the frame size with
``cv2.INTER_CUBIC``), sRGB 8-bit decoded to float32 linear light; ``--objects`` irregular blob
masks (ellipses with a smoothly wobbling outline, 1-8 % of the frame each, some overlapping,
some touching the border); ``--objects + 1`` kernels of ``--kernel`` pixels from
:func:`blursynth.psf.make_kernel` (``gp``; the camera's 10-20 px long, the objects' 20-60 px).

SBDD's code applies a bank kernel ``K`` as ``fftconvolve(x, K[::-1, ::-1])``; the benchmark's
"bank" holds ``K = k[::-1, ::-1]`` for our PSFs ``k``, so both sides compute the same blur.
Timed in the same process, interleaved (each round runs every method once; the median is
reported):

- ours: :func:`blursynth.segblur.sbdd_blur`, float32, ``border="valid"`` (SBDD's output size);
- baseline: the SBDD formula as its script writes it, float64: ``scipy.signal.fftconvolve(...,
  mode="valid")`` of every mask (``M_0 = 1 - union``) with its flipped kernel, alphas
  ``W_i / (sum W + 1e-6)``, and of every channel of the photo with every flipped kernel;
- ours: :func:`blursynth.segblur.layered_blur` (occlusion-aware; fills the background), valid;
- end to end: :func:`blursynth.segblur.segblur_item` (uint8 in, kernels drawn from the
  ``gp`` model, decode, blur, encode with rounding, uint8 out), for both models.

Accuracy: the largest absolute difference of ours ``sbdd`` from the float64 baseline, linear
0-1 scale. Goal: ours >= 3x the baseline's images/s at a difference < 1e-3.

Time: about 5 s on 2 cores with the defaults.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import scipy
import scipy.signal

from common import machine_line, markdown_table, parse_size, photo

from blursynth.crf import decode_u8
from blursynth.psf import make_kernel
from blursynth.segblur import SegParams, layered_blur, sbdd_blur, segblur_item
from blursynth.segmasks import SegItem

GOAL_RATIO = 3.0
GOAL_DIFF = 1e-3


def blobs(size: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, H, W)`` bool: ellipses whose outline wobbles by up to 25 % (object-like shapes)."""
    h, w = size
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    out = np.zeros((n, h, w), bool)
    for i in range(n):
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.05, 0.95) * w
        ry, rx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.06, 0.18) * w
        theta = np.arctan2(yy - cy, xx - cx)
        wobble = 1 + 0.25 * sum(rng.uniform(-1, 1) * np.cos(f * theta + rng.uniform(0, 6.3)) / f
                                for f in (2, 3, 5))
        out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= wobble ** 2
    return out


def sbdd_baseline(x: np.ndarray, masks: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """SBDD's blur formation (research notes 2.2), float64, per kernel and per channel."""
    x64 = x.astype(np.float64)
    ms = [1.0 - masks.any(axis=0)] + [m.astype(np.float64) for m in masks]
    ws = [scipy.signal.fftconvolve(m, k[::-1, ::-1], mode="valid") for m, k in zip(ms, bank)]
    total = sum(ws) + 1e-6
    y = 0.0
    for wi, k in zip(ws, bank):
        blurred = np.stack([scipy.signal.fftconvolve(x64[..., c], k[::-1, ::-1], mode="valid")
                            for c in range(x64.shape[2])], axis=-1)
        y = y + (wi / total)[..., None] * blurred
    return y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(720, 1280),
                        help="image size HxW (default 720x1280)")
    parser.add_argument("--kernel", type=int, default=65, help="kernel size K, odd (default 65)")
    parser.add_argument("--objects", type=int, default=5, help="moving objects (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (default 3)")
    args = parser.parse_args(argv)
    if args.kernel < 3 or args.kernel % 2 == 0:
        parser.error("--kernel: expected an odd size >= 3")
    t_start = time.perf_counter()

    rng = np.random.default_rng(0)
    u8 = photo(args.size)
    lin = decode_u8(u8, "srgb")
    masks = blobs(args.size, args.objects, rng)
    k = args.kernel
    ks = np.stack([make_kernel("gp", k, rng, extent=(10.0, min(20.0, k - 1.0)))]
                  + [make_kernel("gp", k, rng, extent=(min(20.0, k - 1.0), min(60.0, k - 1.0)))
                     for _ in range(args.objects)])
    bank = np.ascontiguousarray(ks[:, ::-1, ::-1], np.float64)  # as SBDD's files would hold
    item = SegItem("bench", None, masks)
    e2e = {m: SegParams(model=m, size=k, border="valid", object_extent=(20.0, k - 1.0),
                        camera_extent=(10.0, 20.0)) for m in ("layered", "sbdd")}

    methods = {
        "ours: sbdd_blur": ("float32, object terms on each mask's neighbourhood",
                            lambda: sbdd_blur(lin, masks, ks, border="valid")),
        "baseline: SBDD": ("scipy.signal.fftconvolve float64 per kernel and channel",
                           lambda: sbdd_baseline(lin, masks, bank)),
        "ours: layered_blur": ("float32, push-pull background fill, back-to-front layers",
                               lambda: layered_blur(lin, masks, ks, border="valid")),
        "ours: segblur_item layered": ("uint8 in/out: draw 6 gp kernels, decode, blur, encode",
                                       lambda: segblur_item(item, u8, e2e["layered"],
                                                            np.random.default_rng(1))),
        "ours: segblur_item sbdd": ("uint8 in/out, as above with the sbdd model",
                                    lambda: segblur_item(item, u8, e2e["sbdd"],
                                                         np.random.default_rng(1))),
    }
    # Warm-up (FFT plans, numba) and the accuracy check.
    want = sbdd_baseline(lin, masks, bank)
    diff = float(np.abs(sbdd_blur(lin, masks, ks, border="valid").astype(np.float64) - want).max())
    for _, fn in methods.values():
        fn()

    times: dict[str, list[float]] = {name: [] for name in methods}
    for rnd in range(args.rounds):
        for name, (_, fn) in methods.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        print(f"  round {rnd + 1}/{args.rounds}", file=sys.stderr, flush=True)

    med = {name: statistics.median(v) for name, v in times.items()}
    base = med["baseline: SBDD"]
    rows = [[name, how, f"{med[name] * 1e3:.0f}", f"{1 / med[name]:.2f}",
             f"{base / med[name]:.2f}x", f"{diff:.1e}" if name == "ours: sbdd_blur" else ""]
            for name, (how, _) in methods.items()]
    ratio = base / med["ours: sbdd_blur"]
    h, w = args.size
    cover = masks.any(axis=0).mean()

    print(f"# Segmentation-based blur at {w}x{h} RGB, {args.objects} objects, {k}x{k} kernels\n")
    print(f"- {machine_line()}, SciPy {scipy.__version__}")
    print(f"- image: skimage astronaut resized to {w}x{h}, sRGB decoded to float32 linear; "
          f"{args.objects} blob masks covering {cover:.0%} of the frame "
          f"({', '.join(f'{m.mean():.1%}' for m in masks)}); border valid "
          f"({w - k + 1}x{h - k + 1} out); {args.rounds} interleaved rounds, median per image")
    print()
    print(markdown_table(["method", "what is timed", "ms / image", "images/s", "vs baseline",
                          "max abs diff (linear)"], rows, "llrrrr"))
    ok = ratio >= GOAL_RATIO and diff < GOAL_DIFF
    print(f"\n- ours sbdd >= {GOAL_RATIO:g}x SBDD's float64 code at a max abs difference < "
          f"{GOAL_DIFF:g}: {ratio:.2f}x at {diff:.1e} -> {'met' if ok else '**missed**'}")
    print(f"\nWall time: {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
