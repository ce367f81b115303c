"""The ``deepshrink`` command: argument parsing and printing only; the work is in the library."""

from __future__ import annotations

import os
import sys
from typing import Sequence

from deepshrink import __version__
from deepshrink.cli import (bench, channel_sensitivity, decode, demo, early_exit_sweep, encode, evaluate, export,
                            import_pretrained, prune, quantize, report, run, sparse_opt, train)
from deepshrink.cli.args import Parser, flag_of, with_allowed_builders
from deepshrink.errors import ConfigError, UserError
from deepshrink.models.builders import BuilderNotAllowed

COMMANDS = (demo, train, evaluate, bench, import_pretrained, prune, report, sparse_opt, encode, decode, quantize, export, run,
            early_exit_sweep, channel_sensitivity)


def build_parser() -> Parser:
    parser = Parser(prog="deepshrink", description="Make convolutional networks really smaller and faster.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user mistakes exit with 2 and one line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(with_allowed_builders(args)) or 0
    except BuilderNotAllowed as exc:  # name the flag, not the API argument
        print(f"deepshrink: error: {exc.naming('--allow-builder {package}')}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # name the command's flag, not the config field
        print(f"deepshrink: error: {exc.naming(lambda field: flag_of(args, field))}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"deepshrink: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deepshrink: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`deepshrink report M | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file or folder the command could not read or write (permissions, a full disk)
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"deepshrink: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
