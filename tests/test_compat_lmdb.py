"""The compatibility LMDBs, checked the way their consumers read them.

- 2017 tensorpack (learning-blind-motion-deblurring): the value bytes against msgpack built
  by hand from the spec, and the frames as its reader decodes them;
- BasicSR: keys, ``meta_info.txt`` lines and PNG bytes as ``make_lmdb_from_imgs`` writes them,
  read back with BasicSR's pairing rule.
"""
import os
import struct

import cv2
import lmdb
import msgpack
import numpy as np
import pytest
from skimage import data

from blursynth.clips import find_clips
from blursynth.errors import InputFileError, OutputError, ParameterError
from blursynth.formats.basicsr_lmdb import (
    read_basicsr_clips, read_basicsr_lmdb, write_basicsr_lmdb,
)
from blursynth.formats.tensorpack_lmdb import (
    TensorpackLmdbWriter, _ndarray_map, read_tensorpack_lmdb, write_tensorpack_lmdb,
)
from blursynth.sampling import Run, Sample

PHOTO = data.astronaut()  # 512x512 RGB


def burst(i: int, size: int = 306, t: int = 5, ref: int | None = None) -> Sample:
    y, x = 20 * i, 30 * i
    blurry = np.stack([cv2.blur(PHOTO[y + k:y + k + size, x:x + size], (5, 1)) for k in range(t)])
    sharp = np.stack([PHOTO[y + k:y + k + size, x:x + size] for k in range(t)])
    return Sample(f"clip/{i:06d}/{y}_{x}", blurry, sharp, t - 1 if ref is None else ref, {})


def kv(path, subdir=True) -> dict:
    env = lmdb.open(str(path), subdir=subdir, readonly=True, lock=False)
    with env.begin() as txn:
        out = dict(txn.cursor())
    env.close()
    return out


# -- msgpack by hand (https://github.com/msgpack/msgpack/blob/master/spec.md) -------------


def mp_bin(b: bytes) -> bytes:
    if len(b) < 1 << 8:
        return bytes([0xC4, len(b)]) + b
    if len(b) < 1 << 16:
        return b"\xc5" + struct.pack(">H", len(b)) + b
    return b"\xc6" + struct.pack(">I", len(b)) + b


def mp_uint(n: int) -> bytes:
    if n < 128:
        return bytes([n])
    if n < 1 << 8:
        return bytes([0xCC, n])
    if n < 1 << 16:
        return b"\xcd" + struct.pack(">H", n)
    return b"\xce" + struct.pack(">I", n)


def mp_ndarray(data: bytes) -> bytes:
    """msgpack-numpy's map for a 1-D uint8 array: fixmap of 5, bin keys, in this order."""
    return (b"\x85" + mp_bin(b"nd") + b"\xc3" + mp_bin(b"type") + b"\xa3|u1"
            + mp_bin(b"kind") + b"\xc4\x00" + mp_bin(b"shape") + b"\x91" + mp_uint(len(data))
            + mp_bin(b"data") + mp_bin(data))


def test_ndarray_map_bytes_of_a_tiny_array():
    want = bytes([0x85, 0xC4, 2]) + b"nd" + b"\xc3" + bytes([0xC4, 4]) + b"type" + b"\xa3|u1" \
        + bytes([0xC4, 4]) + b"kind" + b"\xc4\x00" + bytes([0xC4, 5]) + b"shape" + b"\x91\x03" \
        + bytes([0xC4, 4]) + b"data" + b"\xc4\x03\x01\x02\x03"
    assert msgpack.packb(_ndarray_map(b"\x01\x02\x03"), use_bin_type=True) == want
    assert mp_ndarray(b"\x01\x02\x03") == want


# -- tensorpack ----------------------------------------------------------------------------


def consumer_read(path):
    """learning-blind-motion-deblurring's reading, as consumers.md section 6 describes it:
    tensorpack's LMDBDataPoint loads __keys__ and gets each key; msgpack-numpy's hook turns
    the maps back into arrays; data_provider cv2.imdecodes them (no channel swap)."""
    def hook(obj):
        if b"nd" in obj:
            return np.frombuffer(obj[b"data"], dtype=np.dtype(obj[b"type"])).reshape(obj[b"shape"])
        return obj
    env = lmdb.open(str(path), subdir=os.path.isdir(path), readonly=True, lock=False,
                    readahead=True, map_size=1099511627776 * 2, max_readers=100)
    with env.begin() as txn:
        keys = msgpack.unpackb(txn.get(b"__keys__"), raw=False)
        dps = [msgpack.unpackb(txn.get(k), raw=False, object_hook=hook) for k in keys]
    env.close()
    return [[cv2.imdecode(a, cv2.IMREAD_COLOR) for a in dp] for dp in dps]


