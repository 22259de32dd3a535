"""Look at a dataset: summary tables in the terminal, an image grid and an episode video on disk.

``inspect_dataset(path)`` opens any dataset ``ReplayBuffer`` opens (ours, or a diffusion_policy
store) and prints, with rich:

- an overview: episodes, steps, fps, env spec, provenance;
- every data array: per-step shape, dtype, type (rgb / depth / low_dim / action / extra), chunks;
- statistics: per dimension min / max / mean / std for low-dim arrays (the first
  ``MAX_DIMS`` dimensions of the flattened step, then a count of the rest), pixel statistics
  for images over ``MAX_STAT_FRAMES`` frames spread evenly over the dataset (reading every frame
  of a large image dataset would take minutes), true-counts for boolean arrays;
- per-episode fields (``meta/episode_<name>``): value counts when there are few distinct values
  (mode labels, train/valid masks), else min / mean / max;
- a histogram of episode lengths as text bars;
- coverage at the given chunking (horizon, observation and executed-action steps): the share of
  steps that serve as the step a training window conditions on, and of each episode's last
  ``COVERAGE_LAST_K`` steps, under each of the sampler's end-padding rules;
- given QA settings, the dataset QA report (``quality.py``: coverage per episode, action
  divergence and modes, per-episode outliers, the expert, flags), saved as ``qa.json`` and
  plots in the output folder (``quality_report.py``).

For datasets with camera keys it writes ``grid.png`` (rows: up to ``GRID_EPISODES`` episodes
spread over the dataset; columns: ``GRID_FRAMES`` frames spread over each episode, for each
camera) and ``episode_<N>.mp4`` (one episode, cameras side by side, at the dataset's fps) into
the output folder, by default ``<dataset name>_inspect`` beside the dataset.

This module is deliberately not named ``inspect``: that would shadow the standard library.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from robopolicy.data.errors import DatasetError
from robopolicy.data.quality import LAST_K, QualitySettings, assess_quality
from robopolicy.data.quality_report import show_quality, write_quality
from robopolicy.data.reader import ReplayBuffer
from robopolicy.data.sampler import END_PADDING, conditioning_coverage

MAX_DIMS = 8
MAX_STAT_FRAMES = 256
MAX_VALUE_COUNTS = 12
GRID_EPISODES = 4
GRID_FRAMES = 4
HISTOGRAM_BINS = 10
BAR_WIDTH = 40
DEFAULT_VIDEO_FPS = 10.0
MIN_TILE_HEIGHT = 64  # smaller frames are enlarged by an integer factor (nearest neighbour)
IMAGE_TYPES = ("rgb", "depth")
COVERAGE_LAST_K = LAST_K  # the coverage table's "last k steps of each episode" (as the QA's)


def inspect_dataset(
    path: str | os.PathLike,
    episode: int = 0,
    out_dir: str | os.PathLike | None = None,
    console: Console | None = None,
    chunking: tuple[int, int, int] | None = None,
    quality: QualitySettings | None = None,
) -> dict[str, Path]:
    """Print the summary of the dataset at ``path``; write the QA files, grid and video; return
    the paths written by name.

    ``chunking`` is (horizon, n_obs_steps, n_action_steps) for the coverage table and the QA
    report (None: neither); ``quality`` the QA report's settings (None: no QA report).
    """
    console = console or Console()
    buffer = ReplayBuffer.open(path)
    if buffer.n_episodes and not 0 <= episode < buffer.n_episodes:
        raise DatasetError(
            buffer.path, f"episode {episode} out of range: 0..{buffer.n_episodes - 1}", "--episode"
        )
    console.print(overview_table(buffer))
    console.print(keys_table(buffer))
    console.print(stats_table(buffer))
    if buffer.episode_meta:
        console.print(episode_meta_table(buffer))
    if not buffer.n_episodes:
        return {}
    console.print(
        length_histogram(buffer.episode_lengths), markup=False, highlight=False, soft_wrap=True
    )
    out = Path(out_dir) if out_dir is not None else default_out_dir(buffer.path)
    written = {}
    if chunking is not None:
        console.print(coverage_table(buffer.episode_lengths, *chunking))
    if chunking is not None and quality is not None:
        report = assess_quality(buffer, chunking, quality)
        show_quality(report, quality, console)
        written.update(write_quality(report, quality, out))
    cameras = image_keys(buffer)
    if cameras:
        written.update(write_media(buffer, cameras, episode, out))
    legend = {
        "qa": "the QA report for programs",
        "qa_lengths": "episode lengths, outliers in red",
        "qa_coverage": "conditioning-step coverage per episode",
        "qa_divergence": "action divergence at the query steps",
        "grid": f"rows: episodes {', '.join(map(str, grid_episodes(buffer.n_episodes)))}; "
        f"columns: {GRID_FRAMES} frames of {', '.join(cameras)}",
        "video": f"episode {episode}, {', '.join(cameras)} side by side",
    }
    for name, file in written.items():
        console.print(
            f"wrote {name}: {file} ({legend[name]})", markup=False, highlight=False, soft_wrap=True
        )
    return written


def write_media(
    buffer: ReplayBuffer, cameras: list[str], episode: int, out: Path
) -> dict[str, Path]:
    """grid.png and the episode's video into ``out`` (made if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    written = {"grid": out / "grid.png", "video": out / f"episode_{episode}.mp4"}
    imageio.imwrite(written["grid"], image_grid(buffer, cameras))
    frames = episode_frames(buffer, cameras, episode)
    imageio.mimwrite(
        written["video"], list(frames), fps=buffer.fps or DEFAULT_VIDEO_FPS, macro_block_size=2
    )
    return written


