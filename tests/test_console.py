"""Terminal output: progress bars on a terminal only."""

from __future__ import annotations

import io
import logging
import logging.config
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from robopolicy.data.verify import verify_dataset
from robopolicy.eval.evaluate import _counting
from robopolicy.utils.console import progress_bar
from tests.data_helpers import write_dataset

CONF = Path(__file__).resolve().parents[1] / "conf"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_terminal(monkeypatch) -> Terminal:
    """stderr replaced by a terminal (in the test's body: pytest's capture resets stderr between
    a fixture's setup and the test)."""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    return screen


def test_the_evaluation_bar_counts_episodes_and_successes(monkeypatch):
    terminal = on_terminal(monkeypatch)
    bar = progress_bar(3, "eval", unit="ep")
    episode_end = _counting(bar)
    for success in (True, False, True):
        episode_end(success)
    bar.close()
    shown = terminal.getvalue()
    assert "eval" in shown and "3/3" in shown and "success=2/3" in shown


@pytest.mark.parametrize("tty", [False, True])
def test_no_bar_when_disabled_or_off_a_terminal(monkeypatch, tty):
    screen = on_terminal(monkeypatch) if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    with progress_bar(2, "eval", enabled=not tty) as bar:
        bar.update(2)
    assert screen.getvalue() == ""


def test_dataset_verification_shows_a_bar_over_its_arrays(monkeypatch, tmp_path):
    terminal = on_terminal(monkeypatch)
    write_dataset(tmp_path / "d.zarr")
    assert verify_dataset(tmp_path / "d.zarr", progress=True).ok
    assert "verify" in terminal.getvalue() and "array" in terminal.getvalue()


def test_run_messages_reach_the_terminal_and_the_run_log(tmp_path, capsys):
    """conf/hydra/job_logging/robopolicy.yaml, as Hydra applies it: a program's logger writes
    ``[train] message`` to stdout and a timestamped line to <run_dir>/<program>.log."""
    settings = OmegaConf.load(CONF / "hydra" / "job_logging" / "robopolicy.yaml")
    settings.handlers.file.filename = str(tmp_path / "train.log")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logging.config.dictConfig(OmegaConf.to_container(settings))
    try:
        logging.getLogger("train").info("dataset verified")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    assert "[train] dataset verified" in capsys.readouterr().out
    assert "[train][INFO] - dataset verified" in (tmp_path / "train.log").read_text()
