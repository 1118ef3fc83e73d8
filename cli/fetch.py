"""``blursynth fetch``: collect source videos from URLs, list files and local folders (one call)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from blursynth.errors import ParameterError
from blursynth.fetch import PARTIAL_DIR, fetch as fetch_videos
from blursynth.sources import parse_section

from .common import default_of, progress_option


class SectionType(click.ParamType):
    """``START-END`` (seconds or ``[H:]MM:SS``, either side may be empty) -> ``(start, end)``."""

    name = "START-END"

    def convert(self, value: Any, param, ctx) -> tuple[float | None, float | None]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_section(value)
        except ParameterError as e:
            self.fail(str(e), param, ctx)


@click.command(context_settings={"max_content_width": 100})
@click.argument("sources", nargs=-1, metavar="[URL|PATH]...")
@click.option("--from", "lists", multiple=True, type=click.Path(path_type=Path), metavar="FILE",
              help="A list of sources (repeatable): .txt one URL or path per line; .csv with "
                   "a header url[,start,end,tags]; .yaml a list of URLs or {url, start, end, "
                   "tags}. '#' starts a comment; relative paths are relative to the list.")
@click.option("-o", "--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: the videos, the manifest fetch.jsonl and .partial/.")
@click.option("--max-height", type=click.IntRange(min=1), metavar="H",
              help="Take the tallest format up to H pixels (e.g. 720, 1080).")
@click.option("--min-fps", type=click.FloatRange(min=0, min_open=True), metavar="F",
              help="Take only formats of at least F frames per second (high rates make "
                   "better blur). Videos below it are skipped.")
@click.option("--section", type=SectionType(),
              help="Download only START-END of each URL without its own start/end "
                   "(seconds or [H:]MM:SS, e.g. 1:00-1:30 or 90-); cut exactly with ffmpeg.")
@click.option("--license", "license", multiple=True, metavar="TEXT",
              help="Keep only URLs whose reported licence contains TEXT (case-insensitive; "
                   "'cc' means Creative Commons; repeatable: any match). Videos reporting no "
                   "licence are skipped. Local files are not filtered.")
@click.option("--workers", type=click.IntRange(min=1), default=default_of(fetch_videos, "workers"),
              show_default=True, help="Sources fetched at the same time.")
@click.option("--retries", type=click.IntRange(min=0), default=default_of(fetch_videos, "retries"),
              show_default=True,
              help="Retries of a transient error (connection refused or reset, timeout, HTTP "
                   "429/5xx, a transfer cut short), after 2, 4, 8 ... s. A 404 or a page "
                   "without a video is not retried.")
@click.option("--overwrite", is_flag=True,
              help="Forget the manifest and partial downloads and fetch everything again.")
@progress_option
@click.pass_context
def fetch(ctx: click.Context, sources: tuple[str, ...], lists: tuple[Path, ...], out_dir: Path,
          license: tuple[str, ...], **options):
    """Collect source videos with yt-dlp, resumably, with provenance and licences.

    URL is anything yt-dlp reads (video pages, direct links, playlists); PATH a local video
    file or folder (searched recursively), hashed and hard-linked (or copied) into OUT.
    Formats: video only, H.264 in MP4 preferred, then any video-only format, then the best
    format with video.

    Each video gets a record in OUT/fetch.jsonl: URL and site id, title, uploader, licence as
    reported, duration, size, fps, frame count, codec, SHA-256 and time, or why it failed or
    was skipped. Re-running the same command skips what is there (without network) and resumes
    downloads cut off midway; duplicates are skipped.

    \b
    Examples:
      blursynth fetch https://example.org/clip.mp4 --out videos/
      blursynth fetch --from examples/seed_videos.txt --out videos/ --max-height 1080
      blursynth fetch --from list.csv --out videos/ --license cc --min-fps 50
      blursynth fetch ~/footage/ --out videos/

    Exits with status 1 if any source failed (the others are still fetched).
    """
    if not sources and not lists:
        raise click.UsageError("give URLs or paths, or --from FILE")
    result = fetch_videos(sources, out_dir, lists=lists, license=license or None, **options)
    click.echo(f"fetch: {len(result['done'])} downloaded, {len(result['resumed'])} already "
               f"there, {len(result['skipped'])} skipped, {len(result['failed'])} failed in "
               f"{result['seconds']:.1f} s -> {result['out']}")
    click.echo(f"  manifest: {result['manifest']}")
    if (out_dir / PARTIAL_DIR).is_dir():
        click.echo(f"  unfinished downloads are kept in {out_dir / PARTIAL_DIR}: run the same "
                   "command again to resume them")
    for s in result["skipped"]:
        click.echo(f"skipped: {s['item']}: {s['reason']}", err=True)
    for f in result["failed"]:
        click.echo(f"failed: {f['error']}", err=True)
    if result["failed"]:
        ctx.exit(1)

