"""A frozen diffusion or flow policy steered by a learned noise actor: what DSRL produces.

DSRL (Wagenmaker et al. 2025) never changes the pretrained policy. It learns a small actor
``pi_W(w | s)`` over the *initial noise* ``w`` of the sampling chain, and acts with

    s = base.encode_obs(obs)                 (the base's own normalised observation encoding)
    w = b tanh(mu(s))                        (the actor's deterministic noise, in [-b, b])
    action = base.predict_action(obs, noise=w, deterministic sampler)

The actor steers the first ``latent_steps`` rows of the ``(horizon, action_dim)`` noise (all of
them by default); the remaining rows are held at zero, the mode of the base's noise. Steering
only the rows up to the end of the executed window (``n_obs_steps - 1 + n_action_steps``) leaves
the learner a smaller space (35 instead of 112 numbers for PushCube's 16 x 7 chunk) that still
reaches every executed action, since the denoiser mixes all rows.

The sampler must be deterministic (DDIM with eta = 0, or the flow ODE with no step noise), so
that the noise alone decides the action chunk; ``sampler_options`` fixes it, and the number of
steps and the solver, at the values the actor was trained with. Any other sampler would map the
learned noise to different actions, so ``predict_action`` refuses options that differ.

``SteeredPolicy`` looks like a ``BasePolicy`` to the evaluation and deployment code
(``shape_meta``, ``n_obs_steps``, ``n_action_steps``, ``horizon``, ``device``, ``normalizer``,
``config``, ``predict_action``) and is registered as the policy kind ``"steered"``: its checkpoint
record holds the base's kind and constructor arguments, the actor's, the sampler options and all
weights (base and actor), and loads with ``load_policy`` like any other.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robopolicy.models.squashed_gaussian import SquashedGaussianActor
from robopolicy.policies.base import BasePolicy
from robopolicy.policies.diffusion import DiffusionPolicy
from robopolicy.policies.flow import FlowPolicy


def deterministic_sampler_options(base: BasePolicy, requested: dict | None = None) -> dict:
    """The complete, deterministic sampler settings for ``base``: DDIM with eta 0 for a
    diffusion policy, no step noise for a flow policy; ``num_steps`` (and a flow's ``solver``)
    from ``requested`` where given, else the policy's defaults."""
    requested = {k: v for k, v in (requested or {}).items() if v is not None}
    num_steps = int(requested.get("num_steps", base.num_inference_steps))
    if isinstance(base, DiffusionPolicy):
        if requested.get("sampler", "ddim") != "ddim" or requested.get("eta", 0.0) != 0.0:
            raise ValueError(
                f"DSRL needs a deterministic sampler; the diffusion sampler settings {requested} "
                "are stochastic (use sampler=ddim, eta=0)"
            )
        return {"num_steps": num_steps, "sampler": "ddim", "eta": 0.0}
    if isinstance(base, FlowPolicy):
        if requested.get("noise_std", 0.0) != 0.0:
            raise ValueError(
                f"DSRL needs a deterministic sampler; noise_std={requested['noise_std']} is not "
                "(use noise_std=0)"
            )
        solver = requested.get("solver", base.solver)
        return {"num_steps": num_steps, "solver": solver, "noise_std": 0.0}
    raise ValueError(
        f"DSRL steers the initial noise of a diffusion or flow policy; a "
        f"{type(base).__name__} has none to steer"
    )


class SteeredPolicy(nn.Module):
    """``base`` (frozen, always in eval mode) + ``actor`` over its initial noise.

    Args:
        base: the pretrained diffusion or flow policy.
        actor: maps ``base.encode_obs(obs)`` ``(B, cond_dim)`` to a flattened noise
            ``(B, latent_steps * action_dim)`` in ``[-bound, bound]``.
        base_kind: the base's registered kind (``"diffusion"``, ``"flow"``, ...).
        sampler_options: complete deterministic settings (``deterministic_sampler_options``).
        latent_steps: leading rows of the noise the actor steers (None: all ``horizon``).
    """

    def __init__(
        self,
        base: BasePolicy,
        actor: SquashedGaussianActor,
        base_kind: str,
        sampler_options: dict[str, Any],
        latent_steps: int | None = None,
    ):
        super().__init__()
        latent_steps = base.horizon if latent_steps is None else int(latent_steps)
        if not 1 <= latent_steps <= base.horizon:
            raise ValueError(
                f"latent_steps must be in [1, horizon={base.horizon}], got {latent_steps}"
            )
        if sampler_options != deterministic_sampler_options(base, sampler_options):
            raise ValueError(
                f"sampler_options {sampler_options} are not complete deterministic settings "
                f"for a {type(base).__name__}"
            )
        latent_dim = latent_steps * base.action_dim
        if actor.action_dim != latent_dim or actor.config["obs_dim"] != base.cond_dim:
            raise ValueError(
                f"the noise actor maps {actor.config['obs_dim']} -> {actor.action_dim} values; the "
                f"base policy needs cond_dim {base.cond_dim} -> latent_steps * action_dim "
                f"{latent_dim}"
            )
        self.base = base.requires_grad_(False).eval()
        self.actor = actor
        self.base_kind = base_kind
        self.sampler_options = dict(sampler_options)
        self.config = {
            "base_kind": base_kind,
            "base_config": base.config,
            "actor": actor.config,
            "sampler_options": self.sampler_options,
            "latent_steps": latent_steps,
        }
        self.shape_meta = base.shape_meta
        self.horizon = base.horizon
        self.n_obs_steps = base.n_obs_steps
        self.n_action_steps = base.n_action_steps
        self.action_dim = base.action_dim
        self.latent_steps = latent_steps
        self.latent_dim = latent_dim

    @classmethod
    def from_config(cls, config: dict, base: BasePolicy) -> SteeredPolicy:
        """A steered policy over ``base`` with a freshly initialised actor, for
        ``load_state_dict``. The registry rebuilds ``base`` from ``config["base_kind"]`` and
        ``config["base_config"]`` (robopolicy/policies/registry.py: ``policy_from_record``)."""
        actor = SquashedGaussianActor(**config["actor"])
        return cls(
            base, actor, config["base_kind"], config["sampler_options"], config["latent_steps"]
        )

    @property
    def normalizer(self) -> nn.Module:
        return self.base.normalizer

    @property
    def device(self) -> torch.device:
        return self.base.device

    def train(self, mode: bool = True) -> SteeredPolicy:
        """Only the actor switches mode; the frozen base stays in eval mode (e.g. its image
        encoder keeps centre-cropping)."""
        super().train(mode)
        self.base.eval()
        return self

    @torch.no_grad()
    def encode_obs(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The actor's input: the base's encoding of the raw observation histories."""
        return self.base.encode_obs(obs)

    def initial_noise(self, latent: torch.Tensor) -> torch.Tensor:
        """``latent (B, latent_dim)`` -> the base's initial noise ``(B, horizon, action_dim)``:
        the steered leading rows, zeros after them."""
        noise = latent.new_zeros(latent.shape[0], self.horizon, self.action_dim)
        noise[:, : self.latent_steps] = latent.reshape(-1, self.latent_steps, self.action_dim)
        return noise

    @torch.no_grad()
    def decode(self, obs: dict[str, torch.Tensor], latent: torch.Tensor) -> dict[str, torch.Tensor]:
        """The base's actions for ``latent (B, latent_dim)``."""
        return self.base.predict_action(
            obs, noise=self.initial_noise(latent), **self.sampler_options
        )

    @torch.no_grad()
    def decode_normalized(self, cond: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The executed chunk for ``latent`` from an encoded observation, in normalised action
        units and flattened ``(B, n_action_steps * action_dim)``: the same chain as ``decode``
        (every step's mean, the sampler being deterministic), without unnormalising."""
        options = dict(self.sampler_options)
        num_steps = options.pop("num_steps")
        x = self.initial_noise(latent)
        for step in range(num_steps):
            x, _ = self.base.step_distribution(x, step, cond, num_steps, **options)
        start = self.n_obs_steps - 1
        return x[:, start : start + self.n_action_steps].flatten(1)

    @torch.no_grad()
    def noise_action_spread(
        self, cond: torch.Tensor, n_samples: int = 64, generator: torch.Generator | None = None
    ) -> float:
        """How far the noise can move the executed actions, what DSRL has to steer: for each
        encoded observation in ``cond (B, cond_dim)``, the standard deviation over ``n_samples``
        noises (a standard normal clipped to the actor's bound) of the executed chunk in
        normalised action units, averaged over its entries and the observations. Near zero the
        base acts alike whatever its noise (e.g. one cloned from deterministic scripted demos)."""
        batch = cond.shape[0]
        bound = self.actor.bound
        latent = torch.randn(batch * n_samples, self.latent_dim, generator=generator)
        latent = latent.clamp(-bound, bound).to(cond.device)
        actions = self.decode_normalized(cond.repeat_interleave(n_samples, dim=0), latent)
        return actions.reshape(batch, n_samples, -1).std(dim=1).mean().item()

    @torch.no_grad()
    def predict_action(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        num_steps: int | None = None,
        **options,
    ) -> dict[str, torch.Tensor]:
        """The base's actions for the actor's deterministic noise ``b tanh(mu(s))``.

        ``noise`` must be None (the actor chooses it); sampler options, where given, must be
        the ones the actor was trained with."""
        if noise is not None:
            raise ValueError("a steered policy chooses its own noise; call it with noise=None")
        given = {"num_steps": num_steps, **options}
        for key, value in given.items():
            if value is not None and self.sampler_options.get(key) != value:
                raise ValueError(
                    f"sampler option {key}={value!r} differs from the steered policy's "
                    f"{self.sampler_options} (its noise actor is valid only for those)"
                )
        latent = self.actor.mean_action(self.encode_obs(obs))
        return self.decode(obs, latent)
