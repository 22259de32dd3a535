"""bench/bench_peers.py is not part of CI: without lerobot (the project's venv) it says how to
build the peers' venv and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_peers_skips_without_lerobot():
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_peers.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "scripts/make_peers_venv.sh" in done.stdout
    assert len(done.stdout.splitlines()) == 1
