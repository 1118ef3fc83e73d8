"""The native LMDB: round trips, schema, map growth, interruption, resume, shards, write errors."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import cv2
import lmdb
import msgpack
import numpy as np
import pytest
from PIL import Image
from skimage import data

from blursynth.errors import InputFileError, OutputError, ParameterError
from blursynth.formats.lmdb_io import put_all
from blursynth.formats.native_lmdb import (
    ID_PREFIX, META_KEY, NativeLmdbReader, NativeLmdbWriter, decode_record, encode_sample,
    shard_path, write_native_lmdb,
)
from blursynth.sampling import Sample

PHOTO = data.astronaut()  # 512x512 RGB


def burst(i: int, t: int = 3, h: int = 32, w: int = 48, ref: int | None = None,
          crf: str = "srgb") -> Sample:
    """Sample i: real pixels, a crop that moves one pixel per frame (blurry: down, sharp: right)."""
    y, x = (i * 37) % (512 - h - t), (i * 53) % (512 - w - t)
    blurry = np.stack([PHOTO[y + k:y + k + h, x:x + w] for k in range(t)])
    sharp = np.stack([PHOTO[y:y + h, x + k:x + k + w] for k in range(t)])
    return Sample(f"clip/{i:06d}/{y}_{x}", blurry, sharp, t // 2 if ref is None else ref,
                  {"crf": crf, "frames": list(range(i, i + t)), "crop": [y, x, h, w]})


def assert_same(got: Sample, want: Sample) -> None:
    assert got.id == want.id and got.ref == want.ref and got.meta == want.meta
    np.testing.assert_array_equal(got.blurry, want.blurry)
    np.testing.assert_array_equal(got.sharp, want.sharp)


def all_records(path) -> dict:
    """Every key/value of one environment, read with plain lmdb."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        out = dict(txn.cursor())
    env.close()
    return out


# -- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_lossless_round_trip_is_bit_exact(tmp_path, encoding):
    samples = [burst(0), burst(1, t=5, h=20, w=24, ref=4), burst(2, t=1, ref=0)]
    out = tmp_path / "a.lmdb"
    w = write_native_lmdb(samples, out, encoding=encoding, workers=2)
    assert (w.count, w.written, w.skipped) == (3, 3, 0)
    r = NativeLmdbReader(out)
    assert len(r) == 3 and r.ids() == [s.id for s in samples]
    for i, s in enumerate(samples):
        assert_same(r[i], s)
    assert_same(r[-1], samples[-1])


def test_png_frames_are_standard_rgb_files(tmp_path):
    s = burst(3)
    write_native_lmdb([s], tmp_path / "a.lmdb")
    rec = msgpack.unpackb(all_records(tmp_path / "a.lmdb")[b"00000000"], raw=False)
    # PIL (not OpenCV) reads the stored bytes as an ordinary PNG with the right colours.
    for k in range(3):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(rec["blurry"][k]))),
                                      s.blurry[k])


def test_raw_frames_are_c_order_bytes(tmp_path):
    s = burst(4)
    write_native_lmdb([s], tmp_path / "a.lmdb", encoding="raw")
    rec = msgpack.unpackb(all_records(tmp_path / "a.lmdb")[b"00000000"], raw=False)
    assert rec["sharp"] == [f.tobytes() for f in s.sharp]


@pytest.mark.parametrize("t,h,w", [(1, 1, 1), (2, 5, 7), (3, 40, 50), (2, 150, 150)])
def test_raw_record_is_what_msgpack_writes(t, h, w):
    # Frames of 3, 105, 6000 and 67500 bytes: msgpack's bin8, bin16 and bin32 headers.
    # Known answer: msgpack's own packing of the whole record, frames as bytes. The
    # frames are strided views (every other column of a wider crop), as crops are.
    rng = np.random.default_rng(t * h * w)
    wide = rng.integers(0, 256, (2, t, h, 2 * w, 3), dtype=np.uint8)
    s = Sample("clip/000001/0_0", wide[0][:, :, ::2], wide[1][:, :, ::2], t - 1,
               {"crf": "srgb", "crop": [0, 0, h, w], "x": 0.5})
    want = msgpack.packb({"id": s.id, "encoding": "raw", "shape": [t, h, w, 3], "ref": t - 1,
                          "meta": s.meta, "blurry": [f.tobytes() for f in s.blurry],
                          "sharp": [f.tobytes() for f in s.sharp]}, use_bin_type=True)
    assert encode_sample(s, "raw") == want


