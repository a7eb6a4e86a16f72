"""The ``medimg`` command.

User errors (:class:`~medimg.errors.MedimgError`) print one line on stderr and exit with code 2; any other
exception is a bug and keeps its traceback (exit code 1).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from medimg._version import __version__
from medimg.cli import parsers, uncertainty
from medimg.cli.commands import EXIT_USER_ERROR, run_lightning
from medimg.cli.listen import add_listen
from medimg.cli.pacs import add_pacs
from medimg.errors import MedimgError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``medimg`` parser: one function per sub-command in :mod:`medimg.cli.parsers`."""
    parser = argparse.ArgumentParser(prog="medimg", description="Medical imaging research workspace.")
    parser.add_argument("--version", action="version", version=f"medimg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        parsers.add_scan,
        parsers.add_convert,
        parsers.add_segment,
        parsers.add_export,
        parsers.add_classify,
        parsers.add_explain,
        parsers.add_plan,
        parsers.add_evaluate,
        parsers.add_runs,
    ):
        add(sub)
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} (see `medimg {name} --help`)", add_help=False)
    parsers.add_adapt(sub)
    uncertainty.add_calibrate(sub)
    parsers.add_demo(sub)
    add_pacs(sub)
    add_listen(sub)
    return parser


LIGHTNING_COMMANDS = ("fit", "validate", "test")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        return run_lightning(argv)
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except MedimgError as exc:
        print(f"medimg: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("medimg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
