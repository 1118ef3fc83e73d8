"""fetch: collect source videos (URLs through yt-dlp, local files and folders) into one folder.

Every source ends as one file in ``OUT/`` and one record in ``OUT/fetch.jsonl`` with its
provenance: the URL and the site's id, title, uploader and licence as reported, the probed
size, frame rate, frame count and codec, the SHA-256 of the bytes, and the time of the fetch;
or why it failed or was skipped. That record is the download archive: a re-run skips a source
whose ``ok`` record and file are there without touching the network.

Downloads land in ``OUT/.partial/`` (yt-dlp's ``.part`` files, resumed with HTTP ``Range``
by the next run) and reach their final name only after :func:`blursynth.video.probe` accepted
them, so nothing under a final name is ever half-written or not a video. Local files are
hashed and hard-linked (copied across file systems) as ``local-<sha256[:16]>-<stem><ext>``.

Errors per source are recorded and the run goes on: an unknown host, an HTTP 404, a page
without a video, a download that is not a video, a duplicate. Transient errors (connection
refused or reset, timeouts, HTTP 408/429/5xx, a transfer cut short) are retried with
exponential backoff; permanent ones are not.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urljoin

from .errors import BlursynthError, InputFileError, ParameterError, VideoError
from .files import atomic_path, file_identity, is_inside, link_or_copy, output_error
from .log import progress
from .manifest import Manifest, base_record
from .sources import Source, check_order, normalize_url, parse_section, read_list
from .video import VIDEO_SUFFIXES, probe

__all__ = ["MANIFEST", "PARTIAL_DIR", "format_selector", "license_matches", "fetch"]

log = logging.getLogger(__name__)

STAGE = "fetch"
#: The manifest (and download archive), inside the output folder.
MANIFEST = "fetch.jsonl"
#: Hidden folder in the output folder where downloads wait until they are checked.
PARTIAL_DIR = ".partial"
#: First delay of the per-item retry, seconds; doubles each attempt (2, 4, 8 s).
_BACKOFF_S = 2.0
# yt-dlp's "caused by" tail and its ERROR prefix repeat what the message already says.
_CAUSED_BY = re.compile(r"\s*\(caused by .*\)\s*$", re.S)


# -- formats and licences -------------------------------------------------------------------


def format_selector(max_height: int | None = None, min_fps: float | None = None) -> str:
    """yt-dlp format string suited to blur synthesis: video only, H.264 preferred.

    Parameters
    ----------
    max_height : int, optional
        Tallest format to take, pixels.
    min_fps : float, optional
        Lowest frame rate to take.

    Returns
    -------
    selector : str
        Alternatives tried in order: (1) video-only H.264 (``avc1``) in MP4, which every
        decoder reads fast; (2) any video-only format; (3) the best format with video (and
        audio: some sites offer nothing else). Within each, yt-dlp takes the best (largest,
        then fastest) format. A format whose height or frame rate the site does not state
        passes the limits (``<=?``); :func:`fetch` checks the downloaded file against them.

    Examples
    --------
    >>> format_selector(720)
    'bv[vcodec^=avc1][ext=mp4][height<=?720]/bv[height<=?720]/bv*[height<=?720]'
    """
    limits = (f"[height<=?{int(max_height)}]" if max_height else "") + \
             (f"[fps>=?{min_fps:g}]" if min_fps else "")
    return "/".join(f"{base}{limits}" for base in ("bv[vcodec^=avc1][ext=mp4]", "bv", "bv*"))


def _license_words(text: str) -> str:
    text = " ".join(text.casefold().replace("_", " ").split())
    if re.match(r"(cc[- ]?)?by(-nc)?(-sa|-nd)?\b|cc0\b", text):  # Vimeo-style short codes
        text = "creative commons " + text
    return re.sub(r"\bcc(?=\b|[- 0])", "creative commons", text)


def license_matches(license: str | None, wanted: str | Sequence[str]) -> bool:
    """Whether a reported licence matches a filter (case-insensitive substring).

    ``cc`` means ``creative commons`` on both sides, and short codes such as ``by-sa`` or
    ``cc0`` count as Creative Commons.

    Parameters
    ----------
    license : str or None
        The licence as the site reports it (yt-dlp's ``license`` field).
    wanted : str or sequence of str
        Filter text(s); any match is enough.

    Returns
    -------
    bool
        False when no licence is reported.

    Examples
    --------
    >>> license_matches("Creative Commons Attribution license (reuse allowed)", "cc")
    True
    >>> license_matches(None, "cc")
    False
    """
    if not license:
        return False
    have = _license_words(str(license))
    return any(_license_words(w) in have for w in ([wanted] if isinstance(wanted, str) else wanted))


# -- the archive: what earlier runs finished ---------------------------------------------------


class _Archive:
    """Index of the manifest: the last ``ok`` record per item key and per site id, and the
    last record per key (a source skipped by a filter stays skipped while the filters agree)."""

    def __init__(self, records: list[dict], out: Path):
        self.out = out
        self.by_key: dict[str, dict] = {}
        self.by_id: dict[tuple, dict] = {}
        self.last: dict[str, dict] = {}
        for rec in records:
            self.add(rec)

    def add(self, rec: dict) -> None:
        key = rec.get("item")
        if not isinstance(key, str):
            return
        self.last[key] = rec
        if rec.get("status") == "ok":
            self.by_key[key] = rec
            if rec.get("video_id") is not None and rec.get("extractor") != "generic":
                self.by_id[(rec.get("extractor"), rec["video_id"],
                            _section_key(rec.get("section")))] = rec

    def _present(self, rec: dict | None) -> dict | None:
        if rec is None:
            return None
        f = self.out / str(rec.get("file", ""))
        ok = rec.get("file") and f.is_file() and f.stat().st_size == rec.get("size")
        return rec if ok else None

    def done(self, key: str) -> dict | None:
        return self._present(self.by_key.get(key))

    def done_id(self, extractor: str, video_id: str, section: list | None) -> dict | None:
        return self._present(self.by_id.get((extractor, video_id, _section_key(section))))


def _section_json(src: Source) -> list | None:
    """A source's section as recorded: ``[start, end]``, end None when open."""
    return None if src.section is None else [src.start or 0.0, src.end]


def _section_key(section: list | None) -> tuple | None:
    return None if section is None else tuple(None if v is None else float(v) for v in section)


# -- yt-dlp plumbing ---------------------------------------------------------------------------


class _Cancelled(Exception):
    """Raised inside a worker (from yt-dlp's progress hook) when the run is interrupted."""


class _YtdlpLogger:
    """yt-dlp's ``logger=``: its messages go to blursynth's log, never raw to stderr.

    Its errors are debug messages here: they come back as DownloadError and the driver
    reports each once, naming the URL.
    """

    def __init__(self, url: str):
        self.url = url

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp %s", msg.removeprefix("[debug] "))

    info = error = debug

    def warning(self, msg: str) -> None:
        # Noise before an error the driver reports anyway, and yt-dlp's own retries.
        if re.search(r"Falling back on generic information extractor|Retrying \(\d+/\d+\)|"
                     r"Giving up after \d+ retries", msg):
            log.debug("yt-dlp %s", msg)
        else:
            log.warning("%s: %s", self.url, msg.removeprefix("WARNING: "))


def _ffmpeg() -> str:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    # yt-dlp asks "is ffmpeg installed?" for sections through a context variable that only
    # its command line sets; each worker thread starts with an empty context, so set it here.
    try:
        from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor
        FFmpegPostProcessor._ffmpeg_location.set(exe)
    except (ImportError, AttributeError):  # another yt-dlp: sections may need ffmpeg on PATH
        pass
    return exe


def _clean(err: BaseException) -> str:
    msg = _CAUSED_BY.sub("", str(err)).removeprefix("ERROR: ").strip()
    return re.sub(r"^\[[\w:]+\] [^:]*: ", "", msg)  # "[generic] clip: " names what we name


def _classify(err: BaseException) -> tuple[str, bool]:
    """``(reason, transient)`` of a yt-dlp error."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import UnsupportedError

    exc = (getattr(err, "exc_info", None) or (None, None))[1]
    msg = _clean(err)
    if isinstance(exc, UnsupportedError):
        return "not a video: no video found at this URL (yt-dlp: unsupported URL)", False
    if isinstance(exc, HTTPError):
        return f"HTTP error {exc.status} ({exc.reason})", exc.status in (408, 425, 429) \
            or exc.status >= 500
    if isinstance(exc, TransportError):
        unknown_host = re.search(r"Name or service not known|nodename nor servname|No address "
                                 r"associated|getaddrinfo failed", str(exc))
        return (f"unknown host: {_clean(exc)}" if unknown_host else msg), not unknown_host
    if "Requested format is not available" in msg:
        return ("no format matches the limits (--max-height/--min-fps) or yt-dlp's "
                "selection: " + msg), False
    cut_short = re.search(r"Downloaded \d+ bytes, expected \d+|Did not get any data blocks|"
                          r"timed out|Connection reset", msg)
    return msg, bool(cut_short)


# -- the driver --------------------------------------------------------------------------------


@dataclass
class _Job:
    """One fetch run: options, the archive, results, and the lock the workers share."""

    out: Path
    params: dict
    retries: int
    licenses: tuple[str, ...]
    manifest: Manifest
    archive: _Archive
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    seen: dict = field(default_factory=dict)
    done: list = field(default_factory=list)
    resumed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)

    # records -------------------------------------------------------------------------------

    def _append(self, rec: dict) -> None:
        with self.lock:
            self.manifest.append(rec)
            self.archive.add(rec)

    def _base(self, key: str, src: Source) -> dict:
        return {**base_record(STAGE, key, self.params, None), "source": src.url,
                "given_at": src.where, "tags": list(src.tags),
                "section": _section_json(src)}

    def ok(self, key: str, src: Source, **facts) -> None:
        self._append({**self._base(key, src), "status": "ok", **facts})
        with self.lock:
            self.done.append(key)
        log.info("%s -> %s", key, facts.get("file"))

    def fail(self, key: str, src: Source, reason: str, **facts) -> None:
        error = f"{src.url}: {reason}"
        self._append({**self._base(key, src), "status": "failed", "error": error, **facts})
        with self.lock:
            self.failed.append({"item": key, "error": error})
        log.error("%s (%s)", error, src.where)

    def skip(self, key: str, src: Source, reason: str, *, filtered: bool = False,
             **facts) -> None:
        self._append({**self._base(key, src), "status": "skipped", "reason": reason,
                      "filtered": filtered, **facts})
        with self.lock:
            self.skipped.append({"item": key, "reason": reason})
        log.info("skipped %s: %s", src.url, reason)

    def claim(self, key: str, src: Source) -> Source | None:
        """Mark `key` as taken by `src` in this run; the source that took it first if that
        was another one (a duplicate), else None."""
        with self.lock:
            first = self.seen.setdefault(key, src)
        return None if first is src else first

    # planning (main thread) ----------------------------------------------------------------

    def plan(self, src: Source) -> list[Source] | Source | None:
        """Folders -> their files; a finished or duplicate source -> None (recorded); else
        the source, for a worker."""
        key = _key(src)
        first = self.claim(key, src)
        if first is not None:
            self.skip(key, src, f"duplicate of {first.where}")
            return None
        if not src.is_remote and Path(src.url).is_dir():
            return self._folder(src, key)
        rec = self.archive.done(key)
        if rec is not None and (src.is_remote or _same_stat(rec, Path(src.url))):
            with self.lock:
                self.resumed.append(key)
            return None
        last = self.archive.last.get(key)
        if last and last.get("status") == "skipped" and last.get("filtered") \
                and last.get("params") == self.params:
            with self.lock:
                self.skipped.append({"item": key, "reason": last["reason"]})
            return None
        return src

    def _folder(self, src: Source, key: str) -> list[Source] | None:
        files = sorted(f for f in Path(src.url).rglob("*")
                       if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
                       and not any(p.startswith(".") for p in f.relative_to(src.url).parts)
                       and not is_inside(f, self.out))
        if not files:
            self.fail(key, src, f"folder holds no videos ({' '.join(VIDEO_SUFFIXES)})")
            return None
        return [replace(src, url=str(f), origin=f"folder {src.url}", line=None) for f in files]

    # work (worker threads) -----------------------------------------------------------------

    def run(self, src: Source) -> list[Source]:
        """Fetch one source; a playlist returns its entries for the main thread to plan."""
        key = _key(src)
        try:
            if not src.is_remote:
                self._local(key, src)
                return []
            return self._remote_with_retries(key, src)
        except _Cancelled:
            return []
        except (BlursynthError, OSError) as e:  # e.g. disk full while moving the file in
            self.fail(key, src, str(e))
            return []

    def _remote_with_retries(self, key: str, src: Source) -> list[Source]:
        import yt_dlp

        for attempt in range(self.retries + 1):
            try:
                return self._remote(key, src)
            except yt_dlp.utils.DownloadError as e:
                reason, transient = _classify(e)
            if not transient or attempt == self.retries:
                self.fail(key, src, reason, attempts=attempt + 1)
                return []
            delay = _BACKOFF_S * 2 ** attempt
            log.warning("%s: %s; retry %d/%d in %.0f s", src.url, reason, attempt + 1,
                        self.retries, delay)
            if self.stop.wait(delay):
                raise _Cancelled
        return []

    def _options(self, src: Source) -> dict:
        def hook(d: dict) -> None:
            if self.stop.is_set():  # Ctrl-C: abort the transfer, keep the .part for resume
                raise _Cancelled

        opts = {
            "logger": _YtdlpLogger(src.url), "quiet": True, "noprogress": True,
            "format": self.params["format"], "noplaylist": True, "extract_flat": "in_playlist",
            "outtmpl": {"default": str(self.out / PARTIAL_DIR / "%(blursynth_name)s.%(ext)s")},
            "continuedl": True, "retries": self.retries, "fragment_retries": self.retries,
            "progress_hooks": [hook], "ffmpeg_location": _ffmpeg(), "updatetime": False,
        }
        if src.section is not None:
            from yt_dlp.utils import download_range_func
            opts["download_ranges"] = download_range_func(None, [src.section])
            opts["force_keyframes_at_cuts"] = True  # cut exactly, not at the next keyframe
        return opts

    def _remote(self, key: str, src: Source) -> list[Source]:
        import yt_dlp

        with yt_dlp.YoutubeDL(self._options(src)) as ydl:
            info = ydl.extract_info(src.url, download=False)
            if info.get("_type") in ("playlist", "multi_video"):
                return self._entries(key, src, info)
            facts = _site_facts(info)
            if self._already(key, src, facts):
                return []
            if self.licenses and not license_matches(info.get("license"), self.licenses):
                why = (f"licence {info['license']!r}" if info.get("license")
                       else "no licence reported") + \
                    f" does not match --license {' / '.join(self.licenses)}"
                self.skip(key, src, why, filtered=True, **facts)
                return []
            if self.stop.is_set():
                raise _Cancelled
            info["blursynth_name"] = _file_stem(info, normalize_url(src.url), src.section)
            result = ydl.process_ie_result(info, download=True)
        path = Path(result["requested_downloads"][-1]["filepath"])
        self._keep(key, src, path, facts)
        return []

    def _entries(self, key: str, src: Source, info: dict) -> list[Source]:
        base = info.get("webpage_url") or src.url
        urls = [urljoin(base, e.get("url") or e.get("webpage_url") or "")
                for e in info.get("entries") or [] if e]
        if not urls:
            self.skip(key, src, "playlist has no videos")
            return []
        log.info("%s: playlist %r, %d videos", src.url, info.get("title"), len(urls))
        return [replace(src, url=u, origin=f"playlist {src.url}", line=i)
                for i, u in enumerate(urls, 1)]

    def _already(self, key: str, src: Source, facts: dict) -> bool:
        """The same video under another URL: done before, or taken earlier in this run."""
        if facts["extractor"] == "generic":  # generic ids are file names: not unique
            return False
        vid = (facts["extractor"], facts["video_id"], _section_json(src))
        rec = self.archive.done_id(*vid)
        if rec is not None:
            with self.lock:
                self.resumed.append(key)
            return True
        first = self.claim(repr(vid), src)
        if first is not None:
            self.skip(key, src, f"duplicate of {first.where} (same video)", **facts)
            return True
        return False

    def _keep(self, key: str, src: Source, path: Path, facts: dict) -> None:
        """Check a finished download, move it to its final name and record it."""
        try:
            info = probe(path)
        except VideoError as e:
            path.unlink(missing_ok=True)
            return self.fail(key, src, f"not a video: {e.problem}", **facts)
        limit = _over_limits(info, self.params)
        if limit:
            path.unlink(missing_ok=True)
            return self.skip(key, src, limit, filtered=True, **facts)
        ident = file_identity(path)
        final = self.out / path.name
        with atomic_path(final) as tmp:
            os.replace(path, tmp)
        self.ok(key, src, file=final.name, size=ident["size"], sha256=ident["sha256"],
                video=_video_facts(info), **facts)

    def _local(self, key: str, src: Source) -> None:
        p = Path(src.url)
        if not p.exists():
            hint = " (a URL needs http:// or https://)" if re.match(r"[\w.-]+\.\w+/", src.url) \
                else ""
            return self.fail(key, src, f"no such file or folder{hint}")
        if src.section is not None:
            return self.fail(key, src, "sections apply to downloads; a local video is taken "
                                       "whole (flowblur --start/--end picks frames of it)")
        try:
            info = probe(p)
        except VideoError as e:
            return self.fail(key, src, f"not a video: {e.problem}")
        ident = file_identity(p)
        st = p.stat()
        name = _local_name(p, ident["sha256"])
        final = next(iter(sorted(self.out.glob(f"local-{ident['sha256'][:16]}-*"))), None)
        if final is None or not _same_bytes(final, p, ident):
            final = self.out / name
            link_or_copy(p, final)
        self.ok(key, src, file=final.name, size=ident["size"], sha256=ident["sha256"],
                video=_video_facts(info), title=p.stem, license=None,
                source_stat=[st.st_size, st.st_mtime_ns])


# -- small helpers -----------------------------------------------------------------------------


def _key(src: Source) -> str:
    """Manifest key: the normalised URL (or absolute path) plus the section, if any."""
    base = normalize_url(src.url) if src.is_remote else str(Path(src.url).absolute())
    s = src.section
    return base if s is None else f"{base} section={s[0]:g}-{s[1]:g}"


def _site_facts(info: dict) -> dict:
    return {"extractor": info.get("extractor"), "video_id": info.get("id"),
            "title": info.get("title"), "uploader": info.get("uploader") or info.get("channel"),
            "license": info.get("license"), "duration": info.get("duration"),
            "upload_date": info.get("upload_date"), "webpage_url": info.get("webpage_url"),
            "format_id": info.get("format_id")}


def _video_facts(info) -> dict:
    return {"width": info.width, "height": info.height, "fps": info.fps,
            "n_frames": info.n_frames, "duration": info.duration, "codec": info.codec}


def _over_limits(info, params: dict) -> str | None:
    """Why a download breaks --max-height/--min-fps (sites do not always state them)."""
    if params["max_height"] and info.height > params["max_height"]:
        return f"{info.height} px tall, over --max-height {params['max_height']}"
    if params["min_fps"] and info.fps < params["min_fps"]:
        return f"{info.fps:g} fps, under --min-fps {params['min_fps']:g}"
    return None


def _sanitize(text: str, limit: int = 120) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:limit] or "video"


def _file_stem(info: dict, url: str, section: tuple | None) -> str:
    """``<extractor>-<id>[-<urlhash>][-s<start>-<end>]``: stable across runs. A generic id is
    the file name, which two URLs can share: their stems get a hash of the URL."""
    stem = f"{info.get('extractor') or 'site'}-{info.get('id') or 'video'}"
    if info.get("extractor") == "generic":
        stem += "-" + hashlib.sha256(url.encode()).hexdigest()[:8]
    if section is not None:
        stem += f"-s{section[0]:g}-{section[1]:g}"
    return _sanitize(stem, 180)


def _local_name(p: Path, sha256: str) -> str:
    return f"local-{sha256[:16]}-{_sanitize(p.stem, 80)}{p.suffix.lower()}"


def _same_bytes(final: Path, src: Path, ident: dict) -> bool:
    """Whether `final` holds the bytes `ident` describes (a hard link of `src` does)."""
    if not final.is_file() or final.stat().st_size != ident["size"]:
        return False
    return os.path.samefile(final, src) or file_identity(final)["sha256"] == ident["sha256"]


def _same_stat(rec: dict, p: Path) -> bool:
    try:
        st = p.stat()
    except OSError:
        return False
    return rec.get("source_stat") == [st.st_size, st.st_mtime_ns]






def _as_sources(sources: Iterable[Source | str | os.PathLike]) -> list[Source]:
    out = []
    for i, s in enumerate(sources, 1):
        if isinstance(s, Source):
            out.append(s)
        elif isinstance(s, (str, os.PathLike)) and str(s).strip():
            out.append(Source(os.fspath(s).strip(), line=i))
        else:
            raise ParameterError(f"sources: expected URLs, paths or Source objects, got {s!r}")
    return out


def _check_params(max_height, min_fps, workers, retries) -> None:
    checks = [("max_height", max_height, max_height is None or
               (isinstance(max_height, int) and max_height >= 1), "an int >= 1 or None"),
              ("min_fps", min_fps, min_fps is None or
               (isinstance(min_fps, (int, float)) and min_fps > 0), "a number > 0 or None"),
              ("workers", workers, isinstance(workers, int) and workers >= 1, "an int >= 1"),
              ("retries", retries, isinstance(retries, int) and retries >= 0, "an int >= 0")]
    for name, value, ok, expected in checks:
        if not ok or isinstance(value, bool):
            raise ParameterError(f"{name}: expected {expected}, got {value!r}")


def fetch(sources: Iterable[Source | str | os.PathLike], out_dir: str | os.PathLike, *,
          lists: Iterable[str | os.PathLike] = (), max_height: int | None = None,
          min_fps: float | None = None, section: str | tuple | None = None,
          license: str | Sequence[str] | None = None, workers: int = 2, retries: int = 3,
          overwrite: bool = False, show_progress: bool | None = None) -> dict:
    """Fetch source videos into `out_dir`, resumably, with provenance.

    Parameters
    ----------
    sources : iterable of str, path or Source
        URLs (anything yt-dlp reads: video pages, direct links, playlists) and local video
        files or folders (searched recursively for :data:`VIDEO_EXTS`, hidden files skipped).
    out_dir : path
        Output folder: the videos, ``fetch.jsonl`` and the hidden ``.partial/``.
    lists : iterable of path
        List files (:func:`read_list`); a malformed one is recorded as failed and the
        other sources still go.
    max_height : int, optional
        Tallest video to take, pixels (see :func:`format_selector`).
    min_fps : float, optional
        Lowest frame rate to take. A download that breaks a limit the site did not state is
        deleted and recorded as skipped.
    section : str or (start, end), optional
        ``"START-END"`` (seconds or ``[H:]MM:SS``) to download of every URL without its own
        start/end; cut exactly with ffmpeg (re-encoding at the cuts).
    license : str or sequence of str, optional
        Keep only URLs whose reported licence matches (:func:`license_matches`; ``"cc"``
        for Creative Commons). Videos that report none are skipped. Local files are not
        filtered.
    workers : int
        Sources fetched at the same time (threads, each with its own ``YoutubeDL``).
    retries : int
        Retries of a transient error: yt-dlp's in-place retries of a broken transfer, then
        blursynth's retries of the whole source after 2, 4, 8, ... s.
    overwrite : bool
        Forget the manifest and the partial downloads and fetch everything again (files
        are replaced atomically as they arrive).
    show_progress : bool or None
        Progress bar over sources (None: when stderr is a terminal and not quiet).

    Returns
    -------
    dict
        ``out``, ``manifest``; ``done`` (item keys fetched now), ``resumed`` (already there),
        ``skipped`` (``{"item", "reason"}``: duplicates, filters), ``failed``
        (``{"item", "error"}``), ``seconds``.

    Raises
    ------
    ParameterError
        Invalid option values (before anything is fetched).
    OutputError
        The manifest cannot be written.
    KeyboardInterrupt
        On Ctrl-C, after the workers stopped: finished videos are recorded, interrupted
        downloads stay in ``.partial/`` and resume on the next run.

    Notes
    -----
    Item keys are the URL normalised by :func:`normalize_url` (plus ``section=S-E``), or the
    absolute path of a local file. A re-run skips keys whose ``ok`` record and file exist
    (and, for sites with real ids, the same video under another URL) without any request;
    a local file whose size and mtime are unchanged is not hashed again. yt-dlp's own
    ``download_archive`` is not used: it keys by site id only, and the generic extractor's
    id is the file name, which different URLs share.
    """
    t0 = time.perf_counter()
    _check_params(max_height, min_fps, workers, retries)
    if isinstance(section, str):
        section = parse_section(section)
    if section is not None:
        section = (None if section[0] is None else float(section[0]),
                   None if section[1] is None else float(section[1]))
        check_order(*section, "section")
    licenses = tuple([license] if isinstance(license, str) else license or ())
    out = Path(out_dir)
    srcs = _as_sources(sources)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            (out / MANIFEST).unlink(missing_ok=True)
            shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)
    except OSError as e:
        raise output_error(e, out) from e
    # JSON types only: compared with the params of earlier records read back from the file
    params = {"format": format_selector(max_height, min_fps), "max_height": max_height,
              "min_fps": min_fps, "section": None if section is None else list(section),
              "license": list(licenses)}
    manifest = Manifest(out / MANIFEST)
    job = _Job(out, params, retries, licenses, manifest, _Archive(manifest.records(), out))
    for path in lists:
        try:
            srcs += read_list(path)
        except InputFileError as e:
            job.fail(str(Path(path).absolute()), Source(str(path), origin=str(path)), e.problem)
    if section is not None:
        srcs = [s if s.section is not None or not s.is_remote
                else replace(s, start=section[0], end=section[1]) for s in srcs]
    _drive(job, srcs, workers, show_progress)
    with contextlib.suppress(OSError):
        (out / PARTIAL_DIR).rmdir()  # only when empty: partial downloads stay for resume
    return {"out": str(out), "manifest": str(manifest.path), "done": job.done,
            "resumed": job.resumed, "skipped": job.skipped, "failed": job.failed,
            "seconds": round(time.perf_counter() - t0, 3)}


def _drive(job: _Job, sources: list[Source], workers: int, show_progress: bool | None) -> None:
    """Plan sources in this thread, run them on `workers` threads; Ctrl-C stops the workers."""
    pending = deque(sources)
    bar = progress(total=len(sources), desc="fetch", unit="video",
                   disable=None if show_progress is None else not show_progress)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="fetch")
    running: dict[Future, Source] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                planned = job.plan(pending.popleft())
                if isinstance(planned, Source):
                    running[pool.submit(job.run, planned)] = planned
                    continue
                if planned:  # a folder's files
                    pending.extendleft(reversed(planned))
                    bar.total += len(planned)
                bar.update(1)
            finished, _ = wait(running, return_when=FIRST_COMPLETED) if running else ((), ())
            for f in finished:
                del running[f]
                entries = f.result()
                pending.extendleft(reversed(entries))
                bar.total += len(entries)
                bar.update(1)
    except BaseException:
        job.stop.set()  # workers abort their transfers at the next progress hook
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()


