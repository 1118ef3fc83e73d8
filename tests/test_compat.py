"""Tests for blursynth.compat, the reproduction of the original synthblur blur.

Expected results are built here with plain NumPy from the seed's algorithm as described in
``shared/research/seed-synthesis.md`` section 1.2, never with the code under test:

- with exact positions (``seed_rounding=False``) and a uniform integer flow ``s``, sub-frame
  ``k`` on each side is the centre frame shifted by ``floor(k s / 19)`` pixels, so the blur
  in the interior is the mean of 38 ``np.roll``-ed copies;
- with the original's arithmetic (``seed_rounding=True``) and a uniform flow, the target of a
  pixel depends on its column only through ``tx(x)`` and on its row only through ``ty(y)``, so
  "last writer in raster order wins" picks, for every target, the largest source row mapping
  to its row and the largest source column mapping to its column; the whole sub-frame,
  borders and clamping included, is then a pair of index arrays.

Frames are real photos from scikit-image. End-to-end tests (with Farneback) move the photo by
*half-integer* steps, 3.5 px per frame (integer rolls of the photo, box-downsampled by 2): with
integer motion Farneback returns e.g. 2.993 px for 3 px, and truncation toward zero turns that
into 2, so the expected blur would hinge on the estimator's bias rather than on the seed's
logic; 3.5 truncates to 3 for any estimate within 0.5 px.
"""
from __future__ import annotations

import math

import cv2
import numba
import numpy as np
import pytest
import skimage.data

from blursynth.compat import (
    SEED_EXPOSURE,
    SEED_FARNEBACK,
    seed_flows,
    seed_ratios,
    splat_average,
    synthblur_frame,
    synthblur_frames,
)
from blursynth.errors import ParameterError
from blursynth.flow import FARNEBACK_DEFAULTS

N_SIDE = 19  # sub-frames per side for the seed's steps = 20


def _photo(name: str = "chelsea") -> np.ndarray:
    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


def _uniform_flow(shape: tuple[int, ...], dx: float, dy: float, dtype=np.float32) -> np.ndarray:
    f = np.empty(tuple(shape[:2]) + (2,), dtype)
    f[..., 0], f[..., 1] = dx, dy
    return f


def _opencv_mean_u8(total: np.ndarray, n: int) -> np.ndarray:
    """cv::Mat::convertTo(CV_8U, 1.0 / n) on float32 sums: float32 product, round half even."""
    v = np.rint(total.astype(np.float32) * np.float32(1.0 / n))
    return np.clip(v, 0, 255).astype(np.uint8)


