"""The native blursynth LMDB: burst samples with provenance, written resumably, read anywhere.

Schema (``schema = "blursynth-native"``, ``version = 1``)
---------------------------------------------------------
A dataset is one LMDB environment (a directory ``OUT.lmdb/`` holding ``data.mdb`` and
``lock.mdb``), or, when written with ``shard_size=N``, the shards ``OUT-00000.lmdb/``,
``OUT-00001.lmdb/``, ... beside where ``OUT.lmdb`` would be (the number has five digits or
more). Every shard holds ``N`` records except the last, and is a complete native LMDB on its
own. Readers accept a shard, several paths, or the unsharded name ``OUT.lmdb`` (which finds
the shards). All values are msgpack (``use_bin_type=True``: byte strings are msgpack *bin*,
text is *str*). Keys, all ASCII except the sample ids:

``b"%08d" % i`` (``b"00000000"`` ...)
    Record ``i`` of this shard, ``i = 0 .. count-1``; its dataset-wide index is ``first + i``.
    A map, in this key order:

    - ``id`` (str): the sample id, unique in the dataset (``"<clip>/<frame:06d>/<y>_<x>"``);
    - ``encoding`` (str): ``"png"``, ``"jpeg"`` or ``"raw"``;
    - ``shape`` ([T, H, W, 3] ints): the burst's shape;
    - ``ref`` (int): index in ``0..T-1`` of the frame a trainer restores;
    - ``meta`` (map): the sample's JSON-able provenance (``clip``, ``frames``,
      ``source_frames``, ``crop``, ``crf``, ``exposure``, ``seed``, measured statistics);
    - ``blurry``, ``sharp`` (lists of T bin): one frame each, in time order. ``png``/``jpeg``:
      a standard image file with RGB colours (what any viewer shows; OpenCV users decode with
      ``cv2.imdecode`` and convert BGR->RGB); ``raw``: the ``H*W*3`` uint8 RGB values,
      C order. Values are 8-bit, encoded with the clip's camera response (not linear).

    The frames come last, so the other fields can be read without touching them.

``b"__id__/" + id.encode("utf-8")``
    ASCII decimal dataset-wide index of the record with that id (resume reads these without
    decoding any record).

``b"__meta__"``
    A map: ``schema``, ``version``, ``encoding``, ``quality`` (JPEG quality or None),
    ``png_level`` (PNG compression level or None), ``count`` (records in this shard),
    ``first`` (dataset-wide index of record 0), ``shard`` (number, or None when unsharded),
    ``shard_size`` (or None), ``shapes`` (sorted distinct ``[T, H, W, 3]``), ``crfs`` (sorted
    distinct ``meta["crf"]``), ``refs`` (sorted distinct ``ref``), ``created`` and ``updated``
    (UTC ISO 8601), ``blursynth_version``, and ``meta``: the writer's caller-supplied map (pack
    parameters, seed).

Consistency: records, id keys and ``__meta__`` of a batch are written in one transaction, so
the database is consistent after any interruption (Ctrl-C, ``kill -9``, full disk), and a
re-run with ``resume=True`` appends after the last committed record: no duplicates, no gaps.
The map starts at ``map_size`` bytes and grows on demand (:mod:`blursynth.formats.lmdb_io`).

Reading a record without blursynth::

    import cv2, lmdb, msgpack, numpy as np
    env = lmdb.open("OUT.lmdb", readonly=True, lock=False)
    with env.begin() as txn:
        meta = msgpack.unpackb(txn.get(b"__meta__"))
        rec = msgpack.unpackb(txn.get(b"00000000"))
    bgr = cv2.imdecode(np.frombuffer(rec["blurry"][0], np.uint8), cv2.IMREAD_COLOR)
    first_blurry = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # (H, W, 3) uint8 RGB
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

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

__all__ = [
    "SCHEMA", "VERSION", "ENCODINGS", "META_KEY", "ID_PREFIX",
    "encode_sample", "decode_record", "check_sample", "record_key",
    "NativeLmdbWriter", "write_native_lmdb", "NativeLmdbReader",
    "shard_path", "find_envs", "resolve_paths", "read_meta", "read_ids",
]


SCHEMA = "blursynth-native"
VERSION = 1
ENCODINGS = ("png", "jpeg", "raw")
META_KEY = b"__meta__"
ID_PREFIX = b"__id__/"
_MAX_KEY = 511  # LMDB's default maximum key size in bytes
PathLike = str | os.PathLike


def record_key(i: int) -> bytes:
    """Key of record `i` within its shard: ``b"%08d" % i``."""
    return b"%08d" % i


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes):
    return msgpack.unpackb(data, raw=False)


# -- records -----------------------------------------------------------------------------


def check_sample(sample: Sample) -> tuple[int, int, int]:
    """Validate a :class:`~blursynth.sampling.Sample`; return its ``(T, H, W)``.

    Raises
    ------
    ParameterError
        Not a Sample, an empty or over-long id, frames that are not ``(T, H, W, 3)`` uint8
        of one shape on both sides, or ``ref`` outside ``0..T-1``.
    """
    if not isinstance(sample, Sample):
        raise ParameterError(f"expected a blursynth.sampling.Sample, got {type(sample).__name__}")
    sid = sample.id
    if not isinstance(sid, str) or not sid or len(ID_PREFIX) + len(sid.encode()) > _MAX_KEY:
        raise ParameterError(f"sample id: expected a non-empty str of at most "
                             f"{_MAX_KEY - len(ID_PREFIX)} UTF-8 bytes, got {sid!r}")
    for side in ("blurry", "sharp"):
        a = getattr(sample, side)
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 4 \
                or a.shape[3] != 3 or 0 in a.shape:
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ParameterError(f"sample {sid}: {side}: expected a (T, H, W, 3) uint8 array, "
                                 f"got {got}")
    if sample.blurry.shape != sample.sharp.shape:
        raise ParameterError(f"sample {sid}: blurry is {sample.blurry.shape}, sharp "
                             f"{sample.sharp.shape}: expected the same shape")
    t, h, w = sample.blurry.shape[:3]
    if not isinstance(sample.ref, (int, np.integer)) or not 0 <= sample.ref < t:
        raise ParameterError(f"sample {sid}: ref: expected an index in 0..{t - 1}, "
                             f"got {sample.ref!r}")
    return t, h, w


def _check_encoding(encoding: str, quality: int, png_level: int) -> None:
    if encoding not in ENCODINGS:
        raise ParameterError(f"encoding: expected one of {', '.join(ENCODINGS)}, got {encoding!r}")
    check_int("quality", quality, 0, 100)
    check_int("png_level", png_level, 0, 9)


# Paeth prediction with Huffman-only deflate: on 256x256 photo crops (OpenCV 5, one core) 2.1 ms
# and 62 kB a frame, against 3.5 ms and 77 kB for OpenCV's default adaptive filters + deflate
# level 1. Still a standard PNG: every decoder reads it.
_PNG_FAST = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH,
             cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]


def _encode_frame(rgb: np.ndarray, encoding: str, quality: int, png_level: int) -> bytes:
    # Standard image files have RGB colours; OpenCV's encoder expects BGR.
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if encoding == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level),
                                             *_PNG_FAST])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise ParameterError(f"OpenCV could not encode a {rgb.shape} frame as {encoding}")
    return buf.tobytes()


def _bin_header(n: int) -> bytes:
    """msgpack's header of a bin of `n` bytes (its shortest form, as msgpack writes it)."""
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


