"""What a benchmark's results file records of the machine it ran on: the cores it could use, the
1-minute load average at its start and end (other work on the machine skews timings), and the
Python, platform and torch versions."""

from __future__ import annotations

import os
import platform
import sys


def machine_facts(load_at_start: float) -> dict:
    """The ``machine`` entry of a results file; ``load_at_start`` is ``os.getloadavg()[0]`` taken
    when the benchmark began."""
    import torch

    return {
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_1min_at_start": round(load_at_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
