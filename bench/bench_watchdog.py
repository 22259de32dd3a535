"""How late the safety layer's watchdog holds the arm after its deadline, on a busy machine.

    MUJOCO_GL=egl .venv/bin/python bench/bench_watchdog.py   # 3 x 1,000 trials, ~5 min here
    MUJOCO_GL=egl .venv/bin/python bench/bench_watchdog.py --trials 50 --out /tmp/w.json

The arm is the real-time sim arm of PushCube (``make_sim_robot``: its physics thread stepping at
100 Hz, the layer's watchdog thread, as in the robot server), with ``watchdog_timeout`` shortened
to ``--timeout`` (0.05 s) so that 1,000 trials take minutes: what is measured is how soon the
watchdog thread acts once its deadline passes, which does not depend on the timeout's length.
Each trial sends one valid command (the arm's own joints), after a random pause so that the
deadline falls anywhere in the physics and watchdog periods, then waits for the hold. Figures, in
milliseconds after the deadline (``last_forward_time + watchdog_timeout``):

* ``decided``: the time the watchdog recorded its ``watchdog_hold`` (its clock reading in
  ``tick``);
* ``issued``: when ``hold()`` of the sim arm was entered (the command left the layer);
* ``applied``: when that ``hold()`` returned (the sim world's lock taken, the hold reference
  set; the physics applies it at its next tick).

Configurations (``CONFIGURATIONS``, ``--trials`` each): ``as_served`` (the layer as the robot
server runs it: its watchdog thread at a real-time priority where the OS allows one, every hold
logged at WARNING); ``gil_contention`` (plus a Python thread spinning in this process, as a
server busy decoding requests, contending for the GIL); ``ordinary_priority`` (the watchdog
thread left at the default priority, as before issue 17). The machine's load
(``os.getloadavg``, the busiest processes' names from ``ps``) is recorded beside the figures: run
it with the machine busy (a training run beside it). Results: bench/results/watchdog.json
(``--out``), quoted in docs/hardware.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import sim  # noqa: E402
from hardware import safety  # noqa: E402
from hardware.interfaces import Arm, ArmCommand  # noqa: E402
from hardware.sim_robot import make_sim_robot  # noqa: E402

RESULTS = REPO / "bench" / "results" / "watchdog.json"
PRIORITISE = safety._prioritise_this_thread


class HoldTimer(Arm):
    """Passes everything to ``arm``; stamps when ``hold()`` is entered and when it returns."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        self.entered = self.returned = 0.0
        self.held = threading.Event()

    def read_state(self):
        return self.arm.read_state()

    def send_command(self, command: ArmCommand) -> None:
        self.arm.send_command(command)

    def hold(self) -> None:
        self.entered = time.monotonic()
        self.arm.hold()
        self.returned = time.monotonic()
        self.held.set()

    def stop(self) -> None:
        self.arm.stop()

    def close(self) -> None:
        self.arm.close()


def busiest_processes(count: int = 8) -> list[str]:
    """The busiest processes now: CPU share, program and its first two arguments."""
    done = subprocess.run(
        ["ps", "-eo", "pcpu,args", "--sort=-pcpu", "--no-headers"], capture_output=True, text=True
    )
    rows = []
    for line in done.stdout.splitlines():
        share, program, *arguments = line.split()
        if os.path.basename(program) != "ps":
            rows.append(" ".join([share, os.path.basename(program), *arguments[:2]]))
    return rows[:count]