class _RawRecord:
    """A raw record to be built right before its put: the msgpack bytes of ``head`` plus
    ``blurry``/``sharp`` as lists of raw frames, exactly as ``msgpack.packb`` writes the
    whole record.

    LMDB copies a value as it is put, so every record of a batch is built, one copy per
    frame (strided crops included), into the same scratch buffer, which stays in cache:
    records built ahead into buffers of their own had to be written to memory and read back
    from it: the raw writer ran at 72-84% of a plain put loop, against 76-97% now. The
    frames are held, not copied, until then, as the encoding threads hold them for PNG and
    JPEG.
    """

    __slots__ = ("_parts", "_size")

    def __init__(self, head: dict, blurry: np.ndarray, sharp: np.ndarray):
        packer = msgpack.Packer(use_bin_type=True)
        bin_header = _bin_header(blurry[0].nbytes)
        prefix = packer.pack_map_header(len(head) + 2) + b"".join(
            packer.pack(x) for kv in head.items() for x in kv)
        self._parts: list[bytes | np.ndarray] = [prefix]
        for key, frames in (("blurry", blurry), ("sharp", sharp)):
            self._parts.append(packer.pack(key) + packer.pack_array_header(len(frames)))
            for f in frames:
                self._parts += [bin_header, f]
        self._size = sum(len(x) if isinstance(x, bytes) else x.nbytes for x in self._parts)

    def __len__(self) -> int:
        return self._size

    def into(self, buf: bytearray) -> memoryview:
        """Build the record at the start of `buf` (at least ``len(self)`` bytes); return the
        view of it."""
        o = 0
        for x in self._parts:
            if isinstance(x, bytes):
                buf[o:o + len(x)] = x
                o += len(x)
            else:
                np.copyto(np.frombuffer(buf, np.uint8, x.nbytes, o).reshape(x.shape), x)
                o += x.nbytes
        return memoryview(buf)[:o]


