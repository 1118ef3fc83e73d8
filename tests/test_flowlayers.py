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
    assert np.abs(layer_flow(layers[0], (H, W)) - layer_flow(true[0], (H, W))).max() < 0.05
    again = motion_layers(flow)
    assert all(np.array_equal(a, b) for a, b in zip(motion_layers(flow), again))


@pytest.mark.parametrize("n", [1, 2])
def test_at_most_n_layers(n):
    flow, _, _ = _scene(0.3)
    assert len(motion_layers(flow, n=n)) == n
