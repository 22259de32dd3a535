"""Schemas of the chain-PPO algorithms: DPPO (conf/algo/dppo.yaml) and ReinFlow
(conf/algo/reinflow.yaml), which share the PPO update (robopolicy/rl/chain_ppo.py) and its loop.

``PPOConfig`` is what every PPO update here shares (FPO's too: robopolicy/config/fpo.py);
``ChainPPOConfig`` adds the chain update's own hyper-parameters; each is the one source of its
defaults (the update imports them). ``ChainPPOAlgoConfig`` holds what the on-policy algorithms
share (the loop, the critic, the optimizers); ``DPPOConfig`` and ``ReinFlowConfig`` add their
own fields and change the defaults that differ.
"DPPO:" in a comment is the published value (Ren et al. 2024, robomimic state tasks, their
cfg/robomimic/finetune/*/ft_ppo_diffusion_mlp.yaml); where ours differs the reason is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robopolicy.config.checks import (
    at_least,
    in_range,
    non_negative,
    one_of,
    positive,
    require,
    widths,
)
from robopolicy.config.policy import ACTIVATIONS, DIFFUSION_SAMPLERS


@dataclass
class PPOConfig:
    """What every PPO update here shares (robopolicy/rl/chain_ppo.py ``ppo_epochs``): GAE, the
    sampling noise of rollouts, the epochs and minibatches, the value loss, the KL stop."""

    gamma: float = 0.999  # discount per chunk step of the env MDP (DPPO: 0.999)
    gae_lambda: float = 0.95  # GAE lambda over env steps (DPPO: 0.95)
    min_sampling_std: float = 0.1  # floor of every step's sampling std: exploration (DPPO: 0.1)
    noise_clip: float = 3.0  # standard-normal draws clipped to +-3 (DPPO: randn_clip_value 3)
    action_clip: float = 1.0  # executed normalised actions clipped to +-1 (DPPO:
    #   final_action_clip_value 1)
    update_epochs: int = 10  # passes over the rollout per iteration (DPPO: 10)
    minibatch_size: int = 4000  # (env step, denoising step) pairs per minibatch (DPPO: 7500 of
    #   150000; DPPO here: 1600 chunk steps x 5 steps = 8000 pairs, 2 minibatches per epoch)
    vf_coef: float = 0.5  # value-loss weight (DPPO: 0.5)
    target_kl: float | None = 1.0  # stop the epochs when the approximate KL exceeds it (DPPO: 1;
    #   null: never)
    norm_adv: bool = True  # normalise advantages per minibatch (DPPO: true)
    max_grad_norm: float | None = 1.0  # actor gradient-norm clip (DPPO: max_grad_norm null; a
    #   guard here)

    def check(self) -> None:
        in_range(self, 0, 1, "gamma", "gae_lambda")
        non_negative(self, "min_sampling_std", "vf_coef")
        positive(self, "noise_clip", "action_clip", "target_kl", "max_grad_norm")
        at_least(self, 1, "update_epochs", "minibatch_size")


@dataclass
class ChainPPOConfig(PPOConfig):
    """PPO over the denoising chain (robopolicy/rl/chain_ppo.py): PPOConfig and the chain's own
    settings."""

    gamma_denoising: float = 0.99  # advantage discount per denoising step away from the action
    #   (DPPO: 0.99)
    min_logprob_std: float = 0.1  # floor of the std in log-probabilities (DPPO: 0.1)
    logprob_min: float = -5.0  # element-wise log-density clamp, lower (DPPO: -5)
    logprob_max: float = 2.0  # and upper (DPPO: 2)
    clip_base: float = 3.0e-3  # PPO ratio clip at the noisiest fine-tuned step (DPPO: 0.001)
    clip_final: float = 3.0e-2  # at the step producing the action (DPPO: clip_ploss_coef 0.01).
    #   3x DPPO's, between two PushCube trials: DPPO's clips moved the policy too little to see
    #   in 14 iterations (22k env steps); 10x (with lr 3e-4) dropped rollout success from ~70%
    #   to ~30% within 9 iterations
    clip_rate: float = 3.0  # exponential rate of the rise between them (DPPO: 3)
    ent_coef: float = 0.0  # entropy-proxy bonus (DPPO: 0; ReinFlow uses a small one on the
    #   learned std on some tasks)
    bc_coef: float = 0.0  # behaviour-cloning term on the pretrained policy's chains (DPPO: off)

    def check(self) -> None:
        super().check()
        in_range(self, 0, 1, "gamma_denoising")
        non_negative(self, "min_logprob_std", "ent_coef", "bc_coef")
        positive(self, "clip_base", "clip_final", "clip_rate")
        require(
            self.logprob_min < self.logprob_max,
            "logprob_min",
            self.logprob_min,
            f"expected a number < logprob_max={self.logprob_max}",
        )


@dataclass
class CriticConfig:
    """ValueCritic (robopolicy/rl/critic.py) on the policy's observation encoding."""

    hidden_dims: list[int] = field(default_factory=lambda: [256, 256, 256])  # (DPPO: [256, 256,
    #   256], residual Mish)
    activation: str = "mish"  # mish | relu | gelu | silu | tanh (DPPO: Mish)
    residual: bool = True  # skip connections around equal-width layers (DPPO: residual_style)

    def check(self) -> None:
        widths(self, "hidden_dims")
        one_of(self, "activation", ACTIVATIONS)


