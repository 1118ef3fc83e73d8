"""blursynth check: a tree written as intended passes; each rule catches its broken tree."""
import pickle
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from blursynth.errors import ParameterError
from blursynth.formats.check import Problem, check_layout
from blursynth.formats.layouts import LAYOUTS, write_layout
from blursynth.sampling import Run
from blursynth_cli.main import COMMANDS, blursynth as cli
from test_layouts import IMG, make_clip, motion

pytestmark = pytest.mark.usefixtures("restore_logger")


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """Source clips: small (8x12) ones and two big enough to train on."""
    d = tmp_path_factory.mktemp("src")
    return {"B": make_clip(d / "b", "B", 100, 1), "A": make_clip(d / "a", "A", 13, 0),
            "tall": make_clip(d / "t", "tall", 13, 0, h=10),
            "big256": make_clip(d / "g", "big256", 13, 0, h=256, w=256),
            "big257": make_clip(d / "g", "big257", 13, 0, h=257, w=257)}


@pytest.fixture(scope="module")
def afb_src(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("afb"), "dance", 81, 2, subframes=7, flow=motion,
                     exposure=1.0)


def rules(problems):
    return {(p.severity, p.rule) for p in problems}


def write(layout, clip, out, n=13, **kw):
    write_layout(layout, [Run(clip, 0, n)], out, **kw)
    return out


def png(path, img):
    assert cv2.imwrite(str(path), img)


# -- trees written as intended pass ------------------------------------------------------------


@pytest.mark.parametrize("layout, root, split, clip, kw", [
    ("gopro", "GOPRO_Large", "test", "A", {}),
    ("gopro", "GOPRO_Large", "train", "big256", {}),
    ("reds", "REDS", "val", "A", {}),
    ("srn", "training_set", "train", "big256", {}),
    ("dvd", "data", "test", "A", {}),
    ("dvd", "data", "train", "big257", {}),
    ("cdvd", "data", "test", "A", {}),
    ("cdvd", "data", "train", "big256", {}),
])
def test_tree_written_as_intended_passes(layout, root, split, clip, kw, src, tmp_path):
    out = write(layout, src[clip], tmp_path / root, split=split, **kw)
    assert check_layout(layout, out) == []


def test_afb_tree_written_as_intended_passes(afb_src, tmp_path):
    write_layout("afb", [Run(afb_src, 0, 81)], tmp_path)
    assert check_layout("afb", tmp_path) == []


def test_unknown_layout_and_missing_folder(tmp_path):
    with pytest.raises(ParameterError, match="layout"):
        check_layout("nope", tmp_path)
    assert rules(check_layout("gopro", tmp_path / "absent")) == {("error", "missing")}


# -- DeepDeblur (gopro, reds) ------------------------------------------------------------------


@pytest.fixture
def gopro(src, tmp_path):
    return write("gopro", src["A"], tmp_path / "GOPRO_Large", split="test")


def test_key_substring_above_the_dataset(src, tmp_path):
    out = write("gopro", src["A"], tmp_path / "w" / "GOPRO_Large", split="test")
    moved = tmp_path / "sharp" / "GOPRO_Large"
    moved.parent.mkdir()
    out.rename(moved)
    assert ("error", "path-key") in rules(check_layout("gopro", moved))
    reds = write("reds", src["A"], tmp_path / "x" / "REDS", split="val")
    reds.rename(tmp_path / "blur")
    assert ("error", "path-key") in rules(check_layout("reds", tmp_path / "blur"))


def test_dataset_folder_name(src, tmp_path):
    out = write("gopro", src["A"], tmp_path / "mygopro", split="test")
    assert rules(check_layout("gopro", out)) == {("warning", "dataset-name")}


def test_blur_without_blur_gamma(gopro):
    shutil.rmtree(gopro / "test/A/blur_gamma")
    assert ("error", "blur-only") in rules(check_layout("gopro", gopro))


def test_blurry_and_sharp_counts_differ(gopro):
    (gopro / "test/A/sharp/000003.png").unlink()
    assert rules(check_layout("gopro", gopro)) == {("error", "count-mismatch")}


