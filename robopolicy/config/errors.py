"""Hydra's and OmegaConf's config errors as one ``ConfigError`` line naming the key and value.

Hydra reports a bad command line before the program's own code runs, over 10-20 lines (the
config search path, a hint about HYDRA_FULL_ERROR) or a traceback from inside OmegaConf. The
entry points call their Hydra main through ``run_hydra_main``, which turns these into one line:

- a group option that does not exist (``policy=difusion``): the valid choices;
- a key that does not exist (``algo.lrr=1``): the keys the node has;
- a value of the wrong type (``algo.lr=abc``, ``amp=maybe``): the type expected;
- an override Hydra cannot parse, and anything else: Hydra's first line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import (
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from robopolicy.config.checks import ConfigError
from robopolicy.utils.cli import run_reporting_errors

# the programs' own configs (conf/<name>.yaml); an error in any other file names it
PRIMARY_CONFIGS = ("config", "eval", "collect", "inspect", "convert", "teleop", "server")

# OmegaConf's conversion messages -> what the key expects
_EXPECTED = (
    ("could not be converted to Integer", "expected an integer"),
    ("could not be converted to Float", "expected a number"),
    ("is not a valid bool", "expected true or false"),
    ("is not Optional", "expected a value, not null"),
    ("is not a ListConfig, list or tuple", "expected a list, e.g. [a, b]"),
    ("Cannot assign", "expected a mapping of keys to values"),
    ("Cannot merge DictConfig with ListConfig", "expected a mapping of keys to values"),
    ("is not a subclass of", "expected a mapping of its keys, not a single value"),
)


def run_hydra_main(program: str, main: Callable[[], Any]) -> Any:
    """Call ``main`` (a ``@hydra.main`` function) so that Hydra's own errors, which it reports
    before the program's code runs, end the command like the program's: one line,
    ``<program>: error: <message>``, exit code 2 (``run_reporting_errors``).

    Hydra raises them instead of printing them when HYDRA_FULL_ERROR is set, so it is set here;
    a user who set it (or ROBOPOLICY_TRACEBACK=1) gets Hydra's exception and its stack.
    """
    want_stack = bool(os.environ.get("HYDRA_FULL_ERROR") or os.environ.get("ROBOPOLICY_TRACEBACK"))
    os.environ["HYDRA_FULL_ERROR"] = "1"

    def job() -> Any:
        _check_output_dirs(sys.argv[1:])
        try:
            return main()
        except (HydraException, OmegaConfBaseException) as error:
            if want_stack:
                raise
            raise config_error(error) from None

    return run_reporting_errors(program, job)


def _check_output_dirs(overrides: list[str]) -> None:
    """Hydra creates its run directory before the program's code runs, and an existing file in
    its place would end that in a traceback: refuse it in one line instead."""
    for item in overrides:
        key, _, value = item.lstrip("+").partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and Path(value).is_file():
            raise ConfigError(key, value, "is a file; expected a directory to write the run to")


def config_error(error: Exception) -> ConfigError:
    """The one-line ``ConfigError`` for a Hydra or OmegaConf exception."""
    if isinstance(error, MissingConfigException):
        return _missing_config(error)
    if isinstance(error, OverrideParseException):
        lines = [line for line in error.message.splitlines() if line.strip()]
        detail = lines[1:2] if lines[0].startswith("Error parsing override") else lines[:1]
        reason = detail[0].strip() if detail else lines[0]
        return ConfigError.line(f"{error.override}: cannot parse this override ({reason})")
    cause = error.__cause__ if isinstance(error, HydraException) else error
    if isinstance(cause, OmegaConfBaseException):
        return _omegaconf_error(cause, str(error))
    return ConfigError.line(_first_line(str(error)))


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _missing_config(error: MissingConfigException) -> ConfigError:
    missing = error.missing_cfg_file or "?"
    parent = re.match(r"In '([^']+)': ", str(error))
    nested = parent is not None and parent.group(1) not in PRIMARY_CONFIGS
    nested = nested and not parent.group(1).startswith("hydra/")  # Hydra's own config groups
    where = f" (in conf/{parent.group(1)}.yaml)" if nested else ""
    if error.options is None:  # a config named by path, not a group option
        schema = "schema/" in missing
        hint = " (the schemas register on `import robopolicy.config`)" if schema else ""
        return ConfigError.line(f"Could not load '{missing}'{where}{hint}")
    group, _, name = missing.rpartition("/")
    choices = ", ".join(error.options)
    return ConfigError.line(
        f"{group}={name}: Could not find '{missing}'{where}; expected one of {choices}"
    )


def _omegaconf_error(cause: OmegaConfBaseException, hydra_message: str) -> ConfigError:
    key = cause.full_key or ""
    message = _first_line(cause.msg or str(cause))
    hydra_line = _first_line(hydra_message)
    override = re.search(r"(?:override |use \+)(\S+?=.*)$", hydra_message, re.MULTILINE)
    value = override.group(1).split("=", 1)[1] if override else cause.value
    if isinstance(cause, MissingMandatoryValue):
        return ConfigError(key, "???", f"expected a value (set {key}=...)")
    if isinstance(cause, InterpolationResolutionError):
        return ConfigError.line(f"{key}: {message}")
    if "does not support deletion" in message:
        return ConfigError.line(f"~{key}: a key of a schema cannot be deleted; set a value instead")
    if isinstance(cause, KeyError | AttributeError):  # a key the node does not have
        return ConfigError(key, value, f"no such key; {_valid_keys(cause)}")
    for found, expected in _EXPECTED:
        if found in message:
            return ConfigError(key, value, expected)
    return ConfigError.line(f"{key}: {message}" if key else f"{hydra_line}: {message}")


def _valid_keys(cause: OmegaConfBaseException) -> str:
    if cause.object_type is not None and dataclasses.is_dataclass(cause.object_type):
        names = [f.name for f in dataclasses.fields(cause.object_type)]
        return f"expected one of {', '.join(names)}"
    key = cause.full_key or "KEY"
    return f"add a new key with +{key}=VALUE"
