"""Flow-based blur synthesis against known answers."""
import numba
import numpy as np
import pytest

from blursynth.crf import decode_u8, encode_u8, get_crf
from blursynth.errors import ParameterError
from blursynth.flowblur import (FlowBlurParams, _Buffers, _GivenFlows, _prepare, exposure_windows,
                                flow_scale_of, flowblur_array, flowblur_frames, interp_of,
                                interval_samples, segment_motion, subframes_per_interval)
from blursynth.scenes import make_scene
from blursynth_ext.warpsum import SEGMENT

SRGB = get_crf("srgb")


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def band_limited_photo(h=128, w=192):
    """A real photo (linear light), Gaussian-smoothed so sub-pixel shifts are well defined."""
    import cv2
    from skimage import data

    img = data.chelsea()[40:40 + h, 60:60 + w]
    lin = decode_u8(np.ascontiguousarray(img), SRGB)
    return cv2.GaussianBlur(lin, (0, 0), 1.0).astype(np.float64)


def fourier(img, mul):
    f = np.fft.fft2(img, axes=(0, 1)) * mul[..., None]
    return np.real(np.fft.ifft2(f, axes=(0, 1)))


def freqs(h, w):
    return np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]


# -- planning -------------------------------------------------------------------------------------

def test_exposure_windows_known_cases():
    assert [(w.centre, w.t0, w.t1) for w in exposure_windows(5, 1.0)] == \
        [(1, 0.5, 1.5), (2, 1.5, 2.5), (3, 2.5, 3.5)]
    assert [(w.centre, w.t0, w.t1) for w in exposure_windows(5, 2.0)] == \
        [(1, 0.0, 2.0), (2, 1.0, 3.0), (3, 2.0, 4.0)]
    # 240 fps -> 30 fps: one output per 8 inputs, exposure spanning 8 input intervals.
    w8 = exposure_windows(40, 1.0, 8)
    assert [w.centre for w in w8] == [4, 12, 20, 28]
    assert all(w.t1 - w.t0 == 8 and w.t0 >= 0 and w.t1 <= 39 for w in w8)
    assert exposure_windows(2, 1.0) == []


def test_interval_samples_cover_each_window_once():
    wins = exposure_windows(12, 1.7, 3)
    total = {w.index: 0.0 for w in wins}
    for i in range(11):
        t, wt, k = interval_samples([(w.index, w) for w in wins], i, 7)
        assert np.all((t >= 0) & (t <= 1))
        for slot in set(k.tolist()):
            total[slot] += float(wt[k == slot].sum())
    for w in wins:
        assert total[w.index] == pytest.approx(w.t1 - w.t0, abs=1e-5)


def test_subframe_count_follows_motion_within_bounds():
    assert subframes_per_interval(8.0, 1.0, 1, 64) == 8
    assert subframes_per_interval(8.2, 0.5, 1, 64) == 17
    assert subframes_per_interval(0.0, 1.0, 3, 64) == 3
    assert subframes_per_interval(500.0, 1.0, 1, 64) == 64


@pytest.mark.parametrize("kw", [dict(exposure=2.5), dict(exposure=0), dict(decimate=0),
                                dict(flow_scale=1.5), dict(min_subframes=5, max_subframes=2),
                                dict(crf="nonsense"), dict(interp="lanczos")])
def test_bad_parameters_are_named(kw):
    with pytest.raises(ParameterError) as e:
        FlowBlurParams(**kw)
    assert list(kw)[0].split("_")[0] in str(e.value)


# -- known answers ---------------------------------------------------------------------------------

def test_static_clip_gives_blurry_equal_sharp_bit_exact():
    from skimage import data

    frame = np.ascontiguousarray(data.coffee()[:96, :128])
    frames = np.stack([frame] * 5)
    for crf in ("srgb", "gamma:2.2"):
        blurry, sharp, wins = flowblur_array(frames, FlowBlurParams(crf=crf))
        assert len(wins) == 3
        assert np.array_equal(blurry, sharp)
        assert np.array_equal(sharp[0], frame)


