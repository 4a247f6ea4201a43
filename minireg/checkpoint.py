"""Checkpoints: a model (and optionally its optimizer) in one ``.npz`` file, with no pickle.

    minireg.save("run/best.npz", model, optimizer, epoch=12, val_accuracy=0.981)
    info = minireg.load("run/best.npz", model, optimizer)   # -> {"epoch": 12, "val_accuracy": 0.981}

Arrays are stored as NumPy arrays; everything else (optimizer hyperparameters, your metadata) as
JSON text inside the archive, and the file is read with ``allow_pickle=False``. Writing goes to a
temporary file in the same directory that is then renamed over the target, so a crash never
leaves a half-written checkpoint. Loading validates the whole checkpoint against the model (and
optimizer) first: any missing, unexpected or mis-shaped key is reported and nothing changes.
"""
import json
import os
import tempfile

import numpy as np

from minireg.errors import ShapeError

_FORMAT = "minireg-checkpoint-1"


def _encode(value, arrays, path):
    """JSON-ready structure; arrays go to ``arrays`` under a key recorded in their place."""
    if isinstance(value, np.generic):      # NumPy scalars also expose __array_namespace__: numbers first
        return value.item()
    if hasattr(value, "__array_namespace__"):
        key = f"array{len(arrays)}:{path}"
        arrays[key] = np.asarray(value)
        return {"__array__": key}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, arrays, f"{path}.{k}") for k, v in value.items()}
        return {"__items__": [[k, _encode(v, arrays, f"{path}.{k}")] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__tuple__" if isinstance(value, tuple) else "__list__":
                [_encode(v, arrays, f"{path}.{i}") for i, v in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path!r} in a checkpoint: "
                    f"use arrays, numbers, strings, lists and dicts")


def _decode(value, archive):
    if isinstance(value, dict):
        if "__array__" in value:
            return archive[value["__array__"]]
        if "__items__" in value:
            return {k: _decode(v, archive) for k, v in value["__items__"]}
        if "__tuple__" in value:
            return tuple(_decode(v, archive) for v in value["__tuple__"])
        if "__list__" in value:
            return [_decode(v, archive) for v in value["__list__"]]
        return {k: _decode(v, archive) for k, v in value.items()}
    return value


def save(path, model, optimizer=None, **metadata):
    """Write ``model`` (and ``optimizer``) state plus JSON-able ``metadata`` atomically to ``path``."""
    arrays = {}
    document = {"format": _FORMAT,
                "model": _encode(dict(model.state_dict()), arrays, "model"),
                "optimizer": None if optimizer is None else _encode(optimizer.state_dict(), arrays, "optimizer"),
                "metadata": _encode(metadata, arrays, "metadata")}
    arrays["__document__"] = np.array(json.dumps(document))
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def read(path):
    """The checkpoint's contents as ``{"model": state_dict, "optimizer": state_dict | None, "metadata": dict}``."""
    with np.load(path, allow_pickle=False) as archive:
        if "__document__" not in archive.files:
            raise ValueError(f"{path} is not a minireg checkpoint (no __document__ entry)")
        document = json.loads(str(archive["__document__"]))
        if document.get("format") != _FORMAT:
            raise ValueError(f"{path}: unsupported checkpoint format {document.get('format')!r}, expected {_FORMAT!r}")
        arrays = {k: archive[k] for k in archive.files}
    return {key: _decode(document[key], arrays) for key in ("model", "optimizer", "metadata")}


def load(path, model, optimizer=None, strict=True):
    """Load a checkpoint into ``model`` (and ``optimizer``); returns the saved metadata.

    Either everything loads or nothing changes: a mismatch raises ``ShapeError`` listing the
    missing, unexpected and mis-shaped keys.
    """
    contents = read(path)
    if optimizer is not None and contents["optimizer"] is None:
        raise ValueError(f"{path} holds no optimizer state, but an optimizer was given")
    before = model.state_dict()
    model.load_state_dict(contents["model"], strict=strict)   # validates fully before changing anything
    if optimizer is not None:
        try:
            optimizer.load_state_dict(contents["optimizer"])
        except (ValueError, TypeError, KeyError) as exc:
            model.load_state_dict(before)                        # keep the pair consistent
            raise ShapeError(f"cannot load optimizer state from {path}: {exc}") from exc
    return contents["metadata"]
