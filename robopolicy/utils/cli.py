"""Entry-point error handling: bad input ends a command with one line, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf.errors import OmegaConfBaseException

# What a user's input (config, dataset, checkpoint) can be wrong with; anything else is a bug and
# keeps its traceback. ValueError covers DatasetError and CheckpointError, its subclasses (named
# by the base class so that this leaf module imports nothing of robopolicy).
# ConnectionError: a robot server or a real arm that cannot be reached (the message names it).
USER_ERRORS = (ValueError, ConnectionError, OmegaConfBaseException)


class JobFailed(ValueError):
    """A user error in one job of a multirun sweep (``train.py -m``), raised rather than an
    exit: the launcher records that job as failed and runs the others (an exit would end a
    sweep of in-process jobs at the first bad one); the sweep reports it in one line at the end
    (``robopolicy_cli.command.run_in_run_dir``)."""


def run_reporting_errors(program: str, job: Callable[[], Any]) -> Any:
    """Run ``job``; on a user error print ``<program>: error: <message>`` and exit with code 2.

    ``ROBOPOLICY_TRACEBACK=1`` re-raises instead, for debugging.
    """
    try:
        return job()
    except USER_ERRORS as error:
        if os.environ.get("ROBOPOLICY_TRACEBACK"):
            raise
        message = " ".join(str(error).split("\n"))  # one line, whatever the message holds
        print(f"{program}: error: {message}", file=sys.stderr)
        sys.exit(2)
