from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from blursynth.errors import InputFileError, ParameterError
from blursynth.preview import (BACKGROUND, DIFF_GAIN, LABEL_HEIGHT, contact_sheet,
                               find_output_set, preview)
from blursynth.scenes import make_scene
from blursynth.video import write_video
from blursynth_cli.main import blursynth


def _read_png(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img[..., ::-1]


def _write_set(folder: Path, name: str, sharp: np.ndarray, blurry: np.ndarray,
               flow: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / f"{name}_sharp.mp4", sharp, 30)
    write_video(folder / f"{name}_blurry.mp4", blurry, 30)
    if flow:  # at half size, like flowblur's (the flow's own resolution)
        half = np.full((len(sharp), sharp.shape[1] // 2, sharp.shape[2] // 2, 3), 128, np.uint8)
        write_video(folder / f"{name}_flow.mp4", half, 30)
    return folder / f"{name}_blurry.mp4"


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    # Textured and different in every frame, so a tile shows which frame it came from.
    return make_scene("translation", (32, 48), 3.0).frames(5)


# -- contact_sheet ---------------------------------------------------------------------------


def test_contact_sheet_layout_exact():
    a = np.full((10, 10, 3), 10, np.uint8)
    b = np.full((10, 10, 3), 200, np.uint8)
    s = contact_sheet([(a, b)], gap=4)
    assert s.shape == (18, 32, 3) and s.dtype == np.uint8
    assert (s[4:14, 4:14] == 10).all()
    assert (s[4:14, 18:28] == 200).all()
    # Border and the gap between the tiles are background.
    assert (s[:4] == BACKGROUND).all() and (s[14:] == BACKGROUND).all()
    assert (s[:, 14:18] == BACKGROUND).all() and (s[:, 28:] == BACKGROUND).all()


def test_contact_sheet_labels_and_uneven_sizes():
    grey = np.full((6, 8), 99, np.uint8)  # grey input becomes RGB
    big = np.full((10, 12, 3), 7, np.uint8)
    s = contact_sheet([(grey, big), (big, grey)], labels=["left", "right"], gap=2)
    top = 2 + LABEL_HEIGHT
    # Columns are as wide as their widest tile (12), rows as tall as their tallest (10).
    assert s.shape == (top + 10 + 2 + 10 + 2, 2 + 12 + 2 + 12 + 2, 3)
    assert (s[top:top + 6, 2:10] == 99).all()
    assert (s[top:top + 6, 10:14] == BACKGROUND).all()  # rest of the cell beside the small tile
    assert (s[top + 12:top + 22, 2:14] == 7).all()
    strip = s[2:top, 2:14]
    assert strip.max() > 200  # white label text drawn in the strip
    assert (s[top:, :] != 255).all()  # and nowhere else


@pytest.mark.parametrize("rows, labels, message", [
    ([], None, "at least one row"),
    ([(np.zeros((4, 4, 3), np.uint8),), (np.zeros((4, 4, 3), np.uint8),) * 2], None, "every row"),
    ([(np.zeros((4, 4, 3), np.float32),)], None, "uint8"),
    ([(np.zeros((4, 4, 3), np.uint8),)], ["a", "b"], "labels"),
])
def test_contact_sheet_rejects_bad_input(rows, labels, message):
    with pytest.raises(ParameterError, match=message):
        contact_sheet(rows, labels=labels)


# -- preview ---------------------------------------------------------------------------------


def test_preview_static_clip_layout_and_black_difference(tmp_path, frames):
    blurry = _write_set(tmp_path, "clip", frames, frames)  # blurry == sharp: nothing moved
    out = preview(tmp_path, n=3)  # the folder form
    assert out == tmp_path / "clip_preview.png"
    sheet = _read_png(out)
    h, w, gap = 32, 48, 4
    top = gap + LABEL_HEIGHT
    assert sheet.shape == (top + 3 * (h + gap), gap + 4 * (w + gap), 3)
    for r, i in enumerate([0, 2, 4]):  # three rows evenly spaced over five frames
        y = top + r * (h + gap)
        cell = lambda c: sheet[y:y + h, gap + c * (w + gap):gap + c * (w + gap) + w]  # noqa: E731
        np.testing.assert_array_equal(cell(0), frames[i])  # sharp
        np.testing.assert_array_equal(cell(1), frames[i])  # blurry
        assert np.abs(cell(2).astype(int) - 128).max() <= 2  # flow video (lossy), upscaled
        assert (cell(3) == 0).all()  # difference: all black
    assert preview(blurry, n=3) == out  # the blurry-video form finds the same set


def test_preview_difference_is_amplified(tmp_path, frames):
    blurry = frames.copy()
    blurry[:, :, :, 0] = np.clip(frames[:, :, :, 0].astype(int) + 10, 0, 255)
    _write_set(tmp_path, "d", frames, blurry, flow=False)
    sheet = _read_png(preview(tmp_path / "d_blurry.mp4", n=1))
    top, h, w = 4 + LABEL_HEIGHT, 32, 48
    assert sheet.shape[1] == 4 + 3 * (w + 4)  # no flow video: three columns
    diff = sheet[top:top + h, 4 + 2 * (w + 4):4 + 2 * (w + 4) + w]
    expected_red = np.minimum(255, DIFF_GAIN * (blurry[0, ..., 0].astype(int) - frames[0, ..., 0]))
    np.testing.assert_array_equal(diff[..., 0], expected_red)
    assert (diff[..., 1:] == 0).all()


def test_preview_downscales_wide_frames(tmp_path):
    wide = np.random.default_rng(0).integers(0, 256, (2, 40, 1000, 3), dtype=np.uint8)
    _write_set(tmp_path, "w", wide, wide)
    sheet = _read_png(preview(tmp_path, n=2, out=tmp_path / "sheet.png"))
    scale = (1600 - 4 * 5) / (4 * 1000)
    tw, th = round(1000 * scale), round(40 * scale)
    assert sheet.shape == (4 + LABEL_HEIGHT + 2 * (th + 4), 4 + 4 * (tw + 4), 3)
    assert sheet.shape[1] <= 1600


def test_find_output_set_errors(tmp_path, frames):
    _write_set(tmp_path / "two", "a", frames[:2], frames[:2], flow=False)
    _write_set(tmp_path / "two", "b", frames[:2], frames[:2], flow=False)
    with pytest.raises(ParameterError, match="found 2: a_blurry.mp4, b_blurry.mp4"):
        find_output_set(tmp_path / "two")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="found 0"):
        find_output_set(tmp_path / "empty")
    with pytest.raises(ParameterError, match="named 'a_sharp.txt'"):
        (tmp_path / "a_sharp.txt").write_text("x")
        find_output_set(tmp_path / "a_sharp.txt")
    (tmp_path / "two" / "b_sharp.mp4").unlink()
    with pytest.raises(InputFileError, match="b_sharp.mp4: missing: the sharp video"):
        find_output_set(tmp_path / "two" / "b_blurry.mp4")
    got = find_output_set(tmp_path / "two" / "a_sharp.mp4")  # any member names the set
    assert got["name"] == "a" and got["flow"] is None


def test_preview_cli(tmp_path, frames):
    blurry = _write_set(tmp_path, "c", frames, frames)
    out = tmp_path / "p.png"
    r = CliRunner().invoke(blursynth, ["preview", str(blurry), "--frames", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert str(out) in r.output
    assert _read_png(out).shape[0] == 4 + LABEL_HEIGHT + 2 * (32 + 4)
    r = CliRunner().invoke(blursynth, ["preview", str(tmp_path / "c_sharp.mp4"), "--out",
                                       str(tmp_path / "p.jpg")])
    assert r.exit_code == 1 and "expected a .png file" in r.output
