"""Fixed-length windows over the episodes of a dataset, padded at episode edges.

A sample is a window of ``horizon`` consecutive steps of one episode. The policy conditions on the
first ``n_obs_steps`` observations and predicts the actions of the whole window, of which it
executes ``n_action_steps`` starting at step ``n_obs_steps - 1`` (the *conditioning step*, the
current step at inference), so ``horizon >= n_obs_steps + n_action_steps - 1`` is required.

Which windows exist (``end_padding``). Windows start up to ``pad_before = n_obs_steps - 1`` steps
before the episode's first step, so that the first step can be a conditioning step. How far they
may run past the episode's last step is ``pad_after``::

    episode of length L, window start s (relative to the episode):   -pad_before <= s
                                                                     s + horizon <= L + pad_after

- ``"full"`` (the default): ``pad_after = horizon - n_obs_steps``, so *every* step of every
  episode, the last one included, is the conditioning step of exactly one window; an episode of
  L steps gives L windows, and a 1-step episode gives one.
- ``"action_steps"``: ``pad_after = n_action_steps - 1``, diffusion_policy's rule: the last
  conditioning step of an episode is ``L - horizon + n_action_steps + n_obs_steps - 2``, so on
  episodes not much longer than the horizon the end (often the grasp, the lift, the final push)
  is never trained on. Episodes shorter than ``horizon - pad_before - pad_after`` give no window.
  Kept for comparison and for reproducing old runs. ``conditioning_coverage`` measures the share
  of steps each rule trains on.

Padding. Steps outside the episode repeat its first step (before) or its last step (after), and
``is_pad`` marks them. Padded actions after the end are the *hold action* when the dataset's
``shape_meta.action.hold`` defines one (``pad_action="hold"``, or ``"auto"``, the default): per
action dimension ``"zero"`` (a delta: 0 holds still) or ``"last"`` (an absolute target or a
gripper command: its last value holds). Otherwise (or with ``pad_action="repeat"``) the last action
is repeated, which for delta actions means "keep moving". No window ever mixes two episodes.

Episodes are split into train and validation sets by episode, never by window (neighbouring
windows overlap almost entirely, so a window-level split would leak). See ``split_episodes``.

What is read. Only what the policy uses: observations for the first ``n_obs_steps`` steps of the
window, actions for all ``horizon`` steps. Low-dimensional arrays (and the action) are
decompressed into numpy once, at construction (they are small: 10^6 steps of 20 floats is 80 MB),
so a sample is a numpy gather. Image arrays are decoded into numpy once too when all the frames
the policy uses take at most ``decoded_cache_bytes`` decoded (diffusion_policy's in-RAM path:
then an image sample is a gather as well). Larger ones stay in the zarr store (on disk, or
compressed in RAM with ``ReplayBuffer.open(..., in_memory=True)``) and only the needed frames are
decoded per sample, through ``FrameReader`` (see ``frame_reader.py`` for its fast path).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np

from robopolicy.data.errors import DatasetError
from robopolicy.data.frame_reader import FrameReader
from robopolicy.data.reader import ReplayBuffer
from robopolicy.data.shape_meta import HOLD_KINDS

log = logging.getLogger(__name__)

IMAGE_TYPES = ("rgb", "depth")
END_PADDING = ("full", "action_steps")  # see the module docstring
PAD_ACTION = ("auto", "hold", "repeat")  # see the module docstring


def pad_after_for(end_padding: str, horizon: int, n_obs_steps: int, n_action_steps: int) -> int:
    """How many steps a window may run past its episode's last step under ``end_padding``."""
    if end_padding not in END_PADDING:
        raise ValueError(f"end_padding must be one of {END_PADDING}, got {end_padding!r}")
    return horizon - n_obs_steps if end_padding == "full" else n_action_steps - 1


def conditioning_steps(length: int, horizon: int, n_obs_steps: int, pad_after: int) -> np.ndarray:
    """The steps (relative to the episode start) that some window conditions on, ascending."""
    last = length - horizon + pad_after + n_obs_steps - 1  # conditioning step of the last window
    return np.arange(0, min(last, length - 1) + 1, dtype=np.int64)