def test_pairs_by_position_shifted(gopro):
    (gopro / "test/A/sharp/000000.png").rename(gopro / "test/A/sharp/000099.png")
    (p,) = check_layout("gopro", gopro)
    assert (p.severity, p.rule) == ("error", "pair-mismatch")
    assert p.path.endswith("blur_gamma/000000.png") and "sharp/000001.png" in p.message
    assert "(and 12 more" in p.message  # one line per rule and folder


def test_hidden_file_in_a_leaf_folder(gopro):
    (gopro / "test/A/sharp/.DS_Store").write_bytes(b"x")
    assert ("error", "stray-file") in rules(check_layout("gopro", gopro))


def test_folder_without_a_key_is_ignored(gopro):
    (gopro / "test/A/extra").mkdir()
    shutil.copy(gopro / "test/A/sharp/000000.png", gopro / "test/A/extra/000000.png")
    assert rules(check_layout("gopro", gopro)) == {("warning", "ignored-folder")}


def test_test_frames_not_a_multiple_of_4(src, tmp_path):
    out = write("gopro", src["tall"], tmp_path / "GOPRO_Large", split="test")  # 12x10
    assert rules(check_layout("gopro", out)) == {("error", "not-multiple")}
    out = write("cdvd", src["tall"], tmp_path / "cdvd", split="test")
    assert rules(check_layout("cdvd", out)) == {("warning", "not-multiple")}


def test_training_frames_smaller_than_the_crop(src, tmp_path):
    out = write("gopro", src["A"], tmp_path / "GOPRO_Large")
    (p,) = check_layout("gopro", out)
    assert (p.severity, p.rule) == ("error", "too-small") and "12x8" in p.message


def test_blurry_and_sharp_sizes_differ(gopro):
    png(gopro / "test/A/sharp/000001.png", IMG[:8, :16])
    assert rules(check_layout("gopro", gopro)) == {("error", "size-mismatch")}


def test_alpha_png(gopro, src, tmp_path):
    rgba = cv2.cvtColor(np.ascontiguousarray(IMG[:8, :12]), cv2.COLOR_RGB2BGRA)
    png(gopro / "test/A/sharp/000001.png", rgba)
    assert rules(check_layout("gopro", gopro)) == {("warning", "not-rgb8")}  # converted
    out = write("cdvd", src["A"], tmp_path / "cdvd", split="test")
    png(out / "test/gt/A/00001.png", rgba)
    assert rules(check_layout("cdvd", out)) == {("error", "not-rgb8")}  # read as stored
    png(out / "test/gt/A/00001.png", (IMG[:8, :12].astype(np.uint16) * 257))
    (p,) = check_layout("cdvd", out)
    assert p.rule == "not-rgb8" and "16-bit" in p.message


def test_frame_names_off_the_digit_scheme(gopro):
    for side in ("blur_gamma", "blur", "sharp"):
        (gopro / f"test/A/{side}/000001.png").rename(gopro / f"test/A/{side}/1.png")
    assert rules(check_layout("gopro", gopro)) == {("warning", "name-digits")}


# -- SRN-Deblur --------------------------------------------------------------------------------


@pytest.fixture
def srn(src, tmp_path):
    return write("srn", src["big256"], tmp_path / "training_set", n=2)


def test_srn_without_datalist(srn):
    (srn / "datalist.txt").unlink()
    assert rules(check_layout("srn", srn)) == {("error", "missing")}


def test_srn_blurry_column_first(srn):
    d = srn / "datalist.txt"
    d.write_text("".join(" ".join(ln.split(" ")[::-1]) + "\n" for ln in d.read_text().splitlines()))
    assert ("error", "datalist-order") in rules(check_layout("srn", srn))


def test_srn_space_or_empty_line(srn):
    (srn / "datalist.txt").write_text("big 256/sharp/000000.png big256/blur/000000.png\n\n")
    assert ("error", "datalist-format") in rules(check_layout("srn", srn))


