"""Checkpoints: a model (and optionally its optimizer, LR schedulers and the random state) in one
``.npz`` file, with no pickle.

    minireg.save("run/best.npz", model, optimizer, epoch=12, val_accuracy=0.981)
    info = minireg.load("run/best.npz", model, optimizer)   # -> {"epoch": 12, "val_accuracy": 0.981}

    # exact resume: schedulers and minireg.random's state too (``fit(..., resume_from=path)`` does this)
    minireg.save(path, model, optimizer, schedulers=[sched], rng_state=True, epoch=3)
    minireg.load(path, model, optimizer, schedulers=[sched], rng_state=True)

Arrays are stored as NumPy arrays (device arrays are copied through their backend); everything
else (optimizer hyperparameters, your metadata) as JSON text inside the archive, and the file is
read with ``allow_pickle=False``.

Writing goes to a temporary file ``.tmp-<name>.<pid>.<random>.npz`` in the same directory, which
is flushed, fsynced and renamed over the target, so a crash never leaves a half-written
checkpoint. The file gets the permissions of any new file of yours (your umask). Temporaries that
an interrupted save left behind are removed by the next save of the same target, once the
process that wrote them is gone.

Loading is all or nothing: the file is read and decoded completely (a truncated or corrupt file,
bad JSON, a dangling array reference or a missing entry raise ``CheckpointError`` naming the path
and the problem), then the optimizer, scheduler and random states are validated, then the model
state is validated and assigned, and only then the rest is assigned. Any mismatch raises
``CheckpointError`` and leaves the model, the optimizer, the schedulers and the random state as
they were.
"""
import json
import os
import re
import secrets
import time
import zipfile
import zlib

import numpy as np

from minireg import random as _random
from minireg.errors import ArgumentTypeError, CheckpointError, MiniregError

_FORMAT = "minireg-checkpoint-1"
_SECTIONS = ("model", "optimizer", "schedulers", "rng", "metadata")
_STALE_SECONDS = 24 * 3600     # a temporary of a live pid is removed only when older than this


def _host_array(value):
    """A NumPy copy of any array (NumPy, a device array, a Tensor), through its backend."""
    from minireg.backend import backend_of
    from minireg.tensor import Tensor
    if isinstance(value, Tensor):
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    return backend_of(value).to_numpy(value)


def _encode(value, arrays, path):
    """JSON-ready structure; arrays go to ``arrays`` under a key recorded in their place."""
    from minireg.tensor import Tensor
    if isinstance(value, np.generic):      # NumPy scalars also expose __array_namespace__: numbers first
        return value.item()
    if isinstance(value, Tensor) or hasattr(value, "__array_namespace__"):
        key = f"array{len(arrays)}:{path}"
        arrays[key] = _host_array(value)
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
    raise ArgumentTypeError(f"cannot store {type(value).__name__} at {path!r} in a checkpoint: "
                            f"use arrays, numbers, strings, lists and dicts")


def _decode(value, archive, path, where):
    if isinstance(value, list):            # JSON lists only appear inside the markers below
        raise CheckpointError(f"{path}: malformed entry at {where}: a bare list")
    if not isinstance(value, dict):
        return value
    try:
        if "__array__" in value:
            key = value["__array__"]
            if key not in archive:
                raise CheckpointError(f"{path}: dangling reference at {where}: the array {key!r} is not in the file")
            return archive[key]
        if "__items__" in value:
            return {k: _decode(v, archive, path, f"{where}.{k}") for k, v in value["__items__"]}
        if "__tuple__" in value:
            return tuple(_decode(v, archive, path, f"{where}.{i}") for i, v in enumerate(value["__tuple__"]))
        if "__list__" in value:
            return [_decode(v, archive, path, f"{where}.{i}") for i, v in enumerate(value["__list__"])]
    except CheckpointError:
        raise
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed entry at {where}: {exc}") from None
    return {k: _decode(v, archive, path, f"{where}.{k}") for k, v in value.items()}


# -- writing -------------------------------------------------------------------------------------
def _temporaries(directory, name):
    """(path, pid) of the temporaries that saves of ``name`` made in ``directory``."""
    pattern = re.compile(re.escape(f".tmp-{name}.") + r"(\d+)\.[0-9a-f]+\.npz")
    for entry in os.scandir(directory):
        match = pattern.fullmatch(entry.name)
        if match:
            yield entry.path, int(match.group(1))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # exists, owned by someone else
        return True
    return True


def _remove_stale_temporaries(directory, name):
    """Delete temporaries of ``name`` left by saves that were killed: their process is gone (or,
    for a pid that now belongs to another process, they are older than a day)."""
    now = time.time()
    for tmp, pid in _temporaries(directory, name):
        try:
            if pid != os.getpid() and (not _alive(pid) or now - os.path.getmtime(tmp) > _STALE_SECONDS):
                os.unlink(tmp)
        except FileNotFoundError:   # another save removed it first
            pass


