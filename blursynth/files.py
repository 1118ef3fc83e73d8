"""Atomic output files and input file identity.

Outputs are written under a hidden temporary name in the destination directory and renamed
onto the final name only once complete, so an interrupted run never leaves a truncated file
under a name that looks finished (and a resume never mistakes one for done work).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from .errors import InputFileError, OutputError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "file_identity",
    "is_inside",
    "link_or_copy",
    "output_error",
]

PathLike = str | os.PathLike

_DISK_FULL = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
_NAME_MAX = 255  # bytes; the common limit of ext4, xfs, btrfs, NTFS, APFS
_CHUNK = 1 << 20


def output_error(exc: OSError, path: PathLike) -> OutputError:
    """Translate an :class:`OSError` raised while writing `path` into an :class:`OutputError`.

    Parameters
    ----------
    exc : OSError
        The error.
    path : str or os.PathLike
        The output being written (named in the message).

    Returns
    -------
    err : OutputError
        ``"<path>: disk full"`` for ENOSPC/EDQUOT, ``"<path>: permission denied"`` or
        ``"<path>: read-only file system"`` for EACCES/EPERM/EROFS, otherwise
        ``"<path>: cannot write: <strerror>"``. The caller should ``raise ... from exc``.
    """
    if exc.errno in _DISK_FULL:
        problem = "disk full"
    elif exc.errno == errno.EROFS:
        problem = "read-only file system"
    elif exc.errno in _NO_PERMISSION:
        problem = "permission denied"
    else:
        problem = f"cannot write: {exc.strerror or exc}"
    return OutputError(path, problem)


def _is_output_problem(exc: BaseException, paths: tuple[str, ...]) -> bool:
    """Whether an error raised inside the ``with`` body is about writing this output.

    Disk full always is. Permission errors are only when they concern the temporary file or
    its directory: an EACCES from reading some *input* must not be blamed on the output.
    """
    if not isinstance(exc, OSError):
        return False
    if exc.errno in _DISK_FULL:
        return True
    if exc.errno in _NO_PERMISSION:
        return exc.filename is None or os.fspath(exc.filename) in paths
    return False


def _temp_name(final: Path, suffix: str) -> str:
    tag = f".tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
    name = final.name
    # Stay under NAME_MAX: shorten the copied final name, never the tag (it holds the
    # extension writers infer the format from).
    room = _NAME_MAX - 1 - len(tag.encode())
    while len(name.encode()) > room:
        name = name[:-1]
    return f".{name}{tag}"


def _remove(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _fsync_path(p: Path, *, directory: bool) -> None:
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if directory else os.O_RDONLY
    try:
        fd = os.open(p, flags)
    except OSError:
        if directory:  # e.g. Windows cannot open directories; durability is best effort
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path that replaces `final` when the block completes.

    Parameters
    ----------
    final : str or os.PathLike
        Destination. Parent directories are created.
    suffix : str, optional
        Extension of the temporary name; defaults to `final`'s (``Path(final).suffix``),
        so writers that pick the format from the extension (OpenCV, ffmpeg, NumPy) work.

    Yields
    ------
    tmp : pathlib.Path
        ``<dir>/.<name>.tmp-<pid>-<random><suffix>`` in the same directory as `final` (so
        the rename cannot cross file systems). It does not exist yet; the block creates it
        as a file or a directory.

    Raises
    ------
    OutputError
        If the parent cannot be created, the block did not create `tmp`, the rename or
        fsync fails, or the block raised an :class:`OSError` with ENOSPC/EDQUOT (disk full)
        or a permission error about `tmp`. The original error is chained.

    Notes
    -----
    On success a file is fsynced, renamed with :func:`os.replace` (atomic on POSIX and
    Windows) and the directory entry is fsynced, so after return `final` holds either the
    old or the complete new content, even across a power loss. If `final` is an existing
    directory and `tmp` a directory, the old one is moved aside and deleted after the
    rename: readers may briefly see no `final`, but never a partial one.

    On any exception (including KeyboardInterrupt) the temporary is deleted, `final` is
    left untouched and the exception re-raised (translated as described above).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "a.npy")) as tmp:
    ...     np.save(tmp, np.zeros(3))
    >>> sorted(os.listdir(d))
    ['a.npy']
    """
    final = Path(final)
    if suffix is None:
        suffix = final.suffix
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, parent) from exc
    tmp = parent / _temp_name(final, suffix)
    try:
        yield tmp
    except BaseException as exc:
        _remove(tmp)
        if _is_output_problem(exc, (str(tmp), str(final), str(parent))):
            raise output_error(exc, final) from exc
        raise
    try:
        if not os.path.lexists(tmp):
            raise OutputError(final, f"nothing was written to the temporary file {tmp.name}")
        is_dir = tmp.is_dir() and not tmp.is_symlink()
        if not is_dir:
            _fsync_path(tmp, directory=False)
        if is_dir and final.is_dir() and not final.is_symlink():
            _replace_dir(tmp, final)
        else:
            os.replace(tmp, final)
        _fsync_path(parent, directory=True)
    except OSError as exc:
        _remove(tmp)
        raise output_error(exc, final) from exc
    except BaseException:
        _remove(tmp)
        raise


