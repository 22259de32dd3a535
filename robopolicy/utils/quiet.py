"""Quiet by default: third-party libraries' chatter is dropped unless the program runs with
``verbose=true`` (robopolicy/config/console.py). robopolicy's own messages and warnings, and every
library's errors, always show.

A program calls ``set_verbosity`` at start, before those libraries are imported (from its command
line: ``verbose_requested``), and again with its composed config. The choice also goes into the
environment, so that the worker processes it spawns (which start unfiltered) apply it too: their
entry points are wrapped by ``inheriting``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from collections.abc import Callable
from typing import Any

VERBOSE_VARIABLE = "ROBOPOLICY_VERBOSE"  # "1" (verbose) or "0" (quiet): the program's choice,
#   read by its worker processes
TRUE_SPELLINGS = ("true", "yes", "on", "1")  # `verbose=VALUE` on a command line that means true
#   (as OmegaConf reads a bool); any other value leaves the choice to the composed config

QUIET_LOGGERS = (  # loggers whose records below ERROR are dropped when quiet
    "robosuite_logs",  # robosuite (robosuite/utils/log_utils.py): the private macro file, missing
    #   optional packages, controller parts a Panda lacks; robosuite sets this logger's level and
    #   adds its own stderr handler at import, which a filter on the logger survives
    "OpenGL",  # PyOpenGL
    "OpenGL.acceleratesupport",  # "No OpenGL_accelerate module loaded" (INFO); a logger's filter
    #   sees only its own records, not its children's, so the child is named too
)
QUIET_WARNINGS = (  # Python warnings (category, module regex) ignored when quiet
    (UserWarning, r"metaworld\."),  # Meta-World's scripted policies: "Constant(s) may be too high"
)


def _below_error(record: logging.LogRecord) -> bool:
    """A logging filter: keep a record only if it is an error (or worse)."""
    return record.levelno >= logging.ERROR


def _warning_entries() -> list[tuple]:
    """QUIET_WARNINGS as the entries ``warnings.filterwarnings("ignore", ...)`` makes."""
    return [
        ("ignore", None, category, re.compile(module), 0) for category, module in QUIET_WARNINGS
    ]


def set_verbosity(verbose: bool) -> None:
    """Show everything (``verbose``), or drop the QUIET_LOGGERS' records below ERROR and ignore
    the QUIET_WARNINGS; in this process and in the workers it starts from now on. Calling it
    again replaces the earlier choice."""
    os.environ[VERBOSE_VARIABLE] = "1" if verbose else "0"
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)  # the same object the library gets when it imports
        if verbose:
            logger.removeFilter(_below_error)
        else:
            logger.addFilter(_below_error)  # once: a filter already there is not added again
    ours = _warning_entries()
    # filterwarnings puts its entry first (moving it there if present), so the list holds one of
    # each; removing it lets the warning through to the filters after it again
    warnings.filters[:] = [entry for entry in warnings.filters if entry not in ours]
    if not verbose:
        for category, module in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", category=category, module=module)


def verbose_requested(argv: list[str]) -> bool:
    """Whether the command line ``argv`` (Hydra overrides) sets ``verbose`` to true; the last
    ``verbose=VALUE`` (or ``++verbose=VALUE``) counts."""
    values = [arg.split("=", 1)[1] for arg in argv if arg.lstrip("+").startswith("verbose=")]
    return bool(values) and values[-1].strip().lower() in TRUE_SPELLINGS


def inherit_verbosity() -> None:
    """In a worker process: apply the verbosity of the program that started it (none chosen, as
    when the library is used on its own: change nothing)."""
    choice = os.environ.get(VERBOSE_VARIABLE)
    if choice is not None:
        set_verbosity(choice == "1")


def inheriting(function: Callable[..., Any], *args: Any) -> Callable[..., Any]:
    """``functools.partial(function, *args)`` that calls ``inherit_verbosity`` first: a worker
    process's entry point (a pool initializer, a vector env's env factory); picklable when
    ``function`` and ``args`` are."""
    return functools.partial(_call_inheriting, function, *args)


def _call_inheriting(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    inherit_verbosity()
    return function(*args, **kwargs)
