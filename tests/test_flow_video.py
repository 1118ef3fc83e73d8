"""The flow stage (``blursynth flow``): pair-flow files from real mp4s, resume, bad input."""
import logging
import os

import numpy as np
import pytest
from click.testing import CliRunner

import blursynth.flow_video as fv
from blursynth.crf import encode_u8, get_crf
from blursynth.errors import InputFileError, OutputError, VideoError
from blursynth.flow import cuda_available, read_pair_flows
from blursynth.flowblur import FlowBlurParams
from blursynth.flowblur_video import flowblur_video, output_paths
from blursynth.manifest import read_manifest
from blursynth.scenes import make_scene
from blursynth.video import read_video, write_video
from blursynth_cli.main import blursynth as cli

SIZE = (72, 96)
SPEED = 2.5  # px per frame


@pytest.fixture(scope="module")
def scene():
    return make_scene("translation", SIZE, SPEED)


@pytest.fixture
def clip(tmp_path, scene):
    path = tmp_path / "pan.mp4"
    write_video(path, scene.frames(7), 24)  # lossless
    return path


def _interior(f, m=12):
    return f[m:-m, m:-m]


class _Counting:
    """compute_flow that counts its calls and, on call number ``fail_at``, raises ``exc``."""

    def __init__(self, monkeypatch, fail_at=None, exc=KeyboardInterrupt):
        self.calls, self.fail_at, self.exc = 0, fail_at, exc
        self._real = fv.compute_flow
        monkeypatch.setattr(fv, "compute_flow", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.exc
        return self._real(*args, **kwargs)


def test_files_hold_the_known_motion_both_ways_named_by_input_frame(clip, scene, tmp_path):
    rec = fv.pair_flows_video(clip, tmp_path / "flows", start=1, stride=2, fmt="npy")
    folder = tmp_path / "flows" / "pan"
    assert rec["folder"] == str(folder) and not rec["resumed"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "000001_000003.npy", "000003_000001.npy", "000003_000005.npy", "000005_000003.npy"]
    # Stride 2: the true motion over two frames, forwards and back.
    pairs = list(read_pair_flows(folder, [1, 3, 5], SIZE))
    for (fab, fba), a in zip(pairs, (1, 3)):
        for f, t0, t1 in ((fab, a, a + 2), (fba, a + 2, a)):
            err = np.abs(_interior(f) - _interior(scene.true_flow(t0, t1))).max(-1)
            assert np.median(err) < 0.1 and np.mean(err < 0.5) > 0.9
    assert np.abs(np.median(_interior(pairs[0][0]), axis=(0, 1))).max() > 4.0  # it moved
    # Another format replaces the files, so that --flows (.flo first) reads the new ones.
    fv.pair_flows_video(clip, tmp_path / "flows", start=1, stride=2, scale=0.5)
    assert sorted(p.suffix for p in folder.iterdir()) == [".flo"] * 4


def test_flowblur_blurs_with_the_files_as_the_scene_says(clip, scene, tmp_path):
    fv.pair_flows_video(clip, tmp_path / "flows")
    rec = flowblur_video(clip, tmp_path / "o", FlowBlurParams(exposure=1.0),
                         flows=tmp_path / "flows" / "{name}")
    assert rec["flow_backend"] == "files"
    blurry, _ = read_video(output_paths(clip, tmp_path / "o")["blurry"])
    for k, got in enumerate(blurry):
        want = encode_u8(scene.blur(k + 1, 1.0), get_crf("srgb"))
        mse = np.mean((_interior(got).astype(float) - _interior(want)) ** 2)
        assert 10 * np.log10(255 ** 2 / mse) > 50  # the sharp frames score 38-47


def test_an_interrupted_run_resumes_pair_by_pair(clip, tmp_path, monkeypatch):
    out = tmp_path / "flows"
    count = _Counting(monkeypatch, fail_at=5)  # the first flow of the third pair
    with pytest.raises(KeyboardInterrupt):
        fv.pair_flows_video(clip, out)
    folder = out / "pan"
    kept = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert sorted(kept) == ["000000_000001.flo", "000001_000000.flo",
                            "000001_000002.flo", "000002_000001.flo"]  # nothing partial
    count.calls, count.fail_at = 0, None
    rec = fv.pair_flows_video(clip, out)
    assert count.calls == 2 * 4 and rec["pairs_computed"] == 4 and len(rec["pairs"]) == 6
    assert all(os.stat(folder / n).st_mtime_ns == t for n, t in kept.items())
    # Finished: nothing is computed again; a lost file costs its pair only.
    count.calls = 0
    assert fv.pair_flows_video(clip, out)["resumed"] and count.calls == 0
    (folder / "000004_000003.flo").unlink()
    rec = fv.pair_flows_video(clip, out)
    assert not rec["resumed"] and rec["pairs_computed"] == 1 and count.calls == 2
    # Other options: every pair again, and --no-resume redoes even a finished video.
    count.calls = 0
    assert fv.pair_flows_video(clip, out, scale=0.5)["pairs_computed"] == 6
    assert fv.pair_flows_video(clip, out, scale=0.5, resume=False)["pairs_computed"] == 6
    assert count.calls == 24


def test_a_full_disk_fails_the_video_by_name_and_keeps_the_pairs_written(clip, tmp_path,
                                                                         monkeypatch):
    real = fv.write_flo
    calls = []

    def full(path, f):
        calls.append(path)
        if len(calls) == 3:
            raise OutputError(path, "cannot write .flo file: No space left on device")
        real(path, f)

    monkeypatch.setattr(fv, "write_flo", full)
    out = tmp_path / "flows"
    done, failed = fv.pair_flows_videos([clip], out)
    assert not done and "000001_000002.flo" in failed[0]["error"]
    assert "No space left" in failed[0]["error"]
    assert sorted(p.name for p in (out / "pan").iterdir()) == ["000000_000001.flo",
                                                                "000001_000000.flo"]
    recs = read_manifest(out / "flow.jsonl")
    assert [r["status"] for r in recs] == ["ok", "failed"]
    assert recs[0]["item"] == "pan/000000_000001"
    monkeypatch.setattr(fv, "write_flo", real)
    assert fv.pair_flows_video(clip, out)["pairs_computed"] == 5


def test_bad_inputs_are_named_and_the_batch_goes_on(clip, tmp_path, bad_videos):
    text, empty, one, missing = bad_videos.values()
    done, failed = fv.pair_flows_videos([text, clip, empty, one, missing], tmp_path / "f",
                                        end=4)
    assert [d["item"] for d in done] == ["pan"] and len(done[0]["pairs"]) == 3
    errors = {os.path.basename(f["input"]): f["error"] for f in failed}
    assert set(errors) == {"notes.mp4", "empty.mp4", "one.mp4", "missing.mp4"}
    assert all(name in msg for name, msg in errors.items())
    assert "expected at least 2 frames" in errors["one.mp4"] and "got 1" in errors["one.mp4"]
    with pytest.raises(InputFileError):
        fv.pair_flows_video(missing, tmp_path / "f")
    with pytest.raises(VideoError):
        fv.pair_flows_video(text, tmp_path / "f")


def test_truncated_input_uses_the_frames_that_decode(tmp_path, caplog):
    path = tmp_path / "cut.mp4"
    write_video(path, make_scene("translation", (48, 64), 2.0).frames(30), 24)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="blursynth"):
        rec = fv.pair_flows_video(path, tmp_path / "f", flow="farneback")
    assert rec["truncated"] and 2 < rec["frames_read"] < 30
    assert len(rec["pairs"]) == rec["frames_read"] - 1
    assert any("cut.mp4" in m and "truncated" in m.lower() for m in caplog.messages)


