"""Schema of FPO (conf/algo/fpo.yaml; robopolicy/algos/fpo.py): flow policy optimisation
(McAllister et al. 2025, "Flow Matching Policy Gradients") on the on-policy loop that DPPO and
ReinFlow use (``ChainPPOAlgoConfig``: rollouts, critic, optimizers, evaluation).

"FPO:" in a comment is the paper's choice; "DPPO:" the published DPPO value this repository's
chain PPO starts from; where ours differs the reason is given. Calibration on PushCube: none
beyond the short runs in docs/rl.md (CPU time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robopolicy.config.chain_ppo import ChainPPOAlgoConfig, PPOConfig
from robopolicy.config.checks import at_least, one_of, positive


@dataclass
class FPOUpdateConfig(PPOConfig):
    """FPO's PPO update (robopolicy/algos/fpo.py): one ratio per sampled chunk, from the
    policy's denoising loss at ``n_mc`` stored (noise level, noise) pairs."""

    n_mc: int = 8  # (tau, eps) pairs per chunk, drawn once at rollout time; the ratio is
    #   exp(mean over them of old loss - new loss) (FPO: the same Monte Carlo estimate with
    #   N_mc draws; more pairs lower the ratio's noise at n_mc denoiser calls per chunk)
    clip: float = 0.05  # PPO ratio clip, one for every chunk (FPO: PPO's clipped objective; 0.2
    #   is PPO's usual value). Smaller here: a pretrained policy is fine-tuned, not trained
    #   from scratch. It bounds each chunk's summed denoising loss to +-0.05 of its old value
    #   (robopolicy/rl/fpo_ratio.py on why the sum)
    min_sampling_std: float = 0.1  # floor of every sampling step's std: exploration noise on
    #   the otherwise deterministic ODE / DDIM (FPO samples with the policy's own sampler and
    #   no floor, training from scratch; a behaviour-cloned base can ignore its initial noise,
    #   docs/rl.md, so some is added: 0.1 is DPPO's floor and ReinFlow's starting std). 0: the
    #   policy's own sampler exactly
    minibatch_size: int = 400  # chunks per minibatch (each n_mc denoiser calls): 1600 chunks
    #   per iteration (16 envs x 100), 4 minibatches per epoch
    update_epochs: int = 5  # passes over the rollout per iteration (DPPO: 10); as ReinFlow's
    #   5, so a small rollout's advantage noise is not fitted ten times
    target_kl: float | None = 0.05  # stop the epochs when the approximate KL of the ratio
    #   exceeds it (DPPO: 1, over per-step ratios; one ratio per chunk here, as in PPO, where
    #   0.01-0.05 is usual; null: never)

    def check(self) -> None:
        super().check()
        at_least(self, 1, "n_mc")
        positive(self, "clip")


@dataclass
class FPOConfig(ChainPPOAlgoConfig):
    """conf/algo/fpo.yaml: fine-tune a flow or a diffusion policy (the checkpoint says which)
    with FPO. Use: python train.py algo=fpo checkpoint=PATH (add
    task.env_kwargs.obs_mode=state for a state-only policy: the envs are built from task.*)."""

    name: str = "fpo"  # which algorithm train.py runs
    denoising_steps: int = 10  # sampling steps of the rollouts and of the saved policy
    #   (num_inference_steps); 10 is the base policy's own setting, which evaluation keeps. FPO
    #   trains on the chunk, not the chain, so any step count (and the policy's own solver or
    #   DDIM) serves
    ppo: FPOUpdateConfig = field(default_factory=FPOUpdateConfig)

    def check(self) -> None:
        super().check()
        one_of(self, "name", ["fpo"])
