"""The flowblur driver: real mp4 files in and out, manifests, resume, bad input."""
import json
import logging
import os
import re

import numpy as np
import pytest

import blursynth.flowblur_video as fv
from blursynth.errors import InputFileError, VideoError
from blursynth.crf import decode_u8, encode_u8, get_crf
from blursynth.flow import pair_flow_path, read_flo, write_flo
from blursynth.flowblur import FlowBlurParams, flowblur_array
from blursynth.manifest import read_manifest
from blursynth.scenes import make_scene
from blursynth.video import probe, read_video, write_video


@pytest.fixture(scope="module")
def clip_frames():
    return make_scene("occlusion", (64, 96), 3.0).frames(7)


@pytest.fixture
def clip(tmp_path, clip_frames):
    path = tmp_path / "clip.mp4"
    write_video(path, clip_frames, 24)
    return path


def test_outputs_match_the_in_memory_core_and_are_lossless(clip, clip_frames, tmp_path):
    out = tmp_path / "out"
    rec = fv.flowblur_video(clip, out, flow_files="flo", frames=True, subframes=2)
    paths = fv.output_paths(clip, out)
    blurry, info = read_video(paths["blurry"])
    sharp, _ = read_video(paths["sharp"])
    want_b, want_s, wins = flowblur_array(clip_frames)
    assert np.array_equal(blurry, want_b) and np.array_equal(sharp, want_s)
    assert info.fps == pytest.approx(24)
    flow_info = probe(paths["flow_video"])
    assert flow_info.n_frames == len(wins) == rec["frames_out"] == 5
    # The flow grid: the automatic flow scale keeps 360 rows, so full size for 64x96 frames.
    assert (flow_info.height, flow_info.width) == (64, 96) and rec["flow_scale"] == 1.0
    assert rec["interp"] == "cubic"  # below 720 rows
    assert len(list(paths["blurry_dir"].glob("*.png"))) == 5
    assert len(list(paths["subframes_dir"].glob("*.png"))) == 10
    f = read_flo(paths["flow_dir"] / "000000.flo")
    assert f.shape == (64, 96, 2) and np.isfinite(f).all()
    recs = read_manifest(paths["manifest"])
    frames = [r for r in recs if r["item"].startswith("clip/")]
    assert [r["centre_frame"] for r in frames] == [1, 2, 3, 4, 5]
    assert all(r["crf"] == "srgb" and r["exposure"] == 1.0 and r["subframes"] >= 1 for r in frames)
    assert recs[-1]["item"] == "clip" and recs[-1]["status"] == "ok"  # the video record is last


def test_start_end_stride_pick_input_frames(clip, tmp_path):
    rec = fv.flowblur_video(clip, tmp_path / "o", start=1, end=6, stride=2)
    # Inputs 1, 3, 5 -> one exposure centred on input 3.
    assert rec["frames_out"] == 1
    frames = [r for r in read_manifest(tmp_path / "o" / "flowblur.jsonl") if "/" in r["item"]]
    assert frames[0]["centre_frame"] == 3 and frames[0]["window"] == [2.0, 4.0]


def test_resume_skips_finished_video_and_reruns_on_change(clip, tmp_path):
    out = tmp_path / "out"
    first = fv.flowblur_video(clip, out)
    blurry = fv.output_paths(clip, out)["blurry"]
    mtime = blurry.stat().st_mtime_ns
    again = fv.flowblur_video(clip, out)
    assert again["resumed"] and blurry.stat().st_mtime_ns == mtime
    changed = fv.flowblur_video(clip, out, FlowBlurParams(exposure=0.5))
    assert not changed["resumed"] and blurry.stat().st_mtime_ns != mtime
    # A damaged output invalidates the record.
    blurry.write_bytes(b"broken")
    redo = fv.flowblur_video(clip, out, FlowBlurParams(exposure=0.5))
    assert not redo["resumed"] and first["frames_out"] == redo["frames_out"]


def test_resume_checks_the_optional_folders_too(clip, tmp_path):
    out = tmp_path / "out"
    fv.flowblur_video(clip, out, frames=True, flow_files="npy")
    assert fv.flowblur_video(clip, out, frames=True, flow_files="npy")["resumed"]
    (fv.output_paths(clip, out)["sharp_dir"] / "000003.png").unlink()
    redo = fv.flowblur_video(clip, out, frames=True, flow_files="npy")
    assert not redo["resumed"]
    assert (fv.output_paths(clip, out)["sharp_dir"] / "000003.png").is_file()