def _plain(obj, what: str):
    """`obj` as msgpack stores it (tuples become lists); ParameterError if it cannot be."""
    try:
        return _unpack(_pack(obj))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ParameterError(f"{what}: expected JSON-able values (str, int, float, bool, "
                             f"None, lists, dicts with str keys), got {exc}") from None


def encode_sample(sample: Sample, encoding: str = "png", quality: int = 95,
                  png_level: int = 1) -> bytes:
    """Encode a sample as a native record (see the module docstring for the layout).

    Parameters
    ----------
    sample : blursynth.sampling.Sample
        ``blurry``/``sharp``: ``(T, H, W, 3)`` uint8 RGB, 0-255 encoded values.
    encoding : {"png", "jpeg", "raw"}
        Per-frame storage: lossless PNG (about 2x smaller than raw on photos), JPEG (lossy,
        about 10x smaller) or raw bytes (fastest to write and read).
    quality : int
        JPEG quality 0-100 (``encoding="jpeg"`` only).
    png_level : int
        PNG compression level 0-9 (``encoding="png"`` only); 1 is fast, higher levels save a
        few percent more at several times the cost.

    Returns
    -------
    bytes
        The msgpack record. A pure function of its arguments (no index inside), so records
        can be encoded in other processes and written by one writer
        (:meth:`NativeLmdbWriter.add_encoded`).

    Raises
    ------
    ParameterError
        An invalid sample (see :func:`check_sample`), option, or a ``meta`` that is not JSON-able.
    """
    rec = _encode(sample, encoding, quality, png_level)
    return bytes(rec.into(bytearray(len(rec)))) if isinstance(rec, _RawRecord) else rec


def _encode(sample: Sample, encoding: str, quality: int,
            png_level: int) -> bytes | _RawRecord:
    """:func:`encode_sample` for the writer: a raw record is left to be built at its put."""
    _check_encoding(encoding, quality, png_level)
    check_sample(sample)
    head = {"id": sample.id, "encoding": encoding, "shape": list(sample.blurry.shape),
            "ref": int(sample.ref), "meta": sample.meta}
    try:
        if encoding == "raw":
            return _RawRecord(head, sample.blurry, sample.sharp)
        return _pack({**head,
                      "blurry": [_encode_frame(f, encoding, quality, png_level)
                                 for f in sample.blurry],
                      "sharp": [_encode_frame(f, encoding, quality, png_level)
                                for f in sample.sharp]})
    except (TypeError, ValueError, OverflowError) as exc:
        raise ParameterError(f"sample {sample.id}: meta: expected JSON-able values, "
                             f"got {exc}") from None


def _decode_frames(bufs: list, idx: Sequence[int], encoding: str, hw: tuple[int, int],
                   where: str) -> np.ndarray:
    h, w = hw
    out = np.empty((len(idx), h, w, 3), np.uint8)
    for j, t in enumerate(idx):
        buf = np.frombuffer(bufs[t], np.uint8)
        if encoding == "raw":
            if buf.size != h * w * 3:
                raise InputFileError(where, f"frame {t} holds {buf.size} bytes, expected "
                                            f"{h * w * 3} for {h}x{w}x3")
            out[j] = buf.reshape(h, w, 3)
            continue
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape != (h, w, 3):
            got = "not a decodable image" if bgr is None else f"{bgr.shape}"
            raise InputFileError(where, f"frame {t}: expected a {h}x{w} RGB {encoding}, got {got}")
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out[j])
    return out


