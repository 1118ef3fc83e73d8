"""Camera-shake PSFs (blursynth.psf, blursynth_ext.raster): the kernel contract on thousands of
kernels of every model, known answers, the seed's statistics, reproducibility, bank files, CLI."""
import math

import cv2
import numpy as np
import pytest
import scipy.io
from click.testing import CliRunner

from blursynth import kernel_bank, psf
from blursynth.errors import InputFileError, ParameterError
from blursynth.seeding import item_rng
from blursynth_ext import raster
from blursynth_cli.main import blursynth as cli

pytestmark = pytest.mark.usefixtures("restore_logger")


def centroids(bank: np.ndarray) -> np.ndarray:
    """(N, 2) centres of mass (x, y) in pixels, computed in float64."""
    b = bank.astype(np.float64)
    g = np.arange(b.shape[-1])
    m = b.sum(axis=(1, 2))
    return np.stack([(b.sum(1) * g).sum(1) / m, (b.sum(2) * g).sum(1) / m], 1)


def assert_contract(bank: np.ndarray, size: int) -> None:
    """Odd, float32, non-negative, sum 1 (to 1e-6), centroid within 0.05 px of the centre."""
    assert bank.dtype == np.float32 and bank.shape[1:] == (size, size) and size % 2 == 1
    assert bank.min() >= 0.0
    assert np.abs(bank.sum(axis=(1, 2), dtype=np.float64) - 1.0).max() < 1e-6
    # By construction the error is float32 round-off (~1e-5 px); 0.05 px is the stated bound.
    assert np.abs(centroids(bank) - (size - 1) / 2).max() < 0.05


def segment_profile(length: float, size: int) -> np.ndarray:
    """Exact 1-D kernel of a uniform segment of ``length`` px centred on pixel (size-1)/2 and
    splatted with the bilinear hat: pixel j gets (1/L) * integral of max(0, 1 - |s - j|) over
    the segment, from the hat's antiderivative H (pure geometry, no code under test)."""
    def H(x):
        x = np.clip(x, -1.0, 1.0)
        return np.where(x < 0, (x + 1) ** 2 / 2, 1 - (1 - x) ** 2 / 2)

    c = (size - 1) / 2
    j = np.arange(size)
    return (H(c + length / 2 - j) - H(c - length / 2 - j)) / length


# -- the contract, on thousands of kernels of every model -----------------------------------------

@pytest.mark.parametrize("model", list(psf.MODELS))
def test_every_model_keeps_the_kernel_contract(model):
    # 2000 kernels per model: sizes 17/25/33, the model's own scale and random pixel extents
    # up to the full support (which forces shrinking), and partial exposures.
    for size, extent, exposure in ((17, None, 1.0), (25, (1.0, 24.0), 1.0),
                                   (33, (20.0, 32.0), (0.2, 1.0)), (33, None, 0.5)):
        bank = psf.kernel_bank(model, 500, size, seed=7, extent=extent, exposure=exposure)
        assert_contract(bank, size)
        assert (bank.reshape(len(bank), -1).max(1) < 1.0).mean() > 0.9  # not collapsed to deltas


def test_size_must_be_odd_and_extent_fit():
    rng = np.random.default_rng(0)
    for size in (16, 1, 0, 17.0, True):
        with pytest.raises(ParameterError, match="size: expected an odd integer"):
            psf.make_kernel("gp", size, rng)
    with pytest.raises(ParameterError, match=r"extent: expected a number in \[0, 16\]"):
        psf.make_kernel("gp", 17, rng, extent=17)
    with pytest.raises(ParameterError, match="extent"):
        psf.make_kernel("gp", 17, rng, extent=(10, 5))
    with pytest.raises(ParameterError, match="exposure"):
        psf.make_kernel("gp", 17, rng, exposure=0.0)


