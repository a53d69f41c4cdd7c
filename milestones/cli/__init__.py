"""The ``milestones`` command line: one module per command or group of commands, each registering its own parser
(``PARSERS``) and calling the library; the options several commands share are declared once in :mod:`.options`.
Building the parser imports no torch, so ``--help`` is quick. Every user error ends in one line on stderr and exit
status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import MilestonesError
from . import bench, checkpoints, compare, experiment, models, serve, train, viz
from .options import Parser

COMMANDS = ("list", "info", "train", "finetune", "features", "compare", "recipes", "experiment", "eval", "predict",
            "serve", "viz", "convert", "report", "bench", "export")
"""The commands in the order ``--help`` lists them."""

PARSERS = {**models.PARSERS, **train.PARSERS, **checkpoints.PARSERS, **compare.PARSERS, **experiment.PARSERS,
           **serve.PARSERS, **viz.PARSERS, **bench.PARSERS}


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="milestones", description="Landmark image classifiers, faithful and measured.")
    p.add_argument("--version", action="version", version=f"milestones {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="one of these ('milestones COMMAND --help' shows its options)")
    for name in COMMANDS:
        PARSERS[name](sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from ..progress import show_progress, tqdm_bars

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with show_progress(None if getattr(args, "no_progress", False) else tqdm_bars):
        return dispatch(parser, args, extra)


def dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Run the command's handler; a :class:`~milestones.errors.MilestonesError` becomes one line and exit 2."""
    try:
        if getattr(args, "takes_overrides", False):  # train, finetune: extra --section.key=value arguments
            return args.handler(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return args.handler(args)
    except MilestonesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
