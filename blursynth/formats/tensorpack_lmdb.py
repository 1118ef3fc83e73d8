"""The 2017 tensorpack LMDB that learning-blind-motion-deblurring trains on.

What ``tensorpack.dataflow.dftools.dump_dataflow_to_lmdb`` of the 0.2 era writes, with
``msgpack_numpy.patch()`` active, for the bursts of the original ``data_sampler.py``:

- one LMDB **file** ``PATH`` (``subdir=False``) plus LMDB's ``PATH-lock``;
- keys ``b"0"``, ``b"1"``, ... (ASCII decimal, no padding), one per burst;
- ``b"__keys__"``: ``msgpack.packb([b"0", b"1", ...], use_bin_type=True)``, all record keys;
- each value: ``msgpack.packb(dp, use_bin_type=True)`` where ``dp`` is a list of 10
  one-dimensional uint8 arrays, blurry frames 0-4 then sharp frames 0-4, each holding the
  bytes of ``cv2.imencode(".jpg", frame)`` (OpenCV's default quality, 95) applied directly
  to the **RGB** array, as the original did (so ``cv2.imdecode`` gives RGB back). Each
  array is msgpack-numpy's map, keys in this order: ``{b"nd": True, b"type": "|u1",
  b"kind": b"", b"shape": [n], b"data": <n bytes>}`` (keys bin, ``"|u1"`` str).

The consumer (``LMDBDataPoint`` + ``data_provider.py``) loads ``__keys__``, gets each key,
decodes the arrays, ``cv2.imdecode``s them and takes a random 306x306 crop: patches smaller
than that are silently dropped, so they are refused here. Its target is always the last
sharp frame, so bursts must have ``ref == T - 1``.

Resuming: a side key ``b"__blursynth__"`` (which the consumer never reads) holds a msgpack
map ``{"schema": "blursynth-tensorpack", "version": 1, "frames", "quality", "ids" (in key
order), "created", "blursynth_version", "meta"}``; it and ``__keys__`` are rewritten in every
commit, so the file is consumable after any interruption and a re-run appends the missing
bursts.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import cv2
import lmdb
import msgpack
import numpy as np

from .. import __version__
from ..errors import InputFileError, OutputError, ParameterError
from ..sampling import Sample
from .lmdb_io import (
    BatchedWriter, acquire_readonly, check_int, close_env, open_env, put_all, release_readonly,
    remove_tree,
)
from .native_lmdb import _plain, check_sample

__all__ = ["TensorpackLmdbWriter", "write_tensorpack_lmdb", "read_tensorpack_lmdb",
           "encode_datapoint", "MIN_SIZE", "KEYS_KEY", "SIDE_KEY"]

PathLike = str | os.PathLike

#: The consumer crops 306x306 and silently drops anything smaller.
MIN_SIZE = 306
KEYS_KEY = b"__keys__"
SIDE_KEY = b"__blursynth__"
SCHEMA = "blursynth-tensorpack"


def _ndarray_map(data: bytes) -> dict:
    """msgpack-numpy's encoding of a 1-D uint8 array holding `data` (key order matters)."""
    return {b"nd": True, b"type": "|u1", b"kind": b"", b"shape": [len(data)], b"data": data}


def encode_datapoint(sample: Sample, frames: int = 5, quality: int = 95) -> bytes:
    """The value the 2017 writer stored for one burst.

    Parameters
    ----------
    sample : blursynth.sampling.Sample
        ``(frames, H, W, 3)`` uint8 RGB bursts, ``H, W >= 306``, ``ref == frames - 1``.
    frames : int
        Burst length the consumer expects (5).
    quality : int
        JPEG quality; 95, OpenCV's default, is what the original stored (same bytes).

    Returns
    -------
    bytes
        ``msgpack.packb([10 msgpack-numpy arrays of JPEG bytes], use_bin_type=True)``.

    Raises
    ------
    ParameterError
        The sample does not fit the consumer (length, size, reference frame).
    """
    t, h, w = check_sample(sample)
    if t != frames:
        raise ParameterError(f"sample {sample.id}: expected bursts of {frames} frames for the "
                             f"tensorpack LMDB, got {t}")
    if min(h, w) < MIN_SIZE:
        raise ParameterError(f"sample {sample.id}: the patch is {w}x{h}; learning-blind-motion-"
                             f"deblurring silently drops patches smaller than "
                             f"{MIN_SIZE}x{MIN_SIZE}: sample larger patches")
    if sample.ref != t - 1:
        raise ParameterError(f"sample {sample.id}: ref={sample.ref}, but learning-blind-motion-"
                             f"deblurring restores the last frame: sample with ref={t - 1}")
    jpegs = []
    for frame in (*sample.blurry, *sample.sharp):
        # The original passed RGB arrays to OpenCV as if BGR; cv2.imdecode undoes it.
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:  # pragma: no cover
            raise ParameterError(f"sample {sample.id}: OpenCV could not encode a frame")
        jpegs.append(_ndarray_map(buf.tobytes()))
    return msgpack.packb(jpegs, use_bin_type=True)


