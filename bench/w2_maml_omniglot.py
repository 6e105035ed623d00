"""W2: MAML (2nd and 1st order) on Omniglot-shaped random data, 5-way 1-shot, CNN4 (shared/bench/README.md, W2).

Same workload as the peer ``shared/bench/w2_maml_handwritten.py`` / ``w2_l2l_maml.py``: meta-batch 32, support
[5,28,28,1], query [75,28,28,1] (the same random tensors every iteration), 5 inner SGD steps lr 0.4 on the support,
query CE averaged over tasks, Adam(1e-3) outer. 2 warm-ups, then N timed meta-iterations; median reported.
Prints ONE JSON line with the peer's keys plus ours (compile time, variant, peer figure and ratio, and the
jitted 2048^2 matmul GFLOP/s measured in the same process, since the machine is shared and its load varies).

usage: python bench/w2_maml_omniglot.py [ITERS=8] [--variant vmap|map|loop] [--conv patches|gemm|lax]
  vmap: one jitted meta-step, tasks vmapped (the library's MAML.meta_train_step);
  map:  one jitted meta-step, tasks via lax.map;
  loop: a Python loop over tasks of one jitted per-task (loss, grad), then a jitted Adam step.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ceiling import PEER_CEILING_GFLOPS, TINY, matmul_gflops  # noqa: E402

from metanas.meta import MAML, Task, cross_entropy_accuracy  # noqa: E402
from metanas.models.cnn4 import CNN4  # noqa: E402
from metanas.nn.boundary import pure  # noqa: E402

WAYS, SHOTS, QUERIES, META_BATCH, INNER_STEPS, INNER_LR, OUTER_LR, WARMUP = 5, 1, 15, 32, 5, 0.4, 1e-3, 2
if TINY:  # the dry run of bench/gpu/run.sh
    META_BATCH, INNER_STEPS, WARMUP = 2, 1, 1
PEER = {"second_order": 4.566, "first_order": 2.598}  # hand-written peer, s/meta-iter (shared/bench/README.md)
PEER_L2L = {"second_order": 4.470, "first_order": 2.371}  # learn2learn 0.2.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("iters", nargs="?", type=int, default=8)
    ap.add_argument("--variant", default="vmap", choices=["vmap", "map", "loop"])
    ap.add_argument("--conv", default="patches", choices=["patches", "gemm", "lax"])
    ap.add_argument("--orders", default="second_order,first_order")
    args = ap.parse_args()
    key = jax.random.PRNGKey(0)
    init_fn, apply_fn = pure(lambda rngs: CNN4(WAYS, impl=args.conv, rngs=rngs))
    params = init_fn(key)
    rng = np.random.default_rng(1)
    tasks = Task(jnp.asarray(rng.standard_normal((META_BATCH, WAYS * SHOTS, 28, 28, 1)), jnp.float32),
                 jnp.tile(jnp.repeat(jnp.arange(WAYS), SHOTS)[None], (META_BATCH, 1)),
                 jnp.asarray(rng.standard_normal((META_BATCH, WAYS * QUERIES, 28, 28, 1)), jnp.float32),
                 jnp.tile(jnp.repeat(jnp.arange(WAYS), QUERIES)[None], (META_BATCH, 1)))
    tx = optax.adam(OUTER_LR)
    out = {"workload": "w2_maml_omniglot", "framework": f"jax (metanas MAML, {args.variant}, conv={args.conv})",
           "jax": jax.__version__, "ways": WAYS, "shots": SHOTS, "queries_per_class": QUERIES,
           "meta_batch": META_BATCH, "inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "outer": "Adam 1e-3",
           "warmup": WARMUP, "params": int(sum(p.size for p in jax.tree.leaves(params))),
           "threads": os.cpu_count(), "variant": args.variant, "conv": args.conv,
           "peer_source": "shared/bench/README.md"}
    for name in args.orders.split(","):
        algo = MAML(inner_steps=INNER_STEPS, inner_lr=INNER_LR, first_order=(name == "first_order"),
                    task_map="map" if args.variant == "map" else "vmap")
        state = algo.init_state(jax.tree.map(jnp.array, params), tx)  # a fresh copy: the step donates its state
        if args.variant in ("vmap", "map"):
            step = jax.jit(functools.partial(algo.meta_train_step, apply_fn=apply_fn, loss=cross_entropy_accuracy, tx=tx),
                           donate_argnums=(0,))
            t0 = time.perf_counter()
            step = step.lower(state, tasks, key).compile()
            compile_s = time.perf_counter() - t0

            def meta_iter(state):
                state, m = step(state, tasks, key)
                jax.block_until_ready(m["loss"])
                return state
        else:  # Python loop of a jitted per-task (loss, grad) and a jitted Adam update
            one_task = jax.tree.map(lambda a: a[:1], tasks)
            grad_fn = jax.jit(jax.grad(lambda mp, t: algo.meta_loss(mp, t, key, apply_fn=apply_fn,
                                                                     loss=cross_entropy_accuracy)[0] / META_BATCH))

            @functools.partial(jax.jit, donate_argnums=(0,))
            def update(state, grads):
                u, o = tx.update(grads, state.opt_state, state.params)
                return state._replace(params=optax.apply_updates(state.params, u), opt_state=o)

            t0 = time.perf_counter()
            grad_fn = grad_fn.lower(state.params, one_task).compile()
            compile_s = time.perf_counter() - t0
            per_task = [jax.tree.map(lambda a, i=i: a[i:i + 1], tasks) for i in range(META_BATCH)]

            def meta_iter(state):
                g = grad_fn(state.params, per_task[0])
                for t in per_task[1:]:
                    g = jax.tree.map(jnp.add, g, grad_fn(state.params, t))
                state = update(state, g)
                jax.block_until_ready(state.params)
                return state
        for _ in range(WARMUP):
            state = meta_iter(state)
        ts = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            state = meta_iter(state)
            ts.append(time.perf_counter() - t0)
        med = statistics.median(ts)
        out[name] = {"iters": args.iters, "median_s_per_meta_iter": med, "min_s": min(ts),
                     "all_s": [round(t, 4) for t in ts], "compile_s": round(compile_s, 2),
                     "peer_median_s": PEER[name], "speedup_vs_peer": round(PEER[name] / med, 3),
                     "peer_l2l_median_s": PEER_L2L[name], "speedup_vs_l2l": round(PEER_L2L[name] / med, 3)}
    ceiling = matmul_gflops()
    out["matmul_gflops_now"], out["peer_matmul_gflops"] = round(ceiling, 1), PEER_CEILING_GFLOPS
    for name in args.orders.split(","):  # a rough correction for the load of the shared machine
        out[name]["speedup_vs_peer_load_normalized"] = round(
            PEER[name] / (out[name]["median_s_per_meta_iter"] * ceiling / PEER_CEILING_GFLOPS), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
