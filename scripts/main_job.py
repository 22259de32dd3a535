"""The main job on the default task, from nothing to an evaluated policy (README: `make main`).

1. generate the default task's demonstrations with its scripted expert, if they are not there yet
   (conf/task/push_cube.yaml: datasets/data/push_cube.zarr);
2. inspect them: summary table, image grid and a video of one demonstration;
3. train a state-based diffusion policy (conf/experiment/main_job.yaml sets a CPU-sized run);
4. evaluate it closed-loop (train.py's final evaluation: success rate with a 95% interval,
   videos), and print where everything is.

Each step is the same command a user would type, run as a subprocess; the job stops at the first
step that fails.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "datasets" / "data" / "push_cube.zarr"
# 300 demonstrations (~1.5 minutes to collect with 2 workers): trained on 100, a policy predicts
# the actions of unseen cube and target positions markedly worse (held-out R^2 of the sideways
# action ~0.7, against ~0.85 with 300).
N_DEMOS = 300
N_WORKERS = 2  # collection worker processes (one env each)


def step(title: str, command: list[str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, *command], cwd=ROOT)
    if completed.returncode != 0:
        sys.exit(f"main job: step '{title}' failed (exit code {completed.returncode})")
    print(f"=== {title}: done in {time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir = ROOT / "outputs" / "main" / stamp
    if DATASET.exists():
        print(f"demonstrations: {DATASET} (already there)")
    else:
        step(
            "collect demonstrations",
            [
                "datasets/collect.py",
                "task=push_cube",
                f"n_episodes={N_DEMOS}",
                f"n_workers={N_WORKERS}",
                f"out={DATASET}",
            ],
        )
    step("inspect", ["datasets/inspect.py", str(DATASET), "--out", str(run_dir / "inspect")])
    step(
        "train and evaluate",
        ["train.py", "+experiment=main_job", f"hydra.run.dir={run_dir / 'train'}"],
    )
    results = json.loads((run_dir / "train" / "eval.json").read_text())
    low, high = results["success_ci95"]
    print("\n=== main job finished")
    print(
        f"success: {results['successes']}/{results['n_episodes']} = "
        f"{results['success_rate']:.0%} (95% CI {low:.0%}-{high:.0%})"
    )
    for label, path in [
        ("dataset", DATASET),
        ("dataset grid and video", run_dir / "inspect"),
        ("metrics", run_dir / "train" / "metrics.jsonl"),
        ("evaluation", run_dir / "train" / "eval.json"),
        ("loss plot", run_dir / "train" / "loss.png"),
        ("success plot", run_dir / "train" / "success.png"),
        ("rollout videos", run_dir / "train" / "videos"),
        ("checkpoint", run_dir / "train" / "checkpoints" / "latest.safetensors"),
    ]:
        if path.exists():
            print(f"  {label:24s} {path}")


if __name__ == "__main__":
    main()
