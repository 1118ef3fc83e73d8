"""segblur models: known answers (no objects, still objects, an opaque object translating),
illumination, rounding, borders, parameters and kernel records."""
import json
import math

import numpy as np
import pytest
from skimage import color, data

from blursynth.convolve import convolve
from blursynth.crf import decode_u8
from blursynth.errors import InputFileError, ParameterError
from blursynth.kernel_bank import save_bank
from blursynth.psf import make_kernel
from blursynth.segblur import (
    SegParams, fill_background, illuminate, layered_blur, plan_item_kernels, sbdd_blur,
    segblur_item,
)
from blursynth.segmasks import SegItem
from blursynth.shake import kernel_from_info

MODELS = {"layered": layered_blur, "sbdd": sbdd_blur}


def linear(rgb: np.ndarray) -> np.ndarray:
    return decode_u8(np.ascontiguousarray(rgb), "srgb")


def photo(h=64, w=80, y=100, x=180) -> np.ndarray:
    """A real photo crop, linear float32."""
    return linear(data.astronaut()[y:y + h, x:x + w])


def delta(k: int) -> np.ndarray:
    d = np.zeros((k, k), np.float32)
    d[k // 2, k // 2] = 1
    return d


def gp(k: int, seed: int = 0) -> np.ndarray:
    return make_kernel("gp", k, np.random.default_rng(seed))


def box_mask(h, w, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# -- known answers -------------------------------------------------------------------------


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("model", MODELS)
def test_no_objects_is_a_convolution_with_the_camera_kernel(model, border):
    x, k0 = photo(), gp(15)
    want = convolve(x, k0, border=border)
    got = MODELS[model](x, np.zeros((0,) + x.shape[:2], bool), k0[None], border=border)
    assert got.shape == want.shape
    # sbdd divides by W_0 + 1e-6 (W_0 = 1): a relative 1e-6
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 if model == "layered" else 3e-6)


@pytest.mark.parametrize("model", MODELS)
def test_all_delta_kernels_return_the_photo(model):
    x = photo()
    m = np.stack([box_mask(64, 80, 10, 40, 10, 50), box_mask(64, 80, 30, 60, 30, 75)])
    got = MODELS[model](x, m, np.stack([delta(9)] * 3))
    if model == "layered":
        assert np.array_equal(got, x)
    else:
        np.testing.assert_allclose(got, x, rtol=2e-6, atol=0)


def test_still_object_over_a_shaking_background_stays_sharp_inside_its_mask():
    x, k = photo(), 15
    m = box_mask(64, 80, 16, 48, 20, 60)
    ks = np.stack([gp(k), delta(k)])
    lay = layered_blur(x, m[None], ks)
    assert np.array_equal(lay[m], x[m])  # exactly: its alpha is 1 and its colour itself
    assert np.abs(lay[~m] - x[~m]).max() > 0.05  # the background did move

    # SBDD mixes the background's kernel into the object's edge band: exact only deeper
    # than K // 2 inside the mask, where W_0 = 0.
    sb = sbdd_blur(x, m[None], ks)
    r = k // 2
    core = box_mask(64, 80, 16 + r, 48 - r, 20 + r, 60 - r)
    np.testing.assert_allclose(sb[core], x[core], rtol=2e-6, atol=0)
    assert np.abs(sb[m & ~core] - x[m & ~core]).max() > 0.02


def _render_translation(bg, obj, mask, velocity, steps):
    """The truth by definition: the mean over the exposure of the object composited over the
    still background at each of its positions ``s * velocity`` (s in `steps`)."""
    acc = np.zeros_like(bg, np.float64)
    for s in steps:
        d = (s * velocity[0], s * velocity[1])
        a = np.roll(mask, d, axis=(0, 1)).astype(np.float64)[..., None]
        acc += np.roll(obj * mask[..., None], d, axis=(0, 1)) + (1 - a) * bg
    return (acc / len(steps)).astype(np.float32)


def _path_kernel(velocity, steps, k):
    """A tap of 1/N at each of the object's N positions: a true-convolution PSF."""
    ker = np.zeros((k, k), np.float32)
    for s in steps:
        ker[k // 2 + s * velocity[0], k // 2 + s * velocity[1]] += 1.0 / len(steps)
    return ker


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_layered_renders_an_opaque_translating_object_exactly(border):
    h, w, k = 96, 128, 21
    bg = linear(data.coffee()[100:100 + h, 200:200 + w])   # a still, known background
    obj = np.zeros_like(bg)
    obj[30:66, 40:84] = linear(data.astronaut()[180:216, 200:244])  # a textured patch
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy - 48) / 18.0) ** 2 + ((xx - 62) / 22.0) ** 2 <= 1  # a disc of it
    # An accelerating object, (1, 2) px (down, right) per step; its mean position is 0, the
    # position in the sharp photo (a centred PSF). The path is not symmetric, so a flipped
    # (correlation) kernel would fail.
    velocity, steps = (1, 2), (-3, -2, -1, 0, 1, 5)
    truth = _render_translation(bg, obj, mask, velocity, steps)
    sharp = np.where(mask[..., None], obj, bg)
    ks = np.stack([delta(k), _path_kernel(velocity, steps, k)])

    got = layered_blur(sharp, mask[None], ks, background=bg, border=border)
    r = k // 2
    want = truth if border == "reflect" else truth[r:h - r, r:w - r]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)

    # SBDD smears the photo, background included, with the object's kernel: its trail
    # carries the background's colours, and the uncovered background is never seen.
    sb = sbdd_blur(sharp, mask[None], ks, border=border)
    err = np.abs(sb - want).max(axis=-1)
    assert err.max() > 0.1 and err.mean() > 1e-3


