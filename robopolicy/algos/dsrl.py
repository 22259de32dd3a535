"""DSRL: steer a frozen diffusion or flow policy by RL over its initial noise.

Wagenmaker et al. 2025, "Steering Your Diffusion Policy with Latent Space Reinforcement
Learning". The pretrained policy is a black box that, with a deterministic sampler (DDIM eta = 0,
or the flow ODE), maps an observation and an initial noise ``w`` to an action chunk. DSRL leaves
its weights alone (frozen, eval mode, never given to an optimizer) and trains a SAC agent
(robopolicy/rl/sac.py) whose *action* is the noise: a tanh-squashed Gaussian actor
``pi_W(w | s)`` with ``w`` in ``[-b, b]^(latent_steps * action_dim)`` (the leading
``algo.latent_steps`` rows of the ``(horizon, action_dim)`` noise, the rest held at zero), where
``s`` is the base policy's own observation encoding. The product is a ``SteeredPolicy``
(robopolicy/policies/steered.py): base + actor, a checkpoint that ``eval.py`` and deployment
load like any other.

Two variants (``algo.variant``):

* ``dsrl``: SAC in the noise space. Transitions ``(s, w, r, s')``; the critic ``Q_W(s, w)``
  learns by TD and the actor maximises it. Only the chosen noise matters to the learner.
* ``na`` (noise aliasing, DSRL-NA): the critic ``Q_A(s, a)`` sees the executed action chunk ``a``
  (normalised), learned by TD on env transitions with the next action ``base(s', w')``,
  ``w' ~ pi_W(s')``. Because it only needs ``(s, a, r, s')``, transitions from any source could
  fill its buffer. A second critic ``Q_W(s, w)`` is distilled from it,
  ``min (Q_W(s, w) - min_i Q_A_i(s, base(s, w)))^2``, for ``w`` drawn half from the actor and
  half from a standard normal clipped to ``[-b, b]`` (the reference code samples unbounded noise
  here; the bound is applied in both variants), and the actor maximises ``Q_W``.

The loop, one iteration per step of the ``algo.n_envs`` chunked vector envs
(robopolicy/rl/chunk_env.py: one step = one executed chunk, same-step autoreset):

1. noise: during the first ``algo.warmup_env_steps`` a standard normal clipped to ``[-b, b]``
   (roughly the base policy's own behaviour), then samples of ``pi_W``;
2. act: ``base.predict_action(obs, noise=w)`` with the deterministic sampler, step the envs;
3. store ``(obs, w, normalised chunk, reward, terminated, next_obs)``; for an episode that ended,
   ``next_obs`` is its last observation and only a termination (success) stops the bootstrap, a
   time-limit truncation does not. The reward is ``reward_scale * (sum of env rewards -
   reward_offset * executed steps)``: with offset 1 every step before success costs (DSRL's
   robomimic runs: sparse reward, offset 1), so even a shaped reward cannot make lingering near
   the goal pay more than finishing;
4. ``utd_ratio`` SAC updates per stored transition (and for ``na`` ``na_distill_ratio``
   distillation steps), on batches of ``batch_size``;
5. every ``eval_every_env_steps``: ``evaluate_policy`` (the code and sampler settings of
   ``eval.py``) on the steered policy with its deterministic noise ``b tanh(mu(s))``.

Resume (``resume=PATH``) restores the actor, critics, target critics, temperature, optimizers,
the replay buffer, every counter (env steps, transitions, updates, episodes, elapsed wall time,
fractional updates owed) and the RNG states. Not restored: the envs' in-flight episodes (they
are reset on resume, so the partial episodes at the checkpoint are cut short: their transitions
so far stay in the buffer, the rest is never played).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from robopolicy.algos.bc import evaluate_policy
from robopolicy.policies.registry import load_policy, policy_from_record, policy_kind, policy_record
from robopolicy.policies.steered import SteeredPolicy, deterministic_sampler_options
from robopolicy.rl.chunk_env import final_observations, make_chunked_vector_env
from robopolicy.rl.replay import ReplayBuffer
from robopolicy.rl.sac import SAC, Critic, SquashedGaussianActor
from robopolicy.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robopolicy.training.distributed import SINGLE_PROCESS, Distributed
from robopolicy.training.rng import rng_state, seed_everything, set_rng_state
from robopolicy.training.run_logger import RunLogger
from robopolicy.utils.stats import wilson_interval

VARIANTS = ("dsrl", "na")
# what a checkpoint restores; the credits are the fractional updates owed by utd_ratio
COUNTERS = (
    "env_steps",
    "transitions",
    "updates",
    "distill_updates",
    "episodes",
    "wall_s",
    "update_credit",
    "distill_credit",
)


def train_dsrl(
    cfg: DictConfig,
    run_dir: Path,
    device: torch.device | str,
    ranks: Distributed = SINGLE_PROCESS,
) -> dict[str, Any]:
    """Fine-tune ``cfg.checkpoint`` with DSRL as configured in ``cfg.algo`` (module docstring)."""
    if ranks.enabled:
        raise ValueError("DSRL runs in one process; scale the rollouts with algo.n_envs instead")
    device = torch.device(device)
    algo = cfg.algo
    _check_config(algo)
    seed_everything(cfg.seed)
    resume = load_checkpoint(cfg.resume) if cfg.resume else None
    steered, env_spec = _steered_policy(cfg, resume, device)
    base, actor = steered.base, steered.actor
    bound = actor.bound
    na = algo.variant == "na"
    chunk_dim = base.n_action_steps * base.action_dim
    critic_args = {
        "hidden_dims": list(algo.hidden_dims),
        "n_critics": algo.n_critics,
        "activation": algo.activation,
    }
    agent = SAC(
        actor,
        Critic(base.cond_dim, chunk_dim if na else steered.latent_dim, **critic_args),
        gamma=algo.gamma,
        tau=algo.tau,
        lr=algo.lr,
        target_entropy=algo.target_entropy,
        init_temperature=algo.init_temperature,
    ).to(device)
    noise_critic = (
        Critic(base.cond_dim, steered.latent_dim, **critic_args).to(device) if na else None
    )
    noise_optimizer = torch.optim.Adam(noise_critic.parameters(), lr=algo.lr) if na else None

    obs_keys = list(base.shape_meta["obs"])
    env_kwargs = {
        **OmegaConf.to_container(cfg.task.env_kwargs, resolve=True),
        **OmegaConf.to_container(algo.env_kwargs, resolve=True),
    }
    replay = ReplayBuffer(algo.replay_capacity, _replay_fields(steered))
    counters: dict[str, float] = dict.fromkeys(COUNTERS, 0)
    if resume is not None:
        _restore(cfg.resume, resume, agent, noise_critic, noise_optimizer, replay, counters)
        print(f"[dsrl] resumed from {cfg.resume} at {int(counters['env_steps'])} env steps")
    logger = RunLogger.for_run(cfg, run_dir)

    base_checkpoint = str(cfg.checkpoint or (resume or {}).get("base_checkpoint"))

    def checkpoint_state(metrics: dict) -> dict:
        return {
            "policy": policy_record(steered, steered.state_dict()),
            "agent": agent.state_dict(),
            "optimizers": agent.optimizer_state(),
            "noise_critic": noise_critic.state_dict() if na else None,
            "noise_optimizer": noise_optimizer.state_dict() if na else None,
            "replay": replay.state_dict(),
            "counters": dict(counters),
            "rng": rng_state(),
            "step": int(counters["env_steps"]),
            "env_spec": env_spec,
            "base_checkpoint": base_checkpoint,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "metrics": metrics,
        }

    def to_torch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {key: torch.from_numpy(np.ascontiguousarray(arrays[key])) for key in obs_keys}

    def features(batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        return steered.encode_obs({key: batch[f"{prefix}/{key}"] for key in obs_keys})

    def update() -> dict[str, float]:
        batch = replay.sample(algo.batch_size, device)
        obs, next_obs = features(batch, "obs"), features(batch, "next_obs")
        reward, terminated = batch["reward"], batch["terminated"]
        if na:
            logs = agent.update_critic(
                obs, batch["action"], reward, terminated, next_obs, steered.decode_normalized
            )
            return {**logs, **agent.update_actor(obs, critic=noise_critic)}
        logs = agent.update_critic(obs, batch["latent"], reward, terminated, next_obs)
        return {**logs, **agent.update_actor(obs)}

    def distill() -> dict[str, float]:
        obs = features(replay.sample(algo.batch_size, device), "obs")
        latent = distillation_noise(actor, obs)
        with torch.no_grad():
            target = agent.critic(obs, steered.decode_normalized(obs, latent)).min(dim=0).values
        loss = ((noise_critic(obs, latent) - target) ** 2).mean(dim=1).sum()
        noise_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        noise_optimizer.step()
        return {"distill_loss": loss.item()}

    def evaluate_now(metrics: dict) -> dict:
        started = time.perf_counter()
        steered.eval()
        result = evaluate_policy(steered, cfg, algo.eval_episodes)
        successes = int(result.success.sum())
        low, high = wilson_interval(successes, len(result.success))
        counters["wall_s"] += time.perf_counter() - started
        evaluation = {
            "env_steps": int(counters["env_steps"]),
            "eval/success_rate": result.success_rate,
            "eval/success_low": low,
            "eval/success_high": high,
            "eval/mean_length": float(result.lengths.mean()),
            "eval/seconds": time.perf_counter() - started,
            "time/wall_s": counters["wall_s"],
        }
        logger.log(evaluation, int(counters["env_steps"]))
        step = int(counters["env_steps"])
        for i, frames in enumerate(result.videos):
            logger.video(f"env{step:08d}_episode{i}", frames, fps=cfg.task.fps, step=step)
        print(
            f"[dsrl] {step} env steps: eval success {successes}/{len(result.success)} "
            f"({low:.0%}-{high:.0%}), {counters['wall_s']:.0f} s"
        )
        return {**metrics, **evaluation}

    stop_at = algo.total_env_steps
    if algo.stop_after_env_steps is not None:
        stop_at = min(stop_at, algo.stop_after_env_steps)
    metrics: dict[str, Any] = {}
    if counters["env_steps"] == 0 and algo.eval_at_start:
        metrics = evaluate_now(metrics)
    window = {
        "logs": [],
        "episodes": 0,
        "successes": 0,
        "env_steps": 0,
        "start": time.perf_counter(),
    }
    next_log = _next_multiple(counters["env_steps"], algo.log_every_env_steps)
    next_eval = _next_multiple(counters["env_steps"], algo.eval_every_env_steps)
    next_checkpoint = _next_multiple(counters["env_steps"], algo.checkpoint_every_env_steps)
    envs = make_chunked_vector_env(
        cfg.task.env_id,
        env_kwargs,
        algo.n_envs,
        n_obs_steps=base.n_obs_steps,
        act_steps=base.n_action_steps,
        env_modules=list(cfg.env_modules),
        max_episode_steps=cfg.task.get("max_episode_steps"),
    )
    clock = time.perf_counter()
    try:
        _check_env_fits(envs, replay)
        # reset seeds: far from the evaluation seeds, and new ones after a resume
        first_seed = 10_000_000 * (cfg.seed + 1) + int(counters["transitions"])
        obs, _ = envs.reset(seed=[first_seed + i for i in range(algo.n_envs)])
        if counters["env_steps"] == 0:
            # its own generator: the diagnostic leaves the training RNG stream untouched
            spread = steered.noise_action_spread(
                steered.encode_obs(to_torch(obs)), generator=torch.Generator().manual_seed(cfg.seed)
            )
            logger.log({"env_steps": 0, "dsrl/noise_action_spread": spread}, 0)
            print(
                f"[dsrl] the base's executed actions vary with its noise by {spread:.3f} (std, "
                "normalised units): what the noise actor can steer (docs/rl.md)"
            )
        while counters["env_steps"] < stop_at:
            obs_t = to_torch(obs)
            warming_up = counters["env_steps"] < algo.warmup_env_steps
            with torch.no_grad():
                if warming_up:
                    latent = torch.randn(algo.n_envs, steered.latent_dim).clamp(-bound, bound)
                else:
                    latent = actor.sample(steered.encode_obs(obs_t))[0]
                chunk = steered.decode(obs_t, latent.to(device))["action"]
            next_obs, reward, terminated, truncated, info = envs.step(chunk.cpu().numpy())
            ended = terminated | truncated
            executed = _per_env(info, "env_steps", ended).astype(np.float64)
            success = _per_env(info, "is_success", ended).astype(bool)
            final = final_observations(next_obs, info, ended)
            rows = {f"obs/{key}": obs[key] for key in obs_keys}
            rows.update({f"next_obs/{key}": final[key] for key in obs_keys})
            rows["latent"] = latent.cpu()
            rows["action"] = base.normalize_action(chunk).flatten(1).cpu()
            rows["reward"] = algo.reward_scale * (reward - algo.reward_offset * executed)
            rows["terminated"] = terminated.astype(np.float32)
            replay.add(rows)
            obs = next_obs
            counters["env_steps"] += int(executed.sum())
            counters["transitions"] += algo.n_envs
            counters["episodes"] += int(ended.sum())
            window["episodes"] += int(ended.sum())
            window["successes"] += int((success & ended).sum())
            window["env_steps"] += int(executed.sum())

            if not warming_up and len(replay) >= algo.batch_size:
                steered.train()
                counters["update_credit"] += algo.utd_ratio * algo.n_envs
                while counters["update_credit"] >= 1:
                    window["logs"].append(update())
                    counters["updates"] += 1
                    counters["update_credit"] -= 1
                counters["distill_credit"] += algo.na_distill_ratio * algo.n_envs if na else 0.0
                while counters["distill_credit"] >= 1:
                    window["logs"].append(distill())
                    counters["distill_updates"] += 1
                    counters["distill_credit"] -= 1
            now = time.perf_counter()
            counters["wall_s"] += now - clock
            clock = now

            if counters["env_steps"] >= next_log:
                next_log = _next_multiple(counters["env_steps"], algo.log_every_env_steps)
                metrics = _window_metrics(window, counters)
                logger.log(metrics, int(counters["env_steps"]))
                window = {**window, "logs": [], "episodes": 0, "successes": 0, "env_steps": 0}
                window["start"] = time.perf_counter()
            if algo.eval_every_env_steps and counters["env_steps"] >= next_eval:
                next_eval = _next_multiple(counters["env_steps"], algo.eval_every_env_steps)
                metrics = evaluate_now(metrics)
                clock = time.perf_counter()
            if counters["env_steps"] >= min(next_checkpoint, stop_at):
                next_checkpoint = _next_multiple(
                    counters["env_steps"], algo.checkpoint_every_env_steps
                )
                save_checkpoint(
                    run_dir / "checkpoints" / "latest.safetensors", checkpoint_state(metrics)
                )
    finally:
        envs.close()
    checkpoint = run_dir / "checkpoints" / "latest.safetensors"
    save_checkpoint(checkpoint, checkpoint_state(metrics))
    logger.plot({"success": ["eval/success_rate", "train/success_rate"]})
    logger.finish()
    return {
        "step": int(counters["env_steps"]),
        "finished": counters["env_steps"] >= algo.total_env_steps,
        "checkpoint": checkpoint,
        **metrics,
    }


def distillation_noise(actor: SquashedGaussianActor, obs: torch.Tensor) -> torch.Tensor:
    """DSRL-NA's noise for distilling ``Q_W`` at ``obs (B, cond_dim)``, ``(B, latent_dim)``, all in
    ``[-bound, bound]``: for the first half of the rows the actor's own samples (where ``Q_W``
    must be accurate for the actor's gradient), for the rest a standard normal clipped to the
    bound (the base policy's own noise range)."""
    half = obs.shape[0] // 2
    with torch.no_grad():
        from_actor = actor.sample(obs[:half])[0]
    gaussian = torch.randn(obs.shape[0] - half, actor.action_dim, device=obs.device)
    return torch.cat([from_actor, gaussian.clamp(-actor.bound, actor.bound)])


def _steered_policy(
    cfg: DictConfig, resume: dict | None, device: torch.device
) -> tuple[SteeredPolicy, dict]:
    """The steered policy: rebuilt from the checkpoint when resuming, else the base policy in
    ``cfg.checkpoint`` (diffusion or flow) with a fresh noise actor."""
    if resume is not None:
        if resume.get("policy", {}).get("kind") != "steered" or "replay" not in resume:
            raise CheckpointError(cfg.resume, "is not a DSRL training checkpoint (resume=...)")
        steered = policy_from_record(resume["policy"], where=cfg.resume).to(device)
        return steered, resume["env_spec"]
    if not cfg.checkpoint:
        raise ValueError("algo=dsrl fine-tunes a pretrained policy: pass checkpoint=PATH")
    base, base_checkpoint = load_policy(cfg.checkpoint, device=device)
    kind = policy_kind(base)
    requested = OmegaConf.to_container(cfg.eval.sampler, resolve=True)
    try:
        sampler_options = deterministic_sampler_options(base, requested)
    except ValueError as error:
        raise ValueError(f"checkpoint={cfg.checkpoint}: {error} (eval.sampler)") from None
    algo = cfg.algo
    latent_steps = base.horizon if algo.latent_steps is None else algo.latent_steps
    actor = SquashedGaussianActor(
        base.cond_dim,
        latent_steps * base.action_dim,
        list(algo.hidden_dims),
        bound=algo.noise_bound,
        activation=algo.activation,
        log_std_min=algo.log_std_min,
        log_std_max=algo.log_std_max,
    )
    steered = SteeredPolicy(base, actor, kind, sampler_options, latent_steps).to(device)
    env_spec = base_checkpoint.get("env_spec") or {
        "id": cfg.task.env_id,
        "kwargs": OmegaConf.to_container(cfg.task.env_kwargs, resolve=True),
    }
    return steered, env_spec


def _replay_fields(steered: SteeredPolicy) -> dict:
    """Per-row shapes and dtypes: observation histories as the policy takes them (images stay
    uint8), the flattened noise and normalised executed chunk, reward and termination."""
    fields = {}
    for key, spec in steered.shape_meta["obs"].items():
        dtype = torch.uint8 if spec["type"] == "rgb" else torch.float32
        shape = (steered.n_obs_steps, *spec["shape"])
        fields[f"obs/{key}"] = fields[f"next_obs/{key}"] = (shape, dtype)
    fields["latent"] = ((steered.latent_dim,), torch.float32)
    fields["action"] = ((steered.n_action_steps * steered.action_dim,), torch.float32)
    fields["reward"] = ((), torch.float32)
    fields["terminated"] = ((), torch.float32)
    return fields


def _check_env_fits(envs, replay: ReplayBuffer) -> None:
    """One clear error if the chunked env's observations are not what the policy takes."""
    spaces = envs.single_observation_space.spaces
    for name, (shape, _) in replay.fields.items():
        if not name.startswith("obs/"):
            continue
        key = name.removeprefix("obs/")
        if key not in spaces or tuple(spaces[key].shape) != shape:
            got = tuple(spaces[key].shape) if key in spaces else "missing"
            raise ValueError(
                f"the policy takes observation {key!r} as history {shape}; the env gives {got} "
                f"(env observations: {sorted(spaces)}; check task.env_kwargs, e.g. obs_mode)"
            )


def _per_env(info: dict, key: str, ended: np.ndarray) -> np.ndarray:
    """``info[key]`` per env; for envs whose episode ended in this step (same-step autoreset),
    the ended episode's value from ``info["final_info"]``."""
    values = np.array(info[key]) if key in info else np.zeros(len(ended))
    if ended.any():
        values[ended] = np.asarray(info["final_info"][key])[ended]
    return values


def _window_metrics(window: dict, counters: dict) -> dict:
    seconds = max(time.perf_counter() - window["start"], 1e-9)
    metrics: dict[str, Any] = {
        "env_steps": int(counters["env_steps"]),
        "time/wall_s": counters["wall_s"],
        "time/env_steps_per_s": window["env_steps"] / seconds,
        "train/episodes": int(counters["episodes"]),
        "train/updates": int(counters["updates"]),
    }
    if window["episodes"]:
        metrics["train/success_rate"] = window["successes"] / window["episodes"]
    for name in sorted({name for logs in window["logs"] for name in logs}):
        values = [logs[name] for logs in window["logs"] if name in logs]
        metrics[f"train/{name}"] = float(np.mean(values))
    return metrics


def _next_multiple(value: float, every: int) -> float:
    """The first multiple of ``every`` above ``value`` (infinity when ``every`` is 0)."""
    if not every:
        return float("inf")
    return (int(value) // every + 1) * every


def _check_config(algo: DictConfig) -> None:
    if algo.variant not in VARIANTS:
        raise ValueError(f"algo.variant must be one of {VARIANTS}, got {algo.variant!r}")
    positive = ("n_envs", "batch_size", "replay_capacity", "total_env_steps", "noise_bound")
    for key in positive:
        if not algo[key] > 0:
            raise ValueError(f"algo.{key} must be positive, got {algo[key]}")
    for key in ("utd_ratio", "na_distill_ratio", "warmup_env_steps", "eval_episodes"):
        if algo[key] < 0:
            raise ValueError(f"algo.{key} must be >= 0, got {algo[key]}")
    if algo.eval_every_env_steps and algo.eval_episodes < 1:
        raise ValueError("algo.eval_episodes must be >= 1 when algo.eval_every_env_steps is set")


def _restore(path, state, agent, noise_critic, noise_optimizer, replay, counters) -> None:
    try:
        agent.load_state_dict(state["agent"])
        agent.load_optimizer_state(state["optimizers"])
        if noise_critic is not None:
            if state.get("noise_critic") is None:
                raise ValueError("it was trained with algo.variant=dsrl, not na")
            noise_critic.load_state_dict(state["noise_critic"])
            noise_optimizer.load_state_dict(state["noise_optimizer"])
        replay.load_state_dict(state["replay"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(path, f"does not fit the configured DSRL run: {error}") from None
    # checkpoints of earlier versions lack the fractional credits; 0 is within one update of them
    saved = {"update_credit": 0.0, "distill_credit": 0.0, **state["counters"]}
    counters.update({key: saved[key] for key in COUNTERS})
    set_rng_state(state["rng"])