# The defaults on these small frames (flow at full size, cubic), what 720p uses, and linear.
SETTINGS = [dict(), dict(flow_scale=0.5, interp="upsampled"), dict(flow_scale=0.5, interp="linear")]


def translated_photo(v, n=4):
    """(frames, line_blur): the photo translated by v px/frame with exact (Fourier) sub-pixel
    shifts, uint8 (n, H, W, 3); line_blur(t, e) is the exposure of frame t, the box average over
    shifts in [(t - e/2) v, (t + e/2) v], whose Fourier transform is exp(-2 pi i k.v t)
    sinc(e k.v): the analytic line blur in linear light, encoded."""
    base = band_limited_photo()
    fy, fx = freqs(*base.shape[:2])
    kv = fx * v[0] + fy * v[1]
    frames = np.stack([encode_u8(np.clip(fourier(base, np.exp(-2j * np.pi * kv * t)), 0, 1), SRGB)
                       for t in range(n)])

    def line_blur(t, e):
        return encode_u8(np.clip(fourier(base, np.exp(-2j * np.pi * kv * t) * np.sinc(e * kv)),
                                 0, 1), SRGB)
    return frames, line_blur


def assert_line_blur(frames, line_blur, e, blurry, wins):
    assert [win.centre for win in wins] == [1, 2]
    m = 24  # away from the borders, where the periodic shift wraps around
    for b, win in zip(blurry, wins):
        t = win.centre
        close = psnr(b[m:-m, m:-m], line_blur(t, e)[m:-m, m:-m])
        assert close >= 45.0
        # ... and it really is blurred: far closer to the line blur than to the sharp frame.
        assert psnr(b[m:-m, m:-m], frames[t][m:-m, m:-m]) < close - 8.0


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("v,e", [((6.0, 0.0), 1.0), ((3.0, 4.0), 1.0), ((4.0, -2.0), 2.0)])
def test_translation_blurs_into_the_analytic_box_blur(v, e, settings):
    frames, line_blur = translated_photo(v)
    blurry, _, wins = flowblur_array(frames, FlowBlurParams(exposure=e, **settings))
    assert_line_blur(frames, line_blur, e, blurry, wins)


def test_given_flows_replace_the_backend():
    v = (5.0, 2.0)
    frames, line_blur = translated_photo(v)
    h, w = frames.shape[1:3]
    ones = np.ones((h, w, 2), np.float32)
    # The exact flow: the analytic line blur, as with the backend's flow.
    exact = [(ones * np.float32(v), -ones * np.float32(v))] * 3
    blurry, _, wins = flowblur_array(frames, FlowBlurParams(exposure=2.0), flows=exact)
    assert_line_blur(frames, line_blur, 2.0, blurry, wins)
    # No motion at all: each sub-frame is its nearer frame, so with 4 sub-frames per interval
    # the exposure [t - 1, t + 1] is the linear-light average of frames t - 1, t, t + 1 with
    # weights 1/4, 1/2, 1/4 (a flow backend would blur the moving photo instead).
    still = [(ones * 0, ones * 0)] * 3
    blurry, _, wins = flowblur_array(frames, FlowBlurParams(exposure=2.0, min_subframes=4),
                                     flows=still)
    lin = decode_u8(frames, SRGB)
    for b, win in zip(blurry, wins):
        t = win.centre
        want = encode_u8(0.25 * lin[t - 1] + 0.5 * lin[t] + 0.25 * lin[t + 1], SRGB)
        assert np.abs(b.astype(int) - want).max() <= 1


@pytest.mark.parametrize("flows,match", [
    ([(np.zeros((20, 30, 2)), np.zeros((20, 30, 2)))], "ran out after 1 pairs"),
    ([(np.zeros((20, 30, 2)),)] * 2, r"pair 1 \(frames 0 and 1\): expected two \(20, 30, 2\)"),
    ([(np.zeros((20, 30, 2)), np.zeros((20, 31, 2)))] * 2, "pair 1 .*got shapes"),
    ([(np.zeros((20, 30, 2)), np.full((20, 30, 2), np.nan))] * 2, "pair 1 holds NaN"),
])
def test_given_flows_are_checked_pair_by_pair(flows, match):
    frames = np.zeros((3, 20, 30, 3), np.uint8)
    with pytest.raises(ParameterError, match=match):
        flowblur_array(frames, flows=flows)


