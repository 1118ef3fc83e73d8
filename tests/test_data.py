"""The training readers: NumPy iterator and torch Dataset over the native LMDB."""
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from skimage import data
from torch.utils.data import DataLoader

from blursynth.data import NativeLmdbDataset, iter_native_lmdb, to_tensor
from blursynth.errors import ParameterError
from blursynth.formats.native_lmdb import write_native_lmdb
from blursynth.sampling import Sample

PHOTO = data.coffee()  # 400x600 RGB


def burst(i: int, t: int = 3, h: int = 24, w: int = 32, ref: int = 1) -> Sample:
    y, x = (i * 29) % 360, (i * 41) % 560
    blurry = np.stack([PHOTO[y + k:y + k + h, x:x + w] for k in range(t)])
    sharp = np.stack([PHOTO[y:y + h, x + k:x + k + w] for k in range(t)])
    return Sample(f"c/{i:06d}/{y}_{x}", blurry, sharp, ref, {"crf": "srgb"})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """12 samples in shards of 5 (three environments), PNG."""
    out = tmp_path_factory.mktemp("data") / "d.lmdb"
    samples = [burst(i) for i in range(12)]
    write_native_lmdb(samples, out, shard_size=5)
    return out, {s.id: s for s in samples}, [s.id for s in samples]


def test_numpy_iterator_returns_what_was_written(dataset):
    out, by_id, order = dataset
    got = list(iter_native_lmdb(out))
    assert [s.id for s in got] == order
    for s in got:
        np.testing.assert_array_equal(s.blurry, by_id[s.id].blurry)
        np.testing.assert_array_equal(s.sharp, by_id[s.id].sharp)
        assert s.ref == 1 and s.meta == {"crf": "srgb"}
    shuffled = [s.id for s in iter_native_lmdb(out, shuffle=True, seed=3)]
    assert sorted(shuffled) == sorted(order) and shuffled != order
    assert shuffled == [s.id for s in iter_native_lmdb(out, shuffle=True, seed=3)]
    assert shuffled != [s.id for s in iter_native_lmdb(out, shuffle=True, seed=4)]


def test_dataset_item_layout_and_range(dataset):
    out, by_id, order = dataset
    ds = NativeLmdbDataset(out)
    assert len(ds) == 12
    item = ds[7]
    s = by_id[order[7]]
    assert item["id"] == s.id and item["ref"] == 1 and item["index"] == 7
    assert item["blurry"].shape == (3, 3, 24, 32) and item["blurry"].dtype == torch.float32
    # value / 255 of the stored 8-bit values, channels first: computed here in NumPy
    want = s.sharp.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(item["sharp"].numpy(), want)
    assert float(item["blurry"].max()) <= 1.0 and float(item["blurry"].min()) >= 0.0


def test_dataset_selected_frames(dataset):
    out, by_id, order = dataset
    item = NativeLmdbDataset(out, frames=[1, 2])[0]
    assert item["ref"] == 0
    np.testing.assert_array_equal(item["blurry"].numpy(), to_tensor(by_id[order[0]].blurry[1:]).numpy())
    with pytest.raises(ParameterError, match="reference frame 1"):
        NativeLmdbDataset(out, frames=[0, 2])[0]


def test_dataloader_with_two_workers_returns_exactly_the_samples(dataset):
    out, by_id, _ = dataset
    ds = NativeLmdbDataset(out)
    ds[0]  # environments now open in the parent: each worker must open its own
    seen = {}
    for batch in DataLoader(ds, batch_size=5, shuffle=True, num_workers=2,
                            generator=torch.Generator().manual_seed(0)):
        for j, sid in enumerate(batch["id"]):
            assert sid not in seen
            seen[sid] = (batch["blurry"][j].numpy(), batch["sharp"][j].numpy(), int(batch["ref"][j]))
    assert set(seen) == set(by_id)
    for sid, (b, s, ref) in seen.items():
        np.testing.assert_array_equal(b, to_tensor(by_id[sid].blurry).numpy())
        np.testing.assert_array_equal(s, to_tensor(by_id[sid].sharp).numpy())
        assert ref == 1


def test_dataset_pickles_without_open_environments(dataset):
    out, by_id, order = dataset
    ds = NativeLmdbDataset(out)
    ds[3]
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[3]["blurry"].numpy(), ds[3]["blurry"].numpy())


def test_numpy_readers_work_without_torch(dataset):
    out, _, order = dataset
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # import torch now raises ImportError
        from blursynth.data import NativeLmdbDataset, iter_native_lmdb
        print(",".join(s.id for s in iter_native_lmdb({str(out)!r})))
        try:
            NativeLmdbDataset({str(out)!r})
        except ImportError as e:
            print(e)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    ids, message = res.stdout.splitlines()
    assert ids.split(",") == order
    assert "pip install 'blursynth[train]'" in message
