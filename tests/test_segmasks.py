"""Mask sources for segblur: COCO annotations, mask folders, plain images.

Every expected mask, area, count and order below is worked out by hand from the rectangles
in the fixtures (pycocotools fills a polygon rectangle (x0, y0)-(x1, y1) as rows y0..y1-1 and
columns x0..x1-1).
"""
import json
from collections import Counter

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from blursynth.errors import InputFileError, ParameterError
from blursynth.segmasks import (ORDERS, CocoSource, ItemError, MaskFilter, MaskFolderSource,
                                PlainSource, SegItem, coco_items, order_objects)

H, W = 64, 80
CATS = [{"id": 1, "name": "person", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
        {"id": 18, "name": "dog", "supercategory": "animal"},
        {"id": 62, "name": "chair", "supercategory": "furniture"}]


def _rect(x0, y0, x1, y1):
    """Polygon of the rectangle covering columns x0..x1-1 and rows y0..y1-1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _box_mask(*rects, h=H, w=W):
    m = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in rects:
        m[y0:y1, x0:x1] = True
    return m


def _write_image(path, h=H, w=W):
    img = np.full((h, w, 3), 128, dtype=np.uint8)
    assert cv2.imwrite(str(path), img)


def _ann(i, image_id, cat, segm, crowd=0):
    return {"id": i, "image_id": image_id, "category_id": cat, "segmentation": segm,
            "iscrowd": crowd, "area": 0.0, "bbox": [0, 0, 0, 0]}


# car of image 1: a 10x40 bar plus a 10x10 notch above its right end = 400 + 100 = 500 px
CAR = _box_mask((30, 50, 70, 60), (60, 40, 70, 50))
CAR_RLE = mask_utils.encode(np.asfortranarray(CAR.astype(np.uint8)))
CAR_RLE = {"size": CAR_RLE["size"], "counts": CAR_RLE["counts"].decode("ascii")}
# crowd of image 1: rows 0..9 across the whole width; column-major runs, zeros first:
# every column is 10 ones then 54 zeros
CROWD_RLE = {"size": [H, W], "counts": [0] + [10, 54] * W}
# image 2: six persons (id: rectangle x0, y0, x1, y1 -> area, lower edge)
SIX = {201: (0, 0, 10, 20),     # 200 px, bottom 20
       202: (12, 30, 22, 60),   # 300 px, bottom 60
       203: (24, 5, 44, 15),    # 200 px, bottom 15
       204: (46, 40, 80, 50),   # 340 px, bottom 50
       205: (0, 25, 10, 37),    # 120 px, bottom 37
       206: (30, 20, 40, 38)}   # 180 px, bottom 38


def _coco(tmp_path):
    """instances.json + images/: see the comments for what each image tests."""
    imgs = tmp_path / "images"
    imgs.mkdir()
    images = [{"id": i, "file_name": f"{i:012d}.png", "height": H, "width": W}
              for i in (1, 2, 3, 4, 5)]
    anns = [
        # image 1: person in two parts (20x50 + 30x30 = 1900 px), RLE car, crowd, chair, tiny dog
        _ann(101, 1, 1, [_rect(4, 4, 24, 54), _rect(40, 10, 70, 40)]),
        _ann(102, 1, 3, CAR_RLE),
        _ann(103, 1, 1, CROWD_RLE, crowd=1),
        _ann(104, 1, 62, [_rect(0, 20, 20, 30)]),   # furniture: 200 px
        _ann(105, 1, 18, [_rect(75, 0, 80, 5)]),    # 25 px < min_area 100
        # image 3: nothing qualifies (a chair, a tiny dog)
        _ann(301, 3, 62, [_rect(0, 0, 30, 30)]),
        _ann(302, 3, 18, [_rect(0, 40, 5, 45)]),
        # image 4: its file is missing; image 5: its file is 60 rows high, not 64
        _ann(401, 4, 1, [_rect(0, 0, 40, 40)]),
        _ann(501, 5, 1, [_rect(0, 0, 40, 40)]),
        # image_id 99 does not exist
        _ann(901, 99, 1, [_rect(0, 0, 40, 40)]),
    ]
    anns += [_ann(i, 2, 1, [_rect(*r)]) for i, r in SIX.items()]
    for i in (1, 2, 3):
        _write_image(imgs / f"{i:012d}.png")
    _write_image(imgs / f"{5:012d}.png", h=60)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    return path, imgs


SMALL = dict(min_area=100, max_objects=3)


def test_coco_batch_masks_counts_and_errors(tmp_path):
    inst, imgs = _coco(tmp_path)
    src = CocoSource(inst, imgs, MaskFilter(**SMALL))
    assert len(src) == 5
    out = list(src)
    assert [type(o) for o in out] == [ItemError, SegItem, SegItem, ItemError, ItemError]
    orphan, one, two, missing, wrong_size = out

    assert orphan.path == inst and "901" in orphan.message and "99" in orphan.message
    assert one.key == "000000000001" and one.image == imgs / "000000000001.png"
    assert one.masks.dtype == bool and one.masks.shape == (2, H, W)
    # both polygon parts are in the person's mask: 20*50 + 30*30 pixels
    assert one.masks[0].sum() == 1900
    assert np.array_equal(one.masks[0], _box_mask((4, 4, 24, 54), (40, 10, 70, 40)))
    assert np.array_equal(one.masks[1], CAR)  # RLE decoded exactly
    assert one.meta == {"source": "coco", "image_id": 1, "file_name": "000000000001.png",
                        "annotation_ids": [101, 102], "categories": ["person", "car"],
                        "areas": [1900, 500], "order": "bottom"}
    # more persons than max_objects: the 3 highest lower edges (15, 20, 37), back to front
    assert two.meta["annotation_ids"] == [203, 201, 205]
    assert np.array_equal(two.masks[0], _box_mask(SIX[203]))

    assert missing.key == "000000000004" and "no such file" in missing.message
    assert str(missing) == f"{imgs / '000000000004.png'}: {missing.message}"
    assert "80x60" in wrong_size.message and "80x64" in wrong_size.message
    assert src.report == Counter(images=5, with_objects=2, skipped_no_objects=1, objects=5,
                                 crowd_excluded=1, filtered_category=2, too_small=2,
                                 over_max=3, failed=3)
    assert list(src) and src.report["images"] == 5  # a second pass starts a fresh report


def test_coco_crowd_included(tmp_path):
    inst, imgs = _coco(tmp_path)
    src = CocoSource(inst, imgs, MaskFilter(include_crowd=True, **SMALL))
    one = next(o for o in src if isinstance(o, SegItem) and o.key == "000000000001")
    # the crowd's lower edge (row 10) is above the person's (54) and the car's (60)
    assert one.meta["annotation_ids"] == [103, 101, 102]
    assert np.array_equal(one.masks[0], _box_mask((0, 0, W, 10)))
    assert one.meta["areas"][0] == 800


def test_coco_keep_empty_and_categories(tmp_path):
    inst, imgs = _coco(tmp_path)
    items = [o for o in CocoSource(inst, imgs, MaskFilter(**SMALL), keep_empty=True)
             if isinstance(o, SegItem)]
    assert [(o.key, o.masks.shape) for o in items][2] == ("000000000003", (0, H, W))

    src = coco_items(inst, imgs, MaskFilter(categories=("car",), supercategories=None,
                                            **SMALL))
    items = [o for o in src if isinstance(o, SegItem)]
    assert [o.meta["annotation_ids"] for o in items] == [[102]]
    # images 2, 4 and 5 (persons only) and 3: skipped before their files are looked at
    assert src.report["skipped_no_objects"] == 4 and src.report["failed"] == 1
    with pytest.raises(ParameterError, match="persn"):
        CocoSource(inst, imgs, MaskFilter(categories=("persn",)))
    with pytest.raises(ParameterError, match="no category"):  # chair is not in the default
        CocoSource(inst, imgs, MaskFilter(categories=("chair",)))  # supercategories


@pytest.mark.parametrize("order, ids", [("bottom", [203, 201, 205]),   # lower edge 15, 20, 37
                                        ("area", [204, 202, 201]),     # 340, 300, 200 (id < 203)
                                        ("sbdd", [205, 206, 201]),     # box area 120, 180, 200
                                        ("id", [201, 202, 203])])
def test_coco_orders_choose_and_sort(tmp_path, order, ids):
    inst, imgs = _coco(tmp_path)
    src = CocoSource(inst, imgs, MaskFilter(order=order, **SMALL))
    two = next(o for o in src if isinstance(o, SegItem) and o.key == "000000000002")
    assert two.meta["annotation_ids"] == ids and two.meta["order"] == order
    assert [int(m.sum()) for m in two.masks] == [(SIX[i][2] - SIX[i][0]) * (SIX[i][3] - SIX[i][1])
                                                 for i in ids]


def test_order_objects_hand_built():
    ids = [7, 3, 5, 9]
    areas = [50, 200, 200, 10]
    boxes = [[0, 40, 10, 10],   # bottom 50, box 100
             [0, 0, 20, 20],    # bottom 20, box 400
             [5, 10, 10, 40],   # bottom 50, box 400
             [0, 60, 2, 5]]     # bottom 65, box 10
    # bottom: 20 (id 3), then the tie at 50 by id (5, 7), then 65
    assert order_objects("bottom", ids, areas, boxes).tolist() == [1, 2, 0, 3]
    assert order_objects("area", ids, areas, boxes).tolist() == [1, 2, 0, 3]  # 200, 200, 50, 10
    assert order_objects("sbdd", ids, areas, boxes).tolist() == [3, 0, 1, 2]  # 10, 100, 400, 400
    assert order_objects("id", ids, areas, boxes).tolist() == [1, 2, 0, 3]
    assert order_objects("id", [], [], np.zeros((0, 4))).tolist() == []
    assert set(ORDERS) >= {"bottom", "area", "sbdd", "id"}
    with pytest.raises(ParameterError, match="depth"):
        order_objects("depth", ids, areas, boxes)


@pytest.mark.parametrize("segm, match", [
    ([[1, 2, 3, 4, 5]], "polygon"),                      # odd number of coordinates
    ({"size": [32, 40], "counts": [1280]}, "RLE size"),  # RLE of another image size
])
def test_coco_bad_segmentation_is_an_item_error(tmp_path, segm, match):
    inst, imgs = _coco(tmp_path)
    data = json.loads(inst.read_text())
    data["annotations"][0]["segmentation"] = segm
    inst.write_text(json.dumps(data))
    out = list(CocoSource(inst, imgs, MaskFilter(**SMALL)))
    bad = [o for o in out if isinstance(o, ItemError) and o.key == "000000000001"]
    assert len(bad) == 1 and "annotation 101" in bad[0].message and match in bad[0].message
    assert any(isinstance(o, SegItem) and o.key == "000000000002" for o in out)


@pytest.mark.parametrize("text, match", [
    ('{"images": [', "not valid JSON"),
    ('{"images": [], "annotations": []}', "missing 'categories'"),
    ("[1, 2]", "got a JSON list"),
    ('{"images": [{"id": 1}], "annotations": [], "categories": []}', r"images\[0\]: missing"),
    ('{"images": [], "annotations": [{"id": 1, "image_id": 1, "category_id": 5, '
     '"segmentation": []}], "categories": []}', "category_id 5"),
])
def test_coco_bad_json_raises_naming_the_file(tmp_path, text, match):
    (tmp_path / "images").mkdir()
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputFileError, match=match) as e:
        CocoSource(path, tmp_path / "images")
    assert e.value.path == str(path)
    with pytest.raises(InputFileError, match="no such file"):
        CocoSource(tmp_path / "none.json", tmp_path / "images")


@pytest.mark.parametrize("kw", [dict(min_area=-1), dict(min_area=float("nan")),
                                dict(max_objects=0), dict(max_objects=2.5), dict(order="depth"),
                                dict(categories="person"), dict(supercategories=()),
                                dict(include_crowd=1)])
def test_mask_filter_rejects(kw):
    with pytest.raises(ParameterError):
        MaskFilter(**kw)


def test_mask_filter_defaults_and_lists():
    f = MaskFilter(categories=["person", "dog"])
    assert f.categories == ("person", "dog")
    d = MaskFilter()
    assert (d.categories, d.supercategories, d.min_area, d.max_objects, d.order,
            d.include_crowd) == (None, ("person", "vehicle", "animal"), 4000, 5, "bottom", False)


def _mask_folders(tmp_path):
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for name in ("a", "b", "c", "d", "e"):
        _write_image(imgs / f"{name}.png")
    # a: instance PNGs; natural order m1, m2, m10 gives ids 1, 2, 3
    (masks / "a").mkdir()
    cv2.imwrite(str(masks / "a" / "m1.png"), _box_mask((0, 0, W, 10)).astype(np.uint8) * 255)
    cv2.imwrite(str(masks / "a" / "m2.png"), _box_mask((0, 30, 20, 50)).astype(np.uint8))
    red = np.zeros((H, W, 3), np.uint8)
    red[20:30, 0:10, 2] = 255  # colour mask, only the red channel set (BGR)
    cv2.imwrite(str(masks / "a" / "m10.png"), red)
    # b: 16-bit label image, values above 255
    lab = np.zeros((H, W), np.uint16)
    lab[0:10, 0:30] = 300      # 300 px, bottom 10
    lab[40:60, 0:10] = 7       # 200 px, bottom 60
    lab[20:30, 40:80] = 1000   # 400 px, bottom 30
    cv2.imwrite(str(masks / "b.png"), lab)
    # c: no masks; d: label of the wrong size; e: both layouts; zzz: no image
    cv2.imwrite(str(masks / "d.png"), np.zeros((32, 40), np.uint8))
    (masks / "e").mkdir()
    cv2.imwrite(str(masks / "e.png"), np.zeros((H, W), np.uint8))
    cv2.imwrite(str(masks / "zzz.png"), np.zeros((H, W), np.uint8))
    return masks, imgs, lab


def test_mask_folders_both_layouts(tmp_path):
    masks, imgs, lab = _mask_folders(tmp_path)
    # min_area 100: m10 has exactly 100 px and is kept
    src = MaskFolderSource(masks, imgs, MaskFilter(min_area=100, order="id"))
    assert len(src) == 5
    out = list(src)
    assert [(type(o).__name__, o.key) for o in out] == [
        ("ItemError", "zzz"), ("SegItem", "a"), ("SegItem", "b"), ("SegItem", "c"),
        ("ItemError", "d"), ("ItemError", "e")]
    _, a, b, c, d, e = out
    assert a.meta["mask_files"] == ["m1.png", "m2.png", "m10.png"]
    assert a.meta["instance_ids"] == [1, 2, 3] and a.meta["areas"] == [800, 400, 100]
    assert np.array_equal(a.masks[2], _box_mask((0, 20, 10, 30)))
    assert b.meta["layout"] == "label" and b.meta["instance_ids"] == [7, 300, 1000]
    assert b.meta["areas"] == [200, 300, 400]
    assert np.array_equal(b.masks[2], lab == 1000)
    assert c.masks.shape == (0, H, W)
    assert d.path == masks / "d.png" and str(imgs / "d.png") in d.message
    assert "40x32" in d.message and "80x64" in d.message
    assert "both" in e.message
    assert src.report == Counter(images=5, with_objects=2, no_masks=1, objects=6, failed=3)


def test_mask_folders_filter_and_order(tmp_path):
    masks, imgs, _ = _mask_folders(tmp_path)
    src = MaskFolderSource(masks, imgs, MaskFilter(min_area=150, max_objects=2))
    a, b = [o for o in src if isinstance(o, SegItem) and o.key in ("a", "b")]
    assert a.meta["instance_ids"] == [1, 2]        # bottom 10, 50; m10 (100 px) too small
    assert b.meta["instance_ids"] == [300, 1000]   # bottom 10, 30; 7 (bottom 60) over max
    assert src.report["too_small"] == 1 and src.report["over_max"] == 1
    with pytest.raises(ParameterError, match="COCO"):
        MaskFolderSource(masks, imgs, MaskFilter(categories=("person",)))


def test_plain_folder(tmp_path):
    _write_image(tmp_path / "photo.png")
    (tmp_path / "notes.txt").write_text("not an image")
    src = PlainSource(tmp_path)
    assert len(src) == 2
    err, item = list(src)  # name order: notes.txt, photo.png
    assert item.key == "photo" and item.masks.shape == (0, H, W) and item.masks.dtype == bool
    assert isinstance(err, ItemError) and err.path == tmp_path / "notes.txt"
    assert src.report == Counter(images=2, plain=1, failed=1)
    missing = list(PlainSource([tmp_path / "gone.png"]))[0]
    assert isinstance(missing, ItemError) and "no such" in missing.message
