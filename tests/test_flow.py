"""Tests for blursynth.flow.

Accuracy tests use frame pairs with *known* motion: a real photo (scikit-image's astronaut),
Gaussian-blurred (sigma 1.5) so that sub-pixel shifts are well defined, warped with an affine
map by ``cv2.warpAffine`` (Lanczos-4) on the full 512x512 image and then both frames cropped
to the central 320x240, so the second frame has no border artefacts. For an affine motion
``M`` the second frame satisfies ``b(M x) = a(x)``, so the ground-truth flow is exactly
``f(x) = M x - x``.

EPE (end-point error) is the mean Euclidean distance between estimated and true vectors over
the interior (16 px margin: more than the largest displacement, so every interior pixel has a
correspondent inside the other frame).

Why the thresholds catch real bugs: the motions are ~4.3 px (|(3.3, -2.7)|) and ~8 px. A sign
error gives an EPE of about twice that (8-16 px), swapped dx/dy ~8.5 px, returning zeros ~4 px,
a missing x2 when computing at scale 0.5 ~2-4 px. Every accuracy threshold below is at most
1 px, so all of those fail; each is also about twice the EPE measured with OpenCV 5.0 (values
in the comments) to leave room for numerical differences across OpenCV versions.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data

from blursynth.errors import FlowBackendError, InputFileError, OutputError, ParameterError
from blursynth.flow import (
    BACKENDS,
    DIS_PRESETS,
    FARNEBACK_DEFAULTS,
    FlowBackend,
    compute_flow,
    cuda_available,
    flow,
    flow_to_color,
    get_backend,
    read_flo,
    resize_flow,
    to_grey,
    write_flo,
)

SHAPE = (240, 320)  # (rows, cols) of the test frames
MARGIN = 16
TRANSLATION = (3.3, -2.7)  # dx, dy


# --------------------------------------------------------------------------------------------
# Frame pairs with known motion
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.GaussianBlur(grey, (0, 0), 1.5)


def make_pair(src: np.ndarray, M: np.ndarray, shape=SHAPE):
    """(a, b, true_flow) for the affine motion M (2x3, x' = M [x, y, 1])."""
    H, W = src.shape
    b_full = cv2.warpAffine(
        src, M, (W, H), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT
    )
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    true = np.dstack(
        [
            M[0, 0] * xx + M[0, 1] * yy + M[0, 2] - xx,
            M[1, 0] * xx + M[1, 1] * yy + M[1, 2] - yy,
        ]
    )
    h, w = shape
    y0, x0 = (H - h) // 2, (W - w) // 2
    crop = np.s_[y0 : y0 + h, x0 : x0 + w]

    def to_u8(im):
        return np.clip(np.rint(im), 0, 255).astype(np.uint8)

    return to_u8(src[crop]), to_u8(b_full[crop]), true[crop].astype(np.float32)


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def similarity(src: np.ndarray, angle_deg: float, zoom: float) -> np.ndarray:
    H, W = src.shape
    # About the image centre (pixel centres at integer coordinates).
    return cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), angle_deg, zoom)


@pytest.fixture(scope="module")
def shifted(photo):
    return make_pair(photo, translation(*TRANSLATION))


@pytest.fixture(scope="module")
def rotated(photo):
    # 2 degrees and 2 % zoom about the centre: 0.5-8 px, mean ~4.4 px over the crop.
    return make_pair(photo, similarity(photo, 2.0, 1.02))


@pytest.fixture(scope="module")
def shifted_far(photo):
    return make_pair(photo, translation(6.4, -5.2))  # |d| = 8.25 px


