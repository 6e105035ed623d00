"""W3: Reptile (Nichol et al. 2018), Omniglot 5-way 1-shot config on random data (shared/bench/README.md, W3).

Same workload as the peer ``shared/bench/w3_reptile_omniglot.py``: CNN4 (5-way head, batch-stat BN); per task
5 classes x 12 train-shots = 60 images; 5 inner Adam(lr 1e-3, betas (0, 0.999)) steps on mini-batches of 10
(consecutive slices of a permutation); one inner-Adam state persists across tasks and iterations; meta-batch 5,
theta <- theta + 1.0 * (mean_t phi_t - theta). One jitted meta-step (``Reptile.meta_train_step``; tasks run as
a ``lax.scan`` because the Adam state is carried from task to task). 2 warm-ups, then N timed.
Difference from the peer: each task draws its own permutation (the peer reuses one); the compute is identical.
Prints ONE JSON line with the peer's keys plus ours.

usage: python bench/w3_reptile_omniglot.py [ITERS=20] [--conv patches|gemm|lax]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ceiling import PEER_CEILING_GFLOPS, TINY, matmul_gflops  # noqa: E402

from metanas.meta import Reptile, Task, cross_entropy_accuracy  # noqa: E402
from metanas.models.cnn4 import CNN4  # noqa: E402
from metanas.nn.boundary import pure  # noqa: E402

WAYS, TRAIN_SHOTS, INNER_BATCH, INNER_ITERS, INNER_LR, META_BATCH, META_STEP, WARMUP = 5, 12, 10, 5, 1e-3, 5, 1.0, 2
if TINY:  # the dry run of bench/gpu/run.sh
    META_BATCH, INNER_ITERS, WARMUP = 2, 1, 1
PEER_MEDIAN_S = 0.2638  # shared/bench/README.md, W3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("iters", nargs="?", type=int, default=20)
    ap.add_argument("--conv", default="patches", choices=["patches", "gemm", "lax"])
    args = ap.parse_args()
    key = jax.random.PRNGKey(0)
    init_fn, apply_fn = pure(lambda rngs: CNN4(WAYS, impl=args.conv, rngs=rngs))
    params = init_fn(key)
    rng = np.random.default_rng(1)
    n = WAYS * TRAIN_SHOTS
    x = jnp.asarray(rng.standard_normal((META_BATCH, n, 28, 28, 1)), jnp.float32)
    y = jnp.tile(jnp.repeat(jnp.arange(WAYS), TRAIN_SHOTS)[None], (META_BATCH, 1))
    tasks = Task(x, y, x[:, :0], y[:, :0])  # Reptile's meta-training uses the support set only
    algo = Reptile(inner_steps=INNER_ITERS, inner_lr=INNER_LR, inner_opt="adam", inner_batch=INNER_BATCH,
                   persist_inner_state=True)
    tx = optax.sgd(META_STEP)
    state = algo.init_state(params, tx)
    step = jax.jit(functools.partial(algo.meta_train_step, apply_fn=apply_fn,
                                     loss=cross_entropy_accuracy, tx=tx), donate_argnums=(0,))
    t0 = time.perf_counter()
    step = step.lower(state, tasks, key).compile()
    compile_s = time.perf_counter() - t0

    def meta_iter(state, i):
        state, m = step(state, tasks, jax.random.fold_in(key, i))
        jax.block_until_ready(m["loss"])
        return state

    for i in range(WARMUP):
        state = meta_iter(state, i)
    ts = []
    for i in range(args.iters):
        t0 = time.perf_counter()
        state = meta_iter(state, WARMUP + i)
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    ceiling = matmul_gflops()
    print(json.dumps({
        "workload": "w3_reptile_omniglot", "framework": f"jax (metanas Reptile, conv={args.conv})",
        "jax": jax.__version__, "ways": WAYS, "train_shots": TRAIN_SHOTS, "inner_batch": INNER_BATCH,
        "inner_iters": INNER_ITERS, "inner_opt": "Adam lr1e-3 betas(0,0.999), state persists",
        "meta_batch": META_BATCH, "meta_step": META_STEP, "warmup": WARMUP, "iters": args.iters,
        "median_s_per_meta_iter": med, "min_s": min(ts), "all_s": [round(t, 5) for t in ts],
        "threads": os.cpu_count(), "compile_s": round(compile_s, 2), "params": int(sum(p.size for p in jax.tree.leaves(params))),
        "peer_median_s": PEER_MEDIAN_S, "speedup_vs_peer": round(PEER_MEDIAN_S / med, 3),
        "peer_source": "shared/bench/README.md",
        "matmul_gflops_now": round(ceiling, 1), "peer_matmul_gflops": PEER_CEILING_GFLOPS,
        "speedup_vs_peer_load_normalized": round(PEER_MEDIAN_S / (med * ceiling / PEER_CEILING_GFLOPS), 3),
    }))


if __name__ == "__main__":
    main()