def test_srn_listed_file_missing_and_unlisted_file(srn):
    (srn / "big256/blur/000001.png").unlink()
    assert ("error", "missing-file") in rules(check_layout("srn", srn))
    d = srn / "datalist.txt"
    d.write_text(d.read_text().splitlines()[0] + "\n")
    assert rules(check_layout("srn", srn)) == {("warning", "unlisted")}


def test_srn_small_frames(src, tmp_path):
    out = write("srn", src["tall"], tmp_path / "ts", n=2)
    assert rules(check_layout("srn", out)) == {("error", "too-small"), ("warning", "not-multiple")}


# -- PVDNet (dvd) ------------------------------------------------------------------------------


@pytest.fixture
def dvd(src, tmp_path):
    return write("dvd", src["A"], tmp_path / "data", split="test")


def test_dvd_dot_in_a_folder_name(dvd):
    (dvd / "test_blursynth/A").rename(dvd / "test_blursynth/A.1")
    assert rules(check_layout("dvd", dvd)) == {("error", "dot-in-name")}


def test_dvd_relative_root_starting_with_a_dot(dvd, monkeypatch):
    monkeypatch.chdir(dvd.parent)
    assert rules(check_layout("dvd", "./data")) == {("warning", "leading-dot-root")}


def test_dvd_gt_folder_spelt_differently(dvd):
    (dvd / "test_blursynth/A/GT").rename(dvd / "test_blursynth/A/gt")
    assert rules(check_layout("dvd", dvd)) == {("warning", "ignored-folder"),
                                               ("error", "count-mismatch")}


def test_dvd_frame_counts_and_names(dvd):
    (dvd / "test_blursynth/A/GT/00003.png").rename(dvd / "test_blursynth/A/GT/00099.png")
    assert rules(check_layout("dvd", dvd)) == {("error", "pair-mismatch")}
    (dvd / "test_blursynth/A/GT/00099.png").unlink()
    assert rules(check_layout("dvd", dvd)) == {("error", "count-mismatch")}


def test_dvd_training_video_shorter_than_13_and_frames_not_over_256(src, tmp_path):
    out = write("dvd", src["big256"], tmp_path / "data")
    for side in ("input", "GT"):
        (out / f"train_blursynth/big256/{side}/00012.png").unlink()
    assert rules(check_layout("dvd", out)) == {("warning", "too-few-frames"),
                                               ("error", "too-small")}


# -- CDVD-TSP ----------------------------------------------------------------------------------


@pytest.fixture
def cdvd(src, tmp_path):
    return write("cdvd", src["A"], tmp_path / "data", split="test", n=5)


def test_cdvd_stray_file(cdvd):
    (cdvd / "test/blur/A/notes.txt").write_text("x")
    assert rules(check_layout("cdvd", cdvd)) == {("error", "stray-file")}


def test_cdvd_video_shorter_than_5(cdvd):
    for side in ("blur", "gt"):
        (cdvd / f"test/{side}/A/00004.png").unlink()
    assert rules(check_layout("cdvd", cdvd)) == {("error", "too-few-frames")}


def test_cdvd_training_video_longer_than_100(src, tmp_path):
    out = write("cdvd", src["B"], tmp_path / "data", n=100)
    for side in ("blur", "gt"):
        shutil.copy(out / f"train/{side}/B/00099.png", out / f"train/{side}/B/00100.png")
    assert ("warning", "too-many-frames") in rules(check_layout("cdvd", out))


def test_cdvd_videos_paired_by_position(src, tmp_path):
    out = tmp_path / "data"
    write_layout("cdvd", [Run(src["A"], 0, 5), Run(src["B"], 0, 5)], out, split="test")
    (out / "test/gt/B").rename(out / "test/gt/C")
    assert rules(check_layout("cdvd", out)) == {("error", "pair-mismatch")}
    shutil.rmtree(out / "test/gt/C")
    assert rules(check_layout("cdvd", out)) == {("error", "count-mismatch")}


