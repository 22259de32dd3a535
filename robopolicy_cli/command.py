"""What every program shares: one command-line style, ``key=value`` arguments (Hydra overrides)
composed over the program's config in conf/, its ``--help``, and its name in error lines.

A bad argument ends the program with one line, ``<program>: error: <key>=<value>: <what is
expected>``, and exit status 2 (robopolicy.config.errors, robopolicy.utils.cli).
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from robopolicy.config import ConfigError
from robopolicy.config.errors import run_hydra_main
from robopolicy.config.locate import conf_dir, conf_options
from robopolicy.utils.cli import USER_ERRORS, JobFailed, run_reporting_errors
from robopolicy.utils.quiet import set_verbosity, verbose_requested
from robopolicy.utils.run_dir import discarded_if_unused, in_sweep

HELP_FLAGS = ("-h", "--help")
HELP_WIDTH = 100  # columns --help wraps its text to
# a mapping key that override() writes unquoted: a name, but none that Hydra reads as a value
DICT_KEY = re.compile(r"(?!(?i:null|true|false|inf|nan)\Z)[A-Za-z_][A-Za-z0-9_]*")
HYDRA_NOTE = (  # what the Hydra programs (train, eval, collect) take beyond key=value
    "Hydra's own options work too: --cfg job prints the composed config, --hydra-help lists "
    "Hydra's, hydra.run.dir=DIR sets the run directory."
)


@dataclass(frozen=True)
class Usage:
    """What ``--help`` prints for a program."""

    summary: str  # what the program does, one line
    config: str  # its config, conf/<config>.yaml
    schema: str  # where each of its keys is documented, with its type, default and meaning
    examples: tuple[str, ...]  # command lines, after the program's name
    groups: tuple[str, ...] = ()  # the config groups it selects from (GROUP=NAME), task aside;
    #   "+experiment": one whose option is added (+GROUP=NAME)
    arguments: str = "[KEY=VALUE ...]"  # the usage line's arguments
    notes: tuple[str, ...] = ()  # lines after the examples
    tasks: str = "task=NAME, conf/task/"  # how the program picks one of the registered tasks

    def text(self, program: str) -> str:
        lines = [f"usage: {program} {self.arguments}", "", *_wrap(self.summary), "", "examples:"]
        lines += [f"  {program} {example}" for example in self.examples]
        lines += ["", f"registered tasks ({self.tasks}):"]
        lines += _wrap(", ".join(conf_options("task")), "  ")
        for group in self.groups:  # "+experiment": a group whose option is added, not replaced
            folder = group.lstrip("+")
            options = ", ".join(conf_options(folder))
            lines += _wrap(f"{group}=NAME (conf/{folder}/): {options}", hanging="  ")
        lines += [""]
        lines += _wrap(
            f"Every key, its type, default and meaning: {self.schema}; the defaults it selects: "
            f"conf/{self.config}.yaml, here {conf_dir() / self.config}.yaml."
        )
        for note in self.notes:
            lines += _wrap(note)
        return "\n".join(lines)


def _wrap(text: str, indent: str = "", hanging: str | None = None) -> list[str]:
    """``text`` in lines of HELP_WIDTH, the first indented by ``indent``, the others by
    ``hanging`` (default: the same)."""
    later = indent if hanging is None else hanging
    return textwrap.wrap(text, HELP_WIDTH, initial_indent=indent, subsequent_indent=later)


def override(key: str, value: Any) -> str:
    """The argument ``key=value`` that sets ``key`` to ``value`` (a mapping, list, string,
    number, boolean or None) when a program of ours reads it back, whatever characters its
    strings hold."""
    return f"{key}={_hydra_value(value)}"


def _hydra_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return repr(value)  # inf and nan are Hydra's too
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str) or not DICT_KEY.fullmatch(key):
                expected = "a name of ASCII letters, digits and _ (not null, true, false, inf, nan)"
                raise ValueError(f"mapping key {key!r}: expected {expected}")
        return "{" + ", ".join(f"{key}: {_hydra_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_hydra_value(item) for item in value) + "]"
    raise TypeError(f"cannot pass a {type(value).__name__} as an argument: {value!r}")


def _quoted(text: str) -> str:
    r"""``text`` in Hydra's double quotes, read back as ``text``: OmegaConf reads ``\${`` as a
    literal ``${`` (not an interpolation), Hydra ``\"`` as a quote; the backslashes just before
    either, or before the closing quote, are doubled (each pair reads as one)."""
    text = re.sub(r"(\\*)\$\{", lambda found: found[1] * 2 + r"\${", text)
    text = re.sub(r'(\\*)("|\Z)', lambda found: found[1] * 2 + found[2].replace('"', r"\""), text)
    return f'"{text}"'


def program_name() -> str:
    """The name the program was started by: ``robopolicy-train``, or ``train.py`` for
    ``python train.py``, as argparse names a program."""
    return os.path.basename(sys.argv[0])


def exit_if_help(usage: Usage, argv: list[str]) -> None:
    """Print ``usage`` and exit with status 0 when ``argv`` asks for help."""
    if any(flag in argv for flag in HELP_FLAGS):
        print(usage.text(program_name()))
        sys.exit(0)


def run_config_tool(
    config: str, usage: Usage, argv: list[str] | None, job: Callable[[DictConfig], Any]
) -> Any:
    """A program whose config Hydra composes without a run directory of its own (the dataset
    tools): ``conf/<config>.yaml`` with ``argv`` (default: the command line) as overrides,
    passed to ``job``; Hydra's errors and the job's user errors end it in one line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    exit_if_help(usage, argv)

    def composed() -> Any:
        for argument in argv:
            if "=" not in argument:  # Hydra would report an unparsable override
                raise ConfigError.line(
                    f"{argument}: expected KEY=VALUE arguments: {program_name()} {usage.arguments}"
                )
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose(config_name=config, overrides=argv)
        return job(cfg)

    return run_hydra_main(program_name(), composed)


def run_hydra_program(usage: Usage, hydra_main: Callable[[], Any]) -> None:
    """A program with a Hydra run directory (train, eval, collect): third-party chatter is
    filtered from the start unless the command line says ``verbose=true``; ``--help`` prints
    ``usage``; Hydra's own errors (a group typo, ...) end it in one line."""
    set_verbosity(verbose_requested(sys.argv[1:]))  # before anything imports robosuite
    exit_if_help(usage, sys.argv[1:])
    run_hydra_main(program_name(), lambda: _reporting_cluster_jobs(hydra_main))


def run_in_run_dir(cfg: DictConfig, body: Callable[[], Any]) -> None:
    """Run a Hydra program's body with the composed config ``cfg``: its ``verbose`` applies
    (an experiment file may set it), its user errors end it in one line, and a launch that
    stops on bad input before writing anything leaves no run directory behind.

    One job of a multirun sweep prints that line too but raises ``JobFailed`` rather than
    exiting, so that the launcher runs the sweep's other jobs; the sweep then ends with it."""
    set_verbosity(cfg.verbose)
    with discarded_if_unused():
        if in_sweep():
            _run_sweep_job(body)
        else:
            run_reporting_errors(program_name(), body)


def _run_sweep_job(body: Callable[[], Any]) -> Any:
    hydra = HydraConfig.get()
    try:
        return body()
    except USER_ERRORS as error:
        if os.environ.get("ROBOPOLICY_TRACEBACK"):
            raise
        message = " ".join(str(error).split("\n"))
        job = f"sweep job #{hydra.job.num} ({Path(hydra.runtime.output_dir).name})"
        failed = f"{job}: {message}"
        # its program's name: under submitit, argv[0] is submitit's
        print(f"{hydra.job.name}: error: {failed}", file=sys.stderr)
        raise JobFailed(failed) from None


def _reporting_cluster_jobs(hydra_main: Callable[[], Any]) -> Any:
    """Run ``hydra_main``; a job that hydra-submitit-launcher saw end without a result (killed,
    out of time or memory: submitit's error, a page of the job's stderr, for the first such job
    it waits on) becomes one ``JobFailed`` line: which job, and the last line it wrote. A job's
    own errors come back as they were raised (``JobFailed`` for bad input)."""
    try:
        return hydra_main()
    except Exception as error:
        if not type(error).__module__.startswith("submitit."):
            raise
        lines = [line.strip() for line in str(error).splitlines() if line.strip(" -")]
        what = " ".join(lines[:2])  # "Job <id> (task: 0) with path <result>", "has not ..."
        if len(lines) > 2:
            what += f"; its last line: {lines[-1]}"
        raise JobFailed(what) from None
