"""Known-answer tests of the compute kernels in blursynth_ext (reference, CPU, CUDA simulator)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from blursynth.crf import encode_u8, get_crf
from blursynth_ext.colorwheel import color_cpu, color_reference
from blursynth_ext.dispatch import prefilter, upsample2
from blursynth_ext.encode import encode_cpu, encode_reference, threshold_table
from blursynth_ext.interp import (TAU, prefilter_cpu, prefilter_reference, sample_reference,
                                  upsample2_cpu, upsample2_reference)
from blursynth_ext.warpsum import SEGMENT, warpsum_cpu, warpsum_reference


def photo(h=48, w=64):
    from skimage import data

    img = data.astronaut()[100:100 + h, 150:150 + w].astype(np.float32) / 255.0
    return np.ascontiguousarray(img)


def const_flow(h, w, u, v, q=1.0):
    f = np.zeros((h, w, 5), np.float32)
    f[..., 0], f[..., 1], f[..., 2] = u, v, q
    return f


# -- shifted-linear interpolation ---------------------------------------------------------------

def test_prefilter_keeps_constants_and_interpolates_samples():
    c = prefilter_reference(np.full((9, 11, 3), 0.37, np.float32))
    assert np.allclose(c, 0.37, atol=1e-6)
    img = photo()
    coef = prefilter_reference(img)
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    # f(n) = tau c[n-1] + (1 - tau) c[n] = f[n]: the interpolant passes through the samples.
    assert np.abs(sample_reference(coef, xx, yy) - img).max() < 1e-5


def test_prefilter_cpu_matches_reference():
    img = np.random.default_rng(1).random((23, 1031, 3)).astype(np.float32)  # > one column band
    assert np.abs(prefilter_cpu(img) - prefilter_reference(img)).max() < 1e-5
    codes = np.random.default_rng(2).integers(0, 256, (17, 29, 3), dtype=np.uint8)
    lut = get_crf("srgb").decode_lut()
    assert np.abs(prefilter_cpu(codes, lut=lut) - prefilter_reference(lut[codes])).max() < 1e-5


def test_shifted_linear_beats_bilinear_on_a_smooth_signal():
    # A band-limited signal sampled at half-pixel offsets: shifted-linear must be far closer to
    # the truth than plain bilinear interpolation (Blu et al. 2004: near-cubic accuracy).
    x = np.arange(64, dtype=np.float64)
    f = lambda t: np.sin(2 * np.pi * t / 7.0)  # noqa: E731
    img = np.repeat(np.repeat(f(x)[None, :, None], 4, 0), 1, 2).astype(np.float32)
    xs = np.arange(8, 56) + 0.5
    ys = np.full_like(xs, 2.0)
    truth = f(xs)
    shifted = sample_reference(prefilter_reference(img), xs, ys)[:, 0]
    plain = sample_reference(img, xs + TAU, ys)[:, 0]  # tau cancels: plain bilinear
    err_shifted = np.abs(shifted - truth).max()
    err_plain = np.abs(plain - truth).max()
    assert err_shifted < 0.4 * err_plain


# -- exact encoding -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["srgb", "gamma:2.2", "linear", "exp:7"])
def test_encode_kernels_round_exactly(spec):
    crf = get_crf(spec)
    thr = crf.thresholds()
    rng = np.random.default_rng(2)
    # Random values plus every threshold and its float32 neighbours: the hard cases.
    v = np.concatenate([rng.random(5000).astype(np.float32), thr,
                        np.nextafter(thr, np.float32(0)), np.nextafter(thr, np.float32(1)),
                        np.float32([0.0, 1.0, -0.5, 1.5])])
    want = encode_u8(np.clip(v, 0, 1), crf)
    assert np.array_equal(encode_reference(v, thr), want)
    assert np.array_equal(encode_cpu(v, thr, threshold_table(thr)), want)


def test_encode_scale_divides_accumulated_weight():
    crf = get_crf("srgb")
    thr = crf.thresholds()
    lin = crf.decode_lut()[np.arange(256)]
    # Four equal contributions of weight 0.25 each, accumulated, then scaled back.
    acc = (lin * 0.25 * 4).astype(np.float32) * 3.0
    assert np.array_equal(encode_cpu(acc, thr, threshold_table(thr), 1.0 / 3.0), np.arange(256))


def test_upsample2_keeps_the_samples_and_fills_quadratics_exactly():
    # Keys' cubic (a = -1/2) reproduces quadratics: the half-way samples of a quadratic image
    # are the quadratic there (away from the repeated borders); the whole ones are the input.
    yy, xx = np.mgrid[:12, :15].astype(np.float64)
    img = np.stack([0.1 + 0.01 * xx * xx, 0.2 + 0.02 * xx * yy, 0.3 + 0.005 * yy * yy], -1)
    up = upsample2_reference(img)
    assert up.shape == (23, 29, 3)
    np.testing.assert_allclose(up[0::2, 0::2], img, atol=1e-6)
    y2, x2 = np.mgrid[:23, :29] / 2.0
    want = np.stack([0.1 + 0.01 * x2 * x2, 0.2 + 0.02 * x2 * y2, 0.3 + 0.005 * y2 * y2], -1)
    np.testing.assert_allclose(up[2:-2, 2:-2], want[2:-2, 2:-2], atol=1e-5)
    assert np.abs(up[1:-1:2, 2:-2] - (up[0:-2:2, 2:-2] + up[2::2, 2:-2]) / 2).max() > 1e-3


@pytest.mark.parametrize("shape", [(9, 13, 3), (4, 1, 3), (3, 2, 3), (5, 3, 1), (1, 4, 3)])
def test_upsample2_cpu_matches_reference_through_the_lut(shape):
    # Narrow frames: both borders' clamps meet.
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    lut = (np.arange(256, dtype=np.float32) / 255) ** 2.2
    np.testing.assert_allclose(upsample2_cpu(img, lut=lut), upsample2_reference(lut[img]),
                               atol=2e-6)


@pytest.mark.parametrize("device", ["cpu", "numpy"])
def test_sampled_frames_are_written_into_out_when_given(device):
    img = np.random.default_rng(8).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    lut = get_crf("srgb").decode_lut()
    for fn, shape in ((upsample2, (17, 25, 3)), (prefilter, (9, 13, 3))):
        want = fn(img, lut=lut, device=device)
        out = np.full(shape, np.nan, np.float32)  # stale contents must not show through
        assert fn(img, lut=lut, out=out, device=device) is out
        np.testing.assert_array_equal(out, want)
        with pytest.raises(ValueError, match="out"):
            fn(img, lut=lut, out=np.empty(shape[:2] + (4,), np.float32), device=device)


def test_flow_colours_cpu_match_reference():
    # float64 arithmetic in both, libm's atan2 against NumPy's: the same truncated codes.
    f = np.random.default_rng(9).normal(0, 6, (37, 53, 2)).astype(np.float32)
    f[0, 0, 0], f[1, 1, 1], f[2, 2] = np.nan, np.inf, 0.0
    f[3, :, 0], f[3, :, 1] = np.linspace(-12, 12, 53), -1e-7  # along the wheel's wrap
    want = color_reference(f, 10.0)
    np.testing.assert_array_equal(color_cpu(f, 10.0), want)
    assert (want[0, 0] == 0).all() and (want[2, 2] == 255).all()


# -- warpsum --------------------------------------------------------------------------------------

def _run(fn, ia, ib, fab, fba, times, weights, targets, n=1, size=None, **kw):
    acc = np.zeros((n,) + (size or ia.shape[:2]) + (3,), np.float32)
    fn(ia, ib, fab, fba, np.float32(times), np.float32(weights), np.int64(targets), acc, **kw)
    return acc


@pytest.mark.parametrize("fn", [warpsum_reference, warpsum_cpu])
@pytest.mark.parametrize("hard", [0, 1])
@pytest.mark.parametrize("cubic,up", [(False, 1), (True, 1), (False, 2)])
def test_constant_image_stays_constant(fn, hard, cubic, up):
    h, w = 20, 30
    ia = np.full((up * (h - 1) + 1, up * (w - 1) + 1, 3), 0.3, np.float32)
    rng = np.random.default_rng(3)
    fab = np.dstack([rng.normal(0, 3, (10, 15, 2)), rng.random((10, 15, 3))]).astype(np.float32)
    fba = np.dstack([rng.normal(0, 3, (10, 15, 2)), rng.random((10, 15, 3))]).astype(np.float32)
    times = [0.1, 0.4, 0.6, 0.9]
    acc = _run(fn, ia, ia.copy(), fab, fba, times, [0.25] * 4, [0] * 4,
               hard=np.full((10, 15), hard, np.uint8), cubic=cubic, up=up, size=(h, w))
    assert np.abs(acc[0] - 0.3).max() < 1e-6


@pytest.mark.parametrize("fn", [warpsum_reference, warpsum_cpu])
def test_translation_gives_the_shifted_frames(fn):
    # Motion of (4, 2) px per frame, sub-frame at s = 0.25. Smooth path: from the nearer frame
    # a alone, at x - (1, 0.5), i.e. the mean of two rows one column left. Iterated path: the
    # same where both sides agree (consistent paths, visibility 1); where neither is sure the
    # point is seen in the other frame (visibility 0.8 on both), from a cross-faded
    # (0.75 / 0.25) with b at x + (3, 1.5). The frames are the same picture, so the three differ.
    img = photo()
    h, w = img.shape[:2]
    a = 0.5 * (img[0:h - 3, 0:w - 4] + img[1:h - 2, 0:w - 4])      # at (x - 1, y - 0.5)
    b = 0.5 * (img[2:h - 1, 4:w] + img[3:h, 4:w])                  # at (x + 3, y + 1.5)
    inner = (0, slice(1, h - 2), slice(1, w - 3))
    for q, want in ((1.0, a), (0.8, 0.75 * a + 0.25 * b)):
        fab = const_flow(h, w, 4.0, 2.0, q)
        fba = const_flow(h, w, -4.0, -2.0, q)
        smooth = _run(fn, img, img, fab, fba, [0.25], [1.0], [0], hard=np.zeros((h, w), np.uint8))
        hard = _run(fn, img, img, fab, fba, [0.25], [1.0], [0], hard=np.ones((h, w), np.uint8))
        assert np.abs(smooth[inner] - a).max() < 1e-5
        assert np.abs(hard[inner] - want).max() < 1e-5
    assert np.abs(a - b).max() > 0.1


@pytest.mark.parametrize("fn", [warpsum_reference, warpsum_cpu])
@pytest.mark.parametrize("hard", [0, 1])
def test_cubic_sampling_reproduces_quadratics(fn, hard):
    # Keys' cubic (a = -1/2) reproduces polynomials up to degree 2: a quadratic image moving
    # by F = (2.3, -1.7) px per frame, sub-frame at s = 0.3, must come out as the quadratic at
    # x - s F exactly (away from the clamped borders), on the smooth and the iterated path.
    # Shifted-linear interpolation does not reproduce it (checked too, so the test can tell).
    h, w, u, v, s = 30, 40, 2.3, -1.7, 0.3
    yy, xx = np.mgrid[:h, :w].astype(np.float64)

    def quad(x, y):
        return np.stack([0.4 + 2e-3 * x * x, 0.3 + 3e-3 * (x - y) ** 2, 0.2 + 1e-3 * x * y], -1)

    ia, ib = quad(xx, yy).astype(np.float32), quad(xx - u, yy - v).astype(np.float32)
    fab, fba = const_flow(h, w, u, v), const_flow(h, w, -u, -v)
    want = quad(xx - s * u, yy - s * v)[6:-6, 6:-6]
    mask = np.full((h, w), hard, np.uint8)
    cubic = _run(fn, ia, ib, fab, fba, [s], [1.0], [0], hard=mask, cubic=True)[0]
    linear = _run(fn, prefilter_reference(ia), prefilter_reference(ib), fab, fba, [s], [1.0],
                  [0], hard=mask, shift=TAU)[0]
    assert np.abs(cubic[6:-6, 6:-6] - want).max() < 1e-5
    assert np.abs(linear[6:-6, 6:-6] - want).max() > 4e-5


@pytest.mark.parametrize("fn", [warpsum_reference, warpsum_cpu])
@pytest.mark.parametrize("hard", [0, 1])
def test_upsampled_frames_are_sampled_at_twice_the_position(fn, hard):
    # Motion of (4, 2) px per frame, sub-frame at s = 0.25: the smooth path reads frame a at
    # x - (1, 0.5), which in the 2x upsampled frame is the sample (2 y - 1, 2 x - 2); the
    # iterated path, with the sides unsure of each other (visibility 0.8), cross-fades
    # (0.75 / 0.25) with b at x + (3, 1.5): (2 y + 3, 2 x + 6).
    img = photo()
    h, w = img.shape[:2]
    ua, ub = upsample2_reference(img), upsample2_reference(img[::-1])
    got = _run(fn, ua, ub, const_flow(h, w, 4.0, 2.0, 0.8), const_flow(h, w, -4.0, -2.0, 0.8),
               [0.25], [1.0], [0], hard=np.full((h, w), hard, np.uint8), up=2, size=(h, w))[0]
    ys, xs = np.mgrid[1:h - 2, 1:w - 4]
    want = ua[2 * ys - 1, 2 * xs - 2]
    if hard:
        want = 0.75 * want + 0.25 * ub[2 * ys + 3, 2 * xs + 6]
    assert np.abs(got[1:h - 2, 1:w - 4] - want).max() < 1e-5


def test_frames_must_match_the_output_size_and_up():
    ia = np.zeros((9, 11, 3), np.float32)
    f = const_flow(5, 6, 1.0, 0.0)
    with pytest.raises(ValueError, match="up"):
        _run(warpsum_cpu, ia, ia, f, f, [0.5], [1.0], [0], up=2, size=(9, 11))
    with pytest.raises(ValueError, match="up"):
        _run(warpsum_cpu, ia, ia, f, f, [0.5], [1.0], [0], up=2, cubic=True, size=(5, 6))
    _run(warpsum_cpu, ia, ia, f, f, [0.5], [1.0], [0], up=2, size=(5, 6))  # (2 (5-1)+1, ...)


@pytest.mark.parametrize("cubic,up", [(False, 1), (True, 1), (False, 2)])
@pytest.mark.parametrize("hard_fraction", [0.0, 0.5, 1.0])
def test_cpu_kernel_matches_reference(hard_fraction, cubic, up):
    rng = np.random.default_rng(4)
    H, W, h, w = 26, 34, 13, 17
    ia = rng.random((up * (H - 1) + 1, up * (W - 1) + 1, 3)).astype(np.float32)
    ib = rng.random(ia.shape).astype(np.float32)
    fab = np.dstack([rng.normal(0, 2, (h, w, 2)), rng.random((h, w, 1)),
                     rng.normal(0, 0.2, (h, w, 2))]).astype(np.float32)
    fba = np.dstack([rng.normal(0, 2, (h, w, 2)), rng.random((h, w, 1)),
                     rng.normal(0, 0.2, (h, w, 2))]).astype(np.float32)
    hard = (rng.random((h, w)) < hard_fraction).astype(np.uint8)
    times = [0.9, 0.05, 0.3, 0.5, 0.7]
    args = (ia, ib, fab, fba, times, [0.2, 0.1, 0.3, 1.0, 0.4], [0, 1, 0, 2, 1])
    kw = dict(n=3, hard=hard, shift=TAU if up == 1 else 0.0, cubic=cubic, up=up, size=(H, W))
    ref = _run(warpsum_reference, *args, **kw)
    cpu = _run(warpsum_cpu, *args, **kw)
    assert np.abs(ref - cpu).max() < 2e-5
    assert np.abs(ref).max() > 0.1  # something was accumulated


@pytest.mark.parametrize("cubic,up", [(False, 1), (True, 1), (False, 2)])
def test_cpu_kernel_matches_reference_with_sets_per_piece(cubic, up):
    rng = np.random.default_rng(7)
    H, W, h, w = 9, 2 * SEGMENT + 30, 5, 100
    ia = rng.random((up * (H - 1) + 1, up * (W - 1) + 1, 3)).astype(np.float32)
    ib = rng.random(ia.shape).astype(np.float32)
    fab, fba = (np.dstack([rng.normal(0, 2, (h, w, 2)), rng.random((h, w, 1)),
                           rng.normal(0, 0.2, (h, w, 2))]).astype(np.float32) for _ in "ab")
    hard = (rng.random((h, w)) < 0.3).astype(np.uint8)
    sets = [([0.3, 0.8], [0.5, 0.5], [0, 1]), ([0.6], [1.0], [1]), ([0.1, 0.2, 0.9], [0.3] * 3,
                                                                    [0, 0, 1])]
    levels = rng.integers(0, 3, (H, 3))
    args = (ia, ib, fab, fba, [0.9, 0.05, 0.5], [0.2, 0.1, 0.3], [0, 1, 1])
    kw = dict(n=2, hard=hard, smooth=(levels, sets), shift=TAU if up == 1 else 0.0, cubic=cubic,
              up=up, size=(H, W))
    ref = _run(warpsum_reference, *args, **kw)
    assert np.abs(ref - _run(warpsum_cpu, *args, **kw)).max() < 5e-5
    assert np.abs(ref - _run(warpsum_reference, *args, **{**kw, "smooth": None})).max() > 0.05


@pytest.mark.parametrize("fn", [warpsum_reference, warpsum_cpu])
def test_each_row_piece_uses_its_own_sample_set(fn):
    # A photo moving (4, 2) px per frame, 2.5 pieces wide: b(x) = img(x), a(x) = img(x + (4, 2)).
    # Smooth pixels take their piece's set: one sample at s = 0.25 (a at x - (1, 0.5)), or two
    # at s = 0.25 and 0.75 (and b at x + (1, 0.5)). Hard pixels take the main set whatever
    # their piece: s = 0.5, where a at x - (2, 1) and b at x + (2, 1) agree.
    h, w = 12, 2 * SEGMENT + SEGMENT // 2
    img = photo(h + 8, w + 8)
    ia, ib = np.ascontiguousarray(img[2:h + 2, 4:w + 4]), np.ascontiguousarray(img[:h, :w])
    one = 0.5 * (img[1:h + 1, 3:w + 3] + img[2:h + 2, 3:w + 3])
    two = 0.5 * one + 0.25 * (img[0:h, 1:w + 1] + img[1:h + 1, 1:w + 1])
    main = img[1:h + 1, 2:w + 2]
    levels = np.zeros((h, 3), np.int64)
    levels[:, 1] = 1
    levels[4:, 2] = 1
    sets = [([0.25], [1.0], [0]), ([0.75, 0.25], [0.5, 0.5], [0, 0])]
    hard = np.zeros((h, w), np.uint8)
    hard[:, 20:30] = 1
    got = _run(fn, ia, ib, const_flow(h, w, 4.0, 2.0), const_flow(h, w, -4.0, -2.0), [0.5],
               [1.0], [0], hard=hard, smooth=(levels, sets))[0]
    want = np.where(np.repeat(levels, SEGMENT, 1)[:, :w, None] == 0, one, two)
    want[:, 20:30] = main[:, 20:30]
    assert np.abs(got - want)[2:h - 2, 4:w - 4].max() < 1e-5
    # The sets really differ there (the test could tell one from another).
    assert min(np.abs(one - two).max(), np.abs(one - main).max()) > 0.05


def test_smooth_sets_are_checked():
    ia = np.zeros((4, 2 * SEGMENT + 1, 3), np.float32)
    f = const_flow(4, 2 * SEGMENT + 1, 1.0, 0.0)
    sets = [([0.5], [1.0], [0])]
    with pytest.raises(ValueError, match="levels: expected shape"):
        _run(warpsum_cpu, ia, ia, f, f, [0.5], [1.0], [0], smooth=(np.zeros((4, 2)), sets))
    with pytest.raises(ValueError, match="indices of the 1 sets"):
        _run(warpsum_cpu, ia, ia, f, f, [0.5], [1.0], [0], smooth=(np.ones((4, 3)), sets))
    with pytest.raises(ValueError, match="targets: index outside acc"):
        _run(warpsum_cpu, ia, ia, f, f, [0.5], [1.0], [0],
             smooth=(np.zeros((4, 3)), [([0.5], [1.0], [1])]))


def test_revealed_background_comes_from_the_frame_that_sees_it():
    # 1-D scene: static background, a bright bar moving right by 8 px. Behind the bar (left of
    # it at s = 0.5) the background is revealed: frame a has the bar there, frame b the
    # background. Exact flows with exact visibility: the hard path must give the background.
    h, w = 8, 64
    bg = np.tile(np.linspace(0.1, 0.4, w, dtype=np.float32)[None, :, None], (h, 1, 3))
    ia, ib = bg.copy(), bg.copy()
    ia[:, 20:30] = 0.9   # bar at [20, 30) in a
    ib[:, 28:38] = 0.9   # and at [28, 38) in b
    fab = const_flow(h, w, 0.0, 0.0)
    fba = const_flow(h, w, 0.0, 0.0)
    fab[:, 20:30, 0] = 8.0
    fba[:, 28:38, 0] = -8.0
    fab[:, 30:38, 2] = 0.0  # background of a that b's bar covers: not seen in b
    fba[:, 20:28, 2] = 0.0  # background of b that a's bar hid: not seen in a
    acc = _run(warpsum_reference, ia, ib, fab, fba, [0.5], [1.0], [0],
               hard=np.ones((h, w), np.uint8))
    # At s = 0.5 the bar spans [24, 34); [20, 24) shows background, revealed.
    assert np.abs(acc[0, :, 20:23] - bg[:, 20:23]).max() < 0.02
    assert np.abs(acc[0, :, 25:33] - 0.9).max() < 0.02


def _bar_scene(x0):
    # A bar [x0, x0 + 16) moving 8 px right over a static ramp, exact full-size flows with exact
    # visibility, and the truth: the bar's alpha (the frames' own linear interpolation of its
    # edges) composited over the ramp at every time, averaged over the interval.
    h, w = 8, 96
    x = np.arange(w)
    ramp = np.linspace(0.1, 0.4, w)
    ia = np.tile(ramp.astype(np.float32)[None, :, None], (h, 1, 3))
    ib = ia.copy()
    ia[:, x0:x0 + 16] = 0.9
    ib[:, x0 + 8:x0 + 24] = 0.9
    fab, fba = const_flow(h, w, 0.0, 0.0), const_flow(h, w, 0.0, 0.0)
    fab[:, x0:x0 + 16, 0] = 8.0
    fab[:, x0 + 16:x0 + 24, 2] = 0.0  # background of a that the bar covers in b
    fba[:, x0 + 8:x0 + 24, 0] = -8.0
    fba[:, x0:x0 + 8, 2] = 0.0  # background of b that the bar hid in a
    bar = ((x >= x0) & (x < x0 + 16)).astype(float)
    truth = np.zeros(w)
    for s in (np.arange(4096) + 0.5) / 4096:
        alpha = np.interp(x - 8 * s, x, bar)
        truth += (alpha * 0.9 + (1 - alpha) * ramp) / 4096
    return ia, ib, fab, fba, truth


@pytest.mark.parametrize("fn", [warpsum_reference, warpsum_cpu])
def test_a_moving_edge_on_a_half_size_flow_grid_blurs_into_the_exact_integral(fn):
    # The bar's flows exact but on a half-size grid, integrated over the whole interval.
    # Points on the bar's edges need the bar's motion from the grid: read bilinearly across
    # the discontinuity it is a blend of 8 and 0 that no surface has (max error 0.15 here).
    ia, ib, fab, fba, truth = _bar_scene(24)
    gab, gba = np.ascontiguousarray(fab[::2, ::2]), np.ascontiguousarray(fba[::2, ::2])
    n = 64
    times = (np.arange(n) + 0.5) / n
    acc = _run(fn, ia, ib, gab, gba, times, np.full(n, 1.0 / n), np.zeros(n, np.int64),
               hard=np.ones(gab.shape[:2], np.uint8), iters=1)
    err = np.abs(acc[0] - truth[None, :, None])[:, 16:56]
    assert err.max() < 0.08
    assert err.mean() < 0.012


@pytest.mark.parametrize("fn", [warpsum_reference, warpsum_cpu])
def test_fine_flows_place_edges_that_the_grid_cannot(fn):
    # The bar's edges at odd columns: a half-size grid (every other column) puts them a pixel
    # off, and the fixed point drags the ramp along with the bar there (error ~0.3). The same
    # flows given at full size (``fine``) for the fixed point, the grid for the rest: the
    # integral within 0.035 everywhere.
    ia, ib, fab, fba, truth = _bar_scene(25)
    gab, gba = np.ascontiguousarray(fab[::2, ::2]), np.ascontiguousarray(fba[::2, ::2])
    n = 64
    args = (ia, ib, gab, gba, (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n), np.zeros(n, int))
    kw = dict(hard=np.ones(gab.shape[:2], np.uint8), iters=2)
    grid = _run(fn, *args, **kw)[0]
    fine = _run(fn, *args, fine=(fab[..., :3], fba[..., :3]), **kw)[0]
    err = lambda acc: np.abs(acc - truth[None, :, None])[:, 16:56]  # noqa: E731
    assert err(grid).max() > 0.25
    assert err(fine).max() < 0.035 and err(fine).mean() < 0.006


@pytest.mark.parametrize("fn", [warpsum_reference, warpsum_cpu])
def test_fine_flows_equal_to_the_grid_change_nothing(fn):
    # Fine flows that are the grid's nodes repeated 2x2 are what the fixed point reads anyway:
    # the same bytes. (The visibility channel of fine flows is what the iteration reads; given
    # two channels it is 1.)
    rng = np.random.default_rng(9)
    H, W, h, w = 26, 34, 13, 17
    ia, ib = (rng.random((H, W, 3)).astype(np.float32) for _ in "ab")
    fab, fba = (np.dstack([rng.normal(0, 2, (h, w, 2)), rng.random((h, w, 1)),
                           rng.normal(0, 0.2, (h, w, 2))]).astype(np.float32) for _ in "ab")
    fine = tuple(np.repeat(np.repeat(f[..., :3], 2, 0), 2, 1) for f in (fab, fba))
    args = (ia, ib, fab, fba, [0.9, 0.05, 0.3, 0.5], [0.2, 0.1, 0.3, 1.0], [0, 1, 0, 1])
    kw = dict(n=2, hard=(rng.random((h, w)) < 0.5).astype(np.uint8), shift=TAU, iters=2)
    assert np.array_equal(_run(fn, *args, **kw), _run(fn, *args, fine=fine, **kw))
    two = tuple(f[..., :2] for f in fine)
    other = _run(fn, *args, fine=two, **kw)
    assert np.array_equal(other, _run(fn, *args, fine=tuple(np.dstack([f, np.ones((H, W, 1))])
                                                          for f in two), **kw))
    assert not np.array_equal(other, _run(fn, *args, **kw))


def test_cpu_kernel_matches_reference_with_fine_flows():
    rng = np.random.default_rng(11)
    H, W, h, w = 26, 34, 13, 17
    ia, ib = (rng.random((2 * H - 1, 2 * W - 1, 3)).astype(np.float32) for _ in "ab")
    fab, fba = (np.dstack([rng.normal(0, 2, (h, w, 2)), rng.random((h, w, 1)),
                           rng.normal(0, 0.2, (h, w, 2))]).astype(np.float32) for _ in "ab")
    fine = tuple(np.dstack([rng.normal(0, 2, (H, W, 2)), rng.random((H, W, 1))])
                 .astype(np.float32) for _ in "ab")
    args = (ia, ib, fab, fba, [0.9, 0.05, 0.3, 0.5, 0.7], [0.2, 0.1, 0.3, 1.0, 0.4],
            [0, 1, 0, 2, 1])
    kw = dict(n=3, hard=(rng.random((h, w)) < 0.6).astype(np.uint8), fine=fine, up=2,
              size=(H, W))
    ref = _run(warpsum_reference, *args, **kw)
    assert np.abs(ref - _run(warpsum_cpu, *args, **kw)).max() < 2e-5
    assert np.abs(ref - _run(warpsum_reference, *args, **{**kw, "fine": None})).max() > 0.05


def test_fine_flows_must_have_the_output_size():
    ia = np.zeros((10, 12, 3), np.float32)
    f = const_flow(5, 6, 1.0, 0.0)
    with pytest.raises(ValueError, match="fine: expected two"):
        _run(warpsum_cpu, ia, ia, f, f, [0.5], [1.0], [0], fine=(f, f))
    with pytest.raises(ValueError, match="fine: expected two"):
        _run(warpsum_cpu, ia, ia, f, f, [0.5], [1.0], [0], fine=(const_flow(10, 12, 1, 0),))


def test_cuda_kernel_matches_reference_in_simulator():
    code = textwrap.dedent("""
        import numpy as np
        from blursynth_ext.warpsum import SEGMENT, warpsum_reference
        from blursynth_ext.warpsum_cuda import warpsum_cuda
        rng = np.random.default_rng(5)
        H, W, h, w = 6, 7, 3, 4
        ia = rng.random((H, W, 3)).astype(np.float32); ib = rng.random((H, W, 3)).astype(np.float32)
        mk = lambda: np.dstack([rng.normal(0, 1, (h, w, 2)), rng.random((h, w, 1)),
                                rng.normal(0, .1, (h, w, 2))]).astype(np.float32)
        fab, fba = mk(), mk()
        hard = (rng.random((h, w)) < .5).astype(np.uint8)
        t = np.float32([.2, .7]); wt = np.float32([.5, .5]); tg = np.int64([0, 1])
        diff = mag = 0.0
        for cubic, up in ((False, 1), (True, 1), (False, 2)):
            fa = np.kron(ia, np.ones((up, up, 1), np.float32))[:up * (H - 1) + 1, :up * (W - 1) + 1]
            fb = np.kron(ib, np.ones((up, up, 1), np.float32))[:up * (H - 1) + 1, :up * (W - 1) + 1]
            a = np.zeros((2, H, W, 3), np.float32); b = a.copy()
            kw = dict(hard=hard, shift=.2, cubic=cubic, up=up)
            warpsum_reference(fa, fb, fab, fba, t, wt, tg, a, **kw)
            warpsum_cuda(fa, fb, fab, fba, t, wt, tg, b, **kw)
            diff, mag = max(diff, float(np.abs(a - b).max())), max(mag, float(np.abs(a).max()))
        # A set per row piece: two rows of two pieces.
        W2 = SEGMENT + 4
        fa = rng.random((2, W2, 3)).astype(np.float32); fb = rng.random((2, W2, 3)).astype(np.float32)
        a = np.zeros((2, 2, W2, 3), np.float32); b = a.copy()
        kw = dict(hard=(rng.random((1, 9)) < .3).astype(np.uint8),
                  smooth=(np.array([[0, 1], [1, 0]]), [(t[:1], wt[:1], tg[:1]), (t, wt, tg)]))
        h, w = 1, 9
        fab, fba = mk(), mk()
        warpsum_reference(fa, fb, fab, fba, t, wt, tg, a, **kw)
        warpsum_cuda(fa, fb, fab, fba, t, wt, tg, b, **kw)
        diff, mag = max(diff, float(np.abs(a - b).max())), max(mag, float(np.abs(a).max()))
        # Fine flows for the fixed point.
        h, w = 3, 4
        fab, fba = mk(), mk()
        fine = tuple(np.dstack([rng.normal(0, 1, (H, W, 2)), rng.random((H, W, 1))])
                     .astype(np.float32) for _ in "ab")
        a = np.zeros((2, H, W, 3), np.float32); b = a.copy()
        kw = dict(hard=np.ones((h, w), np.uint8), fine=fine)
        warpsum_reference(ia, ib, fab, fba, t, wt, tg, a, **kw)
        warpsum_cuda(ia, ib, fab, fba, t, wt, tg, b, **kw)
        diff, mag = max(diff, float(np.abs(a - b).max())), max(mag, float(np.abs(a).max()))
        print(diff, mag)
    """)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    diff, mag = map(float, out.stdout.split())
    assert diff < 1e-5 and mag > 0.1


# -- flow-pair analysis ---------------------------------------------------------------------------

def test_flow_pair_analysis_cpu_matches_reference_and_known_answers():
    from blursynth_ext.flowcheck import analyse_cpu, analyse_reference

    h, w = 40, 60
    rng = np.random.default_rng(6)
    ga = rng.integers(0, 256, (h, w), dtype=np.uint8)
    gb = rng.integers(0, 256, (h, w), dtype=np.uint8)
    # Smooth rotation-like flow a->b and its exact inverse, plus a block whose return is wrong.
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    fab = np.dstack([0.05 * (yy - 20), -0.05 * (xx - 30)]).astype(np.float32) + 2.0
    fba = -fab.copy()
    fba[10:20, 10:20] += 6.0
    textured = np.ones((h, w), np.uint8)
    ref = analyse_reference(fab, fba, ga, gb, textured, 1.0, 1.0, 0.3, 0.5)
    cpu = analyse_cpu(fab, fba, ga, gb, textured, 1.0, 1.0, 0.3, 0.5)
    for r, c in zip(ref[:4], cpu[:4]):
        assert np.abs(r.astype(np.float64) - c).max() < 1e-4
    assert abs(ref[4] - cpu[4]) <= 0.001 * h * w  # float32 vs float64 at the threshold
    fa5 = ref[0]
    # J F of the linear field: J = [[0, .05], [-.05, 0]] -> J F = (.05 v, -.05 u), exactly.
    inner = (slice(2, -2), slice(2, -2))
    assert np.allclose(fa5[inner][..., 3], 0.05 * fab[inner][..., 1], atol=1e-5)
    assert np.allclose(fa5[inner][..., 4], -0.05 * fab[inner][..., 0], atol=1e-5)
    # Visibility: ~1 where the round trip closes (up to the flow's own slope), ~0 where it is 6 px off.
    assert fa5[30:35, 40:45, 2].min() > 0.9
    assert ref[1][12:18, 12:18, 2].max() < 0.01
    assert ref[2][12:18, 12:18].all() and not ref[2][30:35, 40:45].any()


@pytest.mark.parametrize("device", ["numpy", "cpu"])
def test_flow_pair_analysis_writes_the_augmented_flows_into_given_arrays(device):
    from blursynth_ext.dispatch import analyse_pair

    h, w = 20, 30
    rng = np.random.default_rng(8)
    ga, gb = (rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in "ab")
    fab = rng.normal(0, 2, (h, w, 2)).astype(np.float32)
    fba = rng.normal(0, 2, (h, w, 2)).astype(np.float32)
    args = (fab, fba, ga, gb, np.ones((h, w), np.uint8), 1.0, 1.0, 0.3, 0.5)
    want = analyse_pair(*args, device=device)
    out = (np.full((h, w, 5), np.nan, np.float32), np.full((h, w, 5), np.nan, np.float32))
    got = analyse_pair(*args, out=out, device=device)
    assert got[0] is out[0] and got[1] is out[1]
    for g, x in zip(got[:4], want[:4]):
        np.testing.assert_array_equal(g, x)
    assert got[4] == want[4]
    with pytest.raises(ValueError, match="out"):  # a wrong-shaped array is refused
        analyse_pair(*args, out=(out[0], out[1][:, :-1]), device=device)
