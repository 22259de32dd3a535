"""RunLogger's plots and what it sends to wandb."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import PolyCollection

from robopolicy.training.run_logger import RunLogger


def _success_rows():
    return [
        {"step": step, "eval/success_rate": 0.0, "eval/success_low": 0.0, "eval/success_high": h}
        for step, h in ((10, 0.04), (20, 0.03), (30, 0.02))
    ]


def test_success_plot_has_a_fixed_unit_axis_and_its_interval_band(tmp_path):
    logger = RunLogger(tmp_path, wandb_mode="disabled")
    figure = logger.figure(["eval/success_rate"], _success_rows())
    axis = figure.axes[0]
    assert axis.get_ylim() == (0.0, 1.0)
    bands = [c for c in axis.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1 and bands[0].get_paths()[0].vertices[:, 1].max() >= 0.04 - 1e-9


def test_a_loss_plot_scales_itself_and_has_no_band(tmp_path):
    logger = RunLogger(tmp_path, wandb_mode="disabled")
    axis = logger.figure(["train/loss"], [{"step": 1, "train/loss": 5.0}]).axes[0]
    assert axis.get_ylim() != (0.0, 1.0) and not axis.collections


def test_final_figures_plots_and_video_reach_the_offline_wandb_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    training = RunLogger(tmp_path, wandb_mode="offline")
    for row in _success_rows():
        training.log({k: v for k, v in row.items() if k != "step"}, row["step"])
    training.plot({"success": ["eval/success_rate"]})
    training.finish()
    final = RunLogger(tmp_path, wandb_mode="offline")  # train.py's final evaluation
    final.video("final_episode0", np.zeros((3, 8, 8, 3), np.uint8), fps=10)
    final.summarize({"final/success_rate": 0.25})
    final.finish()
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    run_id = (tmp_path / "wandb" / "run_id").read_text()
    assert len(runs) == 2 and all(run.name.endswith(run_id) for run in runs)  # one wandb run
    media = {
        path.parent.name + "/" + path.name.split("_")[0]
        for run in runs
        for path in run.glob("files/media/*/**/*")
        if path.is_file()
    }
    assert {"plots/success", "video/final"} <= media, media
    record = (runs[1] / f"run-{run_id}.wandb").read_bytes()
    assert b"final/success_rate" in record
