"""Diffusion policy (Chi et al. 2023): DDPM training, DDPM or DDIM sampling of action chunks.

Training (Ho et al. 2020). For a normalised action chunk ``a`` and a uniform step
``k ~ U{0, ..., K-1}``::

    eps ~ N(0, I)
    x_k = sqrt(abar_k) a + sqrt(1 - abar_k) eps
    loss = || f(x_k, k, cond) - target ||^2,   target = eps ("epsilon") or a ("sample")

Sampling visits ``num_steps`` of the K training steps, ``k_1 > k_2 > ... > k_N`` (chosen at
inference; ``timestep_spacing`` linspace | leading | trailing, the formulas in
robopolicy/policies/noise_schedules.py ``inference_timesteps``), and at each step first recovers
both the clean chunk and the noise::

    epsilon prediction:  eps_hat = f,  a_hat = (x_k - sqrt(1 - abar_k) eps_hat) / sqrt(abar_k)
    sample prediction:   a_hat = f,    eps_hat = (x_k - sqrt(abar_k) a_hat) / sqrt(1 - abar_k)
    clip_sample = c:     a_hat <- clamp(a_hat, -c, c)   (eps_hat stays as predicted)

At the noisiest steps ``abar_k`` is close to 0 and ``a_hat`` amplifies the denoiser's error by
``1 / sqrt(abar_k)`` (about 500 for the last of 50 cosine steps); the clamp keeps that error from
entering the chain. ``eps_hat`` is left unclipped (as diffusers does by default): recomputing it
from the clamped ``a_hat`` measurably hurts deterministic DDIM sampling.

With ``p`` the next visited step (``abar_p = 1`` after the last one), the step is Gaussian,
``x_p ~ N(mean, std^2 I)``:

* DDPM, the posterior ``q(x_p | x_k, a_hat)`` (with ``beta' = 1 - abar_k / abar_p``)::

      mean = sqrt(abar_p) beta' / (1 - abar_k) a_hat
             + sqrt(1 - beta') (1 - abar_p) / (1 - abar_k) x_k
      std^2 = (1 - abar_p) / (1 - abar_k) beta'

* DDIM (Song et al. 2021), with ``eta`` in [0, 1]::

      std  = eta sqrt((1 - abar_p) / (1 - abar_k)) sqrt(1 - abar_k / abar_p)
      mean = sqrt(abar_p) a_hat + sqrt(1 - abar_p - std^2) eps_hat

  ``eta = 0`` is deterministic (an ODE solver); ``eta = 1`` has DDPM's std, and its mean too
  whenever ``a_hat`` and ``eps_hat`` agree with ``x_k`` (no clamp applied).

The last step has ``abar_p = 1`` and so ``std = 0`` and ``mean = a_hat``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robopolicy.policies.base import BasePolicy
from robopolicy.policies.noise_schedules import (
    TIMESTEP_SPACINGS,
    alphas_cumprod,
    inference_timesteps,
    make_betas,
)

PREDICTION_TYPES = ("epsilon", "sample")
SAMPLERS = ("ddpm", "ddim")


class DiffusionPolicy(BasePolicy):
    """Denoising-diffusion policy over action chunks (see the module docstring).

    Args (beyond ``BasePolicy``'s):
        num_train_timesteps: K, the number of diffusion steps in training.
        beta_schedule: ``"squaredcos_cap_v2"`` or ``"linear"``.
        prediction_type: what the denoiser predicts, ``"epsilon"`` or ``"sample"``.
        clip_sample: clamp the predicted clean chunk to ``[-c, c]`` at each sampling step (suits
            actions normalised to ``[-1, 1]``); None: no clamp (e.g. gaussian-normalised actions).
        sampler: default sampler, ``"ddim"`` or ``"ddpm"`` (``predict_action(sampler=...)``).
        eta: default DDIM eta (0: deterministic).
        timestep_spacing: default choice of the visited steps, ``"linspace"``, ``"leading"`` or
            ``"trailing"`` (``predict_action(timestep_spacing=...)`` overrides it).
    """

    def __init__(
        self,
        shape_meta: dict,
        normalizer: nn.Module,
        horizon: int = 16,
        n_obs_steps: int = 2,
        n_action_steps: int = 8,
        backbone: str = "unet1d",
        backbone_kwargs: dict | None = None,
        obs_encoder_kwargs: dict | None = None,
        mask_padding: bool = False,
        num_inference_steps: int = 10,
        num_train_timesteps: int = 100,
        beta_schedule: str = "squaredcos_cap_v2",
        prediction_type: str = "epsilon",
        clip_sample: float | None = 1.0,
        sampler: str = "ddim",
        eta: float = 0.0,
        timestep_spacing: str = "linspace",
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
            )
        _check_sampler(sampler, eta)
        _check_spacing(timestep_spacing)
        if clip_sample is not None and clip_sample <= 0:
            raise ValueError(f"clip_sample must be positive or None, got {clip_sample}")
        if not 1 <= num_inference_steps <= num_train_timesteps:
            raise ValueError(
                f"num_inference_steps={num_inference_steps} must be in "
                f"[1, num_train_timesteps={num_train_timesteps}]"
            )
        betas = make_betas(beta_schedule, num_train_timesteps)
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
        self._keep_settings(
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            clip_sample=clip_sample,
            sampler=sampler,
            eta=eta,
            timestep_spacing=timestep_spacing,
        )
        abar = alphas_cumprod(betas)
        # float64 Python numbers for the sampling coefficients; a float32 buffer for training.
        self.abar_list: list[float] = abar.tolist()
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)

    def sample_noise_level(self, batch: int, device: torch.device) -> torch.Tensor:
        """``(B,)`` noise levels as training draws them: steps ``k ~ U{0, ..., K-1}``."""
        return torch.randint(0, self.num_train_timesteps, (batch,), device=device)

    def noisy_sample(
        self, action: torch.Tensor, k: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training pair of normalised chunks ``action`` at steps ``k (B,)`` (integers) with
        noise ``eps``: ``(x_k, denoiser time (B,), regression target)``."""
        abar = self.alphas_cumprod[k.long()][:, None, None]
        noisy = abar.sqrt() * action + (1 - abar).sqrt() * eps
        target = eps if self.prediction_type == "epsilon" else action
        return noisy, k.float(), target

    def _training_pair(
        self, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = self.sample_noise_level(action.shape[0], action.device)
        return self.noisy_sample(action, k, torch.randn_like(action))

    def inference_timesteps(self, num_steps: int, spacing: str | None = None) -> list[int]:
        """The training steps a ``num_steps`` chain visits, noisiest first (``spacing`` None:
        the policy's ``timestep_spacing``)."""
        spacing = self.timestep_spacing if spacing is None else spacing
        _check_spacing(spacing)
        return inference_timesteps(self.num_train_timesteps, num_steps, spacing)

    def predict_clean(
        self, x: torch.Tensor, k: int, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a_hat, eps_hat)`` at training step ``k``; ``a_hat`` clipped as configured."""
        abar = self.abar_list[k]
        out = self.denoiser(x, torch.full((x.shape[0],), float(k), device=x.device), cond)
        if self.prediction_type == "epsilon":
            eps = out
            clean = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        else:
            clean = out
            eps = (x - math.sqrt(abar) * clean) / math.sqrt(1 - abar)
        if self.clip_sample is not None:
            clean = clean.clamp(-self.clip_sample, self.clip_sample)
        return clean, eps

    def _step_mean_std(
        self,
        x: torch.Tensor,
        step: int,
        cond: torch.Tensor,
        num_steps: int,
        sampler: str | None = None,
        eta: float | None = None,
        timestep_spacing: str | None = None,
    ) -> tuple[torch.Tensor, float]:
        sampler = self.sampler if sampler is None else sampler
        eta = self.eta if eta is None else eta
        _check_sampler(sampler, eta)
        timesteps = self.inference_timesteps(num_steps, timestep_spacing)
        k = timesteps[step]
        abar = self.abar_list[k]
        abar_prev = self.abar_list[timesteps[step + 1]] if step + 1 < num_steps else 1.0
        clean, eps = self.predict_clean(x, k, cond)

        if sampler == "ddpm":
            beta = 1 - abar / abar_prev
            clean_coef = math.sqrt(abar_prev) * beta / (1 - abar)
            x_coef = math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar)
            mean = clean_coef * clean + x_coef * x
            std = math.sqrt((1 - abar_prev) / (1 - abar) * beta)
            return mean, std

        std = eta * math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
        mean = math.sqrt(abar_prev) * clean + math.sqrt(max(1 - abar_prev - std**2, 0.0)) * eps
        return mean, std


def _check_sampler(sampler: str, eta: float) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")


def _check_spacing(spacing: str) -> None:
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {spacing!r}")
