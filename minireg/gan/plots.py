"""GAN plots: sample grids (PNG, no dependency), loss curves and FID over training (matplotlib).

- ``image_grid(images)`` tiles images in [-1, 1] into one uint8 picture; ``save_image_grid``
  writes it as a PNG with a small built-in writer (zlib), so grids need nothing beyond NumPy;
  ``image_grid_png`` gives the PNG bytes. Saved grids are enlarged (nearest neighbour, no blur)
  to at least ``MIN_GRID_PIXELS`` = 512 pixels across, so 8x8 digits can be judged.
  Images may be (N, C, H, W) with C = 1 or 3, (N, H, W), or flat (N, D) with ``image_shape``
  (default: square grey images when D is a square).
- ``plot_losses(history, path)``: discriminator and generator losses, and each regularizer's
  value, against the step (a ``GANTrainer.history``).
- ``plot_fid(curves, path)``: FID against the step for one run (a history) or several
  (``{name: history}``), log scale.
"""
import math
import os
import struct
import zlib

import numpy as np

from minireg.errors import ArgumentError

MIN_GRID_PIXELS = 512


def _as_images(images, image_shape=None):
    """(N, H, W, C) uint8 from images in [-1, 1] of any supported layout."""
    x = np.asarray(images.numpy() if hasattr(images, "numpy") else images, dtype=np.float64)
    if x.ndim == 2:
        if image_shape is None or len(image_shape) == 1:
            side = math.isqrt(x.shape[1])
            if side * side != x.shape[1]:
                raise ArgumentError(f"flat samples of {x.shape[1]} values are not square images: pass image_shape")
            image_shape = (1, side, side)
        x = x.reshape((x.shape[0],) + tuple(image_shape))
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ArgumentError(f"expected images (N, C, H, W) with C = 1 or 3, (N, H, W) or flat (N, D), got {x.shape}")
    x = np.nan_to_num(x, nan=0.0)
    return np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)


def image_grid(images, ncols=None, padding=1, scale=1, image_shape=None, background=255):
    """Tile images in [-1, 1] row by row into one uint8 array (H, W) for grey or (H, W, 3) for RGB.

    ``ncols`` defaults to ceil(sqrt(N)); each image is enlarged ``scale`` times (nearest
    neighbour) and separated by ``padding`` pixels of ``background``.
    """
    return _tile(_as_images(images, image_shape), ncols, padding, scale, background)


def _tile(x, ncols, padding, scale, background):
    n, h, w, c = x.shape
    if n == 0:
        raise ArgumentError("image_grid: no images")
    if scale > 1:
        x = x.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, c), background, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = x[i]
    return grid[..., 0] if c == 1 else grid


def png_bytes(pixels):
    """A uint8 array (H, W) (grey) or (H, W, 3) (RGB) encoded as PNG bytes."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        color = 0
    elif pixels.ndim == 3 and pixels.shape[2] == 3:
        color = 2
    else:
        raise ArgumentError(f"write_png expects (H, W) or (H, W, 3) uint8 pixels, got {pixels.shape}")
    height, width = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))   # filter type 0 per row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_png(path, pixels):
    """Write a uint8 array (H, W) (grey) or (H, W, 3) (RGB) as a PNG file; returns the path."""
    data = png_bytes(pixels)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read_png(path):
    """The pixels of a PNG written by ``write_png`` (8-bit grey or RGB, filter 0), for tests."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ArgumentError(f"{path} is not a PNG file")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, _, color = header[:4]
    channels = 3 if color == 2 else 1
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    if np.any(rows[:, 0]):
        raise ArgumentError(f"{path}: only PNG filter type 0 is supported")
    pixels = rows[:, 1:].reshape(height, width, channels)
    return pixels[..., 0] if channels == 1 else pixels


def _readable_grid(images, ncols, scale, padding, image_shape):
    x = _as_images(images, image_shape)
    if scale is None:
        # nearest-neighbour enlargement until the grid is at least MIN_GRID_PIXELS wide
        cols = ncols or math.ceil(math.sqrt(x.shape[0]))
        scale = max(1, math.ceil(MIN_GRID_PIXELS / (cols * x.shape[2])))
    return _tile(x, ncols, padding, scale, 255)