def test_true_flow_gives_a_partly_covered_pixel_to_the_layer_covering_enough_of_it():
    from blursynth.scenes import Layer, Motion, Scene

    alpha = np.ones((8, 8), np.float32)
    alpha[:, 0] = 0.3  # the sprite's left column covers 30% of its pixels
    # Texture pixel q lands on frame pixel q + 6 at t = 0 (anchor 3.5 at 9.5), then moves 4 px.
    sprite = Layer(np.ones((8, 8, 3), np.float32), Motion((9.5, 9.5), (4.0, 0.0)), alpha)
    scene = Scene((20, 20), [Layer(np.zeros((20, 20, 3), np.float32), Motion((9.5, 9.5))), sprite])
    row = {cover: scene.true_flow(0, 1, cover)[9, 5:8, 0] for cover in (0.5, 0.1)}
    assert row[0.5].tolist() == [0, 0, 4]  # x = 5: background; 6: 30% sprite; 7: sprite
    assert row[0.1].tolist() == [0, 4, 4]
    with pytest.raises(ParameterError, match="cover"):
        scene.true_flow(0, 1, 0.0)


def test_given_flows_on_a_coarser_grid_take_the_vector_nearest_each_grid_pixel():
    # Grid pixel (j, i) of a half-size grid has its centre between frame pixels 2j, 2j + 1
    # (and 2i, 2i + 1): it takes pixel (2j + 1, 2i + 1)'s vector, halved into grid pixels.
    h, w = 6, 8
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    f = np.stack([xx, yy], -1)
    fab, fba = _GivenFlows([(f, -f)], (3, 4), (h, w))(None, None)
    gy, gx = np.mgrid[:3, :4].astype(np.float32)
    assert np.array_equal(fab, np.stack([2 * gx + 1, 2 * gy + 1], -1) * 0.5)
    assert np.array_equal(fba, -fab)


def seed_psnr(scene, frames, e=2.0):
    from blursynth.compat import synthblur_frames

    blurry, _ = synthblur_frames(frames)
    gt = encode_u8(scene.blur(2, e), SRGB)
    return psnr(blurry[1][16:-16, 16:-16], gt[16:-16, 16:-16])


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("kind,floor", [("rotation_zoom", 46.0), ("occlusion", 44.0)])
def test_complex_motion_beats_a_floor_the_seed_method_misses(kind, floor, settings):
    # Ground truth: the same scene integrated at very high temporal resolution. At exposure 2
    # (the seed method's effective exposure) we must clear a floor that the seed does not.
    scene = make_scene(kind, (144, 256), 6.0)
    frames = scene.frames(5)
    blurry, _, wins = flowblur_array(frames, FlowBlurParams(exposure=2.0, **settings))
    assert [w.centre for w in wins] == [1, 2, 3]
    gt = encode_u8(scene.blur(2, 2.0), SRGB)
    ours = psnr(blurry[1][16:-16, 16:-16], gt[16:-16, 16:-16])
    assert ours >= floor
    assert seed_psnr(scene, frames) < floor - 3.0


@pytest.mark.parametrize("size,want", [((720, 1280), 0.5), ((1080, 1920), 0.5), ((360, 640), 1.0),
                                       ((480, 854), 0.75), ((1280, 720), 0.5), ((64, 96), 1.0)])