def test_interrupted_run_leaves_nothing_under_final_names(clip, tmp_path, monkeypatch):
    real = fv.flowblur_frames

    def dies_midway(*a, **k):
        for i, r in enumerate(real(*a, **k)):
            if i == 2:
                raise KeyboardInterrupt
            yield r

    monkeypatch.setattr(fv, "flowblur_frames", dies_midway)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        fv.flowblur_video(clip, out)
    assert sorted(os.listdir(out)) == []  # no video, no temp file, no manifest record
    monkeypatch.setattr(fv, "flowblur_frames", real)
    assert fv.flowblur_video(clip, out)["frames_out"] == 5


def test_interrupt_in_the_driver_stops_the_read_ahead_thread(clip, tmp_path, monkeypatch):
    import threading

    calls = []

    def picture(*a, **k):  # Ctrl-C while the driver handles the second frame
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.zeros((32, 48, 3), np.uint8)

    monkeypatch.setattr(fv, "_flow_picture", picture)
    with pytest.raises(KeyboardInterrupt):
        fv.flowblur_video(clip, tmp_path / "out")
    # The thread reading the video ahead is stopped before the reader is closed.
    assert not any(t.name == "blursynth-ahead" for t in threading.enumerate())
    assert sorted(os.listdir(tmp_path / "out")) == []


def test_bad_inputs_are_named_and_the_batch_goes_on(clip, tmp_path, bad_videos):
    text, empty, one, missing = bad_videos.values()
    out = tmp_path / "out"
    done, failed = fv.flowblur_videos([text, clip, empty, one, missing], out)
    assert [d["item"] for d in done] == ["clip"]
    errors = {os.path.basename(f["input"]): f["error"] for f in failed}
    assert set(errors) == {"notes.mp4", "empty.mp4", "one.mp4", "missing.mp4"}
    for name, msg in errors.items():
        assert name in msg
    assert "expected at least 3 frames" in errors["one.mp4"] and "got 1" in errors["one.mp4"]
    recs = read_manifest(out / "flowblur.jsonl")
    assert {r["item"] for r in recs if r["status"] == "failed"} == {"notes", "empty", "one", "missing"}
    with pytest.raises(InputFileError):
        fv.flowblur_video(missing, out)
    with pytest.raises(VideoError):
        fv.flowblur_video(text, out)


def test_truncated_input_uses_the_frames_that_decode(tmp_path, caplog):
    frames = make_scene("translation", (48, 64), 2.0).frames(30)
    path = tmp_path / "cut.mp4"
    write_video(path, frames, 24)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="blursynth"):
        rec = fv.flowblur_video(path, tmp_path / "o")
    assert rec["truncated"] and 2 < rec["frames_read"] < 30
    assert rec["frames_out"] == rec["frames_read"] - 2
    assert any("cut.mp4" in m and "truncated" in m.lower() for m in caplog.messages)


def test_manifest_records_are_json_lines_with_provenance(clip, tmp_path):
    fv.flowblur_video(clip, tmp_path, FlowBlurParams(crf="gamma:2.2", exposure=0.8))
    lines = (tmp_path / "flowblur.jsonl").read_text().splitlines()
    video = json.loads(lines[-1])
    assert video["params"]["crf"] == "gamma:2.2" and video["params"]["exposure"] == 0.8
    assert video["input"]["sha256"] and video["input"]["size"] == clip.stat().st_size
    assert "numpy" in video["versions"] and "opencv" in video["versions"]


def _still_flows(folder, pairs, shape, suffix=".flo"):
    folder.mkdir(parents=True, exist_ok=True)
    zero = np.zeros(shape + (2,), np.float32)
    for a, b in pairs:
        for src, dst in ((a, b), (b, a)):
            path = pair_flow_path(folder, src, dst, suffix)
            np.save(path, zero) if suffix == ".npy" else write_flo(path, zero)


