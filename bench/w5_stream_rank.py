"""W5: streaming top-k ranking of DARTS CNN space candidates (~1.08e18 genotypes), ``metanas.search.stream``.

Workload: the default experiment's pairwise meta-learner (``Pairwise``: hidden 64, layers 2, embed 16, linear skip,
ensemble of 3, one-hot encoding of the 28 DARTS edges: D = 224), folded once (``fusion.fuse``); ``--candidates N``
genotypes drawn without replacement from the DARTS space (keyed permutation) or enumerated (``--enumerate``),
scored and merged into a running top-``k`` in one jitted ``lax.scan`` over chunks. The weights are untrained random
draws (the speed does not depend on them). ``first_call_s`` is the first call (trace, compile and one full run); the
timed region (``wall_s``) is a later full run (``--repeats`` runs, median).

``flop_per_candidate`` is counted from the layer sizes (``stream.flop_per_candidate``): the gather-sum first layer
is 7 adds per hidden unit (8 node rows, bias folded), the later layer 2*64*64 + 64, the folded head 2*64 + 1, per
member, plus 7 adds of the skip term: 26,506 for 3 members. ``flop_per_candidate_dense`` counts the same network
with the first layer as the [224] x [64] matmul (2*224*64 + 64 per member). ReLU, gathers, id decoding and the top-k
merge are not counted. ``dense_candidates_per_s`` (on ``--dense-candidates``, 0: skip) times the reference path
(decode -> one-hot encode -> matmuls) for comparison. Plus the matmul ceiling measured now (the VM is shared).

usage: python bench/w5_stream_rank.py [--candidates 100000000] [--chunk 4096] [--k 100] [--enumerate]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ceiling import matmul_gflops  # noqa: E402

from metanas.predictors import fusion
from metanas.search import stream  # noqa: E402
from metanas.predictors.pairwise import Pairwise  # noqa: E402
from metanas.search_spaces.darts_cnn import DartsCNNSpace  # noqa: E402


def fused_ensemble(ensemble: int, dim: int, key: jax.Array) -> fusion.Fused:
    pred = Pairwise(ensemble=ensemble)
    params = jax.vmap(pred.init, (0, None))(jax.random.split(key, ensemble), dim)
    params["v"] = 0.1 * jax.random.normal(jax.random.fold_in(key, 1), params["v"].shape)  # the linear skip term
    return fusion.fuse(pred, params)


def time_stream(f, space, n, chunk, k, key, first_layer, repeats):
    """(first call s, [run seconds], result): the first call (compile + run), then ``repeats`` timed runs.

    ``repeats=0`` times only the first call (compile included: a few seconds), for runs too long to make twice."""
    args = dict(n_candidates=n, chunk=chunk, k=k, first_layer=first_layer)
    t0 = time.perf_counter()
    res = jax.block_until_ready(stream.stream_topk(key, f, space, **args))  # trace + compile + one run
    first = time.perf_counter() - t0
    if repeats == 0:
        return first, [first], res
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = jax.block_until_ready(stream.stream_topk(key, f, space, **args))
        ts.append(time.perf_counter() - t0)
    return first, ts, res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=float, default=1e8)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--ensemble", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs after the first call (0: time the first call,"
                    " compile included)")
    ap.add_argument("--enumerate", action="store_true", help="enumerate ids 0..N-1 instead of sampling")
    ap.add_argument("--dense-candidates", type=float, default=1e6, help="reference dense path on this many (0: skip)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the matmul ceiling (tiny dry runs)")
    a = ap.parse_args(argv)
    n = int(a.candidates)
    if n < 1 or a.chunk < 1 or not 1 <= a.k <= n or a.repeats < 0:
        ap.error(f"need candidates >= 1, chunk >= 1, 1 <= k <= candidates and repeats >= 0; got {n}, {a.chunk}, "
                 f"{a.k}, {a.repeats}")
    space = DartsCNNSpace()
    f = fused_ensemble(a.ensemble, 2 * 14 * len(space.ops), jax.random.PRNGKey(0))
    key = None if a.enumerate else jax.random.PRNGKey(1)
    first_s, ts, res = time_stream(f, space, n, a.chunk, a.k, key, "gather", a.repeats)
    wall = statistics.median(ts)
    flop = stream.flop_per_candidate(f, space, "onehot", "gather")
    dev = jax.devices()[0]
    out = {"workload": "w5_stream_rank", "framework": "jax", "jax": jax.__version__,
           "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')} x{jax.device_count()}",
           "space": "darts_cnn", "space_size": DartsCNNSpace().count(), "order": "enumerate" if a.enumerate else
           "sampled without replacement", "candidates": n, "chunk": a.chunk, "k": a.k, "ensemble": a.ensemble,
           "ranker": "Pairwise(hidden 64, layers 2, embed 16, linear skip), onehot (D=224), gather-sum first layer",
           "wall_s": round(wall, 4), "wall_includes_compile": a.repeats == 0, "wall_all_s": [round(t, 4) for t in ts], "first_call_s": round(first_s, 3),
           "candidates_per_s": n / wall, "flop_per_candidate": flop,
           "flop_per_candidate_dense": stream.flop_per_candidate(f, space, "onehot", "dense"),
           "gflops_per_s": round(flop * n / wall / 1e9, 2),
           "top1_score": float(res.scores[0]), "threads": len(os.sched_getaffinity(0))}
    nd = int(a.dense_candidates)
    if nd > 0:
        nd = max(nd, a.k)
        _, td, rd = time_stream(f, space, nd, min(a.chunk, nd), a.k, key, "dense", 1)
        out["dense_candidates"] = nd
        out["dense_candidates_per_s"] = nd / td[0]
        out["dense_gflops_per_s"] = round(out["flop_per_candidate_dense"] * nd / td[0] / 1e9, 2)
    if not a.no_ceiling:
        out["matmul_gflops_now"] = round(matmul_gflops(), 1)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
