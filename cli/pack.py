"""``blursynth pack``: sample clips into an LMDB or a trainer's folder layout (one library call)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from blursynth.pack import BURST_FORMATS, formats, pack as pack_clips, tensorpack_defaults
from blursynth.sampling import REASONS, SampleParams

from .common import build, dataclass_options, default_of, progress_option

PARAM_HELP = {
    "frames": "Burst length T: consecutive frames per sample (1: single pairs).",
    "patch": "Crop shared by all frames of a burst: HxW, N (square) or 'full' for whole frames.",
    "patches": "Crops per burst, each at its own random position (each its own sample).",
    "stride": "Frames between the starts of candidate bursts. Default: T (no overlap).",
    "max_per_clip": "Keep at most this many bursts per clip, chosen at random.",
    "ref": "Reference (target) frame of a burst: centre, first, last or an index.",
    "crop_tries": "Random positions tried per crop before it is given up.",
    "min_brightness": "Dark filter: least mean of the blurry patches (0-255).",
    "min_texture": "Texture filter: least fraction of the target patch's pixels whose grey "
                   "gradient (over height and width) exceeds --texture-gradient.",
    "texture_gradient": "Gradient magnitude counted as texture (grey levels 0-1 per pixel).",
    "max_psnr": "Not-blurred filter: most PSNR (dB) of the blurry target against the sharp one.",
    "duplicate_mse": "Duplicate filter: consecutive sharp frames closer than this mean squared "
                     "difference (0-255 scale) are the same picture.",
    "scene_cut": "Scene-cut filter: colour-histogram (Bhattacharyya) distance between "
                 "consecutive frames above which they are different shots; flowblur's skipped "
                 "exposures always count.",
    "min_sharpness": "Blurry-target filter: least variance of the Laplacian of the sharp "
                     "target relative to the sharpest frames near it in the same shot.",
}


class PatchType(click.ParamType):
    """``HxW``, ``N`` or ``full`` -> ``(h, w)`` or None."""

    name = "HxW|N|full"

    def convert(self, value: Any, param, ctx) -> tuple[int, int] | None:
        if value is None or isinstance(value, tuple):
            return value
        text = str(value).strip().lower()
        if text in ("full", "whole", "none"):
            return None
        try:
            h, _, w = text.partition("x")
            return int(h), int(w or h)
        except ValueError:
            self.fail(f"expected HxW, N or full, got {value!r}", param, ctx)


@click.command(context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path),
                metavar="CLIPS...")
@click.option("--lmdb", "lmdb", type=click.Path(path_type=Path), metavar="OUT",
              help="Write an LMDB (see --lmdb-format).")
@click.option("--lmdb-format", type=click.Choice(["native", "tensorpack", "basicsr"]),
              default="native", show_default=True,
              help="native: msgpack bursts with provenance; tensorpack: the 2017 "
                   "learning-blind-motion-deblurring LMDB (sets T=5, ref last, 512x512 "
                   "unless given); basicsr: paired blur/sharp LMDBs of whole frames.")
@click.option("--layout", nargs=2, type=(click.Choice(sorted(set(formats()) - set(BURST_FORMATS)
                                                         - {"basicsr"})), click.Path(path_type=Path)),
              metavar="NAME OUT", help="Write a trainer's folder layout of whole frames instead.")
@dataclass_options(SampleParams, PARAM_HELP, types={
    "patch": PatchType(), "stride": click.IntRange(min=1), "max_per_clip": click.IntRange(min=1),
    "ref": str})
@click.option("--seed", type=click.IntRange(min=0), default=default_of(pack_clips, "seed"),
              show_default=True, help="Run seed: same seed, same dataset, whatever the workers.")
@click.option("--encoding", type=click.Choice(["png", "jpeg", "raw"]),
              default=default_of(pack_clips, "encoding"), show_default=True,
              help="Frame encoding in the native LMDB (png is lossless and ~3x smaller than raw).")
@click.option("--quality", type=click.IntRange(1, 100), default=default_of(pack_clips, "quality"),
              show_default=True, help="JPEG quality (jpeg encoding, tensorpack).")
@click.option("--shard-size", type=click.IntRange(min=1), metavar="N",
              help="Native LMDB: N records per shard, written as OUT-00000.lmdb, ...")
@click.option("--workers", type=click.IntRange(min=1), default=default_of(pack_clips, "workers"),
              show_default=True,
              help="Encoding threads (PNG, JPEG; raw frames are copied in the main thread).")
@click.option("--split", default=default_of(pack_clips, "split"), show_default=True,
              help="Split of a folder layout (train, test, ...).")
@click.option("--name", default=None,
              help="Dataset name inside a layout: dvd writes {split}_{name}/ (default "
                   "blursynth); afb writes {name}/ (default b-aist++, which makes "
                   "Animation-from-Blur use its reader with bbox and trend files).")
@click.option("--overwrite", is_flag=True,
              help="Delete a previous pack output at OUT first. Default: resume it.")
@progress_option
@click.pass_context
def pack(ctx: click.Context, inputs: tuple[Path, ...], lmdb: Path | None,
         lmdb_format: str, layout: tuple[str, Path] | None, **options):
    """Sample blurry/sharp clips into a training dataset.

    CLIPS are flowblur outputs (NAME_blurry.mp4 + NAME_sharp.mp4, or folders of them) or
    folders with blurry/ and sharp/ image folders. Bursts of T consecutive frames share one
    random crop; filters drop dark, duplicated, textureless, unblurred and scene-cut samples
    and those whose sharp target is itself blurry, and the summary counts each.

    \b
    Formats:
      --lmdb OUT.lmdb                      native LMDB (resumable, optionally sharded)
      --lmdb OUT.lmdb --lmdb-format tensorpack   2017 learning-blind-motion-deblurring
      --lmdb OUT --lmdb-format basicsr     BasicSR blur/sharp LMDBs of whole frames
      --layout NAME OUT                    folder layout of whole frames for a trainer:
                                           gopro, reds, dvd (PVDNet), cdvd (CDVD-TSP),
                                           srn, afb (Animation-from-Blur)

    The manifest OUT.pack.jsonl beside OUT records every clip. Re-running the same command
    resumes an interrupted run without duplicates; --overwrite starts again.

    \b
    Examples:
      blursynth pack data/ --lmdb train.lmdb --patch 256 --frames 5
      blursynth pack data/ --layout gopro GOPRO_Large --split train
      blursynth pack data/ --lmdb lbmd0.lmdb --lmdb-format tensorpack

    Exits with status 1 if any clip failed (the others are still packed).
    """
    if (lmdb is None) == (layout is None):
        raise click.UsageError("give exactly one of --lmdb OUT or --layout NAME OUT")
    fmt, out = (lmdb_format, lmdb) if lmdb is not None else layout
    values = {name: options.pop(name) for name in PARAM_HELP}
    params = build(SampleParams, values, ctx)
    if fmt == "tensorpack":
        given = {n for n in ("frames", "ref", "patch")
                 if ctx.get_parameter_source(n) != click.core.ParameterSource.DEFAULT}
        params = build(SampleParams, {**tensorpack_defaults(params).to_dict(),
                                      **{n: values[n] for n in given}}, ctx)
    result = pack_clips(inputs, out, fmt=fmt, params=params, **options)
    report = result["report"]
    unit = "samples" if fmt in BURST_FORMATS else "frames"
    click.echo(f"pack {fmt}: {result['written']} {unit} from {len(result['done'])} clips"
               + (f" (+{len(result['resumed'])} already packed)" if result["resumed"] else "")
               + f" in {result['seconds']:.1f} s -> {result['out']}")
    if report.get("candidates"):
        rejected = ", ".join(f"{report[k]} {v}" for k, v in REASONS.items() if report.get(k))
        click.echo(f"  {report['candidates']} candidates, {report.get('accepted', 0)} accepted"
                   + (f"; rejected: {rejected}" if rejected else "")
                   + (f"; {report['over_limit']} over --max-per-clip"
                      if report.get("over_limit") else ""))
    click.echo(f"  manifest: {result['manifest']}")
    for f in result["failed"]:
        click.echo(f"failed: {f['error']}", err=True)
    if result["failed"]:
        ctx.exit(1)
