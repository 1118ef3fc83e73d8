import logging

from blursynth import log as bslog


def test_quiet_silences_info(restore_logger, capsys):
    logger = bslog.setup_logging(-1)
    logger.info("hello info")
    logging.getLogger("blursynth.crf").warning("child warning")
    err = capsys.readouterr().err
    assert "hello info" not in err
    assert "child warning" in err


def test_default_info_and_verbose_debug(restore_logger, capsys):
    logger = bslog.setup_logging(0)
    logger.info("shown info")
    logger.debug("hidden debug")
    bslog.setup_logging(1)  # re-configuring must not duplicate handlers
    logger.debug("shown debug")
    err = capsys.readouterr().err
    assert "shown info" in err and "hidden debug" not in err
    assert err.count("shown debug") == 1
    assert sum(isinstance(h, bslog._TqdmHandler) for h in logger.handlers) == 1


def test_progress_disabled_when_quiet(restore_logger, monkeypatch):
    monkeypatch.delenv("BLURSYNTH_NO_PROGRESS", raising=False)
    bslog.setup_logging(-1)
    bar = bslog.progress(range(3), desc="x")
    assert bar.disable is True
    assert list(bar) == [0, 1, 2]  # still iterates
    bslog.setup_logging(0)
    assert bslog.progress(range(3), disable=False).disable is False
    monkeypatch.setenv("BLURSYNTH_NO_PROGRESS", "1")
    assert bslog.progress(total=3).disable is True
    monkeypatch.setenv("BLURSYNTH_NO_PROGRESS", "0")
    assert bslog.progress(total=3, disable=False).disable is False
