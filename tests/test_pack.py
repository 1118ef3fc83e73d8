"""pack end to end: clips -> datasets, resume after kill -9, bad inputs, the command line."""
import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from skimage import data

from blursynth.clips import find_clips
from blursynth.errors import ParameterError
from blursynth.formats.native_lmdb import NativeLmdbReader
from blursynth.pack import manifest_path, pack
from blursynth.sampling import SampleParams
from blursynth.video import write_video
from blursynth_cli.main import blursynth

#: Filters off that these tests are not about (small crops of a pan vary in detail).
LOOSE = dict(min_texture=0, min_sharpness=0)
PARAMS = SampleParams(frames=3, patch=(32, 40), patches=2, **LOOSE)


def make_clips(root, names=("a", "b", "c"), n=9, h=64, w=80):
    """Lossless NAME_blurry.mp4/NAME_sharp.mp4 pans over different photos."""
    root.mkdir(parents=True, exist_ok=True)
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    for name, img in zip(names, photos):
        sharp = np.stack([img[60:60 + h, 90 + 3 * k:90 + 3 * k + w] for k in range(n)])
        blurry = np.stack([cv2.blur(f, (7, 1)) for f in sharp])
        write_video(root / f"{name}_sharp.mp4", sharp, fps=25)
        write_video(root / f"{name}_blurry.mp4", blurry, fps=25)
    return root


def records(path):
    r = NativeLmdbReader(path)
    return [(s.id, s.ref, s.blurry.tobytes(), s.sharp.tobytes()) for s in (r[i] for i in range(len(r)))]


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_native_samples_are_crops_of_the_clips(tmp_path, encoding):
    clips_dir = make_clips(tmp_path / "clips")
    out = tmp_path / "train.lmdb"
    res = pack([clips_dir], out, params=PARAMS, seed=3, encoding=encoding)
    assert res["failed"] == [] and res["done"] == ["a", "b", "c"]
    frames = {c.name: list(c.frames()) for c in find_clips([clips_dir])}
    reader = NativeLmdbReader(out)
    assert len(reader) == res["written"] == 3 * 3 * 2  # 3 clips x 3 bursts x 2 crops
    for i in range(len(reader)):
        s = reader[i]
        y, x, h, w = s.meta["crop"]
        assert s.ref == 1 and s.blurry.shape == (3, h, w, 3)
        for k, f in enumerate(s.meta["frames"]):
            _, b, sh = frames[s.meta["clip"]][f]
            assert np.array_equal(s.blurry[k], b[y:y + h, x:x + w])
            assert np.array_equal(s.sharp[k], sh[y:y + h, x:x + w])
    recs = [json.loads(line) for line in manifest_path(out).read_text().splitlines()]
    assert [r["item"] for r in recs] == ["a", "b", "c"]
    assert all(r["report"]["accepted"] == r["written"] == 6 for r in recs)


def test_same_dataset_whatever_the_workers(tmp_path):
    clips_dir = make_clips(tmp_path / "clips", names=("a", "b"))
    pack([clips_dir], tmp_path / "w1.lmdb", params=PARAMS, workers=1)
    pack([clips_dir], tmp_path / "w3.lmdb", params=PARAMS, workers=3)
    assert records(tmp_path / "w1.lmdb") == records(tmp_path / "w3.lmdb")


KILLER = textwrap.dedent("""
    import os, signal, sys
    from blursynth.formats import native_lmdb
    from blursynth.pack import pack
    from blursynth.sampling import SampleParams
    add = native_lmdb.NativeLmdbWriter.add
    n = [0]
    def dying_add(self, sample):
        n[0] += 1
        if n[0] == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill -9 in the middle of clip c
        return add(self, sample)
    native_lmdb.NativeLmdbWriter.add = dying_add
    pack([sys.argv[1]], sys.argv[2], params=SampleParams(frames=3, patch=(32, 40), patches=2,
         min_texture=0, min_sharpness=0))
""")


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    clips_dir = make_clips(tmp_path / "clips")
    whole, broken = tmp_path / "whole.lmdb", tmp_path / "broken.lmdb"
    pack([clips_dir], whole, params=PARAMS)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(clips_dir), str(broken), "15"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert 0 < len(NativeLmdbReader(broken)) < len(NativeLmdbReader(whole))  # readable
    res = pack([clips_dir], broken, params=PARAMS)
    assert res["resumed"] == ["a", "b"] and res["done"] == ["c"]
    assert records(broken) == records(whole)


def test_bad_inputs_fail_alone(tmp_path):
    clips_dir = make_clips(tmp_path / "clips", names=("a",))
    junk = tmp_path / "junk.txt"
    junk.write_text("not a clip")
    res = pack([junk, clips_dir, tmp_path / "missing"], tmp_path / "o.lmdb", params=PARAMS)
    assert res["done"] == ["a"] and res["written"] == 6
    errors = [f["error"] for f in res["failed"]]
    assert "junk.txt: expected a NAME_blurry.mp4" in errors[0]
    assert "missing: no such file or folder" in errors[1]
    failed = [json.loads(x) for x in manifest_path(tmp_path / "o.lmdb").read_text().splitlines()
              if '"failed"' in x]
    assert len(failed) == 2


