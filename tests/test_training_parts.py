"""Shared training parts: checkpoint files, EMA, learning-rate schedule, RNG capture, statistics."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from robopolicy.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robopolicy.training.ema import EMA
from robopolicy.training.lr_schedule import warmup_cosine
from robopolicy.training.rng import isolated_torch_rng, rng_state, seed_everything, set_rng_state
from robopolicy.training.run_state import RunState
from robopolicy.utils.device import resolve_device
from robopolicy.utils.stats import wilson_interval


def _trained_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = warmup_cosine(optimizer, warmup_steps=2, total_steps=10)
    for _ in range(3):
        loss = model(torch.randn(8, 3)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_checkpoint_round_trip_restores_every_part(tmp_path):
    model, optimizer, scheduler = _trained_state()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "config": {"lr": 1e-3, "dims": [3, 4], "name": "x", "nested": {"none": None}},
        "step": 3,
        "pair": (1, "a"),
    }
    path = save_checkpoint(tmp_path / "ckpt" / "latest.safetensors", state)
    loaded = load_checkpoint(path)
    assert (
        loaded["config"] == state["config"] and loaded["step"] == 3 and loaded["pair"] == (1, "a")
    )
    fresh_model, fresh_optimizer, fresh_scheduler = _trained_state()
    fresh_model.load_state_dict(loaded["model"])
    fresh_optimizer.load_state_dict(loaded["optimizer"])
    fresh_scheduler.load_state_dict(loaded["scheduler"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh_model.state_dict()[key]), key
    assert fresh_optimizer.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert not list(tmp_path.glob("ckpt/*.tmp")), "no temporary file left behind"


def test_checkpoint_rejects_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a robopolicy checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(TypeError, match="cannot store"):
        save_checkpoint(tmp_path / "bad.safetensors", {"fn": print})


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "latest.safetensors"
    save_checkpoint(path, {"step": 1, "w": torch.ones(2)})
    with pytest.raises(TypeError):
        save_checkpoint(path, {"step": 2, "w": torch.ones(2), "bad": object()})
    assert load_checkpoint(path)["step"] == 1


def test_ema_tracks_and_copies_buffers():
    model = nn.BatchNorm1d(2)
    ema = EMA(model, power=1.0, max_decay=0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(7.0)
    ema.update(model)  # step 0: decay 0 -> copies the weights
    assert torch.allclose(ema.averaged.weight, torch.full((2,), 3.0))
    with torch.no_grad():
        model.weight.fill_(5.0)
    ema.update(model)  # step 1: decay min(1 - 1/2, 0.5) = 0.5 -> halfway
    assert torch.allclose(ema.averaged.weight, torch.full((2,), 4.0))
    assert torch.equal(ema.averaged.running_mean, model.running_mean)
    model.running_mean = torch.full((2,), 9.0)  # a new buffer tensor (as Module.to makes)
    ema.averaged.running_mean = torch.zeros(2)
    ema.update(model)
    assert torch.equal(ema.averaged.running_mean, model.running_mean)
    with pytest.raises(ValueError, match="built from"):
        ema.update(nn.BatchNorm1d(2))
    restored = EMA(nn.BatchNorm1d(2))
    restored.load_state_dict(ema.state_dict())
    assert restored.step == 3 and torch.equal(restored.averaged.weight, ema.averaged.weight)


def test_warmup_cosine_shape():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, warmup_steps=4, total_steps=14, min_ratio=0.1)
    rates = []
    for _ in range(16):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0) and rates[9] == pytest.approx(0.55)
    assert rates[14] == pytest.approx(0.1) and rates[15] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))
    with pytest.raises(ValueError, match="total_steps"):
        warmup_cosine(optimizer, warmup_steps=1, total_steps=0)


def test_rng_state_survives_a_checkpoint(tmp_path):
    seed_everything(3)
    save_checkpoint(tmp_path / "rng.safetensors", {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(99)
    set_rng_state(load_checkpoint(tmp_path / "rng.safetensors")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def _noise_after_validation(device: str, validate: bool) -> torch.Tensor:
    """Training noise drawn on ``device`` after one step, with or without a validation between."""
    torch.manual_seed(5)
    torch.randn(3, device=device)
    if validate:
        with isolated_torch_rng(0):
            torch.randn(7, device=device)  # the validation's own noise, the same every time
            torch.randn(7)
    return torch.randn(3, device=device).cpu()


def test_validation_leaves_the_training_noise_unmoved():
    assert torch.equal(_noise_after_validation("cpu", True), _noise_after_validation("cpu", False))
    with isolated_torch_rng(0):
        first = torch.randn(4)
    with isolated_torch_rng(0):
        assert torch.equal(torch.randn(4), first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the CUDA generator")
def test_validation_leaves_the_cuda_training_noise_unmoved():
    expected = _noise_after_validation("cuda", False)
    assert torch.equal(_noise_after_validation("cuda", True), expected)


def test_wilson_interval():
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and 0.70 < low < 0.73
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 20)[0] == 0.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_a_weights_only_snapshot_keeps_the_facts_and_refuses_resume_clearly(tmp_path):
    model, optimizer_model = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(optimizer_model.parameters())
    state = RunState({"policy": model, "optimizer": optimizer}, facts={"config": {"a": 1}})
    weights = state.snapshot(5, parts=("policy",))
    assert set(weights) == {"policy", "config", "rng", "step", "metrics"}
    path = save_checkpoint(tmp_path / "best.safetensors", weights)
    with pytest.raises(
        CheckpointError, match=r"best-k checkpoint \(weights only; resume from checkpoints/latest"
    ):
        state.restore(path)


def test_a_checkpoint_names_its_run_directory_when_it_sits_in_one(tmp_path):
    from robopolicy.utils.run_dir import resumed_run_dir

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    assert (
        resumed_run_dir(tmp_path / "run" / "checkpoints" / "latest.safetensors")
        == (tmp_path / "run").resolve()
    )
    assert resumed_run_dir(tmp_path / "loose.safetensors") is None
