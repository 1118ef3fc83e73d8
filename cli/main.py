"""The ``blursynth`` command: global options, the list of subcommands, and error reporting."""
from __future__ import annotations

import importlib
import sys
import traceback

import click

from blursynth import __version__
from blursynth.errors import BlursynthError
from blursynth.log import setup_logging

#: Subcommand name -> "module:attribute" of its click command, in pipeline order. Adding a
#: command is one line here; its module is imported only when the command is used (or listed
#: by --help), so a heavy dependency of one command does not slow down the others.
COMMANDS = {
    "demo": "blursynth_cli.demo:demo",
    "fetch": "blursynth_cli.fetch:fetch",
    "flow": "blursynth_cli.flow:flow",
    "flowblur": "blursynth_cli.flowblur:flowblur",
    "preview": "blursynth_cli.preview:preview",
    "segblur": "blursynth_cli.segblur:segblur",
    "kernels": "blursynth_cli.kernels:kernels",
    "shake": "blursynth_cli.shake:shake",
    "pack": "blursynth_cli.pack:pack",
    "check": "blursynth_cli.check:check",
}

INTERRUPTED = ("interrupted: finished outputs are kept and nothing partial was left under a "
               "final name; run the same command again to resume")


class _Group(click.Group):
    """Loads subcommands from COMMANDS and reports library errors as one line, exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BlursynthError as e:
            if (ctx.obj or {}).get("verbosity", 0) > 0:
                traceback.print_exc()
            raise click.ClickException(str(e)) from e


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.option("-v", "--verbose", count=True,
              help="More detail: debug messages, and the traceback of an error (-v).")
@click.option("-q", "--quiet", is_flag=True,
              help="Warnings and errors only; no progress bars.")
@click.version_option(__version__, "--version", prog_name="blursynth")
@click.pass_context
def blursynth(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Realistic motion-blur training data from videos.

    \b
    Start with:  blursynth demo          (a clip with known motion, its synthetic blur,
                                          a preview sheet and the error against the truth)
    Pipeline:    blursynth fetch URL... --out videos/
                 blursynth flowblur videos/ --out clips/      (blur from video)
                 blursynth flow videos/ --out flows/   (optional: flow once for several
                      flowblur runs, each with --flows flows/{name})
                 blursynth segblur --coco ANN --images DIR --out pairs/   (blur from photos)
                 blursynth shake clips/ --out shaken/          (optional camera shake)
                 blursynth pack clips/ --lmdb train.lmdb       (or --layout NAME OUT)
                 blursynth check NAME OUT                      (what a trainer would get wrong)

    Every command's --help explains its options. Outputs are written atomically and recorded
    in a JSON Lines manifest, so an interrupted run resumes where it stopped.
    """
    verbosity = -1 if quiet and not verbose else verbose
    ctx.obj = {"verbosity": verbosity}
    setup_logging(verbosity)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the group; exit 1 with ``Error: ...`` on a library error, 130
    on Ctrl-C."""
    try:
        rv = blursynth.main(args=argv, prog_name="blursynth", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort as e:
        if isinstance(e.__cause__, KeyboardInterrupt):
            click.echo(INTERRUPTED, err=True)
            sys.exit(130)
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except BlursynthError as e:  # raised outside a subcommand (e.g. while parsing)
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
