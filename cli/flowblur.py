"""``blursynth flowblur``: blurry/sharp video pairs from ordinary videos (one library call)."""
from __future__ import annotations

import time
from pathlib import Path

import click

from blursynth.crf import CRF_SPECS
from blursynth.flow import BACKENDS, DIS_PRESETS
from blursynth.flowblur import ACCURATE, INTERPOLATORS, FlowBlurParams
from blursynth.flowblur_video import FLOW_FORMATS, flowblur_video, flowblur_videos, output_paths

from .common import (VIDEO_SUFFIXES, build, dataclass_options, default_of, expand_inputs,
                     frame_range_options, progress_option)

_D = FlowBlurParams()

PARAM_HELP = {
    "exposure": "Exposure E in frame intervals of the output, 0 < E <= 2: 1 is a 360-degree "
                "shutter (open the whole frame time), 0.5 a 180-degree one; the original "
                "synthblur tool used about 2.",
    "decimate": "Input frames per output frame K, for high-frame-rate sources: 240 fps "
                "GoPro-like footage with --decimate 8 gives 30 fps output whose exposures span "
                "E x 8 input frames (the GoPro deblurring set averaged 7-13 such frames).",
    "crf": "Camera response used to linearise the input and encode the output: "
           + ", ".join(CRF_SPECS) + ".",
    "flow": "Optical flow backend: "
            + "; ".join(f"{k}: {v}" for k, v in BACKENDS.items()) + ".",
    "flow_preset": "Preset of the dis backend (" + ", ".join(DIS_PRESETS) + "); default "
                   "medium (with 12 instead of 25 gradient-descent iterations per patch on flow "
                   "grids of 360+ rows, and a patch every 6 instead of 3 px where that grid is "
                   "smaller than the frames: as accurate there, and faster), which at half "
                   "resolution is about as fast as fast at full size and better on motion "
                   "boundaries. Other backends take none.",
    "flow_scale": "Resolution of the flow, as a fraction of the frame size, 0 < S <= 1 "
                  "(half resolution is ~4x faster). Default: 0.5 for frames 720 px or more "
                  "on their shorter side, finer below that (up to 1) so the flow keeps 360 "
                  "rows.",
    "max_step": "Largest motion in pixels between two consecutive sub-frames: the number of "
                "sub-frames follows the motion, so no ghosting where things move fast and no "
                "wasted work where they do not.",
    "local_subframes": "Apply --max-step piece by piece: each 128-pixel piece of a row, away "
                       "from moving edges, gets only the sub-frames its own fastest motion "
                       "needs (static and slow regions cost less; on the occlusion benchmark "
                       "clip ~40% fewer samples).",
    "min_subframes": "Fewest sub-frames per input frame interval.",
    "max_subframes": "Most sub-frames per input frame interval (bounds the work on very fast "
                     "motion).",
    "scale": "Output size as a fraction of the input size, 0 < S <= 1 (resampled in linear "
             "light, which also lowers the noise of phone footage).",
    "scene_cut": "An interval where more than this fraction of pixels is unexplained by the flow "
                 "is a scene cut; exposures across a cut are skipped (1 disables detection).",
    "interp": "How sub-frames sample the frames: linear (shifted-linear, 2x2 samples), "
              "upsampled (bilinear in frames upsampled 2x with Keys' cubic: +0.1 to +2.2 dB "
              "over linear at 720p at ~7% less speed) or cubic (Keys, 4x4 samples: +1.4 "
              "to +5 dB, 1.6x the time at 720p). Default: cubic below 720 rows, upsampled "
              "from 720.",
    "iters": "Fixed-point iterations per sub-frame sample of the occlusion-aware warp. "
             "Default: 2 in pairs with flows at full size near moving edges "
             "(--fine-boundaries), else 1.",
    "tau": "Occlusion softness: warp residual, in pixels, at which a side's weight halves.",
    "snap_boundaries": "Where the flow ramps across a moving object's edge, give each pixel the "
                       "motion of one side or the other, whichever explains the neighbouring "
                       "frames better (in a clip's first pair, points about to be covered "
                       "take the motion of the surface behind them in the next pair, or of the "
                       "neighbour nearest in colour): +1.4 dB on the "
                       "occlusion benchmark at 720p, +2.3 dB at 360p; about 10% more time with "
                       "moving objects, 2% on a camera pan.",
    "refine_boundaries": "Recompute the flow around moving objects' edges and occlusions with "
                         "finer DIS matching (before snapping): +0.4 dB more on the occlusion "
                         "benchmark at 720p. The cost grows "
                         "with the moving edges: 720p, two moving objects: about 1.5x the time; "
                         "a camera pan: 1.1x.",
    "fine_boundaries": "Where the flow grid is smaller than the frames (720p and up) and "
                       "objects move over the background, snap the flow again at full size "
                       "near their edges, with the frame's affine motions as candidates, for "
                       "the occlusion-aware warp: the occlusion benchmark's worst tile at 720p "
                       "33.0 -> 36.0 dB; about 3.5x the time on clips with moving objects, nothing "
                       "on camera motion alone.",
}


