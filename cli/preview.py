"""``blursynth preview``: a PNG contact sheet of a flowblur result (one library call)."""
from __future__ import annotations

from pathlib import Path

import click

from blursynth import preview as lib

from .common import default_of


SHORT = "PNG contact sheet of a flowblur result: sharp, blurry, flow, difference."


@click.command(context_settings={"max_content_width": 100},
               short_help=SHORT)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-n", "--frames", "n", type=click.IntRange(min=1),
              default=default_of(lib.preview, "n"), show_default=True,
              help="Rows: frames evenly spaced from the first output frame to the last.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="PNG to write. Default: NAME_preview.png beside the videos.")
def preview(path: Path, n: int, out: Path | None) -> None:
    """Look at a flowblur result: a PNG with one row per frame and the columns

    \b
      sharp | blurry | flow | difference

    where difference is |blurry - sharp| x4: black where nothing moved, bright along moving
    edges. A black difference column everywhere means no blur was added; one bright all
    over means the pair is misaligned. Wide frames are downscaled to keep the sheet about
    1600 px wide.

    PATH is NAME_blurry.mp4 (NAME_sharp.mp4 and NAME_flow.mp4 are found beside it) or a
    folder holding exactly one such set.
    """
    click.echo(lib.preview(path, n=n, out=out))
