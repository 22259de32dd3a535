"""Diffusion and flow policies: shapes, overfitting, determinism, checkpoints, per-step log-probs.

Most tests use a stand-in normaliser with the real one's calling convention (``normalize(dict)``
and ``unnormalize(dict)``), an affine map with its statistics in buffers; one runs the real
``robopolicy.data.normalizer.Normalizer`` end to end, images included.
"""

import time

import numpy as np
import pytest
import torch
from policy_helpers import (
    BACKBONE_KWARGS,
    HORIZON,
    POLICIES,
    SHAPE_META,
    TA,
    TO,
    AffineNormalizer,
    ZeroDenoiser,
    make_batch,
    make_obs,
    make_policy,
)

from robopolicy.data.normalizer import Normalizer
from robopolicy.eval.envs import policy_act_fn
from robopolicy.policies import DiffusionPolicy, FlowPolicy, RegressionPolicy
from robopolicy.policies.registry import load_policy, policy_record
from robopolicy.training.checkpoint import save_checkpoint

torch.set_num_threads(1)


@pytest.mark.parametrize("backbone", ["unet1d", "transformer", "mlp"])
@pytest.mark.parametrize("cls", POLICIES)
def test_shapes_for_every_backbone(cls, backbone):
    policy = make_policy(cls, backbone)
    losses = policy.compute_loss(make_batch())
    assert losses["loss"].dim() == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    out = policy.predict_action(make_obs(), num_steps=3)
    assert out["action_pred"].shape == (3, HORIZON, 2)
    assert out["action"].shape == (3, TA, 2)
    assert torch.equal(out["action"], out["action_pred"][:, TO - 1 : TO - 1 + TA])


def test_image_policy_end_to_end():
    meta = {
        "obs": {
            "cam": {"shape": [20, 20, 3], "type": "rgb"},
            "state": {"shape": [4], "type": "low_dim"},
        },
        "action": {"shape": [2]},
    }
    policy = FlowPolicy(
        meta,
        AffineNormalizer(),
        horizon=HORIZON,
        n_obs_steps=TO,
        n_action_steps=TA,
        backbone="mlp",
        backbone_kwargs=BACKBONE_KWARGS["mlp"],
        obs_encoder_kwargs={"crop_shape": [16, 16], "num_keypoints": 4, "image_feature_dim": 8},
    )
    obs = {
        "cam": torch.randint(0, 256, (2, TO, 20, 20, 3), dtype=torch.uint8),
        "state": torch.randn(2, TO, 4),
    }
    batch = {"obs": obs, "action": torch.randn(2, HORIZON, 2)}
    policy.compute_loss(batch)["loss"].backward()
    assert policy.obs_encoder.image_encoders[0].trunk.stem[0].weight.grad is not None
    policy.eval()
    noise = torch.randn(2, HORIZON, 2)
    first = policy.predict_action(obs, noise=noise)["action"]
    assert torch.equal(first, policy.predict_action(obs, noise=noise)["action"])


@pytest.mark.parametrize("cls", POLICIES)
def test_real_normalizer_images_and_checkpoint_round_trip(cls):
    meta = {
        "obs": {
            "cam": {"shape": [20, 20, 3], "type": "rgb"},
            "state": {"shape": [4], "type": "low_dim"},
        },
        "action": {"shape": [2]},
    }
    normalizer = Normalizer.from_shape_meta(meta)
    normalizer.fit({"state": torch.randn(50, 4) * 5 + 2, "action": torch.rand(50, 2) * 10 - 3})
    torch.manual_seed(0)
    policy = cls(
        meta,
        normalizer,
        horizon=HORIZON,
        n_obs_steps=TO,
        n_action_steps=TA,
        backbone="unet1d",
        backbone_kwargs=BACKBONE_KWARGS["unet1d"],
        obs_encoder_kwargs={"crop_shape": [16, 16], "num_keypoints": 4, "image_feature_dim": 8},
    )
    obs = {
        "cam": torch.randint(0, 256, (2, TO, 20, 20, 3), dtype=torch.uint8),
        "state": torch.randn(2, TO, 4) * 5 + 2,
    }
    batch = {"obs": obs, "action": torch.rand(2, HORIZON, 2) * 10 - 3}
    assert torch.isfinite(policy.compute_loss(batch)["loss"])
    policy.eval()
    noise = torch.randn(2, HORIZON, 2)
    expected = policy.predict_action(obs, noise=noise)["action_pred"]
    assert "normalizer.stats.action.loc" in policy.state_dict()
    fresh = cls.from_config(policy.config, Normalizer.from_shape_meta(meta))  # not fitted
    fresh.load_state_dict(policy.state_dict())
    assert torch.equal(fresh.eval().predict_action(obs, noise=noise)["action_pred"], expected)


