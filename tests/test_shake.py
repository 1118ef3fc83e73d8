"""shake: kernel draws, per-frame/per-burst, regeneration, drivers, online transform, CLI."""
import json

import cv2
import msgpack
import numpy as np
import pytest
from click.testing import CliRunner
from skimage import data

from blursynth.clips import find_clips, read_image
from blursynth.convolve import blur_u8
from blursynth.data import ShakeTransform, to_tensor
from blursynth.errors import ParameterError
from blursynth.formats.native_lmdb import NativeLmdbReader, NativeLmdbWriter
from blursynth.sampling import Sample
from blursynth.seeding import item_rng
from blursynth.shake import (
    ShakeParams, kernel_from_info, plan_kernels, shake_burst, shake_margin, shake_sample,
)
from blursynth.shake_files import (
    MANIFEST, input_kind, lmdb_manifest_path, shake_clips, shake_images, shake_lmdb,
)
from blursynth_cli.main import blursynth as cli

SIZES = (5, 9)  # small kernels keep these tests fast


def params(**kw) -> ShakeParams:
    return ShakeParams(**{"model": "line", "sizes": SIZES, **kw})


def photo_burst(t=3, h=24, w=32) -> np.ndarray:
    img = data.astronaut()
    return np.stack([img[100 + 2 * i:100 + 2 * i + h, 150:150 + w] for i in range(t)])


def write_lmdb(path, n=3, encoding="png"):
    samples = []
    with NativeLmdbWriter(path, encoding=encoding, meta={"test": 1}) as w:
        for i in range(n):
            b = photo_burst()
            s = photo_burst()[:, ::-1].copy()
            samples.append(Sample(f"clip/{i:06d}/0_0", b, s, ref=1,
                                  meta={"crf": "srgb", "crop": [0, 0, 24, 32]}))
            w.add(samples[-1])
    return samples


# -- parameters and kernel draws -----------------------------------------------------------


@pytest.mark.parametrize("kw, match", [
    (dict(model="nope"), "model"), (dict(sizes=(4,)), "sizes"), (dict(sizes=()), "sizes"),
    (dict(extent=(9, 3)), "extent"), (dict(border="zero"), "border"), (dict(crf="bogus"), "crf"),
    (dict(sizes=(1,)), "sizes"), (dict(extent=(2, 20)), "extent"), (dict(psf_params={"nope": 1}), "psf_params"),
])
def test_params_are_validated(kw, match):
    with pytest.raises(ParameterError, match=match):
        params(**kw)


def test_per_frame_draws_one_kernel_per_frame_per_burst_one_for_all():
    pf = plan_kernels(params(), item_rng(0, "x", "shake"), 5)
    assert len(pf) == 5 and len({i["seed"] for i in pf}) == 5
    assert len({i["size"] for i in pf}) == 1 and pf[0]["size"] in SIZES  # size drawn per burst
    pb = plan_kernels(params(per_frame=False), item_rng(0, "x", "shake"), 5)
    assert len(pb) == 5 and all(i == pb[0] for i in pb)
    assert set(pb[0]) == {"model", "size", "extent", "seed"} and pb[0]["model"] == "line"


def test_default_gp_kernels_and_extent_ranges_regenerate():
    burst = photo_burst(2, 40, 40)
    out, infos = shake_burst(burst, ShakeParams(), item_rng(0, "gp", "shake"))
    assert infos[0]["model"] == "gp" and infos[0]["size"] in (17, 21, 25)
    for t in range(2):
        k = kernel_from_info(infos[t])
        assert k.shape == (infos[t]["size"],) * 2
        assert np.array_equal(out[t], blur_u8(burst[t], k, "srgb"))
    pe = plan_kernels(params(extent=(2.0, 4.0)), item_rng(0, "e", "shake"), 3)
    assert len({i["extent"] for i in pe}) == 1 and 2.0 <= pe[0]["extent"] <= 4.0


def test_crf_comes_from_the_record_unless_given():
    s = Sample("c/000000/0_0", photo_burst(1), photo_burst(1), ref=0, meta={"crf": "gamma:2.2"})
    out = shake_sample(s, params(), seed=0)
    k = kernel_from_info(out.meta["shake"]["kernels"][0])
    assert out.meta["shake"]["crf"] == "gamma:2.2"
    assert np.array_equal(out.blurry[0], blur_u8(s.blurry[0], k, "gamma:2.2"))
    forced = shake_sample(s, params(crf="linear"), seed=0)
    assert forced.meta["shake"]["crf"] == "linear"
    assert np.array_equal(forced.blurry[0], blur_u8(s.blurry[0], k, "linear"))