@dataclass
class ChainPPOAlgoConfig:
    """What DPPO, ReinFlow and FPO (robopolicy/config/fpo.py) share: the on-policy loop
    (robopolicy/rl/ppo_loop.py), the critic and the optimizers; DPPO and ReinFlow the chain-PPO
    update too (``ppo``). Use: python train.py algo=dppo checkpoint=PATH (add
    task.env_kwargs.obs_mode=state for a state-only policy: the envs are built from task.*)."""

    name: str = "dppo"  # which algorithm train.py runs
    n_iterations: int = 100  # PPO iterations (rollout + update) in total (DPPO: 300 on
    #   Lift/Can); on PushCube 100 DPPO iterations (625k env steps) ended at 97/90/97% on seeds
    #   0-2 (docs/rl.md)
    stop_after: int | None = None  # stop (with a checkpoint) at this iteration, to train in
    #   slices and `resume`
    target_success: float | None = None  # finish early once a periodic evaluation reaches this
    #   success rate
    n_envs: int = 16  # parallel envs (worker processes); more on a bigger machine (DPPO: 50)
    n_steps: int = 100  # chunk steps per env per iteration: 400 env steps, ~6300 in all, ~100
    #   episodes (DPPO: 300 chunks); envs are reset by seed at each iteration, as DPPO does. On
    #   PushCube (docs/rl.md) DPPO with 100 chunks and 10 epochs ended at 91/83/91% (seeds 0-2,
    #   376k env steps) where 40 chunks with 5 epochs ended at 87/83/82% (326k/151k/150k)
    act_steps: int = 4  # actions executed per chunk (DPPO: 4); at most horizon - n_obs_steps + 1
    reward_type: str | None = "sparse"  # reward of the training envs (null: the task's): sparse
    #   is 1 on success and the episode ends, as in DPPO's robomimic runs; PushCube's dense
    #   reward pays ~0.9 a step for hovering near the goal, which outweighs finishing when
    #   success ends the episode
    step_reward: float = -0.01  # added to the reward of every executed env step: a time cost.
    #   With the sparse reward alone a failed episode earns nothing worse than a slow success
    #   (the time limit is a truncation, bootstrapped with V(final obs)); -0.01: a whole
    #   100-step failure costs as much as a success earns (DPPO: 0)
    denoising_steps: int = 10  # sampling steps of the chain; 10 is the base policy's own
    #   setting, which evaluation keeps
    actor_lr: float = 1.0e-4  # AdamW rate of the fine-tuned networks (DPPO: 1e-5 over 300
    #   iterations of 50 envs; 10x here to learn in the few iterations a CPU affords)
    actor_lr_final: float | None = None  # null: actor_lr throughout; a number: cosine decay
    #   from actor_lr (after the critic warm-up) to this rate at n_iterations (DPPO: its cosine
    #   schedule runs 1e-5 to 1e-5)
    actor_weight_decay: float = 0.0  # (DPPO: 0)
    critic_lr: float = 1.0e-3  # AdamW rate of the critic (DPPO: 1e-3)
    critic_weight_decay: float = 0.0  # (DPPO: 0)
    n_critic_warmup_itr: int = 2  # iterations that train only the critic first (DPPO: 2)
    critic: CriticConfig = field(default_factory=CriticConfig)
    ppo: ChainPPOConfig = field(default_factory=ChainPPOConfig)
    eval_every: int = 10  # iterations between evaluations (eval.n_episodes_during_training
    #   episodes each; 0: none)
    checkpoint_every: int = 1  # iterations between writes of checkpoints/latest.safetensors

    def check(self) -> None:
        at_least(self, 1, "n_iterations", "stop_after", "n_envs", "n_steps", "act_steps")
        at_least(self, 1, "denoising_steps", "checkpoint_every")
        at_least(self, 0, "n_critic_warmup_itr", "eval_every")
        in_range(self, 0, 1, "target_success", open_low=True)
        positive(self, "actor_lr", "critic_lr")
        non_negative(self, "actor_lr_final", "actor_weight_decay", "critic_weight_decay")


