"""Terminal output: progress bars on a terminal only."""

from __future__ import annotations

import io
import sys

import pytest

from robopolicy.data.verify import verify_dataset
from robopolicy.eval.evaluate import _counting
from robopolicy.utils.console import progress_bar
from tests.data_helpers import write_dataset


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
