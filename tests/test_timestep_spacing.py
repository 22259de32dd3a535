"""DDIM timestep spacing: the three closed forms, and the diffusion policy, its DPPO fine-tuned
chain and its DSRL steered policy sampling with each."""

import numpy as np
import pytest
import torch

from robopolicy.data.normalizer import Normalizer
from robopolicy.models.squashed_gaussian import SquashedGaussianActor
from robopolicy.policies import DiffusionPolicy
from robopolicy.policies.finetuned_diffusion import FinetunedDiffusionPolicy
from robopolicy.policies.noise_schedules import TIMESTEP_SPACINGS, inference_timesteps
from robopolicy.policies.steered import SteeredPolicy, deterministic_sampler_options

torch.set_num_threads(1)

SHAPE_META = {"obs": {"state": {"shape": [4], "type": "low_dim"}}, "action": {"shape": [2]}}

CASES = [(100, 10), (100, 3), (100, 7), (50, 8), (1000, 16), (16, 16), (10, 1)]


def diffusers_form(spacing: str, k: int, s: int) -> list[int]:
    """diffusers' DDIMScheduler.set_timesteps with steps_offset = 0, written with NumPy; for one
    linspace step ours starts at K-1 (pure noise at the noisiest level), diffusers' at 0."""
    if spacing == "linspace" and s == 1:
        return [k - 1]
    if spacing == "linspace":
        return np.linspace(0, k - 1, s).round()[::-1].astype(np.int64).tolist()
    if spacing == "leading":
        return (np.arange(0, s) * (k // s)).round()[::-1].astype(np.int64).tolist()
    ratio = k / s
    return (np.round(np.arange(s) * -ratio + k) - 1).astype(np.int64).tolist()


@pytest.mark.parametrize(("k", "s"), CASES)
@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_spacings_match_their_closed_forms(spacing, k, s):
    steps = inference_timesteps(k, s, spacing)
    assert steps == diffusers_form(spacing, k, s)
    assert len(steps) == s and all(a > b for a, b in zip(steps, steps[1:], strict=False))
    assert steps[-1] >= 0 and steps[0] <= k - 1


def test_spacings_worked_examples():
    assert inference_timesteps(100, 10, "leading") == list(range(90, -1, -10))
    assert inference_timesteps(100, 10, "trailing") == list(range(99, 0, -10))
    assert inference_timesteps(100, 10, "linspace") == [99, 88, 77, 66, 55, 44, 33, 22, 11, 0]
    for spacing in TIMESTEP_SPACINGS:
        assert inference_timesteps(20, 20, spacing) == list(range(19, -1, -1))
    with pytest.raises(ValueError, match="timestep_spacing"):
        inference_timesteps(100, 10, "uniform")


def make_obs() -> dict[str, torch.Tensor]:
    return {"state": torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0))}


def make_base(spacing: str) -> DiffusionPolicy:
    torch.manual_seed(0)
    normalizer = Normalizer.from_shape_meta(SHAPE_META)
    normalizer.fit({"state": torch.randn(50, 4), "action": torch.rand(50, 2)})
    return DiffusionPolicy(
        SHAPE_META,
        normalizer,
        horizon=8,
        n_obs_steps=2,
        n_action_steps=4,
        backbone="mlp",
        backbone_kwargs={"hidden_dims": [32, 32]},
        num_train_timesteps=50,
        num_inference_steps=5,
        prediction_type="sample",
        timestep_spacing=spacing,
    ).eval()


def visited(policy: DiffusionPolicy, module: torch.nn.Module, **options) -> list[int]:
    """The timesteps at which ``module`` runs while ``policy`` predicts."""
    seen: list[int] = []
    hook = module.register_forward_hook(lambda m, args, out: seen.append(int(args[1][0])))
    policy.predict_action(make_obs(), noise=torch.zeros(3, 8, 2), **options)
    hook.remove()
    return seen


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_the_policy_visits_its_spacing_and_can_be_overridden(spacing):
    policy = make_base(spacing)
    assert visited(policy, policy.denoiser) == inference_timesteps(50, 5, spacing)
    other = "leading" if spacing != "leading" else "trailing"
    got = visited(policy, policy.denoiser, timestep_spacing=other, num_steps=4)
    assert got == inference_timesteps(50, 4, other)


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_a_dppo_chain_fine_tunes_its_last_steps_with_each_spacing(spacing):
    """As robopolicy/algos/dppo.py builds it: the last 2 of 5 steps run the tuned copy."""
    base = make_base(spacing)
    timesteps = base.inference_timesteps(5)
    policy = FinetunedDiffusionPolicy.from_pretrained(base, finetuned_below=timesteps[3]).eval()
    assert policy.timestep_spacing == spacing
    assert visited(policy, policy.denoiser.tuned) == timesteps[3:]
    assert visited(policy, policy.denoiser.base) == timesteps[:3]
    torch.manual_seed(1)
    chain = policy.sample_chain(make_obs(), sampler="ddim", eta=1.0, min_std=0.05)
    assert len(chain) == 5 and all(torch.isfinite(step.x_next).all() for step in chain)


@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
def test_a_steered_policy_decodes_with_its_bases_spacing(spacing):
    base = make_base(spacing)
    actor = SquashedGaussianActor(base.cond_dim, 8 * 2, hidden_dims=[16], bound=1.0)
    steered = SteeredPolicy(base, actor, "diffusion", deterministic_sampler_options(base))
    obs = make_obs()
    latent = actor.mean_action(base.encode_obs(obs))
    expected = base.predict_action(obs, noise=latent.reshape(3, 8, 2))["action"]
    assert torch.equal(steered.decode(obs, latent)["action"], expected)
    assert visited(base, base.denoiser) == inference_timesteps(50, 5, spacing)
