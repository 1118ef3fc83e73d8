"""fetch: real yt-dlp against a local HTTP server on 127.0.0.1 serving files the tests made."""
import hashlib
import http.server
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from blursynth import fetch as fetch_mod
from blursynth.errors import InputFileError, ParameterError
from blursynth.fetch import MANIFEST, PARTIAL_DIR, fetch, format_selector, license_matches
from blursynth.sources import Source, normalize_url, parse_section, parse_time, read_list
from blursynth.manifest import read_manifest
from blursynth.scenes import make_scene
from blursynth.video import probe, write_video
from blursynth_cli.main import blursynth as cli

SEED_LIST = Path(__file__).parents[1] / "examples" / "seed_videos.txt"
HTML = b"<!DOCTYPE html><html><head><title>hello</title></head><body>no video</body></html>"

pytestmark = pytest.mark.usefixtures("restore_logger")


# -- the server ------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> (bytes, content type)) with Range support; a path in
    ``server.cut`` has its whole-file responses cut off after that many bytes; a path in
    ``server.slow`` pauses after the first 8 kB of a download (setting ``server.sent``)
    until ``server.go`` is set."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        if self.path not in srv.files:
            self.send_error(404, "File not found")
            return
        data, ctype = srv.files[self.path]
        start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        body = data[start:]
        if self.path in srv.cut and not rng:
            body = body[:srv.cut[self.path]]  # then the connection closes: a cut download
        try:
            if self.path in srv.slow:
                self._send_slowly(body)
            else:
                self.wfile.write(body)
        except ConnectionError:  # the client gave up (yt-dlp's peek at the start, Ctrl-C)
            pass

    def _send_slowly(self, body: bytes) -> None:
        srv = self.server
        self.wfile.write(body[:8192])
        self.wfile.flush()
        if [p for p, _ in srv.requests].count(self.path) > 1:  # the download, not the peek
            srv.sent.set()
            srv.go.wait(10)
        for i in range(8192, len(body), 8192):
            self.wfile.write(body[i:i + 8192])
            self.wfile.flush()
            time.sleep(0.01)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    frames = make_scene("translation", (64, 96), 3.0).frames(30)
    write_video(d / "clip.mp4", frames, 30, quality=23)
    write_video(d / "other.mp4", frames[::-1], 25, quality=23)
    write_video(d / "big.mp4", frames, 30)  # lossless: large enough to stop midway
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.dir = d
    srv.files = {
        "/clip.mp4": ((d / "clip.mp4").read_bytes(), "video/mp4"),
        "/other.mp4": ((d / "other.mp4").read_bytes(), "video/mp4"),
        "/page.html": (HTML, "text/html; charset=utf-8"),
        "/fake.mp4": (HTML * 20, "video/mp4"),  # a "video" that is a web page
        "/big.mp4": ((d / "big.mp4").read_bytes(), "video/mp4"),
    }
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def srv(server):
    """The server with an empty request log and no cut or slow paths."""
    server.requests, server.cut, server.slow = [], {}, set()
    server.sent, server.go = threading.Event(), threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def _records(out: Path) -> list[dict]:
    return read_manifest(out / MANIFEST)


def _final_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name != MANIFEST)


# -- downloads -------------------------------------------------------------------------------


def test_download_records_the_facts_of_the_served_files(srv, tmp_path):
    urls = [srv.url + "/clip.mp4", srv.url + "/other.mp4"]
    r = fetch(urls, tmp_path / "v")
    assert (len(r["done"]), r["failed"], r["skipped"], r["resumed"]) == (2, [], [], [])
    recs = {rec["source"]: rec for rec in _records(tmp_path / "v")}
    assert _final_files(tmp_path / "v") == sorted(rec["file"] for rec in recs.values())
    for url, name in zip(urls, ("clip.mp4", "other.mp4")):
        rec, served = recs[url], srv.dir / name
        assert rec["status"] == "ok" and rec["extractor"] == "generic"
        assert rec["video_id"] == Path(name).stem and rec["title"] == Path(name).stem
        assert rec["sha256"] == hashlib.sha256(served.read_bytes()).hexdigest()
        assert rec["size"] == served.stat().st_size
        info = probe(served)
        assert rec["video"] == {"width": info.width, "height": info.height, "fps": info.fps,
                                "n_frames": info.n_frames, "duration": info.duration,
                                "codec": info.codec}
        assert rec["video"]["fps"] == (30 if name == "clip.mp4" else 25)
        assert rec["license"] is None and rec["time"]
        assert (tmp_path / "v" / rec["file"]).read_bytes() == served.read_bytes()