def test_unknown_models_and_parameters_are_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ParameterError, match="model: expected one of gp, boracchi"):
        psf.trajectory("shaky", rng)
    with pytest.raises(ParameterError, match="lenght: not a parameter of model 'line'"):
        psf.trajectory("line", rng, lenght=0.5)
    with pytest.raises(ParameterError, match=r"anxiety: expected a number in \[0, 1\]"):
        psf.trajectory("boracchi", rng, anxiety=2.0)
    with pytest.raises(ParameterError, match="samples: expected an integer"):
        psf.trajectory("gp", rng, samples=1.5)
    with pytest.raises(ParameterError, match="spread"):
        psf.trajectory("gp", rng, spread=True)
    with pytest.raises(ParameterError, match="count"):
        psf.kernel_bank("gp", 0, 17)
    with pytest.raises(ParameterError, match="seed"):
        psf.kernel_bank("gp", 1, 17, seed=-1)


def test_every_parameter_changes_the_kernels():
    # No parameter may be accepted and ignored (the kornia / Albumentations bug).
    alt = {"samples": 37, "length_scale": 0.1, "spread": 0.1, "length": 0.5, "anxiety": 0.05,
           "shake": 3.0, "centripetal": 0.35, "impulse": 0.9, "span": 0.5, "angle": 30.0}
    for model in psf.MODELS:
        base = psf.kernel_bank(model, 4, 33, 3)
        for name in psf.model_parameters(model):
            if (model, name) == ("line", "samples"):
                continue  # a straight path is the same path however it is sampled
            other = psf.kernel_bank(model, 4, 33, 3, **{name: alt[name]})
            assert not np.array_equal(base, other), (model, name)


# -- known answers ---------------------------------------------------------------------------------

def test_line_is_a_box_with_bilinear_ends():
    # Even length on pixel centres: L + 1 pixels, ends at half weight. Odd: L + 2 pixels,
    # ends 1/8 and 7/8 of a full pixel (worked by hand from the hat function).
    k = psf.make_kernel("line", 9, np.random.default_rng(0), extent=4.0, angle=0.0)
    assert np.allclose(k[4], [0, 0, 1 / 8, 1 / 4, 1 / 4, 1 / 4, 1 / 8, 0, 0], atol=1e-7)
    assert np.abs(np.delete(k, 4, axis=0)).max() == 0
    k = psf.make_kernel("line", 9, np.random.default_rng(0), extent=3.0, angle=0.0)
    assert np.allclose(k[4], [0, 0, 1 / 24, 7 / 24, 1 / 3, 7 / 24, 1 / 24, 0, 0], atol=1e-7)


