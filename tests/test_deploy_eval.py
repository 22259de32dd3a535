"""A real deploy: eval.py with hardware=sim, the robot server in its own process, the sim arm in
real time, the run recorded; and eval.py refusing to record without hardware."""

from __future__ import annotations

import numpy as np
import pytest

# ---- a real deploy: eval.py, the robot server in its own process, the sim arm in real time -----

PUSH_CUBE_META = {
    "obs": {
        "eef_pos": {"shape": [3], "type": "low_dim"},
        "object_state": {"shape": [9], "type": "low_dim"},
    },
    "action": {"shape": [7]},
}


def _tiny_checkpoint(path):
    """An untrained, small diffusion policy for PushCube's state keys, saved as train.py does."""
    import torch

    from robopolicy.data.normalizer import Normalizer
    from robopolicy.policies.registry import build_policy, policy_record
    from robopolicy.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    normalizer = Normalizer.from_shape_meta(PUSH_CUBE_META)
    rng = np.random.default_rng(0)
    normalizer.fit(
        {
            "eef_pos": rng.uniform(-0.3, 0.3, (64, 3)),
            "object_state": rng.uniform(-0.3, 0.3, (64, 9)),
            "action": rng.uniform(-1.0, 1.0, (64, 7)),
        }
    )
    policy = build_policy(
        "diffusion",
        PUSH_CUBE_META,
        normalizer,
        {
            "horizon": 8,
            "n_obs_steps": 2,
            "n_action_steps": 4,
            "backbone": "mlp",
            "backbone_kwargs": {"hidden_dims": [32, 32]},
            "num_inference_steps": 2,
        },
    )
    env_kwargs = {"robot": "panda", "action_space": "ee_delta", "obs_mode": "state"}
    save_checkpoint(
        path,
        {
            "policy": policy_record(policy, policy.state_dict()),
            "env_spec": {"id": "robopolicy/PushCube-v0", "kwargs": env_kwargs},
            "config": {"task": {"fps": 10}},
        },
    )