def test_rerun_skips_via_the_archive_without_any_request(srv, tmp_path):
    urls = [srv.url + "/clip.mp4", srv.url + "/other.mp4"]
    fetch(urls, tmp_path)
    n = len(_records(tmp_path))
    srv.requests.clear()
    r = fetch(urls, tmp_path)
    assert (r["done"], len(r["resumed"]), r["failed"]) == ([], 2, [])
    assert srv.requests == []
    assert len(_records(tmp_path)) == n  # nothing new to record
    # a deleted video is fetched again
    (tmp_path / _records(tmp_path)[0]["file"]).unlink()
    r = fetch(urls, tmp_path)
    assert (len(r["done"]), len(r["resumed"])) == (1, 1)


def test_a_download_cut_off_midway_resumes_with_a_range_request(srv, tmp_path):
    url, data = srv.url + "/clip.mp4", srv.files["/clip.mp4"][0]
    srv.cut["/clip.mp4"] = 2000
    r = fetch([url], tmp_path, retries=0)
    assert len(r["failed"]) == 1 and "Downloaded 2000 bytes" in r["failed"][0]["error"]
    parts = list((tmp_path / PARTIAL_DIR).glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 2000
    assert _final_files(tmp_path) == [PARTIAL_DIR]  # no final file
    srv.cut.clear()
    r = fetch([url], tmp_path, retries=0)
    assert len(r["done"]) == 1 and r["failed"] == []
    assert ("/clip.mp4", "bytes=2000-") in srv.requests
    rec = _records(tmp_path)[-1]
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert _final_files(tmp_path) == [rec["file"]]  # .partial/ removed once empty


def test_a_broken_transfer_is_retried_in_place_by_yt_dlp(srv, tmp_path):
    srv.cut["/clip.mp4"] = 2000  # only whole-file responses are cut: the retry resumes
    r = fetch([srv.url + "/clip.mp4"], tmp_path, retries=1)
    assert len(r["done"]) == 1
    assert ("/clip.mp4", "bytes=2000-") in srv.requests


def test_404_fails_clearly_without_retries_and_the_rest_goes_on(srv, tmp_path, capfd):
    r = fetch([srv.url + "/missing.mp4", srv.url + "/clip.mp4"], tmp_path, retries=3)
    assert len(r["done"]) == 1 and len(r["failed"]) == 1
    err = r["failed"][0]["error"]
    assert err == f"{srv.url}/missing.mp4: HTTP error 404 (File not found)"
    assert [p for p, _ in srv.requests].count("/missing.mp4") == 1  # not retried
    rec = next(x for x in _records(tmp_path) if x["status"] == "failed")
    assert rec["attempts"] == 1 and rec["given_at"] == "argument 1"
    assert "ERROR" not in capfd.readouterr().err  # yt-dlp's messages go through logging


def test_unreachable_host_is_retried_with_backoff_then_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_mod, "_BACKOFF_S", 0.01)
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = fetch([f"http://127.0.0.1:{port}/clip.mp4"], tmp_path, retries=2)
    assert "Connection refused" in r["failed"][0]["error"]
    assert _records(tmp_path)[-1]["attempts"] == 3


@pytest.mark.parametrize("path", ["/page.html", "/fake.mp4"])
def test_not_a_video_fails_and_leaves_nothing_under_a_final_name(srv, tmp_path, path):
    r = fetch([srv.url + path], tmp_path)
    assert r["done"] == [] and len(r["failed"]) == 1
    assert "not a video" in r["failed"][0]["error"]
    assert _final_files(tmp_path) == []  # not even .partial/


def test_duplicates_are_skipped_naming_the_first(srv, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"# videos\n{srv.url}/clip.mp4\n\n  {srv.url}/clip.mp4  \n")
    r = fetch([srv.url + "/other.mp4", srv.url + "/other.mp4"], tmp_path / "v", lists=[lst])
    assert len(r["done"]) == 2
    assert sorted(s["reason"] for s in r["skipped"]) == [
        "duplicate of argument 1", f"duplicate of line 2 of {lst}"]
    assert [p for p, _ in srv.requests].count("/clip.mp4") == 2  # extract + download, once


