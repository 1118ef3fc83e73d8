"""``blursynth shake``: camera-shake blur on images, clips and native LMDBs (one library call)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from blursynth.convolve import BORDERS
from blursynth.crf import CRF_SPECS
from blursynth.errors import ParameterError
from blursynth.shake import ShakeParams
from blursynth.shake_files import KINDS, shake as shake_inputs

from .common import RangeType, build, default_of, progress_option

_D = ShakeParams.__dataclass_fields__


def _default(name: str) -> Any:
    return _D[name].default


def _model_help() -> str:
    try:
        from blursynth.psf import MODELS
    except ImportError:  # psf not installed yet: the library reports the valid names
        return "Kernel model (see blursynth.psf.MODELS)."
    return "Kernel model: " + "; ".join(f"{k}: {v}" for k, v in MODELS.items()) + "."


class IntList(click.ParamType):
    """``17,21,25`` -> ``(17, 21, 25)``."""

    name = "K,K,..."

    def convert(self, value: Any, param, ctx) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"expected comma-separated integers, e.g. 17,21,25, got {value!r}",
                      param, ctx)


@click.command(context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path),
                metavar="INPUTS...")
@click.option("--out", type=click.Path(path_type=Path), metavar="DIR",
              help="Output folder of shaken images (DIR/NAME.png) and clips "
                   "(DIR/NAME_blurry/, DIR/NAME_sharp/), with the manifest DIR/shake.jsonl.")
@click.option("--lmdb-out", type=click.Path(path_type=Path), metavar="OUT.lmdb",
              help="Output native LMDB for LMDB inputs (all of them go into it); manifest "
                   "OUT.lmdb.shake.jsonl beside it.")
@click.option("--kind", type=click.Choice(["auto", *KINDS]), default="auto", show_default=True,
              help="What the inputs are; auto: an LMDB directory is lmdb, a NAME_blurry.mp4 "
                   "or a folder with blurry/, *_blurry/ or *_blurry.mp4 is clips, anything "
                   "else images.")
@click.option("--model", default=_default("model"), show_default=True, help=_model_help())
@click.option("--bank", type=click.Path(path_type=Path, exists=True), metavar="PATH",
              help="Draw kernels from this bank (.npz, .mat or a folder of PNGs) instead of "
                   "a model.")
@click.option("--sizes", type=IntList(), default=",".join(map(str, _D["sizes"].default)),
              show_default=True,
              help="Kernel sizes K in pixels (odd, >= 3), one drawn per burst; without "
                   "--extent a larger K means a longer blur. The seed project trained with "
                   "17,21,25.")
@click.option("--extent", type=RangeType(pair=True), metavar="MIN:MAX",
              help="Blur extent range in pixels, one value drawn per burst; MAX must fit the "
                   "smallest size (<= K-1). Default: the model's own scale for the size.")
@click.option("--per-frame/--per-burst", "per_frame", default=_default("per_frame"),
              show_default=True,
              help="An independent kernel for every frame (the seed project), or one for the "
                   "whole burst (a clip is one burst).")
@click.option("--border", type=click.Choice(list(BORDERS)), default=_default("border"),
              show_default=True,
              help="; ".join(f"{k}: {v}" for k, v in BORDERS.items())
                   + ". valid crops blurry and sharp frames by max(K)//2 on every side.")
@click.option("--crf", default=None, metavar="SPEC",
              help="Camera response of the 8-bit frames: " + ", ".join(CRF_SPECS)
                   + ". Default: the input's own (clip or LMDB record), else srgb.")
@click.option("--seed", type=click.IntRange(min=0), default=default_of(shake_inputs, "seed"),
              show_default=True, help="Run seed: same seed, same kernels, same bytes.")
@click.option("--overwrite", is_flag=True,
              help="Start again: redo every item (and delete a previous --lmdb-out). "
                   "Default: resume, skipping items already done.")
@progress_option
@click.pass_context
def shake(ctx: click.Context, inputs: tuple[Path, ...], out: Path | None, lmdb_out: Path | None,
          kind: str, model: str, bank: Path | None, sizes: tuple[int, ...],
          extent: tuple[float, float] | None, per_frame: bool, border: str, crf: str | None,
          **options):
    """Blur images, clips or LMDB samples with random camera-shake kernels.

    Each blurry frame is convolved with a point spread function in linear light (decoded
    with the CRF, re-encoded with rounding); sharp frames are kept. Kernels are drawn from
    the seed and each item's name, and every record in the manifest says how to regenerate
    them (model, size, extent and kernel seed, or bank index).

    \b
    Inputs (mixed freely):
      images     photo.jpg, folders of images     -> DIR/NAME.png
      clips      flowblur outputs, NAME_blurry/ + NAME_sharp/ or blurry/ + sharp/ folders
                                                  -> DIR/NAME_blurry/, DIR/NAME_sharp/
      lmdb       native LMDBs (blursynth pack)    -> OUT.lmdb (kernels in each record's meta)

    \b
    Examples:
      blursynth shake photos/ --out shaken/ --model gp --sizes 17,21,25
      blursynth shake clips/ --out shaken_clips/ --per-burst --border valid
      blursynth shake train.lmdb --lmdb-out train_shake.lmdb --bank kernels.npz

    Re-running the same command resumes. Exits with status 1 if any item failed (the others
    are still written).
    """
    if bank is not None and ctx.get_parameter_source("model") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("give --model or --bank, not both", ctx)
    values = dict(model=model, bank=None if bank is None else str(bank), sizes=sizes,
                  extent=extent, per_frame=per_frame, border=border, crf=crf)
    params = build(ShakeParams, values, ctx)
    try:
        res = shake_inputs(inputs, out=out, lmdb_out=lmdb_out, params=params, kind=kind,
                           **options)
    except ParameterError as e:
        if str(e).startswith(("out:", "lmdb_out:")):  # a missing output option: usage error
            raise click.UsageError(str(e), ctx) from None
        raise
    for name, unit in (("images", "images"), ("clips", "clips"), ("lmdb", "samples")):
        r = res[name]
        if r is None:
            continue
        extra = f", {r['frames']} frames" if name == "clips" else ""
        click.echo(f"shake {name}: {len(r['done'])} {unit} shaken{extra}"
                   + (f" (+{len(r['resumed'])} already done)" if r["resumed"] else "")
                   + (f", {len(r['failed'])} failed" if r["failed"] else "")
                   + f" in {r['seconds']:.1f} s -> {r['out']}  (manifest {r['manifest']})")
    for f in res["failed"]:
        click.echo(f"failed: {f['error']}", err=True)
    if res["failed"]:
        ctx.exit(1)
