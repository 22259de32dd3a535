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

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from robopolicy.eval.evaluate import evaluate_policy, success_metrics
from robopolicy.eval.vector_info import step_values
from robopolicy.models.squashed_gaussian import SquashedGaussianActor
from robopolicy.policies.registry import load_policy, policy_from_record, policy_kind, policy_state
from robopolicy.policies.steered import SteeredPolicy, deterministic_sampler_options
from robopolicy.rl.chunk_env import final_observations, make_chunked_vector_env, observation_tensors
from robopolicy.rl.replay import TransitionBuffer
from robopolicy.rl.sac import SAC, Critic
from robopolicy.training.checkpoint import CheckpointError, load_checkpoint
from robopolicy.training.distributed import SINGLE_PROCESS, Distributed
from robopolicy.training.rng import seed_everything
from robopolicy.training.run_logger import RunLogger
from robopolicy.training.run_state import Counters, RunState, StateOf, run_facts
from robopolicy.utils.seeds import training_reset_seeds

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

log = logging.getLogger("train.dsrl")  # under train.py's logger: its terminal and train.log


@dataclass
class DSRLLearner:
    """The steered policy, its SAC agent (and DSRL-NA's noise critic) and the replay buffer."""

    steered: SteeredPolicy
    agent: SAC
    noise_critic: Critic | None  # DSRL-NA's Q_W, distilled from the action critic
    noise_optimizer: torch.optim.Optimizer | None
    replay: TransitionBuffer
    batch_size: int
    device: torch.device

    def features(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        keys = self.steered.shape_meta["obs"]
        return self.steered.encode_obs({key: batch[f"{prefix}/{key}"] for key in keys})

    def update(self) -> dict[str, float]:
        """One SAC step: the critic by TD, then the actor."""
        batch = self.replay.sample(self.batch_size, self.device)
        obs, next_obs = self.features(batch, "obs"), self.features(batch, "next_obs")
        reward, terminated = batch["reward"], batch["terminated"]
        if self.noise_critic is not None:
            decode = self.steered.decode_normalized
            logs = self.agent.update_critic(
                obs, batch["action"], reward, terminated, next_obs, decode
            )
            return {**logs, **self.agent.update_actor(obs, critic=self.noise_critic)}
        logs = self.agent.update_critic(obs, batch["latent"], reward, terminated, next_obs)
        return {**logs, **self.agent.update_actor(obs)}

    def distill(self) -> dict[str, float]:
        """One DSRL-NA distillation step of ``Q_W`` towards the action critic."""
        obs = self.features(self.replay.sample(self.batch_size, self.device), "obs")
        latent = distillation_noise(self.steered.actor, obs)
        with torch.no_grad():
            action = self.steered.decode_normalized(obs, latent)
            target = self.agent.critic(obs, action).min(dim=0).values
        loss = ((self.noise_critic(obs, latent) - target) ** 2).mean(dim=1).sum()
        self.noise_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.noise_optimizer.step()
        return {"distill_loss": loss.item()}


@dataclass
class LogWindow:
    """What happened since the last training log: episodes, successes, env steps, update logs."""

    started: float = field(default_factory=time.perf_counter)
    episodes: int = 0
    successes: int = 0
    env_steps: int = 0
    logs: list[dict] = field(default_factory=list)

    def metrics(self, counters: Counters) -> dict[str, Any]:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        metrics: dict[str, Any] = {
            "env_steps": int(counters["env_steps"]),
            "time/wall_s": counters["wall_s"],
            "time/env_steps_per_s": self.env_steps / seconds,
            "train/episodes": int(counters["episodes"]),
            "train/updates": int(counters["updates"]),
        }
        if self.episodes:
            metrics["train/success_rate"] = self.successes / self.episodes
        for name in sorted({name for logs in self.logs for name in logs}):
            values = [logs[name] for logs in self.logs if name in logs]
            metrics[f"train/{name}"] = float(np.mean(values))
        return metrics


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
    seed_everything(cfg.seed)
    resume = load_checkpoint(cfg.resume) if cfg.resume else None
    steered, env_spec = _steered_policy(cfg, resume, device)
    learner = _build_learner(cfg, steered, device)
    counters = Counters(dict.fromkeys(COUNTERS, 0))
    state = _run_state(cfg, learner, counters, env_spec, resume)
    if resume is not None:
        state.restore_from(resume, cfg.resume)
        log.info(f"resumed from {cfg.resume} at {int(counters['env_steps'])} env steps")
    logger = RunLogger.for_run(cfg, run_dir)
    logger.rewind(int(counters["env_steps"]))
    metrics: dict[str, Any] = {}
    if counters["env_steps"] == 0 and algo.eval_at_start:
        metrics = _evaluate(steered, cfg, counters, logger)
    envs = make_chunked_vector_env(
        cfg.task.env_id,
        {
            **OmegaConf.to_container(cfg.task.env_kwargs, resolve=True),
            **OmegaConf.to_container(algo.env_kwargs, resolve=True),
        },
        algo.n_envs,
        n_obs_steps=steered.n_obs_steps,
        act_steps=steered.n_action_steps,
        env_modules=list(cfg.env_modules),
        max_episode_steps=cfg.task.get("max_episode_steps"),
    )
    checkpoint = run_dir / "checkpoints" / "latest.safetensors"
    try:
        _check_env_fits(envs, learner.replay)
        metrics = _train(learner, envs, cfg, counters, state, logger, checkpoint, metrics)
    finally:
        envs.close()
    state.save(checkpoint, int(counters["env_steps"]), metrics)
    logger.plot({"success": ["eval/success_rate", "train/success_rate"]})
    logger.finish()
    return {
        "step": int(counters["env_steps"]),
        "finished": counters["env_steps"] >= algo.total_env_steps,
        "checkpoint": checkpoint,
        **metrics,
    }


def _train(learner, envs, cfg, counters, state, logger, checkpoint, metrics) -> dict[str, Any]:
    """Act, store and learn until ``total_env_steps`` (or ``stop_after_env_steps``), logging,
    evaluating and checkpointing on their env-step schedules; returns the last metrics."""
    algo = cfg.algo
    stop_at = algo.total_env_steps
    if algo.stop_after_env_steps is not None:
        stop_at = min(stop_at, algo.stop_after_env_steps)
    next_log = _next_multiple(counters["env_steps"], algo.log_every_env_steps)
    next_eval = _next_multiple(counters["env_steps"], algo.eval_every_env_steps)
    next_checkpoint = _next_multiple(counters["env_steps"], algo.checkpoint_every_env_steps)
    # reset seeds: the run's training seeds, new ones after a resume
    block = int(counters["transitions"]) // algo.n_envs
    obs, _ = envs.reset(seed=training_reset_seeds(cfg.seed, block, algo.n_envs))
    if counters["env_steps"] == 0:
        _log_noise_spread(learner.steered, obs, cfg.seed, logger)
    window = LogWindow()
    clock = time.perf_counter()
    while counters["env_steps"] < stop_at:
        obs = _act_and_store(learner, envs, obs, cfg.algo, counters, window)
        now = time.perf_counter()
        counters["wall_s"] += now - clock
        clock = now
        if counters["env_steps"] >= next_log:
            next_log = _next_multiple(counters["env_steps"], algo.log_every_env_steps)
            metrics = window.metrics(counters)
            logger.log(metrics, int(counters["env_steps"]))
            window = LogWindow()
        if algo.eval_every_env_steps and counters["env_steps"] >= next_eval:
            next_eval = _next_multiple(counters["env_steps"], algo.eval_every_env_steps)
            metrics = {**metrics, **_evaluate(learner.steered, cfg, counters, logger)}
            clock = time.perf_counter()
        if counters["env_steps"] >= min(next_checkpoint, stop_at):
            next_checkpoint = _next_multiple(counters["env_steps"], algo.checkpoint_every_env_steps)
            state.save(checkpoint, int(counters["env_steps"]), metrics)
    return metrics


def _act_and_store(learner, envs, obs, algo, counters: Counters, window: LogWindow) -> dict:
    """One chunk in every env (warm-up noise or the actor's), the transitions stored, and the
    updates they earn; returns the next observations."""
    steered, n_envs = learner.steered, algo.n_envs
    keys = steered.shape_meta["obs"]
    warming_up = counters["env_steps"] < algo.warmup_env_steps
    obs_t = observation_tensors(obs, keys)
    with torch.no_grad():
        if warming_up:
            bound = steered.actor.bound
            latent = torch.randn(n_envs, steered.latent_dim).clamp(-bound, bound)
        else:
            latent = steered.actor.sample(steered.encode_obs(obs_t))[0]
        chunk = steered.decode(obs_t, latent.to(learner.device))["action"]
    next_obs, reward, terminated, truncated, info = envs.step(chunk.cpu().numpy())
    ended = terminated | truncated
    executed = step_values(info, "env_steps", n_envs, 0, ended).astype(np.float64)
    success = step_values(info, "is_success", n_envs, False, ended).astype(bool)
    final = final_observations(next_obs, info, ended)
    rows = {f"obs/{key}": obs[key] for key in keys}
    rows.update({f"next_obs/{key}": final[key] for key in keys})
    rows["latent"] = latent.cpu()
    rows["action"] = steered.base.normalize_action(chunk).flatten(1).cpu()
    rows["reward"] = algo.reward_scale * (reward - algo.reward_offset * executed)
    rows["terminated"] = terminated.astype(np.float32)
    learner.replay.add(rows)
    counters["env_steps"] += int(executed.sum())
    counters["transitions"] += n_envs
    counters["episodes"] += int(ended.sum())
    window.episodes += int(ended.sum())
    window.successes += int((success & ended).sum())
    window.env_steps += int(executed.sum())
    if not warming_up and len(learner.replay) >= algo.batch_size:
        window.logs += _learn(learner, algo, counters)
    return next_obs


def _learn(learner: DSRLLearner, algo, counters: Counters) -> list[dict]:
    """The SAC updates (``utd_ratio`` per transition) and DSRL-NA distillation steps
    (``na_distill_ratio``) owed for the ``n_envs`` transitions just stored."""
    learner.steered.train()
    logs = []
    counters["update_credit"] += algo.utd_ratio * algo.n_envs
    while counters["update_credit"] >= 1:
        logs.append(learner.update())
        counters["updates"] += 1
        counters["update_credit"] -= 1
    if learner.noise_critic is not None:
        counters["distill_credit"] += algo.na_distill_ratio * algo.n_envs
    while counters["distill_credit"] >= 1:
        logs.append(learner.distill())
        counters["distill_updates"] += 1
        counters["distill_credit"] -= 1
    return logs


def _evaluate(steered: SteeredPolicy, cfg: DictConfig, counters: Counters, logger) -> dict:
    """The steered policy's deterministic success (eval.py's code path); logged, with videos."""
    started = time.perf_counter()
    steered.eval()
    result = evaluate_policy(steered, cfg, cfg.algo.eval_episodes)
    counters["wall_s"] += time.perf_counter() - started
    step = int(counters["env_steps"])
    evaluation = {
        "env_steps": step,
        **success_metrics(result),
        "eval/seconds": time.perf_counter() - started,
        "time/wall_s": counters["wall_s"],
    }
    logger.log(evaluation, step)
    for i, frames in enumerate(result.videos):
        logger.video(f"env{step:08d}_episode{i}", frames, fps=cfg.task.fps, step=step)
    low, high = evaluation["eval/success_low"], evaluation["eval/success_high"]
    log.info(
        f"{step} env steps: eval success {int(result.success.sum())}/"
        f"{len(result.success)} ({low:.0%}-{high:.0%}), {counters['wall_s']:.0f} s"
    )
    return evaluation


def _log_noise_spread(steered: SteeredPolicy, obs: dict, seed: int, logger) -> None:
    """How much the base's executed actions vary with its noise: what the actor can steer."""
    cond = steered.encode_obs(observation_tensors(obs, steered.shape_meta["obs"]))
    # its own generator: the diagnostic leaves the training RNG stream untouched
    spread = steered.noise_action_spread(cond, generator=torch.Generator().manual_seed(seed))
    logger.log({"env_steps": 0, "dsrl/noise_action_spread": spread}, 0)
    log.info(
        f"the base's executed actions vary with its noise by {spread:.3f} (std, "
        "normalised units): what the noise actor can steer (docs/rl.md)"
    )


def _build_learner(cfg: DictConfig, steered: SteeredPolicy, device: torch.device) -> DSRLLearner:
    """SAC over the noise (``dsrl``) or over executed chunks with a distilled noise critic
    (``na``), and the replay buffer."""
    algo = cfg.algo
    na = algo.variant == "na"
    base = steered.base
    chunk_dim = base.n_action_steps * base.action_dim
    critic_args = {
        "hidden_dims": list(algo.hidden_dims),
        "n_critics": algo.n_critics,
        "activation": algo.activation,
    }
    agent = SAC(
        steered.actor,
        Critic(base.cond_dim, chunk_dim if na else steered.latent_dim, **critic_args),
        gamma=algo.gamma,
        tau=algo.tau,
        lr=algo.lr,
        target_entropy=algo.target_entropy,
        init_temperature=algo.init_temperature,
    ).to(device)
    noise_critic = Critic(base.cond_dim, steered.latent_dim, **critic_args).to(device)
    return DSRLLearner(
        steered=steered,
        agent=agent,
        noise_critic=noise_critic if na else None,
        noise_optimizer=torch.optim.Adam(noise_critic.parameters(), lr=algo.lr) if na else None,
        replay=TransitionBuffer(algo.replay_capacity, _replay_fields(steered)),
        batch_size=algo.batch_size,
        device=device,
    )


def _run_state(cfg, learner: DSRLLearner, counters, env_spec: dict, resume) -> RunState:
    agent = learner.agent
    parts = {
        "policy": policy_state(learner.steered),
        "agent": agent,
        "optimizers": StateOf(agent.optimizer_state, agent.load_optimizer_state),
        "replay": learner.replay,
        "counters": counters,
    }
    if learner.noise_critic is not None:
        parts["noise_critic"] = learner.noise_critic
        parts["noise_optimizer"] = learner.noise_optimizer
    return RunState(
        parts,
        facts={
            "env_spec": env_spec,
            "base_checkpoint": str(cfg.checkpoint or (resume or {}).get("base_checkpoint")),
            "config": OmegaConf.to_container(cfg, resolve=True),
        },
    )


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
    return steered, base_checkpoint.get("env_spec") or run_facts(cfg)["env_spec"]


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


def _check_env_fits(envs, replay: TransitionBuffer) -> None:
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


def _next_multiple(value: float, every: int) -> float:
    """The first multiple of ``every`` above ``value`` (infinity when ``every`` is 0)."""
    if not every:
        return float("inf")
    return (int(value) // every + 1) * every