def decode_record(data: bytes, *, frames: Sequence[int] | None = None,
                  source: PathLike = "record") -> Sample:
    """Decode a native record into a :class:`~blursynth.sampling.Sample`.

    Parameters
    ----------
    data : bytes
        A record value (:func:`encode_sample`).
    frames : sequence of int, optional
        Burst indices to decode, in the order wanted (negative ones count from the end);
        default all. ``ref`` of the result is the position of the record's reference among
        them.
    source : str or os.PathLike
        Named in error messages (e.g. ``"OUT.lmdb, record 12"``).

    Returns
    -------
    Sample
        ``blurry``/``sharp`` ``(T', H, W, 3)`` uint8 RGB (writable arrays): exactly the
        encoded frames for PNG and raw, the decoded JPEG for JPEG.

    Raises
    ------
    InputFileError
        `data` is not a native record, or a frame does not decode to its stated shape.
    ParameterError
        `frames` is out of range or leaves out the reference frame.
    """
    try:
        rec = _unpack(data)
        sid, enc, shape, ref = rec["id"], rec["encoding"], rec["shape"], rec["ref"]
        t, h, w = (int(v) for v in shape[:3])
        blurry, sharp = rec["blurry"], rec["sharp"]
    except Exception as exc:
        raise InputFileError(source, f"not a blursynth native record ({exc!r})") from None
    where = f"{source} (sample {sid})"
    if enc not in ENCODINGS or len(blurry) != t or len(sharp) != t or not 0 <= ref < t:
        raise InputFileError(where, f"inconsistent record: encoding {enc!r}, shape {shape}, "
                                    f"ref {ref}, {len(blurry)} blurry and {len(sharp)} sharp "
                                    "frames")
    idx = list(range(t)) if frames is None else _frame_indices(frames, t, sid)
    if ref not in idx:
        raise ParameterError(f"frames={list(frames)} leaves out the reference frame {ref} "
                             f"of sample {sid}")
    return Sample(id=sid, blurry=_decode_frames(blurry, idx, enc, (h, w), where),
                  sharp=_decode_frames(sharp, idx, enc, (h, w), where),
                  ref=idx.index(ref), meta=rec.get("meta") or {})


def _record_header(data: bytes) -> dict:
    """A record's fields before its frames (all but ``blurry``/``sharp``), read without
    copying the frames."""
    up = msgpack.Unpacker(io.BytesIO(data), raw=False, read_size=1 << 16)
    out = {}
    for _ in range(up.read_map_header()):
        key = up.unpack()
        if key in ("blurry", "sharp"):
            break
        out[key] = up.unpack()
    return out


def _frame_indices(frames: Sequence[int], t: int, sid: str) -> list[int]:
    idx = [int(f) + t if int(f) < 0 else int(f) for f in frames]
    if not idx or not all(0 <= i < t for i in idx):
        raise ParameterError(f"frames: expected indices in -{t}..{t - 1} for sample {sid} "
                             f"of {t} frames, got {list(frames)}")
    return idx


# -- paths, shards and metadata ----------------------------------------------------------


def _stem(path: Path) -> str:
    return path.name[:-5] if path.name.endswith(".lmdb") else path.name


def shard_path(path: PathLike, k: int) -> Path:
    """Shard `k` of the dataset `path`: ``OUT.lmdb`` -> ``OUT-0000k.lmdb`` beside it."""
    p = Path(path)
    return p.parent / f"{_stem(p)}-{k:05d}.lmdb"


def find_envs(path: PathLike, *, error: type = InputFileError) -> tuple[list[Path], bool]:
    """The environments of the dataset `path`: ``([path], False)`` for an unsharded one,
    ``([shard 0, shard 1, ...], True)`` for a sharded one, ``([], False)`` if none exists.

    Raises
    ------
    InputFileError (or `error`)
        `path` exists but is not an LMDB directory, both `path` and shards exist, or a
        shard number is missing.
    """
    p = Path(path)
    rx = re.compile(re.escape(_stem(p)) + r"-(\d{5,})\.lmdb")
    shards = {}
    if p.parent.is_dir():
        shards = {int(m.group(1)): c for c in p.parent.iterdir() if (m := rx.fullmatch(c.name))}
    if p.exists() or p.is_symlink():
        if not (p / "data.mdb").is_file():
            raise error(p, "exists but is not an LMDB directory (no data.mdb inside)")
        if shards:
            raise error(p, f"both {p.name} and the shards {shard_path(p, 0).name}... exist: "
                           "remove one of them")
        return [p], False
    if not shards:
        return [], False
    missing = sorted(set(range(max(shards) + 1)) - set(shards))
    if missing:
        raise error(shard_path(p, missing[0]), "missing: the shards must be numbered "
                                               "without gaps from 00000")
    return [shards[k] for k in range(len(shards))], True


