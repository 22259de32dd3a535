"""bench/suite.py: merging per (task, seed), the summary, the recipe's collection plan, the
figure from a results file, bad task names, and (slow) one tiny end-to-end run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "suite.py"
sys.path.insert(0, str(ROOT / "bench"))

import suite  # noqa: E402
import suite_recipes  # noqa: E402
import suite_results  # noqa: E402

from robopolicy.config import collect_plan  # noqa: E402


def run_entry(task: str, seed: int, successes: int, n: int = 100, **extra) -> dict:
    """A results entry as train_seed writes it (times and modes made up)."""
    rate = successes / n
    low, high = suite_results.wilson_interval(successes, n)
    entry = {
        "task": task,
        "seed": seed,
        "success_rate": rate,
        "successes": successes,
        "n_episodes": n,
        "success_ci95": [low, high],
        "train_s": 100.0 + seed,
        "eval_s": 20.0,
    }
    return {**entry, **extra}


def suite_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, cwd=ROOT
    )


def test_a_rerun_of_a_task_and_seed_replaces_its_entry_and_keeps_the_others():
    results = suite_results.empty_results()
    for entry in (run_entry("stack", 1, 80), run_entry("stack", 0, 70), run_entry("push_t", 0, 50)):
        results = suite_results.merge_run(results, entry)
    results = suite_results.merge_run(results, run_entry("stack", 0, 95))
    keys = [(run["task"], run["seed"], run["successes"]) for run in results["runs"]]
    assert keys == [("push_t", 0, 50), ("stack", 0, 95), ("stack", 1, 80)]


def test_results_file_round_trip_keeps_runs_and_recomputes_the_summary(tmp_path):
    path = tmp_path / "suite.json"
    results = suite_results.merge_run(suite_results.load_results(path), run_entry("stack", 0, 90))
    suite_results.save_results(path, results, "python bench/suite.py --tasks stack")
    again = suite_results.load_results(path)
    again = suite_results.merge_run(again, run_entry("stack", 1, 92))
    saved = suite_results.save_results(path, again, "python bench/suite.py --seeds 1")
    on_disk = json.loads(path.read_text())
    assert on_disk["command"] == "python bench/suite.py --seeds 1"
    assert [run["seed"] for run in on_disk["runs"]] == [0, 1]
    assert on_disk["summary"]["stack"]["mean"] == pytest.approx(0.91)
    assert saved["summary"] == on_disk["summary"]


def test_summary_gives_mean_spread_pooled_interval_target_and_published_ratio():
    results = suite_results.empty_results()
    for seed, successes in enumerate([80, 90, 100]):
        results = suite_results.merge_run(results, run_entry("robosuite_can", seed, successes))
    summary = suite_results.summarize(results)["robosuite_can"]
    assert summary["seeds"] == [0, 1, 2]
    assert summary["mean"] == pytest.approx(0.9)
    assert summary["std"] == pytest.approx(0.1)  # sample standard deviation over seeds
    assert (summary["min"], summary["max"]) == (0.8, 1.0)
    assert summary["pooled_successes"] == 270 and summary["pooled_episodes"] == 300
    low, high = summary["pooled_ci95"]
    assert low < 0.9 < high
    assert summary["target"] == 0.85 and summary["meets_target"] is True
    assert summary["mean_over_target"] == pytest.approx(0.9 / 0.85)
    assert summary["published"] == [1.0, 1.0]
    assert summary["mean_over_published"] == pytest.approx(0.9)
    line = suite_results.summary_line("robosuite_can", summary)
    assert "mean 90.0%" in line and ", met" in line and "Diffusion Policy 100%: 0.90x" in line


def test_around_obstacle_needs_both_modes_among_its_successes():
    one_sided = run_entry("around_obstacle", 0, 95, success_by_mode={"-1": 0, "0": 90, "1": 5})
    both = run_entry("around_obstacle", 0, 95, success_by_mode={"0": 50, "1": 45})
    for entry, meets in ((one_sided, False), (both, True)):
        results = suite_results.merge_run(suite_results.empty_results(), entry)
        summary = suite_results.summarize(results)["around_obstacle"]
        assert summary["meets_target"] is meets
        assert set(summary["mode_share_of_successes"]) == {"0", "1"}  # undecided (-1) left out


def test_meta_world_tasks_by_name_get_the_meta_world_target():
    assert suite_results.target_for("mw:door-open-v3") == suite_results.METAWORLD_TARGET
    assert suite_results.target_for("mw_push") == suite_results.METAWORLD_TARGET
    task = suite.resolve_task("mw:door-open-v3")
    assert task.task_config == "metaworld" and task.recipe == "metaworld"
    assert task.task_overrides == ("task.env_kwargs.task=door-open-v3",)
    assert suite.resolve_task("pick_lift_image").task_config == "pick_lift"
    assert suite.resolve_task("stack", recipe="main_job").recipe == "main_job"


@pytest.fixture
def conf_with_recipes(tmp_path):
    """A copy of conf/ with three synthetic recipes: one collect run, two runs (inherited by a
    third recipe through its defaults), and a malformed collect key."""
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    recipes = {
        "one_run": """
            collect:
              n_episodes: 250
              overrides: [store_sim_state=false]
            task:
              env_kwargs:
                obs_mode: state
            """,
        "two_runs": """
            collect:
              - n_episodes: 200
              - overrides: [seed=50000, injected_noise_std=0.2]
            """,
        "inherits_two_runs": """
            defaults:
              - two_runs
              - _self_
            algo:
              num_steps: 123
            """,
        "malformed": """
            collect:
              n_episodes: many
            """,
    }
    for name, body in recipes.items():
        text = "# @package _global_\n" + textwrap.dedent(body)
        (conf / "experiment" / f"{name}.yaml").write_text(text)
    return conf


def test_demos_count_and_collect_overrides_are_read_from_the_recipe(conf_with_recipes):
    task = suite.resolve_task("pick_lift", recipe="one_run")
    task, config = suite.compose_recipe(task, [], conf_dir=conf_with_recipes)
    plan = collect_plan.collection_plan(config, default_n_episodes=300)
    assert plan == [collect_plan.CollectionRun(250, ("store_sim_state=false",))]
    plain = suite_recipes.compose(suite.task_selection(task), conf_with_recipes)
    assert collect_plan.task_changes(config, plain) == ['task.env_kwargs.obs_mode="state"']


def test_a_list_of_collect_runs_is_inherited_and_missing_counts_take_the_default(
    conf_with_recipes,
):
    task = suite.resolve_task("push_cube", recipe="inherits_two_runs")
    _, config = suite.compose_recipe(task, [], conf_dir=conf_with_recipes)
    assert config.algo.num_steps == 123
    plan = collect_plan.collection_plan(config, default_n_episodes=77)
    assert [run.n_episodes for run in plan] == [200, 77]
    assert plan[1].overrides == ("seed=50000", "injected_noise_std=0.2")


def test_a_recipe_without_collect_gets_the_default_and_a_bad_one_one_clear_error(
    conf_with_recipes,
):
    _, config = suite.compose_recipe(suite.resolve_task("push_cube", recipe="main_job"), [])
    assert collect_plan.collection_plan(config, 42) == [collect_plan.CollectionRun(42)]
    task = suite.resolve_task("push_cube", recipe="malformed")
    _, config = suite.compose_recipe(task, [], conf_dir=conf_with_recipes)
    expected = r"collect\.n_episodes=many: expected an integer >= 1"
    with pytest.raises(collect_plan.RecipeError, match=expected):
        collect_plan.collection_plan(config, 42)


def test_staging_path_keeps_the_dataset_suffix(tmp_path):
    assert suite_recipes.staging_path(tmp_path / "a.zarr").name == "a.incomplete.zarr"
    assert suite_recipes.staging_path(tmp_path / "b.zarr.zip").name == "b.incomplete.zarr.zip"


def test_plot_only_draws_the_figure_from_a_results_file(tmp_path):
    results = suite_results.empty_results()
    entries = [run_entry("push_cube", seed, 96 + seed) for seed in range(3)]
    entries += [run_entry("push_t", seed, 70 + 5 * seed) for seed in range(3)]
    entries += [run_entry("mw:door-open-v3", 0, 100)]
    for entry in entries:
        results = suite_results.merge_run(results, entry)
    results_path, figure = tmp_path / "suite.json", tmp_path / "figure.png"
    suite_results.save_results(results_path, results, "synthetic")
    done = suite_cli("--plot-only", "--results", str(results_path), "--figure", str(figure))
    assert done.returncode == 0, done.stderr
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert "push_t" in done.stdout and "NOT met" in done.stdout  # 75% against 80%
    assert "Diffusion Policy 91%-95%" in done.stdout


@pytest.mark.parametrize(
    ("task", "named_valid"),
    [("bogus_task", "push_cube"), ("mw:not-a-task-v3", "mw:push-v3")],
)
def test_an_unknown_task_stops_with_one_line_naming_it_and_the_valid_ones(
    tmp_path, task, named_valid
):
    done = suite_cli("--tasks", "stack", task, "--results", str(tmp_path / "r.json"))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert repr(task) in lines[0] and named_valid in lines[0]
    assert not (tmp_path / "r.json").exists()


def test_a_task_without_its_recipe_is_reported_and_skipped(tmp_path):
    results_path = tmp_path / "r.json"
    done = suite_cli(
        "--tasks", "stack", "--recipe", "no_such_recipe", "--results", str(results_path)
    )
    assert done.returncode == 0, done.stderr
    assert "stack: no recipe (conf/experiment/no_such_recipe.yaml), skipped" in done.stdout
    assert not results_path.exists()


@pytest.mark.slow
def test_one_tiny_run_collects_trains_evaluates_and_draws(tmp_path):
    """The main-job recipe on PushCube at toy size: 4 demos, 20 steps, 2 evaluation episodes."""
    dataset = tmp_path / "push_cube.zarr"
    results_path, figure = tmp_path / "suite.json", tmp_path / "suite.png"
    done = suite_cli(
        *("--tasks", "push_cube", "--recipe", "main_job", "--seeds", "0"),
        *("--demos", "4", "--workers", "1", "--episodes", "2"),
        *("--out", str(tmp_path / "runs"), "--results", str(results_path)),
        *("--figure", str(figure), "--extra-overrides", "algo.num_steps=20"),
        *("algo.eval_every=0", "eval.video_episodes=0", "torch_threads=1"),
        f"task.dataset_path={dataset}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(results_path.read_text())
    (run,) = results["runs"]
    assert (run["task"], run["seed"], run["n_episodes"]) == ("push_cube", 0, 2)
    assert run["train_s"] > 0 and run["eval_s"] >= 0 and run["collect_s"] > 0
    assert run["recipe_settings"]["n_demos"] == 4
    assert results["collections"]["push_cube"]["n_episodes"] == 4
    assert dataset.exists() and not suite_recipes.staging_path(dataset).exists()
    assert results["summary"]["push_cube"]["target"] == 0.95
    assert figure.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_launcher_trains_the_seeds_as_one_sweep_of_submitit_jobs(tmp_path):
    """--launcher local: both seeds are jobs of one train.py -m sweep (submitit's processes),
    in the run directories the suite reads its entries from."""
    dataset, results_path = tmp_path / "push_cube.zarr", tmp_path / "suite.json"
    done = suite_cli(
        *("--tasks", "push_cube", "--recipe", "main_job", "--seeds", "0", "1"),
        *("--demos", "4", "--workers", "1", "--episodes", "2", "--launcher", "local"),
        *("--out", str(tmp_path / "runs"), "--results", str(results_path)),
        *("--figure", str(tmp_path / "suite.png"), "--extra-overrides", "algo.num_steps=20"),
        *("algo.eval_every=0", "eval.video_episodes=0", "torch_threads=1", "progress=false"),
        f"task.dataset_path={dataset}",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = json.loads(results_path.read_text())["runs"]
    assert sorted(run["seed"] for run in runs) == [0, 1]
    for run in runs:
        assert run["command"].startswith("python train.py -m hydra/launcher=local seed=0,1")
        assert run["train_s"] > 0 and run["n_episodes"] == 2
        assert Path(ROOT / run["run_dir"]).name.startswith(f"seed{run['seed']}_")
    submitted = list((tmp_path / "runs" / "push_cube" / ".submitit").glob("*/*_submitted.pkl"))
    assert len(submitted) == 2
