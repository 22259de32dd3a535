"""Schemas of behaviour cloning (conf/algo/bc.yaml) and DSRL (conf/algo/dsrl.yaml); the
chain-PPO algorithms, DPPO and ReinFlow, are in robopolicy/config/chain_ppo.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robopolicy.config.checks import (
    at_least,
    in_range,
    multiple_of,
    non_negative,
    one_of,
    positive,
    require,
    widths,
)
from robopolicy.config.policy import ACTIVATIONS

DSRL_VARIANTS = ("dsrl", "na")  # robopolicy.algos.dsrl.VARIANTS
OPTIMIZER_IMPLS = ("fused", "foreach", "for_loop")  # robopolicy.algos.bc.OPTIMIZER_IMPLS


@dataclass
class EMAConfig:
    """Exponential moving average of the weights (robopolicy/training/ema.py)."""

    power: float = 0.75  # decay warm-up exponent: 1 - (1 + step)^-power
    max_decay: float = 0.9999  # decay ceiling

    def check(self) -> None:
        positive(self, "power")
        in_range(self, 0, 1, "max_decay")


@dataclass
class BCConfig:
    """Behaviour cloning (robopolicy/algos/bc.py)."""

    name: str = "bc"  # which algorithm train.py runs
    num_steps: int = 20000  # optimizer steps in total (the learning-rate schedule spans these)
    stop_after: int | None = None  # stop (with a checkpoint) at this step, to train in slices
    #   and `resume`
    lr: float = 1.0e-4  # peak AdamW learning rate
    betas: list[float] = field(default_factory=lambda: [0.95, 0.999])  # AdamW betas (Diffusion
    #   Policy's)
    weight_decay: float = 1.0e-6  # AdamW weight decay
    optimizer_impl: str = "fused"  # how AdamW updates the tensors: fused (one kernel over all
    #   of them, on CPU and CUDA; on a CPU 0.4-0.6 ms a step for 0.4M parameters against 1.3-1.8
    #   for foreach and 1.6-2.2 for for_loop) | foreach (batched ops per step) | for_loop
    #   (torch's per-tensor loop, its CPU default before). The same math; the rounding may
    #   differ between them, so a run resumes with the implementation it started with
    warmup_steps: int = 500  # linear learning-rate warm-up steps, then cosine decay to 0
    grad_clip: float = 1.0  # max global gradient norm
    ema: EMAConfig = field(default_factory=EMAConfig)
    log_every: int = 100  # steps between training-metric logs
    val_every: int = 1000  # steps between validation-loss evaluations (a multiple of log_every)
    eval_every: int = 5000  # steps between closed-loop evaluations (0: only the final one)
    checkpoint_every: int = 1000  # steps between writes of checkpoints/latest.safetensors
    top_k: int = 3  # best checkpoints kept by evaluation success rate
    ddp_bucket_mb: float = 25.0  # under torchrun: the size of DistributedDataParallel's gradient
    #   buckets, each all-reduced as soon as its gradients are ready, overlapping the rest of the
    #   backward pass (25: torch's default; the first bucket is always ~1 MiB)

    def check(self) -> None:
        one_of(self, "name", ["bc"])
        at_least(self, 1, "num_steps", "stop_after", "log_every", "val_every", "checkpoint_every")
        at_least(self, 0, "warmup_steps", "eval_every", "top_k")
        positive(self, "lr", "grad_clip", "ddp_bucket_mb")
        non_negative(self, "weight_decay")
        one_of(self, "optimizer_impl", OPTIMIZER_IMPLS)
        betas = list(self.betas)
        ok = len(betas) == 2 and all(0 <= beta < 1 for beta in betas)
        require(ok, "betas", betas, "expected two numbers in [0, 1)")
        multiple_of(self, "val_every", "log_every")


@dataclass
class DSRLConfig:
    """RL over the initial noise of a frozen diffusion/flow policy (robopolicy/algos/dsrl.py).

    DSRL can only steer a base whose actions vary with its noise: every run logs that spread as
    dsrl/noise_action_spread (0.017 for the main job's base, too little; 0.05-0.06 for the base
    of conf/experiment/push_cube_mix.yaml, which it lifted from 39% to 93-99%; docs/rl.md).
    "Published" below: Wagenmaker et al. 2025 and their reference config for robomimic
    (github.com/ajwagen/dsrl, cfg/robomimic/dsrl_can.yaml).
    """

    name: str = "dsrl"  # which algorithm train.py runs
    variant: str = "dsrl"  # dsrl: SAC critic over the noise | na: noise aliasing (critic over
    #   executed action chunks, distilled into a critic over the noise; published default for
    #   robomimic)
    noise_bound: float = 1.5  # b: the actor's noise lies in [-b, b] (published action_magnitude)
    latent_steps: int | None = 5  # leading rows of the (horizon, action_dim) noise the actor
    #   steers, the rest held at zero (null: all rows; published: all, with horizon = the 4
    #   executed steps). 5 = n_obs_steps - 1 + n_action_steps, the end of the executed window:
    #   35 numbers instead of 112 for PushCube
    total_env_steps: int = 600000  # environment steps (not chunks) to train for: ~50 min at
    #   ~200 env steps/s on a 2-core CPU; DSRL lifted PushCube's 39% base to 93-99% at 600k
    stop_after_env_steps: int | None = None  # stop early (with a checkpoint) here, to train in
    #   slices and `resume`
    n_envs: int = 4  # chunked envs stepped in parallel worker processes (published n_envs 4);
    #   more envs on a bigger machine need only this (the update count follows utd_ratio)
    warmup_env_steps: int = 2000  # env steps with clipped standard-normal noise (the base
    #   policy's own behaviour) before the first update (published: 1501 steps x 4 envs)
    utd_ratio: int | float = 1  # gradient updates per collected chunk transition (published: 20
    #   updates per step of 4 envs, i.e. 5 per transition); 1 is ~2.5x faster per env step than
    #   4 on a CPU, and leaves the critic less room to overfit the first few thousand transitions
    na_distill_ratio: int | float = 1  # variant=na: Q_W distillation steps per transition
    #   (published: 10 per 20 updates of 4 envs, i.e. 2.5; each step runs the base's sampler on
    #   a batch, costly on a CPU)
    batch_size: int = 128  # transitions per update (published 256; halved for the CPU budget)
    replay_capacity: int = 100000  # transitions kept, oldest overwritten (preallocated: ~76 MB
    #   for the state-based PushCube policy)
    gamma: float = 0.95  # discount per chunk transition (published 0.99 for 300-500-step
    #   robomimic episodes; a PushCube episode is at most 25 chunks, and 0.95 (a ~20-chunk
    #   horizon) propagates value faster)
    tau: float = 0.005  # target-critic averaging rate per update (published 0.005)
    lr: float = 3.0e-4  # Adam learning rate of actor, critics and temperature (published 3e-4)
    target_entropy: float = 0.0  # SAC temperature target, nats (published target_ent 0)
    init_temperature: float = 0.1  # initial alpha; SAC's usual 1.0 (SB3 "auto", published) makes
    #   the entropy bonus of the noise (~38 nats for 35 numbers) dwarf rewards in [-1, 0] for
    #   ~20k env steps; 0.002 lets the actor's mean run to the noise bound before the critic
    #   knows anything (PushCube's mix base: evaluation 40% -> 10% at 5k env steps, docs/rl.md)
    hidden_dims: list[int] = field(default_factory=lambda: [128, 128])  # actor and critic MLP
    #   widths (published 3 x 2048: ~100x the compute, far beyond a shared 2-core CPU; widen on
    #   a GPU)
    activation: str = "tanh"  # hidden activation after each LayerNorm (published Tanh)
    n_critics: int = 2  # Q-networks in each critic ensemble; the TD target takes their min
    log_std_min: float = -5.0  # clamp on the actor's pre-squash log standard deviation
    log_std_max: float = 2.0  # ... and its upper end
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"reward_type": "sparse"})
    #   merged over task.env_kwargs for the training envs only (evaluation uses the task's).
    #   reward_type sparse: 1 on success, else 0, the published setting (dense: the task's shaped
    #   reward in [0, 1], which on PushCube pays ~0.9 a step near the target, so a near miss
    #   costs little more than a success; it moves the actor sooner in short runs (the slow
    #   test uses it), but no dense run here came near 90%)
    reward_offset: float = 1.0  # subtracted per executed env step: reward - 1 <= 0 until
    #   success (published reward_offset 1 with robomimic's sparse reward), so finishing sooner
    #   is always better
    reward_scale: float = 0.25  # multiplies the chunk reward (1 / n_action_steps keeps it in
    #   [-1, 0])
    log_every_env_steps: int = 1000  # env steps between training-metric logs (losses, speed)
    eval_every_env_steps: int = 20000  # env steps between evaluations (0: none)
    eval_episodes: int = 50  # episodes per periodic evaluation (seeds eval.seed ...; the final
    #   one after training uses eval.n_episodes)
    eval_at_start: bool = True  # evaluate the steered policy before any training (its initial,
    #   ~zero noise)
    checkpoint_every_env_steps: int = 20000  # env steps between writes of
    #   checkpoints/latest.safetensors (each holds the replay buffer: ~76 MB for PushCube)

    def check(self) -> None:
        one_of(self, "name", ["dsrl"])
        one_of(self, "variant", DSRL_VARIANTS)
        positive(self, "noise_bound")
        at_least(self, 1, "latent_steps", "total_env_steps", "stop_after_env_steps", "n_envs")
        at_least(self, 1, "batch_size", "replay_capacity", "n_critics", "log_every_env_steps")
        at_least(self, 1, "checkpoint_every_env_steps")
        at_least(self, 0, "warmup_env_steps", "eval_every_env_steps")
        non_negative(self, "utd_ratio", "na_distill_ratio")
        in_range(self, 0, 1, "gamma")
        in_range(self, 0, 1, "tau", open_low=True)
        positive(self, "lr", "init_temperature")
        widths(self, "hidden_dims")
        one_of(self, "activation", ACTIVATIONS)
        require(
            self.log_std_min < self.log_std_max,
            "log_std_min",
            self.log_std_min,
            f"expected a number < log_std_max={self.log_std_max}",
        )
        at_least(self, 1 if self.eval_every_env_steps or self.eval_at_start else 0, "eval_episodes")
