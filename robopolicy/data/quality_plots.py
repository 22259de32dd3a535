"""The dataset QA report's plots (``robopolicy/data/quality.py``), PNGs beside grid.png:

- ``qa_lengths.png``: a histogram of episode lengths, the length outliers stacked in red;
- ``qa_coverage.png``: each episode's share of steps that serve as a conditioning step, one
  bar series per end-padding rule, with the flag's threshold;
- ``qa_divergence.png``: a histogram of the query steps' action divergence with its threshold
  (only where divergence was measured).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robopolicy.data.quality import QualityReport, QualitySettings

FIGSIZE = (7, 3.5)  # inches; at DPI: 700 x 350 pixels
DPI = 100
BINS = 30  # histogram bins at most


def write_plots(report: QualityReport, settings: QualitySettings, out: Path) -> dict[str, Path]:
    """Draw each plot of the module docstring into ``out``; returns the paths by name."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display (as robopolicy/training/run_logger.py)
    import matplotlib.pyplot as plt

    drawers = {"qa_lengths": _lengths, "qa_coverage": _coverage}
    if report.divergence is not None:
        drawers["qa_divergence"] = _divergence
    written = {}
    for name, draw in drawers.items():
        figure, axis = plt.subplots(figsize=FIGSIZE)
        draw(axis, report, settings)
        axis.grid(alpha=0.3)
        written[name] = out / f"{name}.png"
        figure.savefig(written[name], dpi=DPI, bbox_inches="tight")
        plt.close(figure)
    return written


def _lengths(axis, report: QualityReport, settings: QualitySettings) -> None:
    lengths = report.episodes.length
    outlier = np.zeros(len(lengths), dtype=bool)
    outlier[report.episodes.outliers["length"]] = True
    bins = np.histogram_bin_edges(lengths, bins=min(BINS, int(np.ptp(lengths)) + 1))
    axis.hist(
        [lengths[~outlier], lengths[outlier]],
        bins=bins,
        stacked=True,
        color=["tab:blue", "tab:red"],
        label=["episodes", "outliers"],
    )
    axis.legend()
    k = settings.outlier_k
    axis.set_title(f"episode lengths ({outlier.sum()} outliers: modified z-score > {k:g})")
    axis.set_xlabel("steps")
    axis.set_ylabel("episodes")


def _coverage(axis, report: QualityReport, settings: QualitySettings) -> None:
    for rule, coverage in report.coverage.items():
        episodes = np.arange(len(coverage.per_episode))
        axis.bar(episodes, coverage.per_episode, width=1.0, alpha=0.5, label=f"end_padding={rule}")
    axis.axhline(settings.coverage_min, color="tab:red", linestyle="--", label="flag threshold")
    horizon, n_obs_steps, n_action_steps = report.chunking
    axis.set_title(
        f"steps that serve as a conditioning step (horizon {horizon}, {n_obs_steps} obs, "
        f"{n_action_steps} executed)"
    )
    axis.set_xlabel("episode")
    axis.set_ylabel("share of its steps")
    axis.set_ylim(0, 1.05)
    axis.legend(loc="lower right")


def _divergence(axis, report: QualityReport, settings: QualitySettings) -> None:
    divergence = report.divergence
    axis.hist(divergence.per_query, bins=BINS, color="tab:blue")
    axis.axvline(settings.divergence_threshold, color="tab:red", linestyle="--", label="threshold")
    axis.set_title(
        f"action divergence at {len(divergence.queries)} steps: {divergence.share_above:.0%} "
        f"above {settings.divergence_threshold:g}"
    )
    axis.set_xlabel("mean RMS distance to the neighbours' actions (action half ranges)")
    axis.set_ylabel("steps")
    axis.legend()
