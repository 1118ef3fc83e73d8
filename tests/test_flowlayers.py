import numpy as np
import pytest

from blursynth_ext.flowlayers import layer_flow, motion_layers

H, W = 360, 640


def _rotation_about(angle, centre, shift):
    # The affine motion that turns by `angle` about `centre` and then moves it by `shift`.
    c, s = np.cos(angle), np.sin(angle)
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = np.asarray(centre) + np.asarray(shift) - m[:, :2] @ centre
    return m


def _scene(noise):
    # A background panning +2 px, a disc moving -8 px and a turning disc moving (8, 0.9), as a
    # flow with Gaussian noise of `noise` px per component (DIS's on texture is of that order).
    gy, gx = np.mgrid[:H, :W]
    true = [np.array([[1.0, 0, 2.0], [0, 1.0, 0]]), np.array([[1.0, 0, -8.0], [0, 1.0, 0]]),
            _rotation_about(0.02, (450, 180), (8.0, 0.9))]
    label = np.zeros((H, W), int)
    label[(gx - 200) ** 2 + (gy - 180) ** 2 < 90 ** 2] = 1
    label[(gx - 450) ** 2 + (gy - 180) ** 2 < 80 ** 2] = 2
    flow = np.zeros((H, W, 2))
    for k, m in enumerate(true):
        flow[label == k] = layer_flow(m, (H, W))[label == k]
    flow += np.random.default_rng(0).normal(0, noise, flow.shape)
    return flow.astype(np.float32), true, label


def _matches(layers, true, label):
    # For each fitted layer: the true motion it is nearest to on that motion's own pixels, and
    # the largest difference there (px).
    out = []
    for m in layers:
        f = layer_flow(m, (H, W))
        d = [np.abs(f - layer_flow(t, (H, W)))[label == k].max() for k, t in enumerate(true)]
        out.append((int(np.argmin(d)), float(min(d))))
    return out


def test_layer_flow_of_a_known_motion():
    m = _rotation_about(0.1, (5.0, 7.0), (2.0, -1.0))
    f = layer_flow(m, (20, 30))
    assert np.abs(f[7, 5] - (2.0, -1.0)).max() < 1e-5  # the centre only moves by the shift
    # (x, y) = (15, 7): 10 px right of the centre turns to (10 cos, 10 sin) from it.
    want = (5.0 + 10 * np.cos(0.1) + 2.0 - 15.0, 7.0 + 10 * np.sin(0.1) - 1.0 - 7.0)
    assert np.abs(f[7, 15] - want).max() < 1e-5


def test_each_motion_of_a_noisy_flow_is_found_once():
    flow, true, label = _scene(0.3)
    found = _matches(motion_layers(flow), true, label)
    assert sorted(k for k, _ in found) == [0, 1, 2]
    assert found[0][0] == 0  # the background explains most samples: first
    assert max(d for _, d in found) < 0.2


def test_claiming_only_the_tight_inliers_splits_the_background():
    # The reason for `claim`: with the fit's own 0.5 px, the noisy rest of the background is
    # fitted again as a second layer, and the third motion is never reached.
    flow, true, label = _scene(0.3)
    found = [k for k, _ in _matches(motion_layers(flow, claim=0.5), true, label)]
    assert found.count(0) >= 2 and 2 not in found


def test_one_motion_gives_one_layer_and_the_fit_is_repeatable():
    flow, true, label = _scene(0.3)
    pan = np.where((label == 0)[..., None], flow, layer_flow(true[0], (H, W)))
    layers = motion_layers(pan)
    assert len(layers) == 1
    # Refitted on the samples within 0.5 px: a truncated sample of the noise, 0.12 px off at
    # the far corners.
    assert np.abs(layer_flow(layers[0], (H, W)) - layer_flow(true[0], (H, W))).max() < 0.15
    again = motion_layers(flow)
    assert all(np.array_equal(a, b) for a, b in zip(motion_layers(flow), again))


@pytest.mark.parametrize("n", [1, 2])
def test_at_most_n_layers(n):
    flow, _, _ = _scene(0.3)
    assert len(motion_layers(flow, n=n)) == n


