"""JSON Lines manifests: one record per processed item, the resume marker.

Each stage appends a record per item (``"status": "ok" | "failed" | "skipped"``) to a
``.jsonl`` file. A record is written with one ``write`` call and fsynced, so a crash can
at worst leave an incomplete *last* line; readers skip it with a warning, the next append
removes it, and :meth:`Manifest.done` tells a resumed run which items are finished.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import BlursynthError, InputFileError, ParameterError
from .files import output_error

try:  # POSIX: serialise appends from several processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["Manifest", "read_manifest", "run_manifest", "base_record", "record_failure",
           "versions", "STATUSES"]

log = logging.getLogger(__name__)

#: Allowed values of a record's ``"status"`` field.
STATUSES = ("ok", "failed", "skipped")


# -- serialisation ---------------------------------------------------------------------


def _jsonable(obj):
    """Convert NumPy scalars/arrays, paths, tuples and sets to plain JSON types."""
    if isinstance(obj, Mapping):
        return {_key(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_jsonable(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):  # np.float32, np.int64, np.bool_, ...
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def _key(k):
    k = k.item() if isinstance(k, np.generic) else k
    # json.dumps(sort_keys=True) cannot order mixed key types; make every key a string.
    return k if isinstance(k, str) else json.dumps(k)


def _dumps(record: Mapping, where: Path) -> bytes:
    try:
        text = json.dumps(_jsonable(record), sort_keys=True, allow_nan=False,
                          ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"manifest {where}: record cannot be written as strict JSON "
            f"(NaN/inf and arbitrary objects are not allowed): {exc}"
        ) from exc
    return (text + "\n").encode("utf-8")


def _parse_line(raw: bytes) -> dict | None:
    """The record on one line, or None if the line is not a JSON object."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


