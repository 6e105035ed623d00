"""The matmul ceiling measured right now (the machine is shared: figures scale with its load)."""

from __future__ import annotations

import os
import statistics
import time

import jax
import jax.numpy as jnp


# METANAS_BENCH_TINY=1: every bench/w*.py runs at tiny sizes (the CPU dry run of bench/gpu/run.sh; figures meaningless)
TINY = os.environ.get("METANAS_BENCH_TINY") == "1"


def matmul_gflops(n: int = 2048, iters: int = 5) -> float:
    """Median GFLOP/s of a jitted f32 [n,n] @ [n,n] (shared/bench/ceiling.py's workload; n=256 when ``TINY``)."""
    n = 256 if TINY else n
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(ts) / 1e9


PEER_CEILING_GFLOPS = 380.5  # torch mm 2048^2 on the peer's quiet machine (shared/bench/README.md)
