"""Snapping a flow to one side's motion at motion boundaries, against known answers."""
import cv2
import numpy as np
import pytest

from blursynth.crf import encode_u8, get_crf
from blursynth.flowblur import FlowBlurParams, flowblur_array
from blursynth.scenes import make_scene
from blursynth_ext.flowsnap import boundary_mask, offsets, snap_cpu, snap_reference

H, W, EDGE = 64, 160, 80  # the moving layer covers the columns left of EDGE in frame a


def texture(seed, h=H, w=W + 40):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.uint8), (0, 0), 1.0)


def two_layers(v_front, v_back, t):
    """Frame t of a textured front layer (columns < EDGE + v_front t) over a background, each
    moving by an integer number of px per frame: uint8 (H, W)."""
    back = np.roll(texture(1), v_back * t, axis=1)[:, 20:20 + W]
    front = np.roll(texture(2), v_front * t, axis=1)[:, 20:20 + W]
    return np.where(np.arange(W) < EDGE + v_front * t, front, back)


def ramp(v_front, v_back, width=14):
    """The flow a smoothing estimator gives: the two motions joined by a linear ramp."""
    x = np.arange(W, dtype=np.float32)
    u = np.interp(x, [EDGE - width / 2, EDGE + width / 2], [v_front, v_back]).astype(np.float32)
    return np.dstack([np.broadcast_to(u, (H, W)), np.zeros((H, W), np.float32)]).copy()


@pytest.mark.parametrize("fn", [snap_reference, snap_cpu])
def test_a_ramp_between_two_motions_snaps_to_each_sides_motion(fn):
    # Front moves left by 6, background right by 2: the background it uncovers is visible in b
    # only, so every point of a is seen in b and its true motion is the one of its layer.
    a, b = two_layers(-6, 2, 0), two_layers(-6, 2, 1)
    flow = ramp(-6, 2)
    out = fn(flow, a, b, None, boundary_mask(flow))
    true = np.where(np.arange(W) < EDGE, -6.0, 2.0)[None, :].repeat(H, 0)
    inner = (slice(2, -2), slice(24, W - 24))
    err = np.abs(out[..., 0] - true)[inner]
    assert np.abs(flow[..., 0] - true)[inner].max() > 3.5  # the ramp is far off...
    far = np.abs(np.arange(W) - EDGE + 0.5)[None, 24:W - 24].repeat(H - 4, 0) > 2
    # ...and is snapped exactly except right at the edge (and where the margin keeps a vector
    # within a fraction of a pixel, in a window of little contrast).
    assert np.mean(err[far] == 0.0) > 0.995 and err[far].max() < 1.0
    assert np.mean(err) < 0.05
    assert np.all(out[..., 1] == 0.0)


def test_points_about_to_be_covered_take_their_motion_from_the_frame_before():
    # Front moves right by 6 over a background moving left by 2: the 8 background columns
    # ahead of the edge are covered in b, so frame b cannot tell their motion; frame a - 1,
    # where they were visible, can (constant velocity).
    before, a, b = (two_layers(6, -2, t) for t in (-1, 0, 1))
    flow = ramp(6, -2)
    mask = boundary_mask(flow)
    with_other = snap_cpu(flow, a, b, before, mask)
    covered = (slice(4, -4), slice(EDGE + 2, EDGE + 6))
    assert np.all(with_other[covered][..., 0] == -2.0)
    without = snap_cpu(flow, a, b, None, mask)
    assert np.abs(without[covered][..., 0] + 2.0).mean() > np.abs(with_other[covered][..., 0] + 2.0).mean()


def test_a_uniform_or_untextured_flow_is_left_alone():
    a, b = two_layers(-6, 2, 0), two_layers(-6, 2, 1)
    uniform = np.full((H, W, 2), 1.5, np.float32)
    assert not boundary_mask(uniform).any()
    assert np.array_equal(snap_cpu(uniform, a, b, None, boundary_mask(uniform)), uniform)
    # On a flat image every candidate explains the frames equally: the margin keeps the flow.
    flat = np.full((H, W), 90, np.uint8)
    flow = ramp(-6, 2)
    for fn in (snap_reference, snap_cpu):
        assert np.array_equal(fn(flow, flat, flat, flat, boundary_mask(flow)), flow)


@pytest.mark.parametrize("shape", [(40, 50), (1, 6), (5, 1), (1, 1)])
def test_steep_pixels_differ_from_their_right_or_lower_neighbour_by_more_than_the_slope(shape):
    from blursynth_ext.flowsnap import _steep

    f = np.random.default_rng(5).normal(0, 0.3, shape + (2,)).astype(np.float32)
    want = np.zeros(shape, bool)
    want[:, :-1] |= (np.abs(np.diff(f, axis=1)) > 0.3).any(-1)
    want[:-1] |= (np.abs(np.diff(f, axis=0)) > 0.3).any(-1)
    assert np.array_equal(_steep(f, np.float32(0.3)), want)
    assert 0 < want.mean() < 1 or want.size < 4


