"""Read and write videos and PNG frame folders as uint8 RGB arrays.

Every frame that enters or leaves this module is a C-contiguous ``uint8`` array of shape
``(H, W, 3)`` in RGB order with values 0-255; a clip is ``(N, H, W, 3)``.  Decoding and
encoding run in an ``ffmpeg`` subprocess (the binary bundled with ``imageio-ffmpeg``) that
exchanges raw ``rgb24`` frames with Python through pipes.

Decoding converts any pixel format (grey, alpha, 10-bit, odd sizes, ...) to 8-bit RGB at the
stored size, rotated the way the container says the video should be displayed.  Frames are
decoded sequentially, so ``start``/``end``/``stride`` pick exact frame indices.

Encoding defaults to *lossless* RGB, because these files are training data:

========================  ==========================================================
``quality=None``          libx264rgb ``-qp 0 -preset ultrafast`` (bit-exact round
                          trip, odd sizes included); ffv1 for ``.mkv``/``.avi`` if
                          an ffmpeg build lacks libx264rgb.
``quality=q`` (0-51)      libx264 CRF ``q`` (lower is better; 18 is visually
                          lossless, 23 is x264's default), BT.709, yuv420p, or
                          yuv444p when the width or height is odd (4:2:0 needs even
                          sizes and padding would change the size).
========================  ==========================================================

Notes
-----
Speed, measured on the 2-core development VM (ffmpeg 9.0 from imageio-ffmpeg 0.8.1) with 60
frames of 1280x720 (a pan over a natural photo plus per-frame sensor-like noise), through
:func:`write_video` and :class:`VideoReader`; ranges span repeated runs on a busy shared VM,
CPU time (ffmpeg + Python) is the steadier figure:

============================  ================================  ================================
codec                         write                             read
============================  ================================  ================================
lossless (libx264rgb, .mp4)   45-85 fps, 19 CPU-ms/frame        35-60 fps, 29 CPU-ms/frame
lossy ``quality=23``          75-120 fps, 13 CPU-ms/frame       200-300 fps, 4.4 CPU-ms/frame
============================  ================================  ================================

Lossless files are large (1.3 MB per 720p frame here; 1.2 kB lossy).  ffv1 is as large and
about half as fast; utvideo is faster but 17 % larger and has no MP4 mapping.

MP4/MOV outputs are written with ``+faststart`` (index at the front; costs one extra pass over
the file at close) so that a copy cut short still decodes up to the cut: an MP4 whose index
sits at the end cannot be read at all once its tail is lost (:class:`~blursynth.errors.VideoError`).

A video counts as truncated when ffmpeg reports errors and the decoded frames end before the
stream's duration, or when they end clearly (> 5 %) before it without errors.  Time is used
rather than the container's frame estimate (duration x fps), which over-counts variable frame
rate videos.

ffmpeg >= 5.1 is required (``-fps_mode``); imageio-ffmpeg >= 0.5 ships a newer one.
"""
from __future__ import annotations

import logging
import math
import operator
import os
import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import IO, Iterable, Iterator

import cv2
import numpy as np
import numpy.typing as npt

from .errors import InputFileError, OutputError, ParameterError, TruncatedVideoError, VideoError

__all__ = [
    "VIDEO_SUFFIXES",
    "VideoInfo",
    "probe",
    "VideoReader",
    "read_video",
    "VideoWriter",
    "write_video",
    "write_png_folder",
    "read_png_folder",
    "VIDEO_EXTENSIONS",
]

#: Extensions of the video files taken from a folder.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
logger = logging.getLogger("blursynth")

#: Output extensions :class:`VideoWriter` accepts, with the ffmpeg muxer used for each.
VIDEO_EXTENSIONS: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".avi": "avi",
}

_PROBE_TIMEOUT_S = 60.0
# Demuxers that open things which are not videos: still images, ANSI text, playlists and
# lists of other files (those could make ffmpeg read files or URLs the caller never named).
_NOT_VIDEO_FORMATS = {
    "image2": "an image",
    "tty": "a text file",
    "hls": "a playlist",
    "dash": "a playlist",
    "concat": "a list of files",
    "ffmetadata": "an ffmpeg metadata file",
    "sdp": "a session description",
}
# A pipe this large lets ffmpeg move a 720p frame in a few syscalls instead of ~40.
_PIPE_BYTES = 1 << 20

Frame = npt.NDArray[np.uint8]


# --------------------------------------------------------------------------------------------
# ffmpeg plumbing


def _ffmpeg_exe() -> str:
    """Path of the ffmpeg binary; RuntimeError (mapped by callers) if there is none."""
    import imageio_ffmpeg  # deferred: only needed once a video is touched

    return imageio_ffmpeg.get_ffmpeg_exe()


def _file_url(path: str | os.PathLike) -> str:
    # "file:" stops ffmpeg from reading names like "http:x" or "-i" as URLs or options.
    return "file:" + os.path.abspath(os.fspath(path))