OVERFIT_CASES = [
    (DiffusionPolicy, {"prediction_type": "sample"}, {"sampler": "ddim", "eta": 0.0}),
    # epsilon prediction + deterministic DDIM needs longer training to be this precise at
    # the noisiest steps; DDPM's noise washes the early error out (seeded: reproducible).
    (DiffusionPolicy, {"prediction_type": "epsilon"}, {"sampler": "ddpm", "seed": 0}),
    (FlowPolicy, {"time_sampling": "beta"}, {"solver": "euler"}),
    (FlowPolicy, {"time_sampling": "uniform"}, {"solver": "heun"}),
    (FlowPolicy, {"prediction_type": "sample", "clip_sample": 1.0}, {"solver": "euler"}),
    (RegressionPolicy, {}, {}),
]


def _tiny_dataset():
    """4 distinct observations, each with its own action chunk (raw units: offset 3, scale 2)."""
    generator = torch.Generator().manual_seed(1)
    obs = {"state": torch.eye(4)[:, None, :].repeat(1, TO, 1)}
    actions = 3.0 + 2.0 * (torch.rand(4, HORIZON, 2, generator=generator) * 1.6 - 0.8)
    batch = {"obs": {"state": obs["state"].repeat(8, 1, 1)}, "action": actions.repeat(8, 1, 1)}
    return obs, actions, batch, generator


@pytest.mark.parametrize(("cls", "kwargs", "options"), OVERFIT_CASES)
def test_a_few_updates_lower_the_loss_on_the_tiny_dataset(cls, kwargs, options):
    """The edit-test loop's stand-in for the overfit test below (slow): compute_loss gives a
    gradient that trains the model, for every loss variant. The loss is measured on the same
    noise and timestep draws (seeded) before and after 40 updates."""
    policy = make_policy(cls, "mlp", **kwargs)
    with torch.no_grad():
        policy.normalizer.action_offset.fill_(3.0)
        policy.normalizer.action_scale.fill_(2.0)
    _, _, batch, _ = _tiny_dataset()

    def loss() -> float:
        with torch.no_grad():
            total = 0.0
            for seed in range(4):
                torch.manual_seed(seed)
                total += policy.compute_loss(batch)["loss"].item()
            return total / 4

    before = loss()
    optimizer = torch.optim.Adam(policy.parameters(), lr=2e-3)
    for _ in range(40):
        step_loss = policy.compute_loss(batch)["loss"]
        optimizer.zero_grad()
        step_loss.backward()
        optimizer.step()
    after = loss()
    assert after < 0.5 * before, (before, after)


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "kwargs", "options"), OVERFIT_CASES)
def test_overfits_tiny_dataset(cls, kwargs, options):
    """4 distinct observations, each with its own action chunk: the sampler must recover them."""
    options = dict(options)
    if "seed" in options:
        options["generator"] = torch.Generator().manual_seed(options.pop("seed"))
    policy = make_policy(cls, "mlp", backbone_kwargs={"hidden_dims": [128, 128, 128]}, **kwargs)
    with torch.no_grad():  # raw units differ from normalised ones: the normaliser must be used
        policy.normalizer.action_offset.fill_(3.0)
        policy.normalizer.action_scale.fill_(2.0)
    obs, actions, batch, generator = _tiny_dataset()
    optimizer = torch.optim.Adam(policy.parameters(), lr=2e-3)
    n_updates = 600
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, n_updates)
    start = time.perf_counter()
    for _ in range(n_updates):
        loss = policy.compute_loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    policy.eval()
    noise = torch.randn(4, HORIZON, 2, generator=generator)
    pred = policy.predict_action(obs, noise=noise, **options)
    error = (pred["action_pred"] - actions).abs().max().item()
    assert error < 0.25, f"max error {error:.3f} after {time.perf_counter() - start:.1f}s"


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (DiffusionPolicy, {"sampler": "ddim", "eta": 0.0}),
        (FlowPolicy, {"solver": "euler"}),
        (FlowPolicy, {"solver": "midpoint"}),
        (FlowPolicy, {"solver": "heun"}),
    ],
)
def test_deterministic_sampling_with_fixed_noise(cls, options):
    policy = make_policy(cls).eval()
    obs, noise = make_obs(), torch.randn(3, HORIZON, 2)
    first = policy.predict_action(obs, noise=noise, num_steps=5, **options)
    second = policy.predict_action(obs, noise=noise, num_steps=5, **options)
    assert torch.equal(first["action_pred"], second["action_pred"])
    other = policy.predict_action(obs, noise=torch.randn(3, HORIZON, 2), num_steps=5, **options)
    assert not torch.allclose(first["action_pred"], other["action_pred"])


