"""Flow-matching policy: conditional flow matching on the linear (rectified) path, as in pi0.

Path and target. Time runs from noise (``t = 0``) to data (``t = 1``); for a normalised action
chunk ``a`` and noise ``eps ~ N(0, I)``::

    x_t = t a + (1 - t) eps,          u_t = d x_t / dt = a - eps
    loss = || v(x_t, t, cond) - u_t ||^2

Training times. ``"uniform"``: ``t ~ U(0, 1)``. ``"beta"`` (pi0, Black et al. 2024):
``t = s (1 - u)`` with ``u ~ Beta(alpha, beta)`` (1.5 and 1 by default) and cutoff ``s = 0.999``,
the density ``p(t) = Beta((s - t) / s; alpha, beta)``, which favours the noisy end (small t).

Sampling integrates ``dx/dt = v(x, t, cond)`` from ``x_0 = noise`` over ``num_steps`` equal
steps of ``dt = 1 / num_steps`` (chosen at inference; 1 step is a single jump), with
``t_i = i dt``:

    euler:     mean = x + dt v(x, t_i)
    midpoint:  mean = x + dt v(x + dt/2 v(x, t_i), t_i + dt/2)
    heun:      mean = x + dt/2 (v(x, t_i) + v(x + dt v(x, t_i), t_i + dt))
               except on the last step, which is an Euler step (as in Karras et al. 2022): the
               velocity at t = 1 is never trained and, for data concentrated near a point, it is
               singular (v = (a - x) / (1 - t)); evaluating it there spoils the final sample.

and ``x_{i+1} ~ N(mean, noise_std^2 I)``. ``noise_std = 0`` (the default) is the deterministic
ODE: the same ``(obs, noise)`` gives the same actions. ``noise_std > 0`` makes every step a
Gaussian with a known density, the exploration noise that an RL fine-tuner (DPPO-style per-step
log-probabilities) needs; it is added noise, not a marginal-preserving SDE.

Prediction target. ``"velocity"`` (the default): the network is ``v`` itself, regressed onto
``u_t``. ``"sample"``: the network predicts the clean chunk ``a_hat(x_t, t)``, regressed onto
``a``, and the velocity follows from the path, ``v = (a_hat - x) / (1 - t)`` (every sampling
time is below 1). Optionally ``a_hat`` is clamped to ``[-c, c]`` (``clip_sample``, as the
diffusion policy does). An Euler step is then ``x + dt / (1 - t) (a_hat - x)``, and the last one
(``t = 1 - dt``) lands exactly on ``a_hat``. For small networks on low-dimensional data this
parameterisation is the easier regression (the target does not depend on the noise draw), the
same reason the diffusion policy here defaults to sample prediction.

The denoiser sees ``1000 t``, on the scale its sinusoidal time embedding expects.
"""

from __future__ import annotations

import torch
from torch import nn

from robopolicy.policies.base import BasePolicy

TIME_SAMPLINGS = ("uniform", "beta")
PREDICTION_TYPES = ("velocity", "sample")
SOLVERS = ("euler", "midpoint", "heun")
TIME_SCALE = 1000.0