def test_cdvd_dot_in_frame_name(cdvd):
    for side in ("blur", "gt"):
        (cdvd / f"test/{side}/A/00001.png").rename(cdvd / f"test/{side}/A/00001.x.png")
    assert ("warning", "dot-in-name") in rules(check_layout("cdvd", cdvd))


# -- Animation-from-Blur -----------------------------------------------------------------------


@pytest.fixture
def afb(afb_src, tmp_path):
    write_layout("afb", [Run(afb_src, 0, 4)], tmp_path, name="synth")
    return tmp_path


def test_afb_generic_reader_root(afb):
    assert rules(check_layout("afb", afb)) == {("warning", "generic-reader")}


def test_afb_missing_trend_drops_the_sample(afb):
    (afb / "synth/dance/trend+_avg/00000002_trend.npy").unlink()
    assert ("error", "missing-file") in rules(check_layout("afb", afb))


def test_afb_no_sample_loads(afb):
    shutil.rmtree(afb / "synth/dance/trend+_avg")
    assert {("error", "missing-file"), ("error", "no-samples")} <= rules(check_layout("afb", afb))


def test_afb_bad_trend(afb):
    np.save(afb / "synth/dance/trend+_avg/00000001_trend.npy", np.zeros((8, 12, 2), np.int8))
    assert ("error", "bad-trend") in rules(check_layout("afb", afb))


def test_afb_hidden_png_shifts_the_count(afb):
    (afb / "synth/dance/blur/.00000009.png.tmp-1-ab.png").write_bytes(b"x")
    assert ("error", "stray-file") in rules(check_layout("afb", afb))


def test_afb_unlisted_video_and_missing_lists(afb):
    shutil.copytree(afb / "synth/dance", afb / "synth/extra")
    assert ("warning", "unlisted") in rules(check_layout("afb", afb))
    (afb / "synth_train_videos.yaml").unlink()
    assert rules(check_layout("afb", afb)) == {("error", "missing")}


def test_afb_baistpp_margins_and_bbox(afb_src, tmp_path):
    write_layout("afb", [Run(afb_src, 0, 6)], tmp_path)  # root b-aist++, 6 frames
    assert rules(check_layout("afb", tmp_path)) == {("warning", "margin"), ("error", "no-samples")}
    with open(tmp_path / "b-aist++/dance/blur_anno/00000002.pkl", "wb") as f:
        pickle.dump({"box": [0, 0, 1, 1]}, f)
    assert ("error", "bad-bbox") in rules(check_layout("afb", tmp_path))


# -- the command -------------------------------------------------------------------------------


def test_cli_exit_status_and_lines(gopro):
    r = CliRunner().invoke(cli, ["check", "gopro", str(gopro)])
    assert r.exit_code == 0 and "no problems found" in r.output
    (gopro / "test/A/sharp/000003.png").unlink()
    r = CliRunner().invoke(cli, ["check", "GOPRO", str(gopro)])
    assert r.exit_code == 1
    first, summary = r.output.splitlines()
    assert first.startswith(f"error: {gopro / 'test'}: 13 blurry frames but 12 sharp ones")
    assert summary == f"check gopro: 1 error, 0 warnings in {gopro}"


def test_cli_warnings_only_exit_0(src, tmp_path):
    out = write("gopro", src["A"], tmp_path / "mygopro", split="test")
    r = CliRunner().invoke(cli, ["check", "gopro", str(out)])
    assert r.exit_code == 0 and r.output.startswith("warning: ")
    assert "0 errors, 1 warning in" in r.output


def test_cli_help_and_registration():
    assert COMMANDS["check"] == "blursynth_cli.check:check"
    r = CliRunner().invoke(cli, ["check", "--help"])
    assert r.exit_code == 0
    for name, lay in LAYOUTS.items():
        assert f"{name:<6} {lay.description}" in r.output
    r = CliRunner().invoke(cli, ["check", "lmdb", "."])
    assert r.exit_code == 2


def test_problem_prints_as_one_line():
    assert str(Problem("error", "a/b", "broken", "x")) == "error: a/b: broken"