def test_automatic_flow_scale_keeps_360_grid_rows_from_half_to_full_size(size, want):
    assert flow_scale_of(FlowBlurParams(), *size) == want
    assert flow_scale_of(FlowBlurParams(flow_scale=0.25), *size) == 0.25  # as asked
    # Cubic interpolation below 720 rows, as the finer flow grid; from 720, frames upsampled 2x.
    mode = "cubic" if want > 0.5 else "upsampled"
    assert interp_of(FlowBlurParams(), *size) == mode
    assert interp_of(FlowBlurParams(interp="linear"), *size) == "linear"
    # ... and the flow grid and the frames the warp samples have those sizes.
    frame = np.zeros(size + (3,), np.uint8)
    prep = _prepare(0, frame, FlowBlurParams(), get_crf("srgb"), _Buffers())
    assert prep.grey.shape == (round(size[0] * want), round(size[1] * want))
    assert prep.coef.shape == (size + (3,) if mode == "cubic"
                               else (2 * size[0] - 1, 2 * size[1] - 1, 3))


@pytest.mark.parametrize("interp", ["linear", "upsampled", "cubic"])
def test_a_frame_buffer_is_reused_only_once_its_frame_is_gone(interp):
    p, crf, buffers = FlowBlurParams(interp=interp), get_crf("srgb"), _Buffers()
    frames = make_scene("translation", (24, 32), 2.0).frames(3)
    fresh = [_prepare(i, f, p, crf, _Buffers()).coef for i, f in enumerate(frames)]
    a = _prepare(0, frames[0], p, crf, buffers)
    b = _prepare(1, frames[1], p, crf, buffers)
    assert not np.shares_memory(a.coef, b.coef)
    address = a.coef.ctypes.data
    del a
    c = _prepare(2, frames[2], p, crf, buffers)
    assert c.coef.ctypes.data == address  # frame 0's buffer, rewritten
    np.testing.assert_array_equal(c.coef, fresh[2])
    np.testing.assert_array_equal(b.coef, fresh[1])  # the frame still held is untouched


def test_reusing_frame_and_flow_buffers_leaves_the_output_as_it_was(monkeypatch):
    frames = make_scene("occlusion", (48, 64), 3.0).frames(9)
    p = FlowBlurParams(interp="upsampled", exposure=2.0)
    taken, take = [], _Buffers.take
    monkeypatch.setattr(_Buffers, "take", lambda self, shape: taken.append(take(self, shape))
                        or taken[-1])
    reused, _, _ = flowblur_array(frames, p)
    # One sampled frame per frame, two augmented flows per pair; some of each were reused.
    for channels, n in ((3, 9), (5, 16)):
        bufs = [b for b in taken if b.shape[2] == channels]
        assert len(bufs) == n and len({b.ctypes.data for b in bufs}) < n
    monkeypatch.setattr(_Buffers, "take", lambda self, shape: np.empty(shape, np.float32))
    fresh, _, _ = flowblur_array(frames, p)
    assert len(reused) == 7
    np.testing.assert_array_equal(reused, fresh)


def test_scene_cut_inside_an_exposure_is_skipped():
    a = make_scene("translation", (96, 128), 3.0).frames(5)
    b = make_scene("occlusion", (96, 128), 3.0).frames(5)
    out = list(flowblur_frames(np.concatenate([a, b])))
    # Windows centred on 4 and 5 straddle the cut between inputs 4 and 5.
    cut = {r.window.centre for r in out if r.stats["scene_cut"]}
    assert cut == {4, 5}
    assert all(r.blurry is None for r in out if r.stats["scene_cut"])
    assert all(r.blurry is not None for r in out if not r.stats["scene_cut"])
    assert len(out) == 8


def test_odd_sizes_and_scale():
    frames = make_scene("translation", (37, 53), 2.0).frames(4)
    blurry, sharp, _ = flowblur_array(frames)
    assert blurry.shape == (2, 37, 53, 3)
    small, sharp_small, _ = flowblur_array(frames, FlowBlurParams(scale=0.5))
    assert small.shape == (2, 18, 26, 3) and sharp_small.shape == small.shape


def test_subframes_span_the_exposure():
    # A sub-frame at the centre of the exposure is the sharp frame itself; on a static clip
    # every sub-frame is.
    frames = make_scene("translation", (64, 96), 4.0).frames(4)
    res = list(flowblur_frames(frames, subframes=1))
    for r in res:
        assert np.abs(r.subframes[0].astype(int) - r.sharp).max() <= 1
    static = np.stack([frames[0]] * 4)
    res = list(flowblur_frames(static, subframes=3))
    assert all(np.array_equal(s, r.sharp) for r in res for s in r.subframes)


