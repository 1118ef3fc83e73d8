import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import blursynth
from blursynth.flow import cuda_available
from blursynth.flowblur import FlowBlurParams
from blursynth.flowblur_video import flowblur_video
from blursynth.manifest import read_manifest
from blursynth.scenes import make_scene
from blursynth.video import read_video, write_video
from blursynth_cli import flowblur as fb_cli
from blursynth_cli.common import expand_inputs
from blursynth_cli.main import COMMANDS, blursynth as cli, main

N_FRAMES = 6


pytestmark = pytest.mark.usefixtures("restore_logger")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, object]:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = make_scene("translation", (64, 96), 2).frames(N_FRAMES)
    write_video(path, frames, 30)  # lossless
    return path, frames


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _console_script() -> str:
    exe = Path(sys.executable).parent / "blursynth"
    assert exe.exists(), f"{exe}: run pip install -e . in the venv"
    return str(exe)


# -- the group -------------------------------------------------------------------------------


def test_help_lists_every_command_and_version():
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    listed = r.output.split("Commands:")[1]
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", listed, re.M), name
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and blursynth.__version__ in r.output


def test_console_script_runs_and_reports_errors_in_one_line(tmp_path):
    exe = _console_script()
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "flowblur" in r.stdout
    # A library error: one "Error:" line, exit 1, no traceback ...
    r = subprocess.run([exe, "preview", str(tmp_path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"Error: {tmp_path}: expected a folder with exactly one flowblur output set "
        "(NAME_blurry.mp4), found 0"]
    # ... unless -v asks for it.
    r = subprocess.run([exe, "-v", "preview", str(tmp_path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "Traceback" in r.stderr and "ParameterError" in r.stderr


def test_keyboard_interrupt_exits_130(monkeypatch, capsys, clip):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fb_cli, "flowblur_videos", interrupted)
    with pytest.raises(SystemExit) as e:
        main(["flowblur", str(clip[0])])
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "nothing partial" in err and "Traceback" not in err


# -- flowblur: options -----------------------------------------------------------------------


def test_flowblur_help_shows_every_param_with_the_dataclass_default():
    r = CliRunner().invoke(cli, ["flowblur", "--help"])
    assert r.exit_code == 0
    text = _flat(r.output)
    # One entry per option: the lines from "  --name" to the next option.
    entries = re.split(r"\n(?=  -)", r.output.split("Options:")[1])
    shown = {}
    for e in entries:
        m = re.match(r"\s*(?:-\w, )?(--[\w-]+)", e)
        if not m:
            continue
        d = re.search(r"\[default: ([^;\]]+)", _flat(e))
        shown[m.group(1)] = d.group(1) if d else None
    defaults = FlowBlurParams()
    for f in dataclasses.fields(FlowBlurParams):
        opt = f"--{f.name.replace('_', '-')}"
        assert opt in shown, opt
        default = getattr(defaults, f.name)
        if isinstance(default, bool):  # a switch shows the name of its default side
            want = f.name.replace("_", "-") if default else "no-" + f.name.replace("_", "-")
            shown[opt] = shown[opt].replace(" ", "")  # click may wrap it after a hyphen
        else:
            want = None if default is None else str(default)
        assert shown[opt] == want, opt
    # The command's defaults are the dataclass's, not copies that could drift.
    cmd_defaults = {p.name: p.default for p in fb_cli.flowblur.params}
    assert {k: cmd_defaults[k] for k in defaults.to_dict()} == defaults.to_dict()
    # The help teaches what the key options mean.
    for phrase in ("360-degree shutter", "--decimate 8", "240 fps", "lossless",
                   "NAME_blurry.mp4", "NAME_sharp.mp4", "NAME_flow.mp4", "flowblur.jsonl",
                   "farneback", "deepflow", "N-2"):
        assert phrase in text, phrase


def _capture(monkeypatch):
    calls = []
    monkeypatch.setattr(fb_cli, "flowblur_videos",
                        lambda *a, **k: calls.append((a, k)) or ([], []))
    return calls


def test_flowblur_defaults_reach_the_library(monkeypatch, clip):
    calls = _capture(monkeypatch)
    r = CliRunner().invoke(cli, ["flowblur", str(clip[0])])
    assert r.exit_code == 0, r.output
    (inputs, out_dir, params), kwargs = calls[0]
    assert inputs == [clip[0]] and out_dir is None
    assert params == FlowBlurParams()
    sig = inspect.signature(flowblur_video).parameters
    assert kwargs == {k: sig[k].default for k in kwargs}
    assert set(kwargs) == {p.name for p in sig.values() if p.kind is p.KEYWORD_ONLY}


def test_flowblur_every_option_reaches_the_library(monkeypatch, clip, tmp_path):
    calls = _capture(monkeypatch)
    r = CliRunner().invoke(cli, [
        "flowblur", str(clip[0]), "--out", str(tmp_path), "--exposure", "0.5", "--decimate", "2",
        "--crf", "gamma:2.2", "--flow", "farneback", "--flow-scale", "0.25", "--max-step", "2",
        "--min-subframes", "2", "--max-subframes", "8", "--scale", "0.5", "--scene-cut", "0.9",
        "--iters", "3", "--tau", "0.25", "--start", "1", "--end", "5", "--stride", "2",
        "--flow-files", "flo", "--frames", "--subframes", "3", "--quality", "23",
        "--no-flow-video", "--flow-vis-max", "8", "--flows", str(tmp_path / "{name}"),
        "--no-resume", "--no-progress"])
    assert r.exit_code == 0, r.output
    (_, out_dir, params), kwargs = calls[0]
    assert out_dir == tmp_path
    # farneback takes no preset: the dis default preset is not passed on to it.
    assert params == FlowBlurParams(
        exposure=0.5, decimate=2, crf="gamma:2.2", flow="farneback", flow_preset=None,
        flow_scale=0.25, max_step=2.0, min_subframes=2, max_subframes=8, scale=0.5,
        scene_cut=0.9, iters=3, tau=0.25)
    assert kwargs == dict(start=1, end=5, stride=2, flow_files="flo", frames=True, subframes=3,
                          quality=23, flow_video=False, flow_vis_max=8.0,
                          flows=tmp_path / "{name}", resume=False, show_progress=False)


def test_flowblur_accurate_is_deepflow_on_a_full_grid_unless_told_otherwise(monkeypatch, clip):
    calls = _capture(monkeypatch)
    for extra in ([], ["--iters", "3"], ["--flow-scale", "0.5", "--exposure", "2"]):
        r = CliRunner().invoke(cli, ["flowblur", str(clip[0]), "--accurate", *extra])
        assert r.exit_code == 0, r.output
    assert [c[0][2] for c in calls] == [
        FlowBlurParams(flow="deepflow", flow_scale=1.0, iters=2),
        FlowBlurParams(flow="deepflow", flow_scale=1.0, iters=3),
        FlowBlurParams(flow="deepflow", flow_scale=0.5, iters=2, exposure=2.0)]


def test_flowblur_exposure_out_of_range_is_a_usage_error(clip):
    r = CliRunner().invoke(cli, ["flowblur", str(clip[0]), "--exposure", "3"])
    assert r.exit_code == 2
    assert "Invalid value for '--exposure'" in r.output and "0 < e <= 2" in r.output


def test_flowblur_preset_given_to_a_backend_without_presets_is_an_error(clip, tmp_path):
    r = CliRunner().invoke(cli, ["flowblur", str(clip[0]), "--out", str(tmp_path),
                                 "--flow", "farneback", "--flow-preset", "fast"])
    assert r.exit_code == 2 and "--flow-preset" in r.output and "only the dis backend" in r.output
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA OpenCV")
def test_flowblur_cuda_without_cuda_says_so_and_uses_the_cpu_default(clip, tmp_path):
    r = CliRunner().invoke(cli, ["flowblur", str(clip[0]), "--out", str(tmp_path),
                                 "--flow", "cuda"])
    assert r.exit_code == 0, r.output
    assert "no CUDA support" in r.output and "using dis" in r.output
    video = [rec for rec in read_manifest(tmp_path / "flowblur.jsonl") if "/" not in rec["item"]]
    assert video[-1]["flow_backend"] == "dis" and video[-1]["params"]["flow"] == "cuda"


# -- flowblur: real runs ---------------------------------------------------------------------


def test_flowblur_tiny_clip_writes_pairs_and_manifest(clip, tmp_path):
    path, frames = clip
    r = CliRunner().invoke(cli, ["-q", "flowblur", str(path), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    n_out = N_FRAMES - 2  # exposure 1: the first and last frames only bound exposures
    outs = {k: tmp_path / f"clip_{k}.mp4" for k in ("blurry", "sharp", "flow")}
    for k, p in outs.items():
        assert len(read_video(p)[0]) == n_out, k
    sharp = read_video(outs["sharp"])[0]
    assert (sharp == frames[1:1 + n_out]).all()  # sharp target k is input frame k + 1
    blurry = read_video(outs["blurry"])[0]
    assert (blurry != sharp).any()  # the pan is blurred
    recs = read_manifest(tmp_path / "flowblur.jsonl")
    video = [x for x in recs if x.get("item") == "clip"]
    assert len(video) == 1 and video[0]["status"] == "ok" and video[0]["frames_out"] == n_out
    assert sorted(x["centre_frame"] for x in recs if x.get("video") == "clip") == [1, 2, 3, 4]
    assert f"clip.mp4: {n_out} frames in" in r.output
    assert str(outs["blurry"]) in r.output and "1 of 1 videos done" in r.output


def test_flowblur_batch_goes_on_past_bad_inputs(clip, tmp_path):
    missing = tmp_path / "missing.mp4"
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["flowblur", str(missing), str(text), str(clip[0]),
                                 "--out", str(out)])
    assert r.exit_code == 1
    assert isinstance(r.exception, SystemExit)  # an orderly exit, not a crash
    assert "Traceback" not in r.output
    assert f"failed: {missing}: no such file" in r.output
    assert f"failed: {text}: not a video file" in r.output
    assert len(read_video(out / "clip_blurry.mp4")[0]) == N_FRAMES - 2  # the good one is done
    assert "1 of 3 videos done" in r.output
    status = {x["item"]: x["status"] for x in read_manifest(out / "flowblur.jsonl")
              if "/" not in x["item"]}
    assert status == {"missing": "failed", "notes": "failed", "clip": "ok"}


def test_expand_inputs_folders(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    for name in ("b.MP4", "a.mkv", "a_blurry.mp4", "a_flow.mp4", "x_sharp.mov", "notes.txt",
                 ".a.mp4.tmp-1.mp4"):
        (d / name).write_bytes(b"")
    (d / "sub").mkdir()
    (d / "sub" / "c.mp4").write_bytes(b"")
    single = tmp_path / "z.avi"
    got = expand_inputs([single, d, tmp_path / "missing.webm"])
    # Sorted videos of the folder, not its subfolders, temporaries or its own flowblur
    # outputs (a_blurry beside a.mkv); x_sharp.mov has no source beside it, so it is an input.
    assert got == [single, d / "a.mkv", d / "b.MP4", d / "x_sharp.mov",
                   tmp_path / "missing.webm"]


def test_flowblur_folder_with_no_videos_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(cli, ["flowblur", str(tmp_path)])
    assert r.exit_code == 2 and "no video files" in r.output


# -- demo ------------------------------------------------------------------------------------


def test_demo_small(tmp_path):
    r = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--size", "48x80",
                                 "--frames", "6"])
    assert r.exit_code == 0, r.output
    for name in ("occlusion.mp4", "occlusion_blurry.mp4", "occlusion_sharp.mp4",
                 "occlusion_flow.mp4", "occlusion_preview.png", "flowblur.jsonl"):
        assert (tmp_path / name).is_file(), name
    assert len(read_video(tmp_path / "occlusion_blurry.mp4")[0]) == 4
    m = re.search(r"PSNR against the true blur: ([\d.]+) dB mean \(no blur at all: ([\d.]+) dB\)",
                  r.output)
    assert m, r.output
    synth, none = float(m.group(1)), float(m.group(2))
    # The synthesised blur is far closer to the physical blur than the sharp frame is.
    assert synth > none + 5 and synth > 30
    assert len(re.findall(r"frame +\d+ \(centre +\d+\)", r.output)) == 3
