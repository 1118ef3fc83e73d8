import errno
import hashlib
import os
from datetime import datetime

import numpy as np
import pytest

from blursynth import files
from blursynth.errors import InputFileError, OutputError
from blursynth.files import atomic_path, atomic_write_bytes, atomic_write_text, file_identity


class Boom(Exception):
    pass


def test_success_writes_final_and_no_temp(tmp_path):
    final = tmp_path / "sub" / "deeper" / "arr.npy"
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".arr.npy.tmp-")
        assert tmp.suffix == ".npy" and not tmp.exists()
        np.save(tmp, np.arange(5))  # np.save would append .npy if the suffix were missing
        assert not final.exists()   # final only appears once complete
    np.testing.assert_array_equal(np.load(final), np.arange(5))
    assert os.listdir(final.parent) == ["arr.npy"]


def test_suffix_override(tmp_path):
    with atomic_path(tmp_path / "video", suffix=".mp4") as tmp:
        assert tmp.name.endswith(".mp4")
        tmp.write_bytes(b"x")
    assert (tmp_path / "video").read_bytes() == b"x"


def test_crash_leaves_nothing(tmp_path):
    final = tmp_path / "out.bin"
    with pytest.raises(Boom):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"partial")
            raise Boom
    assert os.listdir(tmp_path) == []


def test_crash_keeps_previous_final(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(Boom):
        with atomic_path(final) as tmp:
            tmp.write_text("new but incomplete")
            raise Boom
    assert final.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_replaces_existing(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    atomic_write_text(final, "new\r\nline")
    assert final.read_bytes() == b"new\r\nline"
    atomic_write_bytes(final, b"\x00\x01")
    assert final.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_directory_output_replaces_directory(tmp_path):
    final = tmp_path / "frames"
    final.mkdir()
    (final / "old.png").write_bytes(b"old")
    with atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "0001.png").write_bytes(b"new")
    assert sorted(os.listdir(final)) == ["0001.png"]
    assert os.listdir(tmp_path) == ["frames"]


def test_nothing_written_is_an_error(tmp_path):
    with pytest.raises(OutputError, match="nothing was written"):
        with atomic_path(tmp_path / "x.bin"):
            pass
    assert os.listdir(tmp_path) == []


def test_enospc_on_replace_is_disk_full(tmp_path, monkeypatch):
    final = tmp_path / "out.bin"
    final.write_bytes(b"old")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    with pytest.raises(OutputError, match="disk full") as ei:
        atomic_write_bytes(final, b"new")
    assert ei.value.path == str(final)
    assert isinstance(ei.value.__cause__, OSError)
    assert final.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_enospc_during_write_is_disk_full(tmp_path, code):
    final = tmp_path / "out.bin"

    def writer(p):
        with open(p, "wb") as f:
            f.write(b"half")
            raise OSError(code, os.strerror(code))

    with pytest.raises(OutputError, match=r"out\.bin: disk full"):
        with atomic_path(final) as tmp:
            writer(tmp)
    assert os.listdir(tmp_path) == []


def test_permission_errors_named(tmp_path, monkeypatch):
    final = tmp_path / "out.bin"

    def denied(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.os, "replace", denied)
    with pytest.raises(OutputError, match="read-only") as ei:
        atomic_write_bytes(final, b"x")
    assert "out.bin" in str(ei.value)


def test_unrelated_input_error_not_blamed_on_output(tmp_path):
    # EACCES while *reading an input* inside the block stays a PermissionError.
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"x")
            raise PermissionError(errno.EACCES, "Permission denied", "/some/input.mp4")
    assert os.listdir(tmp_path) == []


def test_long_name_fits(tmp_path):
    final = tmp_path / ("a" * 240 + ".png")
    with atomic_path(final) as tmp:
        assert len(tmp.name.encode()) <= 255 and tmp.name.endswith(".png")
        tmp.write_bytes(b"x")
    assert final.read_bytes() == b"x"


def test_file_identity(tmp_path):
    p = tmp_path / "in.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # spans several 1 MiB chunks
    p.write_bytes(data)
    os.utime(p, ns=(1_700_000_000_123_456_000, 1_700_000_000_123_456_000))
    ident = file_identity(p)
    assert ident == {
        "path": str(p.absolute()),
        "size": len(data),
        "mtime": "2023-11-14T22:13:20.123456+00:00",
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert datetime.fromisoformat(ident["mtime"]).timestamp() == pytest.approx(1_700_000_000.123456)


def test_file_identity_errors(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        file_identity(tmp_path / "missing")
    with pytest.raises(InputFileError, match="regular file"):
        file_identity(tmp_path)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_real_enospc_from_kernel(tmp_path):
    # /dev/full fails every write with a genuine ENOSPC from the kernel.
    with pytest.raises(OutputError, match="disk full"):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"partial")
            with open("/dev/full", "wb") as f:
                f.write(b"x")
    assert os.listdir(tmp_path) == []
