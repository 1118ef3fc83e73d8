"""``blursynth kernels``: a bank of camera-shake blur kernels (one library call)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from blursynth import kernel_bank, psf
from blursynth.errors import ParameterError

from .common import RangeType, default_of, progress_option

SHORT = "Camera-shake blur kernels: a bank (.npz), a preview PNG and its statistics."


def _fmt(v: Any) -> str:
    """A parameter default as typed on the command line (``None`` is drawn by the model)."""
    if v is None:
        return "random"
    return ":".join(f"{x:g}" for x in v) if isinstance(v, tuple) else f"{v:g}"


class ModelParam(click.ParamType):
    """``NAME=VALUE`` -> (name, value); VALUE a number, ``LO:HI`` or ``none``."""

    name = "NAME=VALUE"

    def convert(self, value: Any, param, ctx) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*(\S+)\s*", str(value))
        if not m:
            self.fail(f"expected NAME=VALUE (e.g. anxiety=0.005), got {value!r}", param, ctx)
        name, text = m.groups()
        return name, None if text.lower() == "none" else RangeType().convert(text, param, ctx)


PARAM_HELP = ("A model parameter (repeatable); a LO:HI range is drawn per kernel. Defaults: "
              + "; ".join(f"{m}: " + ", ".join(f"{k}={_fmt(d)}" for k, (d, _)
                                                in psf.model_parameters(m).items())
                          for m in psf.MODELS) + ".")
#: Names in library error messages that are options of their own (the rest are --param).
_OPTIONS = ("model", "count", "size", "extent", "exposure", "seed", "out")


HELP = """Make a bank of camera-shake blur kernels.

    Each kernel rasterises a random camera trajectory: every sample is splatted bilinearly with
    its dwell time, so slow parts of the shake are brighter. Every kernel is odd-sized,
    non-negative, sums to 1 and has its centroid exactly on the centre pixel, so blurring
    with it never shifts the image; a path that would leave the support is shrunk to fit,
    never rejected. Prints the bank's statistics: extent (support above 1% of the maximum, in
    pixels), length (of the traced path, in pixels) and curvature (path length over its
    straight span, minus 1: 0 for a line).

    \b
    Models (--model):
""" + "\n".join(f"      {k:11} {v}" for k, v in psf.MODELS.items()) + """

    \b
    Examples:
      blursynth kernels --count 10000 --size 65 --out shake65.npz
      blursynth kernels -m boracchi -n 1000 -k 33 --extent 8:30 -p anxiety=0.005 -o b.npz
      blursynth kernels -m line -n 500 -k 33 --extent 5:31 -o lines.npz
"""


@click.command(context_settings={"max_content_width": 100}, short_help=SHORT, help=HELP)
@click.option("-m", "--model", type=click.Choice(list(psf.MODELS)), default="gp",
              show_default=True, help="Trajectory model (see the list above).")
@click.option("-n", "--count", type=click.IntRange(min=1), required=True,
              help="Number of kernels.")
@click.option("-k", "--size", type=int, required=True,
              help="Kernel size K in pixels, odd (e.g. 17, 33, 65). Without --extent it also "
                   "sets the blur strength: gp kernels span about 0.6 K, as the seed's did.")
@click.option("--extent", type=RangeType(), default=None,
              help="Blur size in pixels, the larger side of the path's bounding box (the "
                   "support measures 1-2 px more), at most K - 1; LO:HI draws it per kernel. "
                   "Overrides the model's own scale. Default: the model's scale.")
@click.option("--exposure", type=RangeType(), default=default_of(psf.kernel_bank, "exposure"),
              show_default=True,
              help="Fraction of the path's exposure integrated, 0 < F <= 1 (Boracchi & Foi's "
                   "knob: a smaller F is the start of the same shake); LO:HI draws it.")
@click.option("-p", "--param", "params", type=ModelParam(), multiple=True, help=PARAM_HELP)
@click.option("--seed", type=click.IntRange(min=0), default=default_of(psf.kernel_bank, "seed"),
              show_default=True,
              help="Run seed: kernel i depends only on (seed, model, i), so any kernel can be "
                   "remade alone.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The bank to write, ending in .npz (kernels float32 (N, K, K) under "
                   "'kernels', the parameters as JSON under 'meta').")
@click.option("--preview/--no-preview", default=default_of(kernel_bank.write_bank, "preview"),
              show_default=True,
              help="Also write OUT_STEM_preview.png: the first 64 kernels, each scaled to its "
                   "maximum.")
@progress_option
@click.pass_context
def kernels(ctx: click.Context, params: tuple[tuple[str, Any], ...], **options) -> None:
    """(The help text is HELP, which lists the models.)"""
    extra = dict(params)
    clash = sorted(set(extra) & (set(options) | {"out", "preview"}))
    if clash:
        raise click.BadParameter(f"{clash[0]} is an option of its own: use --"
                                 f"{clash[0].replace('_', '-')}", ctx=ctx, param_hint="--param")
    try:
        result = kernel_bank.write_bank(options.pop("out"), options.pop("model"), options.pop("count"),
                                options.pop("size"), options.pop("seed"), **options, **extra)
    except ParameterError as e:
        name = str(e).split(":")[0]
        hint = f"--{name}" if name in _OPTIONS else "--param"
        raise click.BadParameter(str(e), ctx=ctx, param_hint=hint) from None
    meta = result["meta"]
    click.echo(f"wrote {result['bank']}: {meta['count']} {meta['model']} kernels of "
               f"{meta['size']} x {meta['size']} px (seed {meta['seed']}) in "
               f"{result['seconds']:.1f} s"
               + (f"; preview: {result['preview']}" if result["preview"] else ""))
    click.echo(kernel_bank.format_summary(result["stats"]))
