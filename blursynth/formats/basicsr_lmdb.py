"""BasicSR-style paired LMDBs of whole frames (BasicSR's loaders crop on the fly).

Layout of the output folder ``OUT/``, as BasicSR's ``make_lmdb_from_imgs`` writes each LMDB
and its paired (``paired_paths_from_lmdb``) and REDS-style video loaders read them:

``OUT/blur.lmdb/`` and ``OUT/sharp.lmdb/`` (``dataroot_lq`` and ``dataroot_gt``)
    LMDB environments (``data.mdb``, ``lock.mdb``) with identical keys
    ``"{sequence}/{i:08d}"`` (ASCII), ``i = 0 .. n-1`` within each sequence, and values
    ``cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])`` of each frame
    (standard PNG files with RGB colours; BasicSR decodes them with ``cv2.imdecode`` and
    swaps BGR->RGB).
``OUT/{blur,sharp}.lmdb/meta_info.txt``
    One line per frame, ``f"{key}.png ({h},{w},{c}) {compress_level}"``; BasicSR takes
    ``line.split(".")[0]`` as the key and requires both files to hold the same set of keys.
``OUT/meta_info_clips.txt``
    One line per sequence, ``"{sequence} {n_frames} ({h},{w},3)"``: the ``meta_info_file`` of
    REDS-style video datasets, which read keys ``f"{sequence}/{i:08d}"`` for
    ``i < n_frames`` (BasicSR's ``REDSDataset`` also assumes 100 frames per clip).
``OUT/sequences.json``
    Provenance: for each sequence, its clip, the clip frames ``start .. stop-1`` it holds,
    the clip's CRF and exposure.

One sequence per :class:`~blursynth.sampling.Run`: it is named after its clip when it holds
the whole clip, else ``"{clip}_{start:06d}"``; characters other than ``A-Z a-z 0-9 _ -``
become ``_``, because BasicSR splits meta_info lines at ``.`` and spaces and keys at ``/``.

The folder is written under a temporary name and renamed when complete: an interrupted run
leaves nothing behind, and is re-run from the start.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import lmdb
import numpy as np

from ..errors import InputFileError, OutputError, ParameterError
from ..files import atomic_path
from ..sampling import Run
from .layouts import sanitise_name
from .lmdb_io import (
    BatchedWriter, acquire_readonly, check_int, close_env, open_env, put_all, release_readonly,
)

__all__ = ["write_basicsr_lmdb", "read_basicsr_lmdb", "read_basicsr_clips", "sequence_name",
           "BLUR", "SHARP", "META_INFO", "CLIPS_INFO"]

PathLike = str | os.PathLike

BLUR, SHARP = "blur.lmdb", "sharp.lmdb"
META_INFO = "meta_info.txt"
CLIPS_INFO = "meta_info_clips.txt"
SEQUENCES = "sequences.json"


def sequence_name(run: Run) -> str:
    """The sequence name of a run: its clip's name (made safe for BasicSR's parsers), plus
    ``_{start:06d}`` unless the run holds the whole clip."""
    base = sanitise_name(run.clip.name)
    whole = run.start == 0 and run.stop == run.clip.n_frames
    return base if whole else f"{base}_{run.start:06d}"


def _encode_pair(key: str, blurry: np.ndarray, sharp: np.ndarray,
                 level: int) -> tuple[str, bytes, bytes, tuple[int, int, int]]:
    out = []
    for rgb in (blurry, sharp):
        ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_PNG_COMPRESSION, level])
        if not ok:  # pragma: no cover
            raise ParameterError(f"{key}: OpenCV could not encode the frame as PNG")
        out.append(buf.tobytes())
    return key, out[0], out[1], blurry.shape


class _PairWriter(BatchedWriter):
    """Frame pairs into the two environments, PNG encoding in a thread pool."""

    def __init__(self, folder: Path, *, level: int, batch: int, workers: int, map_size: int):
        super().__init__(batch=batch, workers=workers)
        self.level = level
        self.paths = (folder / BLUR, folder / SHARP)
        self.lines: list[str] = []
        self._envs: list[lmdb.Environment] = []
        try:
            self._envs = [open_env(p, map_size=map_size) for p in self.paths]
        except BaseException:
            self._shutdown()
            raise

    def add(self, key: str, blurry: np.ndarray, sharp: np.ndarray) -> None:
        self._submit(_encode_pair, key, blurry, sharp, self.level)

    def _flush(self, items: list) -> None:
        for side, (env, path) in enumerate(zip(self._envs, self.paths), start=1):
            put_all(env, [(it[0].encode("ascii"), it[side]) for it in items], path)
        self.lines += [f"{key}.png ({h},{w},{c}) {self.level}" for key, _, _, (h, w, c) in items]
        del items[:]

    def _where(self) -> Path:
        return self.paths[0].parent

    def _release(self) -> None:
        envs, self._envs = self._envs, []
        errors = []
        for env, path in zip(envs, self.paths):  # close both even if one flush fails
            try:
                close_env(env, path, sync=not self._failed)
            except OutputError as err:
                errors.append(err)
        if errors:
            raise errors[0]


def _check_frame(run: Run, i: int, blurry: np.ndarray, sharp: np.ndarray) -> None:
    for side, a in (("blurry", blurry), ("sharp", sharp)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ParameterError(f"clip {run.clip.name}, frame {i}: {side}: expected (H, W, 3) "
                                 f"uint8, got {got}")
    if blurry.shape != sharp.shape:
        raise ParameterError(f"clip {run.clip.name}, frame {i}: blurry {blurry.shape} and sharp "
                             f"{sharp.shape} differ")


def _check_output(out: Path, overwrite: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise OutputError(out, "already exists: pass overwrite=True to replace it")
    ours = out.is_dir() and (out / BLUR).is_dir()
    if not ours and not (out.is_dir() and not any(out.iterdir())):
        raise OutputError(out, f"exists and is not a BasicSR LMDB folder (no {BLUR} inside): "
                               "refusing to replace it")


def write_basicsr_lmdb(runs: Iterable[Run], out: PathLike, *, compress_level: int = 1,
                       workers: int = 2, batch: int = 64, map_size: int = 1 << 28,
                       overwrite: bool = False) -> dict:
    """Write runs of whole frames as BasicSR paired LMDBs (see the module docstring).

    Parameters
    ----------
    runs : iterable of blursynth.sampling.Run
        Consecutive accepted frames of clips; frames are read with
        ``run.clip.frames(range(run.start, run.stop))`` (uint8 RGB).
    out : str or os.PathLike
        Output folder (created; written atomically).
    compress_level : int
        PNG compression level 0-9 (BasicSR's default 1), recorded in ``meta_info.txt``.
    workers : int
        PNG encoding threads (0: in the caller's thread).
    batch : int
        Frames per LMDB transaction.
    map_size : int
        Initial map size of each LMDB in bytes; it doubles whenever full.
    overwrite : bool
        Replace an existing output folder (only one this function wrote, or an empty one).

    Returns
    -------
    dict
        ``{"path": str, "sequences": [names], "frames": int}``.

    Raises
    ------
    ParameterError
        Invalid options, two runs with the same sequence name, or frames that are not
        ``(H, W, 3)`` uint8 pairs.
    OutputError
        The output exists (without `overwrite`) or cannot be written; nothing is left then.
    InputFileError, VideoError
        A frame cannot be read.
    """
    check_int("compress_level", compress_level, 0, 9)
    check_int("map_size", map_size, 1 << 12)
    out = Path(out)
    _check_output(out, overwrite)
    sequences: list[dict] = []
    taken: set[str] = set()
    with atomic_path(out, suffix="") as tmp:
        tmp.mkdir()
        with _PairWriter(tmp, level=compress_level, batch=batch, workers=workers,
                         map_size=map_size) as w:
            for run in runs:
                sequences.append(_write_run(w, run, taken))
        _write_text(tmp / BLUR / META_INFO, w.lines)
        _write_text(tmp / SHARP / META_INFO, w.lines)
        _write_text(tmp / CLIPS_INFO, [f"{s['sequence']} {s['stop'] - s['start']} "
                                       f"({s['height']},{s['width']},3)" for s in sequences])
        (tmp / SEQUENCES).write_text(json.dumps(sequences, indent=1) + "\n")
    return {"path": str(out), "sequences": [s["sequence"] for s in sequences],
            "frames": len(w.lines)}


def _write_run(w: _PairWriter, run: Run, taken: set[str]) -> dict:
    name = sequence_name(run)
    if len(run) < 1:
        raise ParameterError(f"clip {run.clip.name}: empty run {run.start}..{run.stop}")
    if name in taken:
        raise ParameterError(f"clip {run.clip.name}, frames {run.start}..{run.stop - 1}: "
                             f"sequence name {name!r} is already used (clip names that differ "
                             f"only in characters other than A-Z a-z 0-9 _ -, or overlapping runs)")
    taken.add(name)
    for i, b, s in run.clip.frames(range(run.start, run.stop)):
        _check_frame(run, i, b, s)
        w.add(f"{name}/{i - run.start:08d}", b, s)
    c = run.clip
    return {"sequence": name, "clip": c.name, "start": run.start, "stop": run.stop,
            "height": c.height, "width": c.width, "crf": c.crf, "exposure": c.exposure,
            "blurry": str(c.blurry), "sharp": str(c.sharp)}


def _write_text(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def _meta_keys(path: Path) -> list[str]:
    try:
        with open(path) as f:
            return [line.split(".")[0] for line in f]  # BasicSR's rule
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None


def read_basicsr_lmdb(folder: PathLike) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Read a paired BasicSR LMDB folder the way BasicSR's paired loader does.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder holding ``blur.lmdb/`` and ``sharp.lmdb/``.

    Yields
    ------
    key : str
        ``"{sequence}/{i:08d}"``, in sorted order (as ``paired_paths_from_lmdb``).
    blurry, sharp : numpy.ndarray
        ``(H, W, 3)`` uint8 RGB.

    Raises
    ------
    InputFileError
        A ``meta_info.txt`` is missing, the two key sets differ, a key has no value, or a
        value is not an image.
    """
    folder = Path(folder)
    paths = (folder / BLUR, folder / SHARP)
    keys = [_meta_keys(p / META_INFO) for p in paths]
    if set(keys[0]) != set(keys[1]):
        raise InputFileError(folder, f"the keys of {BLUR} and {SHARP} differ: BasicSR's paired "
                                     "loader refuses them")
    envs = []
    try:
        for p in paths:
            envs.append(acquire_readonly(p))
        for key in sorted(keys[0]):
            yield (key, *(_get_image(env, p, key) for env, p in zip(envs, paths)))
    finally:
        for p in paths[:len(envs)]:
            release_readonly(p)


def _get_image(env: lmdb.Environment, path: Path, key: str) -> np.ndarray:
    with env.begin() as txn:
        data = txn.get(key.encode("ascii"))
    if data is None:
        raise InputFileError(path, f"key {key!r} is listed in {META_INFO} but missing")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputFileError(path, f"key {key!r}: not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_basicsr_clips(folder: PathLike) -> list[tuple[str, int, tuple[int, int, int]]]:
    """``meta_info_clips.txt`` parsed as REDS-style loaders do: ``(sequence, n_frames, shape)``
    per line; their keys are ``f"{sequence}/{i:08d}"`` for ``i < n_frames``.

    Raises
    ------
    InputFileError
        The file is missing or a line does not have exactly three space-separated fields.
    """
    path = Path(folder) / CLIPS_INFO
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, start=1):
        fields = line.split(" ")
        if len(fields) != 3:
            raise InputFileError(path, f"line {n}: expected 'name n_frames (h,w,c)', got {line!r}")
        shape = tuple(int(v) for v in fields[2].strip("()").split(","))
        out.append((fields[0], int(fields[1]), shape))
    return out
