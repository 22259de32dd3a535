"""The main job on the default task, from nothing to an evaluated policy (README: `make main`).

1. generate PushCube's demonstrations with its scripted expert, if they are not there yet, as
   the recipe's ``collect`` key lists them (conf/experiment/push_cube.yaml: 500 clean + 500 DART
   state-only demos into datasets/data/push_cube_main.zarr);
2. inspect them: summary table and the coverage of training windows;
3. train a state-based diffusion policy with that recipe;
4. evaluate it closed-loop (train.py's final evaluation: 100 seeded episodes, success rate with a
   95% interval, a video), and print where everything is and how long each step took.

Each step is the same command a user would type, run as a subprocess; the job stops at the first
step that fails. The demos are made into ``<dataset>.incomplete.zarr`` and renamed when every
collection run has succeeded, so an interrupted job starts its collection over.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from robopolicy.config.collect_plan import collect_commands, compose, task_config_name

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "push_cube"  # conf/experiment/push_cube.yaml: the data, the policy, the training
N_WORKERS = 2  # collection worker processes (one env each)
MAIN_JOB_STEPS = 10000  # half the recipe's 20000 training steps: the job's 6-minute budget on 2
#   cores (96/100 at 10000 from a fresh clone; the recipe's 3 seeds at 20000: 98 / 97 / 98%)


def step(title: str, command: list[str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, *command], cwd=ROOT)
    if completed.returncode != 0:
        sys.exit(f"main job: step '{title}' failed (exit code {completed.returncode})")
    print(f"=== {title}: done in {time.perf_counter() - start:.0f} s", flush=True)


def make_demos(recipe, dataset: Path) -> None:
    """The collect.py calls of the recipe's ``collect`` key, in order (later ones append), into
    ``<dataset>.incomplete.zarr``, renamed to ``dataset`` once every one has succeeded."""
    incomplete = dataset.with_name(dataset.name.replace(".zarr", ".incomplete.zarr"))
    shutil.rmtree(incomplete, ignore_errors=True)
    selection = [f"task={task_config_name(recipe)}"]
    plain = compose("config", selection)
    for arguments in collect_commands(recipe, selection, plain, incomplete, N_WORKERS):
        step("collect demonstrations", ["datasets/collect.py", *arguments])
    incomplete.rename(dataset)


def main() -> None:
    started = time.perf_counter()
    recipe = compose("config", [f"+experiment={RECIPE}"])
    dataset = ROOT / recipe.task.dataset_path
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir = ROOT / "outputs" / "main" / stamp
    if dataset.exists():
        print(f"demonstrations: {dataset} (already there)")
    else:
        make_demos(recipe, dataset)
    step("inspect", ["datasets/inspect.py", f"path={dataset}", f"out={run_dir / 'inspect'}"])
    step(
        "train and evaluate",
        [
            "train.py",
            f"+experiment={RECIPE}",
            f"algo.num_steps={MAIN_JOB_STEPS}",
            f"hydra.run.dir={run_dir / 'train'}",
        ],
    )
    results = json.loads((run_dir / "train" / "eval.json").read_text())
    low, high = results["success_ci95"]
    print(f"\n=== main job finished in {time.perf_counter() - started:.0f} s")
    print(
        f"success: {results['successes']}/{results['n_episodes']} = "
        f"{results['success_rate']:.0%} (95% CI {low:.0%}-{high:.0%})"
    )
    for label, path in [
        ("dataset", dataset),
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
