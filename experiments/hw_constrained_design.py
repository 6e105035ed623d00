"""Design of the constrained search's knobs on seeds kept apart (0..), scored on VALIDATION only.

For every device and every candidate setting (design_k latency measurements spent on the cost model, p_feasible
threshold of the allowed set, ``verify`` rule: plain or adaptive; the cost model is hw_latency's nested choice for
the device) the constrained search (``metanas.search.latency_search``) runs on the design seeds and ``verify`` turns
its queries into an answer with the measurements left; the score of a setting on a device is the mean over seeds of
the answer's validation accuracy (an infeasible answer scores the table's minimum). The setting used for a device in
the final run is chosen by leave-one-device-out: the best mean score over the other five devices (never the device's
own score, never a test accuracy). The cost model's family and settings come from the hw_latency study's own nested
choice (leave-one-source-out, ``--latency-json``).

    python experiments/hw_constrained_design.py --seeds 8 --k-grid 6 --p-grid 0.5 0.9 --verify plain adaptive
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    import hydra
    import jax
    import jax.numpy as jnp
    from omegaconf import OmegaConf

    from metanas.benchmarks.hardware import HW_DEVICES, load_hw_bench
    from metanas.benchmarks.nb201 import DATASETS, NB201Benchmark
    from metanas.predictors import cost as C
    from metanas.predictors.encodings import encode_archs
    from metanas.runners.hardware import family_prior, source_stack, with_source_columns
    from metanas.search import latency_search as CS
    from metanas.search import table_search as S
    from metanas.search_spaces.nb201 import NB201Space

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--latency-json", default=str(REPO / "results/hw_latency/hw_latency.json"))
    ap.add_argument("--p-grid", type=float, nargs="*", default=[0.5, 0.9])
    ap.add_argument("--k-grid", type=int, nargs="*", default=[4, 6])
    ap.add_argument("--verify", nargs="*", default=["plain", "adaptive"])
    ap.add_argument("--out", default=str(REPO / "results/hw_latency/constrained_design.json"))
    a = ap.parse_args()

    space = NB201Space()
    bench = NB201Benchmark(dataset="cifar10", data_dir=a.data_dir)
    val, report = jnp.asarray(bench.table()), bench.report_table()
    vmin = float(np.min(np.asarray(val)))
    feats = jnp.asarray(encode_archs(space, space.enumerate(), "onehot_pruned"))
    excl = ~S.canonical_cells(space)
    pred = hydra.utils.instantiate(OmegaConf.load(REPO / "conf/predictor/pairwise.yaml"))
    hw = {ds: load_hw_bench(a.data_dir, ds) for ds in DATASETS}
    choices = json.loads(Path(a.latency_json).read_text())["choices"] if Path(a.latency_json).exists() else {}
    x0 = jnp.asarray(C.cost_features(space))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(a.seeds)])  # seeds 0..: apart from the final run's
    search = S.PredictorSearch(budget=50, init=10, topk=10, encoding="onehot_pruned")
    scores: dict = {}
    t0 = time.perf_counter()
    for k, p in itertools.product(a.k_grid, a.p_grid):
        cs = CS.ConstrainedSearch(search, measurements=10, design_k=k, p_feasible=p, pool=2000)
        fn = jax.jit(jax.vmap(lambda kk, v, la, b, pr, xc, f, ex: cs.run(
            kk, v, la, b, prior=pr, x_cost=xc, features=f, predictor=pred, space=space, excluded=ex),
            in_axes=(0,) + (None,) * 7))
        name = f"k={k},p={p:g}"
        for dev in HW_DEVICES:
            col = f"{dev}_latency"
            lat = hw["cifar10"].latency(dev)
            budget = float(np.nanmedian(lat))
            sources = [d for d in HW_DEVICES if d != dev]
            stack = source_stack({ds: tab.without(col) for ds, tab in hw.items()}, sources, "latency")
            ch = choices.get(dev, {})
            prior = C.meta_train_prior(x0, jnp.asarray(np.concatenate(list(stack.values()), 0)),
                                       cov_scale=ch.get("cov_scale", 3.0), jitter=ch.get("jitter", 1e-3))
            fam = ch.get("family", "additive")  # the cost family of hw_latency's nested choice
            x = x0 if fam != "with_sources" else with_source_columns(x0, np.stack([stack[d][0] for d in sources]))
            prior = family_prior(fam, prior, ch, len(sources))
            tr = fn(keys, val, jnp.asarray(lat, jnp.float32), budget, prior, x, feats, jnp.asarray(excl))
            rows = list(zip(np.asarray(tr.trace.codes), np.asarray(tr.trace.values), np.asarray(tr.design),
                            np.asarray(tr.failed)))
            for ver in a.verify:
                if ver == "plain":
                    ans = [CS.verify(c, v, d, lat, budget, 10 - k - int(f))[0] for c, v, d, f in rows]
                else:
                    ans = [CS.verify_adaptive(c, v, d, lat, budget, 10 - k - int(f), prior=prior, x_cost=x)[0]
                           for c, v, d, f in rows]
                av = [float(val[c]) if c >= 0 else vmin for c in ans]
                scores.setdefault(f"{name},verify={ver}", {})[dev] = {"mean_answer_val": float(np.mean(av)),
                                                                      "infeasible": int(sum(c < 0 for c in ans))}
                print(f"{name},verify={ver} {dev}: mean answer val {np.mean(av):.3f}, infeasible "
                      f"{sum(c < 0 for c in ans)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    chosen = {}
    for dev in HW_DEVICES:
        others = [d for d in HW_DEVICES if d != dev]
        chosen[dev] = max(scores, key=lambda n: np.mean([scores[n][d]["mean_answer_val"] for d in others]))
    out = {"seeds": list(range(a.seeds)), "score": "mean over seeds of the answer's validation accuracy",
           "rule": "leave-one-device-out: the setting best on the other five devices", "scores": scores,
           "chosen": chosen, "wall_s": round(time.perf_counter() - t0, 1)}
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(chosen, indent=1))


if __name__ == "__main__":
    main()
