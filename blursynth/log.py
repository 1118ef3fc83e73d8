"""Logging and progress bars for the ``blursynth`` command line.

Library code only logs to ``logging.getLogger("blursynth...")``; the CLI calls
:func:`setup_logging` once. Progress bars follow the chosen verbosity.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

from tqdm import tqdm

__all__ = ["setup_logging", "progress", "LOGGER_NAME"]

LOGGER_NAME = "blursynth"
_FORMAT = "%(asctime)s %(levelname).1s %(message)s"
_DATEFMT = "%H:%M:%S"
_quiet = False


class _TqdmHandler(logging.Handler):
    """Writes through :func:`tqdm.write` so log lines do not tear active progress bars,
    to whatever ``sys.stderr`` is at emit time (lets pytest's capsys capture it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def setup_logging(verbosity: int = 0) -> logging.Logger:
    """Configure the ``blursynth`` logger for command-line use.

    Parameters
    ----------
    verbosity : int
        ``< 0`` (``-q``): WARNING and above, progress bars off; ``0``: INFO;
        ``> 0`` (``-v``): DEBUG.

    Returns
    -------
    logger : logging.Logger
        The ``blursynth`` logger, with one stderr handler writing
        ``HH:MM:SS L message`` lines (L = first letter of the level). Calling again
        replaces the handler rather than adding another.
    """
    global _quiet
    logger = logging.getLogger(LOGGER_NAME)
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    for h in [h for h in logger.handlers if isinstance(h, _TqdmHandler)]:
        logger.removeHandler(h)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
    logger.addHandler(handler)
    logger.setLevel(level)
    _quiet = verbosity < 0
    return logger


def _env_disabled() -> bool:
    return os.environ.get("BLURSYNTH_NO_PROGRESS", "").strip().lower() not in ("", "0", "false", "no")


def progress(iterable: Iterable | None = None, *, total: int | None = None,
             desc: str | None = None, unit: str = "frame", disable: bool | None = None) -> tqdm:
    """A tqdm progress bar on stderr that respects the verbosity.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; omit to update the bar manually.
    total : int, optional
        Expected number of steps (default ``len(iterable)`` if available).
    desc : str, optional
        Label shown before the bar.
    unit : str, optional
        Name of one step.
    disable : bool, optional
        Force the bar off (True) or on (False). By default it is off when
        :func:`setup_logging` was called with ``verbosity < 0`` or the environment sets
        ``BLURSYNTH_NO_PROGRESS=1``, and otherwise off when stderr is not a terminal.

    Returns
    -------
    bar : tqdm.tqdm
    """
    if disable is None and (_quiet or _env_disabled()):
        disable = True
    # tqdm's own disable=None means "off on non-TTY", so logs redirected to a file stay clean.
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable,
                file=sys.stderr, dynamic_ncols=True, leave=False)
