"""convolve: true convolution (flipped kernel), reflect-101/valid borders, linear light, torch."""
import numpy as np
import pytest
from scipy import ndimage

from blursynth.convolve import blur_u8, check_kernel, convolve, convolve_torch, fast_len
from blursynth.crf import decode_u8, encode_u8
from blursynth.errors import ParameterError

# 5x5 uses filter2D's direct sum, 13x13 and larger the whole-image DFT: test both routes.
SIZES = (5, 13)


def asym_kernel(k: int, seed: int = 0) -> np.ndarray:
    """A non-symmetric kernel (random positive values, heavier at the top-left)."""
    rng = np.random.default_rng(seed)
    w = rng.random((k, k)) * np.linspace(2, 0.1, k)[:, None] * np.linspace(3, 0.1, k)[None, :]
    return (w / w.sum()).astype(np.float32)


def explicit(img: np.ndarray, k: np.ndarray, border: str) -> np.ndarray:
    """out(y, x) = sum_ij k(i, j) I(y + r - i, x + r - j), by loops over the kernel."""
    r0, r1 = k.shape[0] // 2, k.shape[1] // 2
    src = img.astype(np.float64)
    if border == "reflect":  # numpy's reflect is reflect-101, periodic for wide pads
        pad = [(r0, r0), (r1, r1)] + [(0, 0)] * (img.ndim - 2)
        src = np.pad(src, pad, mode="reflect")
    h, w = src.shape[0] - 2 * r0, src.shape[1] - 2 * r1
    out = np.zeros((h, w) + img.shape[2:])
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            # tap (i, j) reads the pixel (r0 - i, r1 - j) away from the output pixel
            out += k[i, j] * src[2 * r0 - i:2 * r0 - i + h, 2 * r1 - j:2 * r1 - j + w]
    return out


@pytest.mark.parametrize("k", SIZES)
def test_impulse_returns_the_kernel_where_it_was_placed(k):
    img = np.zeros((40, 45), np.float32)
    y0, x0 = 17, 22
    img[y0, x0] = 1.0
    ker = asym_kernel(k)
    out = convolve(img, ker)
    r = k // 2
    # A true convolution: tap (i, j) lands at (y0 + i - r, x0 + j - r), i.e. unflipped.
    np.testing.assert_allclose(out[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1], ker, atol=1e-6)
    out[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1] = 0
    assert np.abs(out).max() < 1e-6


def test_one_tap_kernel_moves_the_image_the_documented_way():
    img = np.zeros((20, 20), np.float32)
    img[10, 10] = 1
    k = np.zeros((3, 3), np.float32)
    k[0, 1] = 1  # the tap above the centre: out(y, x) = I(y + 1 - 0, x) = I(y + 1, x): moves up
    assert np.argwhere(convolve(img, k) > 0.5).tolist() == [[9, 10]]
    big = np.zeros((15, 15), np.float32)
    big[0, 7] = 1  # same direction through the DFT route: out(y, x) = I(y + 7, x)
    assert np.argwhere(convolve(img, big) > 0.5).tolist() == [[3, 10]]


@pytest.mark.parametrize("k", SIZES)
@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_asymmetric_kernel_matches_explicit_convolution(k, border):
    rng = np.random.default_rng(1)
    img = rng.random((19, 23, 2)).astype(np.float32)
    ker = asym_kernel(k, seed=k)
    want = explicit(img, ker, border)
    got = convolve(img, ker, border=border)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-6)
    if border == "reflect":  # and SciPy's true convolution with the same border ("mirror")
        ref = np.stack([ndimage.convolve(img[..., c].astype(np.float64), ker.astype(np.float64),
                                         mode="mirror") for c in range(2)], -1)
        np.testing.assert_allclose(got, ref, atol=2e-6)


@pytest.mark.parametrize("k", SIZES)
def test_valid_output_shrinks_by_k_minus_one(k):
    img = np.random.default_rng(2).random((30, 41, 3)).astype(np.float32)
    assert convolve(img, asym_kernel(k), border="valid").shape == (30 - k + 1, 41 - k + 1, 3)
    assert convolve(img[..., 0], asym_kernel(k), border="valid").shape == (30 - k + 1, 41 - k + 1)
    with pytest.raises(ParameterError, match="does not fit"):
        convolve(img[:k - 1], asym_kernel(k), border="valid")


def test_reflect_is_reflect_101_even_when_the_kernel_is_wider_than_the_image():
    img = np.random.default_rng(3).random((6, 7)).astype(np.float32)
    ker = asym_kernel(21)
    np.testing.assert_allclose(convolve(img, ker), explicit(img, ker, "reflect"), atol=2e-6)
    # reflect-101 does not repeat the edge pixel: a 1-D ramp stays a ramp under a box
    ramp = np.tile(np.arange(8, dtype=np.float32), (3, 1))
    box = np.zeros((3, 3), np.float32)
    box[1] = 1 / 3
    assert convolve(ramp, box)[1, 0] == pytest.approx((1 + 0 + 1) / 3)  # not (0 + 0 + 1) / 3


@pytest.mark.parametrize("k", (3, 25))
def test_constant_image_stays_constant(k):
    img = np.full((20, 30, 3), 0.3, np.float32)
    np.testing.assert_allclose(convolve(img, asym_kernel(k)), 0.3, atol=1e-6)
    # 8-bit codes stay exactly the same after decoding, blurring and rounding
    for code in (0, 1, 17, 128, 254, 255):
        flat = np.full((24, 24, 3), code, np.uint8)
        assert np.array_equal(blur_u8(flat, asym_kernel(k), "srgb"), flat)