def test_a_flows_folder_replaces_the_backend_pair_by_pair(clip, clip_frames, tmp_path):
    # Inputs 1, 3, 5 (stride 2): only the pairs (1, 3) and (3, 5) exist, in both formats.
    flows = tmp_path / "raft" / "clip"
    _still_flows(flows, [(1, 3)], (64, 96), ".flo")
    _still_flows(flows, [(3, 5)], (64, 96), ".npy")
    rec = fv.flowblur_video(clip, tmp_path / "o", FlowBlurParams(exposure=2.0, min_subframes=4),
                            start=1, stride=2, flows=tmp_path / "raft" / "{name}")
    assert rec["flow_backend"] == "files" and rec["flow_scale"] == 1.0
    assert rec["params"]["flows"] == str(flows)
    # No motion: each sub-frame is its nearer frame, so with 4 sub-frames per interval the
    # exposure [1, 5] centred on input 3 weighs inputs 1, 3, 5 by 1/4, 1/2, 1/4 in linear
    # light; the backend would have blurred the moving objects instead.
    blurry, _ = read_video(fv.output_paths(clip, tmp_path / "o")["blurry"])
    lin = decode_u8(clip_frames, get_crf("srgb"))
    want = encode_u8(0.25 * lin[1] + 0.5 * lin[3] + 0.25 * lin[5], get_crf("srgb"))
    assert len(blurry) == 1 and np.abs(blurry[0].astype(int) - want).max() <= 1
    moving = fv.flowblur_video(clip, tmp_path / "dis", FlowBlurParams(exposure=2.0),
                               start=1, stride=2)
    assert moving["flow_backend"] == "dis"
    assert np.abs(read_video(fv.output_paths(clip, tmp_path / "dis")["blurry"])[0][0].astype(int)
                  - want).max() > 20


def test_resume_notices_replaced_flow_files(clip, tmp_path):
    flows, out = tmp_path / "flows", tmp_path / "o"
    pairs = [(i, i + 1) for i in range(4)]
    _still_flows(flows, pairs, (64, 96))
    kw = dict(params=FlowBlurParams(exposure=2.0), end=4, flows=flows)
    first = fv.flowblur_video(clip, out, **kw)
    blurry = fv.output_paths(clip, out)["blurry"]
    still = blurry.read_bytes()
    assert fv.flowblur_video(clip, out, **kw)["resumed"] is True
    # The same folder, the same names, new contents (a pan of 3 px per frame): a re-run must
    # use them, not resume on the old output.
    pan = np.zeros((64, 96, 2), np.float32)
    for a, b in pairs:
        pan[..., 0] = 3.0 * (b - a)
        write_flo(pair_flow_path(flows, a, b), pan)
        pan[..., 0] = 3.0 * (a - b)
        write_flo(pair_flow_path(flows, b, a), pan)
    again = fv.flowblur_video(clip, out, **kw)
    assert again["resumed"] is False and again["params"]["flows_stamp"] != first["params"]["flows_stamp"]
    assert blurry.read_bytes() != still


@pytest.mark.parametrize("damage,match", [
    (lambda d: (d / "000002_000001.flo").unlink(),
     r"000002_000001\.flo: missing: the flow from frame 2 to frame 1"),
    (lambda d: np.save(d / "000001_000002.npy", np.zeros((64, 95, 2), np.float32))
     or (d / "000001_000002.flo").unlink(),
     r"000001_000002\.npy: expected a \(64, 96, 2\) flow, got shape \(64, 95, 2\)"),
    (lambda d: (d / "000003_000004.flo").write_bytes(b"PIEH"),
     r"000003_000004\.flo: not a \.flo file"),
    (lambda d: write_flo(d / "000000_000001.flo", np.full((64, 96, 2), np.inf, np.float32)),
     r"000000_000001\.flo: holds NaN or infinite"),
])
def test_a_bad_flow_file_fails_its_video_by_name_and_leaves_no_output(clip, tmp_path, damage,
                                                                      match):
    flows = tmp_path / "flows"
    _still_flows(flows, [(i, i + 1) for i in range(6)], (64, 96))
    damage(flows)
    out = tmp_path / "o"
    with pytest.raises(InputFileError, match=match):
        fv.flowblur_video(clip, out, flows=flows)
    assert not fv.output_paths(clip, out)["blurry"].exists()
    done, failed = fv.flowblur_videos([clip, tmp_path / "no_such.mp4"], out, flows=flows)
    assert done == [] and re.search(match, failed[0]["error"]) and "no_such.mp4" in failed[1]["error"]
    with pytest.raises(InputFileError, match="flows: not a folder"):
        fv.flowblur_video(clip, out, flows=tmp_path / "nowhere")