def test_burst_is_reproducible_and_kernels_regenerate_from_their_info():
    burst = np.repeat(photo_burst(1), 4, axis=0)  # four identical frames
    p = params()
    a, infos = shake_burst(burst, p, item_rng(7, "item", "shake"))
    b, _ = shake_burst(burst, p, item_rng(7, "item", "shake"))
    c, _ = shake_burst(burst, p, item_rng(8, "item", "shake"))
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    for t in range(4):
        assert np.array_equal(a[t], blur_u8(burst[t], kernel_from_info(infos[t]), "srgb"))
    assert not np.array_equal(a[0], a[1])  # independent kernels per frame
    same, _ = shake_burst(burst, params(per_frame=False), item_rng(7, "item", "shake"))
    assert all(np.array_equal(same[0], same[t]) for t in range(4))  # one kernel for all


def test_bank_kernels_are_used_by_index(tmp_path):
    impulse = np.zeros((5, 5), np.float32)
    impulse[2, 2] = 1
    box = np.full((5, 5), 1 / 25, np.float32)
    np.savez(tmp_path / "bank.npz", kernels=np.stack([impulse, box]))
    p = ShakeParams(bank=tmp_path / "bank.npz")
    assert p.model is None and p.bank == str(tmp_path / "bank.npz")
    burst = photo_burst(6)
    out, infos = shake_burst(burst, p, item_rng(0, "b", "shake"))
    assert {i["index"] for i in infos} == {0, 1}  # both drawn in six frames (seed 0)
    for t, info in enumerate(infos):
        if info["index"] == 0:  # the impulse returns the frame unchanged
            assert np.array_equal(out[t], burst[t])
        else:
            assert np.array_equal(out[t], blur_u8(burst[t], box))
    assert shake_margin(ShakeParams(bank=tmp_path / "bank.npz", border="valid")) == 2


def test_valid_border_crops_blurry_and_sharp_alike():
    src = Sample("c/000000/10_20", photo_burst(), photo_burst()[:, ::-1].copy(), ref=1,
                 meta={"crf": "srgb", "crop": [10, 20, 24, 32]})
    p = params(border="valid")
    m = shake_margin(p)
    assert m == 4  # max(SIZES) // 2 whatever the kernel drawn
    out = shake_sample(src, p, seed=1)
    assert out.blurry.shape == out.sharp.shape == (3, 24 - 8, 32 - 8, 3)
    assert np.array_equal(out.sharp, src.sharp[:, 4:-4, 4:-4])
    assert out.meta["crop"] == [14, 24, 16, 24] and out.meta["shake"]["margin"] == 4
    for t, info in enumerate(out.meta["shake"]["kernels"]):
        k = kernel_from_info(info)
        e = m - k.shape[0] // 2
        full = blur_u8(src.blurry[t], k, "srgb", border="valid")
        assert np.array_equal(out.blurry[t], full[e:full.shape[0] - e, e:full.shape[1] - e])
    with pytest.raises(ParameterError, match="too small"):
        shake_burst(photo_burst(1, 8, 8), p, item_rng(0, "s", "shake"))


# -- drivers -------------------------------------------------------------------------------


def save_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_images_batch_records_a_bad_file_goes_on_and_resumes(tmp_path):
    src = tmp_path / "photos"
    save_rgb(src / "a.png", data.astronaut()[:40, :48])
    save_rgb(src / "sub" / "b.png", data.coffee()[:40, :48])
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    out = tmp_path / "out"
    res = shake_images([src, notes], out, params(), seed=3)
    assert sorted(res["done"]) == ["a.png", "sub/b.png"]
    assert [f["item"] for f in res["failed"]] == ["notes.png"]
    assert "not a readable image" in res["failed"][0]["error"]
    recs = {r["item"]: r for r in map(json.loads, (out / MANIFEST).read_text().splitlines())}
    assert recs["notes.png"]["status"] == "failed"
    for key, name in (("a.png", "a.png"), ("sub/b.png", "sub/b.png")):
        rec = recs[key]
        assert rec["status"] == "ok" and rec["seed"] == 3 and len(rec["kernels"]) == 1
        want = blur_u8(read_image(src / name), kernel_from_info(rec["kernels"][0]), "srgb")
        assert np.array_equal(read_image(out / key), want)
    again = shake_images([src, notes], out, params(), seed=3)
    assert again["done"] == [] and sorted(again["resumed"]) == ["a.png", "sub/b.png"]
    with pytest.raises(ParameterError, match="other parameters"):
        shake_images([src], out, params(), seed=4)


