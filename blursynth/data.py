"""Readers for training: torch Datasets and plain NumPy iterators over blursynth datasets.

Value range: frames come out as stored, 8-bit values encoded with the dataset's camera
response (``meta["crf"]``, usually sRGB), **not** linear light. NumPy readers give uint8
0-255; the torch Datasets give float32 ``value / 255`` in [0, 1]. Linearise with
:mod:`blursynth.crf` where a model wants linear light.

Layout: bursts are ``(T, H, W, 3)`` RGB in NumPy and ``(T, 3, H, W)`` (channels first, as
torch convolutions expect) in torch; ``ref`` is the index in ``0..T-1`` of the frame a
trainer restores.

Worker processes: every reader opens its LMDB environments lazily and again in each process
(it checks the process id), so a Dataset can be handed to a ``DataLoader`` with
``num_workers > 0`` even after it was used in the parent.

torch is optional: ``import blursynth.data`` and the NumPy iterators work without it; the
Datasets raise ImportError with the install hint.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from .clips import read_image
from .errors import ParameterError
from .formats.scan import scan_layout
from .formats.native_lmdb import NativeLmdbReader
from .sampling import Sample

try:
    import torch
    from torch.utils.data import Dataset as _Dataset
except ImportError:  # the NumPy readers need no torch
    torch = None
    _Dataset = object

__all__ = ["iter_native_lmdb", "NativeLmdbDataset", "LayoutBursts", "LayoutDataset", "to_tensor"]

PathLike = str | os.PathLike


def iter_native_lmdb(paths: PathLike | Iterable[PathLike], shuffle: bool = False,
                     seed: int = 0) -> Iterator[Sample]:
    """Iterate over the samples of native LMDBs as NumPy arrays.

    Parameters
    ----------
    paths : path or iterable of paths
        Native LMDB directories, or the unsharded name of a sharded dataset.
    shuffle : bool
        Visit the samples in a random order (a permutation drawn from `seed`).
    seed : int
        Seed of the permutation (``numpy.random.default_rng``).

    Yields
    ------
    Sample
        ``blurry``/``sharp`` ``(T, H, W, 3)`` uint8 RGB, 0-255 encoded values; ``ref``; ``meta``.

    Raises
    ------
    InputFileError
        A path is missing or not a native LMDB, or a record is corrupt.
    """
    with NativeLmdbReader(paths) as reader:
        order = np.random.default_rng(seed).permutation(len(reader)) if shuffle \
            else range(len(reader))
        for i in order:
            yield reader[int(i)]


def _require_torch() -> None:
    if torch is None:
        raise ImportError("the torch readers need PyTorch: pip install 'blursynth[train]'")


def to_tensor(frames: np.ndarray) -> "torch.Tensor":
    """``(T, H, W, 3)`` uint8 -> ``(T, 3, H, W)`` float32 ``value / 255`` in [0, 1]."""
    _require_torch()
    chw = np.ascontiguousarray(np.asarray(frames).transpose(0, 3, 1, 2))
    return torch.from_numpy(chw).to(torch.float32).div_(255.0)


class NativeLmdbDataset(_Dataset):
    """A map-style torch Dataset over native LMDBs.

    Parameters
    ----------
    paths : path or iterable of paths
        Native LMDB directories, or the unsharded name of a sharded dataset.
    frames : sequence of int, optional
        Burst indices to return, in order (negative ones count from the end); default all.
        Each sample's reference frame must be among them.

    Returns (``dataset[i]``)
    ------------------------
    dict
        ``"blurry"``, ``"sharp"``: ``(T, 3, H, W)`` float32, encoded value / 255 in [0, 1]
        (not linearised); ``"ref"``: int, index of the reference frame in the returned
        frames; ``"id"``: str, the sample id; ``"index"``: int, ``i``.

    Raises
    ------
    ImportError
        torch is not installed.
    InputFileError
        A path is missing or not a native LMDB (at construction), or a record is corrupt.

    Examples
    --------
    >>> from torch.utils.data import DataLoader                     # doctest: +SKIP
    >>> ds = NativeLmdbDataset("train.lmdb")                        # doctest: +SKIP
    >>> batch = next(iter(DataLoader(ds, batch_size=8, shuffle=True, num_workers=2)))
    ...                                                             # doctest: +SKIP
    >>> batch["blurry"].shape                                       # doctest: +SKIP
    torch.Size([8, 5, 3, 256, 256])
    """

    def __init__(self, paths: PathLike | Iterable[PathLike], *,
                 frames: Sequence[int] | None = None):
        _require_torch()
        self.reader = NativeLmdbReader(paths)
        self.frames = None if frames is None else [int(f) for f in frames]

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> dict:
        s = self.reader.get(i, frames=self.frames)
        return {"blurry": to_tensor(s.blurry), "sharp": to_tensor(s.sharp), "ref": s.ref,
                "id": s.id, "index": int(i) % len(self)}


class LayoutBursts:
    """Bursts of consecutive frames from a trainer folder layout, paired by its consumer's rule.

    Parameters
    ----------
    root : path
        The layout's root (as given to ``blursynth pack --layout NAME OUT``).
    layout : str
        A key of :data:`blursynth.formats.layouts.LAYOUTS`.
    split : str
        The split to read.
    frames : int
        Burst length T: consecutive frames of one video.
    ref : int, optional
        Reference index in the burst; default ``T // 2``.
    name : str, optional
        Dataset name inside the tree (dvd, afb; see :func:`~blursynth.formats.scan.scan_layout`).

    Notes
    -----
    ``bursts[i]`` is a :class:`~blursynth.sampling.Sample` with ``(T, H, W, 3)`` uint8 RGB.
    For ``afb`` the sharp frame is the middle one of the 7 sub-frames and
    ``meta["subframes"]`` holds all of them, ``(T, 7, H, W, 3)``.
    """

    def __init__(self, root: PathLike, layout: str, *, split: str = "train", frames: int = 1,
                 ref: int | None = None, name: str | None = None):
        if frames < 1:
            raise ParameterError(f"frames: expected >= 1, got {frames}")
        self.ref = frames // 2 if ref is None else int(ref)
        if not 0 <= self.ref < frames:
            raise ParameterError(f"ref: expected 0..{frames - 1}, got {ref}")
        self.frames = frames
        self.index: list[tuple[str, list]] = []
        for video, items in scan_layout(layout, root, split=split, name=name):
            for s in range(len(items) - frames + 1):
                self.index.append((video, items[s:s + frames]))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Sample:
        video, items = self.index[i]
        blurry = np.stack([read_image(it[0]) for it in items])
        if len(items[0]) > 2:  # afb: blur + 7 sharp sub-frames
            subs = np.stack([np.stack([read_image(p) for p in it[1:]]) for it in items])
            sharp, meta = subs[:, subs.shape[1] // 2], {"subframes": subs}
        else:
            sharp, meta = np.stack([read_image(it[1]) for it in items]), {}
        first = items[0][0]
        return Sample(id=f"{video}/{first.name}", blurry=blurry, sharp=sharp, ref=self.ref,
                      meta={"video": video, "files": [[str(p) for p in it] for it in items],
                            **meta})


class LayoutDataset(_Dataset):
    """A map-style torch Dataset over a trainer folder layout (see :class:`LayoutBursts`).

    Parameters are those of :class:`LayoutBursts`.

    Returns (``dataset[i]``)
    ------------------------
    dict
        ``"blurry"``, ``"sharp"``: ``(T, 3, H, W)`` float32, encoded value / 255 in [0, 1];
        ``"ref"``, ``"id"``, ``"index"`` as :class:`NativeLmdbDataset`; for ``afb`` also
        ``"subframes"``: ``(T, 7, 3, H, W)``.
    """

    def __init__(self, root: PathLike, layout: str, **kwargs):
        _require_torch()
        self.bursts = LayoutBursts(root, layout, **kwargs)

    def __len__(self) -> int:
        return len(self.bursts)

    def __getitem__(self, i: int) -> dict:
        s = self.bursts[i]
        out = {"blurry": to_tensor(s.blurry), "sharp": to_tensor(s.sharp), "ref": s.ref,
               "id": s.id, "index": int(i)}
        if "subframes" in s.meta:
            out["subframes"] = torch.stack([to_tensor(x) for x in s.meta["subframes"]])
        return out


# -- online camera shake ---------------------------------------------------------------------


class ShakeTransform:
    """Camera shake applied on the fly: to a NumPy :class:`~blursynth.sampling.Sample`, or to a
    torch sample or batch dict on the tensors' device.

    Parameters
    ----------
    params : blursynth.shake.ShakeParams, optional
        Kernel model or bank, sizes, per-frame or per-burst, border, CRF (default
        ``ShakeParams()``: ``gp`` kernels of 17, 21 or 25 px, one per frame, reflect borders).
    seed : int
        Run seed.
    epoch : int, optional
        None: an item gets the same kernels every time it is read, and exactly those the
        offline stage (``blursynth shake``, :func:`blursynth.shake_files.shake_lmdb`) gives it
        with the same seed. An int: fresh kernels per epoch (see :meth:`set_epoch`).

    Notes
    -----
    Item ``id`` at epoch ``e`` draws from ``item_rng(seed, key, "shake")`` with ``key = id``
    (epoch None) or ``f"{id}@epoch{e}"``: the result depends only on (seed, sample id, epoch),
    never on workers, batch composition or order.

    - ``transform(sample)``: a new Sample with shaken blurry frames and ``meta["shake"]`` (the
      kernel infos); the CRF is ``params.crf``, else ``sample.meta["crf"]``, else srgb. Use it
      inside a Dataset, e.g. over :class:`LayoutBursts` or :func:`iter_native_lmdb`.
    - ``transform(batch)``: a dict with ``"blurry"`` ``(B, T, 3, H, W)`` (or one sample's
      ``(T, 3, H, W)``) float encoded values in [0, 1], as :class:`NativeLmdbDataset` and a
      ``DataLoader`` give, and ``"id"`` (a str per item; else ``"index"``). Returns a new dict
      whose ``"blurry"`` is linearised with the CRF (``params.crf``, else srgb), convolved
      with :func:`blursynth.convolve.convolve_torch` on its device (a GPU batch stays on the
      GPU) and re-encoded on the 8-bit grid; with ``border="valid"`` ``"blurry"`` and
      ``"sharp"`` are cropped by the margin. Kernels are generated on the CPU (a bank,
      ``ShakeParams(bank=...)``, is the fastest source).

    set_epoch is called in the process that applies the transform: for the batch form that is
    the training loop; inside a Dataset with ``persistent_workers=True`` the workers keep the
    epoch they were started with.

    Examples
    --------
    >>> from blursynth.shake import ShakeParams                        # doctest: +SKIP
    >>> shake = ShakeTransform(ShakeParams(sizes=(17, 21, 25)), seed=1) # doctest: +SKIP
    >>> for epoch in range(100):                                       # doctest: +SKIP
    ...     shake.set_epoch(epoch)
    ...     for batch in loader:
    ...         batch = shake({**batch, "blurry": batch["blurry"].cuda()})
    """

    def __init__(self, params=None, seed: int = 0, *, epoch: int | None = None):
        from .shake import ShakeParams

        self.params = params if params is not None else ShakeParams()
        if not isinstance(self.params, ShakeParams):
            raise ParameterError(f"params: expected a ShakeParams, got {type(params).__name__}")
        self.seed = int(seed)
        self.epoch = epoch

    def set_epoch(self, epoch: int | None) -> None:
        """Draw fresh kernels for `epoch` (None: the epoch-free, offline-identical ones)."""
        self.epoch = None if epoch is None else int(epoch)

    def key(self, item_id: str) -> str:
        """The item key of the random stream for `item_id` at the current epoch."""
        return str(item_id) if self.epoch is None else f"{item_id}@epoch{self.epoch}"

    def __call__(self, item):
        from .shake import shake_sample

        if isinstance(item, Sample):
            return shake_sample(item, self.params, self.seed, key=self.key(item.id))
        if isinstance(item, dict) and "blurry" in item:
            return self._tensors(item)
        raise ParameterError(f"ShakeTransform: expected a Sample or a dict with 'blurry', got "
                             f"{type(item).__name__}")

    def _tensors(self, batch: dict) -> dict:
        _require_torch()
        from .shake import shake_batch, shake_margin

        blurry = batch["blurry"]
        single = isinstance(blurry, torch.Tensor) and blurry.ndim == 4
        ids = batch.get("id", batch.get("index"))
        if ids is None:
            raise ParameterError("ShakeTransform: the batch needs 'id' (or 'index') per item "
                                 "to draw reproducible kernels")
        if single or isinstance(ids, (str, int)) or (isinstance(ids, torch.Tensor) and ids.ndim == 0):
            ids = [ids]
        ids = [str(i.item() if isinstance(i, torch.Tensor) else i) for i in ids]
        out, _ = shake_batch(blurry[None] if single else blurry,
                             [self.key(i) for i in ids], self.params, self.seed)
        new = dict(batch)
        new["blurry"] = out[0] if single else out
        m = shake_margin(self.params)
        if m and isinstance(batch.get("sharp"), torch.Tensor):
            new["sharp"] = batch["sharp"][..., m:-m, m:-m]
        return new


__all__ += ["ShakeTransform"]
