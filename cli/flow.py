"""``blursynth flow``: optical flow of videos' consecutive frames, both ways, as files."""
from __future__ import annotations

import time
from pathlib import Path

import click

from blursynth.errors import ParameterError
from blursynth.flow import BACKENDS, DIS_PRESETS
from blursynth.flow_video import FILES_DIS_PRESET, FORMATS, flows_folder, pair_flows_video, \
    pair_flows_videos

from .common import (VIDEO_SUFFIXES, default_of, expand_inputs, frame_range_options,
                     progress_option)

SHORT = "Optical flow of videos, both ways between consecutive frames, as .flo/.npy files."


@click.command(context_settings={"max_content_width": 100}, short_help=SHORT)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path),
                metavar="INPUT...")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created); each video's files go to OUT/NAME/. Default: "
                   "flows/ beside each input.")
@click.option("--flow", type=click.Choice(list(BACKENDS), case_sensitive=False),
              default=default_of(pair_flows_video, "flow"), show_default=True,
              help="Backend: " + "; ".join(f"{k}: {v}" for k, v in BACKENDS.items()) + ".")
@click.option("--flow-preset", "preset", type=click.Choice(list(DIS_PRESETS)),
              help=f"Preset of the dis backend. Default: {FILES_DIS_PRESET} (the files are "
                   "made once and used many times). Other backends take none.")
@click.option("--flow-scale", "scale", type=click.FloatRange(0, 1, min_open=True),
              default=default_of(pair_flows_video, "scale"), show_default=True,
              help="Compute on frames resized by S (0.5 is ~4x faster); the vectors are "
                   "brought back to the full size.")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)),
              default=default_of(pair_flows_video, "fmt"), show_default=True,
              help="; ".join(f"{k}: {v}" for k, v in FORMATS.items()) + ".")
@frame_range_options(pair_flows_video)
@click.option("--resume/--no-resume", default=default_of(pair_flows_video, "resume"),
              show_default=True,
              help="Skip videos, and pairs of an interrupted run, that the manifest shows done "
                   "with the same options and input (--no-resume redoes them).")
@progress_option
@click.pass_context
def flow(ctx: click.Context, inputs: tuple[Path, ...], out_dir: Path | None, **options):
    """Compute the optical flow of videos once, to blur them many times.

    Each INPUT is a video, or a folder whose video files are all used. For every pair (A, B)
    of consecutive frames used it writes the flow from A to B and from B to A, at the frames'
    size in their pixels, named by the input frame numbers:

    \b
      OUT/NAME/AAAAAA_BBBBBB.flo   (a(x) ~ b(x + f(x)); Middlebury .flo, or .npy)
      OUT/flow.jsonl               a record per pair as soon as it is written, one per
                                   video last: a re-run skips what is done

    `blursynth flowblur --flows OUT/{name}` then uses these flows instead of computing its
    own (with the same --start and --stride): worth it with a slow, accurate backend, or to
    make several exposures or decimations from one computation.

    \b
    Examples:
      blursynth flow clips/ --flow deepflow --out flows/
      blursynth flowblur clips/ --flows flows/{name} --exposure 1 --out e1/
      blursynth flowblur clips/ --flows flows/{name} --exposure 2 --out e2/

    Exits with status 1 if any video failed (the others are still processed).
    """
    videos = expand_inputs(inputs)
    if not videos:
        raise click.UsageError(f"no video files ({' '.join(VIDEO_SUFFIXES)}) in "
                               + ", ".join(str(p) for p in inputs))
    t0 = time.perf_counter()
    try:
        done, failed = pair_flows_videos(videos, out_dir, **options)
    except ParameterError as e:  # raised before any video: options that cannot go together
        raise click.UsageError(str(e), ctx) from None
    for rec in done:
        what = ("already done" if rec["resumed"] else
                f"{rec['pairs_computed']} pairs computed in {rec['seconds']:.1f} s")
        click.echo(f"{Path(rec['input']['path']).name}: {len(rec['pairs'])} pairs ({what}) "
                   f"-> {rec['folder']}")
    manifests = sorted({str(flows_folder(v, out_dir)[1]) for v in videos})
    click.echo(f"flow: {len(done)} of {len(videos)} videos done in "
               f"{time.perf_counter() - t0:.1f} s; manifest: {', '.join(manifests)}")
    for f in failed:
        click.echo(f"failed: {f['error']}", err=True)
    if failed:
        ctx.exit(1)
