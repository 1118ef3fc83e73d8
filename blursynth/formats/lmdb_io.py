"""The LMDB writing engine shared by blursynth's LMDB formats.

- :func:`open_env`, :func:`acquire_readonly`: open an environment for writing (creating it
  and its parents), or for reading in any process (no lock file, no readahead; handles are
  shared within a process, as py-lmdb allows only one per environment, and reopened after a
  fork);
- :func:`put_all`: one transaction per batch; the map grows before a batch that would not
  fit, and if LMDB still reports it full the transaction is aborted, the map doubled and the
  batch retried, so ``MapFullError`` never reaches the user;
- :func:`write_error`: what went wrong, as an :class:`~blursynth.errors.OutputError` naming
  the file (disk full, file size limit, permission, a parent that is a file);
- :func:`keep_freed_memory`: the allocator setting every writer here runs under;
- :class:`OrderedPool` and :class:`BatchedWriter`: encoding in a thread pool (OpenCV's
  encoders release the GIL) with results committed strictly in submission order, in
  batches; when an exception (Ctrl-C included) leaves the ``with`` block, the queued
  encodings are finished and committed first, up to the first one that failed.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import lmdb
import numpy as np

from ..errors import InputFileError, OutputError, ParameterError
from ..files import output_error

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

__all__ = ["open_env", "close_env", "acquire_readonly", "release_readonly", "put_all",
           "write_error", "remove_tree", "keep_freed_memory", "OrderedPool", "BatchedWriter",
           "check_int"]

log = logging.getLogger(__name__)
PathLike = str | os.PathLike


def _fsize_note(path: Path) -> str:
    """Say so when this process has a file size limit (``ulimit -f``): LMDB then reports a
    short write as a bare I/O error."""
    if resource is None:
        return ""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY:
        return ""
    data = path / "data.mdb" if path.is_dir() else path
    size = data.stat().st_size if data.is_file() else 0
    return (f"; this process may write files of at most {limit} bytes (ulimit -f) "
            f"and {data.name} is {size} bytes")


def write_error(exc: BaseException, path: Path) -> OutputError:
    """An :class:`OutputError` naming `path` for an OSError or :class:`lmdb.Error` raised
    while creating or writing it (the caller chains `exc`)."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOTDIR:
            return OutputError(path, "cannot create it: a parent path is a file, not a directory")
        if exc.errno == errno.EFBIG:
            return OutputError(path, "file too large" + _fsize_note(path))
        return output_error(exc, path)
    msg = str(exc)  # py-lmdb: "mdb_txn_commit: <strerror>"
    if "already open in this process" in msg:
        return OutputError(path, "is open for reading in this process: close its readers "
                                 "before writing to it")
    if isinstance(exc, lmdb.DiskError) or "No space left" in msg or "quota" in msg:
        return OutputError(path, "disk full")
    if isinstance(exc, lmdb.ReadonlyError) or "Permission denied" in msg:
        return OutputError(path, "permission denied")
    if "Read-only file system" in msg:
        return OutputError(path, "read-only file system")
    if "File too large" in msg:
        return OutputError(path, "file too large" + _fsize_note(path))
    hint = _fsize_note(path) or ("; the disk may be full" if "Input/output" in msg else "")
    return OutputError(path, f"LMDB write failed ({msg}){hint}")