def make_folder_clip(root, name="walk", n=4):
    frames = photo_burst(n)
    for i, f in enumerate(frames):
        save_rgb(root / f"{name}_blurry" / f"{i:06d}.png", f)
        save_rgb(root / f"{name}_sharp" / f"{i:06d}.png", f[::-1].copy())
    return frames


def test_clips_shake_only_blurry_frames(tmp_path):
    frames = make_folder_clip(tmp_path / "clips")
    out = tmp_path / "out"
    res = shake_clips([tmp_path / "clips"], out, params(per_frame=False), seed=2)
    assert res["done"] == ["walk"] and res["frames"] == 4 and not res["failed"]
    rec = json.loads((out / MANIFEST).read_text().splitlines()[-1])
    assert len(rec["kernels"]) == 4 and all(k == rec["kernels"][0] for k in rec["kernels"])
    k = kernel_from_info(rec["kernels"][0])
    (clip,) = find_clips([out])
    for i, b, s in clip.frames():
        assert np.array_equal(b, blur_u8(frames[i], k, "srgb"))
        assert (out / "walk_sharp" / f"{i:06d}.png").read_bytes() == \
            (tmp_path / "clips" / "walk_sharp" / f"{i:06d}.png").read_bytes()
    assert shake_clips([tmp_path / "clips"], out, params(per_frame=False), seed=2)["resumed"] == ["walk"]
    with pytest.raises(ParameterError, match="inside the input folder"):
        shake_clips([tmp_path], tmp_path / "inside", params())


def test_lmdb_round_trip_and_resume(tmp_path):
    src, dst = tmp_path / "src.lmdb", tmp_path / "dst.lmdb"
    samples = write_lmdb(src)
    res = shake_lmdb(src, dst, params(), seed=5)
    assert len(res["done"]) == 3 and not res["failed"]
    with NativeLmdbReader(dst) as r:
        assert len(r) == 3 and r.meta["meta"]["seed"] == 5
        for i, s in enumerate(samples):
            got = r[i]
            assert got.id == s.id and got.ref == s.ref
            assert np.array_equal(got.sharp, s.sharp)
            kernels = got.meta["shake"]["kernels"]
            assert len(kernels) == 3 and got.meta["crf"] == "srgb"
            for t in range(3):
                assert np.array_equal(got.blurry[t],
                                      blur_u8(s.blurry[t], kernel_from_info(kernels[t]), "srgb"))
    again = shake_lmdb(src, dst, params(), seed=5)
    assert again["done"] == [] and len(again["resumed"]) == 3
    assert len(NativeLmdbReader(dst)) == 3
    assert lmdb_manifest_path(dst).is_file()
    with pytest.raises(ParameterError):
        shake_lmdb(src, dst, params(), seed=6)  # same output, other seed


def test_lmdb_corrupt_record_is_recorded_and_the_rest_goes_on(tmp_path):
    import lmdb

    src, dst = tmp_path / "src.lmdb", tmp_path / "dst.lmdb"
    samples = write_lmdb(src)
    env = lmdb.open(str(src))
    with env.begin(write=True) as txn:
        txn.put(b"00000001", b"not msgpack")
    env.close()
    res = shake_lmdb(src, dst, params(), seed=0)
    assert res["done"] == [samples[0].id, samples[2].id]
    assert [f["item"] for f in res["failed"]] == [samples[1].id]
    assert "not a blursynth native record" in res["failed"][0]["error"]
    recs = [json.loads(x) for x in lmdb_manifest_path(dst).read_text().splitlines()]
    assert [(r["item"], r["status"]) for r in recs][0] == (samples[1].id, "failed")
    assert recs[-1]["status"] == "ok" and recs[-1]["shaken"] == 2 and recs[-1]["failed"] == 1
    assert NativeLmdbReader(dst).ids() == [samples[0].id, samples[2].id]


def test_lmdb_jpeg_sharp_bytes_are_copied_not_reencoded(tmp_path):
    src, dst = tmp_path / "src.lmdb", tmp_path / "dst.lmdb"
    write_lmdb(src, n=2, encoding="jpeg")
    shake_lmdb(src, dst, params(), seed=0)
    a, b = NativeLmdbReader(src), NativeLmdbReader(dst)
    for i in range(2):
        assert msgpack.unpackb(a.raw(i))["sharp"] == msgpack.unpackb(b.raw(i))["sharp"]
        assert msgpack.unpackb(a.raw(i))["blurry"] != msgpack.unpackb(b.raw(i))["blurry"]