class FlowPolicy(BasePolicy):
    """Flow-matching policy over action chunks (see the module docstring).

    Args (beyond ``BasePolicy``'s):
        time_sampling: ``"uniform"`` or ``"beta"`` (pi0's).
        beta_alpha, beta_beta: parameters of the Beta distribution of ``u``.
        time_cutoff: s, the largest training time of the beta sampling.
        solver: default ODE solver, ``"euler"``, ``"midpoint"`` or ``"heun"``.
        noise_std: default std of the Gaussian noise added at each sampling step (0: none).
        prediction_type: what the network predicts, ``"velocity"`` or ``"sample"``.
        clip_sample: with sample prediction, clamp the predicted clean chunk to ``[-c, c]``
            (None: no clamp).
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
        time_sampling: str = "beta",
        beta_alpha: float = 1.5,
        beta_beta: float = 1.0,
        time_cutoff: float = 0.999,
        solver: str = "euler",
        noise_std: float = 0.0,
        prediction_type: str = "velocity",
        clip_sample: float | None = None,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}"
            )
        if clip_sample is not None and (clip_sample <= 0 or prediction_type != "sample"):
            raise ValueError(
                f"clip_sample={clip_sample} needs prediction_type='sample' and a positive value"
            )
        if time_sampling not in TIME_SAMPLINGS:
            raise ValueError(
                f"time_sampling must be one of {TIME_SAMPLINGS}, got {time_sampling!r}"
            )
        if beta_alpha <= 0 or beta_beta <= 0:
            raise ValueError(
                f"beta_alpha and beta_beta must be positive, got {beta_alpha}, {beta_beta}"
            )
        if not 0 < time_cutoff <= 1:
            raise ValueError(f"time_cutoff must be in (0, 1], got {time_cutoff}")
        _check_solver(solver, noise_std)
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
            time_sampling=time_sampling,
            beta_alpha=beta_alpha,
            beta_beta=beta_beta,
            time_cutoff=time_cutoff,
            solver=solver,
            noise_std=noise_std,
            prediction_type=prediction_type,
            clip_sample=clip_sample,
        )

    def sample_time(self, batch: int, device: torch.device) -> torch.Tensor:
        """``(B,)`` training times in ``[0, 1]``, drawn as configured."""
        if self.time_sampling == "uniform":
            return torch.rand(batch, device=device)
        alpha = torch.tensor(self.beta_alpha, device=device)
        beta = torch.tensor(self.beta_beta, device=device)
        u = torch.distributions.Beta(alpha, beta).sample((batch,))
        return self.time_cutoff * (1 - u)

    def sample_noise_level(self, batch: int, device: torch.device) -> torch.Tensor:
        """``(B,)`` noise levels as training draws them: the times of ``sample_time``."""
        return self.sample_time(batch, device)

    def noisy_sample(
        self, action: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training pair of normalised chunks ``action`` at times ``t (B,)`` with noise
        ``eps``: ``(x_t, denoiser time (B,), regression target)``."""
        tt = t[:, None, None]
        noisy = tt * action + (1 - tt) * eps
        target = action if self.prediction_type == "sample" else action - eps
        return noisy, TIME_SCALE * t, target

    def _training_pair(
        self, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.sample_noise_level(action.shape[0], action.device)
        return self.noisy_sample(action, t, torch.randn_like(action))

    def velocity(self, x: torch.Tensor, t: float, cond: torch.Tensor) -> torch.Tensor:
        """``v(x, t, cond)`` at a scalar time ``t`` in ``[0, 1)`` (``[0, 1]`` for velocity
        prediction)."""
        time = torch.full((x.shape[0],), TIME_SCALE * t, device=x.device)
        out = self.denoiser(x, time, cond)
        if self.prediction_type == "velocity":
            return out
        if self.clip_sample is not None:
            out = out.clamp(-self.clip_sample, self.clip_sample)
        return (out - x) / (1.0 - t)

    def _step_mean_std(
        self,
        x: torch.Tensor,
        step: int,
        cond: torch.Tensor,
        num_steps: int,
        solver: str | None = None,
        noise_std: float | None = None,
    ) -> tuple[torch.Tensor, float]:
        solver = self.solver if solver is None else solver
        noise_std = self.noise_std if noise_std is None else noise_std
        _check_solver(solver, noise_std)
        dt = 1.0 / num_steps
        t = step * dt
        v = self.velocity(x, t, cond)
        if solver == "euler" or (solver == "heun" and step == num_steps - 1):
            mean = x + dt * v
        elif solver == "midpoint":
            mean = x + dt * self.velocity(x + 0.5 * dt * v, t + 0.5 * dt, cond)
        else:
            v_end = self.velocity(x + dt * v, t + dt, cond)
            mean = x + 0.5 * dt * (v + v_end)
        return mean, noise_std


def _check_solver(solver: str, noise_std: float) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