# -- reading ---------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike, *, missing_ok: bool = False) -> list[dict]:
    """Read every record of a JSON Lines manifest.

    Parameters
    ----------
    path : str or os.PathLike
        The manifest.
    missing_ok : bool, optional
        Return ``[]`` for a missing file instead of raising.

    Returns
    -------
    records : list of dict
        In file order. Blank lines are ignored.

    Raises
    ------
    InputFileError
        If the file is missing (unless `missing_ok`) or unreadable, or a line other than
        the last is not a JSON object (the message gives the line number).

    Notes
    -----
    An invalid *last* line is what an interrupted append leaves behind; it is skipped with
    a warning on the ``blursynth.manifest`` logger.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise InputFileError(path, "manifest not found") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read manifest: {exc.strerror or exc}") from exc
    return _parse(data, path)


def _parse(data: bytes, path: Path) -> list[dict]:
    lines = data.split(b"\n")
    # Index of the last line with content: only that one may be a torn write.
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    records = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        rec = _parse_line(raw)
        if rec is not None:
            records.append(rec)
        elif i == last:
            log.warning("%s: ignoring incomplete last line %d (interrupted write?)",
                        path, i + 1)
        else:
            raise InputFileError(
                path, f"line {i + 1}: expected a JSON object, got {_preview(raw)}; "
                "the manifest is corrupt in the middle (fix or remove that line)"
            )
    return records


def _preview(raw: bytes, n: int = 60) -> str:
    s = raw.decode("utf-8", "replace")
    return repr(s if len(s) <= n else s[:n] + "...")


# -- the manifest ----------------------------------------------------------------------


class Manifest:
    """An append-only JSON Lines manifest.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.jsonl`` file; created (with parent directories) on the first append.

    Notes
    -----
    Several processes may append to the same manifest on POSIX: each append holds an
    exclusive :func:`fcntl.flock` while it repairs a torn tail and writes its line.
    :meth:`done` caches an index of the file and re-reads it only when the file's size,
    mtime or inode changed.

    Examples
    --------
    >>> import tempfile, os
    >>> m = Manifest(os.path.join(tempfile.mkdtemp(), "m.jsonl"))
    >>> m.append({"item": "a", "status": "ok", "n": 3})
    >>> m.done("a")["n"]
    3
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._index: dict[str, dict] | None = None
        self._stamp: tuple | None = None

    def __repr__(self) -> str:
        return f"Manifest({str(self.path)!r})"

    def append(self, record: Mapping) -> None:
        """Append one record as one JSON line, then flush and fsync.

        Parameters
        ----------
        record : mapping
            Must have ``"item"`` (str) and ``"status"`` (one of :data:`STATUSES`).
            NumPy scalars and arrays, paths, tuples and sets are converted; keys are
            sorted; NaN and infinity are rejected.

        Raises
        ------
        ParameterError
            If the record lacks a valid ``item``/``status`` or is not JSON-serialisable.
        OutputError
            If the manifest cannot be written (disk full, permission, ...).

        Notes
        -----
        If the file ends in an incomplete line (a crash during an earlier append), that
        fragment is cut off first (with a warning) so it cannot fuse with the new line.
        """
        if not isinstance(record, Mapping):
            raise ParameterError(
                f"manifest {self.path}: expected a dict record, got {type(record).__name__}"
            )
        item, status = record.get("item"), record.get("status")
        if not isinstance(item, str):
            raise ParameterError(
                f"manifest {self.path}: record 'item' must be a str, got {item!r}"
            )
        if status not in STATUSES:
            raise ParameterError(
                f"manifest {self.path}: record 'status' must be one of {STATUSES}, "
                f"got {status!r}"
            )
        line = _dumps(record, self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                before = _stamp(os.fstat(fd))
                self._repair_tail(fd)
                _write_all(fd, line)
                os.fsync(fd)
                after = _stamp(os.fstat(fd))
            finally:
                os.close(fd)  # also releases the lock
        except OSError as exc:
            raise output_error(exc, self.path) from exc
        # Update the cached index in place if it reflected the file just before this write
        # (a repaired tail never was in it); otherwise someone else wrote: rebuild lazily.
        if self._index is not None:
            if self._stamp == before:
                if status == "ok":
                    self._index[item] = json.loads(line)
                self._stamp = after
            else:
                self._index = None

    def _repair_tail(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        # Find the start of the unterminated last line.
        start, pos, block = 0, size, 4096
        while pos > 0:
            n = min(block, pos)
            pos -= n
            chunk = os.pread(fd, n, pos)
            j = chunk.rfind(b"\n")
            if j >= 0:
                start = pos + j + 1
                break
        tail = os.pread(fd, size - start, start)
        if _parse_line(tail) is not None:
            # A complete record that only lacks its newline: keep it.
            _write_all(fd, b"\n")
        else:
            log.warning("%s: removing incomplete last line (%d bytes) left by an "
                        "interrupted write", self.path, size - start)
            os.ftruncate(fd, start)

    def records(self) -> list[dict]:
        """All records (``[]`` if the file does not exist yet); see :func:`read_manifest`."""
        return read_manifest(self.path, missing_ok=True)

    def done(self, item_key: str) -> dict | None:
        """The last record with ``status == "ok"`` for `item_key`, or None.

        Parameters
        ----------
        item_key : str
            The item's key (the records' ``"item"`` field).

        Returns
        -------
        record : dict or None
            A later ``"failed"`` or ``"skipped"`` record does not hide an earlier success.
        """
        stamp = self._current_stamp()
        if self._index is None or stamp != self._stamp:
            index = {}
            for rec in self.records():
                if rec.get("status") == "ok" and isinstance(rec.get("item"), str):
                    index[rec["item"]] = rec
            self._index, self._stamp = index, stamp
        return self._index.get(item_key)

    def _current_stamp(self) -> tuple | None:
        try:
            return _stamp(self.path.stat())
        except FileNotFoundError:
            return None


def _stamp(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# -- record helpers --------------------------------------------------------------------


def run_manifest(path: str | os.PathLike, params: Mapping, seed: int | None, *,
                 overwrite: bool = False, what: str = "items",
                 out: str | os.PathLike | None = None) -> Manifest:
    """The manifest of an output a stage is about to add to, refusing to mix runs.

    Parameters
    ----------
    path : str or os.PathLike
        The stage's manifest.
    params : mapping
        This run's parameters, as recorded in each record's ``"params"``.
    seed : int or None
        This run's seed.
    overwrite : bool
        Delete the manifest first (the run starts again).
    what : str
        What the records describe, for the message (``"items shaken"``, ...).
    out : str or os.PathLike, optional
        The output the manifest describes, named in the message (default: its folder).

    Returns
    -------
    Manifest

    Raises
    ------
    ParameterError
        A finished record was made with other parameters or another seed: resuming would mix
        two datasets in one output.
    """
    p = Path(path)
    if overwrite and p.exists():
        p.unlink()
    manifest = Manifest(p)
    want = (_jsonable(dict(params)), seed)
    for rec in manifest.records():
        if rec.get("status") == "ok" and (rec.get("params"), rec.get("seed")) != want:
            raise ParameterError(
                f"{out or p.parent}: holds {what} made with another seed or other parameters (see "
                f"{p}); pass overwrite (--overwrite) or choose another output")
    return manifest


def record_failure(path: str | os.PathLike, stage: str, input_path: str | os.PathLike,
                   params: Mapping, error: BaseException) -> None:
    """Append a ``"failed"`` record for an input of a batch (item: its name without suffix).

    A manifest that cannot be written is logged, not raised: the batch goes on either way.
    """
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        rec = base_record(stage, Path(input_path).stem, params, None)
        rec.update({"status": "failed", "input": {"path": str(input_path)}, "error": str(error)})
        Manifest(path).append(rec)
    except (OSError, BlursynthError) as e:  # the manifest itself is unwritable
        log.error("could not record the failure: %s", e)


def base_record(stage: str, item: str, params: Mapping, seed: int | None) -> dict:
    """Common fields of a manifest record.

    Parameters
    ----------
    stage : str
        Pipeline stage name.
    item : str
        Item key.
    params : mapping
        The parameters the item was processed with (copied, converted to JSON types).
    seed : int or None
        Run seed, or None for deterministic stages.

    Returns
    -------
    record : dict
        ``{"stage", "item", "params", "seed", "time", "versions"}``, with ``time`` the
        current UTC time in ISO 8601 (``2025-01-31T12:00:00.123+00:00``) and ``versions``
        from :func:`versions`. Add ``"status"`` (and results) before appending.

    Raises
    ------
    ParameterError
        If `stage`/`item` are not strings, `params` not a mapping or `seed` not an int.
    """
    for name, v in (("stage", stage), ("item", item)):
        if not isinstance(v, str):
            raise ParameterError(f"{name}: expected a str, got {type(v).__name__} {v!r}")
    if not isinstance(params, Mapping):
        raise ParameterError(f"params: expected a dict, got {type(params).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ParameterError(f"seed: expected an int or None, got {seed!r}")
    return {
        "stage": stage,
        "item": item,
        "params": _jsonable(dict(params)),
        "seed": None if seed is None else int(seed),
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "versions": versions(),
    }


_DISTRIBUTIONS = {
    "blursynth": ("blursynth",),
    "numpy": ("numpy",),
    "numba": ("numba",),
    "imageio-ffmpeg": ("imageio-ffmpeg",),
}
_OPENCV_DISTRIBUTIONS = (
    "opencv-contrib-python-headless",
    "opencv-contrib-python",
    "opencv-python-headless",
    "opencv-python",
)


def _dist_version(names: tuple[str, ...]) -> str | None:
    for n in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(n)
    return None


def _opencv_version() -> str | None:
    try:
        import cv2  # heavy, but every pipeline stage imports it anyway

        return str(cv2.__version__)
    except Exception:  # missing or broken install: fall back to package metadata
        return _dist_version(_OPENCV_DISTRIBUTIONS)


@lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str | None], ...]:
    v = {"python": platform.python_version()}
    for key, names in _DISTRIBUTIONS.items():
        v[key] = _dist_version(names)
    if v["blursynth"] is None:
        from . import __version__

        v["blursynth"] = __version__
    v["opencv"] = _opencv_version()
    return tuple(sorted(v.items()))


def versions() -> dict[str, str | None]:
    """Versions of Python and the libraries that determine blursynth's output.

    Returns
    -------
    versions : dict
        Keys ``python``, ``blursynth``, ``numpy``, ``opencv`` (``cv2.__version__``),
        ``numba`` and ``imageio-ffmpeg``; a missing library gives None. Computed once per
        process.
    """
    return dict(_versions())
