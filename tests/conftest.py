"""Shared fixtures."""
import logging

import pytest

from blursynth import log as bslog
from blursynth.scenes import make_scene
from blursynth.video import write_video


@pytest.fixture
def restore_logger():
    """Leave the "blursynth" logger as it was (commands and setup_logging configure it)."""
    logger = logging.getLogger("blursynth")
    saved = (logger.level, list(logger.handlers), bslog._quiet)
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    bslog._quiet = saved[2]


@pytest.fixture
def bad_videos(tmp_path):
    """name -> path of inputs a video stage must refuse by name: text, empty, one frame, missing."""
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    one = tmp_path / "one.mp4"
    write_video(one, make_scene("translation", (32, 48), 1.0).frames(1), 24)
    return {"notes.mp4": text, "empty.mp4": empty, "one.mp4": one,
            "missing.mp4": tmp_path / "missing.mp4"}
