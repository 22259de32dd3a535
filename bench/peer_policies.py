"""The policies bench_peers.py compares, built at one architecture: robopolicy's, LeRobot's and
(optionally) diffusion_policy's, each through its own public classes.

Shared settings: horizon 16, 2 observation steps, 8 executed actions, action dim 7; UNet down dims
64-128-256, kernel 5, 8 GroupNorm groups, FiLM scale and bias, diffusion step embedding 128;
epsilon prediction, 100 training steps, squaredcos_cap_v2 betas, samples clipped to [-1, 1].
Observations: a 9-float robot state and a 14-float environment (object) state (23 floats; LeRobot
takes them as ``observation.state`` and ``observation.environment_state``), and for the image
policies two 96x96 RGB cameras, each through its own ResNet-18 (GroupNorm, 84x84 centre crop in
eval, spatial softmax with 32 keypoints, a 64-wide projection).

Only this module imports lerobot, torchvision or diffusion_policy; it runs in .venv-peers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch

from robopolicy.config.algos import BCConfig
from robopolicy.config.policy import DiffusionArgs, UNet1DKwargs
from robopolicy.config.run import DataConfig, SamplerOptions
from robopolicy.data.normalizer import Normalizer
from robopolicy.policies.registry import build_policy

HORIZON, N_OBS, N_ACTION, ACTION_DIM = 16, 2, 8, 7
ROBOT_STATE, ENV_STATE = 9, 14
CAMERAS = ("scene", "wrist")
IMAGE, CROP = 96, 84
DOWN_DIMS, KERNEL, GROUPS, STEP_EMBED = (64, 128, 256), 5, 8, 128
TRAIN_STEPS = 100
# BCConfig.optimizer_impl -> AdamW arguments, as robopolicy/algos/bc.py maps them
OPTIMIZER_IMPLS = {
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "for_loop": {"foreach": False},
}

_fragment: torch.library.Library | None = None


def declare_torchvision_ops() -> None:
    """Let the CUDA-linked torchvision wheel import on the CPU torch (docs/dependencies.md).

    Its compiled ops do not load, and its Python side then fails registering fake kernels for
    two operators; declaring their schemas first lets ``import torchvision`` succeed. Nothing here
    calls them (LeRobot's encoder uses torchvision's models and crops, which are plain torch).
    """
    global _fragment
    if _fragment is not None or "torchvision" in sys.modules:
        return
    _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        _fragment.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def ours_options() -> dict:
    """The other engineers' options, where the code this bench runs has them (the peers'
    settings: the Diffusion Policy UNet layout, DDIM's "leading" timestep spacing)."""
    options = {}
    if "layout" in field_names(UNet1DKwargs):
        options["layout"] = "diffusion_policy"
    if "timestep_spacing" in field_names(DiffusionArgs):
        options["timestep_spacing"] = "leading"
    return options


def picked_up() -> dict:
    """Every option of the other branches this bench uses where present: the model's (above),
    the training step's AdamW implementation, the sampler's decoded image cache (train.py's
    defaults), and as extra rows the ONNX runtime and bfloat16 autocast."""
    options = ours_options()
    defaults = {"optimizer_impl": BCConfig(), "decoded_cache_mb": DataConfig()}
    for name, config in defaults.items():
        if name in field_names(type(config)):
            options[name] = getattr(config, name)
    if has_sampler_option("runtime"):
        options["runtime"] = "onnx (extra rows)"
    if has_sampler_option("autocast_dtype"):
        options["autocast_dtype"] = "bf16 (extra rows)"
    return options


def has_sampler_option(name: str) -> bool:
    return name in field_names(SamplerOptions)


def shape_meta(images: bool) -> dict:
    obs = {
        "robot_state": {"shape": [ROBOT_STATE], "type": "low_dim"},
        "env_state": {"shape": [ENV_STATE], "type": "low_dim"},
    }
    if images:
        for camera in CAMERAS:
            obs[camera] = {"shape": [IMAGE, IMAGE, 3], "type": "rgb"}
    return {"obs": obs, "action": {"shape": [ACTION_DIM]}}