def test_layered_two_objects_with_their_own_velocities():
    h, w, k, steps = 96, 160, 15, (-2, -1, 0, 1, 2)
    bg = linear(data.coffee()[50:50 + h, 100:100 + w])
    tex = linear(data.astronaut()[150:150 + h, 150:150 + w])
    m1, m2 = box_mask(h, w, 20, 50, 15, 55), box_mask(h, w, 40, 80, 95, 140)
    v1, v2 = (0, 3), (2, -1)
    # the two smears do not meet, so each layer's exact render composes
    truth = _render_translation(bg, tex, m1, v1, steps)
    truth = _render_translation(truth, tex, m2, v2, steps)
    sharp = np.where((m1 | m2)[..., None], tex, bg)
    ks = np.stack([delta(k), _path_kernel(v1, steps, k), _path_kernel(v2, steps, k)])
    got = layered_blur(sharp, np.stack([m1, m2]), ks, background=bg)
    np.testing.assert_allclose(got, truth, rtol=0, atol=2e-6)


def test_front_object_is_not_smeared_by_the_object_behind_it():
    x = photo()
    back, front = box_mask(64, 80, 10, 50, 10, 70), box_mask(64, 80, 20, 40, 30, 50)
    ks = np.stack([delta(9), gp(9, 1), delta(9)])  # the back object moves, the front one not
    got = layered_blur(x, np.stack([back, front]), ks, background=x)
    assert np.array_equal(got[front], x[front])


def _naive_sbdd(x, masks, ks):
    """The published formula on whole images."""
    m = [(~masks.any(0)).astype(np.float32)] + [mi.astype(np.float32) for mi in masks]
    ws = [convolve(mi, ki) for mi, ki in zip(m, ks)]
    total = sum(ws) + 1e-6
    return sum((wi / total)[..., None] * convolve(x, ki) for wi, ki in zip(ws, ks))


def _naive_layered(x, masks, ks, bg):
    y = convolve(bg, ks[0])
    for i, (mi, ki) in enumerate(zip(masks, ks[1:])):
        v = (mi & ~masks[i + 1:].any(0)).astype(np.float32)[..., None]
        a = convolve(v, ki)
        y = convolve(x * v, ki) + (1 - a) * y
    return y


def test_object_crops_give_the_whole_image_formulas():
    """Work limited to each mask's neighbourhood, objects touching the borders included."""
    x = photo(72, 96)
    masks = np.stack([box_mask(72, 96, 0, 30, 0, 25), box_mask(72, 96, 20, 72, 60, 96),
                      box_mask(72, 96, 25, 50, 20, 70), np.zeros((72, 96), bool)])
    ks = np.stack([gp(15, i) for i in range(5)])
    bg = photo(72, 96, 300, 300)
    np.testing.assert_allclose(sbdd_blur(x, masks, ks), _naive_sbdd(x, masks, ks), atol=2e-6)
    np.testing.assert_allclose(layered_blur(x, masks, ks, background=bg),
                               _naive_layered(x, masks, ks, bg), atol=2e-6)


