"""A replay buffer of chunk-level transitions (``TransitionBuffer``; the demonstration dataset is
robopolicy/data/reader.py's ``ReplayBuffer``) for off-policy RL (DSRL).

One transition is one executed action chunk of one env (``robopolicy/rl/chunk_env.py``)::

    obs/<key>       the observation history the chunk was chosen from   (n_obs_steps, ...)
    latent          the noise the base policy was given                 (latent_dim,)
    action          the executed chunk, normalised and flattened        (n_action_steps * Da,)
    reward          the chunk's summed reward                           ()
    terminated      the env ended the episode (task success), 0 or 1    ()
    next_obs/<key>  the history after the chunk; for an episode that ended, its LAST history
                    (``final_observations``), never the next episode's first one

There is deliberately no ``truncated`` field: a time-limit truncation is not the end of the MDP,
so the learner bootstraps from ``next_obs`` exactly as if the episode had gone on; only
``terminated`` stops the bootstrap (``robopolicy/rl/sac.py: td_target``).

Storage is a ring of preallocated torch tensors (``capacity`` rows, oldest overwritten first).
``state_dict`` holds the filled rows and the write position, so a resumed run continues with the
same buffer; its tensors go straight into a safetensors checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


class TransitionBuffer:
    """``fields``: name -> ``(per-row shape, dtype)``; every ``add`` gives all of them."""

    def __init__(self, capacity: int, fields: Mapping[str, tuple[tuple[int, ...], torch.dtype]]):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        if not fields:
            raise ValueError("a replay buffer needs at least one field")
        self.capacity = int(capacity)
        self.fields = {name: (tuple(shape), dtype) for name, (shape, dtype) in fields.items()}
        self.storage = {
            name: torch.zeros((self.capacity, *shape), dtype=dtype)
            for name, (shape, dtype) in self.fields.items()
        }
        self.position = 0  # next row written
        self.size = 0  # rows filled

    def __len__(self) -> int:
        return self.size

    def add(self, rows: Mapping[str, np.ndarray | torch.Tensor]) -> None:
        """Append ``n`` transitions: every field ``(n, *shape)``."""
        missing = set(self.fields) - set(rows)
        extra = set(rows) - set(self.fields)
        if missing or extra:
            raise ValueError(
                f"replay rows must have exactly the fields {sorted(self.fields)}; "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        tensors = {name: torch.as_tensor(np.asarray(value)) for name, value in rows.items()}
        n = None
        for name, tensor in tensors.items():
            shape = self.fields[name][0]
            if tuple(tensor.shape[1:]) != shape or (n is not None and tensor.shape[0] != n):
                raise ValueError(
                    f"replay field {name!r}: expected (n, {', '.join(map(str, shape))}) with the "
                    f"same n for every field, got {tuple(tensor.shape)}"
                )
            n = tensor.shape[0]
        index = (self.position + torch.arange(n)) % self.capacity
        for name, tensor in tensors.items():
            self.storage[name][index] = tensor.to(self.fields[name][1])
        self.position = int((self.position + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(
        self, batch_size: int, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        """``batch_size`` rows drawn uniformly with replacement (torch's global RNG)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = torch.randint(0, self.size, (batch_size,))
        return {name: value[index].to(device) for name, value in self.storage.items()}

    def state_dict(self) -> dict:
        """The filled rows (in storage order) and the write position."""
        return {
            "capacity": self.capacity,
            "position": self.position,
            "size": self.size,
            "rows": {name: value[: self.size].clone() for name, value in self.storage.items()},
        }

    def load_state_dict(self, state: Mapping) -> None:
        if int(state["capacity"]) != self.capacity or set(state["rows"]) != set(self.fields):
            raise ValueError(
                f"the saved replay buffer (capacity {state['capacity']}, fields "
                f"{sorted(state['rows'])}) does not fit this one (capacity {self.capacity}, "
                f"fields {sorted(self.fields)})"
            )
        size = int(state["size"])
        for name, rows in state["rows"].items():
            if tuple(rows.shape) != (size, *self.fields[name][0]):
                raise ValueError(f"saved replay field {name!r} has shape {tuple(rows.shape)}")
            self.storage[name][:size] = rows.to(self.fields[name][1])
        self.size = size
        self.position = int(state["position"])
