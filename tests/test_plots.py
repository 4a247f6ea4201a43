"""Learning-curve plots are written as PNG files."""
import pytest

from minireg.plots import plot_history

pytest.importorskip("matplotlib")


def test_plot_history_writes_a_png(tmp_path):
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]}
    path = plot_history(history, tmp_path / "curves" / "run.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_history_rejects_a_history_without_the_metrics(tmp_path):
    with pytest.raises(ValueError, match="none of the metrics"):
        plot_history({"lr": [0.1]}, tmp_path / "x.png")
