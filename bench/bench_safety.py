"""What the safety layer costs per command, against references measured in the same run.

    MUJOCO_GL=egl .venv/bin/python bench/bench_safety.py            # ~1 minute here
    MUJOCO_GL=egl .venv/bin/python bench/bench_safety.py --quick    # smoke test, writes nothing

The commands are bench/safety_fuzz.py's (its ``fuzz_arm`` loop for the sim Panda, seed 1):
random and adversarial commands of every type (joint, pose, gripper; NaN/inf, odd dtypes and
shapes, stale, astronomically large, out of the box through the kinematics) to a recording arm
that jumps to each forwarded target, under a fake clock, through a ``SafetyLayer`` with the
Panda's MuJoCo forward kinematics, every forwarded command checked against the limits. That
program and tests/test_safety_fuzz.py check that none leaves the limits; this one measures the
time (it used to be a CPU-time assertion in the test).

Figures, in microseconds per command (wall: best of ``--rounds``; CPU: this process, summed):

* ``fuzz_loop``: the whole loop, the layer and the checks included;
* ``drawing_commands`` (reference): the same number of commands drawn and built with the same
  generator and no layer, so ``layer = fuzz_loop - drawing_commands`` is what the layer adds
  (with the checks' share: for a joint target, one more kinematics call);
* ``forward_kinematics`` (reference): one call of the kinematics the layer uses;
* ``env_step`` (reference): one ``PushCube`` control step (state only), what the sim spends on
  a 10 ms control period.

Ratios: the layer's cost over each reference and as a fraction of the 10 ms control period;
``within_300us_cpu_budget`` repeats the budget the test asserted (30 s of CPU per 100,000
commands). Everything is written to bench/results/safety.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from robopolicy.utils.machine import machine_facts

os.environ.setdefault("MUJOCO_GL", "egl")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from safety_fuzz import KINDS, build, draw, fuzz_arm, make_arms  # noqa: E402

import sim  # noqa: E402
from hardware.interfaces import ArmState  # noqa: E402

RESULTS = REPO / "bench" / "results" / "safety.json"
CONTROL_PERIOD_US = 10_000.0
OLD_CPU_BUDGET_US = 300.0  # the test's former 30 s of CPU per 100,000 commands


def timed(work, rounds: int) -> tuple[float, float]:
    """(best wall seconds of ``rounds``, CPU seconds per round averaged) of ``work()``."""
    walls, cpu_started = [], time.process_time()
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        walls.append(time.perf_counter() - started)
    return min(walls), (time.process_time() - cpu_started) / rounds


def workloads(n: int, quick: bool, outcome: dict) -> list[tuple[str, object, int]]:
    """``(name, work, calls)`` of the loop and its references (module doc); the loop's result
    goes into ``outcome``."""
    arm = make_arms(["panda"])["panda"]
    home, fk = arm.home, arm.fk
    state = ArmState(home, np.zeros(len(home)), fk(home), arm.home_quat, 0.0)  # the loop's start

    def drawing() -> None:
        rng = np.random.default_rng(1)
        for i in range(n):
            rng.random(4)  # the loop's watchdog/disturb/e-stop draws
            kind = KINDS[rng.integers(len(KINDS))]
            values, when = draw(rng, kind, state, 1000.0 + 0.01 * i, arm)
            build(kind, values, when, raw=rng.random() < 0.2)

    def loop() -> None:
        outcome.update(fuzz_arm(arm, n))

    joints = home + np.random.default_rng(0).normal(scale=0.3, size=(1000, 7))
    n_fk = 1000 * (2 if quick else 20)

    def kinematics() -> None:
        for i in range(n_fk):
            fk(joints[i % 1000])

    step_env = gym.make(sim.PUSH_CUBE_ID, obs_mode="state")
    step_env.reset(seed=0)
    step_env.action_space.seed(0)
    n_steps = 200 if quick else 2000

    def steps() -> None:
        for _ in range(n_steps):
            *_, terminated, truncated, _ = step_env.step(step_env.action_space.sample())
            if terminated or truncated:
                step_env.reset()

    return [
        ("fuzz_loop", loop, n),
        ("drawing_commands", drawing, n),
        ("forward_kinematics", kinematics, n_fk),
        ("env_step", steps, n_steps),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer commands (a smoke test)")
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    n = 5_000 if args.quick else args.commands
    rounds = 1 if args.quick else args.rounds
    logging.getLogger("hardware.safety").setLevel(logging.ERROR)  # as the test does
    load_at_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    figures, forwarded = {}, {}
    for name, work, count in workloads(n, args.quick, forwarded):
        wall, cpu = timed(work, rounds)
        figures[name] = {
            "count": count,
            "wall_us": round(wall / count * 1e6, 2),
            "cpu_us": round(cpu / count * 1e6, 2),
        }
        print(
            f"{name:>20}: {figures[name]['wall_us']:9.2f} us wall, "
            f"{figures[name]['cpu_us']:9.2f} us CPU per call ({count} calls)"
        )
    layer = {
        kind: round(figures["fuzz_loop"][kind] - figures["drawing_commands"][kind], 2)
        for kind in ("wall_us", "cpu_us")
    }
    ratios = {
        "layer_over_forward_kinematics": round(
            layer["cpu_us"] / figures["forward_kinematics"]["cpu_us"], 2
        ),
        "layer_over_env_step": round(layer["cpu_us"] / figures["env_step"]["cpu_us"], 3),
        "layer_fraction_of_control_period": round(layer["wall_us"] / CONTROL_PERIOD_US, 4),
        "fuzz_loop_within_300us_cpu_budget": figures["fuzz_loop"]["cpu_us"] < OLD_CPU_BUDGET_US,
    }
    print(
        f"{'layer':>20}: {layer['wall_us']:9.2f} us wall, {layer['cpu_us']:9.2f} us CPU "
        "per command (fuzz loop minus drawing the commands)"
    )
    for name, value in ratios.items():
        print(f"{name:>36}: {value}")
    report = {
        "command": "python bench/bench_safety.py" + (" --quick" if args.quick else ""),
        "params": {"commands": n, "rounds": rounds, "seed": 1},
        "machine": machine_facts(load_at_start),
        "per_call": figures,
        "layer_per_command": layer,
        "ratios": ratios,
        "layer_outcome": forwarded,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    if args.quick:  # smoke-test figures are not worth quoting
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(RESULTS)
    print(f"wrote {RESULTS} ({report['total_seconds']}s)")


if __name__ == "__main__":
    main()
