"""Normalizer: inverse maps, constant dimensions, images, fitting, and state-dict loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robopolicy.data import DatasetWriter, ReplayBuffer
from robopolicy.data.normalizer import Normalizer

SPECS = {"action": ("limits", [3]), "pos": ("gaussian", [2, 2]), "cam": ("image", [4, 4, 3])}


def data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    action = rng.uniform(-5, 3, size=(200, 3)).astype(np.float32)
    action[:, 1] = 0.25  # a constant dimension
    pos = (rng.normal(size=(200, 2, 2)) * 4 + 7).astype(np.float32)
    pos[:, 0, 1] = -3.0  # constant under gaussian too
    return {"action": action, "pos": pos}


def fitted() -> Normalizer:
    return Normalizer(SPECS).fit(data())


def test_limits_map_to_unit_range_and_gaussian_standardises():
    normalizer, raw = fitted(), data()
    out = normalizer.normalize({k: torch.from_numpy(v) for k, v in raw.items()})
    action = out["action"].numpy()
    assert action[:, [0, 2]].min(axis=0) == pytest.approx([-1, -1])
    assert action[:, [0, 2]].max(axis=0) == pytest.approx([1, 1])
    pos = out["pos"].numpy().reshape(200, 4)[:, [0, 2, 3]]
    np.testing.assert_allclose(pos.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(pos.std(axis=0), 1, atol=1e-5)


def test_round_trip_is_the_identity():
    normalizer, raw = fitted(), data(seed=1)  # other data than the fit, outside its range too
    tensors = {k: torch.from_numpy(v) * 1.5 for k, v in raw.items()}
    back = normalizer.unnormalize(normalizer.normalize(tensors))
    for key, value in tensors.items():
        torch.testing.assert_close(back[key], value, rtol=1e-5, atol=1e-5)


def test_constant_dimensions_map_to_zero_and_back_exactly():
    normalizer, raw = fitted(), data()
    out = normalizer.normalize({k: torch.from_numpy(v) for k, v in raw.items()})
    assert torch.all(out["action"][:, 1] == 0) and torch.all(out["pos"][:, 0, 1] == 0)
    assert all(torch.isfinite(v).all() for v in out.values())
    back = normalizer.unnormalize({"action": torch.zeros(5, 3), "pos": torch.zeros(5, 2, 2)})
    assert torch.all(back["action"][:, 1] == 0.25) and torch.all(back["pos"][:, 0, 1] == -3.0)


def test_image_mode_maps_uint8_to_unit_range_without_statistics():
    normalizer = Normalizer({"cam": ("image", [4, 4, 3])})  # usable unfitted: no statistics
    frames = torch.tensor([0, 255, 51], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 4, 4, 3)
    out = normalizer.normalize({"cam": frames})["cam"]
    assert out.dtype == torch.float32
    assert out[0].eq(-1).all() and out[1].eq(1).all() and out[2].eq(51 / 127.5 - 1).all()
    torch.testing.assert_close(normalizer.unnormalize({"cam": out})["cam"], frames.float())


def test_fit_replay_buffer_uses_only_the_given_episodes(tmp_path):
    meta = {"obs": {"pos": {"shape": [1], "type": "low_dim"}}, "action": {"shape": [1]}}
    with DatasetWriter.create(tmp_path / "d.zarr", meta, fps=10) as writer:
        for scale in (1.0, 100.0, 2.0):  # episode 1 (held out) has far larger values
            v = np.linspace(-scale, scale, 5, dtype=np.float32)[:, None]
            writer.append_episode({"pos": v, "action": v * 2})
    normalizer = Normalizer.from_shape_meta(ReplayBuffer.open(tmp_path / "d.zarr").shape_meta)
    normalizer.fit_replay_buffer(ReplayBuffer.open(tmp_path / "d.zarr"), episodes=[0, 2])
    out = normalizer.normalize({"pos": torch.tensor([[2.0], [-2.0]]), "action": torch.ones(1, 1)})
    torch.testing.assert_close(out["pos"], torch.tensor([[1.0], [-1.0]]))
    torch.testing.assert_close(out["action"], torch.tensor([[0.25]]))


def test_state_dict_round_trip_into_a_fresh_unfitted_module():
    class Policy(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalizer = Normalizer(SPECS)
            self.head = nn.Linear(2, 2)

    source = Policy()
    source.normalizer.fit(data())
    restored = Policy()
    restored.load_state_dict(source.state_dict())
    sample = {"action": torch.randn(4, 3), "pos": torch.randn(4, 2, 2)}
    for key, value in source.normalizer.normalize(sample).items():
        assert torch.equal(restored.normalizer.normalize(sample)[key], value)
    assert "normalizer.stats.action.loc" in source.state_dict()


def test_loading_a_mismatched_state_dict_names_the_key():
    state = fitted().state_dict()
    other_shape = Normalizer({**SPECS, "action": ("limits", [4])})
    with pytest.raises(ValueError, match="'action'.*shape"):
        other_shape.load_state_dict(state)
    other_mode = Normalizer({**SPECS, "action": ("gaussian", [3])})
    with pytest.raises(ValueError, match="'action'.*mode 'limits'"):
        other_mode.load_state_dict(state)
    with pytest.raises(ValueError, match="'extra'.*missing"):
        Normalizer({**SPECS, "extra": ("limits", [1])}).load_state_dict(state)
    with pytest.raises(ValueError, match="'pos'.*not in this normalizer"):
        Normalizer({"action": ("limits", [3]), "cam": ("image", [4, 4, 3])}).load_state_dict(state)


def test_unfitted_unknown_and_misshapen_inputs_raise():
    with pytest.raises(ValueError, match="'action'.*no statistics"):
        Normalizer(SPECS).normalize({"action": torch.zeros(1, 3)})
    with pytest.raises(ValueError, match="'velocity'.*unknown"):
        fitted().normalize({"velocity": torch.zeros(1, 3)})
    with pytest.raises(ValueError, match="'action'.*trailing shape"):
        fitted().normalize({"action": torch.zeros(1, 4)})
    with pytest.raises(ValueError, match="'action'.*no data"):
        Normalizer(SPECS).fit({"pos": data()["pos"]})
    with pytest.raises(ValueError, match="mode"):
        Normalizer({"action": ("minmax", [3])})
