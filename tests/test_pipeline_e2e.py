"""The user's journey through the command lines: collect -> train -> eval, with real processes,
real MuJoCo and real files, at toy sizes. Also: bad input stops each entry point with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from tiny_runs import TINY_TRAINING

from robopolicy.policies.registry import load_policy
from robopolicy.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MUJOCO_GL": "egl"}


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"{args[0]} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    return completed


def _rerun_here(checkpoint: Path, n_episodes: int, seed: int, sampler: dict):
    """The same seeded episodes rolled out in this process from the checkpoint alone, with the
    settings the command lines were given (12 env steps, state observations)."""
    from robopolicy.eval.evaluate import evaluate

    policy, contents = load_policy(checkpoint)
    spec = contents["env_spec"]
    result = evaluate(
        policy,
        spec["id"],
        spec["kwargs"],
        n_episodes,
        n_envs=1,
        seed=seed,
        env_modules=["sim"],
        sampler_options=sampler,
        max_episode_steps=12,
    )
    # a failure is an episode that ran to the time limit; a success ended it there or before
    assert result.lengths.max() <= 12 and (result.lengths[~result.success] == 12).all()
    return result


def _assert_reports(summary: dict, result) -> None:
    """A command line's summary says what the env's success flags said, seed by seed."""
    assert summary["successes"] == int(result.success.sum())
    assert summary["failed_seeds"] == [int(seed) for seed in result.seeds[~result.success]]
    assert summary["length_mean"] == pytest.approx(float(result.lengths.mean()))
    assert summary["return_mean"] == pytest.approx(float(result.returns.mean()), rel=1e-4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("journey")
    dataset = work / "push.zarr"
    _run(
        "datasets/collect.py",
        "n_episodes=4",
        f"out={dataset}",
        "task.env_kwargs.obs_mode=state",
        f"hydra.run.dir={work / 'collect'}",
    )
    run_dir = work / "train"
    _run("train.py", f"task.dataset_path={dataset}", *TINY_TRAINING, f"hydra.run.dir={run_dir}")
    return {"work": work, "dataset": dataset, "run": run_dir}


@pytest.mark.slow
def test_train_writes_checkpoints_metrics_plots_videos(trained):
    run_dir = trained["run"]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "latest.safetensors" in checkpoints and len(checkpoints) >= 2  # latest + top-k
    latest = load_checkpoint(run_dir / "checkpoints" / "latest.safetensors")
    best_k = next(name for name in checkpoints if name.startswith("step"))
    best = load_checkpoint(run_dir / "checkpoints" / best_k)  # a best-k: weights only
    assert "optimizer" in latest and "optimizer" not in best and best["config"] == latest["config"]
    load_policy(run_dir / "checkpoints" / best_k)  # eval and deploy load it
    summary = json.loads((run_dir / "eval.json").read_text())
    assert summary["n_episodes"] == 2
    # the final evaluation is a rollout of the checkpoint it names, from the eval seeds
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    sampler = OmegaConf.to_container(config.eval.sampler, resolve=True)
    result = _rerun_here(Path(summary["checkpoint"]), 2, int(config.eval.seed), sampler)
    _assert_reports(summary, result)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val/loss" in m for m in metrics) and any("eval/success_rate" in m for m in metrics)
    assert (run_dir / "loss.png").stat().st_size > 0
    assert "[train][INFO] - dataset verified" in (run_dir / "train.log").read_text()
    assert list((run_dir / "videos").glob("*.mp4"))


@pytest.mark.slow
def test_eval_reports_success_with_interval_and_latency(trained):
    out = trained["work"] / "eval"
    checkpoint = trained["run"] / "checkpoints" / "latest.safetensors"
    completed = _run(
        "eval.py",
        f"checkpoint={checkpoint}",
        "n_episodes=3",
        "n_envs=1",
        "video_episodes=1",
        "max_episode_steps=12",
        "sampler.num_steps=2",
        f"hydra.run.dir={out}",
    )
    assert "95% CI" in completed.stdout
    results = json.loads((out / "eval.json").read_text())
    assert results["n_episodes"] == 3 and results["sampler"]["num_steps"] == 2
    # the episodes eval.py reports are the ones rolled out here from the same seeds
    result = _rerun_here(checkpoint, 3, results["seeds"][0], results["sampler"])
    _assert_reports(results, result)
    assert results["success_rate"] == pytest.approx(results["successes"] / 3)
    # the 95% Wilson interval of k/3, computed here: (0, .56), (.06, .79), (.21, .94), (.44, 1)
    expected = {0: (0.0, 0.5615), 1: (0.0615, 0.7923), 2: (0.2077, 0.9385), 3: (0.4385, 1.0)}
    assert results["success_ci95"] == pytest.approx(expected[results["successes"]], abs=1e-3)
    assert results["inference_ms_median"] > 0
    assert len(results["videos"]) == 1 and Path(results["videos"][0]).stat().st_size > 0


@pytest.mark.slow
def test_trace_failures_replays_the_final_evaluation_beside_the_expert(trained, tmp_path):
    """bench/trace_failures.py rolls the run's episodes out again: the same outcomes as the
    run's eval.json, each beside the scripted expert on its seed, step by step."""
    outcome = json.loads((trained["run"] / "eval.json").read_text())
    seeds = [str(seed) for seed in outcome["seeds"]]
    _run("bench/trace_failures.py", str(trained["run"]), "--seeds", *seeds, "--out", str(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(summary) == sorted(seeds)
    for seed in seeds:
        ours, expert = summary[seed]["policy"], summary[seed]["expert"]
        assert ours["success"] == (int(seed) not in outcome["failed_seeds"])
        assert "eef_pos" in ours["keys"] and "eef_pos" in expert["keys"]
    lengths = [summary[seed]["policy"]["length"] for seed in seeds]
    assert np.mean(lengths) == pytest.approx(outcome["length_mean"])
    traces = np.load(tmp_path / "trace.npz")
    assert len(traces[f"{seeds[0]}/policy/action"]) == summary[seeds[0]]["policy"]["length"]


@pytest.mark.slow
def test_eval_refuses_an_env_that_does_not_fit_the_policy(trained):
    checkpoint = trained["run"] / "checkpoints" / "latest.safetensors"
    completed = _run(
        "eval.py",
        f"checkpoint={checkpoint}",
        "n_episodes=1",
        "n_envs=1",
        "video_episodes=0",
        "+env_kwargs.action_space=joint_pos",
        f"hydra.run.dir={trained['work'] / 'eval_bad'}",
        check=False,
    )
    assert completed.returncode == 2
    assert "action: the policy outputs shape [7], the env expects [8]" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.slow
def test_train_refuses_bad_input_before_training(trained, tmp_path):
    bad_key = _run(
        "train.py",
        f"task.dataset_path={trained['dataset']}",
        *TINY_TRAINING,
        "obs_keys=[eef_pos,nope]",
        f"hydra.run.dir={tmp_path / 'a'}",
        check=False,
    )
    assert bad_key.returncode == 2
    assert "nope: not an observation key of this dataset" in bad_key.stderr
    missing = _run(
        "train.py",
        f"task.dataset_path={tmp_path / 'absent.zarr'}",
        *TINY_TRAINING,
        f"hydra.run.dir={tmp_path / 'b'}",
        check=False,
    )
    assert missing.returncode == 2 and "python datasets/collect.py" in missing.stderr
    assert not (tmp_path / "a" / "checkpoints").exists()


@pytest.mark.slow
def test_two_process_torchrun_keeps_replicas_identical(trained, tmp_path):
    completed = subprocess.run(
        [
            str(Path(sys.executable).with_name("torchrun")),
            "--nproc_per_node=2",
            "train.py",
            f"task.dataset_path={trained['dataset']}",
            *TINY_TRAINING,
            "algo.eval_every=0",
            "eval.video_episodes=0",
            f"hydra.run.dir={tmp_path / 'ddp'}",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    digests = {
        line.split()[2]: line.split()[-1]
        for line in completed.stdout.splitlines()
        if "final weights digest" in line
    }
    assert set(digests) == {"0", "1"}, completed.stdout[-2000:]
    assert digests["0"] == digests["1"]
    assert (tmp_path / "ddp" / "eval.json").exists()


@pytest.mark.slow
def test_resume_continues_in_the_original_run_directory(trained, tmp_path):
    """A stopped run resumed with resume=: metrics, plots, checkpoints and train.log go on in
    its directory; the directory Hydra made for the resumed launch is not left behind."""
    original, fresh = tmp_path / "original", tmp_path / "fresh"
    common = [f"task.dataset_path={trained['dataset']}", *TINY_TRAINING]
    _run("train.py", *common, "algo.stop_after=10", f"hydra.run.dir={original}")
    latest = original / "checkpoints" / "latest.safetensors"
    _run("train.py", *common, f"resume={latest}", f"hydra.run.dir={fresh}")
    assert not fresh.exists()
    steps = [json.loads(line)["step"] for line in (original / "metrics.jsonl").open()]
    assert max(steps) == 20 and steps == sorted(steps)
    assert (original / "eval.json").exists() and (original / "success.png").exists()
    assert "resumed from" in (original / "train.log").read_text()
