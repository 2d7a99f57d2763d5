"""The ``charact`` command: one subcommand per stage.

Each stage module exposes ``register(subparsers)`` that adds its subcommand and sets
``func`` on the parser; the function takes the parsed arguments and returns an exit
status. User errors (:class:`charact.errors.UserError`) end in one line on stderr and
exit status 2, with nothing half-written; environment failures
(:class:`charact.errors.EnvironmentFailure`: ngspice or its shared library missing or
not runnable, results folder not writable) in one line and exit status 3.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

from charact import __version__
from charact.errors import EnvironmentFailure, UserError

#: Exit statuses besides 0 (a command's own, such as ``sweep``'s 1, are in its help).
EXIT_USER_ERROR = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM), as a shell reports a process it killed
EXIT_BROKEN_PIPE = 141  # stdout closed early (128 + SIGPIPE), as a shell reports it


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as for Ctrl-C: locks are
    released, workers stopped, finished work kept."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (an embedding program): leave it alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

# Modules that add subcommands, in the order they appear in ``charact --help``.
COMMAND_MODULES: list[str] = [
    "charact.commands.engine",
    "charact.commands.blocks",
    "charact.commands.column",
    "charact.commands.lookup",
    "charact.commands.rollup",
    "charact.commands.accuracy",
    "charact.commands.accuracy_text",
    "charact.commands.lm",
    "charact.commands.demo",
    "charact.commands.hier",
    "charact.commands.decode",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="charact",
        description="Characterize in-memory-computing attention hardware with SPICE "
        "and carry the results to accuracy and latency/energy.",
    )
    parser.add_argument("--version", action="version", version=f"charact {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _sigterm_unwinds():
            return int(args.func(args) or 0)
    except UserError as exc:
        print(f"charact: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except EnvironmentFailure as exc:
        # Its text may quote ngspice or the loader, line breaks included.
        print(f"charact: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except BrokenPipeError:
        # output piped into head and the like: the command stopped before it finished
        # (a sweep before its table), so the exit says so, as SIGPIPE would (128 + 13);
        # stdout goes to /dev/null so that the interpreter's own flush stays quiet
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Terminated:
        print(f"charact: terminated{_resume_hint(args)}", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"charact: interrupted{_resume_hint(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _resume_hint(args: argparse.Namespace) -> str:
    """What an interrupted command keeps: a sweep its finished jobs; others nothing."""
    if getattr(args, "command", None) == "sweep":
        return "; finished jobs are kept, rerun to resume"
    return ""


if __name__ == "__main__":
    sys.exit(main())
