"""Tests of blursynth.video: decoding, lossless/lossy encoding, bad inputs, atomic outputs."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from fractions import Fraction

import imageio_ffmpeg
import numpy as np
import pytest
from skimage import data

from blursynth import video
from blursynth.errors import (
    InputFileError,
    OutputError,
    ParameterError,
    TruncatedVideoError,
    VideoError,
)
from blursynth.video import (
    VideoReader,
    VideoWriter,
    probe,
    read_png_folder,
    read_video,
    write_png_folder,
    write_video,
)

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make_frames(n: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """A camera pan over a real photo: frame i is the crop shifted by (2i, 3i)."""
    img = data.astronaut()
    return np.stack([img[40 + 2 * i:40 + 2 * i + h, 90 + 3 * i:90 + 3 * i + w]
                     for i in range(n)])


def to_grey(frames: np.ndarray) -> np.ndarray:
    return np.round(frames @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)


def ffmpeg_encode(path, raw: np.ndarray, pix_fmt_in: str, out_args: list[str],
                  fps: str = "10") -> None:
    """Encode raw frames (N, H, W[, C]) with the ffmpeg binary itself, not our writer."""
    n, h, w = raw.shape[:3]
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix_fmt_in,
         "-s", f"{w}x{h}", "-framerate", fps, "-i", "-", *out_args, str(path)],
        input=np.ascontiguousarray(raw).tobytes(), check=True, capture_output=True)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def leftovers(folder) -> list[str]:
    """Hidden temporary files a writer may have left behind."""
    return [name for name in os.listdir(folder) if name.startswith(".")]


# -------------------------------------------------------------------------- lossless writing


@pytest.mark.parametrize("h, w", [(48, 64), (17, 33)])
@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".mov", ".avi"])
def test_lossless_round_trip_is_bit_exact(tmp_path, h, w, ext):
    src = make_frames(10, h, w)
    path = tmp_path / f"clip{ext}"
    write_video(path, src, fps=10)
    out, info = read_video(path)
    assert out.dtype == np.uint8 and out.shape == src.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, src)
    assert (info.width, info.height, info.n_frames) == (w, h, 10)
    assert info.fps == pytest.approx(10.0)
    assert os.listdir(tmp_path) == [path.name]


def test_an_unchanged_file_is_probed_once_and_a_rewritten_one_again(tmp_path, monkeypatch):
    # flowblur probes a video to fail early, then its reader needs the same facts.
    runs = []
    real = video._run_probe
    monkeypatch.setattr(video, "_run_probe", lambda p: runs.append(p) or real(p))
    path = tmp_path / "clip.mp4"
    write_video(path, make_frames(5), fps=10)
    assert probe(path).n_frames == 5
    with VideoReader(path) as r:
        assert r.info.n_frames == 5 and len(list(r)) == 5
    assert len(runs) == 1
    write_video(path, make_frames(7), fps=10)  # replaced: a new file under the same name
    assert probe(path).n_frames == 7 and len(runs) == 2


def test_writer_accepts_frames_one_by_one_and_non_contiguous(tmp_path):
    src = make_frames(5)
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 25) as writer:
        for frame in src:
            # A strided view must be written as its values, not its memory layout.
            writer.write(np.asfortranarray(frame))
        assert writer.frames_written == 5
        assert not path.exists()  # only published on close
    np.testing.assert_array_equal(read_video(path)[0], src)


def test_ffv1_fallback_when_libx264rgb_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(video, "_available_encoders", lambda exe: frozenset({"ffv1", "libx264"}))
    src = make_frames(6, 17, 33)
    mkv = tmp_path / "clip.mkv"
    write_video(mkv, src, fps=10)
    assert probe(mkv).codec == "ffv1"
    np.testing.assert_array_equal(read_video(mkv)[0], src)
    # MP4 has no lossless fallback: refuse rather than silently writing lossy data.
    with pytest.raises(OutputError, match="libx264rgb"):
        write_video(tmp_path / "clip.mp4", src, fps=10)
    assert sorted(os.listdir(tmp_path)) == ["clip.mkv"]


@pytest.mark.parametrize("fps, exact", [(29.97, Fraction(30000, 1001)), (12.5, Fraction(25, 2))])
def test_frame_rate_round_trip(tmp_path, fps, exact):
    path = tmp_path / "clip.mkv"
    write_video(path, make_frames(3), fps=fps)
    assert probe(path).fps == pytest.approx(float(exact), abs=1e-9)


# ------------------------------------------------------------------------------ lossy writing


def test_lossy_quality_is_smaller_and_close(tmp_path):
    src = make_frames(12, 96, 128)
    lossless, q18, q40 = (tmp_path / n for n in ("l.mp4", "q18.mp4", "q40.mp4"))
    write_video(lossless, src, fps=10)
    write_video(q18, src, fps=10, quality=18)
    write_video(q40, src, fps=10, quality=40)
    out, info = read_video(q18)
    assert out.shape == src.shape
    assert info.pix_fmt == "yuv420p"
    assert 30 < psnr(out, src) < 99  # close, but really lossy
    sizes = [p.stat().st_size for p in (lossless, q18, q40)]
    assert sizes[1] < sizes[0] / 2 and sizes[2] < sizes[1]  # quality really drives the CRF


def test_lossy_odd_size_keeps_size(tmp_path):
    src = make_frames(6, 17, 33)
    path = tmp_path / "odd.mp4"
    write_video(path, src, fps=10, quality=18)
    out, info = read_video(path)
    assert out.shape == src.shape and info.pix_fmt == "yuv444p"
    assert psnr(out, src) > 30


# ---------------------------------------------------------------- decoding foreign pixel formats


def test_grey_video_decodes_to_equal_rgb_channels(tmp_path):
    grey = to_grey(make_frames(5, 17, 33))  # odd size on purpose
    path = tmp_path / "grey.mkv"
    ffmpeg_encode(path, grey, "gray", ["-c:v", "ffv1"])
    out, info = read_video(path)
    assert info.pix_fmt == "gray"
    assert out.shape == (5, 17, 33, 3)
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=-1))


def test_rgba_video_drops_alpha(tmp_path):
    src = make_frames(5)
    rgba = np.concatenate([src, np.full(src.shape[:3] + (1,), 77, np.uint8)], axis=-1)
    path = tmp_path / "rgba.mov"
    ffmpeg_encode(path, rgba, "rgba", ["-c:v", "png"])
    out, info = read_video(path)
    assert info.pix_fmt == "rgba"
    np.testing.assert_array_equal(out, src)  # colour kept, not blended with alpha


def test_grey_alpha_ya8_video(tmp_path):
    grey = to_grey(make_frames(4))
    ya8 = np.stack([grey, np.full_like(grey, 200)], axis=-1)
    path = tmp_path / "ya8.mov"
    ffmpeg_encode(path, ya8, "ya8", ["-c:v", "png"])
    out, info = read_video(path)
    assert info.pix_fmt == "ya8"
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=-1))


def test_10bit_video_decodes_to_8bit_rgb(tmp_path):
    src = make_frames(5)
    path = tmp_path / "ten.mp4"
    ffmpeg_encode(path, src, "rgb24", ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p10le"])
    out, info = read_video(path)
    assert info.pix_fmt == "yuv420p10le"
    assert out.dtype == np.uint8 and out.shape == src.shape
    # Only 4:2:0 chroma and colour-matrix rounding separate it from the source.
    assert np.mean(np.abs(out.astype(int) - src)) < 4 and psnr(out, src) > 30


def test_rotation_metadata_is_applied(tmp_path):
    src = make_frames(4)
    plain, rotated = tmp_path / "plain.mp4", tmp_path / "rot.mp4"
    write_video(plain, src, fps=10)
    subprocess.run([FFMPEG, "-v", "error", "-display_rotation:v:0", "90", "-i", str(plain),
                    "-c", "copy", str(rotated)], check=True)
    info = probe(rotated)
    assert (info.width, info.height, info.rotation) == (48, 64, 270)
    out, _ = read_video(rotated)
    # What ffmpeg's own autorotate shows for a +90 degree (counter-clockwise) display matrix.
    np.testing.assert_array_equal(out, np.rot90(src, 1, axes=(1, 2)))


# ---------------------------------------------------------------------------- frame selection


@pytest.fixture
def clip20(tmp_path):
    src = make_frames(20)
    path = tmp_path / "clip20.mp4"
    write_video(path, src, fps=10)
    return path, src


@pytest.mark.parametrize("start, end, stride", [
    (0, None, 1), (3, 17, 4), (5, None, 3), (15, 100, 1), (0, 1, 1), (19, None, 7),
])
def test_start_end_stride_pick_the_right_frames(clip20, start, end, stride):
    path, src = clip20
    expected = src[start:end:stride]
    out, _ = read_video(path, start=start, end=end, stride=stride)
    np.testing.assert_array_equal(out, expected)
    with VideoReader(path, start=start, end=end, stride=stride) as reader:
        frames = list(reader)
    assert reader.frames_read == len(expected) and not reader.truncated
    np.testing.assert_array_equal(np.stack(frames), expected)


def test_reader_stops_decoding_at_end(clip20):
    path, src = clip20
    with VideoReader(path, start=2, end=7, stride=2) as reader:
        frames = list(reader)
    np.testing.assert_array_equal(np.stack(frames), src[2:7:2])
    assert reader.frames_decoded == 7  # frames 0..6 and no further
    assert not reader.truncated


def test_start_beyond_the_end_gives_no_frames(clip20):
    path, _ = clip20
    out, _ = read_video(path, start=50)
    assert out.shape == (0, 48, 64, 3)
    with pytest.raises(VideoError, match=r"clip20\.mp4: expected at least 1 frame, got 0"):
        read_video(path, start=50, min_frames=1)


@pytest.mark.parametrize("kwargs", [
    {"start": -1}, {"stride": 0}, {"start": 4, "end": 4}, {"end": 2.5}, {"start": True},
    {"min_frames": -1},
])
def test_bad_selection_parameters(clip20, kwargs):
    path, _ = clip20
    with pytest.raises(ParameterError):
        read_video(path, **kwargs)


def test_reader_close_stops_ffmpeg(clip20):
    path, src = clip20
    reader = VideoReader(path)
    np.testing.assert_array_equal(next(reader), src[0])
    proc = reader._proc
    assert proc is not None and proc.poll() is None  # ffmpeg still has frames to give
    reader.close()
    assert proc.poll() is not None  # killed and reaped: no zombie, no hang
    assert list(reader) == [] and reader.frames_read == 1 and not reader.truncated
    with VideoReader(path) as reader2:
        next(reader2)
        proc2 = reader2._proc
    assert proc2.poll() is not None


def test_killed_reader_leaves_no_temporary_file(clip20, tmp_path):
    # A process killed mid-read (kill -9, a crashed worker) runs no cleanup: the reader must
    # keep nothing under a name in the temporary folder.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code = ("import os, sys; from blursynth.video import VideoReader; "
            "r = VideoReader(sys.argv[1]); next(r); os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", code, str(clip20[0])],
                          env={**os.environ, "TMPDIR": str(tmp)}, capture_output=True)
    assert proc.returncode == -9
    assert os.listdir(tmp) == []


def test_reader_reads_the_decoded_time_from_ffmpeg(clip20, monkeypatch):
    # The truncation rule compares the decoded time with the stream's duration.
    seen = []
    rule = video._looks_truncated
    monkeypatch.setattr(video, "_looks_truncated", lambda *a: seen.append(a[3]) or rule(*a))
    with VideoReader(clip20[0]) as reader:
        assert len(list(reader)) == 20
    assert seen == [pytest.approx(2.0)]  # 20 frames at 10 fps


# -------------------------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(InputFileError, match="nope.mp4: no such file") as exc:
        read_video(path)
    assert not isinstance(exc.value, VideoError)
    assert exc.value.path == str(path)


@pytest.mark.parametrize("name, content, reason", [
    ("notes.txt", b"just some text, not a video\n" * 20, "not a video"),
    ("notes.mp4", b"just some text, not a video\n" * 20, "not a video"),
    ("art.ans", b"\x1b[31mANSI art\n" * 20, "text"),  # ffmpeg's tty demuxer would accept it
])
def test_non_video_files(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(VideoError, match=reason) as exc:
        read_video(path)
    assert name in str(exc.value) and "Traceback" not in str(exc.value)
    with pytest.raises(VideoError):
        probe(path)


def test_png_is_not_a_video(tmp_path):
    path = write_png_folder(tmp_path, make_frames(1))[0]
    with pytest.raises(VideoError, match=r"000000\.png: not a video.*image"):
        VideoReader(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty\.mp4: file is empty \(0 bytes\)"):
        read_video(path)


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(InputFileError, match="got a directory"):
        probe(tmp_path)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=d=0.5", str(path)],
                   check=True)
    with pytest.raises(VideoError, match=r"sound\.m4a: no video stream"):
        read_video(path)


def test_cover_art_is_not_a_video(tmp_path):
    cover = write_png_folder(tmp_path, make_frames(1))[0]
    path = tmp_path / "song.m4a"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=d=0.5", "-i", str(cover),
                    "-map", "0", "-map", "1", "-c:v", "png", "-disposition:v", "attached_pic",
                    str(path)], check=True)
    with pytest.raises(VideoError, match=r"song\.m4a: no video stream"):
        read_video(path)


def test_video_with_zero_frames(tmp_path):
    # A YUV4MPEG header with no frame after it: a valid video stream holding nothing.
    path = tmp_path / "zero.y4m"
    path.write_bytes(b"YUV4MPEG2 W64 H48 F10:1 Ip A1:1 C444\n")
    assert (probe(path).width, probe(path).height) == (64, 48)
    with pytest.raises(VideoError, match=r"zero\.y4m: video contains no frames"):
        read_video(path)
    with pytest.raises(VideoError, match="no frames"), VideoReader(path) as reader:
        list(reader)


def test_one_frame_video_with_min_frames_2(tmp_path):
    src = make_frames(1)
    path = tmp_path / "single.mp4"
    write_video(path, src, fps=10)
    out, _ = read_video(path, min_frames=1)
    np.testing.assert_array_equal(out, src)
    with pytest.raises(VideoError, match=r"single\.mp4: expected at least 2 frames, got 1") as exc:
        read_video(path, min_frames=2)
    assert not isinstance(exc.value, TruncatedVideoError)


# ---------------------------------------------------------------------------------- truncation


def cut_in_half(path, out):
    raw = path.read_bytes()
    out.write_bytes(raw[: len(raw) // 2])
    return out


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_truncated_video_returns_the_frames_that_decode(tmp_path, caplog, ext):
    src = make_frames(20)
    full = tmp_path / f"full{ext}"
    write_video(full, src, fps=10)
    cut = cut_in_half(full, tmp_path / f"cut{ext}")

    with caplog.at_level(logging.WARNING, logger="blursynth"):
        out, info = read_video(cut)
    n = len(out)
    assert info.n_frames == 20 and 0 < n < 20
    np.testing.assert_array_equal(out, src[:n])  # what decodes is exact, nothing made up
    warnings = [r.getMessage() for r in caplog.records if r.name == "blursynth"]
    assert len(warnings) == 1
    assert f"cut{ext}" in warnings[0] and f"decoded {n} frames" in warnings[0]
    assert "expected about 20" in warnings[0]

    with VideoReader(cut) as reader:
        assert len(list(reader)) == n
    assert reader.truncated and reader.frames_read == n

    with pytest.raises(TruncatedVideoError, match=rf"cut\{ext}: expected at least {n + 1} "
                                                  rf"frames, got {n}.*truncated") as exc:
        read_video(cut, min_frames=n + 1)
    assert exc.value.frames_read == n
    assert len(read_video(cut, min_frames=n)[0]) == n


def test_truncated_ffv1_mkv(tmp_path, caplog):
    src = make_frames(20)
    full = tmp_path / "ffv1.mkv"
    ffmpeg_encode(full, src, "rgb24", ["-c:v", "ffv1", "-pix_fmt", "bgr0"])
    cut = cut_in_half(full, tmp_path / "ffv1_cut.mkv")
    with caplog.at_level(logging.WARNING, logger="blursynth"):
        out, _ = read_video(cut)
    assert 0 < len(out) < 20
    np.testing.assert_array_equal(out, src[: len(out)])
    assert any("ffv1_cut.mkv" in r.getMessage() and "truncated" in r.getMessage()
               for r in caplog.records)


def test_complete_video_is_not_flagged(clip20, caplog):
    path, _ = clip20
    with caplog.at_level(logging.WARNING, logger="blursynth"):
        with VideoReader(path) as reader:
            assert len(list(reader)) == 20
    assert not reader.truncated and not caplog.records


def test_variable_frame_rate_is_not_mistaken_for_truncation(tmp_path, caplog):
    # Gaps between timestamps grow, so duration x fps (52) over-counts the 12 frames.
    src = make_frames(12)
    path = tmp_path / "vfr.mkv"
    ffmpeg_encode(path, src, "rgb24", ["-vf", "setpts='(N+N*N/3)/10/TB'", "-fps_mode", "vfr",
                                       "-c:v", "ffv1"])
    with caplog.at_level(logging.WARNING, logger="blursynth"):
        with VideoReader(path) as reader:
            out = np.stack(list(reader))
    assert reader.info.n_frames > 20  # the container's estimate really is off
    np.testing.assert_array_equal(out, src)  # one frame per stored frame: no duplicates
    assert not reader.truncated and not caplog.records


@pytest.mark.parametrize("rc, partial, errors, seconds, duration, expected", [
    (0, 0, False, 2.0, 2.0, False),   # complete
    (0, 0, False, 1.9, 2.0, False),   # one frame short of a rounded duration: not proof
    (0, 0, False, 1.2, 2.0, True),    # silently short by a clear margin
    (0, 0, True, 1.9, 2.0, True),     # ffmpeg errors and short: cut
    (0, 0, True, 2.0, 2.0, False),    # damaged inside, but it reached its end
    (0, 0, True, None, None, True),   # nothing to compare with: trust ffmpeg's errors
    (0, 0, False, None, None, False),
    (1, 0, False, 2.0, 2.0, True),    # ffmpeg failed
    (0, 100, False, 2.0, 2.0, True),  # half a frame arrived
])
def test_truncation_rule(rc, partial, errors, seconds, duration, expected):
    assert video._looks_truncated(rc, partial, errors, seconds, duration, 10.0) is expected


def test_cut_mp4_without_index_is_a_clear_error(tmp_path):
    # ffmpeg's default MP4 puts the index (moov) at the end; cut, nothing can be decoded.
    full = tmp_path / "moov_last.mp4"
    ffmpeg_encode(full, make_frames(20), "rgb24", ["-c:v", "libx264rgb", "-qp", "0"])
    cut = cut_in_half(full, tmp_path / "moov_cut.mp4")
    with pytest.raises(VideoError, match=r"moov_cut\.mp4: .*moov"):
        read_video(cut)


# ----------------------------------------------------------------------- atomic, failing writes


def test_exception_mid_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, 10) as writer:
            for frame in make_frames(5):
                writer.write(frame)
            for _ in range(500):  # ffmpeg creates its output asynchronously
                if leftovers(tmp_path):
                    break
                time.sleep(0.01)
            assert leftovers(tmp_path)  # the data went to a hidden temporary file...
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []  # ...which is gone, and nothing was published


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.mkv"
    src = make_frames(4)
    write_video(path, src, fps=10)
    before = path.read_bytes()
    with pytest.raises(ParameterError, match=r"out\.mkv: frame 1: expected shape \(48, 64, 3\)"):
        write_video(path, [make_frames(1)[0], make_frames(1, 32, 32)[0]], fps=10)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["out.mkv"]


def test_ffmpeg_dying_mid_write_is_an_output_error(tmp_path):
    path = tmp_path / "dies.mp4"
    frames = make_frames(3, 256, 256)
    writer = VideoWriter(path, 10)
    writer.write(frames[0])
    writer._proc.kill()
    writer._proc.wait()
    with pytest.raises(OutputError, match=r"dies\.mp4: ffmpeg stopped"):
        writer.write(frames[1])
    assert os.listdir(tmp_path) == []
    with pytest.raises(OutputError, match="closed"):
        writer.write(frames[2])


def test_missing_output_directory(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "out.mp4"
    with pytest.raises(OutputError, match=r"out\.mp4: directory .* does not exist") as exc:
        write_video(path, make_frames(2), fps=10)
    assert exc.value.path == str(path)
    assert not (tmp_path / "no").exists()


def test_writer_with_no_frames(tmp_path):
    path = tmp_path / "nothing.mp4"
    with pytest.raises(OutputError, match=r"nothing\.mp4: no frames were written"):
        with VideoWriter(path, 10):
            pass
    assert os.listdir(tmp_path) == []
    with pytest.raises(ParameterError, match="expected at least 1 frame"):
        write_video(path, np.zeros((0, 8, 8, 3), np.uint8), fps=10)


@pytest.mark.parametrize("kwargs, match", [
    ({"path": "clip.webm"}, r"clip\.webm: expected an extension in"),
    ({"path": "clip"}, "got 'none'"),
    ({"fps": 0}, "fps: expected a positive number"),
    ({"fps": float("nan")}, "fps: expected a positive number"),
    ({"quality": 52}, r"quality: expected None \(lossless\) or an int in 0\.\.51"),
    ({"quality": 20.5}, "quality"),
])
def test_writer_parameter_errors(tmp_path, kwargs, match):
    args = {"path": "clip.mp4", "fps": 10} | kwargs
    with pytest.raises(ParameterError, match=match):
        VideoWriter(tmp_path / args.pop("path"), **args)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("frame, match", [
    (np.zeros((48, 64, 3), np.float32), "expected dtype uint8"),
    (np.zeros((48, 64), np.uint8), r"expected shape \(H, W, 3\), got \(48, 64\)"),
    (np.zeros((48, 64, 4), np.uint8), r"expected shape \(H, W, 3\)"),
    ([[0, 0, 0]], "expected a numpy array"),
])
def test_writer_rejects_bad_frames(tmp_path, frame, match):
    with pytest.raises(ParameterError, match=match):
        write_video(tmp_path / "bad.mp4", [frame], fps=10)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------- PNG folders


def test_png_folder_round_trip_is_exact(tmp_path):
    src = make_frames(5, 17, 33)
    folder = tmp_path / "frames" / "nested"  # created on demand
    paths = write_png_folder(folder, src)
    assert [p.name for p in paths] == [f"{i:06d}.png" for i in range(5)]
    assert sorted(os.listdir(folder)) == [p.name for p in paths]  # no temporary files left
    out = read_png_folder(folder)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, src)  # exact, and RGB (not BGR) order


def test_png_folder_numeric_order_and_other_files(tmp_path):
    src = make_frames(4)
    write_png_folder(tmp_path, src[:2], start_index=8, digits=1)  # 8.png, 9.png
    write_png_folder(tmp_path, src[2:], start_index=10, digits=2)  # 10.png, 11.png
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "preview.png").write_bytes(b"ignored: not numbered")
    np.testing.assert_array_equal(read_png_folder(tmp_path), src)  # 8, 9, 10, 11 - not 10, 11, 8, 9
    with pytest.raises(ParameterError, match="needs more than digits=1"):
        write_png_folder(tmp_path / "x", src, start_index=9, digits=1)


def test_png_folder_errors(tmp_path):
    with pytest.raises(InputFileError, match="no such folder"):
        read_png_folder(tmp_path / "missing")
    with pytest.raises(InputFileError, match="found none"):
        read_png_folder(tmp_path)
    write_png_folder(tmp_path, make_frames(1))
    write_png_folder(tmp_path, make_frames(1, 32, 32), start_index=1)
    with pytest.raises(InputFileError, match=r"000001\.png: expected 64x48 like 000000\.png, got 32x32"):
        read_png_folder(tmp_path)
    (tmp_path / "000002.png").write_bytes(b"broken")
    (tmp_path / "000001.png").unlink()
    with pytest.raises(InputFileError, match=r"000002\.png: cannot decode PNG"):
        read_png_folder(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create the folder"):
        write_png_folder(blocker / "sub", make_frames(1))
