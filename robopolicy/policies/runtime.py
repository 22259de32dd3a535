"""Inference runtimes: a policy's whole sampling chain on ONNX Runtime, or in eager torch.

``sampler.runtime`` (robopolicy/config/run.py ``SamplerOptions``) chooses, and ``with_runtime``
applies the choice for every caller (eval's ``policy_act_fn``, deploy's ``policy_predictor``):

* ``eager``: the policy's own ``predict_action``, op by op in torch.
* ``onnx``: one ONNX graph runs the observation encoder and every step of the sampling chain,
  unrolled::

      (normalised obs, one input per shape_meta key; initial noise x_0 (B, T, Da)) -> x_N

  The steps, their times and the schedule's coefficients are constants of the graph; the batch
  axis is dynamic. Normalisation stays in torch around the session (the policy's own
  normaliser), so ``OnnxPolicy.predict_action`` keeps the policy's contract: raw observations
  and an optional initial noise in, raw ``{"action", "action_pred"}`` out.

Only a deterministic chain is unrolled (DDIM with eta = 0, a flow solver with noise_std = 0, a
regression policy): every step's std must be 0, or the export stops with one line.

Export. ``torch.onnx.export(dynamo=False)``: the TorchScript tracer runs the Python chain once and
records the ops it ran, which is the unrolled chain. The torch.export-based exporter (torch's
default since 2.9) stops at the diffusion policy's timestep schedule, a tensor turned into a
Python list (robopolicy/policies/noise_schedules.py), and it would need onnxscript too. The
tracer's warnings about such values are silenced: they are meant to be constants. Right after
export the graph runs beside the eager chain on random observations, and a difference above
``EXPORT_TOLERANCE`` refuses it (a backbone with data-dependent control flow would be
mis-traced).

Cache. ``<cache_dir>/<key>.onnx``, ``key`` the SHA-256 of the weights, the policy's class and
config, the sampler settings and the torch version: a checkpoint evaluated again loads its graph
without exporting. Only the ``CACHE_FILES`` most recently used graphs are kept (each periodic
evaluation during training exports new weights).

Session. ONNX Runtime's CUDA provider when the policy is on a CUDA device and the installed
onnxruntime has it, else the CPU provider, with as many intra-op threads as torch uses
(``torch_threads``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from robopolicy.policies.base import BasePolicy

RUNTIMES = ("eager", "onnx")
OPSET = 17  # ONNX opset of the exported graphs (onnxruntime runs it on every provider)
EXPORT_BATCH = 2  # batch of the example inputs the tracer runs (the batch axis stays dynamic)
EXPORT_TOLERANCE = 1e-3  # largest |onnx - eager| (normalised action units) accepted at export
CACHE_DIR = Path(tempfile.gettempdir()) / "robopolicy-onnx"  # default home of exported graphs
CACHE_FILES = 16  # exported graphs kept in a cache directory, the least recently used go first


def with_runtime(policy: nn.Module, sampler_options: Mapping[str, Any]) -> tuple[Any, dict]:
    """``(predictor, options)`` for ``predictor.predict_action(obs, **options)``.

    runtime=eager (or unset): the policy and its sampler options. runtime=onnx: an
    ``OnnxPolicy`` with the options built into its graph, and no options left. Options set to
    None are dropped (the policy's defaults apply)."""
    options = {key: value for key, value in sampler_options.items() if value is not None}
    runtime = options.pop("runtime", "eager")
    if runtime == "eager":
        return policy, options
    if runtime != "onnx":
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if not isinstance(policy, BasePolicy):
        raise ValueError(
            f"runtime=onnx runs a diffusion, flow or regression policy, got "
            f"{type(policy).__name__}; use runtime=eager"
        )
    return OnnxPolicy(policy, **options), {}


class UnrolledChain(nn.Module):
    """``(normalised obs..., x_0) -> x_N``: the observation encoder, then each step's mean."""

    def __init__(self, policy: BasePolicy, num_steps: int, options: dict):
        super().__init__()
        self.policy = policy
        self.num_steps = num_steps
        self.options = options
        self.keys = list(policy.shape_meta["obs"])

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *obs, x = inputs
        cond = self.policy.obs_encoder(dict(zip(self.keys, obs, strict=True)))
        for step in range(self.num_steps):
            x, _ = self.policy.step_distribution(x, step, cond, self.num_steps, **self.options)
        return x


class OnnxPolicy:
    """``policy``'s deterministic chain on ONNX Runtime, behind ``predict_action``.

    Args:
        policy: a diffusion, flow or regression policy (its weights as they are now).
        num_steps: sampling steps (None: the policy's ``num_inference_steps``).
        cache_dir: where exported graphs are kept (None: ``CACHE_DIR``).
        **options: the sampler's options (``sampler``, ``eta``, ``solver``, ``noise_std``).
    """

    def __init__(
        self,
        policy: BasePolicy,
        num_steps: int | None = None,
        cache_dir: str | Path | None = None,
        **options,
    ):
        self.policy = policy
        self.num_steps = num_steps or policy.num_inference_steps
        self.options = options
        self.shape_meta = policy.shape_meta
        self.horizon = policy.horizon
        self.n_obs_steps = policy.n_obs_steps
        self.n_action_steps = policy.n_action_steps
        self.action_dim = policy.action_dim
        self.device = policy.device
        self.path, self.session = load_chain(
            policy, self.num_steps, options, Path(cache_dir or CACHE_DIR)
        )

    @torch.no_grad()
    def predict_action(
        self,
        obs: dict[str, torch.Tensor],
        noise: torch.Tensor | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        **options,
    ) -> dict[str, torch.Tensor]:
        """``BasePolicy.predict_action``: ``{"action": (B, Ta, Da), "action_pred": (B, T, Da)}``
        from raw observations; ``noise`` (drawn from ``generator`` if None) is ``x_0``."""
        asked = {"num_steps": num_steps or self.num_steps, **self.options, **options}
        built = {"num_steps": self.num_steps, **self.options}
        if asked != built:
            raise ValueError(f"this ONNX graph was exported for {built}, got {asked}")
        obs = self.policy.normalized_obs(obs)
        batch = next(iter(obs.values())).shape[0]
        x = self.policy.initial_noise(batch, noise, generator)
        feeds = {key: _as_input(value) for key, value in obs.items()}
        (chunk,) = self.session.run(None, {**feeds, "noise": _as_input(x)})
        return self.policy.action_output(torch.from_numpy(chunk).to(self.device))


def load_chain(
    policy: BasePolicy, num_steps: int, options: dict, cache_dir: Path
) -> tuple[Path, ort.InferenceSession]:
    """``(path, session)`` of the ONNX graph of ``UnrolledChain(policy, num_steps, options)``:
    the cached one, or exported now (and checked against the eager chain) into ``cache_dir``."""
    path = cache_dir / f"{cache_key(policy, num_steps, options)}.onnx"
    if path.is_file():
        path.touch()  # most recently used
        return path, make_session(path, policy.device)
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = cache_dir / f"{path.stem}.{os.getpid()}.part"  # renamed into place once checked
    try:
        inputs, expected = export_chain(policy, num_steps, options, scratch)
        session = make_session(scratch, policy.device)
        (exported,) = session.run(None, {key: _as_input(value) for key, value in inputs.items()})
        error = float(np.abs(exported - expected).max())
        if not error <= EXPORT_TOLERANCE:
            raise ValueError(
                f"the exported ONNX graph differs from the eager chain by {error:.3g} (more "
                f"than {EXPORT_TOLERANCE:g}): this policy does not trace; use runtime=eager"
            )
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
    _prune(cache_dir)
    return path, session


def export_chain(
    policy: BasePolicy, num_steps: int, options: dict, path: Path
) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """Export the chain (in eval mode) to ``path``; return the example inputs it was traced on
    and the eager chain's output for them. A stochastic chain is refused first."""
    was_training = policy.training
    policy.eval()
    try:
        obs = example_obs(policy, EXPORT_BATCH)
        noise = policy.initial_noise(EXPORT_BATCH, None, torch.Generator().manual_seed(1))
        chain = policy.sample_chain(obs, noise=noise, num_steps=num_steps, **options)
        std = max(float(step.std.max()) for step in chain)
        if std > 0:
            raise ValueError(
                f"runtime=onnx unrolls a deterministic sampler only (DDIM with eta=0, flow with "
                f"noise_std=0); sampler options {options} give steps of std up to {std:.3g}: "
                "use runtime=eager"
            )
        inputs = {key: value.cpu() for key, value in policy.normalized_obs(obs).items()}
        inputs["noise"] = noise.cpu()
        _trace_to_onnx(UnrolledChain(policy, num_steps, options), inputs, path)
    finally:
        policy.train(was_training)
    return inputs, chain[-1].x_next.cpu().numpy()


def _trace_to_onnx(chain: UnrolledChain, inputs: dict[str, torch.Tensor], path: Path) -> None:
    """Trace ``chain`` on ``inputs`` (on the CPU) into ``path``, batch axis dynamic."""
    device = chain.policy.device
    chain.to("cpu")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # of the TorchScript exporter
            torch.onnx.export(
                chain,
                tuple(inputs.values()),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=list(inputs),
                output_names=["chunk"],
                dynamic_axes={name: {0: "batch"} for name in [*inputs, "chunk"]},
            )
    finally:
        chain.to(device)


def cache_key(policy: BasePolicy, num_steps: int, options: dict) -> str:
    """SHA-256 of everything the exported graph depends on."""
    digest = hashlib.sha256()
    header = {
        "class": type(policy).__qualname__,
        "config": policy.config,
        "num_steps": num_steps,
        "options": options,
        "torch": torch.__version__,
        "opset": OPSET,
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in policy.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def example_obs(policy: BasePolicy, batch: int) -> dict[str, torch.Tensor]:
    """Random raw observations of every shape_meta key: uint8 rgb, float32 others."""
    generator = torch.Generator().manual_seed(0)
    obs = {}
    for key, spec in policy.shape_meta["obs"].items():
        shape = (batch, policy.n_obs_steps, *spec["shape"])
        if spec["type"] == "rgb":
            obs[key] = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
        else:
            obs[key] = torch.rand(shape, generator=generator) * 2 - 1
    return obs


def make_session(path: Path, device: torch.device) -> ort.InferenceSession:
    """An ONNX Runtime session on ``device``'s provider, with torch's number of threads."""
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = torch.get_num_threads()
    settings.inter_op_num_threads = 1
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    return ort.InferenceSession(str(path), settings, providers=providers)


def _as_input(value: torch.Tensor) -> np.ndarray:
    """A session input: floating point as float32 (the encoder's own cast), integers as they are."""
    value = value.detach()
    return (value.float() if value.is_floating_point() else value).cpu().numpy()


def _prune(cache_dir: Path) -> None:
    """Remove all but the ``CACHE_FILES`` most recently used graphs."""
    graphs = sorted(cache_dir.glob("*.onnx"), key=lambda graph: graph.stat().st_mtime)
    for graph in graphs[:-CACHE_FILES]:
        graph.unlink(missing_ok=True)
