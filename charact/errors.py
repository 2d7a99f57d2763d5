"""Errors the command line reports as one line, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for: bad spec, missing file, unknown name.

    The CLI prints ``charact: error: <message>`` and exits with status 2.
    Everything else is a bug and keeps its traceback.
    """


class EnvironmentFailure(Exception):
    """The machine cannot run jobs: the simulator or its shared library is missing or
    does not start, or the results or work folders cannot be written (full disk,
    permissions).

    Never stored as a job's result: it would be the same for every job. A sweep stops
    (finished jobs are kept) and the CLI prints ``charact: error: <message>`` and exits
    with status 3.
    """


class SimulatorMissing(EnvironmentFailure):
    """ngspice (or its shared library) is not installed, not found or does not run."""