def test_other_parameters_refused_overwrite_restarts(tmp_path):
    clips_dir = make_clips(tmp_path / "clips", names=("a",))
    out = tmp_path / "o.lmdb"
    pack([clips_dir], out, params=PARAMS)
    other = SampleParams(frames=2, patch=(32, 40), **LOOSE)
    with pytest.raises(ParameterError, match="was packed with other parameters"):
        pack([clips_dir], out, params=other)
    res = pack([clips_dir], out, params=other, overwrite=True)
    assert res["written"] == len(NativeLmdbReader(out)) == 4  # bursts 0-1, 2-3, 4-5, 6-7
    stranger = tmp_path / "mine"
    stranger.mkdir()
    with pytest.raises(ParameterError, match="refusing to delete"):
        pack([clips_dir], stranger, params=other, overwrite=True)
    assert stranger.is_dir()


def test_cli_native_summary_and_exit_status(tmp_path):
    clips_dir = make_clips(tmp_path / "clips", names=("a",))
    runner = CliRunner()
    args = ["pack", str(clips_dir), "--lmdb", str(tmp_path / "o.lmdb"), "--frames", "3",
            "--patch", "32x40", "--min-texture", "0", "--min-sharpness", "0"]
    r = runner.invoke(blursynth, args)
    assert r.exit_code == 0, r.output
    assert "pack native: 3 samples from 1 clips" in r.output
    assert "3 candidates, 3 accepted" in r.output
    r = runner.invoke(blursynth, args + [str(tmp_path / "nope")])
    assert r.exit_code == 1 and "nope: no such file or folder" in r.output
    assert "(+1 already packed)" in r.output
    r = runner.invoke(blursynth, ["pack", str(clips_dir)])
    assert r.exit_code == 2 and "exactly one of --lmdb OUT or --layout NAME OUT" in r.output
    r = runner.invoke(blursynth, args[:4] + ["--patch", "3y"])
    assert r.exit_code == 2 and "expected HxW, N or full" in r.output


def test_gopro_layout_read_back_as_bursts(tmp_path):
    from blursynth.data import LayoutBursts, LayoutDataset

    clips_dir = make_clips(tmp_path / "clips", names=("a", "b"))
    root = tmp_path / "GOPRO_Large"
    r = CliRunner().invoke(blursynth, ["pack", str(clips_dir), "--layout", "gopro", str(root),
                                       "--min-texture", "0", "--min-sharpness", "0"])
    assert r.exit_code == 0, r.output
    assert "pack gopro: 18 frames from 2 clips" in r.output
    frames = {c.name: list(c.frames()) for c in find_clips([clips_dir])}
    bursts = LayoutBursts(root, "gopro", split="train", frames=3)
    assert len(bursts) == 2 * 7  # 9-frame videos give 7 bursts of 3
    for i in range(len(bursts)):
        s = bursts[i]
        first = int(s.id.split("/")[1][:6])
        for k in range(3):
            _, b, sh = frames[s.meta["video"]][first + k]
            assert np.array_equal(s.blurry[k], b) and np.array_equal(s.sharp[k], sh)
    item = LayoutDataset(root, "gopro", frames=3)[0]
    assert tuple(item["blurry"].shape) == (3, 3, 64, 80) and item["ref"] == 1
    assert float(item["sharp"].max()) <= 1.0


def test_tensorpack_defaults_from_the_cli(tmp_path):
    from blursynth.formats.tensorpack_lmdb import read_tensorpack_lmdb

    big = cv2.resize(data.astronaut(), (1100, 1100), interpolation=cv2.INTER_CUBIC)
    sharp = np.stack([big[100:620, 100 + 4 * k:620 + 4 * k] for k in range(5)])
    blurry = np.stack([cv2.blur(f, (9, 1)) for f in sharp])
    clips_dir = tmp_path / "clips"
    clips_dir.mkdir()
    write_video(clips_dir / "v_sharp.mp4", sharp, fps=25)
    write_video(clips_dir / "v_blurry.mp4", blurry, fps=25)
    out = tmp_path / "lbmd.lmdb"
    r = CliRunner().invoke(blursynth, ["pack", str(clips_dir), "--lmdb", str(out),
                                       "--lmdb-format", "tensorpack", "--min-sharpness", "0"])
    assert r.exit_code == 0, r.output
    (dp,) = list(read_tensorpack_lmdb(out))
    assert len(dp) == 10 and all(a.shape == (512, 512, 3) for a in dp)
    # Find the crop from the first sharp frame, then every frame must be the JPEG of that crop.
    err = {(y, x): np.abs(dp[5].astype(int) - sharp[0][y:y + 512, x:x + 512]).mean()
           for y in range(9) for x in range(9)}
    y, x = min(err, key=err.get)
    for k in range(5):
        for got, src in ((dp[k], blurry[k]), (dp[5 + k], sharp[k])):
            assert np.abs(got.astype(int) - src[y:y + 512, x:x + 512]).mean() < 2.0