def read_meta(env: lmdb.Environment, path: PathLike) -> dict:
    """The ``__meta__`` map of a native environment.

    Raises
    ------
    InputFileError
        There is none, it names another schema, or a newer version.
    """
    with env.begin() as txn:
        raw = txn.get(META_KEY)
    try:
        meta = _unpack(raw) if raw is not None else None
    except Exception:
        meta = None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise InputFileError(path, f"not a blursynth native LMDB (no {META_KEY.decode()} record "
                                   f"with schema {SCHEMA!r})")
    if meta.get("version", 0) > VERSION:
        raise InputFileError(path, f"written with schema version {meta['version']}, this "
                                   f"blursynth reads up to {VERSION}: upgrade blursynth")
    return meta


def read_ids(env: lmdb.Environment) -> dict[str, int]:
    """``{sample id: dataset-wide index}`` from the ``__id__/`` keys of one environment."""
    out = {}
    with env.begin() as txn:
        cur = txn.cursor()
        if cur.set_range(ID_PREFIX):
            for key, value in cur:
                if not key.startswith(ID_PREFIX):
                    break
                out[key[len(ID_PREFIX):].decode()] = int(value)
    return out


@dataclass
class _Shard:
    """What the writer knows of the environment it is writing."""

    number: int | None
    path: Path
    env: lmdb.Environment
    first: int
    count: int = 0
    shapes: frozenset = frozenset()
    crfs: frozenset = frozenset()
    refs: frozenset = frozenset()
    created: str = field(default_factory=_now)


class _Encoded(NamedTuple):
    """An encoded record plus the facts ``__meta__`` summarises."""

    id: str
    data: bytes | _RawRecord
    shape: tuple
    crf: str | None
    ref: int


def _crf_of(meta) -> str | None:
    """``meta["crf"]`` as ``__meta__`` lists it (a string; None when absent)."""
    crf = meta.get("crf") if isinstance(meta, dict) else None
    return crf if crf is None or isinstance(crf, str) else repr(crf)


def _encode_item(sample: Sample, encoding: str, quality: int, png_level: int) -> _Encoded:
    data = _encode(sample, encoding, quality, png_level)
    return _Encoded(sample.id, data, tuple(sample.blurry.shape), _crf_of(sample.meta),
                    int(sample.ref))


# -- writer ------------------------------------------------------------------------------


