"""Helpers shared by the command modules: options from library signatures, inputs, errors."""
from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import click

from blursynth.errors import ParameterError
from blursynth.video import VIDEO_SUFFIXES

log = logging.getLogger("blursynth")

#: Names flowblur gives its outputs (NAME + suffix + extension); see expand_inputs.
_OUTPUT_TAGS = ("_blurry", "_sharp", "_flow")


def default_of(func: Callable, name: str) -> Any:
    """The default of keyword ``name`` of ``func``: options take it from the library."""
    return inspect.signature(func).parameters[name].default


#: ``--progress/--no-progress`` -> ``show_progress`` (None: decide from the terminal and -q).
progress_option = click.option(
    "--progress/--no-progress", "show_progress", default=None,
    help="Progress bar. Default: when stderr is a terminal and not -q.")


def frame_range_options(func: Callable, stride_help: str = "Use every N-th input frame."
                        ) -> Callable:
    """Decorator adding ``--start``, ``--end`` and ``--stride`` (the input frames used), with
    the defaults of library function ``func``."""
    options = [
        click.option("--start", type=click.IntRange(min=0), default=default_of(func, "start"),
                     show_default=True, help="First input frame used."),
        click.option("--end", type=click.IntRange(min=1), default=default_of(func, "end"),
                     help="Input frame to stop before (exclusive). Default: the end of the "
                          "video."),
        click.option("--stride", type=click.IntRange(min=1), default=default_of(func, "stride"),
                     show_default=True, help=stride_help),
    ]

    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def dataclass_options(cls: type, helps: dict[str, str],
                      types: dict[str, click.ParamType] | None = None) -> Callable:
    """Decorator adding one ``--field-name`` option per field of dataclass ``cls``.

    Each option is named after its field (underscores become dashes), defaulted to the field's
    default (shown in ``--help``), typed like that default unless ``types`` says otherwise, and
    documented by ``helps[field]``: a new field without help text fails at import, so a field
    can never be left out of the command line silently.
    """
    types = types or {}

    def decorate(f: Callable) -> Callable:
        for fld in reversed(dataclasses.fields(cls)):
            default = fld.default
            name = fld.name.replace("_", "-")
            if isinstance(default, bool):  # a switch: --name/--no-name
                f = click.option(f"--{name}/--no-{name}", fld.name, default=default,
                                 show_default=True, help=helps[fld.name])(f)
                continue
            kind = types.get(fld.name, type(default) if default is not None else str)
            f = click.option(f"--{name}", fld.name, type=kind,
                             default=default, show_default=True, help=helps[fld.name])(f)
        return f

    return decorate


def _hint(message: str, cls: type) -> list[str] | None:
    """The options a library ParameterError message is about ("exposure: expected ...")."""
    m = re.match(r"[A-Za-z_/]+", message)
    if not m:
        return None
    names = [f.name for f in dataclasses.fields(cls)]
    hits = []
    for word in m.group().split("/"):
        # "subframes: ..." is about both min_subframes and max_subframes.
        hits += [word] if word in names else [n for n in names if n.endswith("_" + word)]
    return [f"--{n.replace('_', '-')}" for n in hits] or None


def build(cls: type, values: dict, ctx: click.Context | None = None) -> Any:
    """``cls(**values)``, turning the library's validation error into a usage error (exit 2)
    that names the option."""
    try:
        return cls(**values)
    except ParameterError as e:
        raise click.BadParameter(str(e), ctx=ctx, param_hint=_hint(str(e), cls)) from None


def expand_inputs(paths: Iterable[Path]) -> list[Path]:
    """Files as given; folders replaced by the video files directly inside them, sorted.

    Missing paths are kept, so the batch reports each one as a failure and goes on. In a
    folder, hidden files (temporaries) are skipped, and so are flowblur outputs
    (``NAME_blurry.mp4`` ...) sitting beside their source ``NAME.*``: with the default output
    folder (beside the input) a second run would otherwise take its own outputs as inputs.
    """
    out: list[Path] = []
    for p in paths:
        if not p.is_dir():
            out.append(p)
            continue
        videos = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                        and q.suffix.lower() in VIDEO_SUFFIXES)
        stems = {q.stem for q in videos}
        own = [q for q in videos
               if any(q.stem.endswith(t) and q.stem[:-len(t)] in stems for t in _OUTPUT_TAGS)]
        if own:
            log.info("%s: skipping %d flowblur outputs (%s, ...)", p, len(own), own[0].name)
        videos = [q for q in videos if q not in own]
        if not videos:
            log.warning("%s: no video files (%s) in this folder", p, " ".join(VIDEO_SUFFIXES))
        out += videos
    return out


class SizeType(click.ParamType):
    """``HxW`` (e.g. ``360x640``) -> ``(height, width)``."""

    name = "HxW"

    def convert(self, value: Any, param, ctx) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
        if not m:
            self.fail(f"expected HEIGHTxWIDTH in pixels, e.g. 360x640, got {value!r}", param, ctx)
        return int(m.group(1)), int(m.group(2))


class RangeType(click.ParamType):
    """``X`` -> X, or ``LO:HI`` / ``LO,HI`` -> ``(LO, HI)``: a range drawn uniformly per item.

    With ``pair=True`` a single value X gives ``(X, X)``, so the result is always a pair.
    """

    name = "X|LO:HI"

    def __init__(self, pair: bool = False):
        self.pair = pair

    def convert(self, value: Any, param, ctx) -> float | tuple[float, float]:
        if isinstance(value, tuple) or (isinstance(value, (int, float)) and not self.pair):
            return value
        try:
            parts = [float(v) for v in re.split(r"[:,]", str(value))]
        except ValueError:
            parts = []
        if len(parts) not in (1, 2):
            self.fail(f"expected a number or a range LO:HI, got {value!r}", param, ctx)
        if len(parts) == 1 and not self.pair:
            return parts[0]
        return parts[0], parts[-1]