def ours_policy(images: bool) -> torch.nn.Module:
    """robopolicy's DiffusionPolicy, built as train.py builds it (build_policy with the args)."""
    meta = shape_meta(images)
    rng = np.random.default_rng(0)
    normalizer = Normalizer.from_shape_meta(meta).fit(
        {"robot_state": rng.normal(size=(100, ROBOT_STATE))}
        | {"env_state": rng.normal(size=(100, ENV_STATE))}
        | {"action": rng.uniform(-1, 1, (100, ACTION_DIM))}
    )
    options = ours_options()
    backbone_kwargs = {
        "down_dims": list(DOWN_DIMS),
        "kernel_size": KERNEL,
        "n_groups": GROUPS,
        "time_embed_dim": STEP_EMBED,
    }
    if "layout" in options:
        backbone_kwargs["layout"] = options["layout"]
    args = {
        "horizon": HORIZON,
        "n_obs_steps": N_OBS,
        "n_action_steps": N_ACTION,
        "backbone": "unet1d",
        "backbone_kwargs": backbone_kwargs,
        "num_train_timesteps": TRAIN_STEPS,
        "prediction_type": "epsilon",
        "clip_sample": 1.0,
    }
    if "timestep_spacing" in options:
        args["timestep_spacing"] = options["timestep_spacing"]
    if images:
        args["obs_encoder_kwargs"] = {
            "crop_shape": [CROP, CROP],
            "image_feature_dim": 64,
            "num_keypoints": 32,
        }
    return build_policy("diffusion", meta, normalizer, args)


def onnx_predictor(policy: torch.nn.Module, options: dict) -> tuple | None:
    """``(predictor, options)`` running ``policy`` with ``runtime="onnx"`` where the code has
    that runtime (SamplerOptions.runtime and robopolicy.policies.runtime), else None."""
    if not has_sampler_option("runtime"):
        return None
    from robopolicy.policies.runtime import with_runtime

    return with_runtime(policy.eval(), options | {"runtime": "onnx"})


def ours_optimizer(policy: torch.nn.Module) -> tuple[torch.optim.Optimizer, float]:
    """train.py's AdamW at its defaults (BCConfig) and its gradient clip; the update
    implementation of BCConfig.optimizer_impl where the code has it (its meaning, as in
    robopolicy/algos/bc.py, which needs gymnasium >= 1 and so does not import here)."""
    bc = BCConfig()
    kwargs = OPTIMIZER_IMPLS.get(getattr(bc, "optimizer_impl", None), {})
    optimizer = torch.optim.AdamW(
        policy.parameters(),
        lr=bc.lr,
        betas=tuple(bc.betas),
        weight_decay=bc.weight_decay,
        **kwargs,
    )
    return optimizer, bc.grad_clip


def lerobot_optimizer(policy: torch.nn.Module) -> tuple[torch.optim.Optimizer, float]:
    """LeRobot's preset for its diffusion policy (Adam, lr 1e-4, its gradient clip)."""
    preset = policy.config.get_optimizer_preset()
    return preset.build(policy.get_optim_params()), preset.grad_clip_norm


def lerobot_policy(images: bool, scheduler: str) -> torch.nn.Module:
    """LeRobot's DiffusionPolicy at the same settings (``scheduler``: "DDPM" or "DDIM")."""
    declare_torchvision_ops()
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    inputs = {
        "observation.state": PolicyFeature(FeatureType.STATE, (ROBOT_STATE,)),
        "observation.environment_state": PolicyFeature(FeatureType.ENV, (ENV_STATE,)),
    }
    if images:
        for camera in CAMERAS:
            inputs[f"observation.images.{camera}"] = PolicyFeature(
                FeatureType.VISUAL, (3, IMAGE, IMAGE)
            )
    config = DiffusionConfig(
        n_obs_steps=N_OBS,
        horizon=HORIZON,
        n_action_steps=N_ACTION,
        input_features=inputs,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        normalization_mapping={  # ENV too, as ours normalizes every low-dim key
            "VISUAL": NormalizationMode.MEAN_STD,
            "STATE": NormalizationMode.MIN_MAX,
            "ENV": NormalizationMode.MIN_MAX,
            "ACTION": NormalizationMode.MIN_MAX,
        },
        crop_shape=(CROP, CROP),
        use_separate_rgb_encoder_per_camera=True,
        down_dims=DOWN_DIMS,
        kernel_size=KERNEL,
        n_groups=GROUPS,
        diffusion_step_embed_dim=STEP_EMBED,
        use_film_scale_modulation=True,
        noise_scheduler_type=scheduler,
        num_train_timesteps=TRAIN_STEPS,
        num_inference_steps=10 if scheduler == "DDIM" else TRAIN_STEPS,
        prediction_type="epsilon",
        clip_sample=True,
        device="cpu",
    )
    stats = {
        "observation.state": _stats((ROBOT_STATE,), 0.0, 1.0),
        "observation.environment_state": _stats((ENV_STATE,), 0.0, 1.0),
        "action": _stats((ACTION_DIM,), 0.0, 1.0),
    }
    for key in inputs:
        if key.startswith("observation.images."):
            stats[key] = _stats((3, 1, 1), 0.5, 0.25)
    return DiffusionPolicy(config, dataset_stats=stats)


