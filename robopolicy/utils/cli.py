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
