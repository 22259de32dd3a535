"""Suite benchmark: every task with its own recipe, 3 training seeds, 100 seeded episodes each.

    MUJOCO_GL=egl .venv/bin/python bench/suite.py                        # every task, seeds 0 1 2
    MUJOCO_GL=egl .venv/bin/python bench/suite.py --tasks pick_lift stack --seeds 0
    MUJOCO_GL=egl .venv/bin/python bench/suite.py --tasks mw:door-open-v3 mw:window-open-v3
    .venv/bin/python bench/suite.py --plot-only     # redraw docs/figures/suite_success.png

For each task: its demonstrations are collected with ``datasets/collect.py`` if the recipe's
dataset does not exist yet (timed), then each seed is the user's own command,
``train.py +experiment=<recipe> task=<task> seed=S eval.n_episodes=100``, whose final evaluation
(``eval.json``: 100 seeded episodes, 95% Wilson interval) is the figure reported, with its
training and evaluation wall-clock. Entries are merged into ``bench/results/suite.json`` per
(task, seed), so the suite runs in pieces (``--tasks``, ``--seeds``); a summary per task (mean
over seeds, spread, target, Diffusion Policy's published figure) is recomputed on every write
(bench/suite_results.py) and the figure is redrawn at the end. Run directories:
``<--out>/<task>/seed<S>_<time>`` (never reused), collection logs beside them. ``--launcher
NAME`` trains a task's seeds as one ``train.py -m`` sweep through conf/hydra/launcher/NAME.yaml
(``slurm``: one cluster job per seed, collection stays here; bench/sweep_launch.py) into the
same directories; train_s then counts from the job's start, not from the sweep's submission.

Tasks (``--tasks``): our own ``push_cube pick_lift push_t stack around_obstacle``; robosuite's
``robosuite_lift robosuite_can robosuite_square``; ``pick_lift_image`` (PickLift from two
cameras, task config pick_lift); Meta-World by name, ``mw:<name>`` (e.g. ``mw:push-v3``;
``mw:all`` for all 50), run as ``task=metaworld task.env_kwargs.task=<name>`` with the one
generic recipe conf/experiment/metaworld.yaml (if the composed ``task.dataset_path`` does not
contain the name, ``datasets/data/mw_<name>.zarr`` is used, so tasks never share demos); and the
five registered ``mw_*`` task configs by their own names, with recipes ``mw_*.yaml``. The default
is every task above except ``mw_*``, with ten Meta-World tasks. A task whose recipe file does not
exist is reported as "no recipe" and skipped. ``--recipe NAME`` runs one recipe on every task.

Recipe contract (``conf/experiment/<recipe>.yaml``, a ``# @package _global_`` experiment config)
---------------------------------------------------------------------------------------------
* The recipe is whatever ``train.py +experiment=<recipe>`` composes: policy, backbone, horizon,
  executed actions, observation keys, steps, env kwargs, dataset path. The suite adds only
  ``task=<task config>`` (which wins over the recipe's own task choice, so it should name the
  same one), ``seed``, ``eval.n_episodes`` (``--episodes``), ``eval.n_envs`` (``--workers``),
  ``hydra.run.dir``, then ``--extra-overrides`` (last: they win over everything).
* The demonstrations are the composed ``task.dataset_path``. When it does not exist the suite
  makes it as the recipe's optional top-level ``collect`` key says (robopolicy/config/
  collect_plan.py; train.py, which trains without it, names the same commands when the dataset
  is missing)::

      collect:
        n_episodes: 300              # successful demos (absent: --demos)
        overrides: [store_sim_state=false]  # more collect.py overrides (conf/collect.yaml)

  or as a list of such runs, made in order into the same dataset, each after the first with
  ``append=true`` added (e.g. 2000 clean demos, then 1000 DART demos with
  ``overrides: [seed=50000, injected_noise_std=0.2, max_failures=200]``). A recipe without
  ``collect`` gets one run of ``--demos`` episodes.
* Each collect.py call gets ``task=<task config>``, every ``task.*`` value the recipe changes from
  its task config (e.g. ``task.env_kwargs.obs_mode="state"``: demos come from the env the policy
  is evaluated in), ``n_episodes``, ``n_workers`` (``--workers``) and ``out``, then the run's
  ``overrides``. It writes to ``<dataset>.incomplete.zarr``, renamed to the dataset once every run
  succeeded, so an interrupted collection is redone rather than half used. A recipe whose demos
  differ from another recipe's on the same task (cameras, noise, count) names its own
  ``task.dataset_path``; an existing dataset is used as it is (a count differing from the plan
  is printed as a warning).
* Each entry records the recipe file's sha256 (that file only, not the configs it inherits).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
for folder in (ROOT, BENCH):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import suite_results  # noqa: E402
import sweep_launch  # noqa: E402
from suite_recipes import (  # noqa: E402
    CONF_DIR,
    compose,
    dataset_path,
    recipe_settings,
    relative,
    staging_path,
)

from robopolicy.config.collect_plan import (  # noqa: E402
    CollectionRun,
    RecipeError,
    collect_commands,
    collection_plan,
)

RESULTS = BENCH / "results" / "suite.json"
FIGURE = ROOT / "docs" / "figures" / "suite_success.png"

OWN_TASKS = ["push_cube", "pick_lift", "push_t", "stack", "around_obstacle"]
ROBOSUITE_TASKS = ["robosuite_lift", "robosuite_can", "robosuite_square"]
IMAGE_TASKS = {"pick_lift_image": "pick_lift"}  # suite task -> its task config (conf/task/)
REGISTERED_METAWORLD = [  # conf/task/mw_*.yaml: accepted by name, each with its own recipe
    "mw_reach",
    "mw_push",
    "mw_pick_place",
    "mw_drawer_open",
    "mw_button_press_topdown",
]
METAWORLD_PREFIX = "mw:"
METAWORLD_TASK_CONFIG = "metaworld"  # conf/task/metaworld.yaml: any v3 task by name
METAWORLD_RECIPE = "metaworld"  # conf/experiment/metaworld.yaml: the recipe of every mw:<name>
DEFAULT_METAWORLD = [  # the five registered tasks and five more whose experts reach >= 95%
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "drawer-open-v3",
    "button-press-topdown-v3",
    "drawer-close-v3",
    "window-open-v3",
    "window-close-v3",
    "plate-slide-v3",
    "faucet-open-v3",
]


class UnknownTaskError(ValueError):
    """A task name the suite does not know; the message lists the valid ones."""


class StepFailed(RuntimeError):
    """collect.py or train.py exited with an error (the message ends with its log's last line)."""


@dataclass(frozen=True)
class SuiteTask:
    name: str  # as given to --tasks and recorded in the results
    task_config: str  # conf/task/<task_config>.yaml
    recipe: str  # conf/experiment/<recipe>.yaml
    task_overrides: tuple[str, ...] = ()  # more overrides that select the task (Meta-World)
    metaworld_name: str | None = None  # e.g. "push-v3" for mw:push-v3

    @property
    def slug(self) -> str:  # a folder name
        return self.name.replace(":", "_")


def metaworld_task_names() -> list[str]:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return list(ALL_V3_ENVIRONMENTS)


def default_task_names() -> list[str]:
    metaworld = [METAWORLD_PREFIX + name for name in DEFAULT_METAWORLD]
    return [*OWN_TASKS, *ROBOSUITE_TASKS, *metaworld, *IMAGE_TASKS]


def expand_task_names(names: list[str]) -> list[str]:
    """``mw:all`` stands for every Meta-World v3 task; other names pass as they are."""
    expanded: list[str] = []
    for name in names:
        if name == METAWORLD_PREFIX + "all":
            expanded += [METAWORLD_PREFIX + task for task in metaworld_task_names()]
        else:
            expanded.append(name)
    return list(dict.fromkeys(expanded))


def resolve_task(name: str, recipe: str | None = None) -> SuiteTask:
    """The suite task called ``name``; ``recipe`` replaces its own recipe when given."""
    if name.startswith(METAWORLD_PREFIX):
        metaworld_name = name.removeprefix(METAWORLD_PREFIX)
        valid = metaworld_task_names()
        if metaworld_name not in valid:
            listed = ", ".join(METAWORLD_PREFIX + task for task in valid)
            raise UnknownTaskError(f"unknown Meta-World task {name!r}; valid: {listed}")
        selection = (f"task.env_kwargs.task={metaworld_name}",)
        return SuiteTask(
            name, METAWORLD_TASK_CONFIG, recipe or METAWORLD_RECIPE, selection, metaworld_name
        )
    if name in IMAGE_TASKS:
        return SuiteTask(name, IMAGE_TASKS[name], recipe or name)
    if name in [*OWN_TASKS, *ROBOSUITE_TASKS, *REGISTERED_METAWORLD]:
        return SuiteTask(name, name, recipe or name)
    known = [*OWN_TASKS, *ROBOSUITE_TASKS, *IMAGE_TASKS, *REGISTERED_METAWORLD]
    raise UnknownTaskError(
        f"unknown task {name!r}; valid: {', '.join(known)}, or mw:<Meta-World v3 name> "
        "(e.g. mw:push-v3; mw:all for all 50)"
    )


# ------------------------------------------------------------------------------ recipes
def task_selection(task: SuiteTask) -> list[str]:
    return [f"task={task.task_config}", *task.task_overrides]


def recipe_overrides(task: SuiteTask) -> list[str]:
    return [f"+experiment={task.recipe}", *task_selection(task)]


def compose_recipe(task: SuiteTask, extra: list[str], conf_dir: Path = CONF_DIR):
    """``(task, config)``: the recipe composed for ``task`` with ``extra`` overrides; a Meta-World
    task whose dataset path does not name it gets a path of its own (added to the task)."""
    config = compose([*recipe_overrides(task), *extra], conf_dir)
    name = task.metaworld_name
    if name and name not in str(config.task.dataset_path):
        own_path = f"task.dataset_path=datasets/data/mw_{name}.zarr"
        task = replace(task, task_overrides=(*task.task_overrides, own_path))
        config = compose([*recipe_overrides(task), *extra], conf_dir)
    return task, config


def recipe_file(task: SuiteTask, conf_dir: Path = CONF_DIR) -> Path:
    return Path(conf_dir) / "experiment" / f"{task.recipe}.yaml"


# ------------------------------------------------------------------------------ running
def timestamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def last_line(log: Path) -> str:
    lines = [
        part.strip() for part in log.read_text(errors="replace").replace("\r", "\n").split("\n")
    ]
    lines = [line for line in lines if line]
    return lines[-1] if lines else "(empty log)"


def run_logged(command: list[str], log: Path) -> float:
    """Run a repository script with this Python, output into ``log``; its wall-clock seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ python " + shlex.join(command), flush=True)
    start = time.perf_counter()
    with log.open("w") as stream:
        done = subprocess.run(
            [sys.executable, *command], cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        raise StepFailed(
            f"{command[0]} exited with {done.returncode}: {last_line(log)} (log: {relative(log)})"
        )
    return time.perf_counter() - start


def collect_demos(task: SuiteTask, config, plan: list[CollectionRun], args) -> dict:
    """Make the recipe's dataset with collect.py as ``plan`` says; what was done, and its time."""
    dataset = dataset_path(config)
    staging = staging_path(dataset)
    if staging.is_dir():
        shutil.rmtree(staging)  # left by an interrupted collection of ours
    staging.unlink(missing_ok=True)
    selection = task_selection(task)
    arguments = collect_commands(
        config, selection, compose(selection), staging, args.workers, args.demos
    )
    log_dir = Path(args.out) / task.slug / f"collect_{timestamp()}"
    commands, seconds = [], 0.0
    for index, collect_arguments in enumerate(arguments):
        command = ["datasets/collect.py", *collect_arguments]
        seconds += run_logged(command, log_dir / f"collect{index}.log")
        commands.append("python " + shlex.join(command))
    staging.rename(dataset)
    return {
        "dataset": relative(dataset),
        "n_episodes": sum(run.n_episodes for run in plan),
        "collect_s": round(seconds, 1),
        "commands": commands,
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def train_seed(task: SuiteTask, seed: int, args) -> dict:
    """One training run of the recipe and its final evaluation, as a results entry."""
    run_dir = Path(args.out) / task.slug / f"seed{seed}_{timestamp()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [
        "train.py",
        *recipe_overrides(task),
        f"seed={seed}",
        f"eval.n_episodes={args.episodes}",
        f"eval.n_envs={args.workers}",
        f"hydra.run.dir={run_dir}",
        *args.extra_overrides,
    ]
    started = time.time()
    # the terminal's output; train.py's own log (Hydra's train.log) is written beside it
    total_s = run_logged(command, run_dir / "terminal.out")
    return run_entry(task, seed, run_dir, command, started, total_s)


def train_sweep(task: SuiteTask, args):
    """Every seed of ``task`` as one sweep through ``--launcher``: ``(seed, entry or the
    StepFailed)`` of each. A failed job fails its seed only (train.py exits 2 after the rest)."""
    sweep_dir, stamp = Path(args.out) / task.slug, timestamp()
    overrides = [*recipe_overrides(task), f"eval.n_episodes={args.episodes}"]
    overrides += [f"eval.n_envs={args.workers}", *args.extra_overrides]
    command = sweep_launch.multirun_command(
        overrides, args.seeds, args.launcher, sweep_dir, f"seed${{seed}}_{stamp}"
    )
    try:
        run_logged(command, sweep_dir / f"sweep_{stamp}.out")
    except StepFailed as error:
        print(f"{task.name}: {error}", flush=True)
    for seed in args.seeds:
        run_dir = sweep_dir / f"seed{seed}_{stamp}"
        config, evaluation = run_dir / ".hydra" / "config.yaml", run_dir / "eval.json"
        if not evaluation.exists():
            yield seed, StepFailed(f"its job wrote no eval.json in {relative(run_dir)}")
            continue
        started = config.stat().st_mtime  # Hydra writes it as the job starts
        total_s = evaluation.stat().st_mtime - started
        try:
            yield seed, run_entry(task, seed, run_dir, command, started, total_s)
        except StepFailed as error:
            yield seed, error


def seed_runs(task: SuiteTask, args):
    """``(seed, entry or StepFailed)`` of each seed: one train.py after another, or a sweep."""
    if args.launcher:
        yield from train_sweep(task, args)
        return
    for seed in args.seeds:
        try:
            yield seed, train_seed(task, seed, args)
        except StepFailed as error:
            yield seed, error


def run_entry(
    task: SuiteTask, seed: int, run_dir: Path, command: list[str], started: float, total_s: float
) -> dict:
    """The results entry of a finished train.py run in ``run_dir`` (started at ``started``)."""
    checkpoint = run_dir / "checkpoints" / "latest.safetensors"
    evaluation = run_dir / "eval.json"
    if not evaluation.exists() or not checkpoint.exists():
        raise StepFailed(f"train.py wrote no final checkpoint and eval.json in {relative(run_dir)}")
    # The last checkpoint is written at the last step, just before the final evaluation.
    trained_at, evaluated_at = checkpoint.stat().st_mtime, evaluation.stat().st_mtime
    outcome = json.loads(evaluation.read_text())
    return {
        "task": task.name,
        "seed": seed,
        "recipe": task.recipe,
        "recipe_sha256": hashlib.sha256(recipe_file(task).read_bytes()).hexdigest(),
        "success_rate": outcome["success_rate"],
        "successes": outcome["successes"],
        "n_episodes": outcome["n_episodes"],
        "success_ci95": outcome["success_ci95"],
        "success_by_mode": outcome.get("success_by_mode", {}),
        "mode_counts": outcome.get("mode_counts", {}),
        "train_s": round(trained_at - started, 1),  # start-up and data loading included
        "eval_s": round(evaluated_at - trained_at, 1),  # final evaluation and its videos
        "total_s": round(total_s, 1),
        "run_dir": relative(run_dir),
        "command": "python " + shlex.join(command),
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def collect_seconds(seconds: float | None) -> str:
    return "- (dataset made earlier)" if seconds is None else f"{seconds:.0f} s"


def run_task(task: SuiteTask, args, results: dict, command: str) -> dict:
    """Collect (if needed) and train every seed of one task; the results with its entries."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if not recipe_file(task).exists():
        print(f"{task.name}: no recipe (conf/experiment/{task.recipe}.yaml), skipped", flush=True)
        return results
    try:
        task, config = compose_recipe(task, args.extra_overrides)
        plan = collection_plan(config, args.demos)
        dataset = dataset_path(config)
        if not dataset.exists():
            made = collect_demos(task, config, plan, args)
            results = suite_results.load_results(Path(args.results))  # other suite processes
            results["collections"][task.name] = made
            results = suite_results.save_results(Path(args.results), results, command)
            print(f"{task.name}: collected {made['n_episodes']} demos in {made['collect_s']:.0f} s")
        settings = recipe_settings(config, dataset)
    except (RecipeError, StepFailed, HydraException, OmegaConfBaseException) as error:
        print(f"{task.name}: FAILED ({type(error).__name__}: {error})", flush=True)
        return results
    planned = sum(run.n_episodes for run in plan)
    if config.get("collect") is not None and settings["n_demos"] != planned:
        print(
            f"{task.name}: warning: {settings['n_demos']} demos in {settings['dataset']}, "
            f"the recipe plans {planned}",
            flush=True,
        )
    for seed, entry in seed_runs(task, args):
        if isinstance(entry, StepFailed):
            print(f"{task.name} seed {seed}: FAILED ({entry})", flush=True)
            continue
        entry["recipe_settings"] = settings
        made = results["collections"].get(task.name, {})
        same_dataset = made.get("dataset") == settings["dataset"]
        entry["collect_s"] = made.get("collect_s") if same_dataset else None
        # Re-read the file first: suite processes for other tasks may have written to it.
        results = suite_results.merge_run(suite_results.load_results(Path(args.results)), entry)
        results = suite_results.save_results(Path(args.results), results, command)
        low, high = entry["success_ci95"]
        print(
            f"{task.name:26s} seed {seed}: {entry['success_rate']:.0%} ({low:.0%}-{high:.0%}, "
            f"n={entry['n_episodes']}), train {entry['train_s']:.0f} s, "
            f"eval {entry['eval_s']:.0f} s, collect {collect_seconds(entry['collect_s'])}",
            flush=True,
        )
    return results


# ------------------------------------------------------------------------------ CLI
def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", help="suite tasks (default: all but mw_*)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100, help="final evaluation episodes")
    parser.add_argument("--demos", type=int, default=300, help="demos if a recipe has no collect")
    parser.add_argument("--workers", type=int, default=2, help="collect.py and eval processes")
    parser.add_argument("--recipe", help="run conf/experiment/RECIPE.yaml on every task instead")
    parser.add_argument(
        "--extra-overrides", nargs="*", default=[], help="Hydra overrides for every train.py run"
    )
    parser.add_argument("--out", default=str(ROOT / "outputs" / "suite"), help="run directories")
    sweep_launch.add_launcher_argument(parser)
    parser.add_argument("--results", default=str(RESULTS), help="the results JSON file")
    parser.add_argument("--figure", default=str(FIGURE), help="the figure PNG file")
    parser.add_argument(
        "--plot-only", action="store_true", help="only summarise and redraw --results"
    )
    args = parser.parse_args(argv)
    for name in ("episodes", "demos", "workers"):
        if getattr(args, name) < 1:
            raise SystemExit(f"suite.py: --{name} {getattr(args, name)}: must be >= 1")
    if min(args.seeds) < 0:
        raise SystemExit(f"suite.py: --seeds {args.seeds}: seeds must be >= 0")
    return args


def report(results: dict, figure: Path) -> None:
    """Print each task's summary line, and draw the figure."""
    order = suite_results.task_order(results["summary"], default_task_names())
    for task in order:
        print(suite_results.summary_line(task, results["summary"][task]))
    suite_results.draw_figure(results, figure, order)
    print(f"figure: {relative(figure)}")


def plot_only(args, tasks: list[SuiteTask]) -> None:
    """Summarise and draw ``--results`` as it is (only ``--tasks``, when given)."""
    results_path = Path(args.results)
    if not results_path.exists():
        raise SystemExit(f"suite.py: --results {results_path}: no such file")
    results = suite_results.load_results(results_path)
    if tasks:
        chosen = {task.name for task in tasks}
        results["runs"] = [run for run in results["runs"] if run["task"] in chosen]
    if not results["runs"]:
        raise SystemExit(f"suite.py: --results {results_path}: no runs to draw")
    results["summary"] = suite_results.summarize(results)
    report(results, Path(args.figure))


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    command = "python bench/suite.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        names = expand_task_names(args.tasks) if args.tasks else default_task_names()
        chosen = args.tasks or not args.plot_only  # --plot-only draws every task by default
        tasks = [resolve_task(name, args.recipe) for name in names] if chosen else []
    except UnknownTaskError as error:
        raise SystemExit(f"suite.py: {error}") from None
    if args.plot_only:
        plot_only(args, tasks)
        return
    os.environ.setdefault("MUJOCO_GL", "egl")
    results_path = Path(args.results)
    results = suite_results.load_results(results_path)
    for task in tasks:
        results = run_task(task, args, results, command)
    results = suite_results.load_results(results_path)  # with other suite processes' runs
    if not results["runs"]:
        print("no runs in the results yet: nothing to summarise or draw")
        return
    results = suite_results.save_results(results_path, results, command)
    report(results, Path(args.figure))
    print(f"results: {relative(results_path)}")


if __name__ == "__main__":
    main()
