"""W1 of shared/bench/README.md: one DARTS first-order search step on the NB201 supernet (C=16, N=5, batch 64,
random data), as xautodl's DARTS-V1 loop: SGD(lr 0.025 fixed, momentum 0.9, nesterov, wd 3e-4, clip 5) on the
weights with a train batch, Adam(3e-4, (0.5, 0.999), wd 1e-3) on alpha with a val batch; plus the second-order
(exact unrolled) step. Prints one JSON line with the peer script's keys plus ours.

    .venv/bin/python bench/w1_darts_nb201.py                      # the W1 protocol: 3 warm-ups, 15 timed steps
    .venv/bin/python bench/w1_darts_nb201.py --steps 2 --warmup 1 --second-order-steps 1   # smoke check
    .venv/bin/python bench/w1_darts_nb201.py --steps 3 --warmup 1 --second-order-steps 0 --phases  # compile split

The first-order step runs in xautodl's DARTS-V1 order (weight step on the train batch, then the alpha step on the
val batch: ``DARTS(alpha_first=False)``); the second-order step in the paper's order (alpha step with the exact
unrolled hypergradient, then the weight step), as xautodl's DARTS-V2; ``second_order_fd_*`` times the same step with
the paper's finite-difference Hessian-vector product (``hessian="finite_difference"``, what DARTS-V2 computes: the
like-for-like comparison with the peer), ``second_order_*`` the exact unrolled hypergradient (more work). JAX computes only the gradients each step
needs (the alpha step does not form weight gradients, which the PyTorch peer does).
Extra keys: ``compile_s`` (wall time of the first step, compile included), ``median_cpu_s_per_step`` (process CPU
time, less sensitive to other jobs on a shared VM), ``second_order_*``, ``ceiling_gflops_now`` (matmul now). FLOPs
come from XLA's HLO cost analysis, which also counts elementwise work (the peer counts conv/matmul only).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import tempfile
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from metanas.search.darts import DARTS, cross_entropy
from metanas.search_spaces.nb201 import NB201Space
from metanas.supernet import make_supernet

PEER_MEDIAN_S = 3.954  # shared/bench/README.md, W1 DARTS-V1, torch 2.13 CPU, 2 threads
PEER_SECOND_ORDER_S = 8.75  # same README, "W1 DARTS-V2 (second order, unrolled)"
B, C, N, NCLS = 64, 16, 5, 10
WARMUP, STEPS = 3, 15
if os.environ.get("METANAS_BENCH_TINY") == "1":  # the dry run of bench/gpu/run.sh (see _ceiling.TINY)
    B, C, N = 2, 4, 1


def timed_steps(step, state, batches, warmup, steps):
    """``(first step wall s, [wall s per timed step], [process CPU s per timed step], state)``."""
    t0 = time.perf_counter()
    state, m = step(state, *batches)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    print(f"  first step (compile + run): {first:.1f}s", file=sys.stderr, flush=True)
    for _ in range(warmup - 1):
        state, m = step(state, *batches)
    jax.block_until_ready(state)
    ts, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        state, m = step(state, *batches)
        jax.block_until_ready(state)
        ts.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        print(f"  step {len(ts)}: {ts[-1]:.3f}s (cpu {cpu[-1]:.2f}s)", file=sys.stderr, flush=True)
    return first, ts, cpu, state


def in_fresh_process(expr: str, setup: str = ""):
    """``json`` value of ``expr`` (an expression over this module, ``w``) evaluated in a fresh Python process after
    the statements ``setup``: nothing compiled or cached in memory from this one."""
    code = (f"{setup}import sys, json; sys.path.insert(0, 'bench'); import w1_darts_nb201 as w; "
            f"print(json.dumps({expr}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout.strip().splitlines()[-1])


def first_step_with_cache(cache_dir: str) -> float:
    """Wall time of the first first-order step in a fresh process with JAX's persistent compilation cache at
    ``cache_dir`` (what ``device.compilation_cache=DIR`` does for an experiment); cold on the first call, warm after."""
    return in_fresh_process("w.probe_first_step()",
                            f"import jax; jax.config.update('jax_compilation_cache_dir', {cache_dir!r}); "
                            "jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0); ")


def problem():
    """The W1 supernet, its initial ``(weights, alphas, batch_stats)`` and the fixed batches ``(xt, yt, xv, yv)``."""
    net = make_supernet(NB201Space(), C=C, N=N, num_classes=NCLS)
    rng = np.random.default_rng(1)
    xt, xv = (jnp.asarray(rng.standard_normal((B, 32, 32, 3), np.float32)) for _ in range(2))
    yt, yv = (jnp.asarray(rng.integers(0, NCLS, B), jnp.int32) for _ in range(2))
    return net, net.init(jax.random.PRNGKey(0), xt), (xt, yt, xv, yv)


def step_args(state, xt, yt, xv, yv) -> tuple:
    """The arguments of the jitted ``algo.step``: (state, train batch, val batch, key)."""
    return state, (xt, yt), (xv, yv), jax.random.PRNGKey(0)


def search_step(net, order: int, hessian: str = "exact"):
    """``(algo, fn, step)``: the W1 step of ``order`` (fixed LR as in the peer: w_lr_min = w_lr), xautodl's DARTS-V1
    order for 1, DARTS-V2's for 2. ``fn`` is the jitted ``algo.step`` (it donates its state; ``fn.lower(*step_args(
    state, xt, yt, xv, yv))``), ``step(state, xt, yt, xv, yv)`` calls it."""
    algo = DARTS(order=order, w_lr=0.025, w_lr_min=0.025, w_nesterov=True, alpha_first=order == 2, hessian=hessian)
    fn = jax.jit(functools.partial(algo.step, net=net, total_steps=1000), donate_argnums=(0,))
    return algo, fn, lambda *batch: fn(*step_args(*batch))


def probe_first_step() -> float:
    """Wall time of the first first-order W1 step (trace + compile or cache load + run) in this process."""
    net, (weights, alphas, bs), batches = problem()
    algo, _, step = search_step(net, 1)
    state = algo.init(weights, alphas, bs, total_steps=1000)
    t0 = time.perf_counter()
    jax.block_until_ready(step(state, *batches))
    return time.perf_counter() - t0


def first_step_phases() -> dict:
    """The first first-order W1 step in this process, split: ``trace_lower_s`` (Python tracing + lowering to
    StableHLO), ``xla_compile_s`` (wall and process CPU), ``first_run_s``, and the compiled program's fusion count."""
    net, (weights, alphas, bs), batches = problem()
    algo, fn, _ = search_step(net, 1)
    args = step_args(algo.init(weights, alphas, bs, total_steps=1000), *batches)
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    t1, c1 = time.perf_counter(), time.process_time()
    compiled = lowered.compile()
    t2, c2 = time.perf_counter(), time.process_time()
    jax.block_until_ready(compiled(*args))
    t3 = time.perf_counter()
    return {"trace_lower_s": t1 - t0, "xla_compile_s": t2 - t1, "xla_compile_cpu_s": c2 - c1, "first_run_s": t3 - t2,
            "fusions": compiled.as_text().count(" fusion(")}