@click.command(context_settings={"max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path),
                metavar="INPUT...")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (created). Default: beside each input.")
@dataclass_options(FlowBlurParams, PARAM_HELP, types={
    "flow": click.Choice(list(BACKENDS), case_sensitive=False),
    "flow_preset": click.Choice(list(DIS_PRESETS)),
    "flow_scale": click.FloatRange(0, 1, min_open=True),
    "interp": click.Choice(list(INTERPOLATORS)),
    "iters": click.IntRange(min=1),
})
@click.option("--accurate", is_flag=True,
              help="Shorthand for " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                              ACCURATE.items())
                   + " (options given explicitly win): 0.6-2.5 dB of mean above the default on the "
                     "720p benchmark scenes, at about 5 s of flow per 720p frame instead of "
                     "~30 ms.")
@frame_range_options(flowblur_video, "Use every N-th input frame (exposure is then measured "
                                     "in these frames).")
@click.option("--flow-files", type=click.Choice(list(FLOW_FORMATS)),
              default=default_of(flowblur_video, "flow_files"),
              help="Also write the flow from each centre frame to the next into NAME_flow/: "
                   + "; ".join(f"{k}: {v}" for k, v in FLOW_FORMATS.items()) + ".")
@click.option("--flows", type=click.Path(path_type=Path), metavar="DIR",
              help="Use flows computed elsewhere (by `blursynth flow`, or a flow network on a "
                   "GPU, say) instead of the --flow backend's: DIR holds AAAAAA_BBBBBB.flo (or .npy), the flow from "
                   "input frame A to frame B in input pixels, for both directions of every pair "
                   "of consecutive frames used; {name} in DIR stands for the input's name. The "
                   "flow is then used at full size unless --flow-scale is given.")
@click.option("--frames/--no-frames", default=default_of(flowblur_video, "frames"),
              show_default=True, help="Also write NAME_blurry/ and NAME_sharp/ PNG folders.")
@click.option("--subframes", type=click.IntRange(min=0), metavar="K",
              default=default_of(flowblur_video, "subframes"), show_default=True,
              help="Also write K evenly spaced sub-frames of every exposure to NAME_subframes/.")
@click.option("--quality", type=click.IntRange(0, 51), metavar="Q",
              default=default_of(flowblur_video, "quality"),
              help="Write lossy x264 videos at CRF Q (18 looks lossless, 23 is small) for a "
                   "quick look. Default: lossless.")
@click.option("--flow-video/--no-flow-video", default=default_of(flowblur_video, "flow_video"),
              show_default=True, help="Write NAME_flow.mp4, a colour picture of the motion (at --flow-scale).")
@click.option("--flow-vis-max", type=click.FloatRange(min=0, min_open=True),
              default=default_of(flowblur_video, "flow_vis_max"), show_default=True,
              help="Motion (pixels per input frame) at full colour in the flow video.")
