"""Finding clips (flowblur outputs, frame folders, pair folders) and reading their frames."""
import json

import cv2
import numpy as np
import pytest
from skimage import data

from blursynth.clips import find_clips, read_image
from blursynth.errors import InputFileError
from blursynth.video import write_video


def _frames(n, h=48, w=64, img=None):
    img = data.astronaut() if img is None else img
    return np.stack([img[50:50 + h, 80 + 2 * k:80 + 2 * k + w] for k in range(n)])


def _png_dir(d, frames):
    d.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:06d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))


def _flowblur_folder(tmp_path):
    """A folder like flowblur's output: lossless videos and a manifest (gamma 2.2, exposure
    0.5, a skipped stretch of source frames)."""
    tmp_path.mkdir(exist_ok=True)
    sharp = _frames(6)
    blurry = np.ascontiguousarray(sharp[:, :, ::-1])  # any content that differs
    write_video(tmp_path / "a_blurry.mp4", blurry, fps=25)
    write_video(tmp_path / "a_sharp.mp4", sharp, fps=25)
    (tmp_path / "a_subframes").mkdir()
    recs = [{"stage": "flowblur", "item": f"a/{i:06d}", "status": "ok", "video": "a",
             "output_index": i, "centre_frame": c} for i, c in enumerate([1, 2, 3, 7, 8, 9])]
    recs.append({"stage": "flowblur", "item": "a", "status": "ok", "frames_out": 6,
                 "fps_out": 12.5, "params": {"crf": "gamma:2.2", "exposure": 0.5}})
    (tmp_path / "flowblur.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return blurry, sharp


def test_flowblur_output_with_manifest(tmp_path):
    blurry, sharp = _flowblur_folder(tmp_path)
    (clip,) = find_clips([tmp_path])
    assert (clip.name, clip.n_frames, clip.height, clip.width) == ("a", 6, 48, 64)
    assert (clip.crf, clip.exposure, clip.fps) == ("gamma:2.2", 0.5, 12.5)
    assert clip.source_frames == [1, 2, 3, 7, 8, 9]
    assert clip.subframes_dir == tmp_path / "a_subframes" and clip.flow_dir is None
    got = {i: (b, s) for i, b, s in clip.frames([4, 1])}
    assert sorted(got) == [1, 4]
    for i in (1, 4):  # lossless videos: exact frames
        assert np.array_equal(got[i][0], blurry[i]) and np.array_equal(got[i][1], sharp[i])


def test_pair_folders_and_frame_folders(tmp_path):
    s = _frames(3)
    _png_dir(tmp_path / "x" / "blurry", s[::-1])
    _png_dir(tmp_path / "x" / "sharp", s)
    _png_dir(tmp_path / "y" / "c_blurry", s)
    _png_dir(tmp_path / "y" / "c_sharp", s)
    clips = find_clips([tmp_path])
    assert [c.name for c in clips] == ["c", "x"]
    x = clips[1]
    assert x.crf == "srgb" and x.source_frames is None and not x.is_video
    (i, b, sh), = list(x.frames([0]))
    assert np.array_equal(b, s[2]) and np.array_equal(sh, s[0])


def test_read_image_grey_alpha_16bit(tmp_path):
    g = data.camera()[:20, :30]
    cv2.imwrite(str(tmp_path / "g.png"), g)
    assert np.array_equal(read_image(tmp_path / "g.png"), np.repeat(g[:, :, None], 3, 2))
    rgba = np.dstack([data.astronaut()[:20, :30], np.full((20, 30), 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert np.array_equal(read_image(tmp_path / "a.png"), rgba[:, :, :3])
    cv2.imwrite(str(tmp_path / "w.png"), (g.astype(np.uint16) * 257))
    assert np.array_equal(read_image(tmp_path / "w.png")[:, :, 0], g)


def test_errors_name_the_file(tmp_path):
    write_video(tmp_path / "lonely_blurry.mp4", _frames(2), fps=25)
    with pytest.raises(InputFileError, match=r"lonely_blurry\.mp4: has no sharp partner"):
        find_clips([tmp_path])
    with pytest.raises(InputFileError, match=r"nothing: no such file"):
        find_clips([tmp_path / "nothing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match=r"empty: holds no clips"):
        find_clips([tmp_path / "empty"])
    with pytest.raises(InputFileError, match=r"notes\.txt: expected a NAME_blurry\.mp4"):
        (tmp_path / "notes.txt").write_text("x")
        find_clips([tmp_path / "notes.txt"])

    d = tmp_path / "p"
    _png_dir(d / "blurry", _frames(2))
    _png_dir(d / "sharp", _frames(3))
    with pytest.raises(InputFileError, match=r"image names differ .* e\.g\. 000002\.png"):
        find_clips([d])

    q = tmp_path / "q"
    q.mkdir()
    write_video(q / "s_blurry.mp4", _frames(2), fps=25)
    write_video(q / "s_sharp.mp4", _frames(2, h=40), fps=25)
    with pytest.raises(InputFileError, match=r"s_sharp\.mp4: is 64x40, its blurry partner 64x48"):
        find_clips([q / "s_blurry.mp4"])


def test_duplicate_clip_names(tmp_path):
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
        write_video(tmp_path / sub / "v_blurry.mp4", _frames(2), fps=25)
        write_video(tmp_path / sub / "v_sharp.mp4", _frames(2), fps=25)
    with pytest.raises(InputFileError, match="clip name 'v' is also used by"):
        find_clips([tmp_path])


def test_short_sharp_video_is_reported(tmp_path):
    write_video(tmp_path / "v_blurry.mp4", _frames(4), fps=25)
    write_video(tmp_path / "v_sharp.mp4", _frames(2), fps=25)
    (clip,) = find_clips([tmp_path])
    clip.n_frames = 4
    with pytest.raises(InputFileError, match=r"v_sharp\.mp4: ends after 2 frames, expected 4"):
        list(clip.frames())


def test_shaken_clips_keep_crf_exposure_and_source_frames(tmp_path):
    from blursynth.shake import ShakeParams
    from blursynth.shake_files import shake_clips

    _flowblur_folder(tmp_path / "src")
    shake_clips([tmp_path / "src"], tmp_path / "out", ShakeParams(model="line", sizes=(5,)))
    (clip,) = find_clips([tmp_path / "out"])
    assert (clip.name, clip.n_frames, clip.crf, clip.exposure) == ("a", 6, "gamma:2.2", 0.5)
    assert clip.source_frames == [1, 2, 3, 7, 8, 9]