@lru_cache(maxsize=None)
def _available_encoders(exe: str) -> frozenset[str]:
    """Names of the video encoders compiled into ``exe``."""
    try:
        out = subprocess.run(
            [exe, "-hide_banner", "-encoders"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False,
        ).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    # Lines look like " V....D libx264rgb    libx264 H.264 ... RGB (codec h264)".
    return frozenset(m.group(1) for m in re.finditer(r"^\s*V\S{5}\s+(\S+)", out, re.M))


def _set_pipe_size(fileobj: IO[bytes]) -> None:
    try:
        import fcntl

        fcntl.fcntl(fileobj.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
    except (ImportError, OSError, ValueError):
        pass  # only a speed-up (Linux); the default pipe size works too


def _ffmpeg_messages(text: str, limit: int = 3) -> list[str]:
    """Distinct ffmpeg log messages without their ``[demuxer @ 0x...]`` prefixes."""
    seen: list[str] = []
    for line in text.splitlines():
        msg = re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip()).strip().rstrip(".")
        if msg and msg not in seen and not msg.startswith("Last message repeated"):
            seen.append(msg)
    return seen[:limit]


def _summary(text: str) -> str:
    msgs = _ffmpeg_messages(text)
    return "; ".join(msgs) if msgs else "no message"


def _read_log(log: IO[bytes], max_bytes: int = 65536) -> str:
    """Tail of an ffmpeg stderr log file."""
    try:
        log.seek(0, os.SEEK_END)
        size = log.tell()
        log.seek(max(0, size - max_bytes))
        return log.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""


# --------------------------------------------------------------------------------------------
# probing


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first (non-cover-art) video stream.

    Attributes
    ----------
    path : str
        The file, as given.
    width, height : int
        Size of the decoded frames in pixels, after `rotation`.
    fps : float
        Average frame rate; NTSC rates are snapped to their exact value (29.97 -> 30000/1001).
        0.0 if the container does not say.
    n_frames : int or None
        The container's estimate of the frame count (duration x fps); None if unknown.  Only a
        read tells the true count.
    duration : float or None
        Seconds; the stream's own duration where the container stores one.
    codec : str or None
        ffmpeg's codec name, e.g. ``"h264"``.
    pix_fmt : str or None
        ffmpeg's stored pixel format, e.g. ``"yuv420p"``; frames are decoded to RGB anyway.
    rotation : int
        Clockwise rotation (0, 90, 180 or 270 degrees) applied to the stored frames so they
        come out the way the file says to display them.
    """

    path: str
    width: int
    height: int
    fps: float
    n_frames: int | None
    duration: float | None
    codec: str | None
    pix_fmt: str | None
    rotation: int = 0


@dataclass(frozen=True)
class _Stream:
    """Probe details the decoder needs but users do not."""

    index: int
    stored_width: int
    stored_height: int
    # Duration known to be the video stream's own (not stretched by a longer audio track),
    # or None; the reader compares it with the time it actually decoded.
    video_duration: float | None = None


def _split_top_level(text: str) -> list[str]:
    """Split ffmpeg's stream description on commas outside parentheses/brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _rate(field_text: str, unit: str) -> float | None:
    m = re.match(rf"^([\d.]+)(k?) {unit}\b", field_text)
    if not m:
        return None
    return float(m.group(1)) * (1000.0 if m.group(2) else 1.0)


def _snap_fps(fps: float) -> Fraction:
    """Exact frame rate for ``fps``, which ffmpeg prints rounded to ~4 digits."""
    for base in (24, 30, 48, 60, 120, 240):
        ntsc = Fraction(base * 1000, 1001)
        if abs(fps - float(ntsc)) < 0.006:
            return ntsc
    frac = Fraction(fps).limit_denominator(1000)
    if frac <= 0 or abs(float(frac) - fps) > 1e-3 * fps:  # very low or odd rates
        frac = Fraction(fps).limit_denominator(1 << 20)
    return frac


def _n_frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _hms(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def _parse_probe(path: str, text: str) -> tuple[VideoInfo, _Stream]:
    """Turn ``ffmpeg -i`` output into a VideoInfo; raise VideoError if it is not a video."""
    fmt_m = re.search(r"^Input #0, (.*?), from '", text, re.M)
    if fmt_m is None:
        raise VideoError(
            path,
            f"not a video file, or too damaged to open ({_open_failure(text)})",
        )
    fmt = fmt_m.group(1)
    for name in fmt.split(","):
        kind = _NOT_VIDEO_FORMATS.get(name) or ("an image" if name.endswith("_pipe") else None)
        if kind:
            raise VideoError(path, f"not a video: ffmpeg reads it as {kind} (format {fmt!r})")

    lines = text.splitlines()
    chosen = None
    n_streams = 0
    for i, line in enumerate(lines):
        if not re.match(r"^\s*Stream #0:\d+", line) or "(attached pic)" in line:
            continue  # cover art is not a video
        n_streams += 1
        m = re.match(r"^\s*Stream #0:(\d+)\S*: Video: (.*)$", line)
        if m and chosen is None:
            chosen = (i, int(m.group(1)), m.group(2))
    if chosen is None:
        raise VideoError(path, f"no video stream found (ffmpeg format {fmt!r})")
    line_no, index, desc = chosen

    fields = _split_top_level(desc)
    codec = fields[0].split()[0] if fields and fields[0] else None
    width = height = None
    fps = tbr = None
    for f in fields[1:]:
        size_m = re.match(r"^(\d+)x(\d+)\b", f)
        if size_m and width is None:
            width, height = int(size_m.group(1)), int(size_m.group(2))
        fps = fps if fps is not None else _rate(f, "fps")
        tbr = tbr if tbr is not None else _rate(f, "tbr")
    pix_fmt = None
    if len(fields) > 1 and not re.match(r"^\d+x\d+", fields[1]):
        pix_fmt = fields[1].split("(")[0].strip() or None
        if pix_fmt == "none":
            pix_fmt = None
    if not width or not height:
        raise VideoError(path, f"video stream has no frame size (ffmpeg: {desc.strip()!r})")

    # The stream's own block (metadata, side data) runs until the next stream / top-level line.
    stream_duration = None
    rotation = 0
    for line in lines[line_no + 1:]:
        if re.match(r"^\s*Stream #", line) or not line.startswith(" "):
            break
        dur_m = re.match(r"^\s*DURATION\s*:\s*(\d+):(\d+):([\d.]+)", line)
        if dur_m:
            stream_duration = _hms(*dur_m.groups())
        rot_m = re.search(r"rotation of (-?[\d.]+) degrees", line, re.I)
        if rot_m:
            # ffmpeg prints the display matrix's counter-clockwise angle; we store clockwise.
            cw = (-float(rot_m.group(1))) % 360.0
            nearest = int(round(cw / 90.0)) * 90 % 360
            rotation = nearest if abs(((cw - nearest) + 180) % 360 - 180) < 1.0 else 0

    dur_m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    container_duration = _hms(*dur_m.groups()) if dur_m else None
    duration = stream_duration if stream_duration is not None else container_duration

    rate = fps if fps else tbr
    fps_exact = float(_snap_fps(rate)) if rate else 0.0
    n_frames = None
    if duration is not None and fps_exact > 0:
        n_frames = int(round(duration * fps_exact))

    out_w, out_h = (height, width) if rotation in (90, 270) else (width, height)
    info = VideoInfo(
        path=path, width=out_w, height=out_h, fps=fps_exact, n_frames=n_frames,
        duration=duration, codec=codec, pix_fmt=pix_fmt, rotation=rotation,
    )
    video_duration = (stream_duration if stream_duration is not None
                      else container_duration if n_streams == 1 else None)
    return info, _Stream(index=index, stored_width=width, stored_height=height,
                         video_duration=video_duration)


def _open_failure(text: str) -> str:
    msgs = [m.replace("Error opening input: ", "") for m in _ffmpeg_messages(text, limit=20)
            if "misdetection possible" not in m and "At least one output" not in m
            and not m.startswith(("Error opening input file", "Input #", "Duration:"))]
    msgs = list(dict.fromkeys(msgs))  # "Invalid data ..." comes twice after the rewrite
    reason = f"ffmpeg: {'; '.join(msgs[:3]) if msgs else 'unrecognised data'}"
    if "moov atom not found" in text:
        reason += ("; an MP4/MOV whose index (moov atom) is missing, e.g. because the file was "
                   "cut short while being written or copied")
    return reason


def _check_input_file(path: str) -> None:
    if not os.path.exists(path):
        raise InputFileError(path, "no such file")
    if os.path.isdir(path):
        raise InputFileError(path, "expected a video file, got a directory")
    if not os.path.isfile(path):  # a FIFO or device could block the read below forever
        raise InputFileError(path, "expected a regular file")
    try:
        with open(path, "rb") as fh:
            first = fh.read(1)
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from None
    if not first:
        raise VideoError(path, "file is empty (0 bytes), expected a video")


# Recent probe results by file identity: a stage probes a video to fail early, then opens a
# reader that needs the same facts (each probe is an ffmpeg start, 50-170 ms here).
_PROBED: dict[tuple, tuple[VideoInfo, _Stream]] = {}
_PROBED_MAX = 16


def _probe(path: str | os.PathLike) -> tuple[VideoInfo, _Stream]:
    spath = os.fspath(path)
    _check_input_file(spath)
    st = os.stat(spath)
    key = (os.path.abspath(spath), st.st_ino, st.st_size, st.st_mtime_ns)
    found = _PROBED.get(key)
    if found is None:
        found = _PROBED[key] = _run_probe(spath)
        while len(_PROBED) > _PROBED_MAX:
            _PROBED.pop(next(iter(_PROBED)), None)  # the oldest
    return found


def _run_probe(spath: str) -> tuple[VideoInfo, _Stream]:
    try:
        exe = _ffmpeg_exe()
        proc = subprocess.run(
            [exe, "-nostdin", "-hide_banner", "-protocol_whitelist", "file",
             "-i", _file_url(spath)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            timeout=_PROBE_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise VideoError(spath, f"ffmpeg took over {_PROBE_TIMEOUT_S:.0f} s to open it") from None
    except (OSError, RuntimeError) as exc:
        raise VideoError(spath, f"cannot run ffmpeg to read it: {exc}") from None
    # Without an output file ffmpeg exits 1 after printing what it found, so read the text.
    return _parse_probe(spath, proc.stderr.decode("utf-8", "replace"))


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a video file without decoding it.

    Parameters
    ----------
    path : str or os.PathLike
        Video file.

    Returns
    -------
    info : VideoInfo
        Size (after rotation), frame rate, estimated frame count, duration, codec, pixel
        format and rotation of the first video stream.

    Raises
    ------
    InputFileError
        `path` does not exist, is a directory or cannot be read.
    VideoError
        The file is empty, not a video (text, a still image, ...), damaged beyond opening,
        or has no video stream.
    """
    return _probe(path)[0]


# --------------------------------------------------------------------------------------------
# reading


def _as_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool):
        raise ParameterError(f"{name}: expected an int >= {minimum}, got {value!r}")
    try:
        ivalue = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ParameterError(f"{name}: expected an int >= {minimum}, got {value!r}") from None
    if ivalue < minimum:
        raise ParameterError(f"{name}: expected an int >= {minimum}, got {ivalue}")
    return ivalue


class VideoReader:
    """Iterate over the frames of a video as uint8 RGB arrays.

    Parameters
    ----------
    path : str or os.PathLike
        Video file.
    start : int, optional
        Index of the first frame to return (0-based, in decoding order).
    end : int or None, optional
        Index one past the last frame to consider (exclusive), or None for the whole video.
        An `end` beyond the video's length is clipped, like a slice.
    stride : int, optional
        Return every `stride`-th frame from `start` on.

    Attributes
    ----------
    info : VideoInfo
        Result of :func:`probe`, available right after construction.
    frames_read : int
        Frames returned so far.
    frames_decoded : int
        Frames decoded so far, including the ones skipped by `start` and `stride`.
    truncated : bool
        Set once iteration has reached the end of the stream: True if the decoded frames
        stop short of the stream's duration while ffmpeg reports errors (or clearly short
        without errors), if ffmpeg failed, or, where the duration is unknown, if ffmpeg
        reported errors: the file was cut short or is damaged.  The frames that decoded were
        returned and a warning naming the file and the frames decoded vs. expected was logged
        on the ``"blursynth"`` logger.  Stays False if iteration stopped early (at `end` or
        by :meth:`close`).

    Raises
    ------
    InputFileError
        From the constructor: `path` is missing or unreadable.
    VideoError
        From the constructor: not a video / no video stream / empty file.  From iteration: the
        video holds no frame at all, or none could be decoded (a
        :class:`~blursynth.errors.TruncatedVideoError` when it was cut short).
    ParameterError
        `start`, `end` or `stride` is out of range.

    Notes
    -----
    Frames are decoded sequentially by an ffmpeg subprocess; skipping frames costs their
    decoding time but is exact.  Each frame is a new C-contiguous ``(H, W, 3)`` uint8 array.
    Use the reader as a context manager (or call :meth:`close`) to stop ffmpeg when you stop
    iterating early.

    Examples
    --------
    >>> with VideoReader("clip.mp4", start=10, stride=2) as reader:  # doctest: +SKIP
    ...     for frame in reader:
    ...         process(frame)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        start: int = 0,
        end: int | None = None,
        stride: int = 1,
    ) -> None:
        self.path = os.fspath(path)
        self.start = _as_int("start", start, 0)
        if end is not None:
            if isinstance(end, bool) or not isinstance(end, (int, np.integer)) or end <= start:
                raise ParameterError(f"end: expected None or an int > start ({self.start}), "
                                     f"got {end!r}")
        self.end = None if end is None else int(end)
        self.stride = _as_int("stride", stride, 1)
        self.info, self._stream = _probe(self.path)
        self.frames_read = 0
        self.frames_decoded = 0
        self.truncated = False
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        self._done = False
        # ffmpeg can stop by itself after the last frame we want.
        if self.end is None:
            self._limit = None
        else:
            last = self.start + (self.end - 1 - self.start) // self.stride * self.stride
            self._limit = last + 1
        self._frame_bytes = self.info.width * self.info.height * 3

    # -- process management -------------------------------------------------------------

    def _command(self, exe: str) -> list[str]:
        cmd = [exe, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error",
               # The progress report's final out_time is how much video time decoded.  It
               # goes to the stderr log, not a named file that a killed process would leave.
               "-progress", "pipe:2", "-stats_period", "60",
               "-protocol_whitelist", "file", "-noautorotate", "-i", _file_url(self.path),
               "-map", f"0:{self._stream.index}"]
        # Rotate ourselves rather than trusting autorotate, so the frame size is known.
        vf = {90: "transpose=clock", 180: "hflip,vflip", 270: "transpose=cclock"}.get(
            self.info.rotation)
        if vf:
            cmd += ["-vf", vf]
        # passthrough: one output frame per decoded frame, no duplication or dropping.
        cmd += ["-fps_mode", "passthrough"]
        if self._limit is not None:
            cmd += ["-frames:v", str(self._limit)]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
        return cmd

    def _start(self) -> None:
        try:
            exe = _ffmpeg_exe()
            self._log = tempfile.TemporaryFile()  # a file, not a pipe: stderr can never block
            self._proc = subprocess.Popen(
                self._command(exe), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=self._log, bufsize=0,
            )
        except (OSError, RuntimeError) as exc:
            self._close_log()
            raise VideoError(self.path, f"cannot run ffmpeg to decode it: {exc}") from None
        _set_pipe_size(self._proc.stdout)

    def _close_log(self) -> None:
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None

    def close(self) -> None:
        """Stop ffmpeg and release its pipes; safe to call more than once."""
        proc, self._proc = self._proc, None
        self._done = True
        if proc is not None:
            if proc.poll() is None:
                proc.kill()  # nothing to flush when reading; waiting for a clean exit could hang
            try:
                proc.stdout.close()
            except OSError:
                pass
            proc.wait()
        self._close_log()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- iteration ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        frame = self._read_next(None)
        if frame is None:
            raise StopIteration
        return frame

    def _fill(self, buf: memoryview) -> int:
        """Read into ``buf`` until full or EOF; return the number of bytes read."""
        stdout = self._proc.stdout
        got, n = 0, len(buf)
        while got < n:
            k = stdout.readinto(buf[got:])
            if not k:
                break
            got += k
        return got

    def _is_selected(self, index: int) -> bool:
        return index >= self.start and (index - self.start) % self.stride == 0

    def _read_next(self, out: Frame | None) -> Frame | None:
        """Decode up to the next selected frame; write it into ``out`` (or a new array).

        Returns None at the end.  ``out`` lets :func:`read_video` fill its result in place.
        """
        if self._done:
            return None
        if self._proc is None:
            self._start()
        shape = (self.info.height, self.info.width, 3)
        scratch = None
        while True:
            if self._limit is not None and self.frames_decoded >= self._limit:
                self._finish(partial_bytes=0)
                return None
            index = self.frames_decoded
            if self._is_selected(index):
                target = np.empty(shape, np.uint8) if out is None else out
            else:
                if scratch is None:
                    scratch = np.empty(shape, np.uint8)
                target = scratch
            got = self._fill(memoryview(target).cast("B"))
            if got < self._frame_bytes:
                self._finish(partial_bytes=got)
                return None
            self.frames_decoded += 1
            if target is not scratch:
                self.frames_read += 1
                return target

    def _finish(self, partial_bytes: int) -> None:
        """ffmpeg's output ended: judge whether the video was complete, then clean up."""
        proc = self._proc
        try:
            proc.stdout.close()
        except OSError:
            pass
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        log = _read_log(self._log) if self._log is not None else ""
        seconds = _decoded_seconds(log)
        log = _PROGRESS_LINE.sub("", log)
        self._proc = None
        self._done = True
        self._close_log()

        decoded = self.frames_decoded
        errors = _ffmpeg_messages(log)
        if self._limit is not None and decoded >= self._limit:
            if errors:  # read-ahead past `end` may hit damage we never needed
                logger.debug("%s: ffmpeg messages after the last requested frame: %s",
                             self.path, "; ".join(errors))
            return

        if decoded == 0 and rc != 0:
            raise VideoError(self.path, f"ffmpeg could not decode any frame ({_summary(log)})")

        truncated = _looks_truncated(rc, partial_bytes, bool(errors), seconds,
                                     self._stream.video_duration, self.info.fps)
        est = self.info.n_frames
        expected = (f"about {_n_frames(est)}" if est is not None
                    else "an unknown number of frames")
        if seconds is not None and self._stream.video_duration:
            expected += f" ({seconds:.2f} s of {self._stream.video_duration:.2f} s decoded)"
        detail = f"ffmpeg: {_summary(log)}" if errors else "no ffmpeg error"
        if decoded == 0:
            if truncated:
                self.truncated = True
                raise TruncatedVideoError(
                    self.path,
                    f"no frame could be decoded, expected {expected}; "
                    f"the file is truncated or damaged ({detail})",
                    frames_read=0,
                )
            raise VideoError(self.path, "video contains no frames, expected at least 1 frame")
        if truncated:
            self.truncated = True
            logger.warning(
                "%s: video is truncated or damaged: decoded %s, expected %s; "
                "using what decoded (%s)",
                self.path, _n_frames(decoded), expected, detail,
            )
        elif errors:
            logger.warning("%s: ffmpeg reported decoding errors; some frames may be damaged "
                           "(%s)", self.path, detail)


_PROGRESS_LINE = re.compile(r"^[a-z0-9_]+=.*$\n?", re.M)


def _decoded_seconds(log: str) -> float | None:
    """End time of the last decoded frame, from ffmpeg's final progress report in its log."""
    values = re.findall(r"^out_time_us=(\d+)\s*$", log, re.M)
    return int(values[-1]) / 1e6 if values else None


def _looks_truncated(rc: int, partial_bytes: int, errors: bool, seconds: float | None,
                     video_duration: float | None, fps: float) -> bool:
    """Whether a decode that reached the end of the stream ended before the video did.

    Time, not frame counts: duration x fps over-counts variable-frame-rate videos, while
    the end time of the last decoded frame must reach the stream's duration either way.
    """
    if rc != 0 or partial_bytes > 0:
        return True
    if seconds is None or video_duration is None:
        return errors  # nothing trustworthy to compare with; ffmpeg's word decides
    missing = video_duration - seconds
    frame = 1.0 / fps if fps > 0 else 0.04
    if errors:  # damaged, and the video stops short of its end
        return missing > 0.5 * frame
    # Silently short (e.g. an AVI cut between packets): only a clear margin counts.
    return missing > max(2.0 * frame, 0.05 * video_duration)


def read_video(
    path: str | os.PathLike,
    *,
    start: int = 0,
    end: int | None = None,
    stride: int = 1,
    min_frames: int = 0,
) -> tuple[npt.NDArray[np.uint8], VideoInfo]:
    """Decode a video (or a range of its frames) into one array.

    Parameters
    ----------
    path : str or os.PathLike
        Video file.
    start, end, stride : int, optional
        Frames ``start, start + stride, ...`` below `end` (exclusive; None for all), as in
        :class:`VideoReader`.
    min_frames : int, optional
        Raise if fewer than this many frames are selected and decoded.

    Returns
    -------
    frames : ndarray of uint8, shape (N, H, W, 3)
        RGB frames, 0-255.  N may be 0 if `start` lies beyond the end of the video.
    info : VideoInfo
        What :func:`probe` reported.

    Raises
    ------
    InputFileError
        `path` is missing or unreadable.
    VideoError
        Not a video, no video stream, no frames, or fewer than `min_frames` frames; the
        message names the file and the counts ("expected at least 2 frames, got 1").
    TruncatedVideoError
        The file is cut short and fewer than `min_frames` frames decoded.  A truncated file
        with enough frames only logs a warning and returns what decoded.
    ParameterError
        Invalid `start`, `end`, `stride` or `min_frames`.
    """
    min_frames = _as_int("min_frames", min_frames, 0)
    with VideoReader(path, start=start, end=end, stride=stride) as reader:
        info = reader.info
        shape = (info.height, info.width, 3)
        # Fill a preallocated array in place to avoid holding every frame twice.
        est = info.n_frames
        if end is not None:
            est = end if est is None else min(est, end)
        capacity = max(1, len(range(reader.start, est, reader.stride))) if est else 16
        # A bogus duration must not reserve absurd memory up front; growth handles the rest.
        capacity = min(capacity, max(1, (2 << 30) // reader._frame_bytes))
        frames = np.empty((capacity,) + shape, np.uint8)
        n = 0
        while True:
            if n < len(frames):
                if reader._read_next(frames[n]) is None:
                    break
            else:  # the estimate was low: grow only once another frame really arrives
                extra = reader._read_next(None)
                if extra is None:
                    break
                grown = np.empty((2 * len(frames),) + shape, np.uint8)
                grown[:n] = frames
                grown[n] = extra
                frames = grown
            n += 1
        truncated = reader.truncated
    frames = frames[:n] if n == len(frames) else frames[:n].copy()
    if n < min_frames:
        problem = f"expected at least {_n_frames(min_frames)}, got {n}"
        if start or end is not None or stride != 1:
            problem += f" (start={start}, end={end}, stride={stride})"
        if truncated:
            raise TruncatedVideoError(os.fspath(path), problem + "; the file is truncated",
                                      frames_read=n)
        raise VideoError(os.fspath(path), problem)
    return frames, info


# --------------------------------------------------------------------------------------------
# writing


def _check_frame(path: str, frame: object, size: tuple[int, int] | None, what: str) -> Frame:
    """Validate one RGB frame; return it C-contiguous."""
    if not isinstance(frame, np.ndarray):
        raise ParameterError(f"{path}: {what}: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ParameterError(f"{path}: {what}: expected dtype uint8 (0-255), got {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ParameterError(f"{path}: {what}: expected shape (H, W, 3), got {frame.shape}")
    if size is not None and frame.shape[:2] != size:
        raise ParameterError(
            f"{path}: {what}: expected shape {size + (3,)} like the first frame, "
            f"got {frame.shape}")
    return np.ascontiguousarray(frame)


def _check_fps(fps: object) -> Fraction:
    try:
        value = float(fps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParameterError(f"fps: expected a positive number, got {fps!r}") from None
    if isinstance(fps, (bool, str, bytes)) or not math.isfinite(value) or value <= 0:
        raise ParameterError(f"fps: expected a positive number, got {fps!r}")
    return fps if isinstance(fps, Fraction) else _snap_fps(value)


def _codec_args(path: str, ext: str, quality: int | None, width: int, height: int,
                encoders: frozenset[str], preset: str = "veryfast") -> list[str]:
    """ffmpeg output options for this container, quality and frame size."""
    if quality is None:
        if "libx264rgb" in encoders:
            # qp 0 is lossless; rgb24 keeps the pixels in RGB, so no colour conversion.
            return ["-c:v", "libx264rgb", "-preset", "ultrafast", "-qp", "0",
                    "-pix_fmt", "rgb24"]
        if ext in (".mkv", ".avi") and "ffv1" in encoders:
            return ["-c:v", "ffv1", "-level", "3", "-slicecrc", "1", "-pix_fmt", "bgr0"]
        raise OutputError(path, "lossless encoding needs libx264rgb (or ffv1 for .mkv/.avi), "
                                "which this ffmpeg build lacks")
    if "libx264" not in encoders:
        raise OutputError(path, "lossy encoding needs libx264, which this ffmpeg build lacks")
    # 4:2:0 needs even sizes; 4:4:4 keeps odd sizes exact instead of padding them.
    pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    return ["-c:v", "libx264", "-preset", preset, "-crf", str(quality),
            "-vf", f"scale=out_color_matrix=bt709:out_range=tv,format={pix_fmt}",
            "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
            "-color_range", "tv"]


#: x264 presets accepted for lossy output, fastest first (lossless always uses ultrafast).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")


class VideoWriter:
    """Write uint8 RGB frames to a video file, atomically.

    Frames go to a hidden temporary file next to `path` which is renamed to `path` only when
    :meth:`close` succeeds; on any error (or an exception inside a ``with`` block) the
    temporary file is deleted and an existing file at `path` is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; the extension picks the container: one of ``.mp4``, ``.m4v``, ``.mov``,
        ``.mkv``, ``.avi``.  An existing file is replaced.
    fps : float
        Frame rate, > 0.  29.97, 59.94, ... are stored as exact NTSC rates (30000/1001, ...).
    quality : int or None, optional
        None (default): lossless RGB (libx264rgb, QP 0) - decoding gives back the exact
        pixels.  An int 0-51: lossy H.264 with that CRF; lower is better and larger
        (18 ~ visually lossless, 23 = x264 default, 28 small).  Lossy frames are stored as
        yuv420p, or yuv444p when the width or height is odd.
    preset : str, optional
        x264 speed preset of lossy output (default ``veryfast``; see ``X264_PRESETS``).

    Attributes
    ----------
    path : str
        Final output path.
    frames_written : int
        Frames passed to :meth:`write` so far.

    Raises
    ------
    ParameterError
        Unknown extension, bad `fps` or `quality`; from :meth:`write`: a frame that is not
        uint8 ``(H, W, 3)`` or differs in size from the first.
    OutputError
        The directory does not exist or is not writable, ffmpeg fails or dies, no frame was
        written before :meth:`close`, or the final rename fails.  Names the output path.

    Examples
    --------
    >>> with VideoWriter("out.mp4", fps=30) as writer:  # doctest: +SKIP
    ...     for frame in frames:
    ...         writer.write(frame)
    """

    def __init__(self, path: str | os.PathLike, fps: float, *,
                 quality: int | None = None, preset: str = "veryfast") -> None:
        self.path = os.fspath(path)
        if preset not in X264_PRESETS:
            raise ParameterError(f"preset: expected one of {X264_PRESETS}, got {preset!r}")
        self._preset = preset
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in VIDEO_EXTENSIONS:
            raise ParameterError(
                f"{self.path}: expected an extension in {sorted(VIDEO_EXTENSIONS)}, "
                f"got {ext or 'none'!r}")
        self._ext = ext
        self._fps = _check_fps(fps)
        if quality is not None:
            if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) \
                    or not 0 <= quality <= 51:
                raise ParameterError(f"quality: expected None (lossless) or an int in 0..51, "
                                     f"got {quality!r}")
            quality = int(quality)
        self.quality = quality
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise OutputError(self.path, f"directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(self.path, f"directory {parent} is not writable")
        if os.path.isdir(self.path):
            raise OutputError(self.path, "expected a file name, got an existing directory")
        name = os.path.basename(self.path)
        # Hidden and unique, so globs like *.mp4 never see a half-written file.
        self._tmp = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:12]}.part")
        self.frames_written = 0
        self._size: tuple[int, int] | None = None
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        self._closed = False

    def _start(self, height: int, width: int) -> None:
        try:
            exe = _ffmpeg_exe()
        except RuntimeError as exc:
            raise OutputError(self.path, f"cannot run ffmpeg: {exc}") from None
        codec = _codec_args(self.path, self._ext, self.quality, width, height,
                            _available_encoders(exe), preset=self._preset)
        muxer = VIDEO_EXTENSIONS[self._ext]
        fps = f"{self._fps.numerator}/{self._fps.denominator}"
        cmd = [exe, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-framerate", fps, "-i", "pipe:0", "-an", *codec]
        if muxer in ("mp4", "mov"):
            cmd += ["-movflags", "+faststart"]  # index first: a cut copy stays readable
        cmd += ["-f", muxer, _file_url(self._tmp)]
        self._log = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=self._log, bufsize=0)
        except OSError as exc:
            self.abort()
            raise OutputError(self.path, f"cannot run ffmpeg: {exc}") from None
        _set_pipe_size(self._proc.stdin)

    def write(self, frame: Frame) -> None:
        """Append one frame.

        Parameters
        ----------
        frame : ndarray of uint8, shape (H, W, 3)
            RGB, 0-255.  All frames must have the size of the first.

        Raises
        ------
        ParameterError
            Wrong type, dtype, shape or size.
        OutputError
            ffmpeg died (disk full, ...) or the writer is closed; the partial output is removed.
        """
        if self._closed:
            raise OutputError(self.path, "cannot write: the writer is closed")
        frame = _check_frame(self.path, frame, self._size, f"frame {self.frames_written}")
        if self._proc is None:
            self._size = frame.shape[:2]
            self._start(*self._size)
        data = memoryview(frame).cast("B")
        try:
            while data:  # a raw pipe write may be partial (e.g. interrupted by a signal)
                data = data[self._proc.stdin.write(data):]
        except (BrokenPipeError, OSError, ValueError):
            log = self._stop_process()
            self.abort()
            raise OutputError(self.path, f"ffmpeg stopped while encoding frame "
                                         f"{self.frames_written} ({_summary(log)})") from None
        self.frames_written += 1

    def _stop_process(self) -> str:
        """Wait for (or kill) ffmpeg after a failure; return its log."""
        proc = self._proc
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return _read_log(self._log) if self._log is not None else ""

    def abort(self) -> None:
        """Stop writing: kill ffmpeg, delete the temporary file, publish nothing."""
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.stdin.close()
            except OSError:
                pass
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("%s: could not remove temporary file %s: %s", self.path, self._tmp,
                           exc)

    def close(self) -> None:
        """Finish the file and move it to `path`.

        Raises
        ------
        OutputError
            No frame was written, ffmpeg failed, or the rename failed; nothing is left at
            `path` (an older file there is kept).
        """
        if self._closed:
            return
        if self._proc is None:
            self.abort()
            raise OutputError(self.path, "no frames were written, expected at least 1 frame")
        proc = self._proc
        try:
            proc.stdin.close()
        except OSError:
            pass
        rc = proc.wait()
        log = _read_log(self._log)
        if rc != 0 or not os.path.isfile(self._tmp) or os.path.getsize(self._tmp) == 0:
            self.abort()
            raise OutputError(self.path, f"ffmpeg failed with exit code {rc} ({_summary(log)})")
        self._proc = None
        try:
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise OutputError(self.path, f"cannot move the finished video into place: "
                                         f"{exc.strerror or exc}") from None
        self.abort()  # releases the log; the temporary name is already gone

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # Never publish a file nobody closed; just clean up.
        try:
            if not self._closed:
                self.abort()
        except Exception:
            pass


def write_video(path: str | os.PathLike, frames: Iterable[Frame] | npt.NDArray[np.uint8],
                fps: float, *, quality: int | None = None) -> None:
    """Write frames to a video file atomically (see :class:`VideoWriter`).

    Parameters
    ----------
    path : str or os.PathLike
        Output file (``.mp4``, ``.m4v``, ``.mov``, ``.mkv`` or ``.avi``).
    frames : ndarray of uint8, shape (N, H, W, 3), or iterable of (H, W, 3) uint8 arrays
        RGB frames, 0-255; at least one.
    fps : float
        Frame rate, > 0.
    quality : int or None, optional
        None for lossless RGB (default), or a CRF 0-51 for smaller lossy files.

    Raises
    ------
    ParameterError
        Bad frames, `fps`, `quality` or extension.
    OutputError
        Writing failed; nothing is left at `path`.
    """
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ParameterError(f"{os.fspath(path)}: frames: expected shape (N, H, W, 3), "
                                 f"got {frames.shape}")
        if len(frames) == 0:
            raise ParameterError(f"{os.fspath(path)}: frames: expected at least 1 frame, got 0")
    with VideoWriter(path, fps, quality=quality) as writer:
        for frame in frames:
            writer.write(frame)


# --------------------------------------------------------------------------------------------
# PNG folders


_PNG_NAME = re.compile(r"^(\d+)\.png$")


def write_png_folder(folder: str | os.PathLike,
                     frames: Iterable[Frame] | npt.NDArray[np.uint8], *,
                     start_index: int = 0, digits: int = 6) -> list[Path]:
    """Save RGB frames as numbered PNG files, each written atomically.

    Parameters
    ----------
    folder : str or os.PathLike
        Output folder, created (with parents) if missing.  Existing files with the same
        names are replaced; other files are left alone.
    frames : ndarray of uint8, shape (N, H, W, 3), or iterable of (H, W, 3) uint8 arrays
        RGB frames, 0-255.
    start_index : int, optional
        Number of the first file.
    digits : int, optional
        Zero-padded width of the numbers: ``000000.png``, ``000001.png``, ...

    Returns
    -------
    paths : list of Path
        The files written, in order.

    Raises
    ------
    ParameterError
        A frame is not uint8 ``(H, W, 3)``, or an index needs more than `digits` digits.
    OutputError
        The folder cannot be created or a file cannot be written; the file being written
        is not left half-done.
    """
    start_index = _as_int("start_index", start_index, 0)
    digits = _as_int("digits", digits, 1)
    folder = Path(folder)
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ParameterError(f"{folder}: frames: expected shape (N, H, W, 3), got {frames.shape}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(folder, f"cannot create the folder: {exc.strerror or exc}") from None
    written: list[Path] = []
    for i, frame in enumerate(frames):
        index = start_index + i
        if index >= 10 ** digits:
            raise ParameterError(f"{folder}: frame index {index} needs more than "
                                 f"digits={digits} digits")
        final = folder / f"{index:0{digits}d}.png"
        frame = _check_frame(str(final), frame, None, f"frame {i}")
        try:
            ok, png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        except cv2.error as exc:  # not expected for a valid uint8 RGB frame
            reason = str(exc).strip().splitlines()[-1]
            raise OutputError(final, f"cannot encode PNG: {reason}") from None
        if not ok:
            raise OutputError(final, "cannot encode PNG: OpenCV refused the frame")
        # Encode in memory, write with Python: disk errors come back as OSError with errno.
        tmp = folder / f".{final.stem}.{uuid.uuid4().hex[:12]}.part"
        try:
            with open(tmp, "wb") as fh:
                fh.write(png.data)
            os.replace(tmp, final)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise OutputError(final, f"cannot write PNG: {exc.strerror or exc}") from None
        written.append(final)
    return written


def read_png_folder(folder: str | os.PathLike) -> npt.NDArray[np.uint8]:
    """Load the numbered PNG files of a folder (as written by :func:`write_png_folder`).

    Files named ``<digits>.png`` are read in numeric order; other files are ignored.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder with ``000000.png``, ``000001.png``, ...

    Returns
    -------
    frames : ndarray of uint8, shape (N, H, W, 3)
        RGB frames, 0-255.  Grey or RGBA PNGs are converted to RGB; 16-bit ones to 8-bit.

    Raises
    ------
    InputFileError
        The folder is missing or holds no numbered PNG, a PNG cannot be decoded, or the
        frames differ in size.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "no such folder" if not folder.exists()
                             else "expected a folder of PNG files, got a file")
    numbered = []
    for entry in os.scandir(folder):
        m = _PNG_NAME.match(entry.name)
        if m and entry.is_file():
            numbered.append((int(m.group(1)), Path(entry.path)))
    if not numbered:
        raise InputFileError(folder, "expected numbered PNG files (000000.png, ...), found none")
    numbered.sort()
    frames: npt.NDArray[np.uint8] | None = None
    for i, (_, file) in enumerate(numbered):
        try:
            # IGNORE_ORIENTATION: pixels exactly as stored, like the writer wrote them.
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        except cv2.error:
            bgr = None
        if bgr is None:
            raise InputFileError(file, "cannot decode PNG")
        if frames is None:
            frames = np.empty((len(numbered),) + bgr.shape, np.uint8)
        elif bgr.shape != frames.shape[1:]:
            h, w = frames.shape[1:3]
            raise InputFileError(file, f"expected {w}x{h} like {numbered[0][1].name}, "
                                       f"got {bgr.shape[1]}x{bgr.shape[0]}")
        frames[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return frames