def test_playlist_entries_are_fetched_and_deduplicated(srv, tmp_path):
    feed = ('<?xml version="1.0"?><rss version="2.0"><channel><title>clips</title>'
            + "".join(f'<item><title>{n}</title><enclosure url="{srv.url}/{n}.mp4" '
                      f'type="video/mp4" length="1"/></item>' for n in ("clip", "other"))
            + "</channel></rss>")
    srv.files["/feed.rss"] = (feed.encode(), "application/rss+xml")
    try:
        r = fetch([srv.url + "/feed.rss", srv.url + "/clip.mp4"], tmp_path, workers=2)
    finally:
        del srv.files["/feed.rss"]
    assert sorted(r["done"]) == [srv.url + "/clip.mp4", srv.url + "/other.mp4"]
    assert r["skipped"] == [{"item": srv.url + "/clip.mp4", "reason": "duplicate of argument 2"}]
    other = next(x for x in _records(tmp_path) if x["source"].endswith("/other.mp4"))
    assert other["given_at"] == f"entry 2 of playlist {srv.url}/feed.rss"


def test_license_filter_skips_a_video_without_licence(srv, tmp_path):
    r = fetch([srv.url + "/clip.mp4"], tmp_path, license="cc")
    assert r["done"] == [] and r["failed"] == []
    assert r["skipped"][0]["reason"] == "no licence reported does not match --license cc"
    assert _final_files(tmp_path) == []
    srv.requests.clear()
    r = fetch([srv.url + "/clip.mp4"], tmp_path, license="cc")  # same filter: known answer
    assert len(r["skipped"]) == 1 and srv.requests == []


def test_min_fps_the_site_did_not_state_is_checked_on_the_file(srv, tmp_path):
    r = fetch([srv.url + "/clip.mp4"], tmp_path, min_fps=50)
    assert r["skipped"][0]["reason"] == "30 fps, under --min-fps 50"
    assert _final_files(tmp_path) == []


def test_sections_from_a_list_and_the_option_are_cut_with_ffmpeg(srv, tmp_path):
    lst = tmp_path / "l.csv"
    lst.write_text(f"url,start,end,tags\n{srv.url}/clip.mp4,0.2,0.6,pan;test\n")
    r = fetch([srv.url + "/other.mp4"], tmp_path / "v", lists=[lst], section="0:00-0:00.4")
    assert sorted(r["done"]) == [f"{srv.url}/clip.mp4 section=0.2-0.6",
                                 f"{srv.url}/other.mp4 section=0-0.4"]
    recs = {x["source"]: x for x in _records(tmp_path / "v")}
    clip, other = recs[srv.url + "/clip.mp4"], recs[srv.url + "/other.mp4"]
    assert clip["section"] == [0.2, 0.6] and clip["file"].endswith("-s0.2-0.6.mp4")
    assert clip["tags"] == ["pan", "test"] and clip["given_at"] == f"line 2 of {lst}"
    assert clip["video"]["n_frames"] == 12 and clip["video"]["duration"] == pytest.approx(0.4)
    assert other["video"]["n_frames"] == 10 and other["video"]["fps"] == 25


def test_ctrl_c_keeps_the_part_file_and_the_next_run_resumes(srv, tmp_path):
    srv.slow.add("/big.mp4")
    url, data = srv.url + "/big.mp4", srv.files["/big.mp4"][0]
    main = threading.main_thread().ident

    def ctrl_c():  # a real SIGINT: _thread.interrupt_main would not wake the main thread
        srv.sent.wait(10)
        signal.pthread_kill(main, signal.SIGINT)
        time.sleep(0.3)
        srv.go.set()  # the worker sees the next bytes, and the stop, in its progress hook

    # Python's own handler, installed again at the C level: a native library loaded by an
    # earlier test in this process may have put its own in place (the test failed only in
    # fresh clones, where numba compiles with LLVM in the test process; not understood further).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=ctrl_c, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            fetch([url], tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    parts = list((tmp_path / PARTIAL_DIR).glob("*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < len(data)
    assert _final_files(tmp_path) == [PARTIAL_DIR]
    assert not (tmp_path / MANIFEST).exists()  # nothing finished, nothing recorded
    size = parts[0].stat().st_size
    srv.slow.clear()
    r = fetch([url], tmp_path)
    assert len(r["done"]) == 1 and ("/big.mp4", f"bytes={size}-") in srv.requests
    assert (tmp_path / _records(tmp_path)[-1]["file"]).read_bytes() == data


