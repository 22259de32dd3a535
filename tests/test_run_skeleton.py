"""The run skeleton every training loop shares: ``RunState`` (one checkpoint of every stateful
part), the vector-env step-info reader, and the training seed convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robopolicy.eval.vector_info import step_values
from robopolicy.training.checkpoint import CheckpointError, load_checkpoint
from robopolicy.training.run_state import Counters, RunState, StateOf
from robopolicy.utils.seeds import TRAINING_SEED_OFFSET, training_reset_seeds


def _parts(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    counters = Counters(iteration=0, wall_s=0.0)
    return model, optimizer, generator, counters


def _run_state(model, optimizer, generator, counters) -> RunState:
    return RunState(
        parts={
            "model": model,
            "optimizer": optimizer,
            "generator": StateOf(generator.get_state, generator.set_state),
            "counters": counters,
        },
        facts={"config": {"lr": 1e-2}},
    )


def _train(model, optimizer, generator, counters, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(4, 3, generator=generator) + torch.randn(4, 3)  # both RNG streams
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        counters["iteration"] += 1
        counters["wall_s"] += 0.5


def test_a_restored_run_continues_exactly_as_the_uninterrupted_one(tmp_path):
    straight = _parts(0)
    _train(*straight, steps=6)

    first = _parts(0)
    _train(*first, steps=3)
    path = _run_state(*first).save(tmp_path / "latest.safetensors", step=3, metrics={"loss": 1.0})
    torch.randn(100)  # disturb the global RNG: the restore must put it back

    resumed = _parts(1)  # other initial weights and generator: all must come from the file
    checkpoint = _run_state(*resumed).restore(path)
    assert checkpoint["step"] == 3 and checkpoint["config"] == {"lr": 1e-2}
    assert checkpoint["metrics"] == {"loss": 1.0}
    assert dict(resumed[3]) == {"iteration": 3, "wall_s": 1.5}
    _train(*resumed, steps=3)
    for got, expected in zip(resumed[0].parameters(), straight[0].parameters(), strict=True):
        assert torch.equal(got, expected)
    assert dict(resumed[3]) == dict(straight[3])


def test_a_checkpoint_without_a_part_is_refused_naming_it(tmp_path):
    model, optimizer, generator, counters = _parts(0)
    path = RunState({"model": model}).save(tmp_path / "bc.safetensors", step=1)
    with pytest.raises(CheckpointError, match="has no 'optimizer' state"):
        _run_state(model, optimizer, generator, counters).restore(path)


def test_a_part_that_does_not_fit_is_refused_naming_it(tmp_path):
    path = RunState({"model": torch.nn.Linear(5, 2)}).save(tmp_path / "other.safetensors", step=1)
    with pytest.raises(CheckpointError, match="its 'model' does not fit this run"):
        RunState({"model": torch.nn.Linear(3, 2)}).restore(path)


def test_counters_missing_from_an_older_checkpoint_keep_their_value(tmp_path):
    path = RunState({"counters": Counters(env_steps=7)}).save(tmp_path / "old.safetensors", step=7)
    counters = Counters(env_steps=0, update_credit=0.25)
    RunState({"counters": counters}).restore(path)
    assert dict(counters) == {"env_steps": 7, "update_credit": 0.25}
    assert load_checkpoint(path)["step"] == 7


def test_reserved_names_cannot_be_parts():
    with pytest.raises(ValueError, match="reserved"):
        RunState({"rng": Counters()})


def test_step_values_reads_the_ended_episodes_from_final_info():
    ended = np.array([False, True, False])
    info = {  # same-step autoreset: env 1's entry is its new episode's reset info
        "env_steps": np.array([4, 0, 4]),
        "_env_steps": np.array([True, False, True]),
        "final_info": {
            "env_steps": np.array([0, 3, 0]),
            "_env_steps": np.array([False, True, False]),
            "is_success": np.array([False, True, False]),
            "_is_success": np.array([False, True, False]),
        },
    }
    assert step_values(info, "env_steps", 3, 0, ended).tolist() == [4, 3, 4]
    assert step_values(info, "is_success", 3, False, ended).tolist() == [False, True, False]
    assert step_values(info, "mode", 3, -1, ended).tolist() == [-1, -1, -1]


def test_step_values_honours_the_presence_mask_without_final_info():
    info = {"mode": np.array([1, 0, 2]), "_mode": np.array([True, False, True])}
    assert step_values(info, "mode", 3, -1).tolist() == [1, -1, 2]


def test_training_seeds_never_meet_evaluation_seeds_or_each_other():
    seen = set()
    for run_seed in range(3):
        for block in (0, 1, 99_999):
            seeds = training_reset_seeds(run_seed, block, n_envs=16)
            assert len(seeds) == 16 and min(seeds) >= TRAINING_SEED_OFFSET
            assert seen.isdisjoint(seeds)
            seen.update(seeds)
    assert training_reset_seeds(2, 5, 4) == training_reset_seeds(2, 5, 4)  # repeatable


def test_a_resume_removes_the_temporary_files_of_a_killed_save(tmp_path):
    path = tmp_path / "checkpoints" / "latest.safetensors"
    model = torch.nn.Linear(3, 2)
    RunState({"model": model}).save(path, step=1)
    orphan = path.parent / ".latest.safetensors.abc123.tmp"  # what a kill mid-write leaves
    orphan.write_bytes(b"partial")
    other = path.parent / ".step0000100_success0.500.safetensors.x.tmp"  # another file's
    other.write_bytes(b"partial")
    RunState({"model": model}).restore(path)
    assert not orphan.exists() and other.exists()
    orphan.write_bytes(b"partial")
    RunState({"model": model}).save(path, step=2)
    assert not orphan.exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda meta: meta.pop("tree"),
        lambda meta: meta.update(tree="{not json"),
        lambda meta: meta.update(tree='{"__dict__": [["w", {"__tensor__": "missing"}]]}'),
        lambda meta: meta.update(tree='{"__dict__": 5}'),
        lambda meta: meta.update(version="v1"),
    ],
    ids=["no tree", "tree not json", "tree names a missing tensor", "tree malformed", "version"],
)
def test_a_damaged_checkpoint_header_is_one_clear_error(tmp_path, damage):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    good = RunState({"model": torch.nn.Linear(3, 2)}).save(tmp_path / "good.safetensors", step=1)
    with safe_open(good, framework="pt") as handle:
        metadata = dict(handle.metadata())
    damage(metadata)
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(good), bad, metadata=metadata)
    with pytest.raises(CheckpointError, match=f"checkpoint {bad}: "):
        load_checkpoint(bad)


def test_a_resumed_run_logs_each_step_once(tmp_path):
    from robopolicy.training.run_logger import RunLogger

    logger = RunLogger(tmp_path, wandb_mode="disabled")
    for step in (10, 20, 30, 40):  # the run checkpointed at 20, then died after logging 40
        logger.log({"loss": step / 10}, step)
    resumed = RunLogger(tmp_path, wandb_mode="disabled")
    assert resumed.rewind(20) == 2
    for step in (30, 40):
        resumed.log({"loss": step / 100}, step)
    assert [(row["step"], row["loss"]) for row in resumed.read()] == [
        (10, 1.0),
        (20, 2.0),
        (30, 0.3),
        (40, 0.4),
    ]
