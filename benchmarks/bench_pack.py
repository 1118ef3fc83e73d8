"""Packing and reading throughput of the native LMDB, against a raw LMDB put loop.

Standalone (no pytest)::

    .venv/bin/python benchmarks/bench_pack.py [--samples 400] [--size 256] [--workers 2]

Workload: ``--samples`` bursts of 5 frames of ``--size`` x ``--size`` pixels cropped from the
scikit-image photos (astronaut, coffee, chelsea, rocket) with a shift of 1-3 px per frame;
blurry frames are a 7-px horizontal box blur of the sharp ones. They are made in memory
before any timing. For each encoding (PNG, JPEG q95, raw), in the same run, one after the
other:

- **encode only**: :func:`~blursynth.formats.native_lmdb.encode_sample` of every sample on a
  thread pool of ``--workers`` threads, each record dropped at once, no LMDB (the encoding
  ceiling; best of 2);
- **raw put loop** (the baseline): those encoded records put into a fresh LMDB with keys
  ``%08d``, a commit every ``--batch`` records, the same environment flags, then closed;
- **writer.add**: :class:`~blursynth.formats.native_lmdb.NativeLmdbWriter` on the samples,
  encoding in its thread pool of ``--workers`` threads (what ``blursynth pack --lmdb`` does;
  a raw record is built in the caller's thread, into one scratch buffer, right before its put),
  starting from the default 256 MiB map (so map growth is included);
- **writer.add_encoded**: the writer fed the pre-encoded records (the writer's own cost:
  id keys, ``__meta__`` rewrites, ordering, commits).

The three writes run ``--repeat`` times in rotating order, each after ``os.sync()``, and
the best time of each is kept (the disk and other processes make single runs vary by up to
2x). Each row gives samples/s, MB/s
of record bytes and the rate relative to the raw put loop of the same bytes; for
writer.add also relative to the slower of "encode only" and "raw put loop", the most a
pipeline of the two stages could reach (less where both compete for the same cores). Goal: writer.add >= 80% of raw. Then, unless ``--no-read``, a torch
``DataLoader`` (batch 8, shuffled, 2 workers) over each written LMDB: samples/s of
:class:`~blursynth.data.NativeLmdbDataset` (decode + float tensors), page cache warm.

Time: about a minute on 2 cores with the defaults (PNG encoding dominates).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import lmdb
import numpy as np
from skimage import data

from common import machine_line, markdown_table

from blursynth.formats.lmdb_io import keep_freed_memory
from blursynth.formats.native_lmdb import NativeLmdbWriter, encode_sample, record_key
from blursynth.sampling import Sample

GOAL_RATIO = 0.8
ENCODINGS = ("png", "jpeg", "raw")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def make_samples(n: int, size: int, frames: int, seed: int = 0) -> list[Sample]:
    """Bursts cropped from real photos, moving 1-3 px per frame in a random direction."""
    rng = np.random.default_rng(seed)
    photos = [getattr(data, name)() for name in PHOTOS]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        step = rng.integers(-3, 4, size=2)
        reach = np.abs(step) * (frames - 1)
        y0 = int(rng.integers(0, img.shape[0] - size - reach[0] + 1)) + max(0, -step[0]) * (frames - 1)
        x0 = int(rng.integers(0, img.shape[1] - size - reach[1] + 1)) + max(0, -step[1]) * (frames - 1)
        sharp = np.stack([img[y0 + k * step[0]:y0 + k * step[0] + size,
                              x0 + k * step[1]:x0 + k * step[1] + size] for k in range(frames)])
        blurry = np.stack([cv2.blur(f, (7, 1)) for f in sharp])
        out.append(Sample(f"{PHOTOS[i % len(PHOTOS)]}/{i:06d}/{y0}_{x0}", blurry, sharp,
                          frames // 2, {"crf": "srgb"}))
    return out


def encode_all(samples: list[Sample], encoding: str, workers: int) -> list[bytes]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda s: encode_sample(s, encoding), samples))


def encode_only(samples: list[Sample], encoding: str, workers: int) -> None:
    """Encode every sample and drop the record (as the writer does once it is committed:
    keeping 400 records of 2 MB alive would time page faults, not encoding)."""
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda s: len(encode_sample(s, encoding)), samples):
            pass


def raw_put_loop(records: list[bytes], path: Path, batch: int) -> None:
    """The baseline: the same bytes, the same environment flags, nothing else."""
    env = lmdb.open(str(path), map_size=2 * sum(map(len, records)) + (64 << 20), meminit=False)
    for start in range(0, len(records), batch):
        with env.begin(write=True) as txn:
            for i in range(start, min(start + batch, len(records))):
                txn.put(record_key(i), records[i])
    env.sync(True)
    env.close()


def write_samples(samples: list[Sample], path: Path, encoding: str, workers: int,
                  batch: int) -> None:
    with NativeLmdbWriter(path, encoding=encoding, workers=workers, batch=batch,
                          resume=False) as w:
        for s in samples:
            w.add(s)


def write_records(records: list[bytes], path: Path, encoding: str, batch: int) -> None:
    with NativeLmdbWriter(path, encoding=encoding, workers=0, batch=batch, resume=False) as w:
        for r in records:
            w.add_encoded(r)


def read_rate(path: Path, batch_size: int = 8, workers: int = 2) -> tuple[int, float]:
    """Samples and seconds for one shuffled DataLoader epoch over the dataset."""
    import torch
    from torch.utils.data import DataLoader

    from blursynth.data import NativeLmdbDataset

    loader = DataLoader(NativeLmdbDataset(path), batch_size=batch_size, shuffle=True,
                        num_workers=workers, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    n = sum(len(b["id"]) for b in loader)
    return n, time.perf_counter() - t0


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400, help="bursts (default 400)")
    parser.add_argument("--size", type=int, default=256, help="patch side in pixels (default 256)")
    parser.add_argument("--frames", type=int, default=5, help="frames per burst (default 5)")
    parser.add_argument("--workers", type=int, default=2,
                        help="encoding threads of the writer and of 'encode only' (default 2)")
    parser.add_argument("--batch", type=int, default=64, help="records per commit (default 64)")
    parser.add_argument("--encodings", default=",".join(ENCODINGS),
                        help="comma-separated subset of png,jpeg,raw (default all)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs of each write, in rotating order; the best is kept (default 3)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the LMDBs are written (default: a temporary folder)")
    parser.add_argument("--no-read", action="store_true", help="skip the DataLoader timing")
    args = parser.parse_args(argv)
    encodings = args.encodings.split(",")
    if any(e not in ENCODINGS for e in encodings):
        parser.error(f"--encodings: expected a subset of {','.join(ENCODINGS)}")
    if min(args.samples, args.frames, args.workers, args.repeat) < 1 or args.size < 16:
        parser.error("expected --samples, --frames, --workers, --repeat >= 1 and --size >= 16")

    t_start = time.perf_counter()
    tuned = keep_freed_memory()  # as every writer does: the baseline runs under it too
    samples = make_samples(args.samples, args.size, args.frames)
    n = len(samples)
    write_rows, read_rows, ratios = [], [], {}
    root = Path(tempfile.mkdtemp(prefix="bench_pack_", dir=args.dir))
    try:
        for enc in encodings:
            records = encode_all(samples, enc, args.workers)
            t_enc = min(timed(encode_only, samples, enc, args.workers) for _ in range(2))
            mb = sum(map(len, records)) / 1e6
            runs = {"raw": lambda p: raw_put_loop(records, p, args.batch),
                    "add": lambda p: write_samples(samples, p, enc, args.workers, args.batch),
                    "pre": lambda p: write_records(records, p, enc, args.batch)}
            best = {k: float("inf") for k in runs}
            keys = list(runs)
            for rep in range(args.repeat):  # rotate the order, keep the best: disk and load vary
                for k in keys[rep % 3:] + keys[:rep % 3]:
                    os.sync()  # start each write without the previous one's writeback
                    best[k] = min(best[k], timed(runs[k], root / f"{k}_{enc}.lmdb"))
                    if k != "add" or rep < args.repeat - 1:  # the last one is read below
                        shutil.rmtree(root / f"{k}_{enc}.lmdb")
            runs = records = None  # free the encoded copies before the next encoding
            t_raw = best["raw"]
            ratios[enc] = t_raw / best["add"]
            ceiling = max(t_enc, t_raw)  # the slower of the two stages bounds writer.add
            for what, t in ((f"encode only ({args.workers} threads, no LMDB)", t_enc),
                            ("raw put loop (baseline)", t_raw),
                            ("writer.add (raw: built at its put)" if enc == "raw" else
                             f"writer.add ({args.workers} encoding threads)", best["add"]),
                            ("writer.add_encoded (pre-encoded)", best["pre"])):
                encode_row = "encode only" in what
                write_rows.append([enc, what, f"{n / t:.1f}", f"{mb / t:.0f}",
                                   "" if encode_row else f"{t_raw / t:.2f}",
                                   f"{ceiling / t:.2f}" if "writer.add (" in what else ""])
            print(f"  {enc}: {mb / n:.3f} MB/sample; encode {t_enc:.2f} s; best of "
                  f"{args.repeat}: raw {t_raw:.2f} s, add {best['add']:.2f} s, add_encoded "
                  f"{best['pre']:.2f} s", file=sys.stderr, flush=True)
            if not args.no_read:
                m, t = read_rate(root / f"add_{enc}.lmdb")
                read_rows.append([enc, f"{mb / n:.3f}", m, f"{t:.2f}", f"{m / t:.1f}"])
                print(f"  {enc}: read {m} samples in {t:.2f} s", file=sys.stderr, flush=True)
            shutil.rmtree(root / f"add_{enc}.lmdb")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"# Packing throughput: {n} bursts of {args.frames}x{args.size}x{args.size}x3\n")
    print(f"- {machine_line()}")
    print(f"- allocator: {'glibc keeping freed blocks (keep_freed_memory)' if tuned else 'default'}"
          " for every row")
    print(f"- commit every {args.batch} records; LMDB default flags (sync on commit); "
          f"folder: {args.dir or tempfile.gettempdir()}; writes: best of {args.repeat}, "
          "rotating order\n")
    print(markdown_table(["encoding", "what is timed", "samples/s", "MB/s", "vs raw put",
                          "vs min(encode, put)"], write_rows, "llrrrr"))
    for enc, r in ratios.items():
        print(f"- {enc}: writer.add at {r:.0%} of the raw put loop (goal >= {GOAL_RATIO:.0%}) "
              f"-> {'met' if r >= GOAL_RATIO else '**missed**'}")
    if read_rows:
        print("\n## Reading: torch DataLoader, batch 8, shuffled, 2 workers, NativeLmdbDataset\n")
        print(markdown_table(["encoding", "MB/sample", "samples", "wall (s)", "samples/s"],
                             read_rows, "lrrrr"))
    print(f"\nWall time: {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
