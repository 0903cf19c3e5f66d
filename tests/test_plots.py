"""The figure helpers draw what they are given: one line/bar per series, values in the units they say."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from pruning_utils import plots  # noqa: E402
from pruning_utils.sensitivity import SensitivityScan  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def line_data(ax):
    return {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}


def test_accuracy_vs_sparsity_plots_percentages_and_the_dense_line():
    fig = plots.plot_accuracy_vs_sparsity({"global": ([0.5, 0.9], [0.98, 0.95])}, baseline=0.99)
    ax = fig.axes[0]
    data = line_data(ax)
    assert data["global"] == [98.0, 95.0]
    assert list(ax.get_lines()[0].get_xdata()) == [50.0, 90.0]
    assert "dense (99.0%)" in data
    assert ax.get_legend() is not None


def test_training_curves_have_loss_and_accuracy_panels():
    history = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "train_acc": [0.5, 0.9], "val_loss": [1.1, 0.6],
               "val_acc": [0.4, 0.8]}
    fig = plots.plot_training_curves(history)
    loss, acc = fig.axes
    assert line_data(loss) == {"train": [1.0, 0.5], "validation": [1.1, 0.6]}
    assert line_data(acc) == {"train": [50.0, 90.0], "validation": [40.0, 80.0]}


def test_tradeoff_puts_one_labelled_point_per_model_and_stacks_coinciding_labels():
    results = {"dense": {"bytes": 1000, "accuracy": 0.98}, "a": {"bytes": 100, "accuracy": 0.97},
               "b": {"bytes": 100, "accuracy": 0.97}}
    fig = plots.plot_tradeoff(results, "bytes")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["dense", "a", "b"]
    offsets = [t.xyann[1] for t in ax.texts]
    assert offsets[1] != offsets[2]  # same point, labels not on top of each other
    assert ax.get_xscale() == "log"


def test_sensitivity_plot_has_one_line_per_layer():
    scan = SensitivityScan([0.5, 0.9], 0.98, {"conv1": [0.9, 0.5], "fc": [0.98, 0.97]})
    data = line_data(plots.plot_sensitivity(scan).axes[0])
    assert data["conv1"] == [90.0, 50.0] and data["fc"] == [98.0, 97.0]
    assert data["dense (98.0%)"] == [98.0, 98.0]


def test_speedup_vs_sparsity_has_a_break_even_line():
    fig = plots.plot_speedup_vs_sparsity({"batch 1": ([0.5, 0.9], [0.8, 4.0])})
    ax = fig.axes[0]
    assert line_data(ax)["batch 1"] == [0.8, 4.0]
    assert line_data(ax)["as fast as dense"] == [1.0, 1.0]
    assert ax.get_yscale() == "log"


def test_pruning_runs_share_the_step_axis():
    run = {"step": [0, 4], "sparsity": [0.0, 0.5], "accuracy": [0.9, 0.8]}
    fig = plots.plot_pruning_runs({"gradual": run})
    top, bottom = fig.axes
    assert line_data(top) == {"gradual": [0.0, 50.0]} and line_data(bottom) == {"gradual": [90.0, 80.0]}


def test_speedups_draw_one_bar_group_per_setting():
    fig = plots.plot_speedups({"50%": {"fewer FLOPs": 3.9, "speed-up": 2.5}, "75%": {"fewer FLOPs": 15.0}})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sorted(h for h in heights if h == h) == [2.5, 3.9, 15.0]


def test_accuracy_vs_sparsity_draws_wilson_bands_when_told_the_test_size():
    from pruning_utils.stats import accuracy_interval

    fig = plots.plot_accuracy_vs_sparsity({"global": ([0.5, 0.9], [0.95, 0.90])}, n=360)
    (band,) = fig.axes[0].collections
    ys = band.get_paths()[0].vertices[:, 1]
    expected = [accuracy_interval(round(a * 360), 360) for a in (0.95, 0.90)]
    assert min(ys) == pytest.approx(100 * min(e.low for e in expected))
    assert max(ys) == pytest.approx(100 * max(e.high for e in expected))
    assert not plots.plot_accuracy_vs_sparsity({"global": ([0.5], [0.95])}).axes[0].collections  # no n, no band


def test_results_by_seed_draws_the_t_interval_of_the_mean():
    from pruning_utils.stats import seed_interval

    values = [0.90, 0.93, 0.92]
    fig = plots.plot_results_by_seed({"distilled": values, "single": [0.85]})
    ax = fig.axes[0]
    from matplotlib.collections import LineCollection

    vertical = [s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()
                if s[0][0] == s[1][0]]
    assert len(vertical) == 1  # one error bar: the single-seed column gets none
    low, high = sorted(vertical[0][:, 1])
    band = seed_interval(values)
    assert (low, high) == pytest.approx((100 * band.low, 100 * band.high))
    assert ax.get_ylim()[0] < 100 * band.low and ax.get_ylim()[1] > 100 * band.high