def test_weights_are_each_objects_share_of_the_light():
    h, w = 64, 80
    masks = np.stack([box_mask(h, w, 10, 40, 10, 50), box_mask(h, w, 25, 55, 35, 70)])
    white = np.ones((h, w, 3), np.float32)
    ks = np.stack([gp(15, 0), gp(15, 1), gp(15, 2)])
    y, wts = layered_blur(white, masks, ks, background=np.zeros_like(white),
                          return_weights=True)
    np.testing.assert_allclose(y[..., 0], wts.sum(0), atol=2e-6)  # white objects, black plate
    _, alphas = sbdd_blur(white, masks, ks, return_weights=True, border="valid")
    assert alphas.shape == (2, h - 14, w - 14) and alphas.min() > -1e-6
    assert alphas.sum(0).max() < 1 + 1e-6


# -- fill, illumination, encoding -----------------------------------------------------------


def test_fill_keeps_the_photo_and_stays_within_its_range():
    x = photo()
    hole = box_mask(64, 80, 10, 50, 20, 70)
    f = fill_background(x, hole)
    assert np.array_equal(f[~hole], x[~hole])
    assert f.min() >= x.min() - 1e-6 and f.max() <= x.max() + 1e-6  # convex weights
    flat = np.full_like(x[..., :1], 0.3)  # one channel works too
    np.testing.assert_allclose(fill_background(flat, hole), flat, atol=1e-6)


def test_illumination_is_scaling_the_hsv_value():
    rng = np.random.default_rng(0)
    x = rng.random((16, 16, 3)).astype(np.float32)
    x[0, :3] = [[0, 0, 0], [0.5, 0.5, 0.5], [1, 0, 0]]  # black, grey, a pure hue
    for a in (0.5, 1.0, 1.5):
        hsv = color.rgb2hsv(x.astype(np.float64))
        hsv[..., 2] *= a
        np.testing.assert_allclose(illuminate(x, a), color.hsv2rgb(hsv), rtol=1e-6, atol=1e-7)
    assert illuminate(x, 1.5).max() > 1  # not clipped here: it saturates at the end
    with pytest.raises(ParameterError, match="illumination"):
        illuminate(x, 0)


def _item(masks, shape=(40, 48)):
    return SegItem("t", None, np.asarray(masks, bool).reshape((-1,) + shape))


def _bank(tmp_path, *kernels):
    return str(save_bank(tmp_path / "bank.npz", np.stack(kernels)))


def test_output_is_rounded_not_truncated(tmp_path):
    # A 0 | 209 step under a 3-tap horizontal box, gamma 2.2: the pixel left of the edge
    # holds a third of code 209's light, code 255 ((209/255)^2.2 / 3)^(1/2.2) = 126.84, and
    # the one right of it two thirds, code 173.82.
    box = np.zeros((3, 3), np.float32)
    box[1] = 1 / 3
    p = SegParams(bank=_bank(tmp_path, box), crf="gamma:2.2")
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[:, 24:] = 209
    blurry, sharp, facts, _, _ = segblur_item(_item(np.zeros((0, 40, 48))), rgb, p,
                                              np.random.default_rng(0))
    third, two_thirds = (255 * ((209 / 255) ** 2.2 * f) ** (1 / 2.2) for f in (1 / 3, 2 / 3))
    assert (math.floor(third), math.floor(two_thirds)) == (126, 173)  # SBDD's astype(uint8)
    assert (blurry[:, 23] == 127).all() and (blurry[:, 24] == 174).all()
    assert (blurry[:, :23] == 0).all() and (blurry[:, 25:] == 209).all()
    assert np.array_equal(sharp, rgb)
    assert facts["kernels"] == [{"bank": p.bank, "index": 0, "size": 3}]


def test_illuminated_sharp_matches_and_saturation_is_recorded(tmp_path):
    p = SegParams(bank=_bank(tmp_path, delta(3)), crf="linear", illumination=(1.5, 1.5))
    rgb = np.full((40, 48, 3), 100, np.uint8)
    rgb[:, :10] = 250
    blurry, sharp, facts, _, _ = segblur_item(_item(np.zeros((0, 40, 48))), rgb, p,
                                              np.random.default_rng(0))
    assert facts["illumination"] == 1.5
    assert (sharp[:, 10:] == 150).all() and (sharp[:, :10] == 255).all()  # clipped at 1
    assert np.array_equal(blurry, sharp)
    assert facts["saturated"] == pytest.approx(10 / 48)


