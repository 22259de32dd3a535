"""Keep the ``k`` best checkpoints of a run by evaluation success (ties: the later step wins)."""

from __future__ import annotations

from pathlib import Path

from robopolicy.training.checkpoint import save_checkpoint


class TopKCheckpoints:
    def __init__(self, directory: Path, k: int):
        if k < 0:
            raise ValueError(f"top_k must be >= 0, got {k}")
        self.directory = Path(directory)
        self.k = k
        self.entries: list[tuple[float, int, str]] = []  # (score, step, file name)

    def offer(self, step: int, score: float, state: dict) -> Path | None:
        """Save ``state`` if it ranks among the best ``k``; delete the checkpoint it displaces."""
        if self.k == 0:
            return None
        ranked = sorted([*self.entries, (score, step, "")], reverse=True)
        if ranked.index((score, step, "")) >= self.k:
            return None
        name = f"step{step:07d}_success{score:.3f}.safetensors"
        path = save_checkpoint(self.directory / name, state)
        self.entries = sorted([*self.entries, (score, step, name)], reverse=True)
        for _, _, evicted in self.entries[self.k :]:
            (self.directory / evicted).unlink(missing_ok=True)
        self.entries = self.entries[: self.k]
        return path

    @property
    def best(self) -> Path | None:
        return self.directory / self.entries[0][2] if self.entries else None

    def state_dict(self) -> dict:
        return {"entries": [list(entry) for entry in self.entries]}

    def load_state_dict(self, state: dict) -> None:
        self.entries = [(float(s), int(t), str(n)) for s, t, n in state["entries"]]