def default_out_dir(dataset: Path) -> Path:
    name = dataset.name
    for suffix in (".zip", ".zarr"):
        name = name.removesuffix(suffix)
    return dataset.resolve().parent / f"{name}_inspect"


def key_type(buffer: ReplayBuffer, key: str) -> str:
    if key in buffer.shape_meta["obs"]:
        return buffer.shape_meta["obs"][key]["type"]
    return "action" if key == "action" else "extra"


def image_keys(buffer: ReplayBuffer) -> list[str]:
    return [k for k in buffer.data if key_type(buffer, k) in IMAGE_TYPES]


# ----------------------------------------------------------------------------- tables
def overview_table(buffer: ReplayBuffer) -> Table:
    table = Table(title=f"dataset {buffer.path}", show_header=False)
    lengths = buffer.episode_lengths
    fmt = "robopolicy" if buffer.is_native else "foreign (no robopolicy attrs; shape_meta inferred)"
    rows = [
        ("format", fmt),
        ("episodes", str(buffer.n_episodes)),
        ("steps", str(buffer.n_steps)),
        ("episode length", _summary(lengths) if len(lengths) else "-"),
        ("fps", str(buffer.fps) if buffer.fps is not None else "-"),
        ("env spec", _truncate(json.dumps(buffer.env_spec), 200)),
        ("provenance", _truncate(json.dumps(buffer.attrs.get("provenance", {})), 200)),
    ]
    for name, value in rows:
        _add_row(table, name, value)
    return table


def keys_table(buffer: ReplayBuffer) -> Table:
    table = Table(title="data arrays")
    for column in ("key", "shape", "dtype", "type", "chunks"):
        table.add_column(column)
    for key, array in buffer.data.items():
        _add_row(
            table,
            key,
            str(tuple(array.shape[1:])),
            str(array.dtype),
            key_type(buffer, key),
            str(array.chunks),
        )
    return table


def stats_table(buffer: ReplayBuffer) -> Table:
    table = Table(title="statistics (per dimension; images over sampled frames)")
    for column in ("key", "dim", "min", "max", "mean", "std"):
        table.add_column(column, justify="left" if column in ("key", "dim") else "right")
    for key in buffer.data:
        for row in _key_stats(buffer, key):
            _add_row(table, key, *row)
    return table


def _key_stats(buffer: ReplayBuffer, key: str) -> list[tuple[str, ...]]:
    """Rows (dim, min, max, mean, std) for one array."""
    if buffer.n_steps == 0:
        return [("-", "", "", "", "")]
    array = buffer.data[key]
    if key_type(buffer, key) in IMAGE_TYPES:
        picks = np.unique(np.linspace(0, buffer.n_steps - 1, MAX_STAT_FRAMES).astype(int))
        frames = array.get_orthogonal_selection((picks,)).astype(np.float64)
        channels = frames.reshape(-1, frames.shape[-1])
        rows = [("pixels", *_stats(frames.reshape(-1)))]
        if channels.shape[1] > 1:
            rows += [(f"channel {c}", *_stats(channels[:, c])) for c in range(channels.shape[1])]
        return rows
    values = buffer.read_all(key)
    if values.dtype == np.bool_:
        return [("true", "", "", f"{int(values.sum())} of {values.size}", "")]
    flat = values.reshape(len(values), -1).astype(np.float64)
    rows = [(str(d), *_stats(flat[:, d])) for d in range(min(flat.shape[1], MAX_DIMS))]
    if flat.shape[1] > MAX_DIMS:
        rows.append((f"... {flat.shape[1] - MAX_DIMS} more", "", "", "", ""))
    return rows


def _stats(values: np.ndarray) -> tuple[str, str, str, str]:
    return tuple(f"{v:.4g}" for v in (values.min(), values.max(), values.mean(), values.std()))


def episode_meta_table(buffer: ReplayBuffer) -> Table:
    table = Table(title="per-episode fields")
    table.add_column("field")
    table.add_column("values (count)")
    for name, values in buffer.episode_meta.items():
        unique, counts = np.unique(values, return_counts=True)
        if len(unique) <= MAX_VALUE_COUNTS:
            text = ", ".join(f"{_scalar(u)}: {c}" for u, c in zip(unique, counts, strict=True))
        else:
            text = f"{len(unique)} distinct; {_summary(values)}"
        _add_row(table, name, text)
    return table