def test_command_line(clip, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["flow", str(clip), "--out", str(tmp_path / "f"), "--end", "3",
                              "--flow-scale", "0.5", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "pan.mp4: 2 pairs (2 pairs computed" in res.output
    assert len(list((tmp_path / "f" / "pan").glob("*.flo"))) == 4
    res = runner.invoke(cli, ["flow", str(clip), "--flow", "deepflow", "--flow-preset", "fast"])
    assert res.exit_code == 2 and "only the dis backend" in res.output
    bad = tmp_path / "bad.mp4"
    bad.write_text("x")
    res = runner.invoke(cli, ["flow", str(bad), str(clip), "--out", str(tmp_path / "f"),
                              "--end", "3", "--flow-scale", "0.5", "--no-progress"])
    assert res.exit_code == 1 and "bad.mp4" in res.output and "already done" in res.output


@pytest.mark.skipif(cuda_available(), reason="OpenCV runs CUDA here")
def test_cuda_without_cuda_runs_dis_and_says_so(clip, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="blursynth"):
        rec = fv.pair_flows_video(clip, tmp_path / "f", flow="cuda", end=3)
    assert rec["params"]["flow"] == "dis" and rec["params"]["preset"] == "medium"
    assert any("no CUDA support" in m and "using dis" in m for m in caplog.messages)
