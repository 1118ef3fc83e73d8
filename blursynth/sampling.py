"""Sampling training items from clips: bursts with shared crops, frame runs, and filters.

Two units leave this module:

- :class:`Sample`: a burst of ``T`` consecutive frame pairs cropped to one shared patch, with
  a reference index (the native and tensorpack LMDB writers store these);
- :class:`Run`: a range of consecutive whole frames of one clip that passed the frame filters
  (the folder layouts and the BasicSR LMDB store these: their trainers crop on the fly).
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .clips import Clip
from .errors import ParameterError
from .seeding import item_rng, item_seed

__all__ = ["Sample", "Run", "SampleParams", "FrameStats", "REASONS", "frame_stats",
           "texture_fraction", "psnr", "sharpness", "histogram_distance", "sample_bursts",
           "frame_runs"]

log = logging.getLogger(__name__)

#: Frames on each side of a frame whose sharpness it is compared with (blurry-target filter).
SHARPNESS_WINDOW = 7

#: Why a candidate was rejected, in the order the tests run; every report counts each.
REASONS = {
    "scene_cut": "the frames span a scene cut",
    "duplicate": "near-duplicate consecutive frames",
    "blurry_target": "the sharp target is itself blurry",
    "dark": "too dark",
    "texture": "too little texture",
    "not_blurred": "not blurred enough",
}


@dataclass
class Sample:
    """A burst of aligned blurry/sharp patches.

    Attributes
    ----------
    id : str
        Stable identifier, unique within a dataset: ``"<clip>/<first frame:06d>/<y>_<x>"``.
        Resuming uses it to recognise samples already written.
    blurry, sharp : numpy.ndarray
        ``(T, H, W, 3)`` uint8 RGB, 0-255 encoded with ``meta["crf"]``.
    ref : int
        Index in ``0..T-1`` of the frame a trainer restores (the target).
    meta : dict
        JSON-able provenance: ``clip``, ``frames`` (clip frame indices), ``source_frames``
        (source-video frame indices or None), ``crop`` ``[y, x, h, w]``, ``crf``,
        ``exposure``, ``seed``, and whatever the sampler measured (``psnr``, ``sharpness``).
    """

    id: str
    blurry: np.ndarray
    sharp: np.ndarray
    ref: int
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """Consecutive whole frames ``start .. stop-1`` of a clip, all accepted by the filters."""

    clip: Clip
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class SampleParams:
    """How bursts are sampled from a clip, and the thresholds of the filters.

    Parameters
    ----------
    frames : int
        Burst length T (consecutive frames); 1 gives single pairs.
    patch : tuple of int or None
        Crop ``(height, width)`` shared by every frame of a burst; None keeps whole frames.
    patches : int
        Crops taken from each burst (each its own sample, at independent random positions).
    stride : int or None
        Frames between the starts of candidate bursts; default `frames` (no overlap).
    max_per_clip : int or None
        Keep at most this many bursts per clip, chosen at random among the candidates.
    ref : str or int
        Reference (target) frame of a burst: ``"centre"`` (index T // 2), ``"first"``,
        ``"last"`` (the learning-blind-motion-deblurring layout), or an index.
    crop_tries : int
        Random positions tried per crop before the crop is given up.
    min_brightness : float
        Dark filter: mean of the blurry patches (0-255 encoded) must reach this.
    min_texture : float
        Texture filter: fraction of the reference sharp patch's pixels whose grey gradient
        magnitude (per pixel, over height and width, 0-1 scale) exceeds `texture_gradient`.
        Whole skimage photos score 0.19-0.46 at the default gradient; flat sky or walls ~0.
    texture_gradient : float
        Gradient magnitude counted as texture (0-1 per pixel; 0.02 is 5 grey levels).
    max_psnr : float
        Not-blurred filter: PSNR (dB, float, 0-255 peak) of the reference blurry patch against
        its sharp patch must stay at or below this; above, the pair teaches nothing.
    duplicate_mse : float
        Duplicate filter: consecutive sharp frames whose mean squared difference (0-255
        scale) is below this are the same picture (a paused or frozen video).
    scene_cut : float
        Scene-cut filter: Bhattacharyya distance (0-1) between the colour histograms of
        consecutive sharp frames above which they belong to different shots. flowblur's own
        scene-cut gaps (missing source frames) always count as cuts.
    min_sharpness : float
        Blurry-target filter: the reference sharp frame's variance of the Laplacian relative
        to the 90th percentile over the frames of the same shot within ``SHARPNESS_WINDOW``
        frames of it must reach this (real footage has its own motion blur; such a frame is
        no sharp target). The window keeps the comparison to frames of similar content.
    """

    frames: int = 5
    patch: tuple[int, int] | None = (256, 256)
    patches: int = 1
    stride: int | None = None
    max_per_clip: int | None = None
    ref: str | int = "centre"
    crop_tries: int = 4
    min_brightness: float = 20.0
    min_texture: float = 0.1
    texture_gradient: float = 0.02
    max_psnr: float = 40.0
    duplicate_mse: float = 0.2
    scene_cut: float = 0.5
    min_sharpness: float = 0.5

    def __post_init__(self) -> None:
        def whole(name: str, v, lo: int) -> None:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ParameterError(f"{name}: expected an integer >= {lo}, got {v!r}")

        whole("frames", self.frames, 1)
        whole("patches", self.patches, 1)
        whole("crop_tries", self.crop_tries, 1)
        if self.stride is not None:
            whole("stride", self.stride, 1)
        if self.max_per_clip is not None:
            whole("max_per_clip", self.max_per_clip, 1)
        if self.patch is not None:
            if len(self.patch) != 2:
                raise ParameterError(f"patch: expected (height, width), got {self.patch!r}")
            for v in self.patch:
                whole("patch", v, 1)
        self.ref_index()  # validates ref
        if not 0 <= self.min_texture <= 1:
            raise ParameterError(f"min_texture: expected a fraction in [0, 1], got {self.min_texture}")
        if not 0 < self.scene_cut <= 1:
            raise ParameterError(f"scene_cut: expected 0 < d <= 1, got {self.scene_cut}")
        for name in ("min_brightness", "texture_gradient", "max_psnr", "duplicate_mse",
                     "min_sharpness"):
            if not getattr(self, name) >= 0:
                raise ParameterError(f"{name}: expected >= 0, got {getattr(self, name)}")

    def ref_index(self) -> int:
        """The reference frame's index in a burst, from `ref`."""
        named = {"centre": self.frames // 2, "center": self.frames // 2, "first": 0,
                 "last": self.frames - 1}
        if isinstance(self.ref, str):
            if self.ref in named:
                return named[self.ref]
            try:
                i = int(self.ref)
            except ValueError:
                raise ParameterError(f"ref: expected centre, first, last or an index, "
                                     f"got {self.ref!r}") from None
        else:
            i = int(self.ref)
        if not 0 <= i < self.frames:
            raise ParameterError(f"ref: expected an index in 0..{self.frames - 1}, got {i}")
        return i

    def to_dict(self) -> dict:
        """The parameters as JSON types (for manifests and LMDB metadata)."""
        d = asdict(self)
        d["patch"] = None if self.patch is None else list(self.patch)
        return d


# -- measurements ------------------------------------------------------------------------


def _grey(rgb: np.ndarray) -> np.ndarray:
    """float32 grey in 0-1 from uint8 RGB (Rec. 601 luma weights, as OpenCV)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def texture_fraction(rgb: np.ndarray, threshold: float = 0.02) -> float:
    """Fraction of pixels whose grey gradient magnitude exceeds `threshold`.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` uint8.
    threshold : float
        Gradient magnitude in grey levels (0-1) per pixel.

    Returns
    -------
    float
        In [0, 1]. The gradient is taken over height *and* width (central differences,
        one-sided at the borders), so stripes of either orientation count.
    """
    gy, gx = np.gradient(_grey(rgb))
    return float(np.mean(np.hypot(gx, gy) > threshold))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images, computed in float (peak 255); inf when equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (0-1 scale): high for sharp detail."""
    return float(cv2.Laplacian(_grey(rgb), cv2.CV_32F).var())


def _histogram(rgb: np.ndarray) -> np.ndarray:
    h = cv2.calcHist([rgb], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3)
    return h / max(float(h.sum()), 1.0)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance (0 = same colours, 1 = disjoint) of two frames' RGB histograms.

    Unlike a pixel difference it barely changes when the camera moves, and jumps at a cut.
    """
    return float(cv2.compareHist(_histogram(a), _histogram(b), cv2.HISTCMP_BHATTACHARYYA))


@dataclass
class FrameStats:
    """Per-frame measurements of a clip (index i = frame i).

    Attributes
    ----------
    brightness : numpy.ndarray
        Mean of the blurry frame, 0-255.
    sharpness : numpy.ndarray
        :func:`sharpness` of the sharp frame, divided by its 90th percentile over the frames
        of the same shot within ``SHARPNESS_WINDOW`` of it.
    psnr : numpy.ndarray
        PSNR (dB) of blurry vs sharp, whole frame.
    texture : numpy.ndarray
        :func:`texture_fraction` of the sharp frame.
    cut_before, duplicate_before : numpy.ndarray of bool
        Frame i starts a new shot / repeats frame i-1 (always False for i = 0).
    """

    brightness: np.ndarray
    sharpness: np.ndarray
    psnr: np.ndarray
    texture: np.ndarray
    cut_before: np.ndarray
    duplicate_before: np.ndarray


def frame_stats(clip: Clip, params: SampleParams) -> FrameStats:
    """Measure every frame of `clip` (one decoding pass).

    Parameters
    ----------
    clip : Clip
        The clip.
    params : SampleParams
        Supplies `texture_gradient`, `duplicate_mse` and `scene_cut`.

    Returns
    -------
    FrameStats
        For a clip of independent photos (``clip.stills``) there are no cuts or repeats and
        every relative sharpness is 1 (photos are not compared with each other).
    """
    n = clip.n_frames
    bright, sharp, ps, tex = (np.zeros(n) for _ in range(4))
    cut, dup = np.zeros(n, bool), np.zeros(n, bool)
    prev = prev_f = None
    for i, b, s in clip.frames():
        bright[i] = b.mean()
        sharp[i] = sharpness(s)
        ps[i] = psnr(b, s)
        tex[i] = texture_fraction(s, params.texture_gradient)
        s_f = s.astype(np.float32)
        if prev is not None:
            dup[i] = np.mean((s_f - prev_f) ** 2) < params.duplicate_mse
            cut[i] = histogram_distance(prev, s) > params.scene_cut
        prev, prev_f = s, s_f
    src = clip.source_frames
    if src is not None and n > 1:
        # flowblur skipped the exposures at a cut: the source index jumps past its usual step.
        steps = np.diff(src)
        cut[1:] |= steps > np.median(steps)
    if clip.stills:
        # Independent photos: no shots to cut, no repeats, no neighbours to compare with.
        cut[:] = dup[:] = False
        return FrameStats(bright, np.ones(n), ps, tex, cut, dup)
    # Compare each frame with frames of similar content: nearby, and of the same shot.
    shot = np.cumsum(cut)
    w = SHARPNESS_WINDOW
    top = np.zeros(n)
    for i in range(n):
        lo, hi = max(0, i - w), min(n, i + w + 1)
        near = sharp[lo:hi][shot[lo:hi] == shot[i]]
        top[i] = np.percentile(near, 90)
    rel = np.divide(sharp, top, out=np.ones(n), where=top > 0)
    return FrameStats(bright, rel, ps, tex, cut, dup)


# -- bursts ----------------------------------------------------------------------------------


def _burst_reason(st: FrameStats, s: int, t: int, ref: int, p: SampleParams) -> str | None:
    """Frame-level reason to reject the burst of frames s .. s+t-1, or None."""
    if st.cut_before[s + 1:s + t].any():
        return "scene_cut"
    if st.duplicate_before[s + 1:s + t].any():
        return "duplicate"
    if st.sharpness[s + ref] < p.min_sharpness:
        return "blurry_target"
    return None


def _patch_reason(blurry: np.ndarray, sharp: np.ndarray, ref: int, p: SampleParams) -> str | None:
    """Patch-level reason to reject a cropped burst ``(T, h, w, 3)``, or None."""
    if blurry.mean() < p.min_brightness:
        return "dark"
    if texture_fraction(sharp[ref], p.texture_gradient) < p.min_texture:
        return "texture"
    if psnr(blurry[ref], sharp[ref]) > p.max_psnr:
        return "not_blurred"
    return None


def sample_bursts(clip: Clip, params: SampleParams, seed: int = 0, *,
                  report: Counter | None = None,
                  stats: FrameStats | None = None) -> Iterator[Sample]:
    """Sample bursts of consecutive frames with shared random crops from one clip.

    Parameters
    ----------
    clip : Clip
        Source clip.
    params : SampleParams
        Burst length, crop, reference and filter thresholds.
    seed : int
        Run seed; the clip's draws come from ``item_rng(seed, clip.name, "pack")``, so they do
        not depend on the other clips or on the order of processing.
    report : collections.Counter, optional
        Incremented in place, counting crops (``patches`` per candidate burst):
        ``candidates``, ``accepted`` (samples yielded), ``over_limit`` (not chosen under
        `max_per_clip`) and one count per reason of :data:`REASONS` (for a crop, the reason
        its last try failed). They add up: candidates = accepted + over_limit + rejections.
    stats : FrameStats, optional
        The clip's :func:`frame_stats`, if already measured.

    Yields
    ------
    Sample
        In increasing order of first frame. ``blurry``/``sharp`` are ``(T, h, w, 3)`` uint8
        crops at the same position in every frame.

    Raises
    ------
    ParameterError
        The crop is larger than the clip's frames.
    """
    p, t = params, params.frames
    report = Counter() if report is None else report
    ph, pw = p.patch or (clip.height, clip.width)
    if ph > clip.height or pw > clip.width:
        raise ParameterError(f"patch: {ph}x{pw} (h x w) is larger than clip {clip.name}'s "
                             f"{clip.height}x{clip.width} frames")
    if clip.stills and t > 1:
        raise ParameterError(f"frames: clip {clip.name} holds independent photos (segblur "
                             f"output), not a video: bursts of {t} frames would mix them; "
                             "use frames=1 (--frames 1)")
    ref = p.ref_index()
    rng = item_rng(seed, clip.name, "pack")
    starts = list(range(0, clip.n_frames - t + 1, p.stride or t))
    if not starts:
        return
    st = stats or frame_stats(clip, p)
    report["candidates"] += len(starts) * p.patches
    kept = []
    for s in starts:
        why = _burst_reason(st, s, t, ref, p)
        if why:
            report[why] += p.patches
        else:
            kept.append(s)
    if p.max_per_clip is not None and len(kept) > p.max_per_clip:
        report["over_limit"] += (len(kept) - p.max_per_clip) * p.patches
        kept = sorted(rng.choice(kept, size=p.max_per_clip, replace=False).tolist())
    if not kept:
        return
    base = {"clip": clip.name, "crf": clip.crf, "exposure": clip.exposure,
            "seed": item_seed(seed, clip.name, "pack")}
    frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    todo = iter(kept)
    s = next(todo)
    wanted = sorted({i for k in kept for i in range(k, k + t)})
    for i, b, sh in clip.frames(wanted):
        frames[i] = (b, sh)
        while s is not None and i == s + t - 1:
            blurry = np.stack([frames[k][0] for k in range(s, s + t)])
            sharp_ = np.stack([frames[k][1] for k in range(s, s + t)])
            yield from _crops(clip, blurry, sharp_, s, ref, (ph, pw), rng, p, base, st, report)
            s = next(todo, None)
            for k in [k for k in frames if s is None or k < s]:
                del frames[k]


def _crops(clip: Clip, blurry: np.ndarray, sharp: np.ndarray, s: int, ref: int,
           size: tuple[int, int], rng: np.random.Generator, p: SampleParams, base: dict,
           st: FrameStats, report: Counter) -> Iterator[Sample]:
    ph, pw = size
    t = p.frames
    for _ in range(p.patches):
        why = None
        for _ in range(p.crop_tries):
            y = int(rng.integers(0, clip.height - ph + 1))
            x = int(rng.integers(0, clip.width - pw + 1))
            b = blurry[:, y:y + ph, x:x + pw]
            sh = sharp[:, y:y + ph, x:x + pw]
            why = _patch_reason(b, sh, ref, p)
            if why is None:
                break
        if why:
            report[why] += 1
            continue
        src = clip.source_frames
        report["accepted"] += 1
        yield Sample(
            id=f"{clip.name}/{s:06d}/{y}_{x}",
            blurry=np.ascontiguousarray(b), sharp=np.ascontiguousarray(sh), ref=ref,
            meta={**base, "frames": list(range(s, s + t)),
                  "source_frames": None if src is None else src[s:s + t],
                  "crop": [y, x, ph, pw], "psnr": round(psnr(b[ref], sh[ref]), 3),
                  "sharpness": round(float(st.sharpness[s + ref]), 4)})


# -- whole-frame runs ------------------------------------------------------------------------


def frame_runs(clip: Clip, params: SampleParams, *, report: Counter | None = None,
               stats: FrameStats | None = None) -> list[Run]:
    """Maximal runs of consecutive whole frames that pass every filter.

    Parameters
    ----------
    clip : Clip
        Source clip.
    params : SampleParams
        Filter thresholds (the burst and crop fields are not used).
    report : collections.Counter, optional
        Incremented in place: ``candidates`` (frames), ``accepted`` (frames in runs) and a
        count per rejection reason of :data:`REASONS` (``scene_cut`` counts the cuts, which
        split runs without rejecting a frame).
    stats : FrameStats, optional
        The clip's :func:`frame_stats`, if already measured.

    Returns
    -------
    list of Run
        A run ends before a rejected frame, a scene cut or a repeated frame (the repeat is
        dropped). Length limits of a trainer's layout are applied by its writer.
    """
    p = params
    report = Counter() if report is None else report
    st = stats or frame_stats(clip, p)
    runs: list[Run] = []
    start = None
    for i in range(clip.n_frames):
        why = None
        if st.duplicate_before[i]:
            why = "duplicate"
        elif st.sharpness[i] < p.min_sharpness:
            why = "blurry_target"
        elif st.brightness[i] < p.min_brightness:
            why = "dark"
        elif st.texture[i] < p.min_texture:
            why = "texture"
        elif st.psnr[i] > p.max_psnr:
            why = "not_blurred"
        report["candidates"] += 1
        cut = bool(st.cut_before[i])
        if start is not None and (why or cut):
            runs.append(Run(clip, start, i))
            start = None
        if cut:
            report["scene_cut"] += 1
        if why:
            report[why] += 1
            continue
        if start is None:
            start = i
        report["accepted"] += 1
    if start is not None:
        runs.append(Run(clip, start, clip.n_frames))
    return runs