@pytest.mark.parametrize("length", [10.0, 9.0, 6.5, 1.0, 16.0])
def test_line_matches_the_integrated_segment(length):
    size = 17
    want = segment_profile(length, size)
    h = psf.make_kernel("line", size, np.random.default_rng(1), extent=length, angle=0.0)
    assert np.allclose(h[size // 2], want, atol=1e-6) and np.allclose(h.sum(0), want, atol=1e-6)
    v = psf.make_kernel("line", size, np.random.default_rng(1), extent=length, angle=90.0)
    assert np.allclose(v[:, size // 2], want, atol=1e-6)
    # The same segment given as 1601 dense samples (no refinement) integrates the same.
    # (Trapezoid error <= h^2 / 2L with h = L / 1600 where kinks fall between samples.)
    t = np.column_stack([np.linspace(0, 1, 1601), np.zeros(1601)])
    assert np.allclose(psf.rasterize(t, size, extent=length)[size // 2], want, atol=1e-5)


def test_rasterize_docstring_example_and_identity():
    k = psf.rasterize(np.array([[0.0, 0.0], [1.0, 0.0]]), 5, extent=2.0)
    assert np.allclose(k[2] * 8, [0, 2, 4, 2, 0]) and k.sum() == pytest.approx(1)
    for traj in (np.zeros((1, 2)), np.full((50, 2), 3.0)):
        d = psf.rasterize(traj, 7, extent=5.0)
        assert d[3, 3] == 1.0 and d.sum() == 1.0


def test_dwell_time_weights_slow_parts_more():
    # Half the time spent still at x = 0, half moving to x = 4: the start pixel holds about
    # half the mass (plus its share of the moving part), wherever the centring puts it.
    t = np.concatenate([np.zeros(1001), np.linspace(0, 4, 1001)[1:]])
    k = psf.rasterize(np.column_stack([t, np.zeros_like(t)]), 15, extent=4.0)
    row = k[7]
    start = int(np.argmax(row))
    # The centroid is x = 1 exactly, so the start lands on a pixel: its mass is the still half
    # plus the moving half's first px weighted by the hat, (1/2)(1/4)(1/2).
    assert row[start] == pytest.approx(0.5 + 0.5 / 8, abs=1e-6)
    assert np.abs(centroids(k[None]) - 7).max() < 1e-4


def test_paths_that_would_leave_the_support_are_shrunk_not_rejected():
    # A long dwell at one end puts the centroid there: spanning K-1 px from it would leave
    # the support, so the path is shrunk until its far end touches the border.
    t = np.concatenate([np.zeros(3000), np.linspace(0, 1, 1000)])
    traj = np.column_stack([t, 0.3 * t])
    k = psf.rasterize(traj, 21, extent=20.0)
    assert_contract(k[None], 21)
    cols = np.flatnonzero(k.sum(0) > 0)
    assert cols.max() == 20 and cols.min() > 0  # touches the right border only
    kr, shrink = raster.rasterize_reference(traj, np.ones(len(traj)), 21, 20.0)
    assert np.abs(kr - k).max() < 1e-6
    assert shrink == pytest.approx(10 / (20 * (1 - 499.5 / 3999)))  # centroid: 1/8 of the span


def test_exposure_weights_known_answers():
    assert psf.exposure_weights(5, 1.0).tolist() == [1, 1, 1, 1, 1]
    assert psf.exposure_weights(5, 0.5).tolist() == [1, 1, 0.5, 0, 0]
    assert np.allclose(psf.exposure_weights(5, 0.3), [1, 0.7, 0, 0, 0])
    with pytest.raises(ParameterError, match="fraction"):
        psf.exposure_weights(5, 1.5)


def test_exposures_of_a_line_are_its_prefixes():
    # A 16 px line: exposure fractions 1/4, 1/2, 1 are segments of 4, 8 and 16 px, each
    # centred on its own centroid, at the full path's pixel scale.
    traj = psf.trajectory("line", np.random.default_rng(0), samples=1601, length=1.0, angle=0.0)
    ks = psf.exposure_kernels(traj, 21, [0.25, 0.5, 1.0], extent=16.0)
    for k, length in zip(ks, (4.0, 8.0, 16.0)):
        assert np.allclose(k[10], segment_profile(length, 21), atol=1e-6)


def test_boracchi_exposures_are_nested():
    fractions = [0.01, 0.1, 0.25, 0.5, 1.0]
    for i in range(40):
        rng = item_rng(0, f"nested/{i}", "test")
        traj = psf.trajectory("boracchi", rng)
        w = np.stack([psf.exposure_weights(len(traj), f) for f in fractions])
        assert (np.diff(w, axis=0) >= 0).all()  # a longer exposure covers the shorter's path
        ks = psf.exposure_kernels(traj, 33, fractions, extent=24.0)
        assert_contract(ks, 33)
        ext = [kernel_bank.kernel_stats(k)["extent"] for k in ks]
        # Non-decreasing up to one pixel (sub-pixel phase of each kernel's own centring and
        # the 1% threshold), and strictly growing from the shortest to the full exposure.
        assert min(np.diff(ext)) >= -1 and ext[-1] > ext[0]
        assert ext[-1] in (25, 26)  # the full path spans 24 px
    # make_kernel with a partial exposure cuts the same path (same draws, same pixel scale).
    k = psf.make_kernel("boracchi", 33, item_rng(0, "x", "t"), extent=20.0, exposure=0.5)
    traj = psf.trajectory("boracchi", item_rng(0, "x", "t"))
    assert np.array_equal(k, psf.exposure_kernels(traj, 33, [0.5], extent=20.0)[0])


# -- the Matern-3/2 sampler and the seed's statistics ----------------------------------------------

def matern32(t, length_scale, spread):
    a = math.sqrt(3) * np.abs(t[:, None] - t[None, :]) / length_scale
    return spread ** 2 * (1 + a) * np.exp(-a)


@pytest.mark.parametrize("n,length_scale,spread", [(100, 0.3, 0.25), (40, 0.05, 1.0),
                                                   (30, 3.0, 2.0)])
def test_gp_sampler_has_exactly_the_matern_covariance(n, length_scale, spread):
    # The sampler is linear in its normals: its covariance is G G^T, G its response to each
    # unit normal; it must equal the Matern-3/2 Gram matrix (what the seed's Cholesky sampled).
    G = np.stack([raster.matern32_walk(np.eye(n)[j][None].copy(), length_scale, spread)[:, 0]
                  for j in range(n)], axis=1)
    want = matern32(np.linspace(0, 1, n), length_scale, spread)
    assert np.abs(G @ G.T - want).max() < 1e-12 * spread ** 2


def test_gp_trajectories_have_the_matern_covariance_empirically():
    n, m = 11, 4000
    rng = np.random.default_rng(5)
    x = np.concatenate([psf.trajectory("gp", rng, samples=n) for _ in range(m)], axis=1).T
    emp = np.cov(x, rowvar=False)  # 2m processes (x and y of m trajectories), 11 times
    want = matern32(np.linspace(0, 1, n), 0.3, 0.25)
    # Standard error of a covariance estimate <= sigma^2 sqrt(2 / 2m) = 0.0007; allow 5 SE.
    assert np.abs(emp - want).max() < 0.0035
    assert np.abs(x.mean(0)).max() < 0.02


@pytest.mark.parametrize("size,table", [(17, 10.8), (25, 15.4), (35, 21.1)])
def test_gp_extent_matches_the_seeds_table(size, table):
    # The seed's measured support extent (research notes 1.3: 50-200 kernels per size; our
    # re-implementation of it measures 11.2, 15.5, 21.7). Tolerance: mean within 8%.
    bank = psf.kernel_bank("gp", 1000, size, seed=11)
    ext = np.array([kernel_bank.kernel_stats(k)["extent"] for k in bank])
    assert abs(ext.mean() - table) < 0.08 * table
    assert 0.09 * size < ext.std() < 0.17 * size  # seed: 0.12 K
    assert np.percentile(ext, 5) >= 0.35 * size


def test_walk_kernels_match_their_python_reference():
    rng = np.random.default_rng(3)
    xi = rng.standard_normal((2, 300))
    assert np.allclose(raster.matern32_walk(xi, 0.3, 0.25),
                       raster.matern32_walk.py_func(xi, 0.3, 0.25), rtol=0, atol=1e-12)
    u, g = rng.random((499, 2)), rng.standard_normal((499, 2))
    args = (500, 0.12, 0.05, 5.0, 0.3, 0.9, 1.0, u, g)
    assert np.allclose(raster.boracchi_walk(*args), raster.boracchi_walk.py_func(*args),
                       rtol=0, atol=1e-9)
    steps = np.hypot(*np.diff(raster.boracchi_walk(*args), axis=0).T)
    assert np.allclose(steps, 0.12)  # constant speed: equal exposures, equal lengths


def test_raster_kernel_matches_numpy_reference():
    rng = np.random.default_rng(4)
    cases = []
    for i in range(12):
        n = int(rng.integers(2, 300))
        traj = np.cumsum(rng.standard_normal((n, 2)), 0) * rng.uniform(0.001, 0.05)
        rho = rng.random(n) * (rng.random(n) > 0.3)  # zero-weight samples too
        rho[rng.integers(n)] = 1.0
        cases.append((traj, rho, float(rng.choice([5.0, 60.0, 900.0]))))  # some shrink, refine
    for size in (5, 17):
        for traj, rho, scale in cases:
            want, wshrink = raster.rasterize_reference(traj, rho, size, scale)
            got, shrink = raster.rasterize_cpu(traj[None], rho[None], size, np.array([scale]))
            assert np.abs(got[0] - want).max() < 1e-6
            assert shrink[0] == pytest.approx(wshrink, rel=1e-12)
    pts = rng.uniform(-1, 9, (200, 2))
    masses = rng.random(200)
    assert np.allclose(raster.splat_cpu(pts, masses, 9), raster.splat_reference(pts, masses, 9),
                       atol=1e-12)


# -- reproducibility -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", list(psf.MODELS))
def test_banks_are_reproducible_and_kernels_regenerate_alone(model):
    bank = psf.kernel_bank(model, 600, 17, seed=5, extent=(2.0, 16.0))
    assert np.array_equal(bank, psf.kernel_bank(model, 600, 17, seed=5, extent=(2.0, 16.0)))
    assert not np.array_equal(bank[:20], psf.kernel_bank(model, 20, 17, seed=6,
                                                         extent=(2.0, 16.0)))
    # Kernel i depends only on (seed, model, i): alone, or in a bank of another length
    # (600 crosses the internal chunk of 512).
    for i in (0, 17, 599):
        alone = psf.make_kernel(model, 17, item_rng(5, f"{model}/{i}", "psf"),
                                extent=(2.0, 16.0))
        assert np.array_equal(bank[i], alone)
    assert np.array_equal(psf.kernel_bank(model, 10, 17, seed=5, extent=(2.0, 16.0)),
                          bank[:10])


# -- statistics and preview ------------------------------------------------------------------------

def test_kernel_stats_known_answers():
    d = np.zeros((9, 9))
    d[4, 4] = 1
    s = kernel_bank.kernel_stats(d)
    assert (s["extent"], s["length"], s["curvature"], s["centroid"]) == (1, 0.0, 0.0, (4.0, 4.0))
    line = psf.make_kernel("line", 17, np.random.default_rng(0), extent=10.0, angle=0.0)
    s = kernel_bank.kernel_stats(line)
    assert s["extent"] == 11 and s["length"] == 10.0 and s["curvature"] == 0.0
    assert s["centroid_error"] < 1e-5
    diag = np.eye(9)[::-1] * (np.arange(9)[:, None] >= 2) * (np.arange(9)[:, None] <= 6)
    s = kernel_bank.kernel_stats(diag)
    assert s["extent"] == 5 and s["length"] == pytest.approx(4 * math.sqrt(2))
    assert s["curvature"] == pytest.approx(0.0, abs=1e-9)
    corner = np.zeros((11, 11))
    corner[5, 1:6] = 1
    corner[1:6, 5] = 1
    s = kernel_bank.kernel_stats(corner)
    # The skeleton cuts the corner pixel: two 3-px arms and one diagonal link.
    assert s["extent"] == 5 and s["length"] == pytest.approx(6 + math.sqrt(2))
    assert s["curvature"] > 0.25
    assert s["centroid"] == pytest.approx((35 / 9, 35 / 9))  # 9 pixels, x: 1+2+3+4+5 + 4 * 5
    assert s["centroid_error"] == pytest.approx(5 - 35 / 9)


def test_bank_stats_and_summary():
    bank = psf.kernel_bank("gp", 50, 17)
    st = kernel_bank.bank_stats(bank, bins=5)
    assert st["count"] == 50 and st["size"] == 17
    for name in ("extent", "length", "curvature", "centroid_error"):
        counts, edges = st["histogram"][name]
        assert counts.sum() == 50 and len(edges) == 6 and st[name].shape == (50,)
        assert st["summary"][name]["mean"] == pytest.approx(st[name].mean())
    text = kernel_bank.format_summary(st)
    assert "50 kernels of 17 x 17 px" in text and "extent (px)" in text and "#" in text


def test_preview_grid_layout():
    bank = psf.kernel_bank("line", 10, 9, extent=6.0)
    img = kernel_bank.preview_grid(bank, cols=4)  # zoom 96 // 9 = 10: 90 px tiles, 2 px gaps
    assert img.shape == (2 + 3 * 92, 2 + 4 * 92, 3) and img.dtype == np.uint8
    assert img[2:92, 2:92].max() == 255


# -- bank files ------------------------------------------------------------------------------------

def sample_bank(n=4, size=9):
    rng = np.random.default_rng(2)
    k = np.zeros((n, size, size))
    c = size // 2
    for i in range(n):  # symmetric about the centre: centroid exactly there
        v = rng.random(3) + 0.1
        k[i, c, c - 1:c + 2] = [v[0], v[1], v[0]]
        k[i, c - 1, c], k[i, c + 1, c] = v[2], v[2]
    return k / k.sum(axis=(1, 2), keepdims=True)


def test_npz_round_trip_with_meta(tmp_path):
    bank = psf.kernel_bank("gp", 5, 17)
    p = kernel_bank.save_bank(tmp_path / "sub" / "bank.npz", bank, {"model": "gp", "seed": 0})
    assert np.array_equal(kernel_bank.load_bank(p), bank)
    meta = kernel_bank.bank_meta(p)
    assert meta["model"] == "gp" and meta["format"].startswith("blursynth.psf.bank")
    assert [f.name for f in (tmp_path / "sub").iterdir()] == ["bank.npz"]  # no temporaries
    # Any .npz: the first array, unnormalised values are normalised; one 2-D kernel is a bank.
    np.savez(tmp_path / "other.npz", a=sample_bank() * 3)
    assert np.allclose(kernel_bank.load_bank(tmp_path / "other.npz"), sample_bank(), atol=1e-7)
    np.save(tmp_path / "one.npy", sample_bank()[0])
    assert kernel_bank.load_bank(tmp_path / "one.npy").shape == (1, 9, 9)
    with pytest.raises(ParameterError, match="path: expected a file name ending in .npz"):
        kernel_bank.save_bank(tmp_path / "bank.npy", bank)


@pytest.mark.parametrize("layout", ["KxKxN", "NxKxK", "cell", "single"])
def test_mat_banks_load(tmp_path, layout):
    bank = sample_bank(n=4, size=9)
    if layout == "KxKxN":
        var = np.moveaxis(bank, 0, 2)
    elif layout == "NxKxK":
        var = bank
    elif layout == "cell":
        var = np.empty((1, 4), dtype=object)
        for i in range(4):
            var[0, i] = bank[i]
    else:
        var, bank = bank[2], bank[2:3]
    scipy.io.savemat(tmp_path / "k.mat", {"K": var})
    assert np.allclose(kernel_bank.load_bank(tmp_path / "k.mat"), bank, atol=1e-7)


def test_folders_of_mat_and_png_kernels(tmp_path):
    bank = sample_bank(n=3, size=9)
    sbdd = tmp_path / "sbdd"
    sbdd.mkdir()
    for i, k in enumerate(bank):  # SBDD's layout: kernelNNNN.mat, one K each
        scipy.io.savemat(sbdd / f"kernel{i:04d}.mat", {"K": k})
    assert np.allclose(kernel_bank.load_bank(sbdd), bank, atol=1e-7)
    pngs = tmp_path / "png"
    pngs.mkdir()
    for i, k in enumerate(bank):
        cv2.imwrite(str(pngs / f"k{i}.png"), np.round(k / k.max() * 65535).astype(np.uint16))
    (pngs / ".hidden.png").write_bytes(b"not a png")
    assert np.allclose(kernel_bank.load_bank(pngs), bank, atol=1e-4)


def test_off_centre_kernels_are_recentred(tmp_path):
    k = np.zeros((1, 9, 9))
    k[0, 4, 3], k[0, 4, 6] = 0.25, 0.75  # centroid x = 5.25: 1.25 px right of the centre
    np.save(tmp_path / "k.npy", k)
    got = kernel_bank.load_bank(tmp_path / "k.npy")
    # Masses move to x = 1.75 and 4.75 and split bilinearly (worked by hand).
    assert np.allclose(got[0, 4], [0, 0.0625, 0.1875, 0, 0.1875, 0.5625, 0, 0, 0], atol=1e-7)
    assert np.array_equal(kernel_bank.load_bank(tmp_path / "k.npy", center=False), k.astype(np.float32))
    # Mass that would fall off the border grows the bank (here by 2 px a side).
    k = np.zeros((2, 5, 5))
    k[0, 2, 0], k[0, 2, 4] = 0.9, 0.1  # centroid x = 0.4, 1.6 px left of the centre
    k[1, 2, 2] = 1.0
    np.save(tmp_path / "k2.npy", k)
    got = kernel_bank.load_bank(tmp_path / "k2.npy")
    assert got.shape == (2, 9, 9)
    assert np.allclose(got[0, 4], [0, 0, 0, 0.36, 0.54, 0, 0, 0.04, 0.06], atol=1e-7)
    assert got[1, 4, 4] == 1.0
    assert_contract(got, 9)


def test_bad_banks_give_clear_errors(tmp_path):
    def fails(name, array, match):
        p = tmp_path / name
        np.save(p, array) if name.endswith(".npy") else scipy.io.savemat(p, {"K": array})
        with pytest.raises(InputFileError, match=match) as e:
            kernel_bank.load_bank(p)
        assert name in str(e.value)

    good = sample_bank()
    fails("rect.npy", np.ones((2, 5, 7)), "expected square kernels, got 2 x 5 x 7")
    fails("even.npy", np.ones((2, 4, 4)), "expected kernels of odd size")
    neg = good.copy()
    neg[2, 0, 0] = -0.1
    fails("neg.npy", neg, "kernel 2: negative values")
    zero = good.copy()
    zero[1] = 0
    fails("zero.mat", np.moveaxis(zero, 0, 2), "kernel 1: all zero")
    nan = good.copy()
    nan[3, 1, 1] = np.nan
    fails("nan.npy", nan, "kernel 3: not finite")
    tiny = good.copy()
    tiny[0, 0, 0] = -1e-9  # round-off of the tool that made the bank: clipped, accepted
    np.save(tmp_path / "tiny.npy", tiny)
    assert kernel_bank.load_bank(tmp_path / "tiny.npy").min() == 0
    scipy.io.savemat(tmp_path / "vars.mat", {"a": good[0], "b": good[1]})
    with pytest.raises(InputFileError, match="expected a variable 'K', found a, b"):
        kernel_bank.load_bank(tmp_path / "vars.mat")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(InputFileError, match="junk.npz: not a readable .npz file"):
        kernel_bank.load_bank(tmp_path / "junk.npz")
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(InputFileError, match="unsupported kernel file type"):
        kernel_bank.load_bank(tmp_path / "junk.txt")
    with pytest.raises(InputFileError, match="no such file"):
        kernel_bank.load_bank(tmp_path / "missing.npz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match="no kernel files"):
        kernel_bank.load_bank(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", good)
    np.save(mixed / "b.npy", sample_bank(size=11))
    with pytest.raises(InputFileError, match="b.npy: kernels of 11 x 11, but a.npy has 9 x 9"):
        kernel_bank.load_bank(mixed)
    colour = np.zeros((9, 9, 3), np.uint8)
    colour[4, 4] = (255, 0, 0)
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    with pytest.raises(InputFileError, match="c.png: a colour image"):
        kernel_bank.load_bank(tmp_path / "c.png")


# -- command line ----------------------------------------------------------------------------------

def test_cli_writes_bank_preview_and_summary(tmp_path):
    out = tmp_path / "bank.npz"
    r = CliRunner().invoke(cli, ["kernels", "--model", "boracchi", "--count", "30", "--size",
                                 "17", "--extent", "4:12", "-p", "anxiety=0.005", "--seed", "3",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    bank = kernel_bank.load_bank(out)
    assert bank.shape == (30, 17, 17)
    assert np.array_equal(bank, psf.kernel_bank("boracchi", 30, 17, 3, extent=(4.0, 12.0),
                                                anxiety=0.005))
    meta = kernel_bank.bank_meta(out)
    assert meta["params"]["anxiety"] == 0.005 and meta["extent"] == [4.0, 12.0]
    preview = cv2.imread(str(tmp_path / "bank_preview.png"))
    assert preview is not None and preview.shape[0] > 100
    assert "30 kernels of 17 x 17 px" in r.output and "curvature" in r.output


def test_cli_errors_and_help(tmp_path):
    run = lambda *a: CliRunner().invoke(cli, ["kernels", *a])  # noqa: E731
    out = str(tmp_path / "b.npz")
    r = run("-n", "3", "-k", "16", "-o", out)
    assert r.exit_code == 2 and "--size" in r.output and "odd" in r.output
    r = run("-n", "3", "-k", "17", "-o", out, "-p", "speed=3")
    assert r.exit_code == 2 and "speed: not a parameter of model 'gp'" in r.output
    r = run("-n", "3", "-k", "17", "-o", str(tmp_path / "b.txt"))
    assert r.exit_code == 2 and "ending in .npz" in r.output
    r = run("-n", "3", "-k", "17", "--extent", "20", "-o", out)
    assert r.exit_code == 2 and "--extent" in r.output
    (tmp_path / "file").write_text("")
    r = run("-n", "3", "-k", "17", "-o", str(tmp_path / "file" / "b.npz"))
    assert r.exit_code == 1 and "file: cannot write" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "b.npz").exists()
    r = run("--help")
    assert r.exit_code == 0
    for model in psf.MODELS:
        assert f"    {model} " in r.output
