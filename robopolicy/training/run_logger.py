"""Where a run's numbers and pictures go: a JSON-lines file, wandb, plots and videos on disk.

Every metric goes to ``<run_dir>/metrics.jsonl`` (one JSON object per logging call, with the step)
so a run can be read and plotted with no service at all. wandb gets the same numbers: offline by
default (no account or network needed; ``wandb sync <run_dir>/wandb/offline-run-*`` uploads it
later), online with ``logger=wandb_online``, or not at all with ``logger=none``. ``plot`` draws the
loss and success curves to PNG files in the run directory; ``video`` writes an mp4 there.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np

RATES = {"eval/success_rate"}  # metrics drawn on a fixed 0-1 axis
INTERVALS = {"eval/success_rate": ("eval/success_low", "eval/success_high")}  # metric -> its
#   logged interval's bounds, drawn as a band


class RunLogger:
    def __init__(
        self,
        run_dir: str | os.PathLike,
        wandb_mode: str = "offline",
        project: str = "robopolicy",
        run_name: str | None = None,
        config: dict | None = None,
        enabled: bool = True,
    ):
        """``wandb_mode``: "offline", "online" or "disabled". ``enabled=False`` (non-zero ranks of
        a multi-process run) makes every call a no-op. Every logger of one run directory (the
        training loop's, the final evaluation's, a resumed run's) writes to the same wandb run:
        its id is kept in ``<run_dir>/wandb/run_id``."""
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._wandb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if wandb_mode != "disabled":
            import wandb

            self._wandb = wandb.init(
                project=project,
                name=run_name,
                dir=str(self.run_dir),
                mode=wandb_mode,
                config=config,
                id=self._wandb_id(),
                resume="allow",
            )

    def _wandb_id(self) -> str:
        """The wandb run id of this run directory, made at its first logger."""
        path = self.run_dir / "wandb" / "run_id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(uuid.uuid4().hex[:12])
        return path.read_text().strip()

    @classmethod
    def for_run(cls, cfg: Any, run_dir: Path, enabled: bool = True) -> RunLogger:
        """The logger of a train.py run: wandb as ``cfg.logger`` says, the resolved config
        attached, named after the run directory."""
        from omegaconf import OmegaConf

        return cls(
            run_dir,
            wandb_mode=cfg.logger.wandb_mode,
            project=cfg.logger.project,
            run_name=run_dir.name,
            config=OmegaConf.to_container(cfg, resolve=True),
            enabled=enabled,
        )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        clean = {key: _plain(value) for key, value in metrics.items()}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def summarize(self, values: dict[str, Any]) -> None:
        """Set the wandb run's summary values (the final evaluation's figures)."""
        if self._wandb is not None:
            self._wandb.summary.update({key: _plain(value) for key, value in values.items()})

    def rewind(self, step: int) -> int:
        """Forget the rows logged after ``step`` (a resumed run repeats those steps, so each step
        stays in ``metrics.jsonl`` once); returns how many were dropped. The file is rewritten
        under a temporary name and renamed over the old one."""
        if not self.enabled or not self.metrics_path.exists():
            return 0
        rows = self.read()
        kept = [row for row in rows if row.get("step", 0) <= step]
        if len(kept) < len(rows):
            partial = self.metrics_path.with_suffix(".jsonl.tmp")
            partial.write_text("".join(json.dumps(row) + "\n" for row in kept))
            os.replace(partial, self.metrics_path)
        return len(rows) - len(kept)

    def read(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]

    def video(self, name: str, frames: np.ndarray, fps: float, step: int | None = None) -> Path:
        """Write ``frames`` (T, H, W, 3) uint8 to ``<run_dir>/videos/<name>.mp4``."""
        path = self.run_dir / "videos" / f"{name}.mp4"
        if not self.enabled:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
        if self._wandb is not None:
            import wandb

            self._wandb.log({f"video/{name}": wandb.Video(str(path), format="mp4")}, step=step)
        return path

    def plot(self, curves: dict[str, list[str]]) -> list[Path]:
        """One PNG per entry of ``curves`` (file stem -> metric names), metric against step."""
        if not self.enabled:
            return []
        import matplotlib.pyplot as plt

        rows = self.read()
        written = []
        for stem, names in curves.items():
            figure = self.figure(names, rows)
            if figure.axes[0].lines:
                path = self.run_dir / f"{stem}.png"
                figure.savefig(path, dpi=100, bbox_inches="tight")
                written.append(path)
                self._send_image(f"plots/{stem}", path)
            plt.close(figure)
        return written

    def figure(self, names: list[str], rows: list[dict[str, Any]] | None = None):
        """The matplotlib figure of ``names`` against step (from ``metrics.jsonl`` unless
        ``rows`` are given): a rate on a fixed 0-1 axis, with its interval as a band where one is
        logged (``INTERVALS``)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read() if rows is None else rows
        figure, axis = plt.subplots(figsize=(6, 4))
        for name in names:
            points = [row for row in rows if _finite(row.get(name))]
            if not points:
                continue
            steps = [row["step"] for row in points]
            line = axis.plot(
                steps,
                [row[name] for row in points],
                marker="o" if len(points) < 30 else None,
                label=name,
            )[0]
            low, high = INTERVALS.get(name, (None, None))
            if low and all(_finite(row.get(low)) and _finite(row.get(high)) for row in points):
                lows, highs = [row[low] for row in points], [row[high] for row in points]
                axis.fill_between(
                    steps, lows, highs, color=line.get_color(), alpha=0.2, label="95% interval"
                )
            if name in RATES:
                axis.set_ylim(0, 1)
        if axis.lines:
            axis.set_xlabel("step")
            axis.legend()
            axis.grid(alpha=0.3)
        return figure

    def _send_image(self, name: str, path: Path) -> None:
        if self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Image(str(path))})

    def finish(self) -> None:
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