def test_decimation_averages_k_input_intervals():
    # 8 px/frame over e * K = 4 input intervals, K = 4: a 32 px blur, centred on input 2 + 4m.
    base = band_limited_photo(96, 256)
    h, w = base.shape[:2]
    fy, fx = freqs(h, w)
    kv = fx * 2.0
    frames = np.stack([encode_u8(np.clip(fourier(base, np.exp(-2j * np.pi * kv * t)), 0, 1), SRGB)
                       for t in range(11)])
    blurry, sharp, wins = flowblur_array(frames, FlowBlurParams(exposure=1.0, decimate=4))
    assert [win.centre for win in wins] == [2, 6]
    assert np.array_equal(sharp[1], frames[6])
    truth = encode_u8(np.clip(fourier(base, np.exp(-2j * np.pi * kv * 6) * np.sinc(4 * kv)), 0, 1), SRGB)
    assert psnr(blurry[1][16:-16, 40:-40], truth[16:-16, 40:-40]) >= 45.0


def test_same_bytes_whatever_the_thread_count():
    frames = make_scene("occlusion", (72, 96), 4.0).frames(4)
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, _, _ = flowblur_array(frames)
        numba.set_num_threads(n)
        many, _, _ = flowblur_array(frames)
    finally:
        numba.set_num_threads(n)
    assert np.array_equal(one, many)


def test_frames_must_share_one_size():
    frames = [np.zeros((20, 30, 3), np.uint8), np.zeros((20, 31, 3), np.uint8)]
    with pytest.raises(ParameterError, match="frame 1"):
        list(flowblur_frames(frames))


def test_flow_backend_and_preset_are_checked_up_front(caplog):
    import logging

    from blursynth.flow import cuda_available
    from blursynth.flowblur import flow_backend

    FlowBlurParams(flow="farneback")  # no preset: fine
    with pytest.raises(ParameterError, match="flow_preset"):
        FlowBlurParams(flow="farneback", flow_preset="fast")
    if not cuda_available():
        # The contract: a clear message and the CPU default.
        with caplog.at_level(logging.WARNING, logger="blursynth"):
            assert flow_backend(FlowBlurParams(flow="cuda")).name == "dis"
        assert any("CUDA" in m and "dis" in m for m in caplog.messages)
    with pytest.raises(ParameterError):
        FlowBlurParams(flow="nonsense")
    # The default is DIS medium, with 12 descent iterations on grids of 360 rows or more
    # unless refining boundaries, and patches every 6 px where that grid is also smaller than
    # the frames; a preset named is OpenCV's own.
    def dis(p, grid, frame=None):
        d = flow_backend(p, grid, frame)._dis
        return d.getGradientDescentIterations(), d.getPatchStride()

    assert flow_backend(FlowBlurParams(), (360, 640)).options == {
        "preset": "medium", "descent_iterations": 12}
    assert flow_backend(FlowBlurParams(), (360, 640), (720, 1280)).options == {
        "preset": "medium", "descent_iterations": 12, "patch_stride": 6}
    medium = dis(FlowBlurParams(flow_preset="medium"), None)
    assert medium == (25, 3)  # OpenCV's preset, which the defaults below depart from
    assert dis(FlowBlurParams(flow="dis"), (540, 960)) == (12, 3)
    assert dis(FlowBlurParams(), (360, 640), (360, 640)) == (12, 3)  # full-size grid
    assert dis(FlowBlurParams(), (360, 640), (1080, 1920)) == (12, 6)
    assert dis(FlowBlurParams(), (359, 640), (718, 1280)) == dis(FlowBlurParams(), None) == medium
    assert dis(FlowBlurParams(flow_preset="medium"), (360, 640), (720, 1280)) == medium
    assert dis(FlowBlurParams(refine_boundaries=True), (360, 640), (720, 1280)) == medium