def conditioning_coverage(
    episode_lengths: np.ndarray,
    horizon: int,
    n_obs_steps: int,
    n_action_steps: int,
    end_padding: str = "full",
    last_k: int = 5,
) -> dict[str, float]:
    """Which share of the steps the sampler trains on as the step a window conditions on.

    Returns ``{"steps": share of all steps, "last_k": share of each episode's last ``last_k``
    steps (pooled), "episodes_with_last_step": share of episodes whose last step is covered}``.
    At ``end_padding="full"`` all three are 1.
    """
    pad_after = pad_after_for(end_padding, horizon, n_obs_steps, n_action_steps)
    lengths = [int(n) for n in np.asarray(episode_lengths).ravel()]
    covered = steps = covered_tail = tail = last_covered = 0
    for length in lengths:
        n_covered = len(conditioning_steps(length, horizon, n_obs_steps, pad_after))
        k = min(last_k, length)
        covered += n_covered
        steps += length
        covered_tail += max(0, n_covered - (length - k))
        tail += k
        last_covered += n_covered == length
    if steps == 0:
        raise ValueError("conditioning_coverage needs at least one non-empty episode")
    return {
        "steps": covered / steps,
        "last_k": covered_tail / tail,
        "episodes_with_last_step": last_covered / len(lengths),
    }


def hold_action(last_action: np.ndarray, zero_dims: np.ndarray) -> np.ndarray:
    """The action that holds the robot after ``last_action``: 0 where ``zero_dims`` is True
    (the ``"zero"`` dimensions of ``shape_meta.action.hold``), the last value elsewhere."""
    return np.where(zero_dims, 0.0, last_action).astype(last_action.dtype)


@dataclass(frozen=True)
class EpisodeSplit:
    """Sorted episode indices of the training and validation sets."""

    train: np.ndarray
    val: np.ndarray


def split_episodes(
    n_episodes: int, val_ratio: float = 0.0, seed: int = 42, max_train_episodes: int | None = None
) -> EpisodeSplit:
    """Split ``range(n_episodes)`` into train and validation episodes, deterministically.

    One permutation of the episodes is drawn from ``seed``. Its first ``round(n_episodes *
    val_ratio)`` entries (at least one when ``val_ratio > 0``, and always leaving at least one for
    training) are the validation set; the training set is the rest, cut to its first
    ``max_train_episodes`` entries when a cap is given. So for one seed the validation set does not
    depend on the cap, and the training set for a smaller cap is a subset of that for a larger
    one: data-scaling runs evaluate on the same episodes and add data monotonically.
    """
    if not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive int, got {n_episodes!r}")
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio!r}")
    if max_train_episodes is not None and (
        not isinstance(max_train_episodes, (int, np.integer)) or max_train_episodes < 1
    ):
        raise ValueError(
            f"max_train_episodes must be None or an int >= 1, got {max_train_episodes!r}"
        )
    n_val = 0
    if val_ratio > 0:
        n_val = min(max(1, round(n_episodes * val_ratio)), n_episodes - 1)
    order = np.random.default_rng(seed).permutation(n_episodes)
    val, train = order[:n_val], order[n_val:]
    if max_train_episodes is not None:
        train = train[:max_train_episodes]
    return EpisodeSplit(train=np.sort(train), val=np.sort(val))


def _check_positive(name: str, value: object) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


