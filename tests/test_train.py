"""Behaviour-cloning training: exact resume, checkpoints that rebuild the policy, clear errors.

These run ``train_bc`` on a small synthetic dataset with the real Hydra config (composed from
conf/), a tiny MLP denoiser and no rollouts, so they need no simulator and stay fast.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from data_helpers import write_dataset
from hydra import compose, initialize_config_dir

from robopolicy.algos.bc import train_bc
from robopolicy.eval.envs import check_policy_fits_env
from robopolicy.policies.registry import load_policy
from robopolicy.training.checkpoint import CheckpointError, load_checkpoint

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _config(dataset: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[
                f"task.dataset_path={dataset}",
                "obs_keys=[pos]",
                "logger=none",
                "data.batch_size=8",
                "data.val_ratio=0.25",
                "data.val_batches=1",
                "algo.num_steps=6",
                "algo.warmup_steps=2",
                "algo.log_every=1",
                "algo.val_every=3",
                "algo.eval_every=0",
                "algo.checkpoint_every=3",
                "policy.args.horizon=4",
                "policy.args.n_obs_steps=2",
                "policy.args.n_action_steps=2",
                "backbone=mlp",
                "backbone.kwargs.hidden_dims=[32,32]",
                *overrides,
            ],
        )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "demo.zarr"
    write_dataset(path, n_episodes=8)
    return path


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "latest.safetensors")["policy"]["weights"]


@pytest.mark.parametrize("policy", ["diffusion", "flow"])
def test_resumed_run_continues_identically(dataset, tmp_path, policy):
    straight = tmp_path / "straight"
    train_bc(_config(dataset, f"policy={policy}"), straight, torch.device("cpu"))

    sliced = tmp_path / "sliced"
    first = train_bc(_config(dataset, f"policy={policy}", "algo.stop_after=3"), sliced, "cpu")
    assert first["step"] == 3
    checkpoint = sliced / "checkpoints" / "latest.safetensors"
    assert load_checkpoint(checkpoint)["step"] == 3
    second = train_bc(_config(dataset, f"policy={policy}", f"resume={checkpoint}"), sliced, "cpu")
    assert second["step"] == 6

    expected, resumed = _final_weights(straight), _final_weights(sliced)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    losses = [r["train/loss"] for r in _read_metrics(straight)]
    resumed_losses = [r["train/loss"] for r in _read_metrics(sliced)]
    assert losses == resumed_losses


def test_validation_does_not_change_training(dataset, tmp_path):
    """A validation at step 3 (its own seeded noise) leaves the training losses after it as they
    are without one."""
    validated = tmp_path / "validated"
    train_bc(_config(dataset, "algo.val_every=3"), validated, "cpu")
    plain = tmp_path / "plain"
    train_bc(_config(dataset, "algo.val_every=6"), plain, "cpu")
    assert "val/loss" in _read_metrics(validated)[2]
    assert "val/loss" not in _read_metrics(plain)[2]
    losses = [r["train/loss"] for r in _read_metrics(validated)]
    assert losses == [r["train/loss"] for r in _read_metrics(plain)]


def _read_metrics(run_dir: Path) -> list[dict]:
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if "train/loss" in line]


def test_checkpoint_rebuilds_the_trained_policy(dataset, tmp_path):
    train_bc(_config(dataset), tmp_path, torch.device("cpu"))
    checkpoint = tmp_path / "checkpoints" / "latest.safetensors"
    policy, contents = load_policy(checkpoint, use_ema=False)
    again, _ = load_policy(checkpoint, use_ema=False)
    assert contents["env_spec"]["id"] == "robopolicy/PushCube-v0"
    assert contents["config"]["algo"]["num_steps"] == 6
    obs = {"pos": torch.randn(3, 2, 2)}
    noise = torch.randn(3, 4, 3)
    first = policy.predict_action(obs, noise=noise)["action"]
    assert first.shape == (3, 2, 3)
    assert torch.equal(first, again.predict_action(obs, noise=noise)["action"])
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_unknown_obs_key_fails_before_training(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"missing: not an observation key of this dataset"):
        train_bc(_config(dataset, "obs_keys=[pos,missing]"), tmp_path, "cpu")
    assert not (tmp_path / "checkpoints").exists()


def test_bad_policy_config_fails_before_training(dataset, tmp_path):
    with pytest.raises(ValueError, match="horizon"):
        train_bc(_config(dataset, "policy.args.horizon=2"), tmp_path, "cpu")


def test_resume_from_a_mismatched_checkpoint_is_refused(dataset, tmp_path):
    train_bc(_config(dataset), tmp_path / "a", "cpu")
    checkpoint = tmp_path / "a" / "checkpoints" / "latest.safetensors"
    wider = _config(dataset, f"resume={checkpoint}", "backbone.kwargs.hidden_dims=[64]")
    with pytest.raises(CheckpointError, match="does not fit this run"):
        train_bc(wider, tmp_path / "b", "cpu")


def test_policy_env_mismatch_is_named():
    shape_meta = {"obs": {"pos": {"shape": [2], "type": "low_dim"}}, "action": {"shape": [3]}}
    box = gym.spaces.Box(-1, 1, (2,), np.float32)
    with pytest.raises(ValueError, match="needs observation 'pos'"):
        check_policy_fits_env(shape_meta, gym.spaces.Dict({"other": box}), box)
    with pytest.raises(ValueError, match=r"action: the policy outputs shape \[3\]"):
        check_policy_fits_env(shape_meta, gym.spaces.Dict({"pos": box}), box)


@pytest.mark.parametrize("policy", ["diffusion", "flow"])
@pytest.mark.parametrize(
    "experiment", sorted(path.stem for path in (Path(CONF) / "experiment").glob("*.yaml"))
)
def test_every_experiment_config_composes(experiment, policy):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=[f"+experiment={experiment}", f"policy={policy}"]
        )
    assert cfg.policy.kind == policy
    assert str(cfg.task.dataset_path).endswith(".zarr")
    budget = {"bc": "num_steps", "dsrl": "total_env_steps"}[cfg.algo.name]
    assert cfg.algo[budget] > 0 and cfg.eval.n_episodes > 0
    if experiment == "push_cube_dart":  # the headline recipe: push_cube_2k's network, its own data
        assert list(cfg.backbone.kwargs.hidden_dims) == [512, 512, 512]
        assert cfg.task.dataset_path == "datasets/data/push_cube_state2k_dart.zarr"