def test_ddpm_is_stochastic_unless_seeded():
    policy = make_policy(DiffusionPolicy).eval()
    obs, noise = make_obs(), torch.randn(3, HORIZON, 2)
    first = policy.predict_action(obs, noise=noise, sampler="ddpm")["action_pred"]
    second = policy.predict_action(obs, noise=noise, sampler="ddpm")["action_pred"]
    assert not torch.allclose(first, second)
    seeded = [
        policy.predict_action(
            obs, noise=noise, sampler="ddpm", generator=torch.Generator().manual_seed(7)
        )["action_pred"]
        for _ in range(2)
    ]
    assert torch.equal(seeded[0], seeded[1])


def test_number_of_steps_is_chosen_at_inference():
    policy = make_policy(DiffusionPolicy).eval()
    for num_steps in (1, 7, 50):
        assert len(policy.sample_chain(make_obs(), num_steps=num_steps)) == num_steps
    flow = make_policy(FlowPolicy).eval()
    assert len(flow.sample_chain(make_obs(), num_steps=1)) == 1
    with pytest.raises(ValueError, match="num_steps"):
        policy.predict_action(make_obs(), num_steps=51)


@pytest.mark.parametrize("cls", POLICIES)
def test_state_dict_round_trip(cls):
    policy = make_policy(cls, "unet1d")
    with torch.no_grad():
        policy.normalizer.action_scale.fill_(0.5)
        policy.normalizer.state_offset.fill_(1.0)
    policy.eval()
    assert "normalizer.action_scale" in policy.state_dict()
    torch.manual_seed(123)  # a different initialisation for the fresh copy
    restored = cls.from_config(policy.config, AffineNormalizer())
    restored.load_state_dict(policy.state_dict())
    restored.eval()
    obs, noise = make_obs(), torch.randn(3, HORIZON, 2)
    assert torch.equal(
        policy.predict_action(obs, noise=noise)["action_pred"],
        restored.predict_action(obs, noise=noise)["action_pred"],
    )


@pytest.mark.parametrize("cls", POLICIES)
def test_bf16_autocast_inference_is_close_to_float32(cls):
    """autocast_dtype=bf16 runs the networks in bfloat16 (the actions change a little) and
    returns float32 actions; none is float32 exactly."""
    policy = make_policy(cls, "unet1d").eval()
    obs, noise = make_obs(), torch.randn(3, HORIZON, 2)
    fp32 = policy.predict_action(obs, noise=noise)["action_pred"]
    assert torch.equal(
        policy.predict_action(obs, noise=noise, autocast_dtype="none")["action_pred"], fp32
    )
    bf16 = policy.predict_action(obs, noise=noise, autocast_dtype="bf16")["action_pred"]
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, fp32)
    assert (bf16 - fp32).abs().max() < 0.25  # an untrained net, epsilon chain: ~0.19 seen
    with pytest.raises(ValueError, match="autocast_dtype"):
        policy.predict_action(obs, noise=noise, autocast_dtype="fp16")


def test_a_checkpoint_from_before_the_unet_layout_option_loads_as_every_level(tmp_path):
    """Checkpoints written before ``layout`` existed hold the every_level UNet and record no
    layout; they rebuild that network. New policies record theirs (diffusion_policy unless
    given), so a checkpoint always names the network it holds."""
    normalizer = Normalizer.from_shape_meta(SHAPE_META)
    normalizer.fit({"state": torch.randn(50, 4), "action": torch.rand(50, 2)})
    kwargs = {**BACKBONE_KWARGS["unet1d"], "layout": "every_level"}
    old = make_policy(DiffusionPolicy, "unet1d", backbone_kwargs=kwargs)
    old.normalizer = normalizer
    record = policy_record(old, old.state_dict())
    del record["config"]["backbone_kwargs"]["layout"]
    path = save_checkpoint(tmp_path / "old.safetensors", {"policy": record})
    loaded, _ = load_policy(path)
    assert loaded.denoiser.layout == "every_level"
    assert loaded.config["backbone_kwargs"]["layout"] == "every_level"
    obs, noise = make_obs(), torch.randn(3, HORIZON, 2)
    assert torch.equal(
        old.eval().predict_action(obs, noise=noise)["action"],
        loaded.predict_action(obs, noise=noise)["action"],
    )
    new = make_policy(DiffusionPolicy, "unet1d")
    assert new.config["backbone_kwargs"]["layout"] == "diffusion_policy"


