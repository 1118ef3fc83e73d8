import json
import logging

import numpy as np
import pytest

from blursynth.errors import InputFileError, ParameterError
from blursynth.manifest import Manifest, base_record, read_manifest, record_failure, versions


def rec(item, status="ok", **kw):
    return {"item": item, "status": status, **kw}


def test_round_trip_with_numpy_types(tmp_path):
    m = Manifest(tmp_path / "sub" / "m.jsonl")
    m.append(rec("a", n=np.int64(3), x=np.float32(0.5), flag=np.bool_(True),
                 arr=np.arange(3, dtype=np.uint8), shape=(2, 3), path=tmp_path / "f.png",
                 nested={"k": np.float64(1.25), 7: "int key"}))
    m.append(rec("b", status="failed", error="boom"))
    out = read_manifest(m.path)
    assert out == [
        {"item": "a", "status": "ok", "n": 3, "x": 0.5, "flag": True, "arr": [0, 1, 2],
         "shape": [2, 3], "path": str(tmp_path / "f.png"),
         "nested": {"k": 1.25, "7": "int key"}},
        {"item": "b", "status": "failed", "error": "boom"},
    ]
    assert m.records() == out
    raw = m.path.read_text().splitlines()
    assert len(raw) == 2
    # One compact, key-sorted line per record.
    assert raw[1] == '{"error":"boom","item":"b","status":"failed"}'
    assert type(out[0]["n"]) is int and type(out[0]["flag"]) is bool


def test_rejects_nan_and_bad_records(tmp_path):
    m = Manifest(tmp_path / "m.jsonl")
    with pytest.raises(ParameterError, match="strict JSON"):
        m.append(rec("a", x=np.float32("nan")))
    with pytest.raises(ParameterError, match="strict JSON"):
        m.append(rec("a", x=object()))
    with pytest.raises(ParameterError, match="status"):
        m.append(rec("a", status="done"))
    with pytest.raises(ParameterError, match="item"):
        m.append({"status": "ok"})
    assert not m.path.exists()  # nothing half-written


def test_truncated_last_line_tolerated(tmp_path, caplog):
    m = Manifest(tmp_path / "m.jsonl")
    m.append(rec("a"))
    m.append(rec("b"))
    with open(m.path, "ab") as f:
        f.write(b'{"item": "c", "status": "o')  # torn write
    with caplog.at_level(logging.WARNING, logger="blursynth"):
        out = m.records()
    assert [r["item"] for r in out] == ["a", "b"]
    assert "incomplete last line 3" in caplog.text
    # The next append cuts the fragment instead of gluing onto it.
    m.append(rec("d"))
    assert [r["item"] for r in read_manifest(m.path)] == ["a", "b", "d"]
    assert m.path.read_bytes().count(b"\n") == 3


def test_complete_last_record_without_newline_kept(tmp_path):
    m = Manifest(tmp_path / "m.jsonl")
    m.path.write_text('{"item": "a", "status": "ok"}')
    m.append(rec("b"))
    assert [r["item"] for r in m.records()] == ["a", "b"]


def test_nul_tail_after_power_loss_tolerated(tmp_path):
    m = Manifest(tmp_path / "m.jsonl")
    m.append(rec("a"))
    with open(m.path, "ab") as f:
        f.write(b"\x00" * 100)
    assert [r["item"] for r in m.records()] == ["a"]


def test_broken_middle_line_raises_with_line_number(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"item": "a", "status": "ok"}\n{"item": "b", "sta\n'
                 '{"item": "c", "status": "ok"}\n')
    with pytest.raises(InputFileError, match="line 2") as ei:
        read_manifest(p)
    assert ei.value.path == str(p)
    p.write_text('{"item": "a", "status": "ok"}\n[1, 2]\n{"item": "c", "status": "ok"}\n')
    with pytest.raises(InputFileError, match="line 2: expected a JSON object"):
        Manifest(p).records()