def test_the_mask_holds_the_ramp_and_its_tails_where_a_second_motion_is_in_reach():
    step = np.zeros((H, W, 2), np.float32)
    step[:, EDGE:, 0] = 3.0
    mask = boundary_mask(step, grow=7)
    cols = np.flatnonzero(mask.any(0))
    # The steep column (EDGE - 1: it differs from its right neighbour) grown by 7.
    assert (cols.min(), cols.max()) == (EDGE - 8, EDGE + 6)
    assert mask[:, EDGE - 8:EDGE + 7].all()
    # A step too small to matter (within `spread`) leaves nothing to snap.
    assert not boundary_mask(step * 0.25, slope=0.3).any()
    assert not boundary_mask(step * 0.3, slope=0.3).any()  # 0.9 px: not a second motion
    # Offsets: zero first, 8 directions per radius.
    offs = offsets((5, 16))
    assert offs.shape == (17, 2) and tuple(offs[0]) == (0, 0) and (16, 0) in map(tuple, offs)


def random_case(seed):
    """Three textured frames and a smooth random flow with a step of (4, -2) px, and its mask."""
    rng = np.random.default_rng(seed)
    a, b, o = (texture(seed + k, 48, 72) for k in (1, 2, 3))
    flow = cv2.GaussianBlur(rng.normal(0, 3, (48, 72, 2)).astype(np.float32), (0, 0), 2.0)
    flow[:, 36:] += np.float32([4.0, -2.0])
    return a, b, o, flow, boundary_mask(flow)


@pytest.mark.parametrize("with_other", [False, True])
def test_numba_kernel_matches_the_reference(with_other):
    a, b, o, flow, mask = random_case(3)
    assert 0.05 < mask.mean() < 1.0
    ref = snap_reference(flow, a, b, o if with_other else None, mask)
    cpu = snap_cpu(flow, a, b, o if with_other else None, mask)
    # The same choice everywhere but at near-exact ties (fast-math sums differ in the last bit).
    assert np.mean(np.all(ref == cpu, axis=-1)) > 0.999
    assert not np.array_equal(cpu, flow)


@pytest.mark.parametrize("with_other", [False, True])
def test_vectors_within_the_margin_are_not_searched_and_the_result_is_the_same(with_other):
    # snap_cpu first scores the current vectors alone and searches only where they miss by
    # more than the margin (no candidate can beat a score below 0: costs are >= 0). The result
    # must be exactly that of searching every candidate at every masked pixel.
    from blursynth_ext.flowsnap import MARGIN, _pixel_lists, _snap_kernel

    before, a, b = (two_layers(6, -2, t) for t in (-1, 0, 1))
    flow = ramp(6, -2)
    mask = boundary_mask(flow)
    other = before if with_other else a
    lists = _pixel_lists(mask)
    full, score = flow.copy(), np.empty(lists[0].size, np.float32)
    rules = (np.float32(MARGIN), np.float32(0), np.float32(0), np.float32(1), False)
    none = np.zeros((0, 2, 3))
    _snap_kernel(flow, a, b, other, with_other, *lists, offsets(), none, len(offsets()), *rules,
                 full, score)
    got = snap_cpu(flow, a, b, before if with_other else None, mask)
    assert np.array_equal(got, full)
    # Both kinds are there: vectors kept without a search (the flat ends of the ramp, exact
    # already) and vectors replaced.
    current = np.zeros(lists[0].size, np.float32)
    _snap_kernel(flow, a, b, other, with_other, *lists, offsets(), none, 1, *rules,
                 flow.copy(), current)
    assert 0.1 < np.mean(current < 0) < 0.9
    assert not np.array_equal(got, flow)


def test_snapping_brings_the_occlusion_scene_closer_to_its_true_blur():
    scene = make_scene("occlusion", (144, 256), 6.0)
    frames = scene.frames(5)
    truth = encode_u8(scene.blur(2, 1.0), get_crf("srgb"))[16:-16, 16:-16].astype(np.float64)

    def psnr(snap):
        blurry, _, wins = flowblur_array(frames, FlowBlurParams(snap_boundaries=snap))
        out = blurry[[w.centre for w in wins].index(2)][16:-16, 16:-16].astype(np.float64)
        return 10 * np.log10(255.0 ** 2 / np.mean((out - truth) ** 2))

    assert psnr(True) > psnr(False) + 0.5


def _translation(dx, dy=0.0):
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


