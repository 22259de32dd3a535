"""The ONNX runtime (robopolicy/policies/runtime.py): the same actions as the eager policy from the
same observations and noise, a stochastic sampler refused, the export cached, the choice made by
``sampler.runtime`` for eval's act function and deploy's predictor."""

import numpy as np
import pytest
import torch

from robopolicy.config.checks import ConfigError
from robopolicy.config.run import SamplerOptions
from robopolicy.data.normalizer import Normalizer
from robopolicy.eval.envs import policy_act_fn
from robopolicy.policies import DiffusionPolicy, FlowPolicy, RegressionPolicy
from robopolicy.policies.runtime import OnnxPolicy, with_runtime

torch.set_num_threads(1)

STATE_META = {
    "obs": {"state": {"shape": [5], "type": "low_dim"}},
    "action": {"shape": [3]},
}
IMAGE_META = {  # 48x48 crops to 40x40: a 2x2 feature map for the spatial softmax
    "obs": {
        "cam": {"shape": [48, 48, 3], "type": "rgb"},
        "state": {"shape": [5], "type": "low_dim"},
    },
    "action": {"shape": [3]},
}
IMAGE_ENCODER = {"resnet_width": 16, "crop_shape": [40, 40], "num_keypoints": 4}
UNET = {"down_dims": [16, 32], "time_embed_dim": 16}
MLP = {"hidden_dims": [32, 32]}


def make_policy(cls, shape_meta=STATE_META, **kwargs):
    torch.manual_seed(0)
    normalizer = Normalizer.from_shape_meta(shape_meta)
    rng = np.random.default_rng(0)
    data = {"state": rng.normal(size=(64, 5)), "action": rng.uniform(-2, 2, (64, 3))}
    normalizer.fit(data)
    args = {"horizon": 8, "n_obs_steps": 2, "n_action_steps": 4, "num_inference_steps": 3}
    if cls is DiffusionPolicy:
        args["num_train_timesteps"] = 50
    return cls(shape_meta, normalizer, **{**args, **kwargs}).eval()


def make_obs(shape_meta, batch, seed=1):
    generator = torch.Generator().manual_seed(seed)
    obs = {"state": torch.randn(batch, 2, 5, generator=generator, dtype=torch.float64)}
    if "cam" in shape_meta["obs"]:
        obs["cam"] = torch.randint(
            0, 256, (batch, 2, 48, 48, 3), generator=generator, dtype=torch.uint8
        )
    return obs


