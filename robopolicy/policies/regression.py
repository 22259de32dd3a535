"""Regression policy: the action chunk predicted directly, trained with mean squared error.

The baseline that diffusion and flow policies are measured against (an "MLP BC" policy when the
backbone is ``mlp``). It is the degenerate one-step chain of ``BasePolicy``: the denoiser sees a
zero input at time 0 and its output is the chunk itself,

    loss = || f(0, 0, cond) - a ||^2,        action = f(0, 0, cond)   (deterministic)

so it shares the observation encoder, normalizer, backbones, checkpoints and ``predict_action``
with the generative policies. Squared error makes it predict the *mean* of the demonstrated
actions: where demonstrations disagree (go left or right around an obstacle) it averages the
modes, which is exactly what the multimodal task exposes. The ``noise`` argument of
``predict_action`` is accepted and ignored (the output does not depend on it).
"""

from __future__ import annotations

import torch

from robopolicy.policies.base import BasePolicy


class RegressionPolicy(BasePolicy):
    """Direct chunk regression (arguments as ``BasePolicy``'s; it always takes one step)."""

    def __init__(
        self,
        shape_meta: dict,
        normalizer: torch.nn.Module,
        horizon: int = 16,
        n_obs_steps: int = 2,
        n_action_steps: int = 8,
        backbone: str = "mlp",
        backbone_kwargs: dict | None = None,
        obs_encoder_kwargs: dict | None = None,
        mask_padding: bool = False,
        num_inference_steps: int = 1,
    ):
        if num_inference_steps != 1:
            raise ValueError(
                f"num_inference_steps must be 1 for regression, got {num_inference_steps}"
            )
        super().__init__(
            shape_meta,
            normalizer,
            horizon,
            n_obs_steps,
            n_action_steps,
            backbone,
            backbone_kwargs,
            obs_encoder_kwargs,
            mask_padding,
            num_inference_steps,
        )

    def _training_pair(
        self, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        zeros = torch.zeros_like(action)
        return zeros, torch.zeros(action.shape[0], device=action.device), action

    def _step_mean_std(
        self, x: torch.Tensor, step: int, cond: torch.Tensor, num_steps: int, **options
    ) -> tuple[torch.Tensor, float]:
        if num_steps != 1:
            raise ValueError(f"a regression policy takes exactly 1 step, got num_steps={num_steps}")
        if options:
            raise ValueError(f"a regression policy has no sampler options, got {sorted(options)}")
        time = torch.zeros(x.shape[0], device=x.device)
        return self.denoiser(torch.zeros_like(x), time, cond), 0.0