def test_input_kinds(tmp_path):
    write_lmdb(tmp_path / "x.lmdb", n=1)
    make_folder_clip(tmp_path / "clips")
    save_rgb(tmp_path / "imgs" / "a.png", data.astronaut()[:8, :8])
    assert [input_kind(tmp_path / n) for n in ("x.lmdb", "clips", "imgs", "imgs/a.png", "nope")] \
        == ["lmdb", "clips", "images", "images", "images"]


# -- online transform ----------------------------------------------------------------------


def test_transform_numpy_equals_the_offline_stage_and_epochs_differ():
    s = Sample("c/000003/0_0", photo_burst(), photo_burst(), ref=1, meta={"crf": "srgb"})
    tf = ShakeTransform(params(), seed=9)
    a = tf(s)
    assert np.array_equal(a.blurry, shake_sample(s, params(), 9).blurry)
    assert np.array_equal(a.sharp, s.sharp) and a.meta["shake"]["key"] == s.id
    tf.set_epoch(1)
    b = tf(s)
    assert b.meta["shake"]["key"] == "c/000003/0_0@epoch1" and not np.array_equal(a.blurry, b.blurry)
    assert np.array_equal(b.blurry, ShakeTransform(params(), seed=9, epoch=1)(s).blurry)


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_transform_torch_batch_matches_numpy(border):
    torch = pytest.importorskip("torch")
    p = params(border=border, sizes=(5, 9, 13))  # 13: the DFT route on the NumPy side
    samples = [Sample(f"c/{i:06d}/0_0", photo_burst(), photo_burst()[:, ::-1].copy(), ref=1,
                      meta={"crf": "srgb"}) for i in range(2)]
    tf = ShakeTransform(p, seed=4)
    batch = {"blurry": torch.stack([to_tensor(s.blurry) for s in samples]),
             "sharp": torch.stack([to_tensor(s.sharp) for s in samples]),
             "id": [s.id for s in samples]}
    out = tf(batch)
    for b, s in enumerate(samples):
        want = tf(s)
        got = (out["blurry"][b].permute(0, 2, 3, 1).numpy() * 255).round().astype(int)
        assert got.shape == want.blurry.shape
        diff = np.abs(got - want.blurry.astype(int))
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.999
        sharp = (out["sharp"][b].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        assert np.array_equal(sharp, want.sharp)
    one = tf({"blurry": batch["blurry"][1], "id": samples[1].id})  # one sample's dict
    assert torch.equal(one["blurry"], out["blurry"][1])


# -- command line --------------------------------------------------------------------------


def test_cli_images_clips_lmdb_and_exit_codes(tmp_path):
    save_rgb(tmp_path / "imgs" / "a.png", data.astronaut()[:30, :30])
    make_folder_clip(tmp_path / "clips")
    write_lmdb(tmp_path / "in.lmdb", n=2)
    args = ["-q", "shake", str(tmp_path / "imgs"), str(tmp_path / "clips"),
            str(tmp_path / "in.lmdb"), "--out", str(tmp_path / "out"), "--lmdb-out",
            str(tmp_path / "out.lmdb"), "--model", "line", "--sizes", "5,9", "--per-burst",
            "--seed", "3"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "shake images: 1 images shaken" in r.output and "shake lmdb: 2 samples" in r.output
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "walk_blurry").is_dir()
    (tmp_path / "bad.png").write_text("oops")
    r = CliRunner().invoke(cli, ["shake", str(tmp_path / "bad.png"), str(tmp_path / "imgs"),
                                 "--out", str(tmp_path / "out2"), "--model", "line"])
    assert r.exit_code == 1 and "failed:" in r.output and (tmp_path / "out2" / "a.png").is_file()
    r = CliRunner().invoke(cli, ["shake", str(tmp_path / "imgs")])
    assert r.exit_code == 2 and "--out" in r.output
    r = CliRunner().invoke(cli, ["shake", str(tmp_path / "imgs"), "--out", str(tmp_path / "o3"),
                                 "--sizes", "4"])
    assert r.exit_code == 2 and "sizes" in r.output
    np.savez(tmp_path / "bank.npz", kernels=np.ones((1, 3, 3), np.float32) / 9)
    r = CliRunner().invoke(cli, ["shake", str(tmp_path / "imgs"), "--out", str(tmp_path / "o4"),
                                 "--model", "gp", "--bank", str(tmp_path / "bank.npz")])
    assert r.exit_code == 2 and "not both" in r.output
    r = CliRunner().invoke(cli, ["shake", "--help"])
    assert r.exit_code == 0 and all(o in r.output for o in (
        "--per-frame / --per-burst", "--bank", "--border", "--crf", "--lmdb-out", "--extent"))
