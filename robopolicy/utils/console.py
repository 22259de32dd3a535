"""Terminal output: progress bars on stderr, shown only when stderr is a terminal and the
config's ``progress`` (robopolicy/config/console.py) allows them."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int, desc: str, enabled: bool = True, **options) -> tqdm:
    """A tqdm bar over ``total`` items on stderr; a no-op bar when ``enabled`` is false or
    stderr is not a terminal (a log file, a pipe, a test's capture)."""
    shown = enabled and sys.stderr.isatty()
    return tqdm(
        total=total, desc=desc, file=sys.stderr, disable=not shown, dynamic_ncols=True, **options
    )
