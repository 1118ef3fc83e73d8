"""``blursynth segblur``: moving objects and camera shake on masked photos (one library call)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from blursynth.convolve import BORDERS
from blursynth.crf import CRF_SPECS
from blursynth.psf import MODELS as PSF_MODELS
from blursynth.segblur import MODELS, SegParams
from blursynth.segblur_files import segblur as segblur_files
from blursynth.segmasks import ORDERS, CocoSource, MaskFilter, MaskFolderSource, PlainSource

from .common import build, default_of, progress_option

_P = SegParams.__dataclass_fields__
_F = MaskFilter.__dataclass_fields__


class Pair(click.ParamType):
    """``MIN,MAX`` (or one value for both) -> ``(min, max)`` floats; ``none`` -> None."""

    name = "MIN,MAX"

    def convert(self, value: Any, param, ctx) -> tuple[float, float] | None:
        if value is None or isinstance(value, tuple):
            return value
        if str(value).strip().lower() == "none":
            return None
        try:
            v = [float(x) for x in str(value).split(",")]
        except ValueError:
            v = []
        if len(v) not in (1, 2):
            self.fail(f"expected MIN,MAX (e.g. 5,45) or none, got {value!r}", param, ctx)
        return v[0], v[-1]


class Names(click.ParamType):
    """``a,b,c`` -> ``("a", "b", "c")``; ``all`` -> None (no filter)."""

    name = "NAME,..."

    def convert(self, value: Any, param, ctx) -> tuple[str, ...] | None:
        if value is None or isinstance(value, tuple):
            return value
        if str(value).strip().lower() == "all":
            return None
        return tuple(v.strip() for v in str(value).split(",") if v.strip())


def _pair_text(v) -> str | None:
    return None if v is None else f"{v[0]:g},{v[1]:g}"


def _listing(d: dict) -> str:
    return "; ".join(f"{k}: {v}" for k, v in d.items())


@click.command(context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path), metavar="[IMAGES...]")
@click.option("--coco", type=click.Path(path_type=Path), metavar="INSTANCES.json",
              help="COCO instances file; the photos are in --images DIR.")
@click.option("--masks", "masks_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Mask folder: DIR/<stem>/*.png (one PNG per object) or DIR/<stem>.png (a "
                   "label image, 0 = background); the photos are in --images DIR.")
@click.option("--images", "images_dir", type=click.Path(path_type=Path), metavar="DIR",
              help="Folder of the photos of --coco or --masks.")
@click.option("--out", type=click.Path(path_type=Path), required=True, metavar="OUT",
              help="Output folder: OUT/sharp/, OUT/blurry/, OUT/train_list.txt and the "
                   "manifest OUT/segblur.jsonl.")
@click.option("--categories", type=Names(), default=None, metavar="NAME,...",
              help="COCO categories that move (e.g. person,car). Default: all in "
                   "--supercategories.")
@click.option("--supercategories", type=Names(), default=",".join(_F["supercategories"].default),
              show_default=True, metavar="NAME,...|all",
              help="COCO supercategories that move; all: no filter.")
@click.option("--min-area", type=click.FloatRange(min=0), default=_F["min_area"].default,
              show_default=True, help="Smallest object that moves, in mask pixels.")
@click.option("--max-objects", type=click.IntRange(min=1), default=_F["max_objects"].default,
              show_default=True, help="Most objects that move per photo (the first in --order).")
@click.option("--order", type=click.Choice(list(ORDERS)), default=_F["order"].default,
              show_default=True, help="Which objects are kept first, and the back-to-front "
                                      "order: " + _listing(ORDERS) + ".")
@click.option("--include-crowd", is_flag=True, help="Also move COCO crowd annotations.")
@click.option("--model", type=click.Choice(list(MODELS)), default=_P["model"].default,
              show_default=True, help=_listing(MODELS) + ".")
@click.option("--psf-model", type=click.Choice(list(PSF_MODELS)), default=_P["psf_model"].default,
              show_default=True, help="Kernel trajectory model: " + _listing(PSF_MODELS) + ".")
@click.option("--bank", type=click.Path(path_type=Path, exists=True), metavar="PATH",
              help="Draw every kernel from this bank (.npz, .mat or a PNG folder) instead, as "
                   "SBDD did; the extents do not apply and --size is the bank's.")
@click.option("--object-extent", type=Pair(), default=_pair_text(_P["object_extent"].default),
              show_default=True, metavar="MIN,MAX|none",
              help="Object blur length range in pixels, drawn per object (0: still); none: "
                   "the model's own scale.")
@click.option("--camera-extent", type=Pair(), default=_pair_text(_P["camera_extent"].default),
              show_default=True, metavar="MIN,MAX|none",
              help="Camera-shake blur length range in pixels, drawn per photo (0,0: a still "
                   "camera).")
@click.option("--size", type=int, default=_P["size"].default, show_default=True,
              help="Kernel side K in pixels (odd); extents must be <= K-1.")
@click.option("--crf", default=_P["crf"].default, show_default=True, metavar="SPEC",
              help="Camera response of the photos (blur is computed in linear light): "
                   + ", ".join(CRF_SPECS) + ". SBDD used gamma:2.2.")
@click.option("--illumination", type=Pair(), default=None, metavar="MIN,MAX",
              help="SBDD's illumination augmentation: scale the linear photo by a factor drawn "
                   "from this range (SBDD's COCO set: 0.5,1.5); above 1 saturates. Default: off.")
@click.option("--border", type=click.Choice(list(BORDERS)), default=_P["border"].default,
              show_default=True, help=_listing(BORDERS) + " (SBDD's size).")
@click.option("--save-masks", is_flag=True,
              help="Also write OUT/masks/<key>_<i>.png: object i's share of each blurry pixel.")
@click.option("--save-kernels", is_flag=True,
              help="Also write OUT/kernels/<key>.npz (the manifest always says how to remake "
                   "them).")
@click.option("--seed", type=click.IntRange(min=0), default=default_of(segblur_files, "seed"),
              show_default=True, help="Run seed: same seed, same bytes, whatever --workers.")
@click.option("--workers", type=click.IntRange(min=1), default=default_of(segblur_files, "workers"),
              show_default=True, help="Processes rendering photos.")
@click.option("--overwrite", is_flag=True,
              help="Redo every photo. Default: resume, skipping photos already done.")
@progress_option
@click.pass_context
def segblur(ctx: click.Context, inputs: tuple[Path, ...], coco: Path | None,
            masks_dir: Path | None, images_dir: Path | None, out: Path, categories,
            supercategories, min_area: float, max_objects: int, order: str,
            include_crowd: bool, **options):
    """Blur photos with moving objects (segmentation masks) and a shaking camera.

    Every selected object gets its own motion kernel and the background the camera's; blur
    is computed in linear light and re-encoded with rounding. The default layered model
    composites the objects back to front over the blurred background, so a moving object's
    smear carries its own colour; --model sbdd reproduces SBDD's published formula.

    \b
    Sources (one of):
      --coco INSTANCES.json --images DIR   COCO photos, objects chosen by category and area
      --masks DIR --images DIR             your own instance masks or label images
      IMAGES...                            photos or folders without masks: camera blur only

    \b
    Examples:
      blursynth segblur --coco instances_train2017.json --images train2017 --out sbdd_coco
      blursynth segblur --masks masks/ --images photos/ --out out/ --workers 4
      blursynth segblur --coco ann.json --images imgs --out out --model sbdd --crf gamma:2.2 \\
          --illumination 0.5,1.5 --border valid --order sbdd --max-objects 2

    Re-running the same command resumes. Exits with status 1 if any photo failed (the others
    are still written).
    """
    given = [name for name, v in (("--coco", coco), ("--masks", masks_dir), ("IMAGES", inputs))
             if v]
    if len(given) != 1:
        raise click.UsageError("give one source: --coco FILE --images DIR, --masks DIR "
                               "--images DIR, or IMAGES...", ctx)
    if inputs and images_dir is not None:
        raise click.UsageError("--images DIR goes with --coco or --masks; plain photos are "
                               "given as arguments", ctx)
    if not inputs and images_dir is None:
        raise click.UsageError(f"{given[0]} needs --images DIR (the photos)", ctx)
    if options["bank"] is not None and \
            ctx.get_parameter_source("psf_model") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("give --psf-model or --bank, not both", ctx)
    names = [f.name for f in SegParams.__dataclass_fields__.values()]
    values = {n: options.pop(n) for n in names}
    values["bank"] = None if values["bank"] is None else str(values["bank"])
    params = build(SegParams, values, ctx)
    if inputs:
        source = PlainSource(inputs)
    else:
        filt = build(MaskFilter, dict(categories=categories, supercategories=supercategories,
                                      min_area=min_area, max_objects=max_objects, order=order,
                                      include_crowd=include_crowd), ctx)
        source = (CocoSource(coco, images_dir, filt) if coco is not None
                  else MaskFolderSource(masks_dir, images_dir, filt))
    res = segblur_files(source, out, params, **options)
    skipped = res["report"].get("skipped_no_objects", 0)
    click.echo(f"segblur: {len(res['done'])} pairs"
               + (f" (+{len(res['resumed'])} already done)" if res["resumed"] else "")
               + (f", {skipped} photos skipped without objects" if skipped else "")
               + (f", {len(res['failed'])} failed" if res["failed"] else "")
               + f" in {res['seconds']:.1f} s -> {res['out']}  (list {res['train_list']}, "
                 f"manifest {res['manifest']})")
    for f in res["failed"]:
        click.echo(f"failed: {f['error']}", err=True)
    if res["failed"]:
        ctx.exit(1)
