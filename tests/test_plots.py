"""Learning-curve plots are written as PNG files and mark the restored best epoch."""
import pytest

from minireg.errors import ArgumentError
from minireg.plots import plot_history

pytest.importorskip("matplotlib")


def test_plot_history_writes_a_png(tmp_path):
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]}
    path = plot_history(history, tmp_path / "curves" / "run.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_restored_best_epoch_is_marked(tmp_path, monkeypatch):
    import matplotlib.axes
    lines = []
    real = matplotlib.axes.Axes.axvline

    def recording(self, x=0, *args, **kwargs):
        lines.append((x, kwargs.get("label")))
        return real(self, x, *args, **kwargs)
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", recording)
    history = {"loss": [1.0, 0.5, 0.6], "val_loss": [1.1, 0.7, 0.9], "accuracy": [0.5, 0.8, 0.7]}
    plot_history(history, tmp_path / "run.png", best_epoch=1)
    assert lines == [(2, "restored best epoch (2)")] * 2        # one per panel, at epoch 2 (1-based)
    with pytest.raises(ArgumentError, match=r"best_epoch must be an epoch index in \[0, 2\]"):
        plot_history(history, tmp_path / "run.png", best_epoch=3)


def test_plot_history_rejects_a_history_without_the_metrics(tmp_path):
    with pytest.raises(ValueError, match="none of the metrics"):
        plot_history({"lr": [0.1]}, tmp_path / "x.png")