def _stats(shape: tuple[int, ...], mean: float, std: float) -> dict[str, torch.Tensor]:
    """All four statistics (LeRobot tells numpy from torch stats by the "mean" entry)."""
    full = torch.full(shape, 1.0)
    return {"mean": mean * full, "std": std * full, "min": -full, "max": full}


def diffusion_policy_source() -> Path | None:
    """A real-stanford/diffusion_policy checkout named by DIFFUSION_POLICY_SRC, else None."""
    source = os.environ.get("DIFFUSION_POLICY_SRC")
    if not source:
        return None
    path = Path(source).resolve()
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    if importlib.util.find_spec("diffusion_policy.model.diffusion.conditional_unet1d") is None:
        raise SystemExit(f"DIFFUSION_POLICY_SRC={source}: no diffusion_policy package there")
    return path


class DiffusionPolicyUnet(torch.nn.Module):
    """diffusion_policy's ConditionalUnet1D with a diffusers scheduler: its sampling loop and
    its training loss on a flattened low-dim condition (diffusion_policy's low-dim policy has no
    observation encoder; its normalizer is left out, a few elementwise operations)."""

    def __init__(self, scheduler: str):
        super().__init__()
        from diffusers import DDIMScheduler, DDPMScheduler
        from diffusion_policy.model.diffusion.conditional_unet1d import ConditionalUnet1D

        self.unet = ConditionalUnet1D(
            input_dim=ACTION_DIM,
            global_cond_dim=(ROBOT_STATE + ENV_STATE) * N_OBS,
            diffusion_step_embed_dim=STEP_EMBED,
            down_dims=list(DOWN_DIMS),
            kernel_size=KERNEL,
            n_groups=GROUPS,
            cond_predict_scale=True,
        )
        kind = DDIMScheduler if scheduler == "DDIM" else DDPMScheduler
        self.scheduler = kind(
            num_train_timesteps=TRAIN_STEPS,
            beta_schedule="squaredcos_cap_v2",
            clip_sample=True,
            prediction_type="epsilon",
        )
        self.num_steps = 10 if scheduler == "DDIM" else TRAIN_STEPS

    def predict_action(self, state: torch.Tensor) -> torch.Tensor:
        """``state (B, To, 23)`` -> the executed actions ``(B, Ta, Da)``."""
        cond = state.flatten(1)
        sample = torch.randn(state.shape[0], HORIZON, ACTION_DIM)
        self.scheduler.set_timesteps(self.num_steps)
        for t in self.scheduler.timesteps:
            out = self.unet(sample, t, global_cond=cond)
            sample = self.scheduler.step(out, t, sample).prev_sample
        return sample[:, N_OBS - 1 : N_OBS - 1 + N_ACTION]

    def optimizer(self) -> tuple[torch.optim.Optimizer, None]:
        """diffusion_policy's training config: AdamW, lr 1e-4, betas (0.95, 0.999), weight
        decay 1e-6, no gradient clip."""
        return torch.optim.AdamW(
            self.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6
        ), None

    def compute_loss(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(action)
        steps = torch.randint(0, TRAIN_STEPS, (action.shape[0],)).long()
        noisy = self.scheduler.add_noise(action, noise, steps)
        pred = self.unet(noisy, steps, global_cond=state.flatten(1))
        return torch.nn.functional.mse_loss(pred, noise)


def parameter_counts(model: torch.nn.Module, encoder_prefixes: tuple[str, ...]) -> dict:
    """Total parameters, and those under modules whose names start with ``encoder_prefixes``."""
    total = sum(p.numel() for p in model.parameters())
    encoder = sum(
        p.numel() for name, p in model.named_parameters() if name.startswith(encoder_prefixes)
    )
    return {"total": total, "image_encoder": encoder, "rest": total - encoder}
