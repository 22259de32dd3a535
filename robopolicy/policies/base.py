"""The interface shared by the diffusion and the flow-matching policy, and the parts they share.

Both policies generate an action chunk ``(B, horizon, Da)`` by a chain of ``num_steps`` steps
that starts from Gaussian noise ``x_0 ~ N(0, I)`` and, conditioned on an encoding of the
observation history, ends at the (normalised) actions. Each step is Gaussian::

    x_{i+1} ~ N(mean_i(x_i, cond), std_i^2 I)       (std_i = 0: a deterministic step)

The subclass defines ``mean_i, std_i`` (``_step_mean_std``) and the training pair
(``_training_pair``); this class does the rest:

* ``compute_loss(batch)``: normalise, encode the observations, regress the denoiser output onto
  the subclass's target: ``loss = mean (denoiser(x_noisy, t, cond) - target) ** 2``.
* ``predict_action(obs, noise, num_steps, **options)``: run the chain, unnormalise, and cut the
  receding-horizon window ``action = action_pred[:, To-1 : To-1+Ta]``.
* ``sample_chain(...)`` and ``step_distribution(...)``: every step's ``(x_i, mean_i, std_i,
  x_{i+1})`` for RL, which scores a step with one function (robopolicy/rl/chain_ppo.py:
  ``step_log_prob``).

Normalisation lives in the policy: ``normalizer`` is a submodule (its statistics are in
``state_dict()``), observations go in and actions come out in raw units, and the chain runs in
normalised action units. ``policy.config`` holds the constructor arguments (all but the
normaliser) as a plain dict, so ``type(policy).from_config(policy.config, normalizer)`` followed
by ``load_state_dict`` rebuilds a checkpoint.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robopolicy.data.shape_meta import validate_shape_meta
from robopolicy.models.mlp import MLPDenoiser
from robopolicy.models.obs_encoder import ObsEncoder
from robopolicy.models.transformer import TransformerDenoiser
from robopolicy.models.unet1d import ConditionalUnet1D

BACKBONES = ("unet1d", "transformer", "mlp")
AUTOCAST_DTYPES = ("none", "bf16")


def make_denoiser(
    backbone: str, action_dim: int, horizon: int, cond_dim: int, backbone_kwargs: dict
) -> nn.Module:
    """Build the named backbone; all share ``(x (B,T,Da), t (B,), cond (B,Dc)) -> (B,T,Da)``."""
    try:
        if backbone == "unet1d":
            return ConditionalUnet1D(action_dim, cond_dim, **backbone_kwargs)
        if backbone == "transformer":
            return TransformerDenoiser(action_dim, horizon, cond_dim, **backbone_kwargs)
        if backbone == "mlp":
            return MLPDenoiser(action_dim, horizon, cond_dim, **backbone_kwargs)
    except TypeError as err:
        raise ValueError(
            f"backbone_kwargs {backbone_kwargs} do not fit {backbone!r}: {err}"
        ) from err
    raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")


def to_plain(value: Any) -> Any:
    """A deep copy with mappings as dicts and sequences as lists (e.g. from OmegaConf nodes)."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [to_plain(v) for v in value]
    return copy.deepcopy(value)


def standard_normal(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``N(0, I)`` on ``device``, drawn on the generator's own device when one is given (a CPU
    generator then gives the same numbers whether the policy runs on CPU or CUDA)."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def inference_autocast(dtype: str | None, device: torch.device) -> AbstractContextManager:
    """``torch.autocast`` to bfloat16 on ``device`` for ``"bf16"``; nothing for None or
    ``"none"`` (robopolicy/config/run.py SamplerOptions.autocast_dtype)."""
    if dtype is None or dtype == "none":
        return nullcontext()
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"autocast_dtype must be one of {AUTOCAST_DTYPES} or None, got {dtype!r}")


@dataclass
class DenoisingStep:
    """One step of the sampling chain, in normalised action units; all tensors ``(B, T, Da)``."""

    x: torch.Tensor  # the step's input x_i
    mean: torch.Tensor  # mean of x_{i+1} given x_i
    std: torch.Tensor  # standard deviation of x_{i+1} given x_i (per element)
    x_next: torch.Tensor  # the sample x_{i+1} = mean + std * z