def save(path, model, optimizer=None, *, schedulers=(), rng_state=False, **metadata):
    """Write ``model`` (and ``optimizer``, the ``state_dict()`` of each of ``schedulers``, and with
    ``rng_state`` minireg.random's state) plus JSON-able ``metadata`` atomically to ``path``."""
    arrays = {}
    document = {"format": _FORMAT,
                "model": _encode(dict(model.state_dict()), arrays, "model"),
                "optimizer": None if optimizer is None else _encode(optimizer.state_dict(), arrays, "optimizer"),
                "schedulers": _encode([s.state_dict() for s in schedulers], arrays, "schedulers"),
                "rng": _encode(_random.get_state(), arrays, "rng") if rng_state else None,
                "metadata": _encode(metadata, arrays, "metadata")}
    arrays["__document__"] = np.array(json.dumps(document))
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    _remove_stale_temporaries(directory, name)
    tmp = os.path.join(directory, f".tmp-{name}.{os.getpid()}.{secrets.token_hex(4)}.npz")
    # os.open with mode 0o666 lets the kernel apply the umask (tempfile.mkstemp would force 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    try:                            # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


# -- reading -------------------------------------------------------------------------------------
def _read_archive(path):
    """``(document, arrays)`` of the file, every array read; corrupt files raise CheckpointError."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path} is not a minireg checkpoint (a single .npy array, not an .npz archive)")
        with archive:
            arrays = {k: archive[k] for k in archive.files}
    except CheckpointError:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise CheckpointError(f"{path} is not a minireg checkpoint: it is not an .npz archive of plain arrays "
                                  f"but holds pickled data, which minireg never reads ({exc})") from None
        raise CheckpointError(f"{path}: cannot read the checkpoint (corrupt file): {exc}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint (truncated or corrupt file): "
                              f"{type(exc).__name__}: {exc}") from None
    if "__document__" not in arrays:
        raise CheckpointError(f"{path} is not a minireg checkpoint (no __document__ entry)")
    try:
        document = json.loads(str(arrays.pop("__document__")))
    except ValueError as exc:
        raise CheckpointError(f"{path}: the checkpoint's JSON document is corrupt: {exc}") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path}: the checkpoint's JSON document is a {type(document).__name__}, not an object")
    if document.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {document.get('format')!r}, "
                              f"expected {_FORMAT!r}")
    return document, arrays


def read(path):
    """The checkpoint's contents, fully decoded and checked for corruption:
    ``{"model": state_dict, "optimizer": state_dict | None, "schedulers": [state_dict],
    "rng": state | None, "metadata": dict}``."""
    document, arrays = _read_archive(path)
    missing = [key for key in ("model", "optimizer", "metadata") if key not in document]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks the entries {missing}")
    defaults = {"schedulers": [], "rng": None}      # entries of later minireg versions
    contents = {key: _decode(document.get(key, defaults.get(key)), arrays, path, key) for key in _SECTIONS}
    if not isinstance(contents["model"], dict):
        raise CheckpointError(f"{path}: the model entry is a {type(contents['model']).__name__}, not a state dict")
    if not isinstance(contents["metadata"], dict):
        raise CheckpointError(f"{path}: the metadata entry is a {type(contents['metadata']).__name__}, not a dict")
    if not isinstance(contents["schedulers"], list):
        raise CheckpointError(f"{path}: the schedulers entry is a {type(contents['schedulers']).__name__}, not a list")
    return contents


def _prepared(path, what, obj, state):
    """Validate ``state`` for ``obj``; returns the assignment (``obj._prepared_load`` when it has
    one: validation first, then an assignment that cannot fail)."""
    try:
        if hasattr(obj, "_prepared_load"):
            return obj._prepared_load(state)
        return lambda: obj.load_state_dict(state)
    except (MiniregError, TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot load the {what} from {path}: {exc}") from exc


def _restore(path, contents, model, optimizer=None, schedulers=(), rng_state=False, strict=True, extra=()):
    """Load ``read(path)`` output into the objects, all or nothing (see the module docstring).
    ``extra`` are assignments already validated by the caller (``Trainer`` state), run last."""
    schedulers = list(schedulers)
    if optimizer is not None and contents["optimizer"] is None:
        raise CheckpointError(f"{path} holds no optimizer state, but an optimizer was given")
    if len(schedulers) != len(contents["schedulers"]):
        raise CheckpointError(f"{path} holds {len(contents['schedulers'])} scheduler states, "
                              f"but {len(schedulers)} schedulers were given")
    if rng_state and contents["rng"] is None:
        raise CheckpointError(f"{path} holds no random state (save it with rng_state=True)")
    assignments = []
    if optimizer is not None:
        assignments.append(_prepared(path, "optimizer state", optimizer, contents["optimizer"]))
    for i, (scheduler, state) in enumerate(zip(schedulers, contents["schedulers"])):
        assignments.append(_prepared(path, f"state of scheduler {i} ({type(scheduler).__name__})", scheduler, state))
    previous_rng = _random.get_state() if rng_state else None
    if rng_state:
        try:
            _random.set_state(contents["rng"])        # validates before it assigns
        except (MiniregError, TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot load the random state from {path}: {exc}") from exc
    try:
        model.load_state_dict(contents["model"], strict=strict)   # validates fully before changing anything
    except (MiniregError, TypeError, ValueError, KeyError) as exc:
        if rng_state:
            _random.set_state(previous_rng)
        raise CheckpointError(f"cannot load the model state from {path}: {exc}") from exc
    for assign in (*assignments, *extra):
        assign()
    return contents["metadata"]


def load(path, model, optimizer=None, *, schedulers=(), rng_state=False, strict=True):
    """Load a checkpoint into ``model`` (and ``optimizer``, ``schedulers``, and with ``rng_state``
    minireg.random's state); returns the saved metadata.

    Either everything loads or nothing changes: a corrupt file or any mismatch raises
    ``CheckpointError`` naming the path and listing the problems.
    """
    return _restore(path, read(path), model, optimizer, schedulers, rng_state, strict)
