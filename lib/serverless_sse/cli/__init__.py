"""The ``serverless-sse`` command line: one subcommand per module of this package.

Adding a subcommand: write ``serverless_sse/cli/<name>.py`` with ``register(subparsers)``
(which adds its parser and sets ``run``) and ``run(args) -> int`` (the exit status), then add
the module's name to :data:`COMMANDS`. Modules import only :mod:`argparse` at the top and the
rest inside ``run``, so ``serverless-sse --help`` stays fast whatever the commands need.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = ("serve", "tail", "publish", "token", "create_table")
"""Modules of this package, one per subcommand, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serverless-sse",
        description=(
            "Resumable Server-Sent Events: run the service, follow and publish events, create "
            "the DynamoDB table."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`serverless-sse tail ... | head`): not an error of ours.
        sys.stderr.close()
        return 0
    return status