@pytest.mark.parametrize("model", MODELS)
def test_valid_border_crops_blurry_sharp_and_coverage_alike(model):
    rgb = data.astronaut()[100:160, 150:230]
    m = box_mask(60, 80, 15, 45, 20, 60)
    p = SegParams(model=model, size=11, object_extent=(3, 10), camera_extent=(0, 0),
                  border="valid", save_masks=True)
    res = segblur_item(SegItem("v", None, m[None]), rgb, p, np.random.default_rng(3))
    assert res.blurry.shape == res.sharp.shape == (50, 70, 3)
    assert res.coverage.shape == (1, 50, 70)
    assert res.facts["output_size"] == [50, 70] and res.facts["size"] == [60, 80]
    assert np.array_equal(res.sharp, rgb[5:-5, 5:-5])  # a still camera: decode/encode round trip
    # the still camera leaves the background exactly as it was, far from the object
    assert np.array_equal(res.blurry[:, -5:], rgb[5:-5, -10:-5])
    with pytest.raises(ParameterError, match="valid"):
        segblur_item(SegItem("v", None, np.zeros((0, 8, 8), bool)),
                     np.zeros((8, 8, 3), np.uint8), p, np.random.default_rng(0))


# -- kernels and parameters ----------------------------------------------------------------


def test_kernel_infos_regenerate_the_kernels_and_draws_are_reproducible():
    rgb = data.astronaut()[100:164, 150:230]
    m = np.stack([box_mask(64, 80, 5, 30, 5, 40), box_mask(64, 80, 30, 60, 40, 78)])
    p = SegParams(size=21, object_extent=(8, 20), camera_extent=(2, 4), illumination=(0.5, 1.5))
    a = segblur_item(SegItem("k", None, m), rgb, p, np.random.default_rng(7))
    b = segblur_item(SegItem("k", None, m), rgb, p, np.random.default_rng(7))
    assert np.array_equal(a.blurry, b.blurry) and a.facts == b.facts
    infos = json.loads(json.dumps(a.facts["kernels"]))  # as read back from the manifest
    assert len(infos) == 3
    for info, k in zip(infos, a.kernels):
        assert np.array_equal(kernel_from_info(info), k)
    assert 2 <= infos[0]["extent"] <= 4 and all(8 <= i["extent"] <= 20 for i in infos[1:])
    assert 0.5 <= a.facts["illumination"] <= 1.5
    assert plan_item_kernels(p, np.random.default_rng(7), 2) == a.facts["kernels"]


@pytest.mark.parametrize("kw, match", [
    (dict(model="nope"), "model"), (dict(border="zero"), "border"), (dict(crf="bogus"), "crf"),
    (dict(psf_model="nope"), "psf_model"), (dict(size=64), "size"), (dict(size=True), "size"),
    (dict(object_extent=(5, 70)), "object_extent"), (dict(camera_extent=(3, 1)), "camera_extent"),
    (dict(camera_extent=(-1, 1)), "camera_extent"), (dict(illumination=(0, 1)), "illumination"),
    (dict(illumination="bright"), "illumination"), (dict(save_masks="yes"), "save_masks"),
])
def test_params_are_validated(kw, match):
    with pytest.raises(ParameterError, match=match):
        SegParams(**kw)


def test_bank_params(tmp_path):
    p = SegParams(bank=_bank(tmp_path, delta(5), gp(5)), psf_model="gp")
    assert (p.size, p.psf_model, p.object_extent, p.camera_extent) == (5, None, None, None)
    assert p.to_dict()["bank"] == str(tmp_path / "bank.npz")
    with pytest.raises(InputFileError, match="not found"):
        SegParams(bank=tmp_path / "missing.npz")


def test_mismatched_inputs_are_refused():
    x = photo()
    with pytest.raises(ParameterError, match="masks"):
        layered_blur(x, np.zeros((1, 10, 10), bool), np.stack([delta(3)] * 2))
    with pytest.raises(ParameterError, match="kernels"):
        sbdd_blur(x, np.zeros((2, 64, 80), bool), np.stack([delta(3)] * 2))
    with pytest.raises(ParameterError, match="kernel 1"):
        sbdd_blur(x, np.zeros((1, 64, 80), bool), np.stack([delta(3), 2 * delta(3)]))
    with pytest.raises(ParameterError, match="uint8"):
        segblur_item(_item(np.zeros((0, 40, 48))), np.zeros((40, 48, 3)), SegParams(),
                     np.random.default_rng(0))