def test_raw_records_built_in_one_scratch_buffer_read_back_exactly(tmp_path):
    # 20 different bursts of different sizes through batches of 3: the writer builds each raw
    # record in the same buffer right before its put; a record put from a buffer that the next
    # one overwrote (or that kept a longer record's tail) would read back wrong.
    samples = [burst(i, t=2 + i % 3, h=16 + i % 5, w=24) for i in range(20)]
    w = write_native_lmdb(samples, tmp_path / "a.lmdb", encoding="raw", batch=3)
    assert w.written == 20
    r = NativeLmdbReader(tmp_path / "a.lmdb")
    for i, s in enumerate(samples):
        assert_same(r[i], s)


def test_jpeg_round_trip_is_the_decoded_jpeg(tmp_path):
    s = burst(5, h=64, w=64)
    write_native_lmdb([s], tmp_path / "a.lmdb", encoding="jpeg", quality=80)
    got = NativeLmdbReader(tmp_path / "a.lmdb")[0]
    rec = msgpack.unpackb(all_records(tmp_path / "a.lmdb")[b"00000000"], raw=False)
    for k in range(3):
        # Known answer: the standard RGB JPEG of the frame at quality 80, decoded.
        ok, enc = cv2.imencode(".jpg", cv2.cvtColor(s.blurry[k], cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 80])
        want = cv2.cvtColor(cv2.imdecode(enc, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(got.blurry[k], want)
        # ... and PIL sees the same colours (channels not swapped): close to the input.
        pil = np.asarray(Image.open(io.BytesIO(rec["blurry"][k]))).astype(float)
        assert np.abs(pil - s.blurry[k]).mean() < 4
        assert np.abs(pil - s.blurry[k][..., ::-1]).mean() > 10


# -- the schema --------------------------------------------------------------------------


def test_record_meta_and_id_keys_follow_the_schema(tmp_path):
    samples = [burst(0), burst(1, t=5, ref=4, crf="gamma:2.2"), burst(2)]
    write_native_lmdb(samples, tmp_path / "a.lmdb", encoding="raw", meta={"seed": 7})
    kv = all_records(tmp_path / "a.lmdb")
    assert sorted(kv) == sorted([b"00000000", b"00000001", b"00000002", META_KEY]
                                + [ID_PREFIX + s.id.encode() for s in samples])
    rec = msgpack.unpackb(kv[b"00000001"], raw=False)
    assert list(rec) == ["id", "encoding", "shape", "ref", "meta", "blurry", "sharp"]
    assert rec["id"] == samples[1].id and rec["encoding"] == "raw"
    assert rec["shape"] == [5, 32, 48, 3] and rec["ref"] == 4
    assert rec["meta"] == samples[1].meta
    assert [kv[ID_PREFIX + s.id.encode()] for s in samples] == [b"0", b"1", b"2"]
    meta = msgpack.unpackb(kv[META_KEY], raw=False)
    assert meta["schema"] == "blursynth-native" and meta["version"] == 1
    assert (meta["count"], meta["first"], meta["shard"], meta["shard_size"]) == (3, 0, None, None)
    assert meta["shapes"] == [[3, 32, 48, 3], [5, 32, 48, 3]]
    assert meta["crfs"] == ["gamma:2.2", "srgb"] and meta["refs"] == [1, 4]
    assert meta["encoding"] == "raw" and meta["meta"] == {"seed": 7}
    assert meta["created"].endswith("+00:00") and meta["blursynth_version"]


def test_empty_writer_leaves_a_valid_empty_dataset(tmp_path):
    with NativeLmdbWriter(tmp_path / "a.lmdb"):
        pass
    r = NativeLmdbReader(tmp_path / "a.lmdb")
    assert len(r) == 0 and r.meta["count"] == 0 and r.ids() == []


def test_add_encoded_writes_the_same_records_as_add(tmp_path):
    samples = [burst(i) for i in range(5)]
    write_native_lmdb(samples, tmp_path / "a.lmdb")
    with NativeLmdbWriter(tmp_path / "b.lmdb") as w:
        assert all(w.add_encoded(encode_sample(s)) for s in samples)
        assert w.add_encoded(encode_sample(samples[0])) is False
        with pytest.raises(InputFileError, match="not a blursynth native record"):
            w.add_encoded(msgpack.packb([1, 2], use_bin_type=True))
    a, b = NativeLmdbReader(tmp_path / "a.lmdb"), NativeLmdbReader(tmp_path / "b.lmdb")
    assert [a.raw(i) for i in range(5)] == [b.raw(i) for i in range(5)]
    assert b.meta["shapes"] == [[3, 32, 48, 3]] and b.meta["crfs"] == ["srgb"]
    with NativeLmdbWriter(tmp_path / "c.lmdb", encoding="raw") as w, \
            pytest.raises(ParameterError, match="encoding 'png'"):
        w.add_encoded(encode_sample(samples[0]))


def test_decode_selected_frames_remaps_ref():
    s = burst(0, t=5, ref=2)
    got = decode_record(encode_sample(s), frames=[2, -1])
    np.testing.assert_array_equal(got.blurry, s.blurry[[2, 4]])
    assert got.ref == 0
    with pytest.raises(ParameterError, match="leaves out the reference frame 2"):
        decode_record(encode_sample(s), frames=[0, 1])
    with pytest.raises(ParameterError, match="frames"):
        decode_record(encode_sample(s), frames=[5])
    with pytest.raises(InputFileError, match="not a blursynth native record"):
        decode_record(b"\x93\x01\x02\x03")


@pytest.mark.parametrize("bad, match", [
    (dict(blurry=np.zeros((2, 8, 8, 3), np.float32)), "uint8"),
    (dict(sharp=np.zeros((2, 8, 9, 3), np.uint8)), "same shape"),
    (dict(ref=2), "ref"),
    (dict(id=""), "sample id"),
])
def test_invalid_samples_are_refused_before_writing(tmp_path, bad, match):
    z = np.zeros((2, 8, 8, 3), np.uint8)
    kw = dict(id="x", blurry=z, sharp=z, ref=0, meta={}) | bad
    with NativeLmdbWriter(tmp_path / "a.lmdb") as w:
        with pytest.raises(ParameterError, match=match):
            w.add(Sample(**kw))
    assert len(NativeLmdbReader(tmp_path / "a.lmdb")) == 0


def test_invalid_options(tmp_path):
    for kw, match in [({"encoding": "webp"}, "encoding"), ({"quality": 101}, "quality"),
                      ({"shard_size": 0}, "shard_size"), ({"batch": 0}, "batch")]:
        with pytest.raises(ParameterError, match=match):
            NativeLmdbWriter(tmp_path / "a.lmdb", **kw)
    assert not (tmp_path / "a.lmdb").exists()


# -- map growth, interruption, resume ----------------------------------------------------


def test_map_grows_from_a_tiny_map(tmp_path):
    samples = [burst(i) for i in range(120)]  # 120 x 27.6 kB raw: about 50 times the map
    w = write_native_lmdb(samples, tmp_path / "a.lmdb", encoding="raw", map_size=64 << 10,
                          batch=16)
    assert w.count == 120
    r = NativeLmdbReader(tmp_path / "a.lmdb")
    assert r.ids() == [s.id for s in samples]
    for i in (0, 57, 119):
        assert_same(r[i], samples[i])
    assert (tmp_path / "a.lmdb" / "data.mdb").stat().st_size > 3 << 20


def test_map_full_from_many_small_items_is_retried_after_growth(tmp_path):
    # 5000 items of 9 bytes (45 kB) fit the 64 KiB map by their size, not with the B-tree's
    # per-entry overhead: LMDB reports the map full and put_all doubles it and retries.
    env = lmdb.open(str(tmp_path / "db"), map_size=64 << 10)
    items = [(b"%08d" % i, b"x") for i in range(5000)]
    put_all(env, items, tmp_path / "db")
    assert env.info()["map_size"] > 64 << 10
    with env.begin() as txn:
        assert dict(txn.cursor()) == dict(items)
    env.close()


def test_a_batch_retried_after_map_growth_is_built_again(tmp_path):
    # Values built into one shared buffer at their put, as raw records are: when the map fills
    # mid-batch the transaction is retried, and every value must be built again, not taken
    # from the buffer's last contents.
    env = lmdb.open(str(tmp_path / "db"), map_size=64 << 10)
    scratch = bytearray(8)

    def build(i: int) -> memoryview:
        scratch[:] = b"%08d" % (7 * i)
        return memoryview(scratch)

    class Item(int):
        def __len__(self) -> int:
            return 1  # understated, so the map is not grown ahead and fills mid-batch

    put_all(env, [(b"%08d" % i, Item(i)) for i in range(4000)], tmp_path / "db", build=build)
    assert env.info()["map_size"] > 64 << 10
    with env.begin() as txn:
        assert dict(txn.cursor()) == {b"%08d" % i: b"%08d" % (7 * i) for i in range(4000)}
    env.close()


def test_ctrl_c_commits_the_encoded_records(tmp_path):
    samples = [burst(i) for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        with NativeLmdbWriter(tmp_path / "a.lmdb", batch=64, workers=2) as w:
            for s in samples:
                w.add(s)
            raise KeyboardInterrupt
    r = NativeLmdbReader(tmp_path / "a.lmdb")
    assert len(r) == 10
    for i in range(10):
        assert_same(r[i], samples[i])


def test_failed_encoding_commits_the_prefix_only(tmp_path):
    samples = [burst(i) for i in range(12)]
    samples[5].meta["bad"] = object()  # not JSON-able: its encoding fails in a worker
    with pytest.raises(ParameterError, match=f"sample {samples[5].id}: meta"):
        with NativeLmdbWriter(tmp_path / "a.lmdb", batch=64, workers=2) as w:
            for s in samples:
                w.add(s)
    assert NativeLmdbReader(tmp_path / "a.lmdb").ids() == [s.id for s in samples[:5]]
    del samples[5].meta["bad"]
    w = write_native_lmdb(samples, tmp_path / "a.lmdb", batch=64)
    assert (w.written, w.skipped) == (7, 5)
    assert NativeLmdbReader(tmp_path / "a.lmdb").ids() == [s.id for s in samples]


_CHILD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("t", {test!r})
t = importlib.util.module_from_spec(spec); spec.loader.exec_module(t)
from blursynth.formats.native_lmdb import NativeLmdbWriter
with NativeLmdbWriter({out!r}, batch=4, workers=2, encoding="png") as w:
    for i in range({n}):
        w.add(t.small(i))
        print("added", i, flush=True)
        time.sleep(0.002)
"""


def small(i: int) -> Sample:
    """Tiny deterministic samples for the kill test (imported by the child process)."""
    return burst(i, t=2, h=12, w=16)


def test_kill_9_mid_write_then_resume_equals_an_uninterrupted_run(tmp_path):
    n = 600
    out = tmp_path / "killed.lmdb"
    code = textwrap.dedent(_CHILD.format(test=__file__, out=str(out), n=n))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if int(line.split()[1]) >= 150:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    partial = NativeLmdbReader(out)
    committed = len(partial)
    assert 0 < committed < n and committed % 4 == 0  # whole batches, mid-run
    assert partial.ids() == [small(i).id for i in range(committed)]
    partial.close()

    w = write_native_lmdb((small(i) for i in range(n)), out, batch=4)
    assert (w.written, w.skipped, w.count) == (n - committed, committed, n)
    ref = write_native_lmdb((small(i) for i in range(n)), tmp_path / "whole.lmdb", batch=4)
    assert ref.count == n
    a, b = NativeLmdbReader(out), NativeLmdbReader(tmp_path / "whole.lmdb")
    assert a.ids() == b.ids() == [small(i).id for i in range(n)]
    assert all(a.raw(i) == b.raw(i) for i in range(n))


def test_flush_commits_what_was_added(tmp_path):
    out = tmp_path / "a.lmdb"
    probe = ("import sys; from blursynth.formats.native_lmdb import NativeLmdbReader; "
             "print(NativeLmdbReader(sys.argv[1]).ids())")
    with NativeLmdbWriter(out, batch=64, workers=2) as w:
        for i in range(3):
            w.add(burst(i))
        w.flush()
        assert (w.count, w.written) == (3, 3)
        # another process sees them while the writer is still open
        res = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True,
                             text=True, timeout=60)
        assert res.stdout.strip() == repr([burst(i).id for i in range(3)]), res.stderr
        w.add(burst(3))
    assert NativeLmdbReader(out).ids() == [burst(i).id for i in range(4)]


def test_existing_output_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "a.lmdb"
    write_native_lmdb([burst(0), burst(1)], out)
    with pytest.raises(OutputError, match="already exists"):
        NativeLmdbWriter(out, resume=False)
    w = write_native_lmdb([burst(2)], out, resume=False, overwrite=True)
    assert NativeLmdbReader(out).ids() == [burst(2).id] and w.count == 1


def test_resume_refuses_other_options(tmp_path):
    out = tmp_path / "a.lmdb"
    write_native_lmdb([burst(0)], out, encoding="jpeg", meta={"seed": 1})
    with pytest.raises(ParameterError, match="encoding='jpeg'"):
        NativeLmdbWriter(out)
    with pytest.raises(ParameterError, match="meta"):
        NativeLmdbWriter(out, encoding="jpeg", meta={"seed": 2})
    with pytest.raises(ParameterError, match="shard_size"):
        NativeLmdbWriter(out, encoding="jpeg", meta={"seed": 1}, shard_size=5)
    assert len(NativeLmdbReader(out)) == 1


def test_refuses_a_foreign_lmdb_or_folder(tmp_path):
    env = lmdb.open(str(tmp_path / "other.lmdb"))
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(InputFileError, match="not a blursynth native LMDB"):
        NativeLmdbWriter(tmp_path / "other.lmdb")
    with pytest.raises(InputFileError, match="not a blursynth native LMDB"):
        NativeLmdbReader(tmp_path / "other.lmdb")
    (tmp_path / "photos").mkdir()
    with pytest.raises(OutputError, match="not an LMDB directory"):
        NativeLmdbWriter(tmp_path / "photos", overwrite=True)
    with pytest.raises(InputFileError, match="no such LMDB"):
        NativeLmdbReader(tmp_path / "missing.lmdb")


# -- shards ------------------------------------------------------------------------------


def test_shard_boundaries_and_resume_across_them(tmp_path):
    out = tmp_path / "s.lmdb"
    samples = [burst(i) for i in range(11)]
    write_native_lmdb(samples[:7], out, shard_size=3, batch=2)
    assert not out.exists()
    shards = [shard_path(out, k) for k in range(3)]
    assert [p.name for p in shards] == ["s-00000.lmdb", "s-00001.lmdb", "s-00002.lmdb"]
    metas = [msgpack.unpackb(all_records(p)[META_KEY], raw=False) for p in shards]
    assert [(m["shard"], m["first"], m["count"], m["shard_size"]) for m in metas] == \
        [(0, 0, 3, 3), (1, 3, 3, 3), (2, 6, 1, 3)]
    for k, p in enumerate(shards):  # each shard is a dataset on its own
        with NativeLmdbReader(p) as alone:
            assert alone.ids() == [s.id for s in samples[:7][3 * k:3 * k + 3]]
            assert_same(alone[0], samples[3 * k])
    w = write_native_lmdb(samples, out, shard_size=3, batch=2)
    assert (w.written, w.skipped) == (4, 7)
    r = NativeLmdbReader(out)
    assert len(r.paths) == 4 and r.meta["count"] == 11 and r.meta["shards"] == 4
    assert r.ids() == [s.id for s in samples]
    for i in range(11):
        assert_same(r[i], samples[i])
    by_list = NativeLmdbReader([shard_path(out, k) for k in range(4)])
    assert by_list.ids() == r.ids()
    with pytest.raises(ParameterError, match="sharded"):
        NativeLmdbWriter(out)


def test_missing_shard_is_reported(tmp_path):
    out = tmp_path / "s.lmdb"
    write_native_lmdb([burst(i) for i in range(5)], out, shard_size=2)
    shutil.rmtree(shard_path(out, 1))
    with pytest.raises(InputFileError, match="s-00001.lmdb: missing"):
        NativeLmdbReader(out)


# -- write errors ------------------------------------------------------------------------


def test_output_below_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="a parent path is a file") as e:
        NativeLmdbWriter(tmp_path / "file" / "out.lmdb")
    assert e.value.path == str(tmp_path / "file" / "out.lmdb")


_FULL = """
import importlib.util, json, resource, signal, sys
spec = importlib.util.spec_from_file_location("t", {test!r})
t = importlib.util.module_from_spec(spec); spec.loader.exec_module(t)
from blursynth.errors import OutputError
from blursynth.formats.native_lmdb import NativeLmdbWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
w = NativeLmdbWriter({out!r}, encoding="raw", shard_size=4, batch=2)
try:
    if {use_with}:
        with w:
            for i in range(12):  # shard 0: four tiny samples; then 200 kB samples
                w.add(t.burst(i, t=1, h=8, w=8) if i < 4 else t.burst(i, t=2, h=128, w=128))
    else:  # blursynth.pack's pattern
        try:
            for i in range(12):
                w.add(t.burst(i, t=1, h=8, w=8) if i < 4 else t.burst(i, t=2, h=128, w=128))
        finally:
            w.close()
except OutputError as e:
    print(json.dumps({{"path": e.path, "message": str(e)}}))
    sys.exit(3)
"""


@pytest.mark.parametrize("use_with", [True, False])
def test_full_disk_gives_a_clear_error_and_keeps_earlier_shards(tmp_path, use_with):
    out = tmp_path / "s.lmdb"
    code = textwrap.dedent(_FULL.format(test=__file__, out=str(out), limit=256 << 10,
                                        use_with=use_with))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 3, res.stderr
    err = json.loads(res.stdout)
    assert err["path"] == str(shard_path(out, 1))
    assert "ulimit -f" in err["message"] and str(256 << 10) in err["message"]
    first = NativeLmdbReader(shard_path(out, 0))
    assert len(first) == 4
    for i in range(4):
        assert_same(first[i], burst(i, t=1, h=8, w=8))
    whole = NativeLmdbReader(out)  # the failed shard is still consistent (nothing committed)
    assert whole.ids() == [burst(i).id for i in range(4)]


def test_a_forked_child_opens_its_own_environment(tmp_path):
    out = tmp_path / "a.lmdb"
    write_native_lmdb([burst(0)], out)
    reader = NativeLmdbReader(out)
    reader[0]
    inherited = reader._env(0)
    pid = os.fork()
    if pid == 0:  # child: read, then check that the parent's handle was closed here
        code = 1
        try:
            ok = NativeLmdbReader(out)[0].id == burst(0).id
            try:
                inherited.info()
                code = 2
            except lmdb.Error:
                code = 0 if ok else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert_same(reader[0], burst(0))  # the parent's handle still works
