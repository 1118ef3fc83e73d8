import math

import numpy as np
import pytest

from blursynth.crf import CRF, decode_u8, encode_u8, get_crf
from blursynth.errors import InputFileError, ParameterError


# Independent float64 reference encoders (linear -> encoded), written from the definitions.
def _ref_encode(spec, x):
    x = np.clip(np.asarray(x, np.float64), 0, 1)
    if spec == "srgb":
        return np.where(x <= 0.04045 / 12.92, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    if spec == "linear":
        return x
    kind, g = spec.split(":")
    g = float(g)
    if kind == "gamma":
        return x ** (1 / g)
    if kind == "exp":
        return (1 - np.exp(-g * x)) / (1 - np.exp(-g))
    raise AssertionError(spec)


FORMULA_SPECS = ["srgb", "gamma:2.2", "gamma:1.8", "exp:7", "exp:2", "linear"]


@pytest.fixture
def table_path(tmp_path):
    # A tabulated curve with a visibly different shape: linear = y**3 sampled at 17 levels.
    p = tmp_path / "curve.txt"
    lin = np.linspace(0, 1, 17) ** 3
    p.write_text("# linear values at evenly spaced encoded levels\n" + "\n".join(map(repr, lin.tolist())))
    return p


@pytest.fixture(params=FORMULA_SPECS + ["table"])
def crf(request, table_path):
    return get_crf(f"table:{table_path}" if request.param == "table" else request.param)


def test_u8_round_trip_all_codes(crf):
    codes = np.arange(256, dtype=np.uint8)
    lin = decode_u8(codes, crf)
    assert lin.dtype == np.float32
    np.testing.assert_array_equal(encode_u8(lin, crf), codes)
    # Also when the float32 decode is widened to float64.
    np.testing.assert_array_equal(encode_u8(lin.astype(np.float64), crf), codes)
    np.testing.assert_array_equal(lin, crf.decode_lut())
    assert lin[0] == 0 and lin[255] == 1


def test_thresholds_are_float32_boundaries(crf):
    t = crf.thresholds()
    lut = crf.decode_lut()
    assert t.shape == (255,) and t.dtype == np.float32
    # Each boundary separates its two codes.
    assert np.all(lut[:-1] < t) and np.all(t <= lut[1:])
    np.testing.assert_array_equal(np.searchsorted(t, lut, side="right"), np.arange(256))
    # ... and sits on the encoded half-code (k - 0.5)/255.
    np.testing.assert_allclose(crf.to_encoded(t), (np.arange(1, 256) - 0.5) / 255, atol=1e-6)


def test_encoded_linear_inverse(crf):
    y = np.linspace(0, 1, 10001)
    np.testing.assert_allclose(crf.to_encoded(crf.to_linear(y)), y, atol=1e-6, rtol=0)
    assert np.all(np.diff(crf.to_linear(y)) >= 0)
    assert np.all(np.diff(crf.to_linear(y[::10])) > 0)


@pytest.mark.parametrize("spec", FORMULA_SPECS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_encode_u8_matches_float64_rounding(spec, dtype):
    rng = np.random.default_rng(1)
    # Uniform in linear and in encoded space (the latter covers the dark codes densely),
    # plus values outside [0, 1].
    x = np.concatenate([rng.random(100_000), rng.random(100_000) ** 3,
                        [-1.0, -0.0, 1.0, 2.0, np.inf, -np.inf]]).astype(dtype)
    expected = np.floor(255 * _ref_encode(spec, x.astype(np.float64)) + 0.5).astype(np.uint8)
    got = encode_u8(x, spec)
    assert got.dtype == np.uint8 and got.shape == x.shape
    np.testing.assert_array_equal(got, expected)


def test_encode_u8_exact_at_float32_boundaries():
    # Neighbouring float32 values around every boundary must land on the right side,
    # judged in float64: the case that naive float32 rounding of thresholds gets wrong.
    crf = get_crf("srgb")
    t = crf.thresholds()
    around = np.concatenate([np.nextafter(t, np.float32(0)), t, np.nextafter(t, np.float32(2))])
    expected = np.floor(255 * _ref_encode("srgb", around.astype(np.float64)) + 0.5)
    np.testing.assert_array_equal(encode_u8(around, crf), expected.astype(np.uint8))


def test_encode_u8_nan_and_bad_dtype():
    assert encode_u8(np.array([np.nan, 0.5], np.float32), "linear").tolist() == [0, 128]
    with pytest.raises(ParameterError, match="floating-point"):
        encode_u8(np.array([1, 2]), "srgb")
    with pytest.raises(ParameterError, match="uint8"):
        decode_u8(np.array([1, 2], np.int32), "srgb")


def test_known_values():
    srgb = get_crf("srgb")
    assert srgb.to_linear(0.5) == pytest.approx(0.21404114, abs=1e-7)
    assert srgb.to_linear(1.0) == 1.0 and srgb.to_linear(0.0) == 0.0
    # Linear toe: x = y / 12.92 below 0.04045.
    y = np.array([0.001, 0.01, 0.04])
    np.testing.assert_allclose(srgb.to_linear(y), y / 12.92, rtol=1e-6)
    np.testing.assert_allclose(srgb.to_encoded(y / 12.92), y, rtol=1e-6)
    assert get_crf("gamma:2.2").to_linear(0.5) == pytest.approx(0.5 ** 2.2, rel=1e-6)
    assert get_crf("gamma").to_linear(0.5) == pytest.approx(0.5 ** 2.2, rel=1e-6)
    # exp:A normalised so that 1 -> 1; mid value from the closed form.
    e7 = get_crf("exp")
    assert e7.to_encoded(1.0) == 1.0
    assert e7.to_encoded(0.1) == pytest.approx((1 - math.exp(-0.7)) / (1 - math.exp(-7)), rel=1e-6)
    assert get_crf("linear").to_linear(0.3) == pytest.approx(0.3)
    # Inputs are clipped.
    assert srgb.to_linear(-0.5) == 0.0 and srgb.to_linear(1.5) == 1.0
    # sRGB code 128 -> 0.21586 linear (standard table value).
    assert decode_u8(np.array([128], np.uint8), srgb)[0] == pytest.approx(0.2158605, abs=1e-6)


def test_specs_canonical_and_equal():
    assert get_crf("gamma").spec == "gamma:2.2"
    assert get_crf(" GAMMA:2 ").spec == "gamma:2"
    assert get_crf("exp").spec == "exp:7"
    assert get_crf("exp:2.5").spec == "exp:2.5"
    assert get_crf("sRGB").spec == "srgb"
    c = get_crf("gamma:1.8")
    assert get_crf(c) is c
    assert get_crf(c.spec) == c and hash(get_crf(c.spec)) == hash(c)
    assert get_crf("gamma:2.2") != get_crf("gamma:1.8")


def test_table_forms(tmp_path, table_path):
    t = get_crf(f"table:{table_path}")
    assert t.spec == f"table:{table_path}"
    assert get_crf(t.spec) == t
    # Interpolates between knots: at y = 1/16 + half a step the linear value is the mean.
    lin = np.linspace(0, 1, 17) ** 3
    assert t.to_linear(1.5 / 16) == pytest.approx((lin[1] + lin[2]) / 2, rel=1e-6)
    assert t.to_encoded((lin[1] + lin[2]) / 2) == pytest.approx(1.5 / 16, rel=1e-6)
    # Same curve as .npy and as two-column CSV.
    np.save(tmp_path / "c.npy", lin)
    csv = tmp_path / "c.csv"
    csv.write_text("\n".join(f"{e!r},{v!r}" for e, v in zip(np.linspace(0, 1, 17).tolist(), lin.tolist())))
    for p in (tmp_path / "c.npy", csv):
        np.testing.assert_array_equal(get_crf(f"table:{p}").decode_lut(), t.decode_lut())


@pytest.mark.parametrize("content, problem", [
    ("0\n0.5\n0.4\n1\n", "strictly increasing"),
    ("0.1\n0.5\n1\n", "from 0 to 1"),
    ("0\n0.5\n0.9\n", "from 0 to 1"),
    ("0\n", "at least 2"),
    ("0, a\n1, 1\n", "not a numeric"),
    ("0,0,0\n1,1,1\n", "shape"),
    ("0,0\n0.5,nan\n1,1\n", "NaN"),
])
def test_bad_table_names_file(tmp_path, content, problem):
    p = tmp_path / "bad_curve.csv"
    p.write_text(content)
    with pytest.raises(InputFileError, match=problem) as ei:
        get_crf(f"table:{p}")
    assert ei.value.path == str(p) and "bad_curve.csv" in str(ei.value)


def test_missing_table(tmp_path):
    with pytest.raises(InputFileError, match="not found") as ei:
        get_crf(f"table:{tmp_path / 'nope.npy'}")
    assert "nope.npy" in str(ei.value)


@pytest.mark.parametrize("spec", ["foo", "gamma:abc", "gamma:0", "gamma:-2", "exp:0",
                                  "exp:-1", "gamma:inf", "exp:nan", "srgb:1", "table:", ""])
def test_bad_specs(spec):
    with pytest.raises(ParameterError) as ei:
        get_crf(spec)
    assert repr(spec) in str(ei.value)


def test_unknown_spec_lists_forms():
    with pytest.raises(ParameterError, match=r"srgb.*gamma.*exp.*linear.*table:PATH"):
        get_crf("rec709")


def test_too_steep_curve_rejected():
    # (1/255)**20 underflows float32: codes 0 and 1 would both decode to 0.
    with pytest.raises(ParameterError, match="too steep"):
        get_crf("gamma:20")


def test_crf_immutable():
    c = get_crf("srgb")
    with pytest.raises(Exception):
        c.kind = "linear"
    lut = c.decode_lut()
    lut[1] = 5  # a copy: the curve is unaffected
    assert c.decode_lut()[1] != 5
    with pytest.raises(ParameterError):
        CRF("gamma", -1.0)