def _encode_item(sample: Sample, frames: int, quality: int) -> tuple[str, bytes]:
    return sample.id, encode_datapoint(sample, frames, quality)


class TensorpackLmdbWriter(BatchedWriter):
    """Write bursts as the 2017 tensorpack LMDB of learning-blind-motion-deblurring.

    Parameters
    ----------
    path : str or os.PathLike
        The LMDB file to write (e.g. ``train0.lmdb``); LMDB adds ``<path>-lock``.
    frames : int
        Burst length (the consumer needs 5).
    quality : int
        JPEG quality (95: the original's, OpenCV's default).
    commit_every : int
        Records per transaction (tensorpack's 5000).
    meta : dict, optional
        JSON-able description of the run, kept in the side record.
    workers : int
        JPEG encoding threads (0: in the caller's thread).
    map_size : int
        Initial map size in bytes; it doubles whenever full.
    resume : bool
        Append to a file this writer made before (ids already there are skipped).
    overwrite : bool
        Delete an existing file first.

    Attributes
    ----------
    count, written, skipped : int
        Records in the file, records committed by this writer, samples skipped as present.

    Raises
    ------
    ParameterError
        An invalid option, or resuming with another burst length or quality.
    OutputError
        The file cannot be written, or exists and neither `resume` nor `overwrite` is set,
        or exists without blursynth's side record (another tool wrote it).
    """

    def __init__(self, path: PathLike, *, frames: int = 5, quality: int = 95,
                 commit_every: int = 5000, meta: dict | None = None, workers: int = 2,
                 map_size: int = 1 << 28, resume: bool = True, overwrite: bool = False):
        check_int("frames", frames, 1)
        check_int("quality", quality, 0, 100)
        check_int("map_size", map_size, 1 << 12)
        self.path = Path(path)
        self.frames, self.quality = frames, int(quality)
        self._keys: list[bytes] = []
        self._id_list: list[str] = []
        self._ids: set[str] = set()
        self.written = self.skipped = 0
        self._side = {"schema": SCHEMA, "version": 1, "frames": frames, "quality": self.quality,
                      "ids": self._id_list,
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "blursynth_version": __version__, "meta": _plain(meta or {}, "meta")}
        self._env: lmdb.Environment | None = None
        super().__init__(batch=commit_every, workers=workers)
        try:
            self._start(resume, overwrite, map_size)
        except BaseException:
            self._shutdown()
            raise

    def _start(self, resume: bool, overwrite: bool, map_size: int) -> None:
        lock = self.path.with_name(self.path.name + "-lock")
        if self.path.is_dir():
            raise OutputError(self.path, "is a directory; the tensorpack LMDB is a single file")
        if self.path.exists() and overwrite:
            remove_tree(self.path)
            remove_tree(lock)
        if self.path.exists() and not resume:
            raise OutputError(self.path, "already exists: resume it (resume=True) or replace it "
                                         "(overwrite=True)")
        existed = self.path.exists()
        self._env = open_env(self.path, map_size=map_size, subdir=False)
        if existed:
            self._adopt()
        else:
            self._write([])  # an empty but consumable file: __keys__ = []

    def _adopt(self) -> None:
        with self._env.begin() as txn:
            side, keys = txn.get(SIDE_KEY), txn.get(KEYS_KEY)
        if side is None or keys is None:
            raise OutputError(self.path, f"exists and was not written by blursynth (no "
                                         f"{SIDE_KEY.decode()} record): refusing to append")
        side = msgpack.unpackb(side, raw=False)
        for key in ("frames", "quality"):
            if side.get(key) != getattr(self, key):
                raise ParameterError(f"{self.path}: was written with {key}={side.get(key)!r}, "
                                     f"asked {getattr(self, key)!r}")
        self._keys[:] = msgpack.unpackb(keys, raw=False)
        self._id_list[:] = side["ids"]
        if len(self._keys) != len(self._id_list):
            raise InputFileError(self.path, f"{len(self._keys)} keys but {len(self._id_list)} "
                                            "ids: the file is inconsistent")
        self._ids.update(self._id_list)
        self._side["created"] = side.get("created", self._side["created"])

    @property
    def count(self) -> int:
        return len(self._keys)

    def has(self, sample_id: str) -> bool:
        """Whether a burst with this id is in the file or already added."""
        return sample_id in self._ids

    def add(self, sample: Sample) -> bool:
        """Queue a burst; False (nothing written) if its id is present.

        Raises
        ------
        ParameterError
            The sample does not fit the consumer (see :func:`encode_datapoint`).
        OutputError
            A commit failed.
        """
        check_sample(sample)
        self._require_open()
        if sample.id in self._ids:
            self.skipped += 1
            return False
        self._ids.add(sample.id)
        self._submit(_encode_item, sample, self.frames, self.quality)
        return True

    def _flush(self, items: list) -> None:
        self._write(items)
        del items[:]

    def _write(self, items: list[tuple[str, bytes]]) -> None:
        n = len(self._keys)
        keys = self._keys + [str(n + j).encode("ascii") for j in range(len(items))]
        side = dict(self._side, ids=self._id_list + [sid for sid, _ in items])
        puts = [(k, data) for k, (_, data) in zip(keys[n:], items)]
        puts += [(KEYS_KEY, msgpack.packb(keys, use_bin_type=True)),
                 (SIDE_KEY, msgpack.packb(side, use_bin_type=True))]
        put_all(self._env, puts, self.path)
        self._keys[:] = keys
        self._id_list[:] = side["ids"]
        self.written += len(items)

    def _release(self) -> None:
        env, self._env = self._env, None
        if env is not None:
            close_env(env, self.path, sync=not self._failed)

    def _where(self) -> Path:
        return self.path