# -- local sources ---------------------------------------------------------------------------


def test_local_file_and_folder_are_linked_with_their_hash(server, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.mp4").write_bytes((server.dir / "clip.mp4").read_bytes())
    (src / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    r = fetch([src / "a.mp4"], out)
    sha = hashlib.sha256((src / "a.mp4").read_bytes()).hexdigest()
    rec = _records(out)[-1]
    assert rec["sha256"] == sha and rec["file"] == f"local-{sha[:16]}-a.mp4"
    assert os.path.samefile(out / rec["file"], src / "a.mp4")  # a hard link, not a copy
    assert rec["video"]["fps"] == 30 and r["done"] == [str((src / "a.mp4").absolute())]
    r = fetch([src], out)  # the folder: its one video is already there
    assert (r["done"], len(r["resumed"])) == ([], 1)
    (src / "b.mp4").write_bytes((src / "a.mp4").read_bytes())  # same content, new name
    r = fetch([src], out)
    assert len(r["done"]) == 1 and _final_files(out) == [f"local-{sha[:16]}-a.mp4"]


def test_local_file_is_copied_where_it_cannot_be_linked(server, tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(fetch_mod.os, "link", no_link)
    r = fetch([server.dir / "other.mp4"], tmp_path)
    f = tmp_path / _records(tmp_path)[-1]["file"]
    assert len(r["done"]) == 1 and not os.path.samefile(f, server.dir / "other.mp4")
    assert f.read_bytes() == (server.dir / "other.mp4").read_bytes()


def test_missing_local_path_fails_with_a_hint(tmp_path):
    r = fetch(["www.example.com/clip.mp4"], tmp_path)
    assert r["failed"][0]["error"] == ("www.example.com/clip.mp4: no such file or folder "
                                       "(a URL needs http:// or https://)")


# -- list files ------------------------------------------------------------------------------


def test_seed_list_parses_to_32_sources():
    sources = read_list(SEED_LIST)
    assert len(sources) == 32 and all(s.is_remote for s in sources)
    assert sum("playlist?list=" in s.url for s in sources) == 3
    assert len({normalize_url(s.url) for s in sources}) == 32
    assert sources[0].line == 6 and sources[0].url.endswith("nZQQUShfdEs")


def test_text_csv_and_yaml_lists(tmp_path):
    (tmp_path / "a.txt").write_text("\ufeff# c\n\nhttp://h/x.mp4   # nice pan\nclips/y.mp4\n")
    assert [(s.url, s.line) for s in read_list(tmp_path / "a.txt")] == [
        ("http://h/x.mp4", 3), (str(tmp_path / "clips/y.mp4"), 4)]
    (tmp_path / "b.csv").write_text("url,start,end,tags\nhttp://h/x.mp4,1:30,01:02:03.5,"
                                    "pan;city\n\nhttp://h/z.mp4,,,\n")
    a, b = read_list(tmp_path / "b.csv")
    assert (a.start, a.end, a.tags, a.line) == (90.0, 3723.5, ("pan", "city"), 2)
    assert (b.section, b.line) == (None, 4)
    (tmp_path / "c.yaml").write_text("- http://h/x.mp4\n- url: http://h/z.mp4\n  start: 10\n"
                                     "  end: '0:20'\n  tags: [walk]\n")
    a, b = read_list(tmp_path / "c.yaml")
    assert (a.url, b.section, b.tags, b.line) == ("http://h/x.mp4", (10.0, 20.0), ("walk",), 2)


@pytest.mark.parametrize("name, text, problem", [
    ("l.csv", "link,start\nhttp://h/x.mp4,1\n", "line 1: expected a header naming the columns"),
    ("l.csv", "url,start\nhttp://h/x.mp4,soon\n", "line 2: time: expected seconds"),
    ("l.csv", "url,start,end\nhttp://h/x.mp4,20,10\n", "line 2: start/end: end (10 s) must be"),
    ("l.yaml", "url: http://h/x.mp4\n", "expected a list of URLs"),
    ("l.yaml", "- http://h/x.mp4\n- {url: http://h/y.mp4, speed: 3}\n",
     "line 2: expected keys url[, start, end, tags], got url, speed"),
    ("l.yaml", "- [unclosed\n", "not valid YAML"),
    ("l.txt", "http://h/x.mp4 http://h/y.mp4\n", "line 1: expected one URL"),
])
def test_malformed_list_files_are_rejected_with_the_line(tmp_path, name, text, problem):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputFileError, match=re.escape(problem)) as e:
        read_list(tmp_path / name)
    assert e.value.path == str(tmp_path / name)


def test_a_malformed_list_is_recorded_and_the_rest_goes_on(server, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("videos: []\n")
    r = fetch([server.dir / "clip.mp4"], tmp_path / "out", lists=[bad, tmp_path / "none.txt"])
    assert len(r["done"]) == 1
    assert [f["error"] for f in r["failed"]] == [
        f"{bad}: expected a list of URLs or {{url, start, end, tags}} mappings, got a dict",
        f"{tmp_path / 'none.txt'}: no such list file"]


# -- pure helpers ----------------------------------------------------------------------------


def test_format_selector_prefers_h264_video_only():
    assert format_selector() == "bv[vcodec^=avc1][ext=mp4]/bv/bv*"
    assert format_selector(720, 50) == ("bv[vcodec^=avc1][ext=mp4][height<=?720][fps>=?50]/"
                                        "bv[height<=?720][fps>=?50]/bv*[height<=?720][fps>=?50]")


def test_licence_matching():
    yt = "Creative Commons Attribution license (reuse allowed)"
    for wanted in ("cc", "CC", "creative commons", "attribution", ["mit", "cc"]):
        assert license_matches(yt, wanted)
    assert license_matches("by-sa", "cc") and license_matches("CC0", "creative commons")
    assert not license_matches("Standard YouTube License", "cc")
    assert not license_matches(None, "cc") and not license_matches("", "cc")


def test_urls_times_and_sections():
    assert normalize_url(" https://www.youtube.com/watch?v=abc&t=42s&list=PL1 ") == \
        "https://www.youtube.com/watch?v=abc&list=PL1"
    assert normalize_url("https://youtu.be/abc?si=x") == "https://www.youtube.com/watch?v=abc"
    assert normalize_url("http://h/x.mp4?t=3") == "http://h/x.mp4?t=3"
    assert parse_time("1:02:03.5") == 3723.5 and parse_time(" 7.25 ") == 7.25
    assert parse_section("1:00-1:30") == (60.0, 90.0) and parse_section("-5") == (None, 5.0)
    for bad in ("1:60", "a", "-1", "1:2:3:4"):
        with pytest.raises(ParameterError):
            parse_time(bad)
    for bad in ("10", "20-10", "-"):
        with pytest.raises(ParameterError):
            parse_section(bad)
    assert Source("http://h/x", 5).section == (5.0, float("inf"))


def test_invalid_options_are_rejected_before_anything_happens(tmp_path):
    for kw in ({"workers": 0}, {"retries": -1}, {"max_height": 0}, {"min_fps": 0},
               {"section": "9-3"}):
        with pytest.raises(ParameterError):
            fetch(["http://127.0.0.1:9/x.mp4"], tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


# -- command line ----------------------------------------------------------------------------


def test_cli_summary_and_exit_status(srv, tmp_path):
    out = tmp_path / "v"
    r = CliRunner().invoke(cli, ["-q", "fetch", srv.url + "/clip.mp4", "--out", str(out),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "fetch: 1 downloaded, 0 already there, 0 skipped, 0 failed" in r.output
    r = CliRunner().invoke(cli, ["-q", "fetch", srv.url + "/clip.mp4", srv.url + "/gone.mp4",
                                 "--out", str(out), "--retries", "0", "--section", "x"])
    assert r.exit_code == 2 and "--section" in r.output
    r = CliRunner().invoke(cli, ["-q", "fetch", srv.url + "/clip.mp4", srv.url + "/gone.mp4",
                                 "--out", str(out), "--retries", "0"])
    assert r.exit_code == 1
    assert "0 downloaded, 1 already there, 0 skipped, 1 failed" in r.output
    assert f"failed: {srv.url}/gone.mp4: HTTP error 404" in r.output
    r = CliRunner().invoke(cli, ["fetch", "--out", str(out)])
    assert r.exit_code == 2 and "give URLs or paths" in r.output
    assert json.loads((out / MANIFEST).read_text().splitlines()[0])["stage"] == "fetch"
