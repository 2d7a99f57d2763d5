"""Errors the command line reports as one line, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for: bad spec, missing file, unknown name.

    The CLI prints ``charact: error: <message>`` and exits with status 2.
    Everything else is a bug and keeps its traceback.
    """


class SimulatorMissing(UserError):
    """ngspice is not installed or not on PATH."""
