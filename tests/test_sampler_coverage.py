"""Every step is a conditioning step at the defaults; padding past the end holds; the old rule."""

from __future__ import annotations

import numpy as np
import pytest

from robopolicy.data import DatasetError, DatasetWriter, ReplayBuffer
from robopolicy.data.sampler import SequenceSampler, conditioning_coverage

LENGTHS = (1, 3, 18, 200)
HOLD = ["zero", "zero", "last"]  # two delta dimensions and an absolute gripper command


def write(path, lengths=LENGTHS, hold=HOLD):
    """Episode e, step t: pos = [t], action = [100 e + t + 1, -(t + 1), gripper e + t / 1000]."""
    action_meta = {"shape": [3]} if hold is None else {"shape": [3], "hold": hold}
    meta = {"obs": {"pos": {"shape": [1], "type": "low_dim"}}, "action": action_meta}
    with DatasetWriter.create(path, meta, fps=10) as writer:
        for episode, length in enumerate(lengths):
            t = np.arange(length, dtype=np.float32)
            action = np.stack([100 * episode + t + 1, -(t + 1), episode + t / 1000], axis=1)
            writer.append_episode({"pos": t[:, None], "action": action})
    return ReplayBuffer.open(path)


def conditioned_steps(sampler: SequenceSampler) -> dict[int, list[int]]:
    """Episode -> the steps its windows condition on, read from the windows themselves."""
    steps: dict[int, list[int]] = {}
    for index in range(len(sampler)):
        episode, offset = sampler.window(index)
        steps.setdefault(episode, []).append(offset + sampler.n_obs_steps - 1)
    return steps


@pytest.mark.parametrize(
    "horizon, n_obs_steps, n_action_steps", [(16, 2, 8), (16, 2, 4), (8, 1, 8)]
)
def test_every_step_of_every_episode_is_a_conditioning_step_by_default(
    tmp_path, horizon, n_obs_steps, n_action_steps
):
    buffer = write(tmp_path / "d.zarr")
    sampler = SequenceSampler(buffer, horizon, n_obs_steps, n_action_steps)
    steps = conditioned_steps(sampler)
    for episode, length in enumerate(LENGTHS):
        assert steps[episode] == list(range(length))  # each step exactly once
    assert sampler.coverage() == {"steps": 1.0, "last_k": 1.0, "episodes_with_last_step": 1.0}
    # The conditioning step's observation is the step itself.
    for index in range(len(sampler)):
        episode, offset = sampler.window(index)
        current = offset + n_obs_steps - 1
        assert sampler[index]["obs"]["pos"][-1, 0] == current


def test_padding_past_the_end_holds_and_is_marked(tmp_path):
    buffer = write(tmp_path / "d.zarr")
    sampler = SequenceSampler(buffer, horizon=6, n_obs_steps=2, n_action_steps=2)
    # The window conditioning on the last step of episode 1 (3 steps): it starts at step 1.
    index = next(i for i in range(len(sampler)) if sampler.window(i) == (1, 1))
    sample = sampler[index]
    np.testing.assert_array_equal(sample["is_pad"], [False, False, True, True, True, True])
    last = [100 + 3, -3, 1 + 2 / 1000]
    np.testing.assert_allclose(sample["action"][:2], [[102, -2, 1.001], last], rtol=1e-6)
    held = np.tile([0.0, 0.0, last[2]], (4, 1))  # deltas zeroed, the gripper command kept
    np.testing.assert_allclose(sample["action"][2:], held, rtol=1e-6)
    # Padding before the first step repeats the first action (nothing to hold yet).
    first = sampler[0]
    np.testing.assert_array_equal(first["is_pad"][:1], [True])
    np.testing.assert_array_equal(first["action"][0], first["action"][1])
    # the loader's batches (one gather for many windows, each held with its own last action)
    every = np.arange(len(sampler))[::-1]
    batch = sampler.get_batch(every)["action"]
    np.testing.assert_array_equal(batch, np.stack([sampler[int(i)]["action"] for i in every]))


