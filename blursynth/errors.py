"""Exception types raised by blursynth.

Every error a user can cause derives from :class:`BlursynthError`; messages name the file or
parameter and say what was expected and what was found ("expected X, got Y").
"""
from __future__ import annotations

__all__ = [
    "BlursynthError",
    "ParameterError",
    "InputFileError",
    "VideoError",
    "TruncatedVideoError",
    "FlowBackendError",
    "OutputError",
]


class BlursynthError(Exception):
    """Base class of every error blursynth raises on purpose."""


class ParameterError(BlursynthError, ValueError):
    """A parameter has an invalid value: the message names it, the value and what is allowed."""


class InputFileError(BlursynthError):
    """An input file is missing, unreadable or of the wrong kind.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file; kept as ``.path``.
    problem : str
        What is wrong with it.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VideoError(InputFileError):
    """A video cannot be decoded, or has too few frames for the requested work."""


class TruncatedVideoError(VideoError):
    """A video ends early: ``frames_read`` frames decoded before the stream broke."""

    def __init__(self, path, problem: str, frames_read: int):
        self.frames_read = frames_read
        super().__init__(path, problem)


class FlowBackendError(BlursynthError):
    """A flow backend was asked for but is not available in this installation."""


class OutputError(BlursynthError):
    """Writing an output failed (disk full, permission, ...); nothing partial is left behind."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
