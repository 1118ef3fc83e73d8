"""Throughput of shake-kernel application at 720p: ours against per-channel float64 FFT.

Standalone (no pytest)::

    .venv/bin/python benchmarks/bench_shake.py [--size 720x1280] [--kernel 65] [--kernels 4]
                                               [--rounds 5]

Input: a real photo (``skimage.data.astronaut()``, resized to the frame size with
``cv2.INTER_CUBIC``), sRGB 8-bit, decoded to float32 linear light; kernels: ``--kernels``
camera-shake PSFs of ``--kernel`` pixels from :func:`blursynth.psf.make_kernel` (``gp``), or,
while :mod:`blursynth.psf` is not importable, rasterised random smooth curves through the
centre (the output says which).

Timed in the same process, interleaved (each round runs every method once per kernel, so a
busy machine slows all of them alike); the median time per image is reported:

- ours: :func:`blursynth.convolve.convolve` (float32; one whole-image DFT per channel for
  kernels of 13x13 and more), reflect-101 borders, same-size output;
- baseline: ``scipy.signal.fftconvolve`` in float64, one channel at a time, ``mode="valid"`` on
  the image padded beforehand with the same reflect-101 border (the padding is *not* timed, so
  the ratio is conservative);
- alternatives considered for the CPU route, float32 and same border: ``cv2.filter2D`` (its own
  tiled DFT above 130 taps), ``scipy.signal.fftconvolve`` over both axes at once and
  ``scipy.signal.oaconvolve``;
- end to end: :func:`blursynth.convolve.blur_u8` (decode, convolve, encode with rounding),
  uint8 in and out;
- torch CPU (if installed): :func:`blursynth.convolve.convolve_torch` on one ``(1, 3, H, W)``
  image (the online transform's path).

Accuracy: the largest absolute difference from the float64 baseline over all kernels, linear
0-1 scale. Goal: ours >= 3x the baseline's images/s at a difference < 1e-3.

Time: about 30 s on 2 cores with the defaults.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import cv2
import numpy as np
import scipy
import scipy.signal

from common import machine_line, markdown_table, parse_size, photo

from blursynth.convolve import blur_u8, convolve, convolve_torch
from blursynth.crf import decode_u8

GOAL_RATIO = 3.0
GOAL_DIFF = 1e-3


def curve_kernel(size: int, rng: np.random.Generator) -> np.ndarray:
    """A rasterised random smooth curve of about 0.6 `size` px through the centre, sum 1."""
    steps = rng.normal(size=(400, 2)).cumsum(axis=0)  # a random walk, smoothed by integrating
    path = steps.cumsum(axis=0)
    path -= path.mean(axis=0)
    path *= 0.3 * size / np.abs(path).max()
    k = np.zeros((size, size), np.float32)
    c = size // 2
    np.add.at(k, (np.rint(c + path[:, 0]).astype(int), np.rint(c + path[:, 1]).astype(int)), 1)
    return k / k.sum()


def kernels(n: int, size: int) -> tuple[list[np.ndarray], str]:
    rng = np.random.default_rng(0)
    try:
        from blursynth.psf import make_kernel
    except ImportError as e:
        return ([curve_kernel(size, rng) for _ in range(n)],
                f"rasterised random curves (blursynth.psf not importable: {e})")
    return [make_kernel("gp", size, rng) for _ in range(n)], "blursynth.psf.make_kernel('gp')"


def baseline(padded64: np.ndarray, k: np.ndarray) -> np.ndarray:
    k64 = k.astype(np.float64)
    return np.stack([scipy.signal.fftconvolve(padded64[..., c], k64, mode="valid")
                     for c in range(padded64.shape[2])], axis=-1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(720, 1280),
                        help="image size HxW (default 720x1280)")
    parser.add_argument("--kernel", type=int, default=65, help="kernel size K, odd (default 65)")
    parser.add_argument("--kernels", type=int, default=4, help="kernels per round (default 4)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (default 5)")
    parser.add_argument("--no-alternatives", action="store_true",
                        help="time only ours, the baseline and blur_u8")
    args = parser.parse_args(argv)
    if args.kernel < 3 or args.kernel % 2 == 0:
        parser.error("--kernel: expected an odd size >= 3")
    t_start = time.perf_counter()

    u8 = photo(args.size)
    lin = decode_u8(u8, "srgb")
    ks, source = kernels(args.kernels, args.kernel)
    r = args.kernel // 2
    padded = np.pad(lin, ((r, r), (r, r), (0, 0)), mode="reflect")  # reflect-101
    padded64 = padded.astype(np.float64)
    flipped = [np.ascontiguousarray(k[::-1, ::-1]) for k in ks]

    methods = {
        "ours": ("blursynth.convolve.convolve, float32", lambda i: convolve(lin, ks[i])),
        "baseline": ("scipy.signal.fftconvolve per channel, float64 (padding untimed)",
                     lambda i: baseline(padded64, ks[i])),
    }
    if not args.no_alternatives:
        methods.update({
            "cv2.filter2D": ("float32, BORDER_REFLECT_101 (OpenCV's tiled DFT)",
                             lambda i: cv2.filter2D(lin, -1, flipped[i],
                                                    borderType=cv2.BORDER_REFLECT_101)),
            "fftconvolve f32": ("scipy.signal.fftconvolve axes=(0, 1), float32 (padding untimed)",
                                lambda i: scipy.signal.fftconvolve(padded, ks[i][:, :, None],
                                                                   mode="valid", axes=(0, 1))),
            "oaconvolve f32": ("scipy.signal.oaconvolve axes=(0, 1), float32 (padding untimed)",
                               lambda i: scipy.signal.oaconvolve(padded, ks[i][:, :, None],
                                                                 mode="valid", axes=(0, 1))),
        })
    methods["blur_u8"] = ("decode + convolve + encode, uint8 in and out",
                          lambda i: blur_u8(u8, ks[i], "srgb"))
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        x = torch.from_numpy(np.ascontiguousarray(lin.transpose(2, 0, 1)))[None]
        kt = [torch.from_numpy(k)[None] for k in ks]
        methods["torch cpu"] = (f"convolve_torch (torch {torch.__version__}, "
                                f"{torch.get_num_threads()} threads), float32",
                                lambda i: convolve_torch(x, kt[i])[0].numpy().transpose(1, 2, 0))

    # Warm-up (FFT plans, thread pools) and the accuracy check against the baseline.
    want = [baseline(padded64, k) for k in ks]
    diffs = {}
    for name, (_, fn) in methods.items():
        if name in ("baseline", "blur_u8"):
            continue
        diffs[name] = max(float(np.abs(fn(i).astype(np.float64) - want[i]).max())
                          for i in range(len(ks)))
    diffs["baseline"] = 0.0

    times: dict[str, list[float]] = {name: [] for name in methods}
    for rnd in range(args.rounds):
        for name, (_, fn) in methods.items():
            for i in range(len(ks)):
                t0 = time.perf_counter()
                fn(i)
                times[name].append(time.perf_counter() - t0)
        print(f"  round {rnd + 1}/{args.rounds}", file=sys.stderr, flush=True)

    med = {name: statistics.median(v) for name, v in times.items()}
    rows = []
    for name, (how, _) in methods.items():
        diff = diffs.get(name)
        rows.append([name, how, f"{med[name] * 1e3:.1f}", f"{1 / med[name]:.1f}",
                     f"{med['baseline'] / med[name]:.2f}x",
                     "" if diff is None else f"{diff:.1e}"])
    ratio = med["baseline"] / med["ours"]
    h, w = args.size

    print(f"# Shake-kernel application at {w}x{h} RGB, {args.kernel}x{args.kernel} kernels\n")
    print(f"- {machine_line()}, SciPy {scipy.__version__}")
    print(f"- image: skimage astronaut resized to {w}x{h}, sRGB decoded to float32 linear; "
          f"kernels: {len(ks)} x {source}; {args.rounds} interleaved rounds, median per image")
    print()
    print(markdown_table(["method", "what is timed", "ms / image", "images/s", "vs baseline",
                          "max abs diff (linear)"], rows, "llrrrr"))
    ok = ratio >= GOAL_RATIO and diffs["ours"] < GOAL_DIFF
    print(f"\n- ours >= {GOAL_RATIO:g}x the float64 baseline at a max abs difference < "
          f"{GOAL_DIFF:g}: {ratio:.2f}x at {diffs['ours']:.1e} -> {'met' if ok else '**missed**'}")
    print(f"- blur_u8 end to end: {1 / med['blur_u8']:.1f} images/s")
    print(f"\nWall time: {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