class NativeLmdbWriter(BatchedWriter):
    """Write samples to a native LMDB (optionally sharded), resumably.

    Parameters
    ----------
    path : str or os.PathLike
        The dataset, e.g. ``OUT.lmdb`` (a directory); with `shard_size`, the shards
        ``OUT-00000.lmdb``, ... beside it.
    encoding : {"png", "jpeg", "raw"}
        Frame storage (see :func:`encode_sample`).
    quality : int
        JPEG quality (0-100).
    png_level : int
        PNG compression level (0-9).
    shard_size : int, optional
        Records per shard; default one environment.
    batch : int
        Records per transaction. Each commit also rewrites ``__meta__``, so an interrupted
        run loses at most the records of one uncommitted batch.
    meta : dict, optional
        JSON-able description of the run (pack parameters, seed), stored in ``__meta__``.
    workers : int
        Encoding threads (OpenCV's encoders release the GIL); 0 encodes in the caller's
        thread. ``raw`` uses none: its records are built in the caller's thread, each right
        before its put.
    map_size : int
        Initial LMDB map size in bytes; it doubles whenever full.
    resume : bool
        Continue an existing dataset written with the same options; ids already in it are
        skipped. If False, an existing dataset is an error (unless `overwrite`).
    overwrite : bool
        Delete an existing dataset at `path` first.

    Attributes
    ----------
    count : int
        Records in the dataset (committed).
    written, skipped : int
        Records committed by this writer, and samples skipped because their id was present.

    Raises
    ------
    ParameterError
        An invalid option, or resuming with other options than the dataset was written with.
    OutputError
        The output cannot be created or written, or exists and neither `resume` nor
        `overwrite` is set.
    InputFileError
        The existing output is not a (complete) blursynth native LMDB.

    Notes
    -----
    Samples are encoded in a thread pool and committed strictly in the order added. If an
    exception (including KeyboardInterrupt) leaves the ``with`` block, the samples added so
    far are encoded and committed before it propagates (up to one whose encoding failed, so
    there is never a gap). After ``kill -9`` or a power loss, the batches committed are there
    and a resumed run adds the rest. A write error raises :class:`OutputError` naming the
    shard; shards closed earlier are untouched. Close readers of the dataset opened in the
    same process before resuming it (LMDB allows one handle per process).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from blursynth.sampling import Sample
    >>> out = os.path.join(tempfile.mkdtemp(), "demo.lmdb")
    >>> burst = np.zeros((3, 8, 8, 3), np.uint8)
    >>> with NativeLmdbWriter(out) as w:
    ...     w.add(Sample("clip/000000/0_0", burst, burst, ref=1, meta={"crf": "srgb"}))
    True
    >>> NativeLmdbReader(out)[0].ref
    1
    """

    def __init__(self, path: PathLike, *, encoding: str = "png", quality: int = 95,
                 png_level: int = 1, shard_size: int | None = None, batch: int = 64,
                 meta: dict | None = None, workers: int = 2, map_size: int = 1 << 28,
                 resume: bool = True, overwrite: bool = False):
        _check_encoding(encoding, quality, png_level)
        if shard_size is not None:
            check_int("shard_size", shard_size, 1)
        check_int("map_size", map_size, 1 << 12)
        self.path = Path(path)
        self.encoding, self.quality, self.png_level = encoding, int(quality), int(png_level)
        self.shard_size = shard_size
        self._meta = _plain(meta or {}, "meta")
        self._map_size = map_size
        self._ids: set[str] = set()
        self.count = self.written = self.skipped = 0
        self._shard: _Shard | None = None
        self._scratch = bytearray()  # where raw records are built, one at a time
        super().__init__(batch=batch, workers=0 if encoding == "raw" else workers)
        try:
            self._start(resume, overwrite)
        except BaseException:
            self._shutdown()
            raise

    # options as stored in __meta__; resuming requires them equal
    def _options(self) -> dict:
        return {"encoding": self.encoding,
                "quality": self.quality if self.encoding == "jpeg" else None,
                "png_level": self.png_level if self.encoding == "png" else None,
                "shard_size": self.shard_size, "meta": self._meta}

    def _start(self, resume: bool, overwrite: bool) -> None:
        existing, sharded = find_envs(self.path, error=OutputError)
        if existing and overwrite:
            for p in existing:
                remove_tree(p)
            existing = []
        if existing and not resume:
            raise OutputError(existing[0], "already exists: resume it (resume=True) or "
                                           "replace it (overwrite=True)")
        if existing and sharded != (self.shard_size is not None):
            raise ParameterError(f"{self.path}: the existing dataset is "
                                 f"{'sharded' if sharded else 'not sharded'}; resume it with "
                                 f"the same shard_size")
        for p in existing[:-1]:  # closed shards: only their ids and counts are needed
            env = acquire_readonly(p)
            try:
                self._adopt(read_meta(env, p), read_ids(env), p, full=True)
            finally:
                release_readonly(p)
        last = len(existing) - 1 if existing else 0
        self._open(last if sharded or self.shard_size is not None else None)

    def _adopt(self, meta: dict, ids: dict[str, int], path: Path, full: bool) -> None:
        """Check an existing environment against this writer's options; take its ids."""
        theirs = {k: meta.get(k) for k in self._options()}
        diff = sorted(k for k, v in self._options().items() if theirs[k] != v)
        if diff:
            shown = ", ".join(f"{k}={theirs[k]!r} (asked {self._options()[k]!r})" for k in diff)
            raise ParameterError(f"{path}: was written with {shown}; resume with the same "
                                 f"options, or overwrite it")
        if meta["first"] != self.count or len(ids) != meta["count"] or \
                (full and meta["count"] != self.shard_size):
            raise InputFileError(path, f"inconsistent shard: first={meta['first']}, "
                                       f"count={meta['count']}, {len(ids)} ids, expected first="
                                       f"{self.count}" + (f" and {self.shard_size} records"
                                                          if full else ""))
        self._ids.update(ids)
        self.count += meta["count"]

    def _open(self, number: int | None) -> None:
        path = self.path if number is None else shard_path(self.path, number)
        env = open_env(path, map_size=self._map_size)
        try:
            with env.begin() as txn:
                fresh = txn.get(META_KEY) is None and env.stat()["entries"] == 0
            if fresh:  # write __meta__ at once: an empty dataset is a valid one
                st = _Shard(number, path, env, first=self.count)
                put_all(env, [(META_KEY, _pack(self._meta_of(st)))], path)
                self._shard = st
                return
            meta = read_meta(env, path)
            self._adopt(meta, read_ids(env), path, full=False)
            self._shard = _Shard(number, path, env, first=meta["first"], count=meta["count"],
                                 shapes=frozenset(tuple(s) for s in meta["shapes"]),
                                 crfs=frozenset(meta["crfs"]), refs=frozenset(meta["refs"]),
                                 created=meta["created"])
        except BaseException:
            env.close()
            raise

    def _meta_of(self, st: _Shard) -> dict:
        return {"schema": SCHEMA, "version": VERSION, **self._options(), "count": st.count,
                "first": st.first, "shard": st.number,
                "shapes": sorted(list(s) for s in st.shapes),
                "crfs": sorted(st.crfs), "refs": sorted(st.refs),
                "created": st.created, "updated": _now(), "blursynth_version": __version__}

    def has(self, sample_id: str) -> bool:
        """Whether a sample with this id is in the dataset or already added."""
        return sample_id in self._ids

    def add(self, sample: Sample) -> bool:
        """Queue a sample for encoding and writing.

        Parameters
        ----------
        sample : blursynth.sampling.Sample
            ``(T, H, W, 3)`` uint8 RGB bursts; the shape may differ between samples.

        Returns
        -------
        bool
            False if a sample with this id is already present (nothing is written).

        Raises
        ------
        ParameterError
            An invalid sample (checked here, before anything is queued).
        OutputError
            A batch commit failed.
        """
        check_sample(sample)
        if not self._claim(sample.id):
            return False
        self._submit(_encode_item, sample, self.encoding, self.quality, self.png_level)
        return True

    def add_encoded(self, record: bytes) -> bool:
        """Queue a record encoded elsewhere (:func:`encode_sample`, e.g. in a worker process).

        Returns
        -------
        bool
            False if its id is already present.

        Raises
        ------
        InputFileError
            `record` is not a native record.
        ParameterError
            Its encoding differs from this writer's.
        """
        try:
            rec = _record_header(record)
            item = _Encoded(rec["id"], bytes(record), tuple(rec["shape"]),
                            _crf_of(rec.get("meta")), int(rec["ref"]))
            enc = rec["encoding"]
        except Exception as exc:
            raise InputFileError("record", f"not a blursynth native record ({exc!r})") from None
        if enc != self.encoding:
            raise ParameterError(f"record {item.id}: encoding {enc!r}, this writer stores "
                                 f"{self.encoding!r}")
        if not self._claim(item.id):
            return False
        self._put_ready(item)
        return True

    def _claim(self, sample_id: str) -> bool:
        self._require_open()
        if sample_id in self._ids:
            self.skipped += 1
            return False
        self._ids.add(sample_id)
        return True

    def _flush(self, items: list) -> None:
        while items:
            st = self._shard
            room = len(items) if self.shard_size is None else self.shard_size - st.count
            if room <= 0:
                self._roll()
                continue
            self._write(items[:room])
            del items[:room]

    def _write(self, part: list[_Encoded]) -> None:
        st = self._shard
        puts = []
        for j, r in enumerate(part):
            puts.append((record_key(st.count + j), r.data))
            puts.append((ID_PREFIX + r.id.encode(), b"%d" % (self.count + j)))
        new = replace(st, count=st.count + len(part),
                      shapes=st.shapes | {r.shape for r in part},
                      crfs=st.crfs | {r.crf for r in part if r.crf is not None},
                      refs=st.refs | {r.ref for r in part})
        puts.append((META_KEY, _pack(self._meta_of(new))))
        put_all(st.env, puts, st.path, build=self._build)
        self._shard = new
        self.count += len(part)
        self.written += len(part)

    def _build(self, value: bytes | _RawRecord) -> bytes | memoryview:
        if not isinstance(value, _RawRecord):
            return value
        if len(self._scratch) < len(value):
            self._scratch = bytearray(len(value))
        return value.into(self._scratch)

    def _roll(self) -> None:
        """Close the full shard and start the next one."""
        number = self._shard.number + 1
        self._close_env()
        self._open(number)

    def _close_env(self) -> None:
        st, self._shard = self._shard, None
        if st is not None:
            close_env(st.env, st.path, sync=not self._failed)

    def _release(self) -> None:
        self._close_env()

    def _where(self) -> Path:
        return self._shard.path if self._shard is not None else self.path


