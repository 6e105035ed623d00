"""search_darts_stream: predictor-guided selection in the DARTS CNN space (about 1.08e18 genotypes) by streaming.

1. Fit the pairwise meta-learner (``predictor:`` group, an ensemble) on ``train.n_train`` of the 725 DARTS genotypes
   of NAS-Bench-Suite-Zero's NB301 CIFAR-10 file (``nas_bench_suite_zero/zc_nasbench301.json`` under ``data_dir``;
   its ``val_accuracy`` comes from NASLib's NB301 query, which we expect is the NB301 surrogate's prediction, not a
   trained run: see that folder's README). The other genotypes are held out: their ranking metrics are reported,
   never used to choose anything.
2. Fold the ensemble once (``fusion.fuse``) and stream ``train.candidates`` genotypes (sampled without replacement
   with the run's key, or enumerated) through ``metanas.search.stream.stream_topk``: one jitted scan, memory
   independent of the number of candidates, a running top-``train.top``.
3. Write the shortlist (``topk.json``: genotype strings, ids, utilities, and the meta-learner's predicted relative
   improvement M(a, b) = expm1(u(a) - u(b)) of each over the best genotype it was trained on). The ranking loss
   stretches the utility scale, so M is not calibrated far from the training genotypes (the default run's top-1 M is
   about 0.57, which would put a 94.5 % genotype above 100 %): read the utilities as a ranking.

No benchmark can evaluate a new DARTS genotype here (no NB301 surrogate, no training budget), so the output is the
predictor's shortlist to train, not a measured accuracy.
"""

from __future__ import annotations

import ast
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import hydra
import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from metanas.config import ConfigError, Count, TrainBlock, takes_train, train_block
from metanas.predictors import fusion
from metanas.search import stream
from metanas.predictors.encodings import ARCH_ENCODINGS, encode_archs
from metanas.predictors.metrics import ranking_metrics
from metanas.predictors.pairwise import Pairwise
from metanas.runners.context import RunContext
from metanas.search_spaces.darts_cnn import DARTS_OPS, DartsCNNSpace

NB301_FILE = "nas_bench_suite_zero/zc_nasbench301.json"
NASLIB_OPS = DARTS_OPS[1:]  # NASLib's compact DARTS form numbers the 7 ops without 'none', in the DARTS order


@dataclass(frozen=True)
class StreamTrain(TrainBlock):
    """``train:`` of ``search_darts_stream``."""

    n_train: Count = 500  # NB301 genotypes the predictor is fitted on; the rest are held out
    encoding: str = "onehot"  # one of metanas.predictors.encodings.ARCH_ENCODINGS
    candidates: int = 100_000_000  # genotypes streamed
    order: Literal["sample", "enumerate"] = "sample"  # sample (without replacement, by seed) | enumerate (ids 0 ..)
    chunk: Count = 4096  # candidates per scan step
    top: Count = 100  # shortlist length

    def __post_init__(self):
        super().__post_init__()
        if self.encoding not in ARCH_ENCODINGS:
            raise ConfigError(f"train.encoding={self.encoding!r}; choose one of {', '.join(ARCH_ENCODINGS)}")
        if not 1 <= self.top <= self.candidates:
            raise ConfigError(f"need 1 <= train.top <= train.candidates, got top={self.top}, "
                              f"candidates={self.candidates}")


def load_nb301(data_dir, space: DartsCNNSpace) -> tuple[np.ndarray, np.ndarray]:
    """(archs int32 [N, 28], val_accuracy float [N]) of the NB301 CIFAR-10 genotypes of NAS-Bench-Suite-Zero."""
    path = Path(data_dir) / NB301_FILE
    if not path.exists():
        raise ConfigError(f"NB301 data not found at {path}; set data_dir= to the shared data folder "
                          f"(it holds {NB301_FILE})")
    rows = json.loads(path.read_text())["cifar10"]
    archs, acc = [], []
    for compact, rec in rows.items():
        normal, reduce = ([(NASLIB_OPS[op], src) for src, op in cell] for cell in ast.literal_eval(compact))
        archs.append(space.from_genotype(normal, reduce))
        acc.append(float(rec["val_accuracy"]))
    return np.stack(archs), np.asarray(acc)