def _exact_blur_sum(cur: np.ndarray, sx: int, sy: int) -> np.ndarray:
    """Sum of the 38 sub-frames of the idealised seed model for uniform flows (-s, +s)."""
    total = np.zeros(cur.shape, np.int64)
    for k in range(1, N_SIDE + 1):
        for fx, fy in ((-sx, -sy), (sx, sy)):
            # Source x lands on x + floor(k f / 19): the sub-frame is cur shifted by that.
            total += np.roll(cur, ((k * fy) // N_SIDE, (k * fx) // N_SIDE), axis=(0, 1))
    return total


def _seed_targets(n: int, s: int, r: np.float32) -> np.ndarray:
    """The C++ ``clip(int(ratio * (x + s) + (1.0 - ratio) * x), 0, n)`` for x = 0 .. n - 1."""
    x = np.arange(n)
    part = (r * (x + s).astype(np.float32)).astype(np.float64)  # float32 product, then double
    t = np.trunc(part + (1.0 - np.float64(r)) * x).astype(np.int64)
    return np.clip(t, 0, n - 1)


def _last_writer(n: int, targets: np.ndarray) -> np.ndarray:
    """For each target index, the largest source index written to it (-1 for none)."""
    src = np.full(n, -1, np.int64)
    np.maximum.at(src, targets, np.arange(n))
    return src


def _seed_blur_sum_uniform(cur: np.ndarray, sx: int, sy: int) -> np.ndarray:
    """Sum of the 38 sub-frames with the original arithmetic, for uniform flows (-s, +s)."""
    h, w = cur.shape[:2]
    before, after = seed_ratios(20)
    total = np.zeros(cur.shape, np.int64)
    for ratios, (fx, fy) in ((before, (-sx, -sy)), (after, (sx, sy))):
        for r in ratios:
            rows = _last_writer(h, _seed_targets(h, fy, r))
            cols = _last_writer(w, _seed_targets(w, fx, r))
            sub = cur.copy()
            hit = (rows[:, None] >= 0) & (cols[None, :] >= 0)
            sub[hit] = cur[rows[:, None].clip(0), cols[None, :].clip(0)][hit]
            total += sub
    return total


def _half_step_clip(v: int, n: int = 3, name: str = "chelsea") -> np.ndarray:
    """``n`` frames of a photo translating right by ``v + 0.5`` px per frame."""
    big = _photo(name)
    h, w = big.shape[0] // 2 * 2, big.shape[1] // 2 * 2
    frames = []
    for t in range(n):
        b = np.roll(big[:h, :w], (2 * v + 1) * (t - n // 2), axis=1).astype(np.float32)
        frames.append(np.rint(cv2.resize(b, (w // 2, h // 2), interpolation=cv2.INTER_AREA)))
    return np.stack(frames).astype(np.uint8)


# --------------------------------------------------------------------------------------------


def test_parameters_are_the_seeds():
    assert SEED_FARNEBACK == FARNEBACK_DEFAULTS == {
        "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5,
        "poly_sigma": 1.2, "flags": 0}
    assert SEED_EXPOSURE == 2.0


def test_seed_ratios():
    before, after = seed_ratios()
    assert before.dtype == after.dtype == np.float32
    assert len(before) == len(after) == N_SIDE
    # before: 1, 18/19, ..., 1/19; after: 1/19, ..., 1 (the centre, 0, is in neither).
    assert before[0] == 1.0 and after[-1] == 1.0
    np.testing.assert_allclose(before, np.arange(19, 0, -1) / 19, atol=1e-6)
    np.testing.assert_allclose(after, np.arange(1, 20) / 19, atol=1e-6)
    assert 0.0 not in before and 0.0 not in after


def test_static_clip_exact_positions_is_unchanged():
    frames = np.repeat(_photo()[None, :120, :160], 5, axis=0)
    blurry, sharp = synthblur_frames(frames, seed_rounding=False)
    assert blurry.shape == sharp.shape == (3, 120, 160, 3)
    np.testing.assert_array_equal(sharp, frames[1:-1])
    np.testing.assert_array_equal(blurry, sharp)


def test_static_clip_with_seed_rounding_matches_the_original_arithmetic():
    # The original's mixed float32/float64 target computation moves about half the splats one
    # pixel up/left even at zero flow; compare with the separable NumPy model, whole frame.
    cur = _photo()[:120, :160]
    frames = np.repeat(cur[None], 3, axis=0)
    blurry, _ = synthblur_frames(frames)
    expected = _opencv_mean_u8(_seed_blur_sum_uniform(cur, 0, 0), 2 * N_SIDE)
    np.testing.assert_array_equal(blurry[0], expected)
    assert not np.array_equal(blurry[0], cur)


@pytest.mark.parametrize("v", [2, 5, 8])
def test_splat_uniform_integer_translation_matches_analytic_blur(v):
    cur = _photo()
    zero = np.zeros(cur.shape[:2] + (2,), np.int32)
    f = _uniform_flow(cur.shape, v, 0, np.int32)
    got = splat_average(cur, -f, f, seed_rounding=False)
    total = _exact_blur_sum(cur, v, 0)
    m = v + 1  # beyond this, np.roll wraps and the seed clamps instead
    inner = np.s_[m:-m, m:-m]
    # Within one code of the exact mean, and equal to OpenCV's rounding of it.
    assert np.abs(got.astype(np.float64) - total / 38.0)[inner].max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(got[inner], _opencv_mean_u8(total, 38)[inner])
    # Vertical motion is the same blur along the other axis.
    fy = _uniform_flow(cur.shape, 0, v, np.int32)
    got_y = splat_average(cur, -fy, fy, seed_rounding=False)
    np.testing.assert_array_equal(got_y[inner], _opencv_mean_u8(_exact_blur_sum(cur, 0, v), 38)[inner])
    # The blur is not the identity (the test would pass vacuously with zero flow otherwise).
    assert not np.array_equal(got, splat_average(cur, zero, zero, seed_rounding=False))


@pytest.mark.parametrize("sx,sy", [(3, 0), (7, -2), (-19, 4)])
def test_splat_uniform_flow_seed_rounding_whole_frame(sx, sy):
    # Whole frame: border clamping and last-writer-wins included.
    cur = _photo("coffee")[:150, :200]
    f = _uniform_flow(cur.shape, sx, sy, np.int32)
    got = splat_average(cur, -f, f)
    np.testing.assert_array_equal(got, _opencv_mean_u8(_seed_blur_sum_uniform(cur, sx, sy), 38))


def test_seed_rounding_only_matters_for_zero_flow_components():
    # k s / 19 is at least 1/19 away from an integer unless s = 0 (mod 19), so float32
    # rounding cannot change the floor there: both variants agree on the whole frame.
    cur = _photo("coffee")[:120, :160]
    f = _uniform_flow(cur.shape, 3, -5, np.int32)
    np.testing.assert_array_equal(splat_average(cur, -f, f),
                                  splat_average(cur, -f, f, seed_rounding=False))
    g = _uniform_flow(cur.shape, 0, -5, np.int32)
    assert not np.array_equal(splat_average(cur, -g, g),
                              splat_average(cur, -g, g, seed_rounding=False))


def test_float_flow_is_truncated_toward_zero():
    cur = _photo()[:100, :140]
    f = _uniform_flow(cur.shape, 4.7, -1.6)
    fi = _uniform_flow(cur.shape, 4, -1, np.int32)
    # trunc(-4.7) = -4 (not floor's -5), trunc(-1.6) = -1.
    np.testing.assert_array_equal(splat_average(cur, -f, f), splat_average(cur, -fi, fi))
    small = _uniform_flow(cur.shape, 0.99, -0.99)
    zero = np.zeros_like(fi)
    np.testing.assert_array_equal(splat_average(cur, small, -small), splat_average(cur, zero, zero))


@pytest.mark.parametrize("v", [4, 8])
def test_effective_exposure_is_two_frame_intervals(v):
    # A one-pixel bright line under uniform motion v: the blurred profile is the blur kernel.
    img = np.zeros((40, 101, 3), np.uint8)
    img[:, 50] = 255
    f = _uniform_flow(img.shape, v, 0, np.int32)
    prof = splat_average(img, -f, f, seed_rounding=False)[20, :, 0].astype(np.float64)
    support = np.flatnonzero(prof)
    # From the position in frame t - 1 (50 - v) to the position in frame t + 1 (50 + v).
    assert (support.min(), support.max()) == (50 - v, 50 + v)
    length = support.max() - support.min()
    assert length == 2 * v == SEED_EXPOSURE * v
    # Spread of a box of length 2 v (exposure 2): 2 v / sqrt(12); e = 1 would give half.
    x = np.arange(prof.size)
    mean = (prof * x).sum() / prof.sum()
    std = math.sqrt((prof * (x - mean) ** 2).sum() / prof.sum())
    assert std == pytest.approx(2 * v / math.sqrt(12), rel=0.12)
    assert abs(mean - 50) < 0.5


def test_synthblur_frame_farneback_half_pixel_translation():
    v = 3  # true motion 3.5 px/frame; truncated flows are -3 (to t - 1) and +3 (to t + 1)
    prev, cur, nxt = _half_step_clip(v)
    fp, fn = seed_flows(prev, cur, nxt)
    m = 24
    inner = np.s_[m:-m, m:-m]
    assert np.mean(fp[inner][..., 0].astype(int) == -v) > 0.99
    assert np.mean(fn[inner][..., 0].astype(int) == v) > 0.99
    assert np.mean(fn[inner][..., 1].astype(int) == 0) > 0.99
    # The frame function is exactly the splatting core applied to the seed's flows.
    np.testing.assert_array_equal(synthblur_frame(prev, cur, nxt),
                                  splat_average(cur, fp, fn))
    for rounding, total in ((False, _exact_blur_sum(cur, v, 0)),
                            (True, _seed_blur_sum_uniform(cur, v, 0))):
        got = synthblur_frame(prev, cur, nxt, seed_rounding=rounding).astype(np.float64)
        close = np.abs(got - total / 38.0)[inner] <= 1.0
        # A few pixels where Farneback is off by more than 0.5 px get another blur.
        assert close.mean() > 0.995, (rounding, close.mean())


def test_synthblur_frames_alignment_and_downscale():
    # Flat frames of different grey levels: the flow is zero, so with exact positions each
    # output is its centre frame, which shows which input it is centred on.
    frames = np.stack([np.full((48, 64, 3), 20 * i + 10, np.uint8) for i in range(6)])
    blurry, sharp = synthblur_frames(frames, seed_rounding=False)
    assert len(blurry) == len(sharp) == 4
    np.testing.assert_array_equal(sharp, frames[1:-1])
    np.testing.assert_array_equal(blurry, frames[1:-1])
    small, small_sharp = synthblur_frames(frames, downscale=0.5)
    assert small.shape == small_sharp.shape == (4, 24, 32, 3)
    b, s = synthblur_frames(frames[:2])
    assert b.shape == s.shape == (0, 48, 64, 3)


def test_result_does_not_depend_on_thread_count():
    cur = _photo("coffee")[:120, :160]
    rng = np.random.default_rng(1)
    fp = rng.normal(0, 4, cur.shape[:2] + (2,)).astype(np.float32)
    fn = rng.normal(0, 4, cur.shape[:2] + (2,)).astype(np.float32)
    ref = splat_average(cur, fp, fn)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(splat_average(cur, fp, fn), ref)
    finally:
        numba.set_num_threads(old)


def test_parameter_errors():
    cur = np.zeros((8, 8, 3), np.uint8)
    f = np.zeros((8, 8, 2), np.float32)
    with pytest.raises(ParameterError, match="steps"):
        splat_average(cur, f, f, steps=1)
    with pytest.raises(ParameterError, match="cur"):
        splat_average(cur.astype(np.float32), f, f)
    with pytest.raises(ParameterError, match="flow_next"):
        splat_average(cur, f, f[:4])
    bad = f.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ParameterError, match="flow_prev"):
        splat_average(cur, bad, f)
    with pytest.raises(ParameterError, match="downscale"):
        synthblur_frame(cur, cur, cur, downscale=0)
    with pytest.raises(ParameterError, match="one size"):
        synthblur_frame(cur, cur, np.zeros((8, 9, 3), np.uint8))