@pytest.mark.parametrize("hold, pad_action", [(HOLD, "repeat"), (None, "auto")])
def test_repeat_padding_repeats_the_last_action(tmp_path, hold, pad_action):
    buffer = write(tmp_path / "d.zarr", hold=hold)
    sampler = SequenceSampler(buffer, 6, 2, 2, pad_action=pad_action)
    index = next(i for i in range(len(sampler)) if sampler.window(i) == (1, 1))
    sample = sampler[index]
    np.testing.assert_allclose(sample["action"][2:], np.tile([103, -3, 1.002], (4, 1)), rtol=1e-6)


def test_one_step_episode_gives_one_fully_padded_window(tmp_path):
    buffer = write(tmp_path / "d.zarr", lengths=(1,))
    sampler = SequenceSampler(buffer, horizon=16, n_obs_steps=2, n_action_steps=8)
    assert len(sampler) == 1
    sample = sampler[0]
    assert sample["is_pad"].tolist() == [True, False] + [True] * 14
    np.testing.assert_array_equal(sample["obs"]["pos"][:, 0], [0, 0])
    np.testing.assert_allclose(sample["action"][1], [1, -1, 0])
    np.testing.assert_allclose(sample["action"][2:], np.zeros((14, 3)))


@pytest.mark.parametrize(
    "horizon, n_obs_steps, n_action_steps", [(16, 2, 8), (16, 2, 4), (6, 3, 2)]
)
def test_old_rule_gives_exactly_its_old_windows(tmp_path, horizon, n_obs_steps, n_action_steps):
    buffer = write(tmp_path / "d.zarr")
    sampler = SequenceSampler(
        buffer,
        horizon,
        n_obs_steps,
        n_action_steps,
        end_padding="action_steps",
        pad_action="repeat",
    )
    # diffusion_policy's rule: starts -(To - 1) .. L - T + Ta - 1, episode by episode.
    expected = [
        (episode, start)
        for episode, length in enumerate(LENGTHS)
        for start in range(-(n_obs_steps - 1), length - horizon + n_action_steps)
    ]
    assert [sampler.window(i) for i in range(len(sampler))] == expected
    for index, (episode, start) in enumerate(expected):
        rows = np.clip(np.arange(start, start + horizon), 0, LENGTHS[episode] - 1)
        t = rows.astype(np.float32)
        action = np.stack([100 * episode + t + 1, -(t + 1), episode + t / 1000], axis=1)
        np.testing.assert_array_equal(sampler[index]["action"], action)
    # The coverage it reports is what its windows condition on.
    steps = conditioned_steps(sampler)
    covered = sum(len(steps.get(episode, [])) for episode in range(len(LENGTHS)))
    assert sampler.coverage()["steps"] == pytest.approx(covered / sum(LENGTHS))
    assert sampler.coverage()["steps"] < 1.0


def test_coverage_of_the_reported_pick_lift_setting():
    """Issue 15: horizon 16, 2 observation steps, 4 actions on 15-20-step episodes."""
    lengths = np.arange(15, 21)
    old = conditioning_coverage(lengths, 16, 2, 4, end_padding="action_steps")
    # Steps 0 .. L - 12 are conditioning steps: L - 11 of L.
    assert old["steps"] == pytest.approx(sum(n - 11 for n in lengths) / lengths.sum())
    assert old["last_k"] == 0.0 and old["episodes_with_last_step"] == 0.0
    assert conditioning_coverage(lengths, 16, 2, 4)["steps"] == 1.0


def test_bad_padding_options_fail_with_one_clear_error(tmp_path):
    buffer = write(tmp_path / "d.zarr", hold=None)
    with pytest.raises(ValueError, match="end_padding"):
        SequenceSampler(buffer, 4, 2, 2, end_padding="some")
    with pytest.raises(ValueError, match="pad_action"):
        SequenceSampler(buffer, 4, 2, 2, pad_action="freeze")
    with pytest.raises(DatasetError, match="shape_meta.action.hold"):
        SequenceSampler(buffer, 4, 2, 2, pad_action="hold")
    with pytest.raises(DatasetError, match="shape_meta.action.hold"):
        write(tmp_path / "bad.zarr", hold=["zero", "last"])  # one entry short
