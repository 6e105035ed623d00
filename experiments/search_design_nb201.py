"""How the meta-learner's NB201 search was designed, without looking at test accuracy or at the reported seeds.

Each variant of the pairwise-guided search (``PredictorSearch`` + ``Pairwise``) runs on CIFAR-10 with design seeds
1000-1019 (the study reports seeds 0-49) and is scored by a VALIDATION-only criterion: the number of queries until the
best queried cell is one of the 16 best cells by validation accuracy (~0.1 % of the space). Nothing here reads a test
accuracy. The chosen variant is frozen in ``conf/experiment/search_nb201.yaml`` for all three data sets.

    .venv/bin/python experiments/search_design_nb201.py f=enc f=enc,canon=1 ...   # one JSON line per variant

A variant is comma-separated ``key=value``: ``f`` features (enc: onehot_pruned; zc: + 13 zero-cost proxies + log
params; zcns: + their normal scores; path; onehot_path), ``its=1`` (Thompson), ``acq`` (acquisition), ``mcand``, ``init``, ``topk``, ``steps``, ``ens``, ``wd``, ``h`` (Pairwise), ``beta`` (UCB),
``canon=1`` (search the canonical cells only), ``pred`` (the ranker: see ``predictor``), ``prior=nwot+synflow`` (initial cells = the top of that zero-cost score
instead of random), ``trust=zc+cifar100`` (the trust ensemble, ``PredictorSearch(trust_folds=tf)``, default ``tf=3``:
the target model plus these prior members: ``zc`` = the 13 zero-cost proxies, a proxy name, or another NB201 data
set's validation table). Environment: SEEDS (20), SEED0 (first design seed, 1000), BUDGET (100). The zero-cost
features need the shared data.
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from metanas.benchmarks.nb201 import ZC_COLUMNS, NB201Benchmark, load_cost, load_zero_cost
from metanas.search import table_search as S
from metanas.config import default_data_dir
from metanas.predictors.encodings import encode_archs, nb201_zero_cost_features
from metanas.predictors.pairwise import Pairwise
from metanas.predictors.select import CVBlend
from metanas.predictors.trees import BoostedTrees, RandomForest, is_jittable
from metanas.search_spaces.nb201 import NB201Space


def predictor(name: str, pw: Pairwise):
    """``pred=``: pairwise (the jitted default), rf (random forest, 300 trees), gbt (LightGBM), pw+rf (equal-weight
    blend of the standardised pairwise and RF scores), cvblend (``CVBlend`` of pairwise and RF: pairwise, RF or both,
    chosen by 3-fold CV Kendall tau on the queried cells each round)."""
    rf = RandomForest()
    if name == "pairwise":
        return pw
    if name == "rf":
        return rf
    if name == "gbt":
        return BoostedTrees()
    if name == "pw+rf":
        return CVBlend(bases=(pw, rf), combos=((0, 1),))
    if name == "cvblend":
        return CVBlend(bases=(pw, rf), combos=((0,), (1,), (0, 1)))
    raise SystemExit(f"pred={name!r}: choose pairwise, rf, gbt, pw+rf or cvblend")


def main() -> None:
    space, data = NB201Space(), default_data_dir()
    variants = sys.argv[1:] or ["f=enc", "f=enc,canon=1"]
    bench = NB201Benchmark(dataset="cifar10")
    val = bench.table()
    table = jnp.asarray(val)
    top16 = np.sort(val)[-16]
    enc = np.asarray(encode_archs(space, space.enumerate(), "onehot_pruned"))
    zc = nb201_zero_cost_features(space, load_zero_cost(data, "cifar10"), normal_scores=True)
    lp = np.log(load_cost(data)[:, 1:2])
    lp = (lp - lp.mean()) / lp.std()
    feats_by = {"enc": enc, "zc": np.concatenate([enc, zc[:, :13], lp], 1), "zcns": np.concatenate([enc, zc, lp], 1),
                "path": np.asarray(encode_archs(space, space.enumerate(), "path")),
                "onehot_path": np.asarray(encode_archs(space, space.enumerate(), "onehot_path"))}
    seeds, budget = int(os.environ.get("SEEDS", 20)), int(os.environ.get("BUDGET", 100))
    seed0 = int(os.environ.get("SEED0", 1000))
    keys = jnp.stack([jax.random.PRNGKey(seed0 + s) for s in range(seeds)])
    zc_raw = nb201_zero_cost_features(space, load_zero_cost(data, "cifar10"))

    def members_of(spec: str) -> jnp.ndarray:
        rows = []
        for name in spec.split("+"):
            if name == "zc":
                rows += [zc_raw[:, i] for i in range(len(ZC_COLUMNS))]
            elif name in ZC_COLUMNS:
                rows.append(zc_raw[:, ZC_COLUMNS.index(name)])
            else:
                rows.append(NB201Benchmark(dataset=name).table())
        return jnp.asarray(np.nan_to_num(np.stack(rows)), jnp.float32)

    for v in variants:
        spec = dict(kv.split("=") for kv in v.split(","))
        feats = jnp.asarray(feats_by[spec.get("f", "enc")])
        pw = Pairwise(steps=int(spec.get("steps", 300)), ensemble=int(spec.get("ens", 3)),
                      weight_decay=float(spec.get("wd", 0.1)), hidden=int(spec.get("h", 64)))
        search = S.PredictorSearch(budget=budget, init=int(spec.get("init", 10)), topk=int(spec.get("topk", 10)),
                                   beta=float(spec.get("beta", 0)), thompson=bool(int(spec.get("its", 0))),
                                   acquisition=spec.get("acq", "exhaustive"),
                                   mutation_candidates=int(spec.get("mcand", 100)),
                                   trust_folds=int(spec.get("tf", 3)) if spec.get("trust") else 0)
        members = members_of(spec["trust"]) if spec.get("trust") else None
        excluded = jnp.asarray(~S.canonical_cells(space)) if spec.get("canon") else None
        if spec.get("prior"):
            prior = jnp.asarray(sum(zc[:, 13 + ZC_COLUMNS.index(n)] for n in spec["prior"].split("+")))

            def init_state(key, table, excluded=None, prior=prior, search=search):
                _, codes0 = jax.lax.top_k(prior + 1e-3 * jax.random.normal(key, prior.shape), search.init)
                codes0 = codes0.astype(jnp.int32)
                return S.GuidedSearchState(jnp.zeros(search.budget, jnp.int32).at[: search.init].set(codes0),
                                     jnp.zeros(search.budget, jnp.float32).at[: search.init].set(table[codes0]),
                                     jnp.zeros(table.shape[0], bool).at[codes0].set(True))

            object.__setattr__(search, "init_state", init_state)
        pred = predictor(spec.get("pred", "pairwise"), pw)
        t0 = time.time()
        if is_jittable(pred):
            tr = jax.jit(jax.vmap(lambda k: search.run(k, table, feats, predictor=pred, space=space,
                                                       excluded=excluded, members=members)))(keys)
        else:  # a host model: the runner's round-by-round path
            k_init, rkeys = jax.vmap(search.round_keys)(keys)
            tables = jnp.broadcast_to(table, (seeds, table.shape[0]))
            state = jax.vmap(lambda k, t: search.init_state(k, t, excluded))(k_init, tables)
            round_fn = search.round_fn(feats, predictor=pred, space=space)
            for r in range(search.rounds):
                state = round_fn(state, r, rkeys[:, r], tables)
            tr = S.Trace(state.codes, state.values)
        best = np.maximum.accumulate(np.asarray(tr.values), 1)
        hit = best >= top16
        q = np.where(hit.any(1), hit.argmax(1) + 1, budget + 1)
        print(json.dumps({"variant": v, "q_top16_val": np.percentile(q, [25, 50, 75]).tolist(),
                          "never": int((q > budget).sum()), "mean_q": float(q.mean()), "s": round(time.time() - t0),
                          "seeds": seeds, "seed0": seed0, "budget": budget, "q": q.tolist()}), flush=True)


if __name__ == "__main__":
    main()
