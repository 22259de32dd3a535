"""The dataset QA report (``robopolicy/data/quality.py``) shown and saved: a rich table and a
``flags`` section in the terminal, ``qa.json`` for programs and the plots of ``quality_plots``.

``qa.json`` holds (shares in [0, 1], episode lists as indices)::

    chunking: {horizon, n_obs_steps, n_action_steps}, end_padding: the rule flagged
    coverage: {<rule>: {steps, last_k, episodes_with_last_step, per_episode: [...],
                        tail_never_trained: [...]}}            for every rule of the sampler
    divergence: {neighbours, query_steps, mean, quantile, quantile_level, threshold,
                 share_above, multimodal_share, max_modes} or null, divergence_note: why null
    episodes: {length, jerk, idle: [...] (null where too short), outliers: {length, jerk, idle}}
    expert: {success_share (null: no success field), shared_seed (null: no seeds), runs,
             length_spread: {min, median, max, iqr}}
    flags: ["...", ...]                                          the lines printed under flags
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from robopolicy.data.quality import QualityReport, QualitySettings, listed
from robopolicy.data.quality_plots import write_plots


def show_quality(report: QualityReport, settings: QualitySettings, console: Console) -> None:
    """The QA table, then one line per flag (or ``flags: none``)."""
    console.print(quality_table(report, settings))
    lines = [f"  {flag}" for flag in report.flags] or ["  none"]
    console.print("\n".join(["flags:", *lines]), markup=False, highlight=False, soft_wrap=True)


def write_quality(report: QualityReport, settings: QualitySettings, out: Path) -> dict[str, Path]:
    """``qa.json`` and the plots into ``out`` (made if missing); returns their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "qa.json"
    path.write_text(json.dumps(quality_json(report, settings), indent=1, allow_nan=False) + "\n")
    return {"qa": path, **write_plots(report, settings, out)}


def quality_table(report: QualityReport, settings: QualitySettings) -> Table:
    table = Table(title="quality (QA): measures and their thresholds", title_justify="left")
    for column in ("measure", "value", "flagged when"):
        table.add_column(column)
    for rule, coverage in report.coverage.items():
        missed = coverage.tail_never_trained
        value = (
            f"{coverage.pooled['steps']:.0%} of steps; lowest episode "
            f"{coverage.per_episode.min():.0%}; {len(missed)} episodes never train on their "
            f"last step" + (f": {listed(missed)}" if len(missed) else "")
        )
        when = f"< {settings.coverage_min:.0%}" if rule == report.end_padding else "(not used)"
        _row(table, f"coverage, end_padding={rule}", value, when)
    _divergence_rows(table, report, settings)
    for measure in ("length", "jerk", "idle"):
        values = getattr(report.episodes, measure)
        outliers = report.episodes.outliers[measure]
        finite = values[np.isfinite(values)]  # jerk and idle are NaN for the shortest episodes
        value = (
            f"median {np.median(finite):.3g}, min {finite.min():.3g}, max {finite.max():.3g}; "
            f"{len(outliers)} outlier episodes" + (f": {listed(outliers)}" if len(outliers) else "")
            if len(finite)
            else "- (every episode too short)"
        )
        _row(table, f"episode {measure}", value, f"modified z-score > {settings.outlier_k:g}")
    _expert_rows(table, report)
    return table


def _divergence_rows(table: Table, report: QualityReport, settings: QualitySettings) -> None:
    divergence = report.divergence
    if divergence is None:
        _row(table, "action divergence", f"not measured: {report.divergence_note}", "")
        return
    _row(
        table,
        f"action divergence ({divergence.neighbours} neighbours, {len(divergence.queries)} steps)",
        f"mean {divergence.mean:.3f}, q{settings.divergence_quantile:g} "
        f"{divergence.quantile:.3f}; {divergence.share_above:.0%} of steps > "
        f"{settings.divergence_threshold:g}",
        f"share > {settings.divergence_share_max:.0%}",
    )
    _row(
        table,
        "action modes",
        f"{divergence.multimodal_share:.0%} of steps have >= 2; at most {divergence.max_modes}",
        f"share > {settings.multimodal_share_max:.0%}",
    )


def _expert_rows(table: Table, report: QualityReport) -> None:
    expert = report.expert
    spread = expert.length_spread
    _row(
        table,
        "episode length spread",
        f"min {spread['min']}, median {spread['median']:g}, max {spread['max']}, "
        f"IQR {spread['iqr']:g}",
        "",
    )
    success = "no success field" if expert.success_share is None else f"{expert.success_share:.0%}"
    _row(table, "expert success", success, "< 100%")
    if expert.shared_seed is not None:
        _row(table, "episodes sharing a seed", str(len(expert.shared_seed)), "> 0")
    for run in expert.runs:
        settings = {key: value for key, value in run.items() if key != "first_episode"}
        _row(table, f"run from episode {run['first_episode']}", json.dumps(settings), "")


def _row(table: Table, *cells: str) -> None:
    table.add_row(*(Text(cell) for cell in cells))  # plain text: values may hold brackets


def quality_json(report: QualityReport, settings: QualitySettings) -> dict:
    """The report as JSON-ready values (the module docstring lists the fields)."""
    horizon, n_obs_steps, n_action_steps = report.chunking
    divergence = report.divergence
    episodes, expert = report.episodes, report.expert
    return {
        "chunking": {
            "horizon": horizon,
            "n_obs_steps": n_obs_steps,
            "n_action_steps": n_action_steps,
        },
        "end_padding": report.end_padding,
        "coverage": {
            rule: {
                **coverage.pooled,
                "per_episode": _floats(coverage.per_episode),
                "tail_never_trained": _ints(coverage.tail_never_trained),
            }
            for rule, coverage in report.coverage.items()
        },
        "divergence": None
        if divergence is None
        else {
            "neighbours": divergence.neighbours,
            "query_steps": len(divergence.queries),
            "mean": divergence.mean,
            "quantile": divergence.quantile,
            "quantile_level": settings.divergence_quantile,
            "threshold": settings.divergence_threshold,
            "share_above": divergence.share_above,
            "multimodal_share": divergence.multimodal_share,
            "max_modes": divergence.max_modes,
        },
        "divergence_note": report.divergence_note,
        "episodes": {
            "length": _ints(episodes.length),
            "jerk": _floats(episodes.jerk),
            "idle": _floats(episodes.idle),
            "outliers": {name: _ints(found) for name, found in episodes.outliers.items()},
        },
        "expert": {
            "success_share": expert.success_share,
            "shared_seed": None if expert.shared_seed is None else _ints(expert.shared_seed),
            "runs": expert.runs,
            "length_spread": expert.length_spread,
        },
        "flags": report.flags,
    }


def _ints(values: np.ndarray) -> list[int]:
    return [int(value) for value in values]


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(value) if np.isfinite(value) else None for value in values]
