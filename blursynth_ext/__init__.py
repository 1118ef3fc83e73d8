"""Compute kernels for blursynth: NumPy references, numba CPU and numba CUDA, one dispatch."""
