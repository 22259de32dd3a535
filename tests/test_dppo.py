"""DPPO on a real diffusion policy: the chain's log-probabilities, the PPO ratio, the frozen
steps, checkpoints of the fine-tuned policy, exact resume, and (slow) a short run that improves
a weak PushCube policy."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import sim  # noqa: F401  (registers the robopolicy/* ids)
from robopolicy.algos.dppo import DiffusionChainActor, train_dppo
from robopolicy.algos.reinflow import FlowChainActor, NoiseStdNet, train_reinflow
from robopolicy.data.normalizer import Normalizer
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.finetuned_diffusion import FinetunedDiffusionPolicy
from robopolicy.policies.flow import FlowPolicy
from robopolicy.policies.registry import load_policy, policy_from_record, policy_record
from robopolicy.rl.chain_ppo import (
    ChainPPOConfig,
    ChainRollout,
    action_window,
    ppo_update,
    sample_chain,
)
from robopolicy.rl.critic import ValueCritic
from robopolicy.rl.ppo_loop import actor_learning_rate
from robopolicy.training.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
SHAPE_META = {
    "obs": {"state": {"shape": [4], "type": "low_dim"}},
    "action": {"shape": [2]},
}
N_STEPS = 6


def make_base(shape_meta=SHAPE_META, seed=0, flow=False) -> DiffusionPolicy | FlowPolicy:
    """A small diffusion base (sample prediction, N_STEPS DDIM steps), or with ``flow`` a flow
    base (4 Euler steps), its normalizer fitted to uniform data."""
    torch.manual_seed(seed)
    normalizer = Normalizer.from_shape_meta(shape_meta)
    generator = np.random.default_rng(seed)
    normalizer.fit(
        {
            key: generator.uniform(-1, 1, (64, *spec["shape"]))
            for key, spec in {**shape_meta["obs"], "action": shape_meta["action"]}.items()
        }
    )
    common = {
        "horizon": 8,
        "n_obs_steps": 2,
        "n_action_steps": 4,
        "backbone": "mlp",
        "backbone_kwargs": {"hidden_dims": [32, 32]},
    }
    if flow:
        return FlowPolicy(shape_meta, normalizer, num_inference_steps=4, **common).eval()
    return DiffusionPolicy(
        shape_meta,
        normalizer,
        num_train_timesteps=50,
        num_inference_steps=N_STEPS,
        prediction_type="sample",
        **common,
    ).eval()


def make_actor(ft_steps: int, base: DiffusionPolicy | None = None) -> DiffusionChainActor:
    base = base or make_base()
    below = base.inference_timesteps(N_STEPS)[N_STEPS - ft_steps]
    policy = FinetunedDiffusionPolicy.from_pretrained(base, below).requires_grad_(False)
    policy.denoiser.tuned.requires_grad_(True)
    return DiffusionChainActor(policy, N_STEPS, ft_steps, "ddim", 1.0)


def make_rollout(actor, cfg, rows=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    obs = {"state": torch.randn(rows, 2, 4, generator=generator)}
    cond = actor.policy.encode_obs(obs)
    window = action_window(actor.policy, 4)
    sample = sample_chain(actor, cond, window, cfg, generator)
    returns = torch.randn(rows, generator=generator)
    rollout = ChainRollout(
        cond=cond,
        chain=sample.chain,
        log_prob=sample.log_prob,
        advantages=torch.randn(rows, generator=generator),
        returns=returns,
        values=torch.zeros(rows),
    )
    return rollout, window, generator


def update(actor, rollout, window, cfg, generator, lr=1e-2):
    critic = ValueCritic(actor.policy.cond_dim, hidden_dims=[16])
    trainable = [p for p in actor.policy.parameters() if p.requires_grad]
    return ppo_update(
        actor,
        critic,
        rollout,
        window,
        cfg,
        torch.optim.Adam(trainable, lr=lr),
        torch.optim.Adam(critic.parameters(), lr=lr),
        generator,
    )


def test_sampled_log_prob_is_the_analytic_ddpm_gaussian_of_each_step():
    """DDIM eta = 1: step k -> p has std sqrt((1-abar_p)/(1-abar_k) (1 - abar_k/abar_p)) (floored)
    and mean sqrt(abar_p) a_hat + sqrt(1 - abar_p - std^2) eps_hat."""
    actor = make_actor(ft_steps=N_STEPS)
    cfg = ChainPPOConfig(
        min_sampling_std=0.05, min_logprob_std=0.05, logprob_min=-1e9, logprob_max=1e9
    )
    rollout, window, _ = make_rollout(actor, cfg, rows=5)
    policy = actor.policy
    timesteps = policy.inference_timesteps(N_STEPS)
    abar = policy.abar_list
    for step in range(N_STEPS):
        k = timesteps[step]
        abar_p = abar[timesteps[step + 1]] if step + 1 < N_STEPS else 1.0
        std = math.sqrt((1 - abar_p) / (1 - abar[k]) * (1 - abar[k] / abar_p))
        x, x_next = rollout.chain[:, step], rollout.chain[:, step + 1]
        with torch.no_grad():
            clean, eps = policy.predict_clean(x, k, rollout.cond)
        mean = math.sqrt(abar_p) * clean + math.sqrt(max(1 - abar_p - std**2, 0.0)) * eps
        s = max(std, 0.05)
        density = -((x_next - mean) ** 2) / (2 * s**2) - math.log(s) - 0.5 * math.log(2 * math.pi)
        expected = density[:, window].mean(dim=(1, 2))
        torch.testing.assert_close(rollout.log_prob[:, step], expected, rtol=1e-5, atol=1e-5)


def test_ppo_ratio_is_one_on_the_first_minibatch_and_moves_after():
    actor = make_actor(ft_steps=3)
    cfg = ChainPPOConfig(update_epochs=2, minibatch_size=16, target_kl=None)
    rollout, window, generator = make_rollout(actor, cfg)
    first = update(actor, rollout, window, cfg, generator)
    assert first["ppo/first_ratio_error"] <= 1e-6
    assert first["ppo/minibatches"] == 2 * math.ceil(24 * 3 / 16)
    again = update(actor, rollout, window, cfg, generator)  # old log-probs are now stale
    assert again["ppo/first_ratio_error"] > 1e-4


def test_bc_term_raises_the_likelihood_of_the_pretrained_chains():
    actor = make_actor(ft_steps=3)
    cfg = ChainPPOConfig(update_epochs=4, minibatch_size=24, target_kl=None, bc_coef=1.0)
    rollout, window, generator = make_rollout(actor, cfg)
    reference, _, _ = make_rollout(make_actor(ft_steps=3, base=make_base(seed=1)), cfg, seed=1)
    rollout.bc_chain = reference.chain
    rollout.advantages = torch.zeros_like(rollout.advantages)  # only the BC term moves the actor
    first = update(actor, rollout, window, cfg, generator, lr=3e-3)
    last = update(actor, rollout, window, cfg, generator, lr=3e-3)
    assert first["loss/bc"] > 0
    assert last["loss/bc"] < first["loss/bc"]


def test_steps_outside_the_finetuned_k_are_bit_unchanged_after_an_update():
    base = make_base()
    actor = make_actor(ft_steps=2, base=base)
    frozen = {k: v.clone() for k, v in actor.policy.state_dict().items() if ".tuned." not in k}
    tuned = {k: v.clone() for k, v in actor.policy.denoiser.tuned.state_dict().items()}
    cfg = ChainPPOConfig(update_epochs=3, minibatch_size=16, target_kl=None)
    rollout, window, generator = make_rollout(actor, cfg)
    update(actor, rollout, window, cfg, generator)

    after = actor.policy.state_dict()
    for name, value in frozen.items():
        assert torch.equal(after[name], value), name
    changed = actor.policy.denoiser.tuned.state_dict()
    assert any(not torch.equal(changed[k], v) for k, v in tuned.items())
    # the chain's first N-K steps are still exactly the pretrained policy's, the last K are not
    x, cond = torch.randn(3, 8, 2), torch.randn(3, actor.policy.cond_dim)
    with torch.no_grad():
        for step in range(N_STEPS):
            got = actor.policy.step_distribution(x, step, cond, N_STEPS, sampler="ddim", eta=1.0)
            ref = base.step_distribution(x, step, cond, N_STEPS, sampler="ddim", eta=1.0)
            assert torch.equal(got[0], ref[0]) == (step < N_STEPS - 2), step


def test_finetuned_policy_starts_as_the_base_and_round_trips_through_a_checkpoint(tmp_path):
    base = make_base()
    actor = make_actor(ft_steps=N_STEPS, base=base)
    obs = {"state": torch.randn(3, 2, 4)}
    noise = torch.randn(3, 8, 2)
    expected = base.predict_action(obs, noise=noise)["action"]
    torch.testing.assert_close(actor.policy.predict_action(obs, noise=noise)["action"], expected)

    torch.nn.init.normal_(actor.policy.denoiser.tuned.mlp.head.weight)  # now different
    path = save_checkpoint(
        tmp_path / "ft.safetensors",
        {"policy": policy_record(actor.policy, actor.policy.state_dict())},
    )
    loaded, _ = load_policy(path)
    assert type(loaded) is FinetunedDiffusionPolicy
    record = load_checkpoint(path)["policy"]
    assert record["kind"] == "diffusion_finetuned"
    again = policy_from_record(record)
    out = actor.policy.predict_action(obs, noise=noise)["action"]
    assert not torch.allclose(out, expected)
    torch.testing.assert_close(loaded.predict_action(obs, noise=noise)["action"], out)
    torch.testing.assert_close(again.predict_action(obs, noise=noise)["action"], out)


def test_reinflow_noise_net_is_bounded_and_makes_each_euler_step_gaussian():
    torch.manual_seed(0)
    flow = FlowPolicy(
        SHAPE_META,
        make_base().normalizer,
        horizon=8,
        n_obs_steps=2,
        n_action_steps=4,
        backbone="mlp",
        backbone_kwargs={"hidden_dims": [32, 32]},
        num_inference_steps=N_STEPS,
    ).eval()
    noise_net = NoiseStdNet(flow.cond_dim, 8, 2, [16], min_std=0.02, max_std=0.1, init_std=0.05)
    actor = FlowChainActor(flow, noise_net, N_STEPS)
    cond = torch.randn(5, flow.cond_dim)
    torch.testing.assert_close(noise_net(cond, 0.3), torch.full((5, 8, 2), 0.05))
    torch.nn.init.normal_(noise_net.mlp.head.weight, std=100.0)  # push towards the bounds
    std = noise_net(cond, 0.3)
    assert bool((std >= 0.02).all()) and bool((std <= 0.1).all())
    assert std.min() < 0.03 and std.max() > 0.09

    cfg = ChainPPOConfig(min_sampling_std=0.0, min_logprob_std=0.0, logprob_max=1e9)
    window = action_window(flow, 4)
    sample = sample_chain(actor, cond, window, cfg, torch.Generator().manual_seed(0))
    step = 2
    x, x_next = sample.chain[:, step], sample.chain[:, step + 1]
    with torch.no_grad():
        mean = x + flow.velocity(x, step / N_STEPS, cond) / N_STEPS  # an Euler step
        sigma = noise_net(cond, step / N_STEPS)
    expected = torch.distributions.Normal(mean, sigma).log_prob(x_next)[:, window].mean((1, 2))
    torch.testing.assert_close(sample.log_prob[:, step], expected)


# --- whole runs on PushCube (real MuJoCo, env worker processes) ---


def pushcube_shape_meta() -> dict:
    env = gym.make("robopolicy/PushCube-v0", obs_mode="state")
    spaces = env.observation_space.spaces
    meta = {
        "obs": {k: {"shape": list(spaces[k].shape), "type": "low_dim"} for k in ("eef_pos",)},
        "action": {"shape": list(env.action_space.shape)},
    }
    env.close()
    return meta


def rl_config(checkpoint: Path, *overrides: str, algo: str = "dppo"):
    chain = ["algo.denoising_steps=6", "algo.ft_denoising_steps=3"]  # DPPO: 3 of 6 fine-tuned
    if algo in ("reinflow", "fpo"):  # ReinFlow fine-tunes every step; FPO trains on the chunk
        chain = ["algo.denoising_steps=4"]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[
                f"algo={algo}",
                f"checkpoint={checkpoint}",
                "logger=none",
                "torch_threads=1",
                "task.env_kwargs.obs_mode=state",
                "task.max_episode_steps=16",
                "algo.n_envs=2",
                "algo.n_steps=5",
                *chain,
                "algo.n_iterations=3",
                "algo.n_critic_warmup_itr=1",
                "algo.eval_every=0",
                "algo.critic.hidden_dims=[16]",
                "algo.ppo.minibatch_size=8",
                "algo.ppo.update_epochs=2",
                *overrides,
            ],
        )


def test_actor_rate_holds_through_warmup_then_decays_by_cosine_to_the_final_rate():
    algo = OmegaConf.create(
        {"actor_lr": 1e-4, "actor_lr_final": 1e-5, "n_critic_warmup_itr": 2, "n_iterations": 12}
    )
    rates = [actor_learning_rate(algo, i) for i in range(13)]
    assert rates[0] == rates[1] == rates[2] == pytest.approx(1e-4)
    assert rates[7] == pytest.approx(5.5e-5)  # halfway through the decay
    assert rates[12] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(rates[2:12], rates[3:13], strict=True))
    algo.actor_lr_final = None
    assert {actor_learning_rate(algo, i) for i in range(13)} == {1e-4}


@pytest.mark.slow
def test_resumed_run_continues_as_the_uninterrupted_one(tmp_path):
    base = make_base(pushcube_shape_meta())
    checkpoint = save_checkpoint(
        tmp_path / "base.safetensors", {"policy": policy_record(base, base.state_dict())}
    )
    decay = "algo.actor_lr_final=1e-5"  # the rate schedule must resume where it stopped too
    straight = train_dppo(rl_config(checkpoint, decay), tmp_path / "straight", "cpu")
    sliced_dir = tmp_path / "sliced"
    first = train_dppo(rl_config(checkpoint, decay, "algo.stop_after=2"), sliced_dir, "cpu")
    assert first["step"] == 2 and not first["finished"]
    latest = sliced_dir / "checkpoints" / "latest.safetensors"
    resumed = train_dppo(rl_config(checkpoint, decay, f"resume={latest}"), sliced_dir, "cpu")
    assert resumed["step"] == 3 and resumed["finished"]
    assert resumed["env_steps"] == straight["env_steps"]

    expected = load_checkpoint(straight["checkpoint"])
    got = load_checkpoint(resumed["checkpoint"])
    for part in ("critic",):
        for name, value in expected[part].items():
            assert torch.equal(got[part][name], value), name
    for name, value in expected["policy"]["weights"].items():
        assert torch.equal(got["policy"]["weights"][name], value), name
    assert got["reward_scaler"] == expected["reward_scaler"]


@pytest.mark.slow
def test_reinflow_run_resumes_and_writes_a_plain_flow_policy(tmp_path):
    base = make_base(pushcube_shape_meta(), flow=True)
    checkpoint = save_checkpoint(
        tmp_path / "base.safetensors", {"policy": policy_record(base, base.state_dict())}
    )

    def config(*overrides):
        return rl_config(checkpoint, *overrides, algo="reinflow")

    straight = train_reinflow(config(), tmp_path / "straight", "cpu")
    sliced_dir = tmp_path / "sliced"
    first = train_reinflow(config("algo.stop_after=2"), sliced_dir, "cpu")
    assert first["step"] == 2 and not first["finished"]
    latest = sliced_dir / "checkpoints" / "latest.safetensors"
    resumed = train_reinflow(config(f"resume={latest}"), sliced_dir, "cpu")
    assert resumed["step"] == 3 and resumed["env_steps"] == straight["env_steps"]
    expected = load_checkpoint(straight["checkpoint"])
    got = load_checkpoint(resumed["checkpoint"])
    for name, value in expected["extra_modules"]["noise_net"].items():
        assert torch.equal(got["extra_modules"]["noise_net"][name], value), name
    policy, _ = load_policy(resumed["checkpoint"], device="cpu")
    assert type(policy) is FlowPolicy and policy.noise_std == 0.0  # deterministic ODE
    changed = [
        name
        for name, value in policy.state_dict().items()
        if not torch.equal(value, base.state_dict()[name])
    ]
    assert changed and all(name.startswith("denoiser.") for name in changed)


def _run(*args: str) -> None:
    env = {**os.environ, "MUJOCO_GL": "egl"}
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_updates_raise_the_reward_of_a_one_step_task():
    """The update's direction: chunks closer to a target get more reward; six iterations of
    sample -> advantages -> ppo_update raise the mean reward of fresh samples."""
    actor = make_actor(ft_steps=N_STEPS)
    cfg = ChainPPOConfig(update_epochs=5, minibatch_size=512, clip_base=0.01, clip_final=0.1)
    critic = ValueCritic(actor.policy.cond_dim, hidden_dims=[16])
    trainable = [p for p in actor.policy.parameters() if p.requires_grad]
    actor_optimizer = torch.optim.Adam(trainable, lr=1e-3)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    window = action_window(actor.policy, 4)
    rewards = []
    for _ in range(6):
        cond = actor.policy.encode_obs({"state": torch.randn(256, 2, 4, generator=generator)})
        sample = sample_chain(actor, cond, window, cfg, generator)
        reward = -((sample.chain[:, -1, window] - 0.5) ** 2).mean(dim=(1, 2))
        rewards.append(reward.mean().item())
        rollout = ChainRollout(
            cond=cond,
            chain=sample.chain,
            log_prob=sample.log_prob,
            advantages=reward - reward.mean(),
            returns=reward,
            values=torch.zeros(256),
        )
        ppo_update(
            actor, critic, rollout, window, cfg, actor_optimizer, critic_optimizer, generator
        )
    assert rewards[-1] > rewards[0] + 0.1, rewards


@pytest.mark.slow
def test_short_dppo_run_raises_pushcube_rollout_success(tmp_path, pushcube_state_demos):
    """The main job's base (5000 steps on 100 demos: 50% on the 50 seeded evaluation episodes),
    then 16 iterations of DPPO (~100k env steps) with conf/algo/dppo.yaml's settings but
    minibatches of 800 pairs instead of 4000 (5x the gradient steps per iteration).

    What a run this short shows reliably is the training policy's own success over its ~100
    rollout episodes an iteration: the mean of the last 4 iterations against the 2 critic
    warm-up iterations (the base's behaviour, the actor not yet updated). In calibration
    (2026-12-07) +0.12 at these settings (seed 1), and +0.05 to +0.18 on four runs with other
    clip ranges or rates; the margin asked, +0.03, is below the smallest. The deployable
    policy (deterministic DDIM) is scored on the same 50 episodes as the base: in calibration
    +0.10 to +0.18 after 12-24 iterations, but a 50-episode rate's standard error is ~7 points
    and the earlier form of this test, asking +15 there, failed on another machine (0.48 ->
    0.58), so here it must only not fall by more than 6 points. The update's direction is
    tested exactly by test_updates_raise_the_reward_of_a_one_step_task."""
    base_dir = tmp_path / "base"
    evaluation = ("eval.n_episodes=50", "eval.n_envs=4", "eval.video_episodes=0")
    _run(
        "train.py",
        "+experiment=main_job",
        f"task.dataset_path={pushcube_state_demos}",
        "algo.eval_every=0",
        *evaluation,
        f"hydra.run.dir={base_dir}",
    )
    base_success = json.loads((base_dir / "eval.json").read_text())["success_rate"]
    rl_dir = tmp_path / "dppo"
    _run(
        "train.py",
        "algo=dppo",
        f"checkpoint={base_dir / 'checkpoints' / 'latest.safetensors'}",
        "torch_threads=1",
        "logger=none",
        "task.env_kwargs.obs_mode=state",
        "algo.n_iterations=16",
        "algo.ppo.minibatch_size=800",
        "algo.eval_every=0",
        *evaluation,
        f"hydra.run.dir={rl_dir}",
    )
    rows = [json.loads(line) for line in (rl_dir / "metrics.jsonl").open()]
    rollouts = [row["rollout/success_rate"] for row in rows if "rollout/success_rate" in row]
    assert len(rollouts) == 16, rollouts
    warmup, last = np.mean(rollouts[:2]), np.mean(rollouts[-4:])
    assert last >= warmup + 0.03, rollouts
    tuned_success = json.loads((rl_dir / "eval.json").read_text())["success_rate"]
    assert tuned_success >= base_success - 0.06, (base_success, tuned_success)


@pytest.mark.slow
def test_a_rollout_where_no_episode_ends_logs_no_success_rate(tmp_path):
    base = make_base(pushcube_shape_meta())
    checkpoint = save_checkpoint(
        tmp_path / "base.safetensors", {"policy": policy_record(base, base.state_dict())}
    )
    cfg = rl_config(checkpoint, "algo.n_steps=1", "algo.n_iterations=1")
    train_dppo(cfg, tmp_path / "run", "cpu")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    rollouts = [row for row in rows if "rollout/episodes" in row]
    assert rollouts and all(row["rollout/episodes"] == 0 for row in rollouts)
    assert not any("rollout/success_rate" in row for row in rows)