def test_tensorpack_bytes_and_consumer_decoding(tmp_path):
    out = tmp_path / "train0.lmdb"
    samples = [burst(0), burst(1)]
    w = write_tensorpack_lmdb(samples, out, workers=2)
    assert w.count == 2 and out.is_file() and (tmp_path / "train0.lmdb-lock").is_file()
    values = kv(out, subdir=False)
    assert set(values) == {b"0", b"1", b"__keys__", b"__blursynth__"}
    assert values[b"__keys__"] == b"\x92\xc4\x010\xc4\x011"  # [b"0", b"1"], bin8 each
    for i, s in enumerate(samples):
        # The original JPEG-encoded the RGB arrays directly (OpenCV default quality 95).
        jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in (*s.blurry, *s.sharp)]
        assert values[str(i).encode()] == b"\x9a" + b"".join(mp_ndarray(j) for j in jpegs)
    got = consumer_read(out)
    assert [len(dp) for dp in got] == [10, 10]
    for dp, s in zip(got, samples):
        for img, frame in zip(dp, (*s.blurry, *s.sharp)):
            want = cv2.imdecode(cv2.imencode(".jpg", frame)[1], cv2.IMREAD_COLOR)
            np.testing.assert_array_equal(img, want)
            assert np.abs(img.astype(int) - frame).mean() < 3  # RGB in, RGB out
    ours = list(read_tensorpack_lmdb(out))
    for a, b in zip(ours, got):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("sample, match", [
    (burst(0, t=4, ref=3), "5 frames"),
    (burst(0, size=300), "306x306"),
    (burst(0, ref=2), "last frame"),
])
def test_tensorpack_refuses_what_the_consumer_would_drop(tmp_path, sample, match):
    with TensorpackLmdbWriter(tmp_path / "t.lmdb") as w:
        with pytest.raises(ParameterError, match=match):
            w.add(sample)
    assert list(read_tensorpack_lmdb(tmp_path / "t.lmdb")) == []


def test_tensorpack_interrupt_and_resume(tmp_path):
    out = tmp_path / "t.lmdb"
    samples = [burst(i) for i in range(3)]
    with pytest.raises(KeyboardInterrupt):
        with TensorpackLmdbWriter(out, commit_every=5000) as w:
            w.add(samples[0])
            raise KeyboardInterrupt
    assert len(consumer_read(out)) == 1  # consumable: __keys__ rewritten with the commit
    w = write_tensorpack_lmdb(samples, out)
    assert (w.written, w.skipped, w.count) == (2, 1, 3)
    values = kv(out, subdir=False)
    assert msgpack.unpackb(values[b"__keys__"], raw=False) == [b"0", b"1", b"2"]
    side = msgpack.unpackb(values[b"__blursynth__"], raw=False)
    assert side["ids"] == [s.id for s in samples] and side["frames"] == 5
    assert len(consumer_read(out)) == 3
    with pytest.raises(OutputError, match="already exists"):
        TensorpackLmdbWriter(out, resume=False)
    with pytest.raises(ParameterError, match="quality=95"):
        TensorpackLmdbWriter(out, quality=90)


def test_tensorpack_refuses_to_append_to_a_foreign_file(tmp_path):
    env = lmdb.open(str(tmp_path / "t.lmdb"), subdir=False)
    with env.begin(write=True) as txn:
        txn.put(b"__keys__", msgpack.packb([], use_bin_type=True))
    env.close()
    with pytest.raises(OutputError, match="not written by blursynth"):
        TensorpackLmdbWriter(tmp_path / "t.lmdb")


# -- BasicSR -------------------------------------------------------------------------------


H, W = 32, 48


