"""Plots of training runs (matplotlib, an optional dependency: ``pip install minireg[examples]``)."""
import os

from minireg.errors import ArgumentError


def plot_history(history, path, title=None, metrics=("loss", "accuracy"), val_label="validation", best_epoch=None):
    """Learning curves: one panel per metric, training and ``val_*`` curves per panel; saved to ``path``.

    ``best_epoch`` (0-based, as ``EarlyStopping.best_epoch``): the epoch whose weights were restored,
    marked in every panel with a dashed line and a dot on each curve.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install minireg[examples]") from exc
    panels = [m for m in metrics if m in history]
    if not panels:
        raise ArgumentError(f"history has none of the metrics {metrics}; it has {sorted(history)}")
    epochs = len(history[panels[0]])
    if best_epoch is not None and not (isinstance(best_epoch, int) and 0 <= best_epoch < epochs):
        raise ArgumentError(f"plot_history: best_epoch must be an epoch index in [0, {epochs - 1}] (0-based, as "
                            f"EarlyStopping.best_epoch), got {best_epoch!r}")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, name in zip(axes[0], panels):
        curves = [(history[name], "train")] + ([(history[f"val_{name}"], val_label)] if f"val_{name}" in history else [])
        for values, label in curves:
            line, = ax.plot(range(1, len(values) + 1), values, label=label)
            if best_epoch is not None:
                ax.plot(best_epoch + 1, values[best_epoch], "o", color=line.get_color())
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="black", linestyle="--", linewidth=1,
                       label=f"restored best epoch ({best_epoch + 1})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
