"""Shared fixtures."""
import logging

import pytest

from blursynth import log as bslog


@pytest.fixture
def restore_logger():
    """Leave the "blursynth" logger as it was (commands and setup_logging configure it)."""
    logger = logging.getLogger("blursynth")
    saved = (logger.level, list(logger.handlers), bslog._quiet)
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    bslog._quiet = saved[2]
