"""bench/rl_compare.py: per-method bases and overrides, time to target, the summary and figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "rl_compare.py"


def write_run(run_dir: Path, points: list[tuple[int, float, float]], final: float) -> None:
    """A run directory as the RL algorithms leave it: metrics.jsonl rows and eval.json."""
    run_dir.mkdir(parents=True)
    rows = [{"env_steps": 500, "train/critic_loss": 0.3}]
    rows += [
        {"env_steps": steps, "eval/success_rate": success, "time/wall_s": wall}
        for steps, success, wall in points
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = {"success_rate": final, "success_ci95": [final - 0.1, final + 0.05], "n_episodes": 100}
    (run_dir / "eval.json").write_text(json.dumps(result))


def compare(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, cwd=ROOT
    )


def test_plot_only_summarises_every_run_with_its_own_base(tmp_path):
    write_run(tmp_path / "dppo_seed0", [(1000, 0.5, 10.0), (2000, 0.92, 20.0)], final=0.95)
    write_run(tmp_path / "dsrl_seed0", [(0, 0.4, 1.0), (3000, 0.85, 30.0)], final=0.88)
    done = compare(
        "--base",
        "dppo=outputs/base/clean/checkpoints/latest.safetensors",
        "dsrl=outputs/base/mix/checkpoints/latest.safetensors",
        "--methods",
        "dppo",
        "dsrl",
        "--seeds",
        "0",
        "1",
        "--out",
        str(tmp_path),
        "--plot-only",
    )
    assert done.returncode == 0, done.stderr
    assert "dppo_seed1: no metrics.jsonl, left out" in done.stdout
    summary = {
        entry["method"]: entry for entry in json.loads((tmp_path / "summary.json").read_text())
    }
    assert set(summary) == {"dppo", "dsrl"}  # the runs that were never made are not listed
    assert summary["dppo"]["base"].endswith("clean/checkpoints/latest.safetensors")
    assert (summary["dppo"]["env_steps_to_target"], summary["dppo"]["wall_s_to_target"]) == (
        2000,
        20.0,
    )
    assert summary["dsrl"]["env_steps_to_target"] is None  # 85% never reached 90%
    assert summary["dsrl"]["env_steps_trained"] == 3000
    assert summary["dsrl"]["final_success"] == 0.88
    assert (tmp_path / "success_vs_env_steps.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--base", "dppo=a.safetensors", "dsrll=b.safetensors", "--methods", "dppo", "dsrl"],
            "--base 'dsrll=b.safetensors': expected METHOD=CHECKPOINT",
        ),
        (
            ["--base", "dppo=a.safetensors", "--methods", "dppo", "dsrl"],
            "--base names no checkpoint for ['dsrl']",
        ),
        (
            ["--base", "a.safetensors", "--methods", "dsrl", "--method-overrides", "seed=3"],
            "--method-overrides 'seed=3': expected METHOD=OVERRIDE",
        ),
    ],
)
def test_a_bad_base_or_override_is_one_clear_error(tmp_path, arguments, message):
    done = compare(*arguments, "--out", str(tmp_path), "--plot-only")
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "summary.json").exists()


def test_launcher_sweeps_each_methods_remaining_seeds_into_the_usual_directories(
    tmp_path, monkeypatch
):
    sys.path.insert(0, str(ROOT / "bench"))
    import rl_compare

    write_run(tmp_path / "dppo_seed0", [(1000, 0.5, 10.0)], final=0.5)  # done: not run again
    commands = []

    def recorded(command, **_):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(rl_compare.subprocess, "run", recorded)
    args = rl_compare.argparse.Namespace(
        methods=["dppo", "dsrl"], seeds=[0, 1], launcher="slurm", overrides=["algo.lr=1e-4"]
    )
    bases = {"dppo": "a.safetensors", "dsrl": "b.safetensors"}
    extra = {"dppo": [], "dsrl": ["+experiment=dsrl_push_cube_mix"]}
    rl_compare.run_all(args, bases, extra, tmp_path)
    dppo, dsrl = (command[1:] for command in commands)
    assert dppo[:6] == [
        "train.py",
        "-m",
        "hydra/launcher=slurm",
        "seed=1",
        f"hydra.sweep.dir={tmp_path}",
        "hydra.sweep.subdir=dppo_seed${seed}",
    ]
    assert dppo[6:] == ["algo=dppo", "checkpoint=a.safetensors", "algo.lr=1e-4"]
    assert dsrl[3] == "seed=0,1" and "+experiment=dsrl_push_cube_mix" in dsrl
    assert (tmp_path / "dsrl_sweep.out").exists()