class SequenceSampler:
    """Padded windows over the training episodes of a ``ReplayBuffer``.

    ``sampler[i]`` returns numpy arrays::

        {"obs": {key: (n_obs_steps, *shape)}, "action": (horizon, Da), "is_pad": (horizon,) bool}

    with images uint8 HWC as stored. ``get_validation_sampler()`` gives the same windows over the
    held-out episodes. ``fast_images=False`` forces plain zarr reads (for comparison and tests).
    ``decoded_cache_bytes``: the most bytes the decoded image frames may take to be decoded into
    RAM at construction (0: never; ``images_decoded`` says which path was taken).
    """

    def __init__(
        self,
        replay_buffer: ReplayBuffer,
        horizon: int,
        n_obs_steps: int,
        n_action_steps: int,
        obs_keys: list[str] | None = None,
        action_key: str = "action",
        val_ratio: float = 0.0,
        seed: int = 42,
        max_train_episodes: int | None = None,
        fast_images: bool = True,
        end_padding: str = "full",
        pad_action: str = "auto",
        decoded_cache_bytes: int = 0,
    ):
        self.horizon = _check_positive("horizon", horizon)
        self.n_obs_steps = _check_positive("n_obs_steps", n_obs_steps)
        self.n_action_steps = _check_positive("n_action_steps", n_action_steps)
        if self.n_obs_steps + self.n_action_steps - 1 > self.horizon:
            raise ValueError(
                f"horizon ({horizon}) must be at least n_obs_steps + n_action_steps - 1 "
                f"({n_obs_steps} + {n_action_steps} - 1): the executed actions start at the "
                "last observed step and must lie inside the window"
            )
        if replay_buffer.n_episodes == 0:
            raise DatasetError(replay_buffer.path, "has no episodes to sample", "meta/episode_ends")
        self.pad_before = self.n_obs_steps - 1
        self.end_padding = end_padding
        self.pad_after = pad_after_for(end_padding, horizon, n_obs_steps, n_action_steps)
        self.replay_buffer = replay_buffer
        self.obs_keys = self._check_keys(replay_buffer, obs_keys, action_key)
        self.action_key = action_key
        self.split = split_episodes(replay_buffer.n_episodes, val_ratio, seed, max_train_episodes)

        obs_meta = replay_buffer.shape_meta["obs"]
        self.image_keys = [k for k in self.obs_keys if obs_meta[k]["type"] in IMAGE_TYPES]
        self.image_bytes = sum(_decoded_bytes(replay_buffer, key) for key in self.image_keys)
        self.images_decoded = bool(self.image_keys) and self.image_bytes <= decoded_cache_bytes
        # arrays held decoded in RAM, a sample gathers rows of them: low-dim keys always, image
        # keys when they fit the cache; the other image keys are decoded per sample
        in_ram = [k for k in self.obs_keys if k not in self.image_keys or self.images_decoded]
        self._arrays = {key: self._decode_all(replay_buffer, key, fast_images) for key in in_ram}
        self._action = replay_buffer.read_all(action_key)
        self.hold = self._hold_spec(replay_buffer, pad_action)
        # per-sample work stays a numpy gather: the hold rule as a mask, computed once
        self._hold_zero = None if self.hold is None else np.asarray(self.hold) == "zero"
        self._images = {
            key: FrameReader(replay_buffer.data[key], fast=fast_images)
            for key in self.image_keys
            if key not in self._arrays
        }
        self._set_episodes(self.split.train)
        if len(self) == 0:
            shortest = int(replay_buffer.episode_lengths[self.split.train].min())
            raise DatasetError(
                replay_buffer.path,
                f"no training episode is long enough for one window: the shortest has {shortest} "
                f"steps, a window needs horizon - pad_before - pad_after = "
                f"{self.horizon - self.pad_before - self.pad_after}",
                "horizon",
            )

    @property
    def keys_decoded_per_sample(self) -> list[str]:
        """The image keys whose frames each sample decodes (none when they are held decoded)."""
        return list(self._images)

    def _decode_all(self, replay_buffer: ReplayBuffer, key: str, fast: bool) -> np.ndarray:
        if key not in self.image_keys:
            return replay_buffer.read_all(key)
        return FrameReader(replay_buffer.data[key], fast=fast).read(0, replay_buffer.n_steps)

    @staticmethod
    def _check_keys(
        replay_buffer: ReplayBuffer, obs_keys: list[str] | None, action_key: str
    ) -> list[str]:
        if action_key not in replay_buffer.data:
            raise DatasetError(replay_buffer.path, "no such action array in data/", action_key)
        known = list(replay_buffer.shape_meta["obs"])
        if obs_keys is None:
            return known
        if isinstance(obs_keys, str) or len(obs_keys) == 0:
            raise ValueError(f"obs_keys must be a non-empty list of keys, got {obs_keys!r}")
        for key in obs_keys:
            if key not in known:
                raise DatasetError(
                    replay_buffer.path, f"not an observation key of this dataset (has {known})", key
                )
        return list(obs_keys)

    @staticmethod
    def _hold_spec(replay_buffer: ReplayBuffer, pad_action: str) -> list[str] | None:
        """The per-dimension hold rule used for padded actions after the end (None: repeat)."""
        if pad_action not in PAD_ACTION:
            raise ValueError(f"pad_action must be one of {PAD_ACTION}, got {pad_action!r}")
        hold = replay_buffer.shape_meta["action"].get("hold")
        if pad_action == "hold" and hold is None:
            raise DatasetError(
                replay_buffer.path,
                "pad_action='hold' needs the dataset to define its hold action (a list of "
                f"{HOLD_KINDS} per action dimension); use pad_action=repeat or auto",
                "shape_meta.action.hold",
            )
        return None if pad_action == "repeat" else hold

    def _set_episodes(self, episodes: np.ndarray) -> None:
        """Enumerate every window of ``episodes``: its first step and its episode's bounds."""
        ends = self.replay_buffer.episode_ends
        starts, first, last, episode_of = [], [], [], []
        for episode in episodes:
            begin = int(ends[episode - 1]) if episode > 0 else 0
            end = int(ends[episode])
            window_starts = np.arange(
                begin - self.pad_before, end - self.horizon + self.pad_after + 1, dtype=np.int64
            )
            if len(window_starts) == 0:
                log.info("episode %d (%d steps) is too short for a window", episode, end - begin)
            starts.append(window_starts)
            first.append(np.full(len(window_starts), begin, dtype=np.int64))
            last.append(np.full(len(window_starts), end - 1, dtype=np.int64))
            episode_of.append(np.full(len(window_starts), episode, dtype=np.int64))
        empty = np.zeros(0, dtype=np.int64)
        self.episodes = np.asarray(episodes, dtype=np.int64)
        self._starts = np.concatenate(starts) if starts else empty
        self._first = np.concatenate(first) if first else empty
        self._last = np.concatenate(last) if last else empty
        self._episode_of = np.concatenate(episode_of) if episode_of else empty

    def coverage(self, last_k: int = 5) -> dict[str, float]:
        """``conditioning_coverage`` of this sampler's episodes at its settings."""
        lengths = self.replay_buffer.episode_lengths[self.episodes]
        return conditioning_coverage(
            lengths, self.horizon, self.n_obs_steps, self.n_action_steps, self.end_padding, last_k
        )

    def get_validation_sampler(self) -> SequenceSampler:
        """The same windows over the validation episodes (empty when ``val_ratio == 0``).

        It shares this sampler's in-RAM arrays and frame readers.
        """
        val = copy.copy(self)
        val._set_episodes(self.split.val)
        return val

    def __len__(self) -> int:
        return len(self._starts)

    def window(self, index: int) -> tuple[int, int]:
        """(episode, first step of the window relative to the episode start; < 0 when padded)."""
        self._check_index(index)
        return int(self._episode_of[index]), int(self._starts[index] - self._first[index])

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")

    def __getitem__(self, index: int) -> dict:
        return {key: _first_of(value) for key, value in self.get_batch([index]).items()}

    def get_batch(self, indices) -> dict:
        """The windows at ``indices``, each array with a leading batch axis: exactly
        ``self[i]`` for each ``i``, stacked, gathered with one indexing call per array (the
        per-sample path costs ~40% of a low-dim training step in Python overhead)."""
        indices = np.asarray(indices, dtype=np.int64)
        outside = indices[(indices < 0) | (indices >= len(self))]
        if outside.size:
            self._check_index(int(outside[0]))
        steps = self._starts[indices, None] + np.arange(self.horizon)  # (B, horizon)
        last = self._last[indices, None]
        rows = np.clip(steps, self._first[indices, None], last)
        obs_rows = rows[:, : self.n_obs_steps]
        obs = {key: values[obs_rows] for key, values in self._arrays.items()}
        for key, reader in self._images.items():
            obs[key] = np.stack([self._frames(reader, sample_rows) for sample_rows in obs_rows])
        action = self._action[rows]
        after_end = steps > last
        if self._hold_zero is not None and after_end.any():
            hold = hold_action(self._action[last[:, 0]], self._hold_zero)  # (B, action_dim)
            action[after_end] = np.broadcast_to(hold[:, None], action.shape)[after_end]
        return {
            "obs": {key: obs[key] for key in self.obs_keys},
            "action": action,
            "is_pad": rows != steps,
        }

    def _frames(self, reader: FrameReader, obs_rows: np.ndarray) -> np.ndarray:
        """One window's frames: edge padding only repeats frames, so the rows needed form one
        contiguous range, read at once."""
        low, high = int(obs_rows[0]), int(obs_rows[-1]) + 1
        frames = reader.read(low, high)
        return frames if high - low == self.n_obs_steps else frames[obs_rows - low]


def _decoded_bytes(replay_buffer: ReplayBuffer, key: str) -> int:
    array = replay_buffer.data[key]
    return replay_buffer.n_steps * int(np.prod(array.shape[1:])) * np.dtype(array.dtype).itemsize


def _first_of(value):
    """The first sample of a batched array, or of each array of a dict."""
    if isinstance(value, dict):
        return {key: item[0] for key, item in value.items()}
    return value[0]