def test_the_flow_backend_is_chosen_for_the_grid_and_the_frames(monkeypatch):
    import blursynth.flowblur as fb

    seen = []
    real = fb.flow_backend
    monkeypatch.setattr(fb, "flow_backend", lambda p, grid, frame: seen.append((grid, frame))
                        or real(p, grid, frame))
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
    flowblur_array(frames, FlowBlurParams(flow="dis", flow_scale=0.5))
    assert seen == [((32, 48), (64, 96))]  # once per clip, for the first frame's sizes


def test_boundary_refinement_recomputes_only_around_the_marked_region():
    import cv2

    from blursynth.flowblur import _refine_boundaries

    h, w = 120, 200
    rng = np.random.default_rng(7)
    ga = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.uint8), (0, 0), 1.5)
    gb = np.roll(ga, (4, 6), axis=(0, 1))  # b(x + (6, 4)) = a(x): the true grid flow
    fab = np.full((h, w, 2), 1.0, np.float32)   # current flows: wrong (output pixels)
    fba = np.full((h, w, 2), -1.0, np.float32)
    where = np.zeros((h, w), np.uint8)
    where[50:70, 90:110] = 1
    calls = []

    def refiner(a, b):  # the exact flow of the pair, in grid pixels, whatever the crop
        calls.append(a.shape)
        d = 1.0 if len(calls) % 2 else -1.0  # a->b first, then b->a
        return np.dstack([np.full(a.shape, 6.0 * d), np.full(a.shape, 4.0 * d)]).astype(np.float32)

    frac = _refine_boundaries(fab, fba, where, ga, gb, 0.5, 0.5, 4.0, refiner)
    m = 2 + 8  # one motion length on the grid (4 px * 0.5) + 8
    changed = fab[..., 0] != 1.0
    ys, xs = np.nonzero(changed)
    # The region grown by m, minus the margin m: exactly the marked box, where the better
    # candidate (the refined, exact one) replaced the wrong flow.
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (50, 69, 90, 109)
    assert changed.sum() == 400
    assert np.all(fab[changed] == [12.0, 8.0])  # grid pixels / 0.5 = output pixels
    assert np.all(fba[fba[..., 0] != -1.0] == [-12.0, -8.0])
    assert len(calls) == 2 and calls[0] == (20 + 2 * m, 20 + 2 * m)
    assert frac == pytest.approx((20 + 2 * m) ** 2 / (h * w))


def test_boundary_refinement_keeps_the_current_flow_where_it_explains_the_pair_better():
    import cv2

    from blursynth.flowblur import _refine_boundaries

    h, w = 100, 100
    rng = np.random.default_rng(8)
    ga = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.uint8), (0, 0), 1.5)
    gb = np.roll(ga, (0, 3), axis=(0, 1))
    fab = np.zeros((h, w, 2), np.float32)
    fab[..., 0] = 3.0  # already exact (sx = 1)
    fba = -fab
    where = np.zeros((h, w), np.uint8)
    where[40:60, 40:60] = 1
    wrong = lambda a, b: np.zeros(a.shape + (2,), np.float32)  # noqa: E731
    _refine_boundaries(fab, fba, where, ga, gb, 1.0, 1.0, 3.0, wrong)
    assert np.all(fab[..., 0] == 3.0) and np.all(fba[..., 0] == -3.0)