def test_padding_mask_is_optional():
    batch = make_batch()
    batch["is_pad"][:, -3:] = True
    moved = {**batch, "action": batch["action"].clone()}
    moved["action"][:, -3:] += 100.0  # padded targets change
    for mask_padding, same in ((True, True), (False, False)):
        policy = make_policy(FlowPolicy, mask_padding=mask_padding)
        # A per-step denoiser (zeros), so that padded inputs cannot reach valid steps' outputs.
        policy.denoiser = ZeroDenoiser()
        losses = []
        for b in (batch, moved):
            torch.manual_seed(5)
            losses.append(policy.compute_loss(b)["loss"])
        assert torch.allclose(losses[0], losses[1]) == same


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (DiffusionPolicy, {"backbone": "resnet"}, "backbone"),
        (FlowPolicy, {"horizon": 4}, "horizon"),
        (DiffusionPolicy, {"n_action_steps": 0}, "n_action_steps"),
        (DiffusionPolicy, {"prediction_type": "v"}, "prediction_type"),
        (DiffusionPolicy, {"sampler": "euler"}, "sampler"),
        (DiffusionPolicy, {"beta_schedule": "cosine"}, "beta_schedule"),
        (DiffusionPolicy, {"num_inference_steps": 60}, "num_inference_steps"),
        (FlowPolicy, {"solver": "rk4"}, "solver"),
        (FlowPolicy, {"time_sampling": "logit_normal"}, "time_sampling"),
        (FlowPolicy, {"backbone_kwargs": {"hidden_dim": 3}}, "backbone_kwargs"),
        (FlowPolicy, {"obs_encoder_kwargs": {"crop": 3}}, "obs_encoder_kwargs"),
        (FlowPolicy, {"noise_std": -1.0}, "noise_std"),
        (DiffusionPolicy, {"eta": 2.0}, "eta"),
    ],
)
def test_bad_arguments_name_the_parameter(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_policy(cls, **kwargs)


def test_config_is_plain_and_rebuilds_from_omegaconf_input():
    from omegaconf import OmegaConf

    node = OmegaConf.create({"down_dims": [16, 32], "time_embed_dim": 16})
    policy = make_policy(DiffusionPolicy, "unet1d", backbone_kwargs=node)
    assert type(policy.config["backbone_kwargs"]["down_dims"]) is list
    assert DiffusionPolicy.from_config(policy.config, AffineNormalizer()).config == policy.config


def test_bad_inputs():
    policy = make_policy(FlowPolicy)
    with pytest.raises(ValueError, match="noise"):
        policy.predict_action(make_obs(), noise=torch.randn(3, HORIZON + 1, 2))
    with pytest.raises(ValueError, match="n_obs_steps"):
        policy.predict_action({"state": torch.randn(3, TO + 1, 4)})
    with pytest.raises(ValueError, match="state"):
        policy.predict_action({"other": torch.randn(3, TO, 4)})
    with pytest.raises(TypeError):
        policy.predict_action(make_obs(), eta=0.5)  # a diffusion option given to a flow policy


def test_regression_policy_averages_modes_and_ignores_noise():
    """Two demonstrations disagree for the same observation: regression predicts their mean."""
    policy = make_policy(RegressionPolicy, backbone_kwargs={"hidden_dims": [64, 64]})
    obs = {"state": torch.ones(2, TO, 4)}
    actions = torch.stack([torch.full((HORIZON, 2), 1.0), torch.full((HORIZON, 2), -1.0)])
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(300):
        loss = policy.compute_loss({"obs": obs, "action": actions})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    first = policy.predict_action(obs, noise=torch.randn(2, HORIZON, 2))["action_pred"]
    second = policy.predict_action(obs, noise=torch.randn(2, HORIZON, 2))["action_pred"]
    assert torch.equal(first, second)
    assert first.abs().max().item() < 0.1
    with pytest.raises(ValueError, match="exactly 1 step"):
        policy.predict_action(obs, num_steps=4)


@pytest.mark.parametrize(
    "cls, options",
    [(DiffusionPolicy, {}), (DiffusionPolicy, {"sampler": "ddpm"}), (FlowPolicy, {})],
)
def test_evaluation_noise_comes_from_the_episode_seeds(cls, options):
    policy = make_policy(cls).eval()
    obs = {"state": make_obs(3)["state"].numpy()}
    seeds = np.array([5, 6, 7])

    def first_two_chunks(act, obs, seeds):
        return act(obs, episode_seeds=seeds), act(obs, episode_seeds=seeds, chunk_index=1)

    torch.manual_seed(1)
    first = first_two_chunks(policy_act_fn(policy, **options), obs, seeds)
    torch.manual_seed(2)  # the global RNG must not matter
    again = first_two_chunks(policy_act_fn(policy, **options), obs, seeds)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.allclose(first[0], first[1])  # each chunk of an episode gets fresh noise
    if not options:  # deterministic sampler: an episode's actions ignore its batch neighbours
        alone = first_two_chunks(policy_act_fn(policy), {"state": obs["state"][1:2]}, seeds[1:2])
        assert np.allclose(alone[0][0], first[0][1], atol=1e-5)
        assert np.allclose(alone[1][0], first[1][1], atol=1e-5)
