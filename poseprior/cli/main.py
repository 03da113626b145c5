"""The ``poseprior`` command line.

:func:`build_parser` assembles the parser from the ``add_parser(subparsers)`` function of every
command module (:data:`COMMANDS`, in the order ``--help`` lists them); :func:`main` runs one
command and turns the errors a user can cause into a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module

from ..errors import PosePriorError

COMMANDS = (
    "list", "demo", "train", "eval", "sample", "convert", "export", "bench",
    "import_vposer", "import_smplify_gmm",
)  # fmt: skip
"""The command modules of :mod:`poseprior.cli`, one per command."""


def build_parser() -> argparse.ArgumentParser:
    """The ``poseprior`` argument parser with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="poseprior", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        import_module(f"{__package__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``poseprior`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed by argparse
        return e.code if isinstance(e.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that went away (poseprior list | head -1) shows up here
    except BrokenPipeError:
        _discard_stdout()
        return 1
    # Mistakes in the user's input (options, files, checkpoints, values) end as one line, not a
    # traceback: poseprior's own errors, the ValueErrors of the libraries it calls, and paths that
    # cannot be read or written.
    except (PosePriorError, ValueError) as e:
        _error(args.command, str(e))
        return 2
    except OSError as e:  # of a rename, filename2 is the destination: the path the user gave
        path = e.filename2 or e.filename
        _error(args.command, f"{e.strerror}: {str(path)!r}" if path and e.strerror else str(e))
        return 2
    return code


def _error(command: str, message: str) -> None:
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"poseprior {command}: error: {message}", file=sys.stderr)


def _discard_stdout() -> None:
    """Points stdout at /dev/null, so that the interpreter's last flush does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a file descriptor (captured, in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
