"""W4: pairwise performance predictor MLP (shared/bench/README.md, W4; peer: shared/bench/w4_predictor.py).

Peer workload, reproduced exactly: MLP in = concat(enc_a[30], enc_b[30]) = 60 -> 128 -> ReLU -> 128 -> ReLU -> 1.
- inference: 1,000,000 random pairs in batches of 65,536 (concat inside the timed region), 1 warm-up + 5 timed,
  median; pairs/s and GFLOP/s with the peer's FLOP count 2 * (2*D*H + H*H + H) per pair;
- training: 1,000 random pairs, BCE-with-logits on a random "a better than b" label, Adam(1e-3), batch 128, a fresh
  permutation per epoch (7 x 128 + 1 x 104 per epoch), 200 epochs = 1,600 steps; 3 timed runs, median. Here the
  whole training is one jitted program (scan over epochs); compile time is reported separately (train_compile_s).

Extra keys (metanas): ranking all 15,625 NB201 cells end to end with the pairwise meta-learner of the default
experiment (encode -> shared encoder utility u(x), ensemble of 3 -> argsort; O(N) encoder passes, not O(N^2)
pairs), median of 20 runs: ``nb201_rank_all_s``, ``nb201_candidates_per_s``; the same with 1 member; and scoring
1M sampled candidates (``sampled_1m_candidates_per_s``); the library's fast path (``metanas.predictors.fusion``: the
space's distinct encodings tabled once outside the timed region, the ensemble folded into fewer matmuls) with a
full sort (``nb201_table_candidates_per_s``) or the top 100 (``nb201_table_top100_candidates_per_s``). Plus the matmul ceiling measured now (the VM is shared).

usage: python bench/w4_predictor.py
"""

from __future__ import annotations

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

from metanas.predictors import fusion  # noqa: E402
from metanas.predictors.encodings import encode_archs  # noqa: E402
from metanas.predictors.pairwise import Pairwise  # noqa: E402
from metanas.search_spaces.nb201 import NB201Space  # noqa: E402

D, H, NPAIRS_INF, INF_BATCH, NTRAIN, TRAIN_BATCH, EPOCHS = 30, 128, 1_000_000, 65536, 1000, 128, 200
SAMPLED, REPS, FIT_STEPS = 1_000_000, 20, 1000
if TINY:  # the dry run of bench/gpu/run.sh
    NPAIRS_INF, INF_BATCH, NTRAIN, EPOCHS, SAMPLED, REPS, FIT_STEPS = 4096, 1024, 300, 2, 4096, 2, 5
PEER = {"inference_pairs_per_s": 1.36e6, "train_median_s_200_epochs": 1.151}  # shared/bench/README.md (quiet)