CASES = {
    "diffusion-mlp": (DiffusionPolicy, STATE_META, {"backbone": "mlp", "backbone_kwargs": MLP}),
    "diffusion-unet": (DiffusionPolicy, STATE_META, {"backbone_kwargs": UNET}),
    "diffusion-unet-image": (
        DiffusionPolicy,
        IMAGE_META,
        {"backbone_kwargs": UNET, "obs_encoder_kwargs": IMAGE_ENCODER},
    ),
    "diffusion-sample-prediction": (
        DiffusionPolicy,
        STATE_META,
        {"backbone": "mlp", "backbone_kwargs": MLP, "prediction_type": "sample"},
    ),
    "flow-midpoint-unet": (
        FlowPolicy,
        STATE_META,
        {"backbone_kwargs": UNET, "solver": "midpoint", "num_inference_steps": 2},
    ),
    "flow-heun-mlp-sample": (
        FlowPolicy,
        STATE_META,
        {
            "backbone": "mlp",
            "backbone_kwargs": MLP,
            "solver": "heun",
            "prediction_type": "sample",
            "clip_sample": 1.0,
        },
    ),
    "regression-mlp": (
        RegressionPolicy,
        STATE_META,
        {"backbone_kwargs": MLP, "num_inference_steps": 1},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_gives_the_eager_actions_from_the_same_obs_and_noise(case, tmp_path):
    cls, shape_meta, kwargs = CASES[case]
    policy = make_policy(cls, shape_meta, **kwargs)
    runtime = OnnxPolicy(policy, cache_dir=tmp_path)
    for batch in (1, 3):  # the batch axis is dynamic (exported at batch 2)
        obs = make_obs(shape_meta, batch)
        noise = torch.randn(batch, 8, 3, generator=torch.Generator().manual_seed(batch))
        eager = policy.predict_action(obs, noise)
        onnx = runtime.predict_action(obs, noise)
        assert onnx["action"].shape == (batch, 4, 3)
        for key in ("action", "action_pred"):
            torch.testing.assert_close(onnx[key], eager[key], rtol=0, atol=1e-4)


def test_onnx_builds_the_sampler_settings_into_the_graph(tmp_path):
    policy = make_policy(FlowPolicy, backbone="mlp", backbone_kwargs=MLP)
    runtime = OnnxPolicy(policy, num_steps=5, cache_dir=tmp_path, solver="heun")
    obs, noise = make_obs(STATE_META, 2), torch.randn(2, 8, 3)
    eager = policy.predict_action(obs, noise, num_steps=5, solver="heun")
    torch.testing.assert_close(runtime.predict_action(obs, noise), eager, rtol=0, atol=1e-4)
    assert not torch.allclose(policy.predict_action(obs, noise)["action"], eager["action"])
    with pytest.raises(ValueError, match="exported for .*'num_steps': 5"):
        runtime.predict_action(obs, noise, num_steps=3)


@pytest.mark.parametrize(
    "cls, options",
    [
        (DiffusionPolicy, {"eta": 0.5}),
        (DiffusionPolicy, {"sampler": "ddpm"}),
        (FlowPolicy, {"noise_std": 0.1}),
    ],
)
def test_onnx_refuses_a_stochastic_sampler_in_one_line(cls, options, tmp_path):
    policy = make_policy(cls, backbone="mlp", backbone_kwargs=MLP)
    with pytest.raises(ValueError, match="deterministic sampler only") as error:
        OnnxPolicy(policy, cache_dir=tmp_path, **options)
    assert "\n" not in str(error.value)
    assert not list(tmp_path.glob("*.onnx"))


def test_the_export_is_cached_per_weights_and_settings(tmp_path, monkeypatch):
    policy = make_policy(DiffusionPolicy, backbone="mlp", backbone_kwargs=MLP)
    first = OnnxPolicy(policy, cache_dir=tmp_path)
    exports = []
    real_export = torch.onnx.export
    monkeypatch.setattr(
        torch.onnx, "export", lambda *a, **k: exports.append(1) or real_export(*a, **k)
    )
    assert OnnxPolicy(policy, cache_dir=tmp_path).path == first.path and not exports
    assert OnnxPolicy(policy, num_steps=2, cache_dir=tmp_path).path != first.path
    with torch.no_grad():
        next(policy.denoiser.parameters()).add_(0.01)  # new weights: a new graph
    changed = OnnxPolicy(policy, cache_dir=tmp_path)
    assert changed.path not in (first.path,) and len(exports) == 2
    assert len(list(tmp_path.glob("*.onnx"))) == 3  # and no scratch files left


def test_with_runtime_selects_eager_or_onnx_and_drops_unset_options(tmp_path, monkeypatch):
    policy = make_policy(DiffusionPolicy, backbone="mlp", backbone_kwargs=MLP)
    same, options = with_runtime(policy, {"num_steps": 2, "eta": None, "runtime": "eager"})
    assert same is policy and options == {"num_steps": 2}
    monkeypatch.setattr("robopolicy.policies.runtime.CACHE_DIR", tmp_path)
    runtime, options = with_runtime(policy, {"num_steps": 2, "eta": None, "runtime": "onnx"})
    assert isinstance(runtime, OnnxPolicy) and runtime.num_steps == 2 and options == {}
    with pytest.raises(ValueError, match="runtime must be one of eager, onnx, got 'tvm'"):
        with_runtime(policy, {"runtime": "tvm"})


def test_eval_act_fn_through_onnx_gives_the_eager_seeded_actions(tmp_path, monkeypatch):
    monkeypatch.setattr("robopolicy.policies.runtime.CACHE_DIR", tmp_path)
    policy = make_policy(DiffusionPolicy, backbone_kwargs=UNET)
    obs = {key: value.numpy() for key, value in make_obs(STATE_META, 2).items()}
    seeds = np.array([100, 101])
    eager = policy_act_fn(policy)(obs, seeds, chunk_index=3)
    onnx = policy_act_fn(policy, runtime="onnx")(obs, seeds, chunk_index=3)
    np.testing.assert_allclose(onnx, eager, rtol=0, atol=1e-4)


def test_deploy_predictor_through_onnx_gives_the_eager_chunk(tmp_path, monkeypatch):
    from hardware.deploy import policy_predictor

    monkeypatch.setattr("robopolicy.policies.runtime.CACHE_DIR", tmp_path)
    policy = make_policy(FlowPolicy, backbone="mlp", backbone_kwargs=MLP)
    history = {"state": make_obs(STATE_META, 1)["state"].numpy()}
    torch.manual_seed(5)
    eager = policy_predictor(policy, {"runtime": "eager"})(history)
    torch.manual_seed(5)
    onnx = policy_predictor(policy, {"runtime": "onnx"})(history)
    assert onnx.shape == (8, 3)
    np.testing.assert_allclose(onnx, eager, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"runtime": "tensorrt"}, "runtime=tensorrt: expected one of eager, onnx"),
        ({"runtime": "onnx", "eta": 0.5}, "runtime=onnx: onnx runs a deterministic sampler only"),
        ({"runtime": "onnx", "sampler": "ddpm"}, "runtime=onnx: onnx runs a deterministic"),
    ],
)
def test_sampler_options_reject_a_bad_runtime_in_one_line(fields, message):
    with pytest.raises(ConfigError) as error:
        SamplerOptions(**fields).check()
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    SamplerOptions(runtime="onnx", eta=0.0, noise_std=0.0).check()  # deterministic: accepted


def test_a_graph_that_differs_from_eager_is_refused_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr("robopolicy.policies.runtime.EXPORT_TOLERANCE", -1.0)  # any difference
    policy = make_policy(DiffusionPolicy, backbone="mlp", backbone_kwargs=MLP)
    with pytest.raises(ValueError, match="differs from the eager chain by .*use runtime=eager"):
        OnnxPolicy(policy, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # neither the graph nor its scratch file