def write_tensorpack_lmdb(samples: Iterable[Sample], path: PathLike,
                          **options) -> TensorpackLmdbWriter:
    """Write `samples` with a :class:`TensorpackLmdbWriter` (keyword `options` as there);
    return the closed writer (``count``, ``written``, ``skipped``)."""
    with TensorpackLmdbWriter(path, **options) as w:
        for s in samples:
            w.add(s)
    return w


def _decode_ndarray(obj: dict):
    """msgpack-numpy's decoder, as the consumer applies it (object hook)."""
    if b"nd" in obj:
        return np.frombuffer(obj[b"data"], dtype=np.dtype(obj[b"type"])).reshape(obj[b"shape"])
    return obj


def read_tensorpack_lmdb(path: PathLike) -> Iterator[list[np.ndarray]]:
    """Read a tensorpack LMDB the way learning-blind-motion-deblurring does.

    Parameters
    ----------
    path : str or os.PathLike
        The LMDB file (or directory, as tensorpack also accepts).

    Yields
    ------
    list of numpy.ndarray
        Per ``__keys__`` entry, in order: the datapoint's arrays ``cv2.imdecode``d
        (``IMREAD_COLOR``, no channel swap): 10 ``(H, W, 3)`` uint8 RGB images, blurry
        frames 0-4 then sharp frames 0-4.

    Raises
    ------
    InputFileError
        Not an LMDB, no ``__keys__``, a key without a value, or an undecodable image.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such file")
    env = acquire_readonly(p, subdir=p.is_dir())
    try:
        with env.begin() as txn:
            raw = txn.get(KEYS_KEY)
            if raw is None:
                raise InputFileError(p, f"no {KEYS_KEY.decode()} record")
            for key in msgpack.unpackb(raw, raw=False):
                value = txn.get(key)
                if value is None:
                    raise InputFileError(p, f"key {key!r} is listed in __keys__ but missing")
                dp = msgpack.unpackb(value, raw=False, object_hook=_decode_ndarray)
                imgs = [cv2.imdecode(a, cv2.IMREAD_COLOR) for a in dp]
                if any(im is None for im in imgs):
                    raise InputFileError(p, f"key {key!r}: an image does not decode")
                yield imgs
    finally:
        release_readonly(p)