def init_mlp(key):
    sizes = (2 * D, H, H, 1)
    keys = jax.random.split(key, 3)
    # torch nn.Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
    return [{"w": jax.random.uniform(k, (a, b), jnp.float32, -a**-0.5, a**-0.5),
             "b": jax.random.uniform(jax.random.fold_in(k, 1), (b,), jnp.float32, -a**-0.5, a**-0.5)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def mlp(p, x):
    x = jax.nn.relu(x @ p[0]["w"] + p[0]["b"])
    x = jax.nn.relu(x @ p[1]["w"] + p[1]["b"])
    return x @ p[2]["w"] + p[2]["b"]


def timed(f, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        ts.append(time.perf_counter() - t0)
    return ts


def inference(params):
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    a = jax.random.normal(k1, (NPAIRS_INF, D))
    b = jax.random.normal(k2, (NPAIRS_INF, D))
    f = jax.jit(lambda p, xa, xb: mlp(p, jnp.concatenate([xa, xb], 1)))

    def run():
        return jnp.concatenate([f(params, a[s:s + INF_BATCH], b[s:s + INF_BATCH])
                                for s in range(0, NPAIRS_INF, INF_BATCH)])

    run()  # warm-up (compiles the full and the last, shorter batch)
    return timed(run, 5)


def make_train():
    tx = optax.adam(1e-3)
    n_full = NTRAIN // TRAIN_BATCH  # 7 batches of 128, then one of 104

    def loss(p, x, y):
        return optax.sigmoid_binary_cross_entropy(mlp(p, x)[:, 0], y).mean()

    def step(carry, idx, x, y):
        p, opt = carry
        g = jax.grad(loss)(p, x[idx], y[idx])
        upd, opt = tx.update(g, opt, p)
        return (optax.apply_updates(p, upd), opt)

    def train(key, x, y):
        p = init_mlp(jax.random.fold_in(key, 2))
        carry = (p, tx.init(p))

        def epoch(carry, k):
            perm = jax.random.permutation(k, NTRAIN)
            carry, _ = jax.lax.scan(lambda c, i: (step(c, i, x, y), None), carry,
                                    perm[: n_full * TRAIN_BATCH].reshape(n_full, TRAIN_BATCH))
            return step(carry, perm[n_full * TRAIN_BATCH:], x, y), None

        carry, _ = jax.lax.scan(epoch, carry, jax.random.split(key, EPOCHS))
        return carry[0]

    return jax.jit(train)


def nb201_ranking(ensemble: int, reps: int = REPS):
    space = NB201Space()
    archs = jnp.asarray(space.enumerate())
    pred = Pairwise(ensemble=ensemble, steps=FIT_STEPS)  # the default experiment's architecture (conf/predictor/pairwise.yaml)
    x0 = encode_archs(space, archs[:64], "onehot_pruned")
    params = pred.fit(jax.random.PRNGKey(0), x0, jnp.linspace(50.0, 94.0, 64), 64)  # trained weights; any would do

    @jax.jit
    def rank_all(params, archs):
        u = pred.score(params, encode_archs(space, archs, "onehot_pruned"))
        return jnp.argsort(-u)

    rank_all(params, archs).block_until_ready()
    ts = timed(lambda: rank_all(params, archs), reps)
    big = jax.vmap(space.sample)(jax.random.split(jax.random.PRNGKey(3), SAMPLED))
    score_big = jax.jit(lambda p, a: pred.score(p, encode_archs(space, a, "onehot_pruned")))
    score_big(params, big).block_until_ready()
    tb = timed(lambda: score_big(params, big), 1 if TINY else 3)
    # the library's fast path (metanas.predictors.fusion): the finite space encoded once (a table of its distinct
    # encodings, built outside the timed region, as a search over NB201 does), the ensemble folded into fewer,
    # larger matmuls, then a full sort or the top 100
    table = fusion.candidate_table(space, archs)
    fast_ranks = {}
    for top in (None, 100):
        fn = jax.jit(lambda p, t, top=top: fusion.rank_table(fusion.fuse(pred, p), t, top))
        fn(params, table).block_until_ready()
        fast_ranks[top] = statistics.median(timed(lambda fn=fn: fn(params, table), reps))
    return statistics.median(ts), ts, statistics.median(tb), fast_ranks


def main() -> None:
    params = init_mlp(jax.random.PRNGKey(0))
    inf_ts = inference(params)
    inf_med = statistics.median(inf_ts)

    kg = jax.random.PRNGKey(1)
    xa, xb = jax.random.normal(jax.random.fold_in(kg, 3), (2, NTRAIN, D))
    yt = (jax.random.uniform(jax.random.fold_in(kg, 4), (NTRAIN,)) > 0.5).astype(jnp.float32)
    x = jnp.concatenate([xa, xb], 1)
    train = make_train()
    t0 = time.perf_counter()
    train = train.lower(jax.random.PRNGKey(2), x, yt).compile()
    compile_s = time.perf_counter() - t0
    train_ts = timed(lambda: train(jax.random.PRNGKey(2), x, yt), 1 if TINY else 3)

    rank3, rank3_all, big3, fast3 = nb201_ranking(3)
    rank1, _, big1, fast1 = nb201_ranking(1)
    flops_per_pair = 2 * (2 * D * H + H * H + H)
    ceiling = matmul_gflops()
    train_med = statistics.median(train_ts)
    out = {"workload": "w4_predictor", "framework": "jax", "jax": jax.__version__,
           "mlp": "60-128-128-1 relu", "inference_pairs": NPAIRS_INF, "inference_batch": INF_BATCH,
           "inference_median_s": inf_med, "inference_pairs_per_s": NPAIRS_INF / inf_med,
           "inference_gflops_per_s": flops_per_pair * NPAIRS_INF / inf_med / 1e9,
           "inference_all_s": [round(t, 4) for t in inf_ts],
           "train_pairs": NTRAIN, "train_batch": TRAIN_BATCH, "epochs": EPOCHS, "train_steps": EPOCHS * 8,
           "train_median_s_200_epochs": train_med, "train_all_s": [round(t, 3) for t in train_ts],
           "threads": len(os.sched_getaffinity(0)),  # XLA CPU uses every core it may run on
           # metanas extras
           "train_compile_s": round(compile_s, 3),
           "nb201_cells": 15625, "nb201_rank_all_s": rank3, "nb201_rank_all_all_s": [round(t, 5) for t in rank3_all],
           "nb201_candidates_per_s": 15625 / rank3, "nb201_rank_all_s_ensemble1": rank1,
           "nb201_candidates_per_s_ensemble1": 15625 / rank1,
           "nb201_table_rank_all_s": fast3[None], "nb201_table_candidates_per_s": 15625 / fast3[None],
           "nb201_table_top100_candidates_per_s": 15625 / fast3[100],
           "nb201_table_candidates_per_s_ensemble1": 15625 / fast1[None],
           "nb201_table_top100_candidates_per_s_ensemble1": 15625 / fast1[100],
           "sampled_1m_candidates_per_s": SAMPLED / big3, "sampled_1m_candidates_per_s_ensemble1": SAMPLED / big1,
           "ranker": "Pairwise(hidden 64, layers 2, embed 16, linear skip), onehot_pruned, utility + argsort",
           "matmul_gflops_now": round(ceiling, 1), "peer_matmul_gflops": PEER_CEILING_GFLOPS,
           "peer_inference_pairs_per_s": PEER["inference_pairs_per_s"],
           "peer_train_median_s_200_epochs": PEER["train_median_s_200_epochs"],
           "speedup_inference_vs_peer": round(NPAIRS_INF / inf_med / PEER["inference_pairs_per_s"], 3),
           "speedup_train_vs_peer": round(PEER["train_median_s_200_epochs"] / train_med, 3),
           "device": f"{jax.devices()[0].platform} x{jax.device_count()}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