def _eval_with_tiny_checkpoint(tmp_path, *overrides, timeout=240, traceback=True):
    """eval.py on a fresh tiny checkpoint (``tmp_path/tiny.safetensors``), run directory
    ``tmp_path/run``, ONNX graphs cached under ``tmp_path``; the finished process.
    ``traceback=False``: errors as users see them (one line, exit 2)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    checkpoint = tmp_path / "tiny.safetensors"
    _tiny_checkpoint(checkpoint)
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [
            sys.executable,
            str(repo / "eval.py"),
            f"checkpoint={checkpoint}",
            *overrides,
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=repo,
        env={
            **os.environ,
            "ROBOPOLICY_TRACEBACK": "1" if traceback else "",
            "TMPDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["eager", "onnx"])
def test_eval_deploys_through_the_robot_server_and_records(tmp_path, runtime):
    import json

    from robopolicy.data.reader import ReplayBuffer

    run = _eval_with_tiny_checkpoint(
        tmp_path,
        "hardware=sim",
        "n_episodes=2",
        "seed=7",
        "max_episode_steps=12",
        "torch_threads=1",
        f"record={tmp_path / 'deploy.zarr'}",
        f"sampler.runtime={runtime}",
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert results["n_episodes"] == 2 and results["seeds"] == [7, 8]
    assert results["sampler"]["runtime"] == runtime
    assert len(list(tmp_path.glob("robopolicy-onnx/*.onnx"))) == (runtime == "onnx")
    assert results["robot"].startswith("tcp://127.0.0.1:")  # served by its own process
    # the rate is what the world's success flags said, episode by episode, inside its interval
    flags = [episode["success"] for episode in results["episodes"]]
    assert results["success_rate"] == pytest.approx(sum(flags) / len(flags))
    low, high = results["success_ci95"]
    assert low <= results["success_rate"] <= high
    for episode in results["episodes"]:
        if not episode["success"]:
            assert episode["ticks"] == 12
        # inference (~ms) fits in act_delay: at most the first tick waits for the first chunk
        assert episode["actions_sent"] >= episode["ticks"] - 1
    latency = results["latency"]
    for series in ("observation_age", "inference", "lateness", "jitter"):
        assert latency[series]["n"] > 0
        assert latency[series]["p99_ms"] is not None
    # one clock on both sides of the server: no observation is used before it was captured
    # (how fresh it is, and the loop's jitter, on this machine: bench/bench_realtime.py)
    assert latency["observation_age"]["median_ms"] >= 0
    sent = sum(episode["actions_sent"] for episode in results["episodes"])
    withheld = sum(episode["actions_not_forwarded"] for episode in results["episodes"])
    # every action went through the layer; on a loaded machine one may arrive after its target
    # time and be dropped as stale (the layer's rule), and then it is counted as such
    arm_report = results["safety"]["arm"]
    assert arm_report["forwarded"] == sent - withheld
    assert withheld == arm_report.get("stale", 0) + arm_report.get("rejected", 0)
    assert withheld <= sent // 4, results["episodes"]
    # the recording: a valid dataset with one step per action sent, seeds as episode metadata
    buffer = ReplayBuffer.open(tmp_path / "deploy.zarr")
    lengths = [episode["actions_sent"] for episode in results["episodes"]]
    assert list(buffer.episode_lengths) == lengths
    assert buffer.episode_meta["seed"].tolist() == [7, 8]
    assert buffer.episode_meta["success"].tolist() == flags  # the same flags, recorded
    assert buffer.fps == 10
    actions = buffer.read_all("action")
    assert actions.shape == (sum(lengths), 7) and np.isfinite(actions).all()
    assert buffer.read_all("object_state").shape == (sum(lengths), 9)
    # beside each action, what the safety layer forwarded to the arm (all of them, as counted)
    assert (~buffer.read_all("sent_forwarded")).sum() == withheld
    sent_commands = buffer.read_all("sent_command")
    assert sent_commands.dtype == np.float64 and sent_commands.shape[0] == sum(lengths)
    forwarded_rows = sent_commands[buffer.read_all("sent_forwarded")]
    assert np.isfinite(sent_commands).all() and np.abs(forwarded_rows).sum(axis=1).min() > 0
    assert "ready tcp://127.0.0.1" in (tmp_path / "run" / "server.log").read_text()


@pytest.mark.slow
def test_eval_through_the_onnx_runtime_plays_the_eager_episodes(tmp_path):
    import json

    from robopolicy.eval.evaluate import evaluate
    from robopolicy.policies.registry import load_policy

    run = _eval_with_tiny_checkpoint(
        tmp_path,
        "n_episodes=2",
        "seed=7",
        "max_episode_steps=12",
        "n_envs=1",
        "video_episodes=0",
        "torch_threads=1",
        "sampler.runtime=onnx",
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert results["n_episodes"] == 2 and results["sampler"]["runtime"] == "onnx"
    assert len(list(tmp_path.glob("robopolicy-onnx/*.onnx"))) == 1
    # the same seeded episodes, eager, in this process: the same outcomes
    policy, contents = load_policy(tmp_path / "tiny.safetensors")
    spec = contents["env_spec"]
    eager = evaluate(
        policy, spec["id"], spec["kwargs"], 2, seed=7, env_modules=["sim"], max_episode_steps=12
    )
    assert results["successes"] == int(eager.success.sum())
    assert results["length_mean"] == pytest.approx(float(eager.lengths.mean()))
    assert results["return_mean"] == pytest.approx(float(eager.returns.mean()), abs=1e-3)


def test_eval_refuses_to_record_without_hardware(tmp_path):
    record = f"record={tmp_path / 'deploy.zarr'}"
    run = _eval_with_tiny_checkpoint(tmp_path, record, timeout=120, traceback=False)
    assert run.returncode == 2
    assert "record=PATH records deploy runs: it needs hardware=<robot>" in run.stderr
    assert not (tmp_path / "deploy.zarr").exists()
