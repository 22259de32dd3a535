"""E-stop triggers: a POSIX signal (``kill -USR1 <pid>``) or a key on the terminal latches a
``SafetyLayer``'s e-stop, which stays latched until ``SafetyLayer.reset()``."""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from hardware.safety import SafetyLayer


def bind_estop_signal(layer: SafetyLayer, signum: int = signal.SIGUSR1):
    """Make ``signum`` (e.g. ``kill -USR1 <pid>``) latch ``layer``'s e-stop. Call from the main
    thread; returns the previous handler, for ``signal.signal(signum, previous)``."""

    def handler(received: int, frame: object) -> None:
        layer.estop(f"signal {signal.Signals(received).name}", blocking=False)

    return signal.signal(signum, handler)


def bind_estop_key(
    layer: SafetyLayer, key: str = "e", stream: TextIO | None = None
) -> Callable[[], None] | None:
    """Latch ``layer``'s e-stop when ``key`` is pressed on the terminal ``stream`` (stdin).

    Puts the terminal in cbreak mode (keys arrive without Enter) and watches it on a thread.
    Returns a function that unbinds and restores the terminal, or None when ``stream`` is not a
    terminal (no keyboard: the signal binding still works).
    """
    stream = sys.stdin if stream is None else stream
    if not stream.isatty():
        return None
    import termios  # POSIX only, hence imported here
    import tty

    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready and os.read(fd, 1).decode(errors="replace") == key:
                layer.estop(f"key {key!r} pressed")

    thread = threading.Thread(target=watch, name="estop-key", daemon=True)
    thread.start()

    def unbind() -> None:
        done.set()
        thread.join()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    return unbind
