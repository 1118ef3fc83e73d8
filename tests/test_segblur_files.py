"""segblur driver and command: outputs, training list, manifest, failures, resume, workers."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from skimage import data

from blursynth.clips import read_image
from blursynth.errors import ParameterError
from blursynth.manifest import read_manifest
from blursynth.seeding import item_rng
from blursynth.segblur import SegParams, segblur_item
from blursynth.segblur_files import MANIFEST, TRAIN_LIST, segblur
from blursynth.segmasks import ItemError, PlainSource, SegItem
from blursynth.shake import kernel_from_info
from blursynth_cli.main import blursynth as cli

H, W = 48, 64
PARAMS = dict(size=9, object_extent=(2, 8), camera_extent=(1, 3))


def write_photo(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def masks(*boxes) -> np.ndarray:
    m = np.zeros((len(boxes), H, W), bool)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        m[i, y0:y1, x0:x1] = True
    return m


@pytest.fixture
def items(tmp_path):
    img = tmp_path / "img"
    a = write_photo(img / "a.png", data.astronaut()[100:100 + H, 150:150 + W])
    b = write_photo(img / "b.png", data.chelsea()[50:50 + H, 100:100 + W])
    c = write_photo(img / "c.png", data.coffee()[50:50 + H, 100:100 + W])
    return [
        SegItem("a", a, masks((5, 30, 5, 30), (20, 45, 25, 60)),
                {"source": "test", "annotation_ids": [11, 12]}),
        ItemError("broken", img / "broken.png", "annotation 7: malformed polygon"),
        SegItem("b", b, masks((10, 40, 10, 50)), {"source": "test", "annotation_ids": [21]}),
        SegItem("gone", img / "gone.png", masks((5, 30, 5, 30)), {}),
        SegItem("c", c, np.zeros((1, H + 1, W), bool), {}),  # masks of another size
    ]


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))
            if not p.name.startswith(".")} | \
        {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.npz"))}


def test_outputs_list_manifest_and_failures(tmp_path, items):
    p = SegParams(**PARAMS, save_masks=True, save_kernels=True, illumination=(0.8, 1.2))
    out = tmp_path / "out"
    res = segblur(items, out, p, seed=5)
    assert res["done"] == ["a", "b"] and res["resumed"] == []
    assert [f["item"] for f in res["failed"]] == ["broken", "gone", "c"]
    assert (out / TRAIN_LIST).read_text() == ("sharp/a.png blurry/a.png\n"
                                              "sharp/b.png blurry/b.png\n")
    assert sorted(files(out)) == ["blurry/a.png", "blurry/b.png", "kernels/a.npz",
                                  "kernels/b.npz", "masks/a_1.png", "masks/a_2.png",
                                  "masks/b_1.png", "sharp/a.png", "sharp/b.png"]

    recs = {r["item"]: r for r in read_manifest(out / MANIFEST)}
    a = recs["a"]
    assert a["status"] == "ok" and a["stage"] == "segblur" and a["seed"] == 5
    assert a["params"] == p.to_dict()
    assert a["input"]["path"] == str(items[0].image.absolute()) and len(a["input"]["sha256"]) == 64
    assert a["source"] == {"source": "test", "annotation_ids": [11, 12]}
    assert (a["model"], a["crf"], a["objects"], a["size"]) == ("layered", "srgb", 2, [H, W])
    assert 0.8 <= a["illumination"] <= 1.2 and len(a["kernels"]) == 3

    # The files hold what the core makes from the item's own stream, and the manifest
    # regenerates the kernels.
    want = segblur_item(items[0], read_image(items[0].image), p, item_rng(5, "a", "segblur"))
    assert np.array_equal(read_image(out / "blurry/a.png"), want.blurry)
    assert np.array_equal(read_image(out / "sharp/a.png"), want.sharp)
    with np.load(out / "kernels/a.npz") as z:
        assert np.array_equal(z["kernels"], want.kernels)
        assert [json.loads(s) for s in z["infos"]] == a["kernels"]
    for info, k in zip(a["kernels"], want.kernels):
        assert np.array_equal(kernel_from_info(info), k)
    cov = cv2.imread(str(out / "masks/a_2.png"), cv2.IMREAD_UNCHANGED)
    assert cov.shape == (H, W) and cov.dtype == np.uint8
    assert np.array_equal(cov, np.rint(want.coverage[1] * 255).clip(0, 255).astype(np.uint8))

    assert recs["broken"]["status"] == "failed"
    assert recs["broken"]["error"].endswith("broken.png: annotation 7: malformed polygon")
    assert recs["gone"]["error"].endswith("gone.png: no such file")
    assert "c.png" in recs["c"]["error"] and "masks" in recs["c"]["error"]


def test_resume_skips_done_items_and_redoes_missing_outputs(tmp_path, items):
    p = SegParams(**PARAMS)
    out = tmp_path / "out"
    segblur(items, out, p)
    stamp = (out / "blurry/a.png").stat().st_mtime_ns
    (out / "blurry/b.png").unlink()
    res = segblur(items, out, p)
    assert res["resumed"] == ["a"] and res["done"] == ["b"]
    assert (out / "blurry/a.png").stat().st_mtime_ns == stamp
    assert (out / TRAIN_LIST).read_text().count("\n") == 2
    with pytest.raises(ParameterError, match="another seed or other parameters"):
        segblur(items, out, p, seed=1)
    res = segblur(items, out, p, seed=1, overwrite=True)
    assert res["done"] == ["a", "b"]


def test_workers_give_the_same_bytes(tmp_path, items):
    p = SegParams(**PARAMS, model="sbdd", save_masks=True, save_kernels=True,
                  illumination=(0.5, 1.5))
    one = segblur(items, tmp_path / "one", p, seed=3, workers=1)
    two = segblur(items, tmp_path / "two", p, seed=3, workers=2)
    assert sorted(two["done"]) == one["done"] and len(two["failed"]) == 3
    a, b = files(tmp_path / "one"), files(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == 9
    assert all(a[k] == b[k] for k in a)
    lists = [(tmp_path / d / TRAIN_LIST).read_bytes() for d in ("one", "two")]
    assert lists[0] == lists[1]


def test_plain_photos_get_camera_blur_only(tmp_path, items):
    source = PlainSource([items[0].image, items[2].image, tmp_path / "img" / "nope.png"])
    p = SegParams(**PARAMS, border="valid")
    res = segblur(source, tmp_path / "out", p)
    assert res["done"] == ["a", "b"] and [f["item"] for f in res["failed"]] == ["nope"]
    assert res["report"]["plain"] == 2
    rec = {r["item"]: r for r in read_manifest(tmp_path / "out" / MANIFEST)}["a"]
    assert rec["objects"] == 0 and len(rec["kernels"]) == 1 and rec["output_size"] == [H - 8, W - 8]
    assert read_image(tmp_path / "out" / "blurry/a.png").shape == (H - 8, W - 8, 3)


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, items):
    for kw in (dict(seed=-1), dict(workers=0)):
        with pytest.raises(ParameterError):
            segblur(items, tmp_path / "out", SegParams(**PARAMS), **kw)
    assert not (tmp_path / "out").exists()


# -- command -------------------------------------------------------------------------------


def run(*args):
    return CliRunner().invoke(cli, ["-q", "segblur", *map(str, args)])


SMALL = ["--size", "9", "--object-extent", "2,8", "--camera-extent", "1,3"]


def test_cli_plain_photos_and_a_failure(tmp_path, items):
    r = run(items[0].image, items[2].image, "--out", tmp_path / "o", *SMALL)
    assert r.exit_code == 0, r.output
    assert "segblur: 2 pairs" in r.output
    assert (tmp_path / "o" / "blurry/b.png").is_file()
    r = run(items[0].image, tmp_path / "img" / "nope.png", "--out", tmp_path / "o2", *SMALL)
    assert r.exit_code == 1 and "nope.png" in r.output and "1 failed" in r.output


def test_cli_mask_folder(tmp_path, items):
    mdir = tmp_path / "masks" / "a"
    mdir.mkdir(parents=True)
    for i, m in enumerate(items[0].masks):
        cv2.imwrite(str(mdir / f"{i}.png"), m.astype(np.uint8) * 255)
    r = run("--masks", tmp_path / "masks", "--images", tmp_path / "img", "--out",
            tmp_path / "o", "--min-area", 10, "--model", "sbdd", "--save-masks", *SMALL)
    assert r.exit_code == 0, r.output
    rec = {x["item"]: x for x in read_manifest(tmp_path / "o" / MANIFEST)}
    assert rec["a"]["objects"] == 2 and rec["a"]["model"] == "sbdd"
    assert rec["b"]["objects"] == 0  # no mask entry: camera blur only
    assert (tmp_path / "o" / "masks" / "a_2.png").is_file()


def test_cli_coco(tmp_path, items):
    coco = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
            "annotations": [{"id": 9, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "segmentation": [[5, 5, 40, 5, 40, 30, 5, 30]], "area": 875.0,
                             "bbox": [5, 5, 35, 25]}],
            "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    r = run("--coco", tmp_path / "ann.json", "--images", tmp_path / "img", "--out",
            tmp_path / "o", "--min-area", 100, "--illumination", "0.5,1.5", *SMALL)
    assert r.exit_code == 0, r.output
    rec = read_manifest(tmp_path / "o" / MANIFEST)[0]
    assert rec["source"]["annotation_ids"] == [9] and rec["params"]["illumination"] == [0.5, 1.5]

    (tmp_path / "bad.json").write_text("[]")
    r = run("--coco", tmp_path / "bad.json", "--images", tmp_path / "img", "--out",
            tmp_path / "o3", *SMALL)
    assert r.exit_code == 1 and "bad.json" in r.output


@pytest.mark.parametrize("args, match", [
    ([], "give one source"),
    (["--coco", "x.json"], "needs --images"),
    (["--masks", "m", "--images", "i", "x.png"], "give one source"),
    (["x.png", "--images", "i"], "--images DIR goes with"),
    (["x.png", "--size", "8"], "size"),
    (["x.png", "--object-extent", "a,b"], "MIN,MAX"),
])
def test_cli_usage_errors(tmp_path, args, match):
    r = run(*args, "--out", tmp_path / "o")
    assert r.exit_code == 2 and match in r.output, r.output


def test_keys_that_cannot_name_files_fail_alone(tmp_path, items):
    bad = SegItem("../evil", items[0].image, items[0].masks, {})
    res = segblur([bad, items[2]], tmp_path / "out", SegParams(**PARAMS))
    assert res["done"] == ["b"] and "cannot name an output file" in res["failed"][0]["error"]
    assert not (tmp_path / "evil.png").exists()
