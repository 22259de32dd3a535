"""The run directory of a Hydra program: where a resumed run continues, and no directory left
behind by a launch that failed before any work.

Hydra creates the run directory (its ``.hydra/`` config copy and the program's log file) before
the program's code runs. A launch that stops on bad input before writing anything removes it
(``discarded_if_unused``); a resumed training run continues in the directory of the checkpoint
it resumes (``continue_in``), so one run's metrics, plots and checkpoints stay in one place.

In a multirun sweep (``train.py -m``, any launcher) each job's run directory is
``<hydra.sweep.dir>/<hydra.sweep.subdir>``; the sweep directory itself (``multirun.yaml``,
submitit's ``.submitit/``) belongs to the sweep and is never removed here. A job stopped by bad
input raises ``JobFailed`` instead of exiting (``robopolicy_cli.command.run_in_run_dir``) and its
directory is discarded the same way; several jobs of one sweep may not continue one run
directory (``continue_in``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import OmegaConf

from robopolicy.utils.cli import JobFailed

SWEEP_CONFIG = "multirun.yaml"  # what Hydra writes into the sweep directory before any job runs


def hydra_files() -> set[str]:
    """The names Hydra writes into a run directory before the program runs."""
    return {".hydra", f"{HydraConfig.get().job.name}.log"}


def only_hydra_files(run_dir: Path) -> bool:
    return run_dir.is_dir() and {path.name for path in run_dir.iterdir()} <= hydra_files()


def in_sweep() -> bool:
    """Whether this program runs as one job of a multirun sweep (``-m``)."""
    return HydraConfig.get().mode == RunMode.MULTIRUN


@contextmanager
def discarded_if_unused() -> Iterator[Path]:
    """Yield Hydra's run directory; remove it when the program stops with an error exit (bad
    input: ``run_reporting_errors``) and it holds only what Hydra wrote for this launch. A crash
    (a bug) keeps it, with its log; so does a directory an earlier launch wrote into (a named
    ``hydra.run.dir`` reused: its log holds lines from before). A sweep's job stopped by bad
    input (``JobFailed``) is treated like an error exit."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    new_for_this_launch = only_hydra_files(run_dir) and not _earlier_log_lines(run_dir)
    try:
        yield run_dir
    except (SystemExit, JobFailed):
        if new_for_this_launch and only_hydra_files(run_dir):
            _close_file_logs(run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _earlier_log_lines(run_dir: Path) -> bool:
    """Whether the program's log file held lines before this launch logged anything."""
    log = run_dir / f"{HydraConfig.get().job.name}.log"
    return log.exists() and log.stat().st_size > 0


def resumed_run_dir(checkpoint: str | Path) -> Path | None:
    """The run directory a checkpoint was written in (``<run>/checkpoints/<name>``), if it is
    one: it holds the run's metrics.jsonl."""
    run_dir = Path(checkpoint).resolve().parent.parent
    in_run = Path(checkpoint).resolve().parent.name == "checkpoints"
    return run_dir if in_run and (run_dir / "metrics.jsonl").exists() else None


def continue_in(run_dir: Path) -> Path:
    """Move this program's log file into ``run_dir`` (appending to the one there) and remove
    Hydra's fresh run directory when it holds only Hydra's files; returns ``run_dir``.

    In a sweep, a ``ValueError`` when other jobs of the sweep would continue ``run_dir`` too
    (``resume`` not swept over one checkpoint per job): their metrics and checkpoints would
    overwrite each other's."""
    fresh = Path(HydraConfig.get().runtime.output_dir)
    if fresh.resolve() == run_dir.resolve():
        return run_dir
    if in_sweep():
        sharing = jobs_continuing(run_dir)
        if sharing > 1:
            raise ValueError(
                f"resume: {sharing} jobs of this sweep would continue the run directory "
                f"{run_dir} at once; sweep resume over one checkpoint per run (resume=A,B), or "
                "set resume_new_dir=true to give each job a directory of its own"
            )
    root = logging.getLogger()
    for handler in _file_logs(fresh):
        moved = logging.FileHandler(run_dir / Path(handler.baseFilename).name, mode="a")
        moved.setFormatter(handler.formatter)
        moved.setLevel(handler.level)
        root.addHandler(moved)
    _close_file_logs(fresh)
    if only_hydra_files(fresh):
        shutil.rmtree(fresh, ignore_errors=True)
    return run_dir


def jobs_continuing(run_dir: Path) -> int:
    """How many jobs of this job's sweep resume a checkpoint of ``run_dir``: the product of the
    sweep's value counts (from the sweep's own overrides in ``multirun.yaml``), counting of
    ``resume`` only the values in ``run_dir``; 1 when the sweep's overrides cannot be read."""
    hydra = HydraConfig.get()
    depth = len(Path(str(hydra.sweep.subdir)).parts)
    sweep_config = Path(hydra.runtime.output_dir).parents[depth - 1] / SWEEP_CONFIG
    if not sweep_config.is_file():
        return 1
    arguments = list(OmegaConf.load(sweep_config).hydra.overrides.task)
    jobs = 1
    for override in OverridesParser.create().parse_overrides(arguments):
        if not override.is_sweep_override():
            continue
        try:
            values = list(override.sweep_string_iterator())
        except (AssertionError, HydraException):  # a glob over a group's options: several
            values = ["?", "?"]
        if override.key_or_group == "resume":
            values = [value for value in values if _in_run(value, run_dir)]
        jobs *= len(values)
    return jobs


def _in_run(checkpoint: str, run_dir: Path) -> bool:
    resumed = resumed_run_dir(checkpoint)
    return resumed is not None and resumed.resolve() == run_dir.resolve()


def _file_logs(directory: Path) -> list[logging.FileHandler]:
    """The root logger's file handlers writing into ``directory``."""
    return [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.FileHandler)
        and Path(handler.baseFilename).parent == directory.resolve()
    ]


def _close_file_logs(directory: Path) -> None:
    for handler in _file_logs(directory):
        logging.getLogger().removeHandler(handler)
        handler.close()
