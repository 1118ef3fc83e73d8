"""``blursynth check``: what a trainer would silently get wrong in a dataset tree."""
from __future__ import annotations

from pathlib import Path

import click

from blursynth.formats.check import check_layout
from blursynth.formats.layouts import LAYOUTS

SHORT = "Check a dataset tree against its trainer's rules; print what would silently fail."

HELP = f"""{SHORT}

LAYOUT is the trainer the tree at PATH is for (PATH as written by pack --layout):

\b
""" + "\n".join(f"  {k:<6} {lay.description}" for k, lay in LAYOUTS.items()) + """

Each trainer lists and pairs frames by its own rule; a tree that is slightly off rarely makes
it fail loudly: it pairs the wrong frames, skips videos, reads a stray file as a frame or loops
forever. The check applies that rule and prints one line per problem, 'error: PATH: message'
or 'warning: ...', saying what the trainer would do; a rule that hits many files of one folder
is printed once with the count. Errors are pairs the trainer gets wrong, data it loses or a
failure; warnings are data it wastes or crops.

Exits with status 1 if there is any error.
"""


@click.command(context_settings={"max_content_width": 100}, help=HELP, short_help=SHORT)
@click.argument("layout", type=click.Choice(list(LAYOUTS), case_sensitive=False))
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_context
def check(ctx: click.Context, layout: str, path: Path) -> None:
    problems = check_layout(layout, path)
    for p in problems:
        click.echo(str(p))
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if problems:
        click.echo(f"check {layout}: {errors} error{'s' * (errors != 1)}, {warnings} "
                   f"warning{'s' * (warnings != 1)} in {path}")
    else:
        click.echo(f"check {layout}: {path} is read as intended (no problems found)")
    if errors:
        ctx.exit(1)