def test_basicsr_pairs_are_the_clip_frames(tmp_path):
    from blursynth.formats.basicsr_lmdb import read_basicsr_lmdb

    clips_dir = make_clips(tmp_path / "clips", names=("a",))
    res = pack([clips_dir], tmp_path / "bsr", fmt="basicsr", params=SampleParams(**LOOSE))
    assert res["written"] == 9
    frames = list(find_clips([clips_dir])[0].frames())
    got = list(read_basicsr_lmdb(tmp_path / "bsr"))
    assert [k for k, _, _ in got] == [f"a/{i:08d}" for i in range(9)]
    for (_, b, s), (_, fb, fs) in zip(got, frames):
        assert np.array_equal(b, fb) and np.array_equal(s, fs)


def test_flowblur_to_afb_trend_from_the_known_motion(tmp_path):
    """The whole pipeline: a pan rendered with known motion, flowblur with 7 sub-frames and
    flow files, packed as Animation-from-Blur; the trend must be the consumer's label of the
    true motion direction, by the rule consumers.md gives."""
    from blursynth.flowblur_video import flowblur_video
    from blursynth.scenes import make_scene

    scene = make_scene("translation", (64, 96), 3.0)
    write_video(tmp_path / "pan.mp4", scene.frames(6), fps=25)
    flowblur_video(tmp_path / "pan.mp4", tmp_path / "clips", subframes=7, flow_files="npy",
                   show_progress=False)
    res = pack([tmp_path / "clips"], tmp_path / "afb", fmt="afb", params=SampleParams(**LOOSE))
    assert res["failed"] == [] and res["written"] == 4

    # consumers.md 5(b): sign(x), sign(y); axis-aligned cases forced onto a diagonal.
    forced = {(0, 1): (1, 1), (0, -1): (-1, -1), (1, 0): (1, -1), (-1, 0): (-1, 1)}
    v = np.median(scene.true_flow(2, 3).reshape(-1, 2), axis=0)
    sign = tuple(int(np.sign(c)) if abs(c) > 0.5 else 0 for c in v)
    expected = forced.get(sign, sign)
    trends = sorted((tmp_path / "afb").rglob("*_trend.npy"))
    assert len(trends) == 4
    for f in trends:
        t = np.load(f)
        assert t.shape == (32, 48, 2)
        inner = t[4:-4, 4:-4].reshape(-1, 2)
        assert (inner == expected).all(), (f, np.unique(inner, axis=0))
    sharps = sorted((tmp_path / "afb").rglob("sharp/*.png"))
    assert [p.name for p in sharps[:8]] == [f"00000000_{j:03d}.png" for j in range(7)] + [
        "00000001_000.png"]
    assert len(sharps) == 4 * 7


def test_same_clip_name_from_two_inputs_fails_the_second(tmp_path):
    first = make_clips(tmp_path / "one", names=("a",))
    second = make_clips(tmp_path / "two", names=("a",))
    res = pack([first, second], tmp_path / "o.lmdb", params=PARAMS)
    assert res["done"] == ["a"] and res["written"] == 6
    (f,) = res["failed"]
    assert "two/a_blurry.mp4: clip name 'a' is also used by" in f["error"]


def test_segblur_photos_pack_as_pairs_not_bursts(tmp_path):
    from blursynth.segblur import SegParams
    from blursynth.segblur_files import segblur
    from blursynth.segmasks import PlainSource

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        img = getattr(data, name)()[:96, :128]
        cv2.imwrite(str(photos / f"{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    segblur(PlainSource(photos), tmp_path / "pairs", SegParams(camera_extent=(8, 12), object_extent=(4, 8), size=17))
    (clip,) = find_clips([tmp_path / "pairs"])
    assert clip.stills and clip.n_frames == 3

    res = pack([tmp_path / "pairs"], tmp_path / "b.lmdb", params=SampleParams(frames=3, patch=(64, 64), **LOOSE))
    assert res["written"] == 0 and "independent photos" in res["failed"][0]["error"]

    # Three unrelated photos: no scene cut, repeat or sharpness comparison between them.
    res = pack([tmp_path / "pairs"], tmp_path / "p.lmdb",
               params=SampleParams(frames=1, patch=(64, 64), min_texture=0))
    assert res["written"] == 3 and not res["failed"]
    res = pack([tmp_path / "pairs"], tmp_path / "cd", fmt="cdvd", params=SampleParams())
    assert "reads videos" in res["failed"][0]["error"]