def test_read_ahead_keeps_order_raises_and_stops():
    import threading

    from blursynth.flowblur import _ahead

    assert list(_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield from range(3)
        raise ValueError("frame 3 is broken")

    got = []
    with pytest.raises(ValueError, match="frame 3 is broken"):
        for x in _ahead(failing()):
            got.append(x)
    assert got == [0, 1, 2]

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    it = _ahead(endless())
    assert [next(it), next(it)] == [0, 1]
    it.close()  # the consumer stops early: the source is closed and the thread ends
    assert closed.is_set()
    assert not any(t.name == "blursynth-ahead" for t in threading.enumerate())


def test_reading_ahead_in_a_thread_changes_no_byte(monkeypatch):
    import cv2

    import blursynth.flowblur as fb

    frames = make_scene("occlusion", (72, 96), 4.0).frames(5)
    cv_threads = cv2.getNumThreads()
    ahead, _, _ = flowblur_array(frames)
    assert cv2.getNumThreads() == cv_threads  # the flows' one-thread setting is undone
    monkeypatch.setattr(fb, "concurrent_kernels", lambda: False)
    inline, _, _ = flowblur_array(frames)
    assert np.array_equal(ahead, inline)


# -- sub-frames piece by piece ------------------------------------------------------------------

@pytest.mark.parametrize("grid", [(10, 150), (20, 300), (7, 111)])
def test_segment_motion_covers_every_node_a_piece_reads(grid):
    # Against brute force: every output pixel reads the nodes at and after its bilinear
    # position, (x + 0.5) g / W - 0.5 clamped to the grid, along both axes.
    h, w = 20, 2 * SEGMENT + 44
    motion = np.random.default_rng(1).exponential(2.0, grid).astype(np.float32)
    got = segment_motion(motion, (h, w))
    gh, gw = grid
    node = lambda n, size, g: np.clip(np.floor((n + 0.5) * g / size - 0.5), 0, g - 1)  # noqa: E731
    ys, xs = node(np.arange(h), h, gh).astype(int), node(np.arange(w), w, gw).astype(int)
    read = np.maximum.reduce([motion[np.minimum(ys + dy, gh - 1)][:, np.minimum(xs + dx, gw - 1)]
                              for dy in (0, 1) for dx in (0, 1)])
    want = np.stack([read[:, j:j + SEGMENT].max(1) for j in range(0, w, SEGMENT)], 1)
    assert got.shape == (h, 3)
    assert (got >= want).all()  # never fewer sub-frames than a pixel's motion needs
    # ... and no more than the nodes one further out give.
    grown = np.maximum.reduce([motion[np.clip(ys + dy, 0, gh - 1)][:, np.clip(xs + dx, 0, gw - 1)]
                               for dy in (-1, 0, 1) for dx in (-1, 0, 1, 2)])
    assert (got <= np.stack([grown[:, j:j + SEGMENT].max(1) for j in range(0, w, SEGMENT)], 1)).all()


def test_static_pieces_take_one_subframe_and_moving_ones_the_full_count(monkeypatch):
    # A photo band moving 6 px/frame along the right quarter, the rest static: the pieces far
    # from it need one sub-frame and come out as the sharp frame; the band's piece takes the
    # full count, so its pixels are exactly what one count for the whole frame gives.
    import blursynth.flowblur as fb
    from skimage import data

    h, w, v = 64, 4 * SEGMENT, 6
    still = np.ascontiguousarray(data.astronaut()[100:100 + h, :w])
    strip = data.coffee()[100:100 + h]
    frames = np.stack([np.concatenate([still[:, :3 * SEGMENT],
                                       strip[:, 200 - v * t:200 - v * t + SEGMENT]], 1)
                       for t in range(5)])
    calls = []
    real = fb.warpsum
    monkeypatch.setattr(fb, "warpsum", lambda *a, **k: calls.append((len(a[4]), k["smooth"]))
                        or real(*a, **k))
    blurry, sharp, _ = flowblur_array(frames, FlowBlurParams())
    assert len(calls) == 4  # one per interval
    for n, (levels, sets) in calls:
        counts = np.array([len(t) for t, _, _ in sets])[levels]
        # One sample per exposure window in this interval (one or two), against n >= 4.
        assert n >= 4 and (counts[:, :2] <= 2).all() and (counts[:, 3] == n).all()
    monkeypatch.setattr(fb, "warpsum", real)
    whole, _, _ = flowblur_array(frames, FlowBlurParams(local_subframes=False))
    np.testing.assert_array_equal(blurry[:, :, 3 * SEGMENT:], whole[:, :, 3 * SEGMENT:])
    assert psnr(blurry[:, :, :2 * SEGMENT], sharp[:, :, :2 * SEGMENT]) > 55
    assert psnr(blurry[:, :, 3 * SEGMENT:], sharp[:, :, 3 * SEGMENT:]) < 35  # it is blurred
