"""RunLogger's plots and what it sends to wandb."""

from __future__ import annotations

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
