"""Plots of training runs (matplotlib, an optional dependency: ``pip install minireg[examples]``)."""
import os


def plot_history(history, path, title=None, metrics=("loss", "accuracy"), val_label="validation"):
    """Learning curves: one panel per metric, training and ``val_*`` curves per panel; saved to ``path``."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install minireg[examples]") from exc
    panels = [m for m in metrics if m in history]
    if not panels:
        raise ValueError(f"history has none of the metrics {metrics}; it has {sorted(history)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, name in zip(axes[0], panels):
        epochs = range(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label=val_label)
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