@takes_train(StreamTrain)
def run_search_darts_stream(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    t = train_block(StreamTrain, cfg)
    space = hydra.utils.instantiate(cfg.search_space)
    if not isinstance(space, DartsCNNSpace) or tuple(space.ops) != DARTS_OPS:
        raise ConfigError(f"{cfg.name} needs search_space=darts_cnn with the 8 DARTS ops (NB301's), got "
                          f"{type(space).__name__}")
    pred = hydra.utils.instantiate(cfg.predictor)
    if not isinstance(pred, Pairwise):
        raise ConfigError(f"{cfg.name} streams the fused pairwise ensemble; set predictor=pairwise, got "
                          f"{type(pred).__name__}")
    n_cand, chunk, top = t.candidates, t.chunk, t.top
    if not 1 <= top <= n_cand or chunk < 1 or n_cand > space.count():
        raise ConfigError(f"need 1 <= train.top <= train.candidates <= {space.count()} and train.chunk >= 1, got "
                          f"top={top}, candidates={n_cand}, chunk={chunk}")

    archs, acc = load_nb301(cfg.data_dir, space)
    n_train = t.n_train
    if not 2 <= n_train < len(acc):
        raise ConfigError(f"train.n_train={n_train}; need 2 <= n_train < {len(acc)} (the NB301 genotypes; the rest "
                          "are held out)")
    perm = np.random.default_rng([int(cfg.seed), 301]).permutation(len(acc))
    tr, te = perm[:n_train], perm[n_train:]
    x = encode_archs(space, archs, t.encoding)
    k_fit, k_stream = jax.random.split(ctx.key)
    t0 = time.perf_counter()
    params = jax.jit(pred.fit, static_argnums=3)(k_fit, x[tr], jnp.asarray(acc[tr]), n_train)
    jax.block_until_ready(params)
    fit_s = time.perf_counter() - t0
    held = ranking_metrics(np.asarray(pred.score(params, x[te])), acc[te], top=10)
    ctx.log("fit", n_train, {"fit_s": fit_s, **{f"heldout_{k}": v for k, v in held.items()}})

    f = fusion.fuse(pred, params)
    first = "gather" if t.encoding in stream.ADDITIVE_ENCODINGS else "dense"
    key = k_stream if t.order == "sample" else None
    t0 = time.perf_counter()
    res = jax.block_until_ready(stream.stream_topk(key, f, space, n_cand, chunk, top, kind=t.encoding,
                                                   first_layer=first))
    stream_s = time.perf_counter() - t0  # compile included (one program per run)
    u_train = np.asarray(fusion.fused_utility(f, x[tr]))
    best_train = int(tr[np.argmax(acc[tr])])  # the best genotype the predictor was trained on (training data only)
    u_best = float(fusion.fused_utility(f, x[best_train][None])[0])
    scores = np.asarray(res.scores, np.float64)
    gain = np.expm1(scores - u_best)
    ctx.log("stream", n_cand, {"stream_s": stream_s, "candidates_per_s": n_cand / stream_s, "top1_score": scores[0],
                               "top1_utility_over_best_train": scores[0] - u_best,
                               "train_max_score": float(u_train.max())})
    genotypes = [space.to_string(a) for a in np.asarray(res.archs)]
    ctx.save_json("topk.json", {
        "candidates": n_cand, "order": t.order, "encoding": t.encoding, "first_layer": first, "chunk": chunk,
        "best_train_genotype": space.to_string(archs[best_train]), "best_train_val_accuracy": float(acc[best_train]),
        "note": "utility = the fused ensemble's score (log-ratio units, up to a constant); predicted_gain = "
                "expm1(u - u(best training genotype)), the meta-learner's predicted relative improvement: not a "
                "measurement, and not calibrated far from the training genotypes (a ranking, not a forecast)",
        "top": [{"rank": i + 1, "genotype": g, "id": gid, "utility": float(s), "predicted_gain": float(gg)}
                for i, (g, gid, s, gg) in enumerate(zip(genotypes, stream.genotype_ids(space, res.ids), scores,
                                                        gain))]})
    ctx.meta_record = {"darts": {"best_predicted_genotype": genotypes[0]}}
    return {"heldout_kendall_tau": held["kendall_tau"], "heldout_spearman_rho": held["spearman_rho"],
            "candidates": float(n_cand), "stream_s": stream_s, "candidates_per_s": n_cand / stream_s,
            "top1_utility_over_best_train": float(scores[0] - u_best)}