def test_blank_lines_ignored_and_missing(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('\n{"item": "a", "status": "ok"}\n\n')
    assert read_manifest(p) == [{"item": "a", "status": "ok"}]
    with pytest.raises(InputFileError, match="not found"):
        read_manifest(tmp_path / "none.jsonl")
    assert read_manifest(tmp_path / "none.jsonl", missing_ok=True) == []
    assert Manifest(tmp_path / "none.jsonl").done("a") is None


def test_done_picks_last_ok(tmp_path):
    m = Manifest(tmp_path / "m.jsonl")
    assert m.done("a") is None
    m.append(rec("a", status="failed", attempt=1))
    assert m.done("a") is None
    m.append(rec("a", attempt=2))
    m.append(rec("b", status="skipped"))
    m.append(rec("a", attempt=3))
    m.append(rec("a", status="failed", attempt=4))
    assert m.done("a")["attempt"] == 3
    assert m.done("b") is None
    # Another writer (a second Manifest object, e.g. another process) is seen.
    Manifest(m.path).append(rec("b", attempt=5))
    assert m.done("b")["attempt"] == 5
    # A fresh reader agrees with the cached one.
    assert Manifest(m.path).done("a") == m.done("a")


def test_base_record(tmp_path):
    r = base_record("flowblur", "clip-1", {"n": np.int32(7), "crf": "srgb"}, 42)
    assert r["stage"] == "flowblur" and r["item"] == "clip-1" and r["seed"] == 42
    assert r["params"] == {"n": 7, "crf": "srgb"} and type(r["params"]["n"]) is int
    assert r["time"].endswith("+00:00")
    v = r["versions"]
    assert set(v) == {"python", "blursynth", "numpy", "opencv", "numba", "imageio-ffmpeg"}
    assert v["numpy"] == np.__version__
    assert v["blursynth"] == "0.1.0"
    assert base_record("s", "i", {}, None)["seed"] is None
    # Serialisable as is, once a status is added.
    m = Manifest(tmp_path / "m.jsonl")
    m.append({**r, "status": "ok"})
    assert m.done("clip-1")["params"] == {"n": 7, "crf": "srgb"}
    with pytest.raises(ParameterError):
        base_record("s", "i", {}, 1.5)


def test_versions_missing_package(monkeypatch):
    from blursynth import manifest

    manifest._versions.cache_clear()
    real = manifest.metadata.version

    def fake(name):
        if name == "numba":
            raise manifest.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(manifest.metadata, "version", fake)
    try:
        v = versions()
        assert v["numba"] is None and v["numpy"] == np.__version__
    finally:
        manifest._versions.cache_clear()
    json.dumps(v)


def test_run_manifest_refuses_to_mix_runs(tmp_path):
    from blursynth.manifest import run_manifest

    path = tmp_path / "out" / "stage.jsonl"
    m = run_manifest(path, {"k": 3}, 7)
    m.append({**base_record("stage", "a", {"k": 3}, 7), "status": "ok"})
    run_manifest(path, {"k": 3}, 7)  # same run: resumes
    with pytest.raises(ParameterError, match=r"out: holds things made with another seed"):
        run_manifest(path, {"k": 3}, 8, what="things")
    with pytest.raises(ParameterError, match="other parameters"):
        run_manifest(path, {"k": 4}, 7)
    assert run_manifest(path, {"k": 4}, 7, overwrite=True).records() == []


def test_record_failure_appends_a_failed_record_and_never_raises(tmp_path, caplog):
    path = tmp_path / "out" / "stage.jsonl"
    record_failure(path, "flow", tmp_path / "clip.mp4", {"k": 1}, ValueError("broken"))
    (rec,) = read_manifest(path)
    assert (rec["stage"], rec["item"], rec["status"], rec["error"]) == ("flow", "clip", "failed",
                                                                        "broken")
    assert rec["params"] == {"k": 1} and rec["input"] == {"path": str(tmp_path / "clip.mp4")}
    blocker = tmp_path / "file"
    blocker.write_text("x")  # its "folder" cannot be made
    with caplog.at_level(logging.ERROR, logger="blursynth"):
        record_failure(blocker / "stage.jsonl", "flow", "a.mp4", {}, ValueError("x"))
    assert any("could not record the failure" in m for m in caplog.messages)
