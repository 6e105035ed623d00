"""Data parallelism over the local devices (``jax.sharding``): batches split along a ``batch`` mesh axis, state
replicated; XLA inserts the gradient all-reduce. Used by the NAS runner's ``train.data_parallel``."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def data_parallel_shardings(enabled: bool):
    """``(batch_sharding, replicated)`` over all local devices, or ``(None, None)`` for one device / disabled."""
    if not enabled or jax.local_device_count() < 2:
        return None, None
    from jax.sharding import NamedSharding, PartitionSpec as P

    mesh = jax.make_mesh((jax.local_device_count(),), ("batch",))
    return NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())


def put(x, sharding):
    """``x`` on the device(s): sharded by ``sharding``, or the default device when it is None."""
    return jnp.asarray(x) if sharding is None else jax.device_put(x, sharding)