def _replace_dir(tmp: Path, final: Path) -> None:
    # rename(2) cannot replace a non-empty directory: move the old one aside first and put
    # it back if the second rename fails.
    old = final.parent / f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; parent directories are created.
    data : bytes-like
        Content.

    Raises
    ------
    OutputError
        If writing fails (disk full, permission, ...); `path` is then left untouched.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically, encoded with `encoding`, newlines unchanged.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; parent directories are created.
    text : str
        Content.
    encoding : str, optional
        Text encoding (default UTF-8).

    Raises
    ------
    OutputError
        If writing fails; `path` is then left untouched.
    """
    atomic_write_bytes(path, text.encode(encoding))


def file_identity(path: PathLike) -> dict:
    """Identify an input file by path, size, modification time and content hash.

    Parameters
    ----------
    path : str or os.PathLike
        A regular file.

    Returns
    -------
    identity : dict
        ``{"path": str, "size": int, "mtime": str, "sha256": str}``: the absolute path
        (symlinks not resolved), size in bytes, modification time as UTC ISO 8601 with
        microseconds, and the hex SHA-256 of the content (read in 1 MiB chunks).

    Raises
    ------
    InputFileError
        If `path` does not exist, is not a regular file, or cannot be read.

    Notes
    -----
    Size and mtime come from ``fstat`` of the open file, i.e. of the same file that was
    hashed even if the name is replaced meanwhile.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise InputFileError(p, "not a regular file")
            h = hashlib.sha256()
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            while n := f.readinto(buf):
                h.update(view[:n])
    except FileNotFoundError:
        raise InputFileError(p, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(p, "not a regular file (a directory)") from None
    except OSError as exc:
        raise InputFileError(p, f"cannot read: {exc.strerror or exc}") from exc
    mtime = datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=timezone.utc)
    return {
        "path": str(p.absolute()),
        "size": int(st.st_size),
        "mtime": mtime.isoformat(timespec="microseconds"),
        "sha256": h.hexdigest(),
    }


def link_or_copy(src: PathLike, dst: PathLike) -> None:
    """Hard-link `src` as `dst`, atomically; copy it where a link is impossible.

    Parameters
    ----------
    src : str or os.PathLike
        An existing file.
    dst : str or os.PathLike
        The new name (replaced if it exists; parents created).

    Raises
    ------
    OutputError
        If neither a link nor a copy can be written; `dst` is then left untouched.
    """
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or one without hard links (FAT, some mounts)
            shutil.copyfile(src, tmp)


def is_inside(path: PathLike, folder: PathLike) -> bool:
    """Whether `path` is `folder` or lies below it (symlinks resolved)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False
