"""Flow-based blur from Python: make a clip with known motion, blur it, compare with the truth.

Run: .venv/bin/python examples/flowblur_python.py [OUT_DIR]
"""
import sys
from pathlib import Path

import numpy as np

from blursynth.crf import encode_u8, get_crf
from blursynth.flowblur import FlowBlurParams, flowblur_array
from blursynth.flow_video import pair_flows_video
from blursynth.flowblur_video import flowblur_video
from blursynth.scenes import make_scene
from blursynth.video import write_video

out = Path(sys.argv[1] if len(sys.argv) > 1 else "example_out")
out.mkdir(parents=True, exist_ok=True)

# A camera rotating and zooming over real photos, 6 px/frame at the corners.
scene = make_scene("rotation_zoom", size=(240, 320), speed=6.0)
frames = scene.frames(8)                                  # uint8 RGB, sRGB-encoded

# In memory: arrays in, arrays out.
params = FlowBlurParams(exposure=1.0, crf="srgb")
blurry, sharp, windows = flowblur_array(frames, params)
for b, w in zip(blurry, windows):
    truth = encode_u8(scene.blur(w.centre, params.exposure), get_crf("srgb"))
    mse = np.mean((b.astype(float) - truth) ** 2)
    print(f"frame {w.centre}: exposure [{w.t0}, {w.t1}], PSNR vs true blur "
          f"{10 * np.log10(255 ** 2 / mse):.1f} dB")

# Through files, as the command line does: lossless videos, a manifest, resumable.
write_video(out / "rotation.mp4", frames, fps=30)
record = flowblur_video(out / "rotation.mp4", out, params, flow_files="npy")
print("wrote", ", ".join(record["outputs"]), "and", out / "flowblur.jsonl")

# The flow once, the blur twice: pair-flow files (blursynth flow) that flowblur reads back.
pair_flows_video(out / "rotation.mp4", out / "flows")
for e in (0.5, 2.0):
    record = flowblur_video(out / "rotation.mp4", out / f"exposure{e:g}",
                            FlowBlurParams(exposure=e), flows=out / "flows" / "{name}")
    print(f"exposure {e:g}: {record['frames_out']} frames, flow from", record["params"]["flows"])