class BasePolicy(nn.Module, ABC):
    """Observation encoder + denoiser + normaliser, and the shared sampling chain.

    Args:
        shape_meta: ``{"obs": {key: {"shape", "type"}}, "action": {"shape": [Da]}}``.
        normalizer: module with ``normalize(dict) -> dict`` and ``unnormalize(dict) -> dict``;
            observation keys and ``"action"`` are normalised through it.
        horizon: T, the length of the predicted chunk.
        n_obs_steps: To, observation steps the policy sees.
        n_action_steps: Ta, steps executed from each chunk (``horizon >= To + Ta - 1``).
        backbone: ``"unet1d"``, ``"transformer"`` or ``"mlp"``; ``backbone_kwargs`` go to it.
        obs_encoder_kwargs: arguments of ``ObsEncoder`` (crop, keypoints, sharing, ...).
        mask_padding: leave padded action steps (``is_pad``) out of the loss. Off by default,
            as in Diffusion Policy: the sampler pads with the edge action, a valid target that
            teaches the policy to hold still at the end of an episode.
        num_inference_steps: default number of sampling steps (``num_steps`` overrides it).
    """

    def __init__(
        self,
        shape_meta: dict,
        normalizer: nn.Module,
        horizon: int,
        n_obs_steps: int,
        n_action_steps: int,
        backbone: str,
        backbone_kwargs: dict | None,
        obs_encoder_kwargs: dict | None,
        mask_padding: bool,
        num_inference_steps: int,
    ):
        super().__init__()
        if n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {n_obs_steps}")
        if n_action_steps < 1:
            raise ValueError(f"n_action_steps must be >= 1, got {n_action_steps}")
        if horizon < n_obs_steps + n_action_steps - 1:
            raise ValueError(
                f"horizon={horizon} must be >= n_obs_steps + n_action_steps - 1 = "
                f"{n_obs_steps + n_action_steps - 1}"
            )
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        shape_meta = validate_shape_meta(shape_meta)
        action_shape = shape_meta["action"]["shape"]
        if len(action_shape) != 1:
            raise ValueError(f"shape_meta action shape must be [Da], got {action_shape}")
        backbone_kwargs = to_plain(backbone_kwargs or {})
        obs_encoder_kwargs = to_plain(obs_encoder_kwargs or {})
        self.config = to_plain(
            {
                "shape_meta": shape_meta,
                "horizon": horizon,
                "n_obs_steps": n_obs_steps,
                "n_action_steps": n_action_steps,
                "backbone": backbone,
                "backbone_kwargs": backbone_kwargs,
                "obs_encoder_kwargs": obs_encoder_kwargs,
                "mask_padding": mask_padding,
                "num_inference_steps": num_inference_steps,
            }
        )
        self.shape_meta = shape_meta
        self.horizon = horizon
        self.n_obs_steps = n_obs_steps
        self.n_action_steps = n_action_steps
        self.action_dim = action_shape[0]
        self.mask_padding = mask_padding
        self.num_inference_steps = num_inference_steps
        self.normalizer = normalizer
        try:
            self.obs_encoder = ObsEncoder(shape_meta, **obs_encoder_kwargs)
        except TypeError as err:
            raise ValueError(f"obs_encoder_kwargs {obs_encoder_kwargs} are invalid: {err}") from err
        self.cond_dim = self.obs_encoder.step_dim * n_obs_steps
        self.denoiser = make_denoiser(
            backbone, self.action_dim, horizon, self.cond_dim, backbone_kwargs
        )
        if backbone == "unet1d":  # recorded, so that a checkpoint names the network it holds
            self.config["backbone_kwargs"]["layout"] = self.denoiser.layout

    def _keep_settings(self, **settings: Any) -> None:
        """A subclass's own constructor arguments: recorded in ``config`` (what a checkpoint
        rebuilds the policy from) and kept as attributes of the same names."""
        self.config.update(to_plain(settings))
        for name, value in settings.items():
            setattr(self, name, value)

    @classmethod
    def from_config(cls, config: dict, normalizer: nn.Module) -> BasePolicy:
        """A freshly initialised policy with the constructor arguments in ``config``."""
        return cls(normalizer=normalizer, **copy.deepcopy(config))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- normaliser adapter: the only place that knows the normaliser's calling convention ---

    def normalize_obs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(self.normalizer.normalize(obs))

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.normalizer.normalize({"action": action})["action"]

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.normalizer.unnormalize({"action": action})["action"]

    # --- observations -> condition ---

    def encode_obs(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw observations ``{key: (B, To, ...)}`` -> condition ``(B, To * step_dim)``."""
        return self.obs_encoder(self.normalized_obs(obs))

    def normalized_obs(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The encoder's input: raw observations ``{key: (B, To, ...)}``, normalised.

        Tensors move to the policy's device here (uint8 images stay uint8 until then); keys not
        in ``shape_meta`` are ignored.
        """
        device = self.device
        selected = {}
        for key in self.shape_meta["obs"]:
            if key not in obs:
                raise ValueError(f"observation key {key!r} is missing (got {sorted(obs)})")
            value = torch.as_tensor(obs[key]).to(device, non_blocking=True)
            if value.dim() < 2 or value.shape[1] != self.n_obs_steps:
                raise ValueError(
                    f"obs[{key!r}] must be (B, n_obs_steps={self.n_obs_steps}, ...), "
                    f"got {tuple(value.shape)}"
                )
            selected[key] = value
        return self.normalize_obs(selected)

    # --- training ---

    @abstractmethod
    def _training_pair(
        self, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised actions -> ``(noisy input, denoiser time (B,), regression target)``."""

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """``{"loss"}`` (scalar, to backpropagate) and detached logging terms."""
        cond = self.encode_obs(batch["obs"])
        action = self.normalize_action(batch["action"].to(self.device).float())
        noisy, t, target = self._training_pair(action)
        error = (self.denoiser(noisy, t, cond) - target) ** 2  # (B, T, Da)
        logs: dict[str, torch.Tensor] = {"mse": error.mean().detach()}
        if self.mask_padding and "is_pad" in batch:
            valid = (~batch["is_pad"].to(self.device)).float()[:, :, None]  # (B, T, 1)
            loss = (error * valid).sum() / (valid.sum() * self.action_dim).clamp_min(1.0)
            logs["valid_fraction"] = valid.mean().detach()
        else:
            loss = error.mean()
        return {"loss": loss, **logs}

    # --- sampling ---

    @abstractmethod
    def _step_mean_std(
        self, x: torch.Tensor, step: int, cond: torch.Tensor, num_steps: int, **options
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (a tensor or a float) of step ``step`` of ``num_steps`` from ``x``."""

    def step_distribution(
        self,
        x: torch.Tensor,
        step: int,
        cond: torch.Tensor,
        num_steps: int | None = None,
        min_std: float = 0.0,
        **options,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` of ``x_{step+1}`` given ``x_step``, each ``(B, T, Da)``.

        ``cond`` is ``encode_obs(obs)``; call this with gradients on to get the current
        parameters' log-probabilities of a stored chain (DPPO). ``min_std`` clamps the std from
        below (exploration noise on every step, deterministic samplers included).
        """
        num_steps = num_steps or self.num_inference_steps
        if not 0 <= step < num_steps:
            raise ValueError(f"step must be in [0, {num_steps}), got {step}")
        mean, std = self._step_mean_std(x, step, cond, num_steps, **options)
        std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device).expand_as(mean)
        return mean, std.clamp_min(min_std)

    def initial_noise(
        self, batch_size: int, noise: torch.Tensor | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        shape = (batch_size, self.horizon, self.action_dim)
        if noise is None:
            return standard_normal(shape, generator, self.device)
        if tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        return noise.to(self.device, torch.float32)

    @torch.no_grad()
    def sample_chain(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        autocast_dtype: str | None = None,
        **options,
    ) -> list[DenoisingStep]:
        """Run the chain from ``noise`` (drawn if None) and return each of its steps.

        The last step's ``x_next`` is the normalised action chunk. ``options`` are the
        subclass's sampler options and ``min_std``; ``generator`` draws the step noise.
        ``autocast_dtype="bf16"`` runs the encoder and the denoiser under bfloat16 autocast (the
        chain itself stays float32); None or ``"none"``: float32 throughout.
        """
        with inference_autocast(autocast_dtype, self.device):
            cond = self.encode_obs(obs)
        x = self.initial_noise(cond.shape[0], noise, generator)
        num_steps = num_steps or self.num_inference_steps
        steps = []
        for step in range(num_steps):
            with inference_autocast(autocast_dtype, self.device):
                mean, std = self.step_distribution(x, step, cond, num_steps, **options)
            mean, std = mean.float(), std.float()
            if bool((std > 0).any()):
                z = standard_normal(mean.shape, generator, mean.device)
                x_next = mean + std * z
            else:
                x_next = mean
            steps.append(DenoisingStep(x=x, mean=mean, std=std, x_next=x_next))
            x = x_next
        return steps

    @torch.no_grad()
    def predict_action(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        num_steps: int | None = None,
        **options,
    ) -> dict[str, torch.Tensor]:
        """Raw observations ``{key: (B, To, ...)}`` -> raw actions.

        Returns ``{"action": (B, Ta, Da), "action_pred": (B, T, Da)}`` where ``action`` is the
        receding-horizon window ``action_pred[:, To-1 : To-1+Ta]``. ``noise (B, T, Da)`` is the
        initial noise; with a deterministic sampler the same ``(obs, noise)`` always gives the
        same actions.
        """
        chain = self.sample_chain(obs, noise=noise, num_steps=num_steps, **options)
        return self.action_output(chain[-1].x_next)

    def action_output(self, chunk: torch.Tensor) -> dict[str, torch.Tensor]:
        """A normalised chunk ``(B, T, Da)`` -> ``predict_action``'s ``{"action", "action_pred"}``
        in raw units."""
        action_pred = self.unnormalize_action(chunk)
        start = self.n_obs_steps - 1
        return {
            "action": action_pred[:, start : start + self.n_action_steps],
            "action_pred": action_pred,
        }
