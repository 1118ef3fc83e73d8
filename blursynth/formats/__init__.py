"""Dataset formats: the native LMDB, the compatibility LMDBs, and each trainer's folder layout.

Each module writes one format byte-for-byte as its consumer reads it, reads it back, and (for
folder layouts) states the consumer's pairing rule so tests and ``blursynth check`` can apply it.
"""
