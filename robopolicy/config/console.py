"""What a program shows in the terminal (train.py, eval.py, datasets/collect.py): a base of their
schemas, so that each of these keys is spelled and defaulted once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ConsoleOptions:
    """Terminal output of a run (robopolicy/utils/console.py, quiet.py)."""

    progress: bool = True  # progress bars on stderr (training steps, evaluation episodes,
    #   dataset verification, collection); drawn only when stderr is a terminal, so logs and
    #   pipes stay free of them
    verbose: bool = False  # third-party libraries' warnings and INFO lines too (robosuite's
    #   import and controller warnings, PyOpenGL's, Meta-World's); false drops them, keeping
    #   their errors and every robopolicy message (robopolicy/utils/quiet.py)