@pytest.mark.parametrize("fn", [snap_reference, snap_cpu])
def test_layers_snap_a_ramp_wider_than_the_offsets_reach(fn):
    # A 40 px ramp and offsets of 2 and 4 px: from its middle every shifted vector is a blend.
    # The two motions, offered as layers at every pixel, put back each side's own.
    a, b = two_layers(-6, 2, 0), two_layers(-6, 2, 1)
    flow = ramp(-6, 2, width=40)
    mask = np.ones((H, W), np.uint8)
    true = np.where(np.arange(W) < EDGE, -6.0, 2.0)[None, :].repeat(H, 0)
    inner = (slice(2, -2), slice(10, W - 10))
    plain = fn(flow, a, b, None, mask, radii=(2, 4))
    layered = fn(flow, a, b, None, mask, radii=(2, 4), border=True, bonus=4.0, penalty=4.0,
                 layers=[_translation(-6), _translation(2)])
    middle = (slice(2, -2), slice(EDGE - 12, EDGE + 12))
    assert np.abs(plain[..., 0] - true)[middle].mean() > 1.0
    err = np.abs(layered[..., 0] - true)[inner]
    assert np.mean(err == 0.0) > 0.97 and err[middle[0], EDGE - 22:EDGE + 2].mean() < 0.2


@pytest.mark.parametrize("fn", [snap_reference, snap_cpu])
def test_vectors_that_leave_the_frame_are_kept_and_never_chosen(fn):
    # A layer of -50 px with a bonus no cost can beat wins wherever it stays in the frame
    # (x >= 50) and nowhere else; the ramp's own vectors that leave the frame (the -6 side at
    # x < 6, the +2 side in the last two columns) stay as they are.
    a, b = two_layers(-6, 2, 0), two_layers(-6, 2, 1)
    flow = ramp(-6, 2)
    out = fn(flow, a, b, None, np.ones((H, W), np.uint8), layers=[_translation(-50)],
             bonus=1000.0, border=True)
    x = np.arange(W)
    assert np.all(out[:, (x >= 50) & (x < W - 2), 0] == -50.0)
    leave = (x < 6) | (x >= W - 2)
    assert np.all(out[:, leave] == flow[:, leave])
    assert not np.any(out[:, x < 50, 0] == -50.0)
    free = fn(flow, a, b, None, np.ones((H, W), np.uint8), layers=[_translation(-50)],
              bonus=1000.0)
    assert np.all(free[..., 0] == -50.0)  # without the rule: everywhere


@pytest.mark.parametrize("with_other", [False, True])
def test_numba_kernel_matches_the_reference_with_layers_and_rules(with_other):
    a, b, o, flow, mask = random_case(6)
    rot = np.array([[np.cos(0.05), -np.sin(0.05), 1.0], [np.sin(0.05), np.cos(0.05), -1.5]])
    rules = dict(layers=[_translation(4.0, -2.0), rot], bonus=1.0, penalty=2.0, tol=1.0,
                 border=True)
    ref = snap_reference(flow, a, b, o if with_other else None, mask, **rules)
    cpu = snap_cpu(flow, a, b, o if with_other else None, mask, **rules)
    assert np.mean(np.all(np.abs(ref - cpu) < 1e-4, axis=-1)) > 0.995
    layer_px = np.all(np.abs(cpu - np.float32([4.0, -2.0])) < 1e-4, axis=-1) & (mask != 0)
    assert layer_px.sum() > 50  # the layers are chosen...
    assert not np.array_equal(cpu[layer_px], flow[layer_px])  # ...where the flow was not one


def test_the_first_pass_skips_only_what_no_candidate_can_beat_with_layers():
    # With layers a candidate can score as low as -bonus: the first pass may skip only vectors
    # scoring below that. snap_cpu must equal a search of every candidate at every pixel.
    from blursynth_ext.flowsnap import MARGIN, _pixel_lists, _snap_kernel

    before, a, b = (two_layers(6, -2, t) for t in (-1, 0, 1))
    flow = ramp(6, -2, width=30)
    mask = np.ones((H, W), np.uint8)
    layers = np.stack([_translation(6), _translation(-2)])
    for bonus in (0.0, 4.0):
        lists = _pixel_lists(mask)
        full = flow.copy()
        rules = (np.float32(MARGIN), np.float32(bonus), np.float32(4), np.float32(1), True)
        offs = offsets((2, 4, 8))
        _snap_kernel(flow, a, b, before, True, *lists, offs, layers, len(offs) + 2, *rules,
                     full, np.empty(lists[0].size, np.float32))
        got = snap_cpu(flow, a, b, before, mask, radii=(2, 4, 8), layers=layers, bonus=bonus,
                       penalty=4.0, border=True)
        assert np.array_equal(got, full)
        assert not np.array_equal(got, flow)