_MMAP_THRESHOLD = 32 << 20  # glibc's own upper bound for its dynamic threshold (64-bit)
_TRIM_THRESHOLD = 1 << 30
_tuned = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to 32 MiB for reuse (once per process).

    By default glibc serves blocks of a few MiB with fresh ``mmap`` s, or trims them off the
    heap when freed, so every encoded record and every buffer LMDB allocates for a large
    value is page-faulted (and zeroed) afresh. On the 2-core development VM that made a
    2 MB record cost 1.2 ms to build instead of 0.25 ms, and a raw LMDB put loop of such
    records ran at 320-470 instead of 820-940 records/s. After this call blocks below
    32 MiB come from the heap, and up to 1 GiB of free heap top is kept (a batch of 64
    such records and LMDB's copies of them is 256 MB). Only the allocator's thresholds
    change; the process may hold that much freed memory longer.

    Returns
    -------
    bool
        Whether the thresholds are set (False where the C library is not glibc).
    """
    global _tuned
    if not _tuned:
        try:
            libc = ctypes.CDLL("libc.so.6")
            m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
            _tuned = bool(libc.mallopt(m_mmap_threshold, _MMAP_THRESHOLD)
                          and libc.mallopt(m_trim_threshold, _TRIM_THRESHOLD))
        except (OSError, AttributeError):  # not glibc: leave the allocator alone
            pass
    return _tuned


def open_env(path: PathLike, *, map_size: int, subdir: bool = True) -> lmdb.Environment:
    """Open (creating it and its parents) an LMDB environment for writing.

    Parameters
    ----------
    path : str or os.PathLike
        The environment directory (``subdir=True``) or data file (``subdir=False``; LMDB adds
        ``<path>-lock`` beside it).
    map_size : int
        Initial map size in bytes; :func:`put_all` grows it on demand.
    subdir : bool
        Directory layout (``data.mdb`` + ``lock.mdb``) or single file.

    Returns
    -------
    lmdb.Environment

    Raises
    ------
    OutputError
        The path cannot be created or opened (a parent is a file, permission, disk full...).

    Notes
    -----
    Calls :func:`keep_freed_memory`: writers move many large buffers.
    """
    path = Path(path)
    keep_freed_memory()
    try:
        (path if subdir else path.parent).mkdir(parents=True, exist_ok=True)
        return lmdb.open(str(path), subdir=subdir, map_size=map_size, meminit=False)
    except (OSError, lmdb.Error) as exc:
        raise write_error(exc, path) from exc


# py-lmdb allows one handle per environment and process: readers share theirs, counted.
_shared: dict[str, list] = {}
_shared_pid = os.getpid()
_shared_lock = threading.Lock()


def _forget_parent_envs() -> None:
    """In a forked child, close the handles inherited from the parent: they must not be
    used here, and while open they block reopening the same path."""
    global _shared_pid
    if _shared_pid != os.getpid():
        for env, _ in _shared.values():
            with contextlib.suppress(lmdb.Error):
                env.close()  # unmaps the child's copy only; the parent's stays valid
        _shared.clear()
        _shared_pid = os.getpid()


def acquire_readonly(path: PathLike, *, subdir: bool = True) -> lmdb.Environment:
    """A read-only handle on an existing LMDB, shared by the callers of this process.

    Opened without a lock file or readahead, which suits many reader processes (DataLoader
    workers); after a fork the child opens its own. Give it back with
    :func:`release_readonly`.

    Raises
    ------
    InputFileError
        `path` is not a readable LMDB, or this process has it open for writing.
    """
    key = os.path.realpath(path)
    with _shared_lock:
        _forget_parent_envs()
        entry = _shared.get(key)
        if entry is None:
            try:
                env = lmdb.open(str(path), subdir=subdir, readonly=True, lock=False,
                                readahead=False)
            except (OSError, lmdb.Error) as exc:
                raise InputFileError(path, f"not a readable LMDB ({exc})") from exc
            entry = _shared[key] = [env, 0]
        entry[1] += 1
        return entry[0]


def release_readonly(path: PathLike) -> None:
    """Give back a handle from :func:`acquire_readonly`; the last one closes it."""
    key = os.path.realpath(path)
    with _shared_lock:
        _forget_parent_envs()
        entry = _shared.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del _shared[key]
                entry[0].close()


def put_all(env: lmdb.Environment, items: Sequence[tuple[bytes, object]], path: PathLike, *,
            build: Callable[[object], object] | None = None) -> None:
    """Write `items` (key, value) in one transaction, growing the map as needed.

    `build`, if given, turns each value into the bytes to put right before its put (LMDB
    copies them at once, so it may return the same buffer every time); ``len(value)`` must
    then give their size.

    The map is enlarged before a batch whose bytes cannot fit beside the pages in use, so a
    whole batch is rarely written twice; if LMDB still reports the map full (B-tree overhead
    of many small items), the transaction is aborted, the map doubled and the batch retried.

    Raises
    ------
    OutputError
        Writing failed (disk full, file size limit, permission...); nothing of `items` is
        committed and earlier commits are intact.
    """
    try:
        _reserve(env, sum(len(k) + len(v) for k, v in items))
        while True:
            try:
                with env.begin(write=True) as txn:  # aborts on any exception
                    for k, v in items:
                        txn.put(k, v if build is None else build(v))
                return
            except lmdb.MapFullError:
                env.set_mapsize(2 * env.info()["map_size"])
    except (OSError, lmdb.Error) as exc:
        raise write_error(exc, Path(path)) from exc


def _reserve(env: lmdb.Environment, nbytes: int) -> None:
    """Grow the map if `nbytes` more do not fit after the highest page in use."""
    info = env.info()
    used = (info["last_pgno"] + 1) * env.stat()["psize"]
    if used + nbytes > info["map_size"]:
        env.set_mapsize(max(2 * info["map_size"], used + 2 * nbytes))


def close_env(env: lmdb.Environment, path: PathLike, *, sync: bool = True) -> None:
    """Flush an environment written with :func:`open_env` to disk (unless not `sync`, e.g.
    after a failed write) and close it.

    Raises
    ------
    OutputError
        The flush failed (the environment is closed all the same).
    """
    try:
        if sync:
            env.sync(True)
    except (OSError, lmdb.Error) as exc:
        raise write_error(exc, Path(path)) from exc
    finally:
        env.close()


def remove_tree(path: Path) -> None:
    """Delete a file or directory tree; OutputError if that fails."""
    try:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    except OSError as exc:
        raise output_error(exc, path) from exc


class OrderedPool:
    """A thread pool whose results come back strictly in submission order.

    ``workers=0`` runs each task inline. At most `depth` tasks are pending: :meth:`ready`
    then blocks on the oldest, which bounds the memory held by queued samples.
    """

    def __init__(self, workers: int, depth: int):
        self._pool = (ThreadPoolExecutor(workers, thread_name_prefix="blursynth-encode")
                      if workers > 0 else None)
        self._depth = max(1, depth)
        self._pending: deque[Future] = deque()

    def submit(self, fn: Callable, *args) -> None:
        if self._pool is not None:
            self._pending.append(self._pool.submit(fn, *args))
            return
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:
            fut.set_exception(exc)
        self._pending.append(fut)

    def put(self, result) -> None:
        """Queue an already computed result behind the pending tasks."""
        fut: Future = Future()
        fut.set_result(result)
        self._pending.append(fut)

    def ready(self, wait_all: bool = False) -> Iterator:
        """Yield finished results in order (all of them if `wait_all`). A failed task
        raises here and drops everything queued behind it (they would leave a gap)."""
        while self._pending:
            fut = self._pending[0]
            if not (wait_all or fut.done() or len(self._pending) > self._depth):
                return
            self._pending.popleft()
            try:
                result = fut.result()
            except BaseException:
                self.cancel()
                raise
            yield result

    def salvage(self) -> list:
        """Wait for the queued tasks; return their results in order up to the first failure
        (what follows it is dropped). A second KeyboardInterrupt stops the wait."""
        out = []
        while self._pending:
            try:
                out.append(self._pending.popleft().result())
            except Exception:
                self.cancel()
        return out

    def cancel(self) -> None:
        """Drop the queued tasks (those running finish unseen)."""
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class BatchedWriter:
    """Encode items in a thread pool, stage the results in submission order, and hand them
    to :meth:`_flush` every `batch` items and on :meth:`close`. After an exception inside
    ``with`` (Ctrl-C included), everything added is still encoded and committed (up to the
    first item whose encoding failed: no gaps) before the exception propagates; the queue is
    short (4 tasks per worker), so this takes a moment. Nothing is retried after a failed
    commit.

    Subclasses implement ``_flush(items)``, which commits and removes from the list what it
    committed, ``_release()``, which closes their environments, and ``_where()``.
    """

    def __init__(self, *, batch: int, workers: int):
        check_int("batch", batch, 1)
        check_int("workers", workers, 0)
        self._batch = batch
        self._pool = OrderedPool(workers, 4 * max(workers, 1))
        self._staged: list = []
        self._failed = False  # a commit failed: do not try again on the way out
        self._closed = False

    def _submit(self, fn: Callable, *args) -> None:
        self._require_open()
        self._pool.submit(fn, *args)
        self._drain(wait_all=False)

    def _put_ready(self, result) -> None:
        self._require_open()
        self._pool.put(result)
        self._drain(wait_all=False)

    def _require_open(self) -> None:
        if self._closed:
            raise ParameterError("the writer is closed")

    def _drain(self, wait_all: bool) -> None:
        for item in self._pool.ready(wait_all):
            self._staged.append(item)
            if len(self._staged) >= self._batch:
                self._commit()

    def _commit(self) -> None:
        if not self._staged:
            return
        try:
            self._flush(self._staged)
        except OutputError:
            self._failed = True
            raise

    def _flush(self, items: list) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release(self) -> None:  # pragma: no cover - abstract
        """Close the environments (without flushing them if ``self._failed``)."""
        raise NotImplementedError

    def _where(self):  # pragma: no cover - abstract
        """The output path, for messages."""
        raise NotImplementedError

    def flush(self) -> None:
        """Encode and commit everything added so far; the writer stays open.

        Raises
        ------
        OutputError
            A commit failed (the writer is then unusable; what was committed stays readable).
        """
        self._require_open()
        if self._failed:
            raise OutputError(self._where(), "an earlier commit failed")
        self._drain(wait_all=True)
        self._commit()

    def close(self) -> None:
        """Encode and commit everything added, then close the environments (after a failed
        commit: only close them).

        Raises
        ------
        OutputError
            A commit failed; what was committed before stays readable.
        """
        if self._closed:
            return
        try:
            if not self._failed:
                self.flush()
        except BaseException:
            self._commit_salvage()
            raise
        finally:
            self._shutdown()

    def _commit_salvage(self) -> None:
        """On the way out of an error: finish the queued encodings, commit them in order."""
        if self._failed or self._closed:
            return
        try:
            self._staged.extend(self._pool.salvage())
            self._commit()
        except OutputError as err:  # keep the original exception; say what was lost
            log.error("could not commit %d encoded records on the way out: %s",
                      len(self._staged), err)

    def _shutdown(self) -> None:
        self._closed = True
        self._pool.close()
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
            return False
        try:
            self._commit_salvage()
        finally:
            self._shutdown()
        return False


def check_int(name: str, value, low: int, high: int | None = None) -> None:
    """ParameterError unless `value` is an integer in ``low..high`` (no upper bound if None)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low \
            or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ParameterError(f"{name}: expected an integer {allowed}, got {value!r}")
