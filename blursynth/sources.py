"""Where source videos come from: URLs and local paths, and the list files that name them.

A list is ``.txt`` (one URL or path per line), ``.csv`` (a header ``url[,start,end,tags]``) or
``.yaml`` (a list of URLs or ``{url, start, end, tags}`` mappings); ``#`` starts a comment and
times are seconds or ``[H:]MM:SS``. :func:`normalize_url` is the form used to spot duplicates.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import InputFileError, ParameterError

__all__ = ["Source", "read_list", "parse_time", "parse_section", "check_order", "normalize_url"]

_LIST_COLUMNS = ("url", "start", "end", "tags")
_YOUTUBE_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com"}
# Parameters that change where a video starts playing or who shared it, not what it is.
_YOUTUBE_NOISE = {"t", "start", "feature", "si", "pp", "ab_channel", "index"}


@dataclass(frozen=True)
class Source:
    """One thing to fetch: a URL, or a local video file or folder.

    Attributes
    ----------
    url : str
        A URL (anything with ``://``) or a local path.
    start, end : float or None
        Section to download, seconds from the start of the video (URLs only); None: from
        the start / to the end.
    tags : tuple of str
        Free labels, copied into the manifest records.
    line : int or None
        Line of the list file (or position on the command line) it came from, for messages.
    origin : str or None
        The list file (or ``"playlist URL"``, ``"folder PATH"``) it came from; None for the
        command line.
    """

    url: str
    start: float | None = None
    end: float | None = None
    tags: tuple[str, ...] = ()
    line: int | None = None
    origin: str | None = None

    @property
    def is_remote(self) -> bool:
        """Whether this is a URL (else a local path)."""
        return "://" in self.url

    @property
    def where(self) -> str:
        """Where the source was given, for messages: ``line 3 of list.txt``, ``argument 2``,
        ``entry 4 of playlist URL``."""
        if self.origin is None:
            return f"argument {self.line}" if self.line else repr(self.url)
        if not self.line:
            return self.origin
        return f"{'entry' if self.origin.startswith('playlist ') else 'line'} {self.line} " \
               f"of {self.origin}"

    @property
    def section(self) -> tuple[float, float] | None:
        """``(start, end)`` in seconds (end ``inf`` when open), or None for the whole video."""
        if self.start is None and self.end is None:
            return None
        return (self.start or 0.0, float("inf") if self.end is None else self.end)


def parse_time(value: object) -> float:
    """Seconds from ``90``, ``"90.5"``, ``"1:30"`` (M:SS) or ``"01:02:03.5"`` (H:MM:SS).

    Parameters
    ----------
    value : str, int or float
        The time.

    Returns
    -------
    seconds : float
        Non-negative.

    Raises
    ------
    ParameterError
        Not a time, or negative.

    Examples
    --------
    >>> parse_time("1:02:03.5"), parse_time(90)
    (3723.5, 90.0)
    """
    text = str(value).strip()
    m = re.fullmatch(r"(?:(\d+):)??(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)", text)
    if isinstance(value, bool) or not m:
        raise ParameterError(f"time: expected seconds or [H:]MM:SS, got {value!r}")
    h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
    if m.group(1) is not None or m.group(2) is not None:
        if s >= 60 or (m.group(1) is not None and mnt >= 60):
            raise ParameterError(f"time: minutes and seconds must be < 60, got {value!r}")
    return h * 3600 + mnt * 60 + s


def parse_section(text: str) -> tuple[float | None, float | None]:
    """``"START-END"`` -> ``(start, end)`` seconds; either side may be empty (``"30-"``).

    Raises
    ------
    ParameterError
        Not ``START-END`` with valid times, or ``END <= START``.

    Examples
    --------
    >>> parse_section("1:00-1:30.5"), parse_section("10-")
    ((60.0, 90.5), (10.0, None))
    """
    a, sep, b = str(text).strip().partition("-")
    if not sep or not (a.strip() or b.strip()):
        raise ParameterError(f"section: expected START-END (seconds or [H:]MM:SS), got {text!r}")
    start = parse_time(a) if a.strip() else None
    end = parse_time(b) if b.strip() else None
    check_order(start, end, f"section {text!r}")
    return start, end


def check_order(start: float | None, end: float | None, what: str) -> None:
    if start is not None and end is not None and end <= start:
        raise ParameterError(f"{what}: end ({end:g} s) must be after start ({start:g} s)")


def _list_source(value: object, start: object, end: object, tags: object, line: int,
                 origin: Path) -> Source:
    """One validated Source of a list file; ParameterError ``"line N: ..."`` on bad fields."""
    try:
        return _make_source(value, start, end, tags, line, origin)
    except ParameterError as e:
        raise ParameterError(f"line {line}: {e}") from None


def _make_source(value: object, start: object, end: object, tags: object, line: int,
                 origin: Path) -> Source:
    url = str(value).strip() if isinstance(value, (str, os.PathLike)) else ""
    if not url:
        raise ParameterError(f"expected a URL or path, got {value!r}")
    if "://" in url and re.search(r"\s", url):
        raise ParameterError(f"expected one URL, got {url!r} (a URL has no spaces)")
    if "://" not in url:  # a local path is relative to the list file, like a playlist's
        url = str(origin.parent / Path(url).expanduser())
    t0 = None if start in (None, "") else parse_time(start)
    t1 = None if end in (None, "") else parse_time(end)
    check_order(t0, t1, "start/end")
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[;,\s]+", tags) if t]
    elif tags is None:
        tags = []
    elif not isinstance(tags, list) or not all(isinstance(t, (str, int, float)) for t in tags):
        raise ParameterError(f"tags: expected a list of words or a string, got {tags!r}")
    return Source(url, t0, t1, tuple(str(t) for t in tags), line, str(origin))


def _read_txt(text: str, path: Path) -> list[Source]:
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"\s#", raw, maxsplit=1)[0].strip()  # "URL  # comment"
        if line and not line.startswith("#"):
            out.append(_list_source(line, None, None, None, n, path))
    return out


def _read_csv(text: str, path: Path) -> list[Source]:
    rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(text)), 1)
            if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        return []
    header_line, header = rows[0]
    header = [h.strip().lower() for h in header]
    unknown = [h for h in header if h not in _LIST_COLUMNS]
    if "url" not in header or unknown or len(set(header)) != len(header):
        raise ParameterError(
            f"line {header_line}: expected a header naming the columns url[,start,end,tags], "
            f"got {','.join(header)!r}")
    out = []
    for n, row in rows[1:]:
        if len(row) > len(header):
            raise ParameterError(f"line {n}: {len(row)} cells, the header has {len(header)}")
        cells = dict(zip(header, (c.strip() for c in row)))
        out.append(_list_source(cells.get("url", ""), cells.get("start"), cells.get("end"),
                                cells.get("tags"), n, path))
    return out


def _read_yaml(text: str, path: Path) -> list[Source]:
    import yaml  # only list files need it

    loader = yaml.SafeLoader(text)
    try:  # compose first: the nodes keep the line numbers the messages need
        root = loader.get_single_node()
        data = None if root is None else loader.construct_document(root)
    except yaml.YAMLError as e:
        raise ParameterError(f"not valid YAML: {e}") from None
    finally:
        loader.dispose()
    if data is None:
        return []
    if not isinstance(data, list):
        raise ParameterError(f"expected a list of URLs or {{url, start, end, tags}} mappings, "
                             f"got a {type(data).__name__}")
    out = []
    for node, item in zip(root.value, data):
        n = node.start_mark.line + 1
        if not isinstance(item, dict):
            out.append(_list_source(item, None, None, None, n, path))
            continue
        if set(map(str, item)) - set(_LIST_COLUMNS) or "url" not in item:
            raise ParameterError(f"line {n}: expected keys url[, start, end, tags], got "
                                 f"{', '.join(map(str, item)) or 'none'}")
        out.append(_list_source(item["url"], item.get("start"), item.get("end"),
                                item.get("tags"), n, path))
    return out


def read_list(path: str | os.PathLike) -> list[Source]:
    """Read a list of sources: text, CSV or YAML (chosen by the extension).

    Parameters
    ----------
    path : str or os.PathLike
        ``.csv``: a header naming the columns (``url`` required; ``start``, ``end``, ``tags``
        optional; tags separated by ``;``, ``,`` or spaces). ``.yaml``/``.yml``: a list whose
        items are URL strings or mappings with the same keys. Anything else: text, one URL or
        path per line. Everywhere blank lines and lines starting with ``#`` are skipped;
        times are seconds or ``[H:]MM:SS``; relative local paths are relative to the list
        file's folder.

    Returns
    -------
    sources : list of Source
        In file order, duplicates kept (:func:`fetch` reports them), each with its line.

    Raises
    ------
    InputFileError
        The file cannot be read, or any line is malformed (``"<path>: line N: ..."``): a
        broken list is rejected whole, before anything is fetched, so a typo can never drop
        one video silently while the rest looks complete.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputFileError(p, "no such list file") from None
    except IsADirectoryError:
        raise InputFileError(p, "expected a list file, got a directory") from None
    except UnicodeDecodeError:
        raise InputFileError(p, "expected a UTF-8 text, CSV or YAML list") from None
    except OSError as e:
        raise InputFileError(p, f"cannot read: {e.strerror or e}") from None
    reader = {".csv": _read_csv, ".yaml": _read_yaml, ".yml": _read_yaml}.get(
        p.suffix.lower(), _read_txt)
    try:
        return reader(text, p)
    except ParameterError as e:
        raise InputFileError(p, str(e)) from None


def normalize_url(url: str) -> str:
    """The form of a URL used to spot duplicates and as the manifest key.

    Whitespace is stripped; YouTube links lose the parameters that only choose where playback
    starts or who shared them (``t``, ``si``, ``feature``, ...) and ``youtu.be/ID`` becomes
    ``https://www.youtube.com/watch?v=ID``. Other URLs are kept as they are.

    Examples
    --------
    >>> normalize_url(" https://youtu.be/abc?t=42 ")
    'https://www.youtube.com/watch?v=abc'
    """
    url = url.strip()
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host == "youtu.be" and parts.path.strip("/"):
        query = [("v", parts.path.strip("/"))] + parse_qsl(parts.query)
        parts = urlsplit("https://www.youtube.com/watch")._replace(query=urlencode(query))
    elif host not in _YOUTUBE_HOSTS:
        return url
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in _YOUTUBE_NOISE]
    return urlunsplit(("https", "www.youtube.com", parts.path, urlencode(query), ""))
