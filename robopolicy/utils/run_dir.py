"""The run directory of a Hydra program: where a resumed run continues, and no directory left
behind by a launch that failed before any work.

Hydra creates the run directory (its ``.hydra/`` config copy and the program's log file) before
the program's code runs. A launch that stops on bad input before writing anything removes it
(``discarded_if_unused``); a resumed training run continues in the directory of the checkpoint
it resumes (``continue_in``), so one run's metrics, plots and checkpoints stay in one place.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig


def hydra_files() -> set[str]:
    """The names Hydra writes into a run directory before the program runs."""
    return {".hydra", f"{HydraConfig.get().job.name}.log"}


def only_hydra_files(run_dir: Path) -> bool:
    return run_dir.is_dir() and {path.name for path in run_dir.iterdir()} <= hydra_files()


@contextmanager
def discarded_if_unused() -> Iterator[Path]:
    """Yield Hydra's run directory; remove it when the program stops with an error exit (bad
    input: ``run_reporting_errors``) and it holds only what Hydra wrote for this launch. A crash
    (a bug) keeps it, with its log; so does a directory an earlier launch wrote into (a named
    ``hydra.run.dir`` reused: its log holds lines from before)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    new_for_this_launch = only_hydra_files(run_dir) and not _earlier_log_lines(run_dir)
    try:
        yield run_dir
    except SystemExit:
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
    Hydra's fresh run directory when it holds only Hydra's files; returns ``run_dir``."""
    fresh = Path(HydraConfig.get().runtime.output_dir)
    if fresh.resolve() == run_dir.resolve():
        return run_dir
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
