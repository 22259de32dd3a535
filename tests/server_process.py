"""``python -m hardware.server ARGS`` in its own interpreter, at the repository root: how the
robot-server tests start the program from its command line."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_server(
    *arguments: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run the server with ``arguments`` (key=value) to its end; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "hardware.server", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )
