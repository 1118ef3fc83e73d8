"""Flows at full size near motion boundaries from a half-size grid, against known motions."""
import cv2
import numpy as np

from blursynth.flowfine import fine_flows

H, W, EDGE = 96, 192, 96  # frame a: a front surface at x < EDGE moving -6, a background +2


def texture(seed, w=W + 64):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (H, w)).astype(np.uint8), (0, 0), 1.0)


def frame(t, front=-6, back=2):
    """Frame t: uint8 (H, W) grey."""
    b = np.roll(texture(1), back * t, axis=1)[:, 32:32 + W]
    f = np.roll(texture(2), front * t, axis=1)[:, 32:32 + W]
    return np.where(np.arange(W) < EDGE + front * t, f, b)


def grid_flow(edge, left, right, width=8):
    """What a half-size grid gives: the two motions (output px) joined by a ramp `width` grid
    pixels wide centred on `edge` (output px): float32 (H / 2, W / 2, 2)."""
    x = (np.arange(W // 2) + 0.5) * 2 - 0.5
    u = np.interp(x, [edge - width, edge + width], [left, right]).astype(np.float32)
    return np.dstack([np.broadcast_to(u, (H // 2, W // 2)), np.zeros((H // 2, W // 2))]
                     ).astype(np.float32)


def test_the_boundary_is_placed_to_the_pixel():
    before, a, b, after = (frame(t) for t in (-1, 0, 1, 2))
    fab, fba = grid_flow(EDGE, -6, 2), grid_flow(EDGE - 6, 6, -2)
    out = fine_flows(fab, fba, a, b, before, after, np.dstack([a] * 3))
    assert out is not None and out[0].shape == (H, W, 3)
    # F_ab: -6 left of the edge, +2 right of it (every point of a is seen in b).
    true = np.where(np.arange(W) < EDGE, -6.0, 2.0)[None].repeat(H, 0)
    band = (slice(4, -4), slice(EDGE - 12, EDGE + 12))
    up = cv2.resize(fab, (W, H), interpolation=cv2.INTER_NEAREST_EXACT)
    assert np.abs(up[..., 0] - true)[band].mean() > 1.0
    err = np.abs(out[0][..., 0] - true)[band]
    assert err.mean() < 0.1 and np.mean(err == 0) > 0.95
    # F_ba: +6 on the front (x < EDGE - 6 in b), -2 on the background, revealed points too.
    true_ba = np.where(np.arange(W) < EDGE - 6, 6.0, -2.0)[None].repeat(H, 0)
    band_ba = (slice(4, -4), slice(EDGE - 18, EDGE + 6))
    up_ba = cv2.resize(fba, (W, H), interpolation=cv2.INTER_NEAREST_EXACT)
    assert np.abs(up_ba[..., 0] - true_ba)[band_ba].mean() > 1.0
    assert np.abs(out[1][..., 0] - true_ba)[band_ba].mean() < 0.15
    # The visibility: the background revealed in b (EDGE - 6 <= x < EDGE + 2) is not in a.
    vis = out[1][..., 2][8:-8]
    assert vis[:, EDGE - 5:EDGE + 1].max() < 0.5 and vis[:, EDGE + 6:EDGE + 30].min() > 0.9


def test_one_motion_needs_nothing():
    a, b = frame(0, 2), frame(1, 2)  # the front moves with the background: a pan
    f = grid_flow(EDGE, 2, 2)
    assert fine_flows(f, -f, a, b, None, None, np.dstack([a] * 3)) is None


def test_fine_flows_bring_the_occlusion_scene_closer_to_its_true_blur():
    # 216x384 with a half-size flow grid (as 720p has by default), 3.6 px/frame.
    from blursynth.crf import encode_u8, get_crf
    from blursynth.flowblur import FlowBlurParams, flowblur_array
    from blursynth.scenes import make_scene

    scene = make_scene("occlusion", (216, 384), 8.0 * 216 / 720 * 2)
    frames = scene.frames(5)
    truth = encode_u8(scene.blur(2, 1.0), get_crf("srgb")).astype(np.float64)

    def psnrs(fine):
        blurry, _, wins = flowblur_array(frames, FlowBlurParams(flow_scale=0.5,
                                                                fine_boundaries=fine))
        err = (blurry[[w.centre for w in wins].index(2)] - truth)[16:-16, 16:-16] ** 2
        tiles = err[:160].reshape(5, 32, -1, 32, 3).mean(axis=(1, 3, 4))
        return 10 * np.log10(255.0 ** 2 / np.array([err.mean(), tiles.max()]))

    (mean0, worst0), (mean1, worst1) = psnrs(False), psnrs(True)
    assert mean1 > mean0 + 1.0 and worst1 > worst0 + 2.0