def spin(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def trial(layer, timer: HoldTimer, rng: np.random.Generator, timeout: float) -> dict | None:
    """One trial: pause, one command, wait for the hold; ms after the deadline (None: the
    command was not forwarded, so there was no fresh deadline)."""
    time.sleep(rng.uniform(0.0, 0.02))
    state = layer.read_state()
    timer.held.clear()
    holds = layer.counts["watchdog_hold"]
    command = ArmCommand.joints(state.joint_positions, time.monotonic() + 0.01)
    if layer.send_command(command) is None:
        return None
    if not timer.held.wait(timeout + 2.0):
        raise RuntimeError("the watchdog did not hold within 2 s of its deadline")
    deadline = layer.last_forward_time + timeout
    while layer.counts["watchdog_hold"] == holds:  # it records the hold just after issuing it
        time.sleep(0.001)
    record = next(r for r in reversed(layer.interventions) if r.kind == "watchdog_hold")
    return {
        "decided": (record.time - deadline) * 1e3,
        "issued": (timer.entered - deadline) * 1e3,
        "applied": (timer.returned - deadline) * 1e3,
    }


def summary(values: list[float], period_ms: float) -> dict:
    values = np.array(values)
    return {
        "median_ms": round(float(np.median(values)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "worst_ms": round(float(values.max()), 3),
        "best_ms": round(float(values.min()), 3),
        "worst_periods": round(float(values.max()) / period_ms, 3),
        "over_2_periods": int((values > 2 * period_ms).sum()),
    }


CONFIGURATIONS = {  # name -> (Python threads spinning beside it, watchdog at raised priority)
    "as_served": (0, True),
    "gil_contention": (1, True),
    "ordinary_priority": (0, False),
}


def measure(trials: int, timeout: float, gil_threads: int, raised: bool) -> dict:
    """``trials`` holds of a fresh sim robot's watchdog; the figures' summaries."""
    if not raised:  # the watchdog thread as it ran before it asked for a real-time priority
        safety._prioritise_this_thread = lambda: "ordinary priority (bench_watchdog.py)"
    limits = {"watchdog_timeout": timeout, "stop_after": 5.0}
    robot = make_sim_robot(sim.PUSH_CUBE_ID, {"obs_mode": "state"}, seed=0, limits=limits)
    layer = robot.arms["arm"]
    timer = layer.arm = HoldTimer(layer.arm)
    period_ms = layer.limits.control_period * 1e3
    stop = threading.Event()
    spinners = [
        threading.Thread(target=spin, args=(stop,), daemon=True) for _ in range(gil_threads)
    ]
    for thread in spinners:
        thread.start()
    rng = np.random.default_rng(0)
    figures: dict[str, list[float]] = {"decided": [], "issued": [], "applied": []}
    try:
        while len(figures["issued"]) < trials:
            result = trial(layer, timer, rng, timeout)
            for name, value in (result or {}).items():
                figures[name].append(value)
    finally:
        stop.set()
        robot.close()
        safety._prioritise_this_thread = PRIORITISE
    return {name: summary(values, period_ms) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="per configuration")
    parser.add_argument("--timeout", type=float, default=0.05, help="watchdog_timeout, s")
    parser.add_argument("--only", choices=list(CONFIGURATIONS), nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    # the layer logs every hold, as in the robot server (its log there goes to a file)
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # noqa: SIM115
    machine = {
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "busiest_processes_at_start": busiest_processes(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    started = time.perf_counter()
    results = {}
    for name in args.only or CONFIGURATIONS:
        gil_threads, raised = CONFIGURATIONS[name]
        results[name] = measure(args.trials, args.timeout, gil_threads, raised)
        for figure, values in results[name].items():
            print(f"{name:>18} {figure:>8}: {values}")
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["busiest_processes_at_end"] = busiest_processes()
    report = {
        "command": "python bench/bench_watchdog.py " + " ".join(sys.argv[1:]),
        "params": {"trials_per_configuration": args.trials, "watchdog_timeout_s": args.timeout},
        "configurations": {
            name: {"gil_threads": gil, "raised_priority": raised}
            for name, (gil, raised) in CONFIGURATIONS.items()
            if name in results
        },
        "machine": machine,
        "after_deadline": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    loads = f"{machine['load_average_at_start']} -> {machine['load_average_at_end']}"
    print(f"load {loads}; wrote {args.out}")


if __name__ == "__main__":
    main()