def coverage_table(
    lengths: np.ndarray, horizon: int, n_obs_steps: int, n_action_steps: int
) -> Table:
    """What a policy with this chunking trains on, under each end-padding rule."""
    title = (
        f"coverage: steps that serve as a conditioning step (horizon {horizon}, "
        f"{n_obs_steps} obs steps, {n_action_steps} executed actions)"
    )
    table = Table(title=title, title_justify="left")
    for column in (
        "data.end_padding",
        "all steps",
        f"last {COVERAGE_LAST_K} steps",
        "episodes whose last step is trained on",
    ):
        table.add_column(column)
    for rule in END_PADDING:
        share = conditioning_coverage(
            lengths, horizon, n_obs_steps, n_action_steps, rule, COVERAGE_LAST_K
        )
        cells = [share["steps"], share["last_k"], share["episodes_with_last_step"]]
        _add_row(table, rule, *(f"{value:.0%}" for value in cells))
    return table


def length_histogram(lengths: np.ndarray) -> str:
    """Episode lengths as text bars: at most ``HISTOGRAM_BINS`` bins of whole lengths."""
    low, high = int(lengths.min()), int(lengths.max())
    width = -(-(high - low + 1) // HISTOGRAM_BINS)  # ceil: every bin spans `width` lengths
    starts = np.arange(low, high + 1, width)
    counts = np.array([np.sum((lengths >= s) & (lengths < s + width)) for s in starts])
    scale = BAR_WIDTH / counts.max()
    lines = ["episode lengths"]
    for start, count in zip(starts, counts, strict=True):
        label = f"{start}" if width == 1 else f"{start}-{start + width - 1}"
        lines.append(f"  {label:>13} | {'#' * int(round(count * scale))} {count}")
    return "\n".join(lines)


def _add_row(table: Table, *cells: str) -> None:
    """Add a row of plain text (dataset strings may hold brackets that rich reads as markup)."""
    table.add_row(*(Text(cell) for cell in cells))


def _summary(values: np.ndarray) -> str:
    return f"min {np.min(values):.4g}, mean {np.mean(values):.4g}, max {np.max(values):.4g}"


def _scalar(value: np.generic) -> str:
    return str(value.item()) if hasattr(value, "item") else str(value)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- images
def to_rgb8(frames: np.ndarray, kind: str) -> np.ndarray:
    """Frames (T, H, W, C) of any stored type as uint8 RGB for display.

    rgb: float stores (diffusion_policy's 0..255 floats) are clipped and rounded, one channel is
    repeated, alpha is dropped; depth: scaled from its min..max over these frames to 0..255.
    Frames shorter than ``MIN_TILE_HEIGHT`` are enlarged by a whole factor, so they can be seen.
    """
    frames = np.asarray(frames)
    if kind == "depth":
        values = frames.astype(np.float64)
        low, high = np.nanmin(values), np.nanmax(values)
        frames = (values - low) / max(high - low, 1e-12) * 255.0
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(frames), 0, 255).astype(np.uint8)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    factor = max(1, MIN_TILE_HEIGHT // frames.shape[-3])
    return frames[..., :3].repeat(factor, axis=-3).repeat(factor, axis=-2)


def _side_by_side(images: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Images (H_i, W_i, 3) in a row, padded to the tallest, with a black gap between them."""
    height = max(image.shape[0] for image in images)
    padded = []
    for image in images:
        pad = np.zeros((height, image.shape[1] + gap, 3), np.uint8)
        pad[: image.shape[0], : image.shape[1]] = image
        padded.append(pad)
    return np.concatenate(padded, axis=1)[:, :-gap]


def grid_episodes(n_episodes: int) -> list[int]:
    """Up to ``GRID_EPISODES`` episode indices spread evenly from the first to the last."""
    return sorted({int(i) for i in np.linspace(0, n_episodes - 1, GRID_EPISODES)})


def image_grid(buffer: ReplayBuffer, cameras: list[str]) -> np.ndarray:
    """One row per sampled episode: ``GRID_FRAMES`` frames of each camera, left to right."""
    rows = []
    for index in grid_episodes(buffer.n_episodes):
        window = buffer.episode_slice(int(index))
        picks = np.unique(np.linspace(window.start, window.stop - 1, GRID_FRAMES).astype(int))
        tiles = []
        for key in cameras:
            frames = buffer.data[key].get_orthogonal_selection((picks,))
            tiles.extend(to_rgb8(frames, key_type(buffer, key)))
        rows.append(_side_by_side(tiles))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 2), (0, width - row.shape[1]), (0, 0))) for row in rows]
    return np.concatenate(rows, axis=0)[:-2]


def episode_frames(buffer: ReplayBuffer, cameras: list[str], episode: int) -> np.ndarray:
    """(T, H, W, 3) frames of one episode, cameras side by side, padded to even sizes (H.264)."""
    window = buffer.episode_slice(episode)
    per_camera = [to_rgb8(buffer.data[k][window], key_type(buffer, k)) for k in cameras]
    frames = np.stack(
        [_side_by_side([cam[t] for cam in per_camera]) for t in range(len(per_camera[0]))]
    )
    _, height, width, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