def test_the_blends_of_a_boundary_ramp_do_not_pull_a_layer():
    # A pan of +2 px with a disc moving -8, joined by a 30 px ramp (a smoothing estimator's).
    # The ramp's samples within the 1.5 px claim of the pan all lie on one side of it: a refit
    # on every claimed sample is 0.026 px off at the corners; on the fit's own 0.5 px, 0.002.
    gy, gx = np.mgrid[:H, :W]
    u = np.interp(np.hypot(gx - 320.0, gy - 180.0), [135, 165], [-8.0, 2.0]).astype(np.float32)
    layers = motion_layers(np.dstack([u, np.zeros_like(u)]))
    pan = np.array([[1.0, 0, 2.0], [0, 1.0, 0]])
    assert np.abs(layer_flow(layers[0], (H, W)) - layer_flow(pan, (H, W))).max() < 0.005


def test_one_motion_holds_for_a_camera_motion_with_faults_but_not_for_moving_objects():
    from blursynth_ext.flowlayers import one_motion

    flow, true, label = _scene(0.3)
    turn = layer_flow(_rotation_about(0.03, (300, 200), (5.0, -1.0)), (H, W))
    turn += np.random.default_rng(1).normal(0, 0.3, turn.shape).astype(np.float32)
    assert one_motion(turn)
    turn[:40, :60] = 30.0  # 1% of the frame matched wrongly: still one motion
    assert one_motion(turn)
    turn[:80, :120] = 30.0  # 4%: a second one
    assert not one_motion(turn)
    assert not one_motion(flow)  # two discs moving over the pan


# One row of a front surface (x < 100) moving +6 over a background moving -2, as exact flows:
# in b the front covers x < 106; the background points of a at 100 <= x < 108 are covered.
FRONT, BACK = np.array([[1.0, 0, 6.0], [0, 1.0, 0]]), np.array([[1.0, 0, -2.0], [0, 1.0, 0]])


def _occlusion_flows(h=40, w=200):
    x = np.arange(w)[None, :].repeat(h, 0)
    fab = np.dstack([np.where(x < 100, 6.0, -2.0), np.zeros((h, w))]).astype(np.float32)
    fba = np.dstack([np.where(x < 106, -6.0, 2.0), np.zeros((h, w))]).astype(np.float32)
    return fab, fba


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_the_layer_that_loses_points_to_the_other_frame_is_behind(order):
    from blursynth_ext.flowlayers import depth_order

    fab, fba = _occlusion_flows()
    layers = [(FRONT, BACK)[k] for k in order]
    mask = np.zeros(fab.shape[:2], np.uint8)
    mask[:, 80:130] = 1
    ranks = depth_order(layers, fab, fba, mask)
    assert ranks[order.index(1)] == 0 and ranks[order.index(0)] == 1  # back 0, front 1


def test_a_blend_takes_the_vector_of_the_nearest_layer_in_front_beside_it():
    from blursynth_ext.flowlayers import snap_to_front

    fab, _ = _occlusion_flows()
    flow = fab.copy()
    flow[:, 99, 0] = 2.0  # blends beside both layers (98: front, 100: background)
    flow[5:8, 130:136, 0] = 2.0  # beside the background only (the inner 1x4 beside nothing)
    flow[6, 60, 0] = 2.0  # outside the mask
    mask = np.zeros(flow.shape[:2], np.uint8)
    mask[:, 80:160] = 1
    out = snap_to_front(flow, mask, [BACK, FRONT], ranks=[0, 1])
    assert np.all(out[:, 99, 0] == 6.0)
    assert np.all(out[6, 131:135, 0] == 2.0)
    out[6, 131:135, 0] = -2.0
    assert np.all(out[5:8, 130:136, 0] == -2.0)
    assert out[6, 60, 0] == 2.0
    assert np.sum(np.any(out != flow, -1)) == 40 + 18  # nothing else moves
    # The other depth order: the background is in front.
    assert np.all(snap_to_front(flow, mask, [BACK, FRONT], ranks=[1, 0])[:, 99, 0] == -2.0)