@click.option("--resume/--no-resume", default=default_of(flowblur_video, "resume"),
              show_default=True,
              help="Skip videos the manifest shows finished with the same parameters and input "
                   "(--no-resume redoes them).")
@progress_option
@click.pass_context
def flowblur(ctx: click.Context, inputs: tuple[Path, ...], out_dir: Path | None, **options):
    """Synthesise motion blur from videos: sharp/blurry training pairs.

    Each INPUT is a video, or a folder whose video files (.mp4 .mkv .mov .avi .webm .m4v,
    not its subfolders) are all used. Between every two decoded frames, bidirectional optical
    flow rebuilds the scene at intermediate times (occlusion-aware); each output frame
    averages enough of these sub-frames, in linear light, to cover its exposure. For an input
    NAME.EXT it writes:

    \b
      NAME_blurry.mp4  the synthesised exposures
      NAME_sharp.mp4   the sharp target of each: the exposure's centre frame
      NAME_flow.mp4    the flow as colour at its own resolution (hue: direction,
                       saturation: speed; lossy)
      flowblur.jsonl   one record per frame and per video: parameters, input hash,
                       flow statistics. Written last: a re-run skips what is done.

    Videos are lossless (x264 RGB) by default because they are training data: lossy coding
    would add block artefacts and smooth the very blur a network learns from. With exposure
    1 and no decimation, a clip of N frames gives N-2 pairs (the first and last exposures
    would reach outside the clip).

    \b
    Examples:
      blursynth flowblur clips/ --out data/
      blursynth flowblur gopro240.mp4 --decimate 8 --out data/
      blursynth flowblur clip.mp4 --accurate --out data/
      blursynth flowblur a.mp4 --end 60 --quality 23 && blursynth preview a_blurry.mp4
      blursynth flowblur clips/ --flows raft/{name} --out data/

    Exits with status 1 if any video failed (the others are still processed).
    """
    values = {name: options.pop(name) for name in PARAM_HELP}
    if options.pop("accurate"):
        values.update({k: v for k, v in ACCURATE.items()
                       if ctx.get_parameter_source(k) is click.core.ParameterSource.DEFAULT})
    # Validates everything, the flow backend included, before any video is touched.
    params = build(FlowBlurParams, values, ctx)
    videos = expand_inputs(inputs)
    if not videos:
        raise click.UsageError(f"no video files ({' '.join(VIDEO_SUFFIXES)}) in "
                               + ", ".join(str(p) for p in inputs))
    t0 = time.perf_counter()
    done, failed = flowblur_videos(videos, out_dir, params, **options)
    for rec in done:
        src = Path(rec["input"]["path"])
        outs = ", ".join(str(p) for p in rec["outputs"])
        if rec["resumed"]:
            click.echo(f"{src.name}: already done, {rec['frames_out']} frames -> {outs}")
        else:
            fps = rec["frames_out"] / max(rec["seconds"], 1e-9)
            cuts = (f" ({rec['frames_skipped']} skipped: scene cut inside the exposure)"
                    if rec["frames_skipped"] else "")
            click.echo(f"{src.name}: {rec['frames_out']} frames{cuts} in {rec['seconds']:.1f} s "
                       f"({fps:.1f} frames/s) -> {outs}")
    manifests = sorted({str(output_paths(v, out_dir)["manifest"]) for v in videos})
    resumed = sum(r["resumed"] for r in done)
    click.echo(f"flowblur: {len(done)} of {len(videos)} videos done"
               + (f" ({resumed} already done before)" if resumed else "")
               + f", {sum(r['frames_out'] for r in done)} frames in "
               f"{time.perf_counter() - t0:.1f} s; manifest: {', '.join(manifests)}")
    for f in failed:
        click.echo(f"failed: {f['error']}", err=True)
    if failed:
        ctx.exit(1)
