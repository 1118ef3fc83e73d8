"""blursynth: realistic motion-blur training data from videos and photos.

Importing the package is cheap; submodules (``blursynth.crf``, ...) load their
dependencies on demand.
"""
from __future__ import annotations

__all__ = ["__version__"]


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return "0.1.0"
    try:
        return version("blursynth")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.1.0"


__version__ = _version()