@pytest.mark.parametrize("k", (3, 15))
def test_step_blurs_to_the_linear_average_not_the_srgb_average(k):
    # Two taps of 1/2, K - 1 apart horizontally: a pixel whose taps fall one on black (0) and
    # one on white (255) gets linear (0 + 1) / 2 = 0.5, which sRGB encodes as
    # 1.055 * 0.5 ** (1 / 2.4) - 0.055 = 0.73536 -> code 187.5 -> 188 (the sRGB average is 128).
    step = np.zeros((9, 40, 3), np.uint8)
    step[:, 20:] = 255
    ker = np.zeros((k, k), np.float32)
    ker[k // 2, 0] = ker[k // 2, -1] = 0.5
    out = blur_u8(step, ker, "srgb")
    r = k // 2
    assert (out[:, 20 - r:20 + r] == 188).all()  # every pixel whose taps straddle the step
    assert (out[:, :20 - r] == 0).all() and (out[:, 20 + r:] == 255).all()
    # the same in gamma 2.2: 0.5 ** (1 / 2.2) * 255 = 186.09 -> 186
    assert (blur_u8(step, ker, "gamma:2.2")[:, 20] == 186).all()


def test_blur_u8_matches_decode_convolve_encode_by_hand():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (16, 18, 3), dtype=np.uint8)
    ker = asym_kernel(5)
    lin = explicit(decode_u8(img, "srgb"), ker, "reflect")
    # encode by the formula (not the LUT): round(255 * srgb(lin))
    enc = np.where(lin <= 0.04045 / 12.92, lin * 12.92, 1.055 * np.maximum(lin, 0) ** (1 / 2.4) - 0.055)
    want = np.floor(enc * 255 + 0.5).astype(np.uint8)
    got = blur_u8(img, ker, "srgb")
    assert np.abs(got.astype(int) - want).max() <= 1  # float32 vs float64 at the .5 boundary
    assert np.mean(got == want) > 0.999
    # the fast LUT decode and numba encode give exactly the crf module's reference codes
    for crf in ("srgb", "gamma:2.2", "linear"):
        ref = encode_u8(convolve(decode_u8(img, crf), ker), crf)
        assert np.array_equal(blur_u8(img, ker, crf), ref)


def test_float64_stays_float64():
    img = np.random.default_rng(5).random((20, 20))
    assert convolve(img, asym_kernel(13)).dtype == np.float64
    assert convolve(img, asym_kernel(3)).dtype == np.float64


def test_bad_inputs_are_named():
    img = np.zeros((8, 8), np.float32)
    with pytest.raises(ParameterError, match="dtype uint8"):
        convolve(np.zeros((8, 8), np.uint8), np.ones((3, 3)) / 9)
    with pytest.raises(ParameterError, match="odd sides"):
        convolve(img, np.ones((4, 4)) / 16)
    with pytest.raises(ParameterError, match="NaN"):
        convolve(img, np.full((3, 3), np.nan))
    with pytest.raises(ParameterError, match="border"):
        convolve(img, np.ones((3, 3)) / 9, border="zero")
    with pytest.raises(ParameterError, match="summing to 1"):
        blur_u8(np.zeros((8, 8, 3), np.uint8), np.ones((3, 3)))
    with pytest.raises(ParameterError, match=">= 0"):
        check_kernel(np.array([[0, -0.5, 0], [0, 1, 0], [0, 0.5, 0]]), normalised=True)
    with pytest.raises(ParameterError, match="uint8"):
        blur_u8(img, np.ones((3, 3)) / 9)


def test_fast_len_is_the_next_even_7_smooth_number():
    assert [fast_len(n) for n in (1, 7, 11, 13, 783, 787, 1323, 1344)] == \
        [2, 8, 12, 14, 784, 800, 1344, 1344]


# -- torch ---------------------------------------------------------------------------------


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_torch_matches_numpy(border):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = rng.random((3, 3, 26, 31)).astype(np.float32)  # (B, C, H, W)
    kernels = np.stack([asym_kernel(13, seed=s) for s in range(3)])
    got = convolve_torch(torch.from_numpy(x), torch.from_numpy(kernels), border=border).numpy()
    for b in range(3):
        want = convolve(x[b].transpose(1, 2, 0), kernels[b], border=border).transpose(2, 0, 1)
        assert got[b].shape == want.shape
        np.testing.assert_allclose(got[b], want, atol=1e-4)
        np.testing.assert_allclose(got[b], explicit(x[b].transpose(1, 2, 0), kernels[b],
                                                    border).transpose(2, 0, 1), atol=1e-5)


def test_torch_shared_kernel_wide_pad_and_dtype():
    torch = pytest.importorskip("torch")
    x = torch.rand(2, 1, 5, 6, dtype=torch.float64)
    k = asym_kernel(15)
    out = convolve_torch(x, torch.from_numpy(k))  # one (K, K) kernel for the batch; K > H, W
    assert out.dtype == torch.float64 and out.shape == x.shape
    for b in range(2):
        np.testing.assert_allclose(out[b, 0].numpy(), explicit(x[b, 0].numpy(), k, "reflect"),
                                   atol=1e-6)
    with pytest.raises(ParameterError, match="kernels of shape"):
        convolve_torch(x, torch.ones(3, 3, 3) / 9)
    with pytest.raises(ParameterError, match=r"\(B, C, H, W\)"):
        convolve_torch(x[0], torch.ones(3, 3) / 9)
