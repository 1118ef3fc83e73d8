"""``blursynth demo``: a clip with known motion, its synthetic blur, and the error (one call)."""
from __future__ import annotations

from pathlib import Path

import click

from blursynth.demo import run_demo

from .common import SizeType, default_of


SHORT = "Blur a clip with known motion; preview it and measure the error (start here)."


@click.command(context_settings={"max_content_width": 100},
               short_help=SHORT)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo"), show_default=True, help="Folder for everything it makes.")
@click.option("--size", type=SizeType(), metavar="HxW", default=default_of(run_demo, "size"),
              help="Frame size in pixels, height x width.  [default: "
                   + "x".join(map(str, default_of(run_demo, "size"))) + "]")
@click.option("--frames", "n_frames", type=click.IntRange(min=3),
              default=default_of(run_demo, "n_frames"), show_default=True,
              help="Frames in the clip (gives frames - 2 blurry frames).")
def demo(out_dir: Path, size: tuple[int, int], n_frames: int) -> None:
    """See what blursynth makes, and how close it is to the truth, in well under a minute.

    Renders a clip whose motion is known exactly (a background of real photos panning, two
    discs cut from photos crossing, one passing in front of the other), synthesises its blur
    with the default flowblur settings, writes a preview sheet, and compares three
    synthesised frames with the exact blur: the scene itself integrated over the same
    exposure. PSNR of the sharp frame against that truth is shown alongside, as the score of
    adding no blur at all.
    """
    r = run_demo(out_dir, size=size, n_frames=n_frames)
    s = r["seconds"]
    click.echo(f"clip:     {r['clip']}  ({size[0]}x{size[1]}, {n_frames} frames, "
               f"rendered in {s['clip']:.1f} s)")
    click.echo(f"flowblur: {r['frames_out']} frames in {s['flowblur']:.1f} s -> "
               f"{r['blurry']}, {r['sharp']}, {r['flow_video']}")
    click.echo(f"manifest: {r['manifest']}")
    click.echo(f"preview:  {r['preview']}")
    for c in r["checked"]:
        click.echo(f"  frame {c['output_index']:3d} (centre {c['centre_frame']:3d}): blurry vs "
                   f"true blur {c['psnr']:.2f} dB   (sharp vs true blur {c['psnr_sharp']:.2f} dB)")
    click.echo(f"PSNR against the true blur: {r['psnr_mean']:.2f} dB mean "
               f"(no blur at all: {r['psnr_sharp_mean']:.2f} dB); total {s['total']:.1f} s")