def save_image_grid(images, path, ncols=None, scale=None, padding=1, image_shape=None):
    """``image_grid`` written to ``path`` as a PNG; ``scale`` defaults to the smallest integer
    enlargement that makes the grid at least ``MIN_GRID_PIXELS`` wide."""
    return write_png(path, _readable_grid(images, ncols, scale, padding, image_shape))


def image_grid_png(images, ncols=None, scale=None, padding=1, image_shape=None):
    """The PNG bytes of what ``save_image_grid`` would write."""
    return png_bytes(_readable_grid(images, ncols, scale, padding, image_shape))


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install minireg[examples]") from exc
    return plt


def _save(fig, path, plt):
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _smooth(values, window):
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    valid = np.convolve(np.nan_to_num(values), kernel, mode="valid")
    return np.concatenate([np.full(window - 1, np.nan), valid])


def plot_losses(history, path, title=None, smooth=None):
    """Loss curves of a ``GANTrainer.history``: D and G losses (left), regularizer values (right,
    when there are any); a moving average over ``smooth`` steps (default ~1% of the run)."""
    plt = _pyplot()
    steps = np.arange(1, len(history["d_loss"]) + 1)
    if not len(steps):
        raise ArgumentError("plot_losses: the history is empty")
    smooth = smooth or max(1, len(steps) // 100)
    penalties = [k for k in history if k.startswith(("d/", "g/"))]
    fig, axes = plt.subplots(1, 2 if penalties else 1, figsize=(11 if penalties else 6, 3.6), squeeze=False)
    ax = axes[0][0]
    for key, label in (("d_loss", "discriminator"), ("g_loss", "generator")):
        ax.plot(steps, _smooth(history[key], smooth), label=label)
    ax.set_xlabel("generator step")
    ax.set_ylabel("adversarial loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if penalties:
        ax = axes[0][1]
        for key in penalties:
            ax.plot(steps, _smooth(history[key], smooth), label=key)
        ax.set_xlabel("generator step")
        ax.set_ylabel("regularizer value")
        if all(np.nanmin(np.asarray(history[k], dtype=float)) > 0 for k in penalties
               if np.isfinite(np.asarray(history[k], dtype=float)).any()):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path, plt)


def plot_fid(curves, path, title=None, metric="fid", reference=None):
    """``metric`` over training: ``curves`` is one history (with ``eval`` entries) or ``{name:
    history}``; ``reference`` an optional ``{label: value}`` of horizontal lines (e.g. the untrained
    generator's FID)."""
    plt = _pyplot()
    if "eval" in curves:
        curves = {"": curves}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    plotted = False
    colors = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, (name, history) in enumerate(curves.items()):
        points = [(e["step"], e[metric]) for e in history.get("eval", []) if metric in e]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="os^v"[i // 10 % 4] if len(curves) > 10 else "o", markersize=3, label=name or None,
                    color=colors(i % colors.N))
            plotted = True
    for label, value in (reference or {}).items():
        ax.axhline(value, linestyle="--", color="grey", linewidth=1)
        ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=8, color="grey",
                    va="bottom")
    if not plotted:
        plt.close(fig)
        raise ArgumentError(f"plot_fid: no {metric!r} values in the histories' 'eval' entries")
    ax.set_yscale("log")
    ax.set_xlabel("generator step")
    ax.set_ylabel(f"classifier-{metric.upper()}" if metric == "fid" else metric)
    ax.grid(alpha=0.3, which="both")
    if any(curves):
        ax.legend(fontsize=7, ncols=2 if len(curves) > 6 else 1)
    if title:
        ax.set_title(title)
    return _save(fig, path, plt)


__all__ = ["MIN_GRID_PIXELS", "image_grid", "png_bytes", "write_png", "read_png", "save_image_grid", "image_grid_png",
           "plot_losses", "plot_fid"]