@dataclass
class DPPOConfig(ChainPPOAlgoConfig):
    """conf/algo/dppo.yaml: PPO over the denoising chain of a pretrained diffusion policy
    (robopolicy/algos/dppo.py)."""

    name: str = "dppo"  # which algorithm train.py runs
    denoising_steps: int = 10  # sampling steps of the chain (DPPO: 20 DDPM steps; 5 for its DDIM
    #   variant); 10 is the base policy's own DDIM setting, which evaluation keeps
    ft_denoising_steps: int = 5  # fine-tune the last K steps, the earlier ones stay pretrained
    #   (DPPO: 10 of 20 DDPM steps; all 5 with DDIM). On PushCube, K = 5 with 16 envs improved
    #   steadily where K = 10 with 12 envs drifted back to the base; which change mattered is
    #   untested
    sampler: str = "ddim"  # chain while fine-tuning: ddim (DPPO's DDIM variant) | ddpm (DPPO's
    #   default)
    eta: float = 1.0  # DDIM eta while fine-tuning: 1 makes every step the stochastic DDPM
    #   Gaussian (DPPO); evaluation uses eval.sampler (null: the saved policy's default,
    #   deterministic eta = 0)

    def check(self) -> None:
        super().check()
        one_of(self, "name", ["dppo"])
        in_range(self, 1, self.denoising_steps, "ft_denoising_steps")
        one_of(self, "sampler", DIFFUSION_SAMPLERS)
        in_range(self, 0, 1, "eta")


@dataclass
class NoiseNetConfig:
    """ReinFlow's NoiseStdNet: sigma(obs encoding, t) per chunk element, bounded."""

    hidden_dims: list[int] = field(default_factory=lambda: [64, 64])  # a small Mish MLP
    min_std: float = 0.08  # lower bound of the learned std (normalised action units); DPPO's
    #   sampling-std floor is 0.1. With 0.02-0.1 (init 0.05) the flow base fell from 23% to 7% on
    #   PushCube; with these bounds it rose from 58% (docs/rl.md)
    max_std: float = 0.2  # upper bound of the learned std
    init_std: float = 0.1  # std everywhere at the start of fine-tuning

    def check(self) -> None:
        widths(self, "hidden_dims")
        positive(self, "min_std")
        in_range(self, self.min_std, self.max_std, "init_std")


def _reinflow_ppo() -> ChainPPOConfig:
    return ChainPPOConfig(
        min_sampling_std=0.0,  # no extra floor: noise_net.min_std bounds the std (DPPO: 0.1)
        min_logprob_std=0.0,  # likewise for log-probabilities (DPPO: 0.1)
        update_epochs=5,  # DPPO: 10 over a 37x larger rollout; fewer here so the small
        #   rollout's advantage noise is not fitted ten times
        minibatch_size=1600,  # 640 chunk steps x 10 steps = 6400 pairs, 4 minibatches per epoch
    )


@dataclass
class ReinFlowConfig(ChainPPOAlgoConfig):
    """conf/algo/reinflow.yaml: PPO over a flow policy's Euler chain made Gaussian by a learned
    noise-std network (robopolicy/algos/reinflow.py). The noise bounds are our choice for a
    10-step Euler chain (ReinFlow, Zhang et al. 2025, bounds a learned std the same way and
    fine-tunes every step); the PPO machinery keeps DPPO's published values."""

    name: str = "reinflow"  # which algorithm train.py runs
    n_steps: int = 40  # chunk steps per env per iteration: 160 env steps, ~40 episodes in all
    #   per iteration (DPPO: 300 chunks); envs are reset by seed at each iteration, as DPPO does
    denoising_steps: int = 10  # Euler steps of the chain, all fine-tuned; 10 is the base
    #   policy's own setting, which evaluation keeps (deterministic, noise_std 0)
    ppo: ChainPPOConfig = field(default_factory=_reinflow_ppo)
    noise_net: NoiseNetConfig = field(default_factory=NoiseNetConfig)

    def check(self) -> None:
        super().check()
        one_of(self, "name", ["reinflow"])