def make_clip(root, name: str, n: int, shift: int = 0):
    """A pair-folder clip NAME_blurry/ + NAME_sharp/ of n frames: a pan over the photo."""
    frames = []
    for kind in ("sharp", "blurry"):
        (root / f"{name}_{kind}").mkdir(parents=True)
    for i in range(n):
        sharp = np.ascontiguousarray(PHOTO[100 + shift:100 + shift + H, 50 + 3 * i:50 + 3 * i + W])
        blurry = cv2.blur(sharp, (7, 1))
        for kind, img in (("sharp", sharp), ("blurry", blurry)):
            cv2.imwrite(str(root / f"{name}_{kind}" / f"{i:06d}.png"),
                        cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        frames.append((blurry, sharp))
    return frames


@pytest.fixture
def clips(tmp_path):
    src = tmp_path / "src"
    frames = {"cam.v2": make_clip(src, "cam.v2", 4), "pan": make_clip(src, "pan", 6, 40)}
    return {c.name: c for c in find_clips([src])}, frames


def test_basicsr_layout_bytes_and_pairing(tmp_path, clips):
    by_name, frames = clips
    runs = [Run(by_name["cam.v2"], 0, 4), Run(by_name["pan"], 1, 4)]
    out = tmp_path / "basicsr"
    res = write_basicsr_lmdb(runs, out, workers=2, batch=3)
    assert res["sequences"] == ["cam_v2", "pan_000001"] and res["frames"] == 7
    keys = [f"cam_v2/{i:08d}" for i in range(4)] + [f"pan_000001/{i:08d}" for i in range(3)]
    for side in ("blur.lmdb", "sharp.lmdb"):
        lines = (out / side / "meta_info.txt").read_text().splitlines()
        assert lines == [f"{k}.png (32,48,3) 1" for k in keys]
        assert {(out / side / f).is_file() for f in ("data.mdb", "lock.mdb")} == {True}
    # BasicSR's paired_paths_from_lmdb: keys are line.split('.')[0]; both sets equal.
    lq, gt = ([line.split(".")[0] for line in open(out / s / "meta_info.txt")]
              for s in ("blur.lmdb", "sharp.lmdb"))
    assert set(lq) == set(gt) == set(keys)
    stored = kv(out / "blur.lmdb")
    assert set(stored) == {k.encode() for k in keys}
    b0, _ = frames["cam.v2"][0]
    # make_lmdb_from_imgs: cv2.imencode('.png', BGR image, [IMWRITE_PNG_COMPRESSION, 1])
    assert stored[b"cam_v2/00000000"] == cv2.imencode(
        ".png", cv2.cvtColor(b0, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
    want = {f"cam_v2/{i:08d}": frames["cam.v2"][i] for i in range(4)}
    want |= {f"pan_000001/{i:08d}": frames["pan"][i + 1] for i in range(3)}
    got = list(read_basicsr_lmdb(out))
    assert [k for k, _, _ in got] == sorted(keys)
    for k, b, s in got:
        np.testing.assert_array_equal(b, want[k][0])
        np.testing.assert_array_equal(s, want[k][1])
    # REDS-style video loaders: "name n (h,w,c)" per line, keys name/00000000 .. n-1
    assert (out / "meta_info_clips.txt").read_text() == "cam_v2 4 (32,48,3)\npan_000001 3 (32,48,3)\n"
    reds = [f"{n}/{i:08d}" for n, count, _ in read_basicsr_clips(out) for i in range(count)]
    assert reds == keys


def test_basicsr_refuses_clashing_names_and_leaves_nothing(tmp_path, clips):
    by_name, _ = clips
    out = tmp_path / "basicsr"
    with pytest.raises(ParameterError, match="'pan_000001' is already used"):
        write_basicsr_lmdb([Run(by_name["pan"], 1, 3), Run(by_name["pan"], 1, 4)], out)
    assert not out.exists() and os.listdir(tmp_path) == ["src"]


def test_basicsr_existing_output(tmp_path, clips):
    by_name, _ = clips
    out = tmp_path / "basicsr"
    write_basicsr_lmdb([Run(by_name["pan"], 0, 6)], out)
    with pytest.raises(OutputError, match="already exists"):
        write_basicsr_lmdb([Run(by_name["pan"], 0, 2)], out)
    res = write_basicsr_lmdb([Run(by_name["pan"], 0, 2)], out, overwrite=True)
    assert res["frames"] == 2 and len(list(read_basicsr_lmdb(out))) == 2
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"x")
    with pytest.raises(OutputError, match="not a BasicSR LMDB folder"):
        write_basicsr_lmdb([Run(by_name["pan"], 0, 2)], tmp_path / "photos", overwrite=True)


def test_basicsr_reader_applies_the_pairing_rule(tmp_path, clips):
    by_name, _ = clips
    out = tmp_path / "basicsr"
    write_basicsr_lmdb([Run(by_name["pan"], 0, 3)], out)
    with open(out / "sharp.lmdb" / "meta_info.txt", "a") as f:
        f.write("pan/00000009.png (32,48,3) 1\n")
    with pytest.raises(InputFileError, match="keys of blur.lmdb and sharp.lmdb differ"):
        list(read_basicsr_lmdb(out))
