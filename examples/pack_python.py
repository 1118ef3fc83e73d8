"""From a video to a training batch: flowblur, pack into an LMDB and a GOPRO tree, read back.

Run: .venv/bin/python examples/pack_python.py [OUT_DIR]   (needs the train extra: torch)
"""
import sys
from pathlib import Path

from torch.utils.data import DataLoader

from blursynth.data import LayoutDataset, NativeLmdbDataset
from blursynth.flowblur_video import flowblur_video
from blursynth.formats.check import check_layout
from blursynth.pack import pack
from blursynth.sampling import SampleParams
from blursynth.scenes import make_scene
from blursynth.video import write_video

out = Path(sys.argv[1] if len(sys.argv) > 1 else "example_out")
out.mkdir(parents=True, exist_ok=True)

# A clip with known motion (two objects crossing over a panning photo), blurred by flowblur.
write_video(out / "scene.mp4", make_scene("occlusion", (288, 384), 6.0).frames(24), fps=30)
flowblur_video(out / "scene.mp4", out / "clips")

# Bursts of 5 frames sharing a random 128x128 crop, target in the middle, filtered.
params = SampleParams(frames=5, patch=(128, 128), patches=4)
result = pack([out / "clips"], out / "train.lmdb", params=params, seed=0)
print(f"native LMDB: {result['written']} samples; filters: {dict(result['report'])}")

# The same clips as DeepDeblur's GOPRO_Large tree, checked against its loader's rules.
pack([out / "clips"], out / "GOPRO_Large", fmt="gopro", params=params)
problems = check_layout("gopro", out / "GOPRO_Large")
print("GOPRO_Large:", "no problems" if not problems else "\n".join(map(str, problems)))

# Training batches: (B, T, 3, H, W) floats in [0, 1] (encoded values / 255) and the target.
batch = next(iter(DataLoader(NativeLmdbDataset(out / "train.lmdb"), batch_size=4,
                             shuffle=True, num_workers=2)))
print("LMDB batch:", tuple(batch["blurry"].shape), "targets", batch["ref"].tolist())
pairs = LayoutDataset(out / "GOPRO_Large", "gopro", frames=1)
print(f"GOPRO pairs: {len(pairs)}, first {tuple(pairs[0]['blurry'].shape)}")
