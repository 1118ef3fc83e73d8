"""Compute kernels for blursynth: NumPy references, numba CPU and numba CUDA, one dispatch."""
import os

# numba's OpenMP threads otherwise spin for a while after every parallel kernel, on cores that
# the flow, the video encoders and the next kernel need: on 2 cores, passive waiting saves
# ~30 ms of CPU per 720p flowblur frame. libgomp reads this once, when numba first loads it;
# a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