def main(steps: int = STEPS, warmup: int = WARMUP, second_order_steps: int = 5,
         hessians: tuple[str, ...] = ("finite_difference", "exact")) -> dict:
    net, (weights, alphas, bs), (xt, yt, xv, yv) = problem()
    out = {"workload": "w1_darts_nb201", "framework": "jax", "torch": None, "jax": jax.__version__,
           "batch": B, "C": C, "N": N, "max_nodes": 4, "num_cells": 3 * N + 2,
           "weight_params": int(sum(x.size for x in jax.tree.leaves(weights))),
           "alpha_params": int(alphas.size), "warmup": warmup, "steps": steps}

    # FLOPs as XLA's HLO cost analysis counts them (fwd, and fwd+bwd of the train loss; elementwise included, unlike
    # the peer's FlopCounterMode), from the lowered (uncompiled) programs of the unrolled net (the analysis counts a
    # rolled loop's body once)
    flop_net = dataclasses.replace(net, unroll=True)

    def fwd(w, a, x):
        return flop_net.apply(w, a, bs, x, True)[0]

    def fwdbwd(w, a, x, y):
        return jax.grad(lambda w: cross_entropy(fwd(w, a, x), y))(w)

    f = jax.jit(fwd).lower(weights, alphas, xt).cost_analysis()
    fb = jax.jit(fwdbwd).lower(weights, alphas, xt, yt).cost_analysis()
    f, fb = (c[0] if isinstance(c, list) else c for c in (f, fb))
    out |= {"fwd_flops": f.get("flops"), "fwd_bwd_flops": fb.get("flops"), "step_flops_est": 2 * fb.get("flops", 0.0)}
    runs = [(1, "exact")] + ([(2, h) for h in hessians] if second_order_steps > 0 else [])
    for order, hessian in runs:
        algo, _, step = search_step(net, order, hessian)
        w0, a0 = jax.tree.map(jnp.array, (weights, alphas))  # fresh copies: the step donates its state
        state = algo.init(w0, a0, bs, total_steps=1000)
        n = steps if order == 1 else second_order_steps
        first, ts, cpu, state = timed_steps(step, state, (xt, yt, xv, yv), warmup if order == 1 else min(warmup, 2), n)
        if order == 1:
            out |= {"median_s_per_step": statistics.median(ts), "min_s_per_step": min(ts),
                    "all_s": [round(t, 3) for t in ts], "compile_s": first,
                    "median_cpu_s_per_step": statistics.median(cpu),
                    "achieved_gflops_per_s": out["step_flops_est"] / statistics.median(ts) / 1e9}
        else:  # second_order_* = the exact unrolled hypergradient; second_order_fd_* = DARTS-V2's finite difference
            pre = "second_order_" if hessian == "exact" else "second_order_fd_"
            out |= {f"{pre}median_s_per_step": statistics.median(ts),
                    f"{pre}median_cpu_s_per_step": statistics.median(cpu),
                    f"{pre}all_s": [round(t, 3) for t in ts], f"{pre}compile_s": first}
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _ceiling import PEER_CEILING_GFLOPS, matmul_gflops

    ceiling = matmul_gflops()
    out |= {"ceiling_gflops_now": ceiling, "peer_ceiling_gflops": PEER_CEILING_GFLOPS,
            "fraction_of_ceiling_now": out["achieved_gflops_per_s"] / ceiling}
    out |= {"threads": os.cpu_count(), "device": str(jax.devices()[0]),
            "peer_median_s_per_step": PEER_MEDIAN_S, "peer_second_order_s_per_step": PEER_SECOND_ORDER_S,
            "speedup_vs_peer": PEER_MEDIAN_S / out["median_s_per_step"],
            "peer_source": "shared/bench/README.md",
            "note": "timings on a shared 2-core VM (noisy); peer figure not re-measured here (no torch)"}
    for pre in ("second_order_", "second_order_fd_"):
        if f"{pre}median_s_per_step" in out:
            out[f"{pre}speedup_vs_peer"] = PEER_SECOND_ORDER_S / out[f"{pre}median_s_per_step"]
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--warmup", type=int, default=WARMUP)
    ap.add_argument("--second-order-steps", type=int, default=5, help="0: skip the second-order step")
    ap.add_argument("--hessian", default="finite_difference,exact",
                    help="second-order hypergradients to time: finite_difference (DARTS-V2, as the peer), exact")
    ap.add_argument("--cache-probe", action="store_true",
                    help="also time the first step in fresh processes with a cold and a warm compilation cache")
    ap.add_argument("--phases", action="store_true",
                    help="also split the first step (trace + lower, XLA compile, run) in a fresh process")
    a = ap.parse_args()
    hessians = tuple(h for h in a.hessian.split(",") if h)
    if not set(hessians) <= {"finite_difference", "exact"}:
        ap.error(f"--hessian takes finite_difference and/or exact, got {a.hessian!r}")
    res = main(a.steps, a.warmup, a.second_order_steps, hessians)
    if a.phases:
        res |= {f"first_step_{k}": v for k, v in in_fresh_process("w.first_step_phases()").items()}
    if a.cache_probe:
        with tempfile.TemporaryDirectory() as d:
            res |= {"first_step_cold_cache_s": first_step_with_cache(d), "first_step_warm_cache_s": first_step_with_cache(d)}
    print(json.dumps(res))
