"""Vector environments built from config, and the bridge from a policy to ``run_episodes``.

robopolicy never imports the simulation package: an env is named by its gymnasium id, and the
modules that register ids (``env_modules``, e.g. ``["sim"]``) are imported by name inside each
worker process. Worker processes are started with ``spawn``, which is safe with torch's thread
pools and with EGL rendering contexts (each worker creates its own).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from robopolicy.eval.rollout import ActFn
from robopolicy.policies.base import BasePolicy
from robopolicy.policies.runtime import with_runtime
from robopolicy.utils.quiet import inheriting


def make_env(
    env_id: str,
    env_kwargs: dict,
    env_modules: Sequence[str] = (),
    render: bool = False,
    max_episode_steps: int | None = None,
    wrapper: Callable[[gym.Env], gym.Env] | None = None,
) -> gym.Env:
    """One env: import the registering modules, then ``gym.make`` (errors name the bad kwarg),
    then ``wrapper`` (a picklable callable, e.g. a ``functools.partial`` of a wrapper class)."""
    for module in env_modules:
        importlib.import_module(module)
    kwargs = dict(env_kwargs)
    if render:
        kwargs["render_mode"] = "rgb_array"
    if env_id not in gym.registry:
        raise ValueError(
            f"env id {env_id!r} is not registered (imported {list(env_modules)}); "
            f"known robopolicy ids: {sorted(i for i in gym.registry if '/' in i)}"
        )
    try:
        env = gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    except TypeError as error:
        raise ValueError(f"env {env_id!r} rejected env_kwargs {kwargs}: {error}") from None
    return wrapper(env) if wrapper is not None else env


def make_vector_env(
    env_id: str,
    env_kwargs: dict,
    n_envs: int,
    env_modules: Sequence[str] = (),
    render: bool = False,
    asynchronous: bool | None = None,
    max_episode_steps: int | None = None,
    wrapper: Callable[[gym.Env], gym.Env] | None = None,
    autoreset_mode: gym.vector.AutoresetMode = gym.vector.AutoresetMode.NEXT_STEP,
) -> gym.vector.VectorEnv:
    """``n_envs`` copies of the env; in worker processes when ``asynchronous`` (default: n > 1).

    ``wrapper`` wraps each env inside its worker; ``autoreset_mode`` is gymnasium's (evaluation
    ignores the steps after an episode ends, so it does not care; RL wants ``SAME_STEP``)."""
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    make = inheriting(  # a worker process applies its program's verbosity, then makes its env
        make_env, env_id, dict(env_kwargs), tuple(env_modules), render, max_episode_steps, wrapper
    )
    make().close()  # fail here, with one clear error, rather than inside a worker
    if asynchronous is None:
        asynchronous = n_envs > 1
    if asynchronous:
        return gym.vector.AsyncVectorEnv(
            [make] * n_envs, context="spawn", autoreset_mode=autoreset_mode
        )
    return gym.vector.SyncVectorEnv([make] * n_envs, autoreset_mode=autoreset_mode)


def check_policy_fits_env(
    shape_meta: dict, observation_space: gym.spaces.Dict, action_space: gym.spaces.Box
) -> None:
    """One clear error if the env does not provide what the policy was trained on."""
    for key, spec in shape_meta["obs"].items():
        if key not in observation_space.spaces:
            raise ValueError(
                f"the policy needs observation {key!r}, which the env does not provide (it has "
                f"{sorted(observation_space.spaces)}); e.g. images need obs_mode=rgb"
            )
        shape = list(observation_space.spaces[key].shape)
        if shape != list(spec["shape"]):
            raise ValueError(
                f"observation {key!r}: the policy was trained on shape {spec['shape']}, the env "
                f"gives {shape} (check image_size / robot)"
            )
    if list(action_space.shape) != list(shape_meta["action"]["shape"]):
        raise ValueError(
            f"action: the policy outputs shape {shape_meta['action']['shape']}, the env expects "
            f"{list(action_space.shape)} (check action_space / robot)"
        )


def policy_act_fn(policy: torch.nn.Module, **sampler_options) -> ActFn:
    """``run_episodes``'s ``act``: numpy histories in, the policy's action chunk out (numpy).

    ``sampler_options`` set to None are dropped (the policy's defaults apply). Given
    ``episode_seeds``, the sampling noise is drawn from them rather than from torch's global RNG:
    each env's initial noise comes from its own episode seed and ``chunk_index`` (the chunk's
    index within the episode, so with a deterministic sampler an episode does not depend on which
    others share its batch), and a stochastic sampler's step noise from the batch's seeds.
    Re-running the same checkpoint on the same seeds then gives the same episodes. Without seeds
    (deployment, DAgger's step-wise actor) the global RNG is used. ``runtime=onnx`` runs the
    chain on onnxruntime (robopolicy/policies/runtime.py), from the same noise."""
    draws_own_noise = isinstance(policy, BasePolicy)  # a steered policy's actor picks its noise
    policy, sampler_options = with_runtime(policy, sampler_options)
    keys = list(policy.shape_meta["obs"])
    device = policy.device

    @torch.no_grad()
    def act(
        obs: dict[str, np.ndarray], episode_seeds: np.ndarray | None = None, chunk_index: int = 0
    ) -> np.ndarray:
        batch = {key: torch.from_numpy(np.ascontiguousarray(obs[key])).to(device) for key in keys}
        options = dict(sampler_options)
        if episode_seeds is not None and draws_own_noise:
            seeds = [int(s) for s in episode_seeds]
            options["noise"] = _seeded_noise(policy, seeds, chunk_index)
            options["generator"] = torch.Generator().manual_seed(
                _stream_seed([*seeds, chunk_index])
            )
        return policy.predict_action(batch, **options)["action"].float().cpu().numpy()

    return act


def _seeded_noise(policy: BasePolicy, seeds: Sequence[int], chunk_index: int) -> torch.Tensor:
    """``(n_envs, horizon, action_dim)`` initial noise, env ``j``'s from ``seeds[j]`` alone."""
    shape = (policy.horizon, policy.action_dim)
    generators = [torch.Generator().manual_seed(_stream_seed([s, chunk_index])) for s in seeds]
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(policy.device)


def _stream_seed(values: Sequence[int]) -> int:
    """A 63-bit torch generator seed from a list of integers, hashed by numpy's SeedSequence so
    that different lists (e.g. episode seed and chunk index) give unrelated noise streams."""
    state = np.random.SeedSequence(list(values)).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))
