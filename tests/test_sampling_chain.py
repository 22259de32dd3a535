"""The sampling chain of diffusion and flow policies: stochastic steps recomputable with
gradients (as DPPO needs), DDIM eta=1 against DDPM, and every sampler landing on the target with
the exact denoiser of a one-chunk dataset."""

import pytest
import torch
from policy_helpers import HORIZON, make_obs, make_policy
from torch import nn

from robopolicy.policies import DiffusionPolicy, FlowPolicy

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (DiffusionPolicy, {"sampler": "ddpm", "min_std": 0.05}),
        (DiffusionPolicy, {"sampler": "ddim", "eta": 0.5, "min_std": 0.05}),
        (FlowPolicy, {"noise_std": 0.1}),
    ],
)
def test_stochastic_steps_are_recomputable_with_gradients(cls, options):
    policy = make_policy(cls).eval()
    obs = make_obs()
    chain = policy.sample_chain(obs, num_steps=4, **options)
    assert len(chain) == 4
    for step in chain:
        assert (step.std > 0).all()
    # Recomputing a stored step with gradients on (as DPPO does) gives the same distribution.
    cond = policy.encode_obs(obs)
    mean, std = policy.step_distribution(chain[2].x, 2, cond, num_steps=4, **options)
    assert torch.allclose(mean, chain[2].mean, atol=1e-5) and torch.equal(std, chain[2].std)
    mean.sum().backward()
    assert next(policy.denoiser.parameters()).grad is not None


def test_deterministic_step_is_its_mean():
    step = make_policy(FlowPolicy).sample_chain(make_obs(), num_steps=2)[0]
    assert torch.equal(step.x_next, step.mean)
    assert (step.std == 0).all()


def test_ddim_eta_one_matches_ddpm():
    policy = make_policy(DiffusionPolicy, clip_sample=None).eval()  # no clamp: see diffusion.py
    cond = policy.encode_obs(make_obs())
    x = torch.randn(3, HORIZON, 2)
    with torch.no_grad():
        for step in range(5):
            ddpm = policy.step_distribution(x, step, cond, num_steps=5, sampler="ddpm")
            ddim = policy.step_distribution(x, step, cond, num_steps=5, sampler="ddim", eta=1.0)
            assert torch.allclose(ddpm[0], ddim[0], atol=1e-4)
            assert torch.allclose(ddpm[1], ddim[1], atol=1e-6)
    assert float(ddpm[1].max()) == 0.0  # the last step lands on the predicted clean chunk


class OracleDenoiser(nn.Module):
    """The exact denoiser when every chunk in the data equals ``target``: samplers must land on it.

    Diffusion: ``eps = (x - sqrt(abar_k) a) / sqrt(1 - abar_k)``, or ``a`` itself for sample
    prediction. Flow: ``x_t = t a + (1 - t) eps`` gives ``v = (a - x) / (1 - t)``.
    """

    def __init__(self, policy, target):
        super().__init__()
        self.policy, self.target = [policy], target
        self.anchor = nn.Parameter(torch.zeros(()))  # so that policy.device finds a parameter

    def forward(self, x, t, cond):
        policy = self.policy[0]
        if isinstance(policy, FlowPolicy):
            if policy.prediction_type == "sample":
                return self.target.expand_as(x)
            time = (t / 1000.0)[:, None, None]
            return (self.target - x) / (1 - time)
        if policy.prediction_type == "sample":
            return self.target.expand_as(x)
        abar = policy.alphas_cumprod[t.long()][:, None, None]
        return (x - abar.sqrt() * self.target) / (1 - abar).sqrt()


@pytest.mark.parametrize(
    ("cls", "kwargs", "options"),
    [
        (DiffusionPolicy, {"prediction_type": "epsilon"}, {"sampler": "ddim"}),
        (DiffusionPolicy, {"prediction_type": "epsilon"}, {"sampler": "ddim", "eta": 0.7}),
        (DiffusionPolicy, {"prediction_type": "epsilon"}, {"sampler": "ddpm"}),
        (DiffusionPolicy, {"prediction_type": "sample"}, {"sampler": "ddim"}),
        (FlowPolicy, {}, {"solver": "euler"}),
        (FlowPolicy, {}, {"solver": "midpoint"}),
        (FlowPolicy, {}, {"solver": "heun"}),
        (FlowPolicy, {"prediction_type": "sample"}, {"solver": "euler"}),
        (FlowPolicy, {"prediction_type": "sample"}, {"solver": "heun"}),
    ],
)
@pytest.mark.parametrize("num_steps", [1, 3, 10])
def test_samplers_recover_target_with_exact_denoiser(cls, kwargs, options, num_steps):
    policy = make_policy(cls, **kwargs).eval()
    target = torch.rand(1, HORIZON, 2) * 1.6 - 0.8
    policy.denoiser = OracleDenoiser(policy, target)
    pred = policy.predict_action(make_obs(), num_steps=num_steps, **options)["action_pred"]
    assert torch.allclose(pred, target.expand_as(pred), atol=1e-3)
