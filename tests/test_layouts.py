"""Folder layouts: every writer round-trips, and each consumer's own pairing rule, transcribed
below from its code as consumers.md states it, pairs the intended frames."""
import glob
import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from blursynth.clips import find_clips
from blursynth.errors import InputFileError, ParameterError
from blursynth.formats import layouts
from blursynth.formats.layouts import LAYOUTS, quantise_trend, sanitise_name, write_layout
from blursynth.formats.scan import scan_layout
from blursynth.sampling import Run
from blursynth.video import write_png_folder

H, W = 8, 12
IMG = data.astronaut()  # 512x512 RGB: frames are crops whose offset identifies them
FLIP = IMG[::-1, ::-1]
TURN = IMG.transpose(1, 0, 2)


# -- test clips: frame k of clip c is a crop shifted by k rows ---------------------------------


def blurry(c, k, h=H, w=W):
    return IMG[10 + k: 10 + k + h, 20 + 30 * c: 20 + 30 * c + w]


def sharp(c, k, h=H, w=W):
    return FLIP[10 + k: 10 + k + h, 20 + 30 * c: 20 + 30 * c + w]


def sub(c, k, j, h=H, w=W):
    return TURN[10 + k: 10 + k + h, 5 * j + 30 * c: 5 * j + 30 * c + w]


