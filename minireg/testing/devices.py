"""A fake accelerator for tests: catches host round-trips in ops on a machine without a GPU.

``fake_device()`` is the generic array-API backend on array_api_strict's ``Device("device1")``.
Its arrays refuse implicit conversion to NumPy and mixing with arrays of other devices, just as
CuPy arrays do, so code that runs on it touches the data only through the backend.

    from minireg.testing.devices import fake_device
    x = minireg.tensor(fake_device().asarray([1.0, 2.0]), requires_grad=True)
    my_function(x).sum().backward()     # raises if my_function copies data to the host
"""
import functools


@functools.cache
def fake_device(name="device1"):
    try:
        import array_api_strict
    except ImportError as exc:
        raise ImportError("the fake device needs array-api-strict: pip install array-api-strict") from exc
    from minireg.backend import Backend, register_backend
    return register_backend(Backend(array_api_strict, device=array_api_strict.Device(name), name="fake"))