def write_native_lmdb(samples: Iterable[Sample], path: PathLike, **options) -> NativeLmdbWriter:
    """Write `samples` with a :class:`NativeLmdbWriter` (keyword `options` as there).

    Returns
    -------
    NativeLmdbWriter
        The closed writer: ``count``, ``written`` and ``skipped`` say what happened.
    """
    with NativeLmdbWriter(path, **options) as w:
        for s in samples:
            w.add(s)
    return w



# -- reader ------------------------------------------------------------------------------


def resolve_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """The environments behind one or several dataset paths (shards found by name).

    Raises
    ------
    InputFileError
        A path is neither an LMDB directory nor the name of a sharded dataset.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for p in map(Path, paths):
        envs, _ = find_envs(p)
        if not envs:
            raise InputFileError(p, f"no such LMDB (neither the directory nor shards "
                                    f"{shard_path(p, 0).name}, ...)")
        out.extend(envs)
    if not out:
        raise InputFileError("paths", "expected at least one LMDB path, got none")
    return out


class NativeLmdbReader:
    """Random access to one or several native LMDBs (shards concatenated in order).

    Parameters
    ----------
    paths : path or iterable of paths
        LMDB directories, or the unsharded name of a sharded dataset (``OUT.lmdb`` finds
        ``OUT-00000.lmdb``, ...).

    Attributes
    ----------
    paths : list of pathlib.Path
        The environments, in order.
    metas : list of dict
        Each environment's ``__meta__``.
    meta : dict
        The first ``__meta__`` with ``count``, ``shapes``, ``crfs`` and ``refs`` summed or
        merged over all environments, and ``shards`` (their number).

    Raises
    ------
    InputFileError
        A path is missing or not a blursynth native LMDB.

    Notes
    -----
    Environments are opened lazily, read-only, without lock file or readahead, and reopened
    in a forked child (the process id is checked), so one reader can be handed to DataLoader
    workers; it pickles without its open environments.
    """

    def __init__(self, paths: PathLike | Iterable[PathLike]):
        self.paths = resolve_paths(paths)
        self.metas = []
        for p in self.paths:
            env = acquire_readonly(p)
            try:
                self.metas.append(read_meta(env, p))
            finally:
                release_readonly(p)
        self._offsets = np.cumsum([0] + [m["count"] for m in self.metas])
        self.meta = dict(self.metas[0], count=int(self._offsets[-1]), shards=len(self.paths),
                         shapes=_union(m["shapes"] for m in self.metas),
                         crfs=_union(m["crfs"] for m in self.metas),
                         refs=_union(m["refs"] for m in self.metas))
        self._envs: dict[int, lmdb.Environment] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _env(self, k: int) -> lmdb.Environment:
        if self._pid != os.getpid():  # forked: the parent's handles are not ours to use
            self._envs, self._pid = {}, os.getpid()
        env = self._envs.get(k)
        if env is None:
            env = self._envs[k] = acquire_readonly(self.paths[k])
        return env

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} records")
        i = int(i) % n
        k = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return k, i - int(self._offsets[k])

    def raw(self, i: int) -> bytes:
        """The stored record bytes of sample `i` (dataset-wide index)."""
        k, j = self._locate(i)
        with self._env(k).begin() as txn:
            data = txn.get(record_key(j))
        if data is None:
            raise InputFileError(self.paths[k], f"record {j} is missing (count says "
                                                f"{self.metas[k]['count']})")
        return data

    def get(self, i: int, *, frames: Sequence[int] | None = None) -> Sample:
        """Sample `i`, optionally only some frames (see :func:`decode_record`)."""
        k, j = self._locate(i)
        return decode_record(self.raw(i), frames=frames, source=f"{self.paths[k]}, record {j}")

    def __getitem__(self, i: int) -> Sample:
        return self.get(i)

    def ids(self) -> list[str]:
        """Sample ids in dataset order (from the ``__id__/`` keys; no record is decoded)."""
        out: list[str] = [""] * len(self)
        for k, meta in enumerate(self.metas):
            for sid, g in read_ids(self._env(k)).items():
                out[int(self._offsets[k]) + g - meta["first"]] = sid
        return out

    def close(self) -> None:
        """Give back the environments (a later access reopens them)."""
        envs, self._envs = self._envs, {}
        if self._pid == os.getpid():
            for k in envs:
                release_readonly(self.paths[k])

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to give back to
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_envs"] = {}
        return state


def _union(lists: Iterable[list]) -> list:
    seen: list = []
    for lst in lists:
        seen.extend(v for v in lst if v not in seen)
    return sorted(seen)