def make_clip(folder: Path, name: str, n: int, c: int = 0, *, h=H, w=W, subframes=0,
              flow=None, exposure=None, decimate=1):
    """A clip as flowblur's --frames output: NAME_blurry/, NAME_sharp/ (+ sub-frames, flow)."""
    write_png_folder(folder / f"{name}_blurry", [blurry(c, k, h, w) for k in range(n)])
    write_png_folder(folder / f"{name}_sharp", [sharp(c, k, h, w) for k in range(n)])
    for k in range(n):
        for j in range(subframes):
            d = folder / f"{name}_subframes"
            d.mkdir(exist_ok=True)
            cv2.imwrite(str(d / f"{k:06d}_{j:02d}.png"), sub(c, k, j, h, w)[..., ::-1])
        if flow is not None:
            (folder / f"{name}_flow").mkdir(exist_ok=True)
            np.save(folder / f"{name}_flow" / f"{k:06d}.npy", flow(k).astype(np.float32))
    if exposure is not None:
        rec = {"item": name, "status": "ok", "params": {"exposure": exposure, "decimate": decimate}}
        with open(folder / "flowblur.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
    return {cl.name: cl for cl in find_clips([folder])}[name]


def rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint8 and img.shape[2] == 3, path  # 8-bit RGB, no alpha
    return img[..., ::-1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    # A name with a space and a dot (both break some consumers) and two runs; a second clip.
    return make_clip(d, "a b.c", 30, 0), make_clip(d, "B", 14, 1)


def runs_of(clips):
    a, b = clips
    return [Run(a, 0, 13), Run(a, 15, 28), Run(b, 1, 14)]


#: video -> (clip index, first clip frame): what every layout below must reproduce.
INTENDED = {"a_b_c_000000": (0, 0), "a_b_c_000015": (0, 15), "B": (1, 1)}


# -- the consumers' pairing rules, transcribed from their code ---------------------------------


def deepdeblur(subset_root, blur_key, sharp_key, non_blur=(), non_sharp=()):
    """DeepDeblur-PyTorch src/data/dataset.py::_scan."""
    def key_check(path, true_key, false_keys):
        path = os.path.join(path, "")
        return path.find(true_key) >= 0 and all(path.find(k) < 0 for k in false_keys)

    def get_list_by_key(root, true_key, false_keys):
        data_list = []
        for sub_, dirs, files in os.walk(root):
            if not dirs and key_check(sub_, true_key, false_keys):
                data_list += [os.path.join(sub_, f) for f in files]
        data_list.sort()
        return data_list

    blur = get_list_by_key(subset_root, os.path.join(blur_key, ""),
                           [os.path.join(k, "") for k in non_blur])
    sharp_ = get_list_by_key(subset_root, os.path.join(sharp_key, ""),
                             [os.path.join(k, "") for k in non_sharp])
    assert len(blur) == len(sharp_)
    return list(zip(blur, sharp_))


def pvdnet(data_path):
    """PVDNet data_loader/utils.py::load_file_list and the asserts of datasets.py."""
    def load_file_list(root_path, child_path):
        folder_paths, structured = [], []
        for root, dirnames, filenames in os.walk(root_path):
            if len(dirnames) != 0 and dirnames[0][0] == "@":
                del dirnames[0]
            if len(dirnames) == 0:
                if root[0] == "." or child_path != Path(root).name:
                    continue
                folder_paths.append(root)
                structured.append(sorted(os.path.join(root, f) for f in filenames
                                         if f[0] != "." and f != "Thumbs.db"))
        order = np.argsort(folder_paths)
        return [structured[i] for i in order]

    inp, gt = load_file_list(data_path, "input"), load_file_list(data_path, "GT")
    pairs = []
    for fi, fg in zip(inp, gt):
        for b, s in zip(fi, fg):
            assert os.path.dirname(b).split(os.sep)[-2] == os.path.dirname(s).split(os.sep)[-2]
            assert os.path.basename(b.split(".")[0]) == os.path.basename(s.split(".")[0])
            pairs.append((b, s))
    return pairs


def cdvd(dir_data, train=True):
    """CDVD-TSP code/data/videodata.py::_scan with dvd.py's folder names."""
    vid_gt = sorted(glob.glob(os.path.join(dir_data, "gt", "*")))
    vid_in = sorted(glob.glob(os.path.join(dir_data, "blur", "*")))
    assert len(vid_gt) == len(vid_in)
    pairs = []
    for g, i in zip(vid_gt, vid_in):
        gt_names = sorted(glob.glob(os.path.join(g, "*")))[:100 if train else None]
        in_names = sorted(glob.glob(os.path.join(i, "*")))[:100 if train else None]
        pairs += list(zip(in_names, gt_names))
    return pairs


def srn(root):
    """SRN-Deblur models/model.py: datalist lines split on ' ', GT first, under training_set/."""
    rows = [x.split(" ") for x in open(os.path.join(root, "datalist.txt")).read().splitlines()]
    return [(os.path.join(root, r[1]), os.path.join(root, r[0])) for r in rows]


def afb_genblur(root_dir, list_file, num_gts=7):
    """Animation-from-Blur data/dataset.py::GenBlur.gen_samples, num_past = num_fut = 0."""
    videos = [ln[2:].strip().strip("'") for ln in open(list_file).read().splitlines()]
    samples = []
    for vid in videos:
        n = len([x for x in os.listdir(os.path.join(root_dir, vid, "blur")) if x.endswith("png")])
        for i in range(n):
            samples.append((os.path.join(root_dir, vid, "blur", f"{i:08d}.png"),
                            *[os.path.join(root_dir, vid, "sharp", f"{i:08d}_{j:03d}.png")
                              for j in range(num_gts)]))
    return samples


CONSUMERS = {
    "gopro": lambda root: deepdeblur(os.path.join(root, "train"), "blur_gamma", "sharp"),
    "reds": lambda root: deepdeblur(os.path.join(root, "train"), "blur", "sharp",
                                    ["blur_comp", "blur_bicubic"], ["sharp_bicubic"]),
    "srn": srn,
    "dvd": lambda root: pvdnet(os.path.join(root, "train_blursynth")),
    "cdvd": lambda root: cdvd(os.path.join(root, "train")),
}


def video_of(layout, blur_path):
    p = Path(blur_path)
    return p.parent.parent.name if layout in ("gopro", "srn", "dvd") else p.parent.name


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(CONSUMERS))
def test_round_trip_pairs_are_the_intended_frames(layout, clips, tmp_path):
    out = tmp_path / "data"
    report = write_layout(layout, runs_of(clips), out)
    assert report["videos"] == list(INTENDED) and report["frames"] == 39
    assert report["frames_written"] == 39 and report["runs_dropped"] == 0

    pairs = CONSUMERS[layout](str(out))
    assert len(pairs) == 39
    seen = {}
    for b, s in pairs:
        video = video_of(layout, b)
        c, start = INTENDED[video]
        k = seen.setdefault(video, 0)
        seen[video] += 1
        np.testing.assert_array_equal(rgb(b), blurry(c, start + k))
        np.testing.assert_array_equal(rgb(s), sharp(c, start + k))
    assert seen == {"a_b_c_000000": 13, "a_b_c_000015": 13, "B": 13}

    scanned = scan_layout(layout, out)
    assert [v for v, _ in scanned] == (list(INTENDED) if layout == "srn" else sorted(INTENDED))
    flat = [(str(b), str(s)) for _, items in scanned for b, s in items]
    assert sorted(flat) == sorted(pairs)


@pytest.mark.parametrize("layout, digits, first", [
    ("gopro", 6, "train/B/sharp/000000.png"), ("reds", 8, "train/train_sharp/B/00000000.png"),
    ("srn", 6, "B/sharp/000000.png"), ("dvd", 5, "train_blursynth/B/GT/00000.png"),
    ("cdvd", 5, "train/gt/B/00000.png")])
def test_frame_names_follow_consumers_md(layout, digits, first, clips, tmp_path):
    assert LAYOUTS[layout].digits == digits
    write_layout(layout, [Run(clips[1], 1, 14)], tmp_path)
    assert (tmp_path / first).is_file()
    last = first.replace("0" * digits, f"{12:0{digits}d}")
    assert (tmp_path / last).is_file() and not (tmp_path / last.replace("12", "13")).exists()


def test_registry_states_each_consumers_limits():
    assert (LAYOUTS["cdvd"].min_frames, LAYOUTS["cdvd"].max_frames) == (5, 100)
    assert LAYOUTS["dvd"].min_frames == 13 and LAYOUTS["dvd"].min_size == 257
    assert LAYOUTS["afb"].subframes == 7 and LAYOUTS["afb"].needs_flow
    assert LAYOUTS["gopro"].multiple == 4 and LAYOUTS["srn"].multiple == 16
    assert [LAYOUTS[k].min_frames for k in ("gopro", "reds", "srn", "afb")] == [1, 1, 1, 1]


def test_srn_datalist_has_gt_first_relative_paths(clips, tmp_path):
    write_layout("srn", [Run(clips[1], 1, 3)], tmp_path)
    assert (tmp_path / "datalist.txt").read_text() == (
        "B/sharp/000000.png B/blur/000000.png\nB/sharp/000001.png B/blur/000001.png\n")


def test_gopro_blur_is_a_hard_link_of_blur_gamma(clips, tmp_path):
    write_layout("gopro", [Run(clips[1], 0, 2)], tmp_path, split="test")
    g, b = tmp_path / "test/B/blur_gamma/000001.png", tmp_path / "test/B/blur/000001.png"
    assert os.stat(g).st_ino == os.stat(b).st_ino


def test_gopro_copies_when_hard_links_fail(clips, tmp_path, monkeypatch):
    def no_link(*a):
        raise OSError(1, "Operation not permitted")
    monkeypatch.setattr(layouts.os, "link", no_link)
    write_layout("gopro", [Run(clips[1], 0, 2)], tmp_path)
    g, b = tmp_path / "train/B/blur_gamma/000001.png", tmp_path / "train/B/blur/000001.png"
    assert os.stat(g).st_ino != os.stat(b).st_ino and g.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("layout, parent", [("gopro", "sharp"), ("gopro", "x_blur_gamma"),
                                            ("reds", "blur"), ("reds", "old_sharp")])
def test_output_under_a_key_substring_is_refused(layout, parent, clips, tmp_path):
    out = tmp_path / parent / "data"
    with pytest.raises(ParameterError, match="substring"):
        write_layout(layout, [Run(clips[1], 0, 2)], out)
    assert not out.exists()


def test_cdvd_splits_long_runs_and_drops_short_ones(tmp_path):
    clip = make_clip(tmp_path / "src", "long", 240)
    out = tmp_path / "cdvd"
    report = write_layout("cdvd", [Run(clip, 5, 235), Run(clip, 236, 239)], out)
    assert report["runs_dropped"] == 1 and report["dropped"] == {"shorter than 5 frames": 1}
    # 230 frames in the fewest chunks of <= 100: three, near-equal.
    assert report["videos"] == ["long_000005", "long_000081", "long_000158"]
    counts = [len(os.listdir(out / "train/blur" / v)) for v in report["videos"]]
    assert counts == [76, 77, 77] and sum(counts) == 230
    pairs = cdvd(str(out / "train"))
    assert len(pairs) == 230
    for n, (b, s) in enumerate(pairs):  # consecutive chunks continue the clip
        np.testing.assert_array_equal(rgb(b), blurry(0, 5 + n))
        np.testing.assert_array_equal(rgb(s), sharp(0, 5 + n))


def test_dvd_drops_runs_shorter_than_13(clips, tmp_path):
    report = write_layout("dvd", [Run(clips[0], 0, 12), Run(clips[1], 0, 13)], tmp_path)
    assert report["dropped"] == {"shorter than 13 frames": 1} and report["videos"] == ["B"]


def test_dvd_name_and_names_that_would_break_pairing(clips, tmp_path):
    write_layout("dvd", [Run(clips[1], 0, 13)], tmp_path, name="mine", split="test")
    assert (tmp_path / "test_mine/B/input/00012.png").is_file()
    assert len(scan_layout("dvd", tmp_path, split="test")[0][1]) == 13
    with pytest.raises(ParameterError, match="no dots"):
        write_layout("dvd", [Run(clips[1], 0, 13)], tmp_path, name="my.data")
    with pytest.raises(ParameterError, match="takes no dataset name"):
        write_layout("gopro", [Run(clips[1], 0, 13)], tmp_path, name="x")
    with pytest.raises(ParameterError, match="splits train"):
        write_layout("srn", [Run(clips[1], 0, 13)], tmp_path, split="test")
    with pytest.raises(ParameterError, match="layout"):
        write_layout("basicsr", [], tmp_path)


def test_two_clips_with_the_same_sanitised_name_are_refused(tmp_path):
    a = make_clip(tmp_path / "1", "x y", 3)
    b = make_clip(tmp_path / "2", "x_y", 3)
    with pytest.raises(ParameterError, match="'x y' and 'x_y'"):
        write_layout("gopro", [Run(a, 0, 3), Run(b, 0, 3)], tmp_path / "out")


@pytest.mark.parametrize("name, expected", [("GOPR0372 07.00", "GOPR0372_07_00"),
                                            ("@eaDir", "_eaDir"), ("a/b", "a_b"),
                                            ("ok-name_1", "ok-name_1"), ("", "video")])
def test_sanitise_name(name, expected):
    assert sanitise_name(name) == expected


def test_small_frames_are_written_with_a_warning(clips, tmp_path):
    report = write_layout("gopro", [Run(clips[1], 0, 2)], tmp_path / "GOPRO_Large")
    assert report["warnings"] == ["B: 12x8 frames are too small for DeepDeblur-PyTorch's "
                                  "training crop, which needs 256 pixels or more on both sides"]
    report = write_layout("reds", [Run(clips[1], 0, 2)], tmp_path / "reds", split="val")
    assert report["warnings"] == ["DeepDeblur-PyTorch picks its reader by the dataset folder's "
                                  f"name: name {tmp_path / 'reds'} REDS"]


# -- resume and interruption -------------------------------------------------------------------


def test_rerun_writes_only_missing_files_and_no_duplicates(clips, tmp_path):
    write_layout("srn", runs_of(clips), tmp_path)
    before = (tmp_path / "datalist.txt").read_text()
    (tmp_path / "B/blur/000004.png").unlink()
    report = write_layout("srn", runs_of(clips), tmp_path)
    assert (report["frames_written"], report["frames_resumed"]) == (1, 38)
    assert (tmp_path / "datalist.txt").read_text() == before
    np.testing.assert_array_equal(rgb(tmp_path / "B/blur/000004.png"), blurry(1, 5))
    # A later call with other runs adds its lines after the existing ones.
    write_layout("srn", [Run(clips[0], 28, 30)], tmp_path)
    lines = (tmp_path / "datalist.txt").read_text().splitlines()
    assert lines[:39] == before.splitlines() and len(lines) == 41 and len(set(lines)) == 41


def test_interrupted_write_leaves_no_partial_file_and_resumes(clips, tmp_path, monkeypatch):
    real, calls = layouts.atomic_write_bytes, []

    def dies_on_the_20th(path, payload):
        calls.append(path)
        if len(calls) == 20:
            with layouts.atomic_path(path) as tmp:
                Path(tmp).write_bytes(payload[: len(payload) // 2])
                raise KeyboardInterrupt
        real(path, payload)

    monkeypatch.setattr(layouts, "atomic_write_bytes", dies_on_the_20th)
    with pytest.raises(KeyboardInterrupt):
        write_layout("cdvd", runs_of(clips), tmp_path)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(p.name.startswith(".") for p in files)
    assert all(cv2.imread(str(p)) is not None for p in files) and len(files) == 19
    monkeypatch.setattr(layouts, "atomic_write_bytes", real)
    report = write_layout("cdvd", runs_of(clips), tmp_path)
    assert report["frames_resumed"] == 9 and report["frames_written"] == 30
    assert len(cdvd(str(tmp_path / "train"))) == 39


# -- Animation-from-Blur -----------------------------------------------------------------------


def motion(k):
    """2 px/frame to the right on even frames, up on odd ones."""
    f = np.zeros((H, W, 2))
    f[..., 0 if k % 2 == 0 else 1] = 2.0 if k % 2 == 0 else -2.0
    return f


@pytest.fixture(scope="module")
def afb_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("afb"), "dance", 6, 2, subframes=7, flow=motion,
                     exposure=1.0)


def test_afb_round_trip(afb_clip, tmp_path):
    report = write_layout("afb", [Run(afb_clip, 1, 6)], tmp_path, name="synth")
    assert report["videos"] == ["dance"] and report["frames"] == 5
    assert (tmp_path / "synth_train_videos.yaml").read_text() == "- 'dance'\n"
    samples = afb_genblur(str(tmp_path / "synth"), tmp_path / "synth_train_videos.yaml")
    assert len(samples) == 5
    for i, (b, *gts) in enumerate(samples):
        np.testing.assert_array_equal(rgb(b), blurry(2, 1 + i))
        for j, g in enumerate(gts):
            np.testing.assert_array_equal(rgb(g), sub(2, 1 + i, j))
        v = tmp_path / "synth/dance"
        with open(v / "blur_anno" / f"{i:08d}.pkl", "rb") as f:
            assert pickle.load(f) == {"bbox": [0, 0, W, H]}
        trend = np.load(v / "trend+_avg" / f"{i:08d}_trend.npy")
        # Clip frame 1 + i moves right (even) -> (+1, -1), or up (odd) -> (-1, -1).
        expected = (1, -1) if (1 + i) % 2 == 0 else (-1, -1)
        assert trend.shape == (H // 2, W // 2, 2) and (trend == expected).all()
    scanned = scan_layout("afb", tmp_path, name="synth")
    assert [tuple(map(str, s)) for s in scanned[0][1]] == samples


def test_afb_video_lists_merge_per_split(afb_clip, tmp_path):
    write_layout("afb", [Run(afb_clip, 0, 2)], tmp_path)
    write_layout("afb", [Run(afb_clip, 0, 2)], tmp_path)
    write_layout("afb", [Run(afb_clip, 2, 4)], tmp_path, split="valid")
    assert (tmp_path / "b-aist++_train_videos.yaml").read_text() == "- 'dance'\n"
    assert (tmp_path / "b-aist++_valid_videos.yaml").read_text() == "- 'dance'\n"


def test_afb_baistpp_root_skips_40_frames_at_each_end(afb_clip, tmp_path):
    report = write_layout("afb", [Run(afb_clip, 0, 6)], tmp_path)  # default root b-aist++
    assert (tmp_path / "b-aist++/dance/blur/00000005.png").is_file()
    assert any("skips 40 frames at each end" in w for w in report["warnings"])
    assert scan_layout("afb", tmp_path) == []


def test_afb_needs_seven_subframes_flow_and_exposure(tmp_path):
    five = make_clip(tmp_path / "a", "five", 2, subframes=5, flow=motion, exposure=1.0)
    with pytest.raises(InputFileError, match="--subframes 7"):
        write_layout("afb", [Run(five, 0, 2)], tmp_path / "out")
    noflow = make_clip(tmp_path / "b", "noflow", 2, subframes=7, exposure=1.0)
    with pytest.raises(InputFileError, match="--flow-files npy"):
        write_layout("afb", [Run(noflow, 0, 2)], tmp_path / "out")
    noexp = make_clip(tmp_path / "c", "noexp", 2, subframes=7, flow=motion)
    with pytest.raises(InputFileError, match="exposure unknown"):
        write_layout("afb", [Run(noexp, 0, 2)], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # validated before anything was written


@pytest.mark.parametrize("exposure, decimate, moving", [(1.0, 1, False), (2.0, 1, True),
                                                        (1.0, 2, True)])
def test_afb_trend_uses_the_motion_within_the_exposure(exposure, decimate, moving, tmp_path):
    # 0.4 px per source frame: static over one frame (< 0.5 px), moving over two.
    slow = make_clip(tmp_path / "src", "slow", 1, subframes=7, exposure=exposure,
                     decimate=decimate, flow=lambda k: np.dstack([np.full((H, W), 0.4),
                                                                  np.zeros((H, W))]))
    write_layout("afb", [Run(slow, 0, 1)], tmp_path / "out", name="synth")
    trend = np.load(tmp_path / "out/synth/slow/trend+_avg/00000000_trend.npy")
    assert (trend == ((1, -1) if moving else (0, 0))).all()


# -- quantise_trend: known answers from the rule of consumers.md 5(b) --------------------------


@pytest.mark.parametrize("dx, dy, expected", [
    (3, 0, (1, -1)), (-3, 0, (-1, 1)), (0, 3, (1, 1)), (0, -3, (-1, -1)),
    (2, 2, (1, 1)), (2, -2, (1, -1)), (-2, 2, (-1, 1)), (-2, -2, (-1, -1)),
    (0.4, 0, (0, 0)), (0, 0, (0, 0)), (0.3, -0.3, (0, 0))])
def test_quantise_trend_directions(dx, dy, expected):
    flow = np.zeros((6, 8, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    t = quantise_trend(flow)
    assert t.dtype == np.int8 and t.shape == (3, 4, 2)
    assert (t == expected).all()


def test_quantise_trend_threshold_is_half_a_pixel_at_full_size():
    flow = np.zeros((2, 4, 2), np.float32)
    flow[:, :2, 0] = 0.5     # 0.25 px at half size: not below the 0.25 threshold
    flow[:, 2:, 0] = 0.49
    assert quantise_trend(flow)[0].tolist() == [[1, -1], [0, 0]]


def test_quantise_trend_downscales_by_area_and_averages_fields():
    flow = np.zeros((8, 8, 4), np.float32)
    flow[:, :4, 0] = 3.0      # field 1: left half right
    flow[:, :4, 2] = -1.0     # field 2: left half left; mean x = 1 px
    flow[:, 4:, 0], flow[:, 4:, 2] = 3.0, -3.0  # right half: fields cancel
    t = quantise_trend(flow)
    assert t.shape == (4, 4, 2)
    assert (t[:, :2] == (1, -1)).all() and (t[:, 2:] == 0).all()


def test_quantise_trend_odd_sizes_and_bad_input():
    assert quantise_trend(np.ones((9, 13, 2))).shape == (4, 6, 2)
    with pytest.raises(ParameterError, match="flow"):
        quantise_trend(np.ones((4, 4, 3)))