def epe(f: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> float:
    err = np.hypot(f[..., 0] - true[..., 0], f[..., 1] - true[..., 1])
    if mask is None:
        return float(err[MARGIN:-MARGIN, MARGIN:-MARGIN].mean())
    return float(err[mask].mean())


def textured_mask(a: np.ndarray) -> np.ndarray:
    """Interior pixels whose neighbourhood has 2-D structure (upper half of the minimum
    structure-tensor eigenvalue): where motion is locally determined at all."""
    ev = cv2.cornerMinEigenVal(a, 7)
    interior = np.zeros(a.shape, bool)
    interior[MARGIN:-MARGIN, MARGIN:-MARGIN] = True
    return interior & (ev > np.median(ev[interior]))


def test_ground_truth_helper_is_consistent(shifted):
    # Guard against a wrong test harness: warping a by the *true* flow's inverse must give b.
    a, b, true = shifted
    assert np.allclose(true[..., 0], TRANSLATION[0]) and np.allclose(true[..., 1], TRANSLATION[1])
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    b_back = cv2.remap(b, xx + true[..., 0], yy + true[..., 1], cv2.INTER_CUBIC)
    diff = np.abs(b_back.astype(float) - a)[MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert diff.mean() < 1.0


# --------------------------------------------------------------------------------------------
# Accuracy on known motion
# --------------------------------------------------------------------------------------------

# (backend, options) -> EPE limit for the translation and for the similarity; measured with
# OpenCV 5.0.0: ultrafast 0.24 / 0.46, fast 0.13 / 0.28, medium 0.09 / 0.17.
DIS_LIMITS = {
    "ultrafast": (0.5, 0.9),
    "fast": (0.3, 0.6),
    "medium": (0.2, 0.4),
}


@pytest.mark.parametrize("preset", list(DIS_PRESETS))
def test_dis_translation(shifted, preset):
    a, b, true = shifted
    f = flow(a, b, backend="dis", preset=preset)
    assert f.shape == (*SHAPE, 2) and f.dtype == np.float32 and f.flags.c_contiguous
    assert epe(f, true) < DIS_LIMITS[preset][0]


@pytest.mark.parametrize("preset", list(DIS_PRESETS))
def test_dis_similarity(rotated, preset):
    a, b, true = rotated
    assert epe(flow(a, b, backend="dis", preset=preset), true) < DIS_LIMITS[preset][1]


def test_dis_presets_reach_opencv(rotated):
    # If the preset option were ignored, all three would give the same field.
    a, b, true = rotated
    errs = [epe(flow(a, b, preset=p), true) for p in ("ultrafast", "fast", "medium")]
    assert errs[0] > errs[1] > errs[2]


def test_farneback_accuracy(shifted, rotated):
    # Farneback has no global regularisation: in flat regions (sky, smooth suit) it returns
    # near-zero flow, so its whole-interior EPE is ~1 px. It is judged where the image has
    # texture. Measured: 0.07 (translation), 0.25 (similarity).
    for (a, b, true), limit in ((shifted, 0.2), (rotated, 0.5)):
        f = flow(a, b, backend="farneback")
        assert epe(f, true, textured_mask(a)) < limit


def test_deepflow_accuracy(shifted):
    # The one DeepFlow case (~0.3 s at 320x240). Measured EPE 0.03.
    a, b, true = shifted
    assert epe(flow(a, b, backend="deepflow"), true) < 0.1


def test_deepflow_keeps_a_fast_pan(photo):
    # A pan of 42 px: OpenCV's DeepFlow alone loses it (measured EPE 35); aligned first by the
    # whole-pixel dominant motion (40, -12) it finds the rest (measured 0.03).
    a, b, true = make_pair(photo, translation(40.4, -12.3))
    backend = get_backend("deepflow")
    assert backend.dominant_shift(a, b) == (40, -12)
    assert epe(cv2.optflow.createOptFlow_DeepFlow().calc(a, b, None), true) > 10
    f = backend(a, b)
    assert epe(f, true) < 0.1
    # The points the pan carries out of b (the right and top edges) keep its motion.
    assert np.abs(f[2:-2, 2:-2] - true[2:-2, 2:-2]).max() < 0.5


def test_reduced_scale_rescales_vectors(shifted_far):
    # At scale 0.5 the field is computed on 160x120 frames, where the motion is (3.2, -2.6)
    # small pixels; forgetting the x2 when bringing it back would give EPE ~4 px.
    a, b, true = shifted_far
    f = flow(a, b, preset="fast", scale=0.5)  # measured EPE 0.34
    assert f.shape == (*SHAPE, 2)
    assert epe(f, true) < 0.7
    mean = f[MARGIN:-MARGIN, MARGIN:-MARGIN].reshape(-1, 2).mean(axis=0)
    np.testing.assert_allclose(mean, (6.4, -5.2), atol=0.25)


def test_reduced_scale_similarity(rotated):
    # A spatially varying field: checks the upsampled field stays registered with the frame
    # (a half-pixel misalignment of a 2-degree rotation field is small; a transposed or
    # mis-scaled field is not). Measured EPE 0.24 with "medium".
    a, b, true = rotated
    assert epe(flow(a, b, preset="medium", scale=0.5), true) < 0.5


def test_sign_convention(shifted):
    # a(x) ~ b(x + f(x)): sampling b at x + f must reproduce a; sampling at x - f must not.
    a, b, _ = shifted
    f = flow(a, b)
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def mismatch(sign):
        back = cv2.remap(b, xx + sign * f[..., 0], yy + sign * f[..., 1], cv2.INTER_LINEAR)
        return np.abs(back.astype(float) - a)[MARGIN:-MARGIN, MARGIN:-MARGIN].mean()

    good, bad = mismatch(+1), mismatch(-1)
    assert good < 1.5  # grey levels
    assert good < 0.25 * bad
    # And in numbers: content moving right and up gives dx > 0, dy < 0.
    mean = f[MARGIN:-MARGIN, MARGIN:-MARGIN].reshape(-1, 2).mean(axis=0)
    np.testing.assert_allclose(mean, TRANSLATION, atol=0.15)


def test_rgb_input_matches_grey_input(photo):
    rgb = skimage.data.astronaut()[136:376, 96:416]
    M = translation(2.0, 1.0)
    rgb_b = cv2.warpAffine(rgb, M, (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(flow(rgb, rgb_b), flow(to_grey(rgb), to_grey(rgb_b)))


# --------------------------------------------------------------------------------------------
# Backends: selection, options, reuse
# --------------------------------------------------------------------------------------------


def test_backend_names():
    assert set(BACKENDS) == {"dis", "farneback", "deepflow", "cuda", "auto"}
    assert all(isinstance(v, str) and v and "\n" not in v for v in BACKENDS.values())


def test_unknown_backend_lists_backends():
    with pytest.raises(ParameterError) as exc:
        get_backend("raft")
    for name in BACKENDS:
        assert name in str(exc.value)
    with pytest.raises(ParameterError):
        flow(np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8), backend="raft")


@pytest.mark.parametrize(
    "name, options",
    [
        ("dis", {"preset": "slow"}),
        ("dis", {"preset": 2}),
        ("dis", {"winsize": 15}),
        ("dis", {"variational_iterations": -1}),
        ("dis", {"variational_iterations": 1.5}),
        ("dis", {"patch_stride": 0}),
        ("dis", {"descent_iterations": 0}),
        ("farneback", {"preset": "fast"}),
        ("farneback", {"poly_n": 6}),
        ("farneback", {"pyr_scale": 1.5}),
        ("farneback", {"levels": 0}),
        ("farneback", {"winsize": 2.5}),
        ("farneback", {"flags": cv2.OPTFLOW_USE_INITIAL_FLOW}),
        ("deepflow", {"alpha": 1.0}),
        ("auto", {"preset": "fast"}),
    ],
)
def test_bad_options_raise(name, options):
    with pytest.raises(ParameterError):
        get_backend(name, **options)


def test_dis_overrides_reach_opencv_and_survive_a_rebuild():
    # _FlowPair builds its second direction from the first one's options.
    b = get_backend("dis", preset="medium", finest_scale=0, patch_stride=4,
                    descent_iterations=12, variational_iterations=1)
    again = get_backend("dis", **b.options)
    for backend in (b, again):
        assert backend._dis.getFinestScale() == 0
        assert backend._dis.getPatchStride() == 4
        assert backend._dis.getGradientDescentIterations() == 12
        assert backend._dis.getVariationalRefinementIterations() == 1
    medium = get_backend("dis", preset="medium")._dis
    assert medium.getVariationalRefinementIterations() == 5
    assert medium.getGradientDescentIterations() == 25


def test_farneback_defaults_and_overrides(shifted):
    a, b, _ = shifted
    # The original synthblur parameters, passed straight to OpenCV.
    expected = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    np.testing.assert_array_equal(get_backend("farneback")(a, b), expected)
    assert FARNEBACK_DEFAULTS == {
        "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3,
        "poly_n": 5, "poly_sigma": 1.2, "flags": 0,
    }
    over = cv2.calcOpticalFlowFarneback(
        a, b, None, 0.5, 4, 21, 2, 7, 1.5, cv2.OPTFLOW_FARNEBACK_GAUSSIAN
    )
    got = get_backend(
        "farneback", levels=4, winsize=21, iterations=2, poly_n=7, poly_sigma=1.5,
        flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN,
    )(a, b)
    np.testing.assert_array_equal(got, over)


def test_default_backend_is_dis_fast(shifted):
    a, b, _ = shifted
    np.testing.assert_array_equal(
        flow(a, b), cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST).calc(a, b, None)
    )


def test_backend_reuse_is_stateless(shifted):
    # A reused backend gives the same field as a fresh one -- also after a tiny frame, for
    # which OpenCV's own DIS would rewrite the instance's scales (and run later 720p calls at
    # full resolution, ~25x slower) if blursynth did not adjust them first.
    a, b, _ = shifted
    be = get_backend("dis")
    first = be(a, b)
    tiny = np.random.default_rng(1).integers(0, 256, (12, 12), dtype=np.uint8)
    be(tiny, tiny)
    np.testing.assert_array_equal(be(a, b), first)
    half = compute_flow(be, a[:120], b[:120])  # another size through the same instance
    np.testing.assert_array_equal(half, get_backend("dis")(a[:120], b[:120]))
    np.testing.assert_array_equal(be(a, b), first)


def test_dis_wide_short_frames_do_not_crash():
    # OpenCV 5.0's DIS segfaults on these sizes (pyramid shallower than the preset's finest
    # scale, re-derived from the width only). Run in a child process: a segfault must fail
    # this test, not kill the test session.
    code = (
        "import numpy as np\n"
        "from blursynth.flow import get_backend\n"
        "rng = np.random.default_rng(0)\n"
        "for preset in ('ultrafast', 'fast', 'medium'):\n"
        "    be = get_backend('dis', preset=preset)\n"
        "    for h, w in ((15, 100), (12, 200), (31, 300), (16, 100), (100, 15), (8, 12)):\n"
        "        a = rng.integers(0, 256, (h, w), dtype=np.uint8)\n"
        "        f = be(a, np.roll(a, 1, axis=1))\n"
        "        assert f.shape == (h, w, 2) and np.isfinite(f).all()\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok"


def test_dis_too_small_raises():
    a = np.zeros((6, 40), np.uint8)
    with pytest.raises(ParameterError, match="too small"):
        flow(a, a)


def test_backend_object_validates_inputs(shifted):
    a, b, _ = shifted
    be = get_backend("dis")
    assert isinstance(be, FlowBackend) and be.name == "dis" and be.options == {"preset": "fast"}
    with pytest.raises(ParameterError):
        be(a, b[:-1])
    with pytest.raises(ParameterError):
        be(np.dstack([a] * 3), np.dstack([b] * 3))  # backends take grey frames
    with pytest.raises(ParameterError):
        compute_flow("dis", a, b)


@pytest.mark.parametrize("scale", [0, -0.5, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_invalid_scale(shifted, scale):
    a, b, _ = shifted
    with pytest.raises(ParameterError, match="scale"):
        flow(a, b, scale=scale)


def test_invalid_frames():
    a = np.zeros((40, 40), np.uint8)
    with pytest.raises(ParameterError, match="uint8"):
        flow(a.astype(np.float32), a)
    with pytest.raises(ParameterError, match="differ"):
        flow(a, np.zeros((40, 41), np.uint8))
    with pytest.raises(ParameterError):
        flow(np.zeros((40, 40, 4), np.uint8), np.zeros((40, 40, 4), np.uint8))


def test_to_grey_uses_rgb_order():
    red = np.zeros((4, 5, 3), np.uint8)
    red[..., 0] = 255
    g = to_grey(red)
    assert g.shape == (4, 5) and g.dtype == np.uint8
    assert np.all(g == 76)  # 0.299 * 255; BGR order would give 0.114 * 255 = 29
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    assert to_grey(grey) is grey
    np.testing.assert_array_equal(to_grey(grey[..., None]), grey)


# --------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA")
def test_cuda_backend_unavailable_here():
    with pytest.raises(FlowBackendError, match="--flow dis"):
        get_backend("cuda")
    a = np.zeros((32, 32), np.uint8)
    with pytest.raises(FlowBackendError, match="no CUDA support"):
        flow(a, a, backend="cuda")


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA")
def test_auto_falls_back_to_dis():
    assert get_backend("auto").name == "dis"


def test_cuda_available_is_guarded(monkeypatch):
    def boom():
        raise cv2.error("CUDA driver version is insufficient")

    monkeypatch.setattr(cv2.cuda, "getCudaEnabledDeviceCount", boom)
    assert cuda_available() is False
    monkeypatch.setattr(cv2.cuda, "getCudaEnabledDeviceCount", lambda: -1)
    assert cuda_available() is False
    monkeypatch.setattr(cv2.cuda, "getCudaEnabledDeviceCount", lambda: 1)
    assert cuda_available() is True


def test_cuda_backend_plumbing_with_fake_device(monkeypatch, shifted):
    # No GPU here: replace OpenCV's CUDA entry points with host stand-ins that follow the
    # documented API (create(numLevels, pyrScale, fastPyramids, winSize, numIters, polyN,
    # polySigma, flags); calc(GpuMat, GpuMat, None) -> GpuMat; download() -> ndarray) and
    # compute with the CPU Farneback, to check the upload/calc/download path and that each
    # parameter lands in its slot.
    class FakeGpuMat:
        count = 0

        def __init__(self, arr=None):
            FakeGpuMat.count += 1
            self.arr = arr

        def upload(self, arr):
            self.arr = np.array(arr, copy=True)

        def download(self):
            return self.arr

    class FakeFarneback:
        def __init__(self, levels, pyr, fast, win, iters, poly_n, poly_sigma, flags):
            self.p = (pyr, levels, win, iters, poly_n, poly_sigma, flags)

        def calc(self, g0, g1, out):
            assert isinstance(g0, FakeGpuMat) and out is None
            return FakeGpuMat(cv2.calcOpticalFlowFarneback(g0.arr, g1.arr, None, *self.p))

    monkeypatch.setattr(cv2.cuda, "getCudaEnabledDeviceCount", lambda: 1)
    monkeypatch.setattr(cv2.cuda, "GpuMat", FakeGpuMat)
    monkeypatch.setattr(cv2.cuda, "FarnebackOpticalFlow_create", FakeFarneback, raising=False)

    a, b, true = shifted
    assert get_backend("auto").name == "cuda"
    be = get_backend("cuda", winsize=21, levels=4)
    made = FakeGpuMat.count
    f = compute_flow(be, a, b)
    f2 = compute_flow(be, a, b)
    assert FakeGpuMat.count - made == 2  # the two uploaded buffers are reused
    expected = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.2, 0)
    np.testing.assert_array_equal(f, expected)
    np.testing.assert_array_equal(f2, expected)
    assert f.dtype == np.float32
    with pytest.raises(ParameterError):
        get_backend("cuda", fast_pyramids="yes")


# --------------------------------------------------------------------------------------------
# resize_flow
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(45, 100), (20, 16), (30, 80), (7, 40)])
def test_resize_flow_constant_field(size):
    u, v = 1.5, -2.0
    f = np.empty((30, 40, 2), np.float32)
    f[..., 0], f[..., 1] = u, v
    g = resize_flow(f, size)
    assert g.shape == (*size, 2) and g.dtype == np.float32
    # x scaled by width ratio, y by height ratio (size is (height, width)). Equal up to
    # float32 rounding in OpenCV's interpolation weights (1 ulp ~ 1e-7).
    np.testing.assert_allclose(g[..., 0], u * size[1] / 40, rtol=1e-6, atol=0)
    np.testing.assert_allclose(g[..., 1], v * size[0] / 30, rtol=1e-6, atol=0)


def test_resize_flow_keeps_pixel_centre_registration():
    # A linear field on a 30x40 grid, enlarged x2.5: bilinear interpolation reproduces a
    # linear function exactly, so the result must equal the field evaluated at the new pixel
    # centres x = (x' + 0.5) / 2.5 - 0.5, times the size ratio.
    h, w, H, W = 30, 40, 75, 100
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    f = np.dstack([0.1 * xx + 2.0, -0.05 * yy + 1.0 + 0.02 * xx]).astype(np.float32)
    g = resize_flow(f, (H, W))
    Y, X = np.mgrid[0:H, 0:W].astype(np.float64)
    x = (X + 0.5) * w / W - 0.5
    y = (Y + 0.5) * h / H - 0.5
    expected = np.dstack([(0.1 * x + 2.0) * W / w, (-0.05 * y + 1.0 + 0.02 * x) * H / h])
    inner = np.s_[3:-3, 3:-3]  # borders are clamped, not extrapolated
    np.testing.assert_allclose(g[inner], expected[inner], atol=1e-4)


def test_resize_flow_same_size_returns_copy():
    f = np.random.default_rng(0).normal(size=(8, 9, 2)).astype(np.float32)
    g = resize_flow(f, (8, 9))
    np.testing.assert_array_equal(g, f)
    assert g is not f and not np.shares_memory(g, f)


@pytest.mark.parametrize("size", [(0, 10), (10,), (10, 2.5), "10x10", (True, 5)])
def test_resize_flow_bad_size(size):
    with pytest.raises(ParameterError):
        resize_flow(np.zeros((4, 4, 2), np.float32), size)


def test_resize_flow_bad_field():
    with pytest.raises(ParameterError):
        resize_flow(np.zeros((4, 4, 3), np.float32), (8, 8))


# --------------------------------------------------------------------------------------------
# flow_to_color
# --------------------------------------------------------------------------------------------


def one_vector(u, v):
    return np.array([[[u, v]]], np.float32)


def assert_rgb(actual, expected):
    # +-1: the reference truncates 255 * colour; half-way blends may land on either side.
    assert np.abs(actual.astype(int) - np.array(expected)).max() <= 1, (actual, expected)


def test_zero_flow_is_white():
    img = flow_to_color(np.zeros((5, 6, 2), np.float32))
    assert img.shape == (5, 6, 3) and img.dtype == np.uint8
    assert np.all(img == 255)


@pytest.mark.parametrize(
    "u, v, rgb",
    [
        (1, 0, (255, 0, 0)),  # right: red (wheel index 0)
        (0, 1, (255, 229, 0)),  # down (+y): yellow-orange (index 13.5, in RY)
        (-1, 0, (0, 209, 255)),  # left: cyan-blue (index 27, in CB)
        (0, -1, (88, 0, 255)),  # up: blue-violet (index 40.5, in BM)
    ],
)
def test_axis_hues(u, v, rgb):
    # Middlebury orientation: wheel position (atan2(-v, -u) / pi + 1) / 2 * 54.
    assert_rgb(flow_to_color(one_vector(u, v), max_radius=1.0)[0, 0], rgb)


@pytest.mark.parametrize(
    "index, rgb",
    [(15, (255, 255, 0)), (21, (0, 255, 0)), (25, (0, 255, 255)), (36, (0, 0, 255)),
     (49, (255, 0, 255))],
)
def test_wheel_segment_boundaries(index, rgb):
    # The pure colours sit where segments RY 15, YG 6, GC 4, CB 11, BM 13 (, MR 6) end.
    ang = (index / 54 * 2 - 1) * math.pi  # atan2(-v, -u)
    u, v = -math.cos(ang), -math.sin(ang)
    # max_radius a hair above 1: the float32 unit vector may be 1 ulp longer than 1, which
    # would count as "beyond max_radius" and be darkened.
    assert_rgb(flow_to_color(one_vector(u, v), max_radius=1.001)[0, 0], rgb)


def test_saturation_follows_radius():
    f = np.array([[[2.0, 0.0], [4.0, 0.0], [8.0, 0.0]]], np.float32)
    img = flow_to_color(f, max_radius=4.0)
    assert_rgb(img[0, 0], (255, 127, 127))  # half radius: half saturated
    assert_rgb(img[0, 1], (255, 0, 0))  # at max_radius: full saturation
    assert_rgb(img[0, 2], (191, 0, 0))  # beyond: darkened to 75 %


def test_default_max_radius_is_frame_max_but_at_least_one():
    img = flow_to_color(np.array([[[2.0, 0.0], [4.0, 0.0]]], np.float32))
    assert_rgb(img[0, 1], (255, 0, 0))
    assert_rgb(img[0, 0], (255, 127, 127))
    small = flow_to_color(np.array([[[0.5, 0.0]]], np.float32))
    assert_rgb(small[0, 0], (255, 127, 127))  # 0.5 px drawn at half saturation, not full


def test_unknown_flow_is_black():
    f = np.array([[[np.nan, 0.0], [1.0, 0.0], [0.0, np.inf]]], np.float32)
    img = flow_to_color(f)
    assert np.all(img[0, 0] == 0) and np.all(img[0, 2] == 0)
    assert_rgb(img[0, 1], (255, 0, 0))  # the max radius ignores the unknown pixels


@pytest.mark.parametrize("r", [0, -1, float("nan"), float("inf")])
def test_bad_max_radius(r):
    with pytest.raises(ParameterError):
        flow_to_color(np.zeros((2, 2, 2), np.float32), max_radius=r)


# --------------------------------------------------------------------------------------------
# .flo files
# --------------------------------------------------------------------------------------------


def test_flo_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    f = rng.normal(scale=20, size=(7, 11, 2)).astype(np.float32)
    f[0, 0] = (np.nan, np.inf)
    f[0, 1] = (-0.0, np.float32(1e-42))  # negative zero and a subnormal
    f[0, 2] = (1e9, -np.inf)  # Middlebury's "unknown" marker range
    path = tmp_path / "x.flo"
    write_flo(path, f)
    assert path.stat().st_size == 12 + 8 * 7 * 11
    g = read_flo(path)
    assert g.shape == f.shape and g.dtype == np.float32 and g.flags.writeable
    np.testing.assert_array_equal(g.view(np.uint32), f.view(np.uint32))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_flo_layout_matches_middlebury(tmp_path):
    f = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    path = tmp_path / "x.flo"
    write_flo(path, f)
    raw = path.read_bytes()
    assert raw[:4] == b"PIEH" and np.frombuffer(raw[:4], "<f4")[0] == 202021.25
    assert np.frombuffer(raw[4:12], "<i4").tolist() == [3, 2]  # width, then height
    assert np.frombuffer(raw[12:], "<f4").tolist() == list(range(12))  # (u, v) interleaved, rows
    # And OpenCV's independent .flo implementation agrees both ways.
    np.testing.assert_array_equal(cv2.readOpticalFlow(str(path)), f)
    other = tmp_path / "cv.flo"
    assert cv2.writeOpticalFlow(str(other), f * 3)
    np.testing.assert_array_equal(read_flo(other), f * 3)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "header"),
        (b"PIEH\x01", "header"),
        (b"XXXX" + np.array([1, 1], "<i4").tobytes() + bytes(8), "magic"),
        (b"PIEH" + np.array([2, 2], "<i4").tobytes() + bytes(8 * 4 - 1), "truncated"),
        (b"PIEH" + np.array([2, 2], "<i4").tobytes() + bytes(8 * 4 + 4), "trailing"),
        (b"PIEH" + np.array([0, 5], "<i4").tobytes(), "size"),
        (b"PIEH" + np.array([-3, 5], "<i4").tobytes() + bytes(8), "size"),
    ],
)
def test_read_flo_rejects_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.flo"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=match) as exc:
        read_flo(path)
    assert exc.value.path == str(path)
    assert str(path) in str(exc.value)


def test_read_flo_missing_file(tmp_path):
    path = tmp_path / "missing.flo"
    with pytest.raises(InputFileError) as exc:
        read_flo(path)
    assert str(path) in str(exc.value)


def test_write_flo_failure_leaves_nothing(tmp_path):
    target = tmp_path / "adir"
    target.mkdir()  # a directory cannot be replaced by a file
    with pytest.raises(OutputError) as exc:
        write_flo(target, np.zeros((2, 2, 2), np.float32))
    assert str(target) in str(exc.value)
    assert sorted(os.listdir(tmp_path)) == ["adir"] and os.listdir(target) == []
    with pytest.raises(ParameterError):
        write_flo(tmp_path / "x.flo", np.zeros((2, 2), np.float32))
