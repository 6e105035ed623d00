"""HPO experiments: hpo_random, hpo_hyperband (live: every trial is a metanas run) and hpo_warmstart (TabRepo).

Config (``train:``): ``objective`` (an ``ExperimentObjective`` or a ``TabRepoTask``), ``method`` (``RandomSearch``,
``SuccessiveHalving`` or ``Hyperband``), ``space`` (list of parameter specs, see ``metanas.hpo.space``),
``sampler`` (random | model | metalearner, the last configured by ``metalearner:``; see
``metanas.hpo.metalearner``), ``warm_start`` ({k, source: none | run_store | tabrepo}), ``seeds``, ``budget``,
``strategies`` (TabRepo comparison).

Live pruning (``pruner``: none | metalearner | median | hyperband, settings in ``pruning:``): the trial trains in
segments and reports its metric at each checkpoint (``metanas.runners.pruning``); ``metalearner`` stops it when the
curve model (``metanas.hpo.curve_pruning``), fitted on the curves of this search's finished and pruned trials (read
back from their ``metrics.jsonl``) and of the ``pruning.related`` runs, is confident it ends no better than the
incumbent; ``median`` / ``hyperband`` are Optuna's pruners. A stopped trial is recorded with ``status: pruned``,
its partial ``curve`` and ``steps_trained``, and feeds the next fit.

Resume: finished (and pruned) evaluations are appended to ``trials.jsonl``; a resumed run replays the deterministic
schedule and takes finished evaluations from there instead of training again. Meta-features of the data set
a run uses and its incumbent go into the meta-dataset record (``metafeatures``, ``hpo``), which is what
``warm_start.source=run_store`` reads back for later tasks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from metanas.config import ConfigError, Count, NonNeg, NonNegInt, TrainBlock, takes_train, train_block
from metanas.hpo.importance import importance_table, main_effect_importance
from metanas.plots import plot_importance, plot_regret_curves
from metanas.runners.objectives import ExperimentObjective, TabRepoTask
from metanas.hpo.samplers import ModelBasedSampler, PortfolioSampler, RandomSampler
from metanas.hpo.schedulers import Trial, incumbent
from metanas.hpo.space import HyperparameterSpace, config_key, space_from_config
from metanas.hpo.surrogate import fit_rff_ridge, rff_predict
from metanas.hpo.warmstart import past_tasks_from_run_store, warm_start_configs
from metanas.runners.context import RunContext, require_one_seed

log = logging.getLogger(__name__)

SAMPLERS = ("random", "model", "metalearner")


@dataclass(frozen=True)
class WarmStart(TrainBlock):
    k: NonNegInt = 0  # warm-start configurations (0: none)
    source: Literal["tabrepo", "run_store"] = "tabrepo"  # TabRepo: where past tasks come from
    meta_dataset: str | None = None  # run_store: this file, else the top-level meta_dataset


@dataclass(frozen=True)
class MetaLearnerSampling(TrainBlock):
    """``train.metalearner`` of ``sampler: metalearner`` (see ``metanas.hpo.metalearner``)."""

    predictor: Any = None  # a predictor node (_target_); null: the top-level ``predictor:`` group
    n_candidates: int = 4096
    chunk: Count = 4096
    beta: NonNeg = 0.0
    min_points: int = 3  # random proposals until this many usable points exist
    top: Count = 256
    transfer: bool = False  # true: also records of other experiments that hold every key of the space
    trust: bool = False  # true: each earlier study (pair group) is a trust-weighted member (metanas.hpo.proposer
    # .TrustSampler, RGPE on this study's trials) instead of pooled into one fit; single-fidelity methods only
    task_keys: tuple[str, ...] = ()  # numeric trial-config keys describing the task (e.g. [train.classes])
    record_experiment: str | None = None  # null: the objective's experiment
    meta_dataset: str | None = None  # null: the top-level meta_dataset


@dataclass(frozen=True)
class Pruning(TrainBlock):
    """``train.pruning`` of ``train.pruner`` (live searches with ``RandomSearch``; trials that train in segments and
    report the objective's metric, e.g. ``metanas.runners.cell.run`` with ``+train.eval_every``)."""

    threshold: float = 0.9  # metalearner: prune when P(final no better than the incumbent) >= threshold
    min_checkpoints: int = 2  # metalearner: checkpoints seen before a trial may be pruned
    min_curves: int = 5  # metalearner: curves at hand (this search's and the related ones') before pruning
    min_std: float = 0.0  # metalearner: floor of the forecast's std (metric units)
    ensemble: int = 5
    hidden: Count = 32
    fit_steps: int = 300
    pretrain_steps: NonNegInt = 400
    related: tuple[str, ...] = ()  # run dirs of earlier live HPO runs whose trials' curves are source curves
    reduction_factor: int = 3  # hyperband


@dataclass(frozen=True)
class HPOTrain(TrainBlock):
    """``train:`` of the HPO experiments: live (``hpo_random``, ``hpo_hyperband``, ``hpo_sh_omniglot``,
    ``hpo_metalearner``) and TabRepo (``hpo_warmstart``)."""

    objective: Any = None  # ExperimentObjective | TabRepoTask node
    method: Any = None  # RandomSearch | SuccessiveHalving | Hyperband node
    task_name: str = ""  # live: the task's name in the meta-dataset record
    metafeatures_data: str | None = None  # live: import path of f(seed, data_dir) -> (x, y, classification)
    sampler: Literal["random", "model", "metalearner"] = "random"  # model: GP-EI on the encoded space (BOHB-style)
    metalearner: MetaLearnerSampling = MetaLearnerSampling()
    warm_start: WarmStart = WarmStart()
    pruner: Literal["none", "metalearner", "median", "hyperband"] = "none"  # live: stop trials early
    pruning: Pruning = Pruning()
    space: tuple[dict, ...] = ()  # live: parameter specs (metanas.hpo.space)
    strategies: tuple[str, ...] = ()  # TabRepo: the strategies compared
    seeds: Count = 10  # TabRepo: repetitions per strategy
    budget: Count = 32  # TabRepo: evaluations per strategy

    def __post_init__(self):
        super().__post_init__()
        if self.objective is None or self.method is None:
            raise ConfigError("train.objective and train.method are required (see conf/experiment/hpo_*.yaml)")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


@takes_train(HPOTrain)
def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    require_one_seed(cfg)  # no vmap over seeds here: seeds>1 is one line, not a mislabelled run
    t = train_block(HPOTrain, cfg)
    method = hydra.utils.instantiate(t.method, _convert_="all")
    objective = hydra.utils.instantiate(t.objective, _convert_="all")
    live = getattr(objective, "live", None)  # the objective says how it is evaluated (metanas.runners.objectives)
    if not isinstance(live, bool):
        raise ConfigError(f"train.objective: {type(objective).__name__} has no boolean class attribute 'live' (True: "
                          f"objective(config, fidelity, ...) trains a trial; False: recorded TabRepo results); use "
                          f"metanas.runners.objectives.ExperimentObjective or TabRepoTask")
    return (run_live if live else run_tabrepo)(cfg, t, ctx, method, objective)


# ---- live HPO: every evaluation is a metanas run ----------------------------------------------------------

def toy_regression_data(seed: int, data_dir: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """The toy experiment's data (SYNTHETIC sinusoid samples) as a table, for its meta-features."""
    from metanas.runners.toy import sample_batch

    x, y = sample_batch(seed, 1, 512, 0.1)
    return x, y[:, 0], False


def omniglot_data(seed: int, data_dir: str, n_chars: int = 50) -> tuple[np.ndarray, np.ndarray, bool]:
    """A table view of Omniglot for its meta-features: ``n_chars`` meta-train characters x 20 drawers,
    28x28 ink pooled 2x2 to 196 features, the character as the class (real data)."""
    from metanas.data.omniglot import load_omniglot_npz

    ink = load_omniglot_npz(Path(data_dir) / "omniglot", 28, cache_dir=str(Path("~/.cache/metanas").expanduser()))
    chars = np.random.default_rng(seed).choice(964, n_chars, replace=False)  # background set only
    x = ink[chars].astype(np.float32).reshape(n_chars, 20, 14, 2, 14, 2).mean((3, 5)).reshape(n_chars * 20, -1)
    return x / 255.0, np.repeat(np.arange(n_chars), 20), True


def _metafeatures(path: str | None, seed: int, data_dir: str) -> dict[str, float]:
    if not path:
        return {}
    from metanas.config import import_target
    from metanas.metafeatures import compute_metafeatures

    x, y, classification = import_target(path)(seed, data_dir)
    return compute_metafeatures(x, y, classification=classification, seed=seed)


def run_live(cfg: DictConfig, t: HPOTrain, ctx: RunContext, method: Any, objective: ExperimentObjective
             ) -> dict[str, float]:
    space = space_from_config(t.space)
    metafeatures = _metafeatures(t.metafeatures_data, cfg.seed, cfg.data_dir)
    base = _base_sampler(cfg, t, ctx, space, method, objective)
    propose, warm = base, []
    if t.warm_start.k > 0:
        past = past_tasks_from_run_store(t.warm_start.meta_dataset or cfg.meta_dataset,
                                         sorted(metafeatures) or None, exclude_task=t.task_name)
        query = np.array([metafeatures.get(n, math.nan) for n in past.feature_names])
        warm = [c for c in warm_start_configs(query, past, t.warm_start.k) if _valid(space, c)]
        propose = PortfolioSampler(tuple(warm), base)
    cache = {(r["key"], r["fidelity"]): r for r in _read_trials(ctx.path("trials.jsonl"))}
    ctx.metrics.truncate_after("trials", -1)  # a resumed run rewrites its rows while replaying
    records: list[dict] = []
    bar = ctx.progress(0, desc="trials")
    pruner = _live_pruner(t, space, method, objective)

    def evaluate(config: dict, fidelity: float) -> float:
        from contextlib import nullcontext

        from metanas.runners.pruning import read_curve, watching

        i = len(records)
        key = (config_key(config), float(fidelity))
        if key in cache:  # resumed: this evaluation finished (or was pruned) before the interruption
            rec = cache[key]
        else:
            watch = watching(pruner.decider(config, records)) if pruner else nullcontext()
            with watch:
                res = objective(config, fidelity, trial_dir=ctx.path(f"trials/{i:04d}"), seed=cfg.seed,
                                meta_dataset=cfg.meta_dataset, data_dir=cfg.data_dir)
            rec = {"key": key[0], "config": config, "fidelity": float(fidelity), "loss": res.loss,
                   "status": res.status, "run_dir": res.run_dir, "wall_s": res.wall_s, "error": res.error}
            if pruner:  # the curve as the trial logged it (run store), and the pruner's probabilities
                rec["curve"] = read_curve(res.run_dir, objective.metric)
                rec["steps_trained"] = float(fidelity) if res.status == "ok" else _steps_trained(res.run_dir)
                if t.pruner == "metalearner":
                    rec["p_no_better"] = [[k, p] for k, p in pruner.decisions]
            from metanas.run_store import append_jsonl

            append_jsonl(ctx.path("trials.jsonl"), rec)
        if pruner:
            pruner.finish(rec)
        records.append(rec)
        best = min((r["loss"] for r in records if r["fidelity"] == max(q["fidelity"] for q in records)),
                   default=math.inf)
        ctx.log("trials", i, {"loss": rec["loss"],
                              "fidelity": rec["fidelity"], "best_at_top_fidelity": best})
        bar.update(1)
        return rec["loss"]

    history = method.run(propose, evaluate, np.random.default_rng(cfg.seed))
    bar.close()
    inc = incumbent(history)
    trials = [dict(index=h.index, config=h.config, fidelity=h.fidelity, loss=h.loss, bracket=h.bracket,
                   rung=h.rung, cost=h.cost, run_dir=r["run_dir"], status=r["status"])
              for h, r in zip(history, records)]
    ctx.save_json("trials.json", trials)
    ctx.save_text("trials.md", trials_table(trials))
    ctx.save_json("best_config.json", {"config": inc.config, "loss": inc.loss, "fidelity": inc.fidelity})
    if hasattr(base, "weights"):  # the trust sampler: each earlier study's weight per round
        ctx.save_json("trust.json", {"studies": sorted(base.history), "weights_per_round": base.weights})
    imp = _importance(ctx, space, history)
    failed = sum(r["status"] != "ok" for r in records)
    ctx.meta_record |= {"metafeatures": metafeatures, "hpo": {
        "task": t.task_name, "best_config": inc.config, "best_loss": inc.loss, "fidelity_key": objective.fidelity_key,
        "warm_start_configs": warm, "method": type(method).__name__, "sampler": t.sampler}}
    out = {"best_loss": inc.loss, "best_fidelity": inc.fidelity, "n_trials": float(len(history)),
           "n_failed": float(failed), "cost_full_evals": float(sum(h.cost for h in history))}
    if pruner:
        pruned = [r for r in records if r["status"] == "pruned"]
        spent = sum(r.get("steps_trained", r["fidelity"]) for r in records if r["status"] != "failed")
        out |= {"n_pruned": float(len(pruned)), "steps_trained": float(spent),
                "steps_frac": float(spent / max(sum(r["fidelity"] for r in records), 1e-12))}
        out["n_failed"] = float(failed - len(pruned))
    return out | {f"importance_{k}": v for k, v in imp.items()}


def _live_pruner(t: HPOTrain, space: HyperparameterSpace, method: Any, objective: Any):
    """The ``LivePruner`` of ``train.pruner`` (None for ``none``); one-line errors for what cannot prune."""
    if t.pruner == "none":
        return None
    from metanas.hpo.curve_pruning import CurvePruning
    from metanas.hpo.schedulers import RandomSearch
    from metanas.runners.pruning import LivePruner

    if not isinstance(method, RandomSearch):
        raise ConfigError(f"train.pruner={t.pruner} needs train.method RandomSearch (one fidelity; the pruner stops "
                          f"trials within it), got {type(method).__name__}")
    if not getattr(objective, "in_process", False):
        raise ConfigError(f"train.pruner={t.pruner} needs train.objective.in_process=true (the pruner watches the "
                          f"trial's checkpoints in this process)")
    p = t.pruning
    source = [r for d in p.related for r in _related_trials(Path(d))]
    settings = CurvePruning(threshold=p.threshold, min_checkpoints=p.min_checkpoints, min_curves=p.min_curves,
                            min_std=p.min_std, ensemble=p.ensemble, hidden=p.hidden, fit_steps=p.fit_steps,
                            pretrain_steps=p.pretrain_steps)
    return LivePruner(t.pruner, settings, space.encode, bool(objective.maximize), source,
                      reduction_factor=p.reduction_factor)


def _related_trials(run_dir: Path) -> list[dict]:
    """Trial records with curves of an earlier live HPO run (``train.pruning.related``)."""
    path = run_dir / "trials.jsonl"
    if not path.exists():
        raise ConfigError(f"train.pruning.related: {run_dir} has no trials.jsonl; name run dirs of earlier live HPO "
                          f"runs (results/runs/<experiment>/<timestamp>)")
    return [r for r in _read_trials(path) if r.get("curve") and r.get("status") in ("ok", "pruned")]


def _steps_trained(run_dir: str | None) -> float:
    path = Path(run_dir or "") / "summary.json"
    if not run_dir or not path.exists():
        return 0.0
    return float(json.loads(path.read_text()).get("metrics", {}).get("steps_trained", 0.0))


def _base_sampler(cfg: DictConfig, t: HPOTrain, ctx: RunContext, space: HyperparameterSpace, method: Any,
                  objective: Any) -> Any:
    if t.sampler == "model":
        return ModelBasedSampler(space)
    if t.sampler == "random":
        return RandomSampler(space)
    return metalearner_sampler(cfg, t.metalearner, ctx, space, method, objective)


def metalearner_sampler(cfg: DictConfig, ml: MetaLearnerSampling, ctx: RunContext, space: HyperparameterSpace, method: Any,
                        objective: ExperimentObjective) -> Any:
    """``train.sampler=metalearner``: a ``MetaLearnerSampler`` fitted on the run store's records of the trial
    experiment (``train.metalearner``: predictor, n_candidates, chunk, beta, min_points, transfer, task_keys,
    record_experiment, meta_dataset). The records used are snapshotted in ``metalearner_records.json`` at the
    first start, so a resumed study replays the same proposals."""
    from metanas.hpo.metalearner import MetaLearnerSampler, load_records, load_snapshot, save_records
    from metanas.experiment import compose_config

    pred_cfg = _plain(ml.predictor) or _plain(cfg.predictor)
    predictor = hydra.utils.instantiate(pred_cfg, _convert_="all") if pred_cfg else None
    if predictor is not None and not (hasattr(predictor, "fit") and hasattr(predictor, "score_std")):
        raise ValueError(f"the meta-learner sampler's predictor {type(predictor).__name__} has no fit/score_std; "
                         f"use predictor=pairwise|mlp|ridge")
    task_keys = list(ml.task_keys)
    task: list[float] = []
    if task_keys:
        trial_cfg = compose_config([f"experiment={objective.experiment}", *objective.overrides])
        for k in task_keys:
            v = OmegaConf.select(trial_cfg, k, default=None)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"train.metalearner.task_keys: '{k}' is {v!r} in the trial config of "
                                 f"experiment={objective.experiment}; task keys must be numeric config keys")
            task.append(float(v))
    snap = ctx.path("metalearner_records.json")
    if snap.exists():  # resumed: the records read at the first start
        records = load_snapshot(snap)
    else:
        records = load_records(ml.meta_dataset or cfg.meta_dataset, space, metric=objective.metric,
                               maximize=objective.maximize,
                               experiment=ml.record_experiment or objective.experiment,
                               fidelity_key=objective.fidelity_key, task_keys=task_keys,
                               transfer=ml.transfer, current_task=task,
                               exclude_run_dir=str(ctx.run_dir))
        save_records(snap, records)
    log.info("meta-learner sampler: %d past records used (%s)", len(records.configs), records.stats)
    hi = float(method.max_fidelity)
    lo = float(getattr(method, "min_fidelity", hi))
    if ml.trust:
        from metanas.hpo.metalearner import _is_pairwise
        from metanas.hpo.proposer import Proposer, TrustSampler

        if lo != hi:
            raise ConfigError(f"train.metalearner.trust needs a single-fidelity method (RandomSearch); "
                              f"{type(method).__name__} runs fidelities {lo:g}..{hi:g}")
        if predictor is not None and not _is_pairwise(predictor):
            raise ConfigError(f"train.metalearner.trust needs predictor=pairwise, got {type(predictor).__name__}")
        if task:
            raise ConfigError("train.metalearner.trust: task_keys are not used (each earlier study is its own "
                              "member); leave train.metalearner.task_keys empty")
        proposer = Proposer(space, maximize=True, transform="raw", predictor=predictor,
                            n_candidates=ml.n_candidates, chunk=ml.chunk, beta=ml.beta, min_points=ml.min_points,
                            top=ml.top)
        return TrustSampler.from_records(proposer, records, objective.maximize, seed=int(cfg.seed))
    return MetaLearnerSampler(space, predictor=predictor, records=records, task=tuple(task),
                              maximize=objective.maximize, fidelity=(lo, hi),
                              n_candidates=ml.n_candidates, chunk=ml.chunk, beta=ml.beta,
                              min_points=ml.min_points, top=ml.top)


def trials_table(trials: list[dict]) -> str:
    """Markdown table of a live search: one row per trial, rung by rung, promoted configs marked."""
    keys = {}
    for t in trials:
        keys.setdefault(config_key(t["config"]), len(keys))
    promoted = {(t["bracket"], t["rung"] - 1, config_key(t["config"])) for t in trials if t["rung"] > 0}
    cols = list(dict.fromkeys(k for t in trials for k in t["config"]))
    lines = ["| trial | bracket | rung | fidelity | config id | " + " | ".join(cols) + " | loss | promoted |",
             "| ---: | ---: | ---: | ---: | ---: | " + " | ".join("---" for _ in cols) + " | ---: | :---: |"]
    for t in trials:
        vals = [t["config"].get(c, "") for c in cols]
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in vals]
        mark = "yes" if (t["bracket"], t["rung"], config_key(t["config"])) in promoted else ""
        lines.append(f"| {t['index']} | {t['bracket']} | {t['rung']} | {t['fidelity']:g} | "
                     f"{keys[config_key(t['config'])]} | " + " | ".join(cells) + f" | {t['loss']:.4f} | {mark} |")
    return "\n".join(lines) + "\n"


def _valid(space: HyperparameterSpace, config: dict) -> bool:
    try:
        space.validate(config)
        return True
    except ValueError:
        return False


def _read_trials(path: Path) -> list[dict]:
    from metanas.run_store import read_jsonl

    rows = read_jsonl(path) if path.exists() else []
    for r in rows:  # inf losses (failed / pruned trials) are stored as the string "inf"
        r["loss"] = float(r["loss"])
    return rows


def _importance(ctx: RunContext, space: HyperparameterSpace, history: list[Trial]) -> dict[str, float]:
    """Main-effect importance of each hyperparameter (and the fidelity) from an RFF-ridge fit of the trials."""
    ok = [h for h in history if math.isfinite(h.loss)]
    if len(ok) < 6:
        return {}
    fids = np.array([h.fidelity for h in ok])
    x = np.stack([np.concatenate([space.encode(h.config), [math.log(h.fidelity)]]) for h in ok])
    y = np.array([h.loss for h in ok])
    y = np.log(y) if np.all(y > 0) else y  # losses such as -accuracy stay linear
    model = fit_rff_ridge(x, y, seed=0, num_features=128, lengthscale=2.0, l2=1e-2)
    groups = space.column_groups() + [("fidelity", slice(space.width, space.width + 1))]
    if len(np.unique(fids)) == 1:
        groups = groups[:-1]
    imp = main_effect_importance(lambda z: rff_predict(model, z), x, groups)
    ctx.save_text("importance.md", "Main-effect importance on (log) loss from an RFF-ridge fit of all trials "
                  f"({len(ok)} points; small samples: indicative only)\n\n" + importance_table(imp))
    plot_importance(imp, ctx.path("importance.png"), title=f"{ctx.cfg.name}: hyperparameter importance")
    return imp


# ---- TabRepo: warm vs cold start on one task (simulated evaluations) ---------------------------------------

def _tabrepo_metafeatures(tr: Any, i: int) -> dict[str, float]:
    from metanas.benchmarks.autosklearn import metafeatures_from_openml

    q = {c: float(tr.openml_qualities[c][i]) for c in tr.openml_qualities}
    own = {f"openml.{n}": float(v) for n, v in zip(tr.task_feature_names, tr.task_features_raw[i])}
    askl = {k: v for k, v in metafeatures_from_openml(q, tr.problem_type[i]).items() if math.isfinite(v)}
    return own | askl


def run_tabrepo(cfg: DictConfig, t: HPOTrain, ctx: RunContext, method: Any, objective: TabRepoTask
                ) -> dict[str, float]:
    from metanas.benchmarks.tabrepo import load_tabrepo, normalized_regret
    from metanas.hpo.simulation import (STRATEGIES, average_rank_configs, fit_meta_learner, knn_warm_configs,
                                        rank_targets, strategy_curves)

    tr = load_tabrepo(objective.tabrepo_dir or cfg.data_dir)
    objective = dataclasses.replace(objective, task=str(objective.task))  # `task=146818` parses as an int
    if objective.task not in tr.task_names:
        raise ValueError(f"train.objective.task={objective.task!r} is not a TabRepo task id; valid ids include "
                         f"{', '.join(tr.task_names[:6])}, ... ({len(tr.task_names)} in all)")
    bad = [s for s in t.strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"train.strategies: unknown {bad}; choose from {list(STRATEGIES)}")
    target = tr.task_names.index(objective.task)
    regret = normalized_regret(tr.error.astype(np.float64))
    cf = tr.config_features.astype(np.float64)
    past = np.array([i for i in range(len(tr.task_names)) if i != target])
    metafeatures = _tabrepo_metafeatures(tr, target)
    k = t.warm_start.k
    if t.warm_start.source == "run_store":  # past tasks = earlier runs recorded in the meta-dataset
        names = [f"openml.{n}" for n in tr.task_feature_names]
        store = past_tasks_from_run_store(t.warm_start.meta_dataset or cfg.meta_dataset, names,
                                          exclude_task=objective.task)
        knn = [tr.config_names.index(c) for c in warm_start_configs(
            np.array([metafeatures[n] for n in names]), store, k) if c in tr.config_names]
        source = f"run store ({len(store.names)} past tasks)"
    else:
        knn = knn_warm_configs(tr.task_features, regret.argmin(1), target, past, k)
        source = f"TabRepo ({len(past)} other tasks)"
    prior = fit_meta_learner(tr.task_features, cf, rank_targets(regret), past, seed=cfg.seed)(
        tr.task_features[target]) if any(s.endswith("+meta") for s in t.strategies) else None
    avg = average_rank_configs(regret, past, k)
    seeds = [cfg.seed * 1000 + s for s in range(t.seeds)]
    curves = {}
    for s in t.strategies:
        c = strategy_curves(s, regret=regret, config_features=cf, target=target, seeds=seeds, budget=t.budget,
                            knn=knn, meta_prior=prior, avg=avg, default=tr.config_names.index("LightGBM_c1"),
                            sh=method, noise=objective.noise)
        curves[s] = np.nanmean(c, 0)
        for b in range(t.budget):
            if np.isfinite(curves[s][b]):
                ctx.log(s, b + 1, {"regret": float(curves[s][b])})
    ctx.save_json("curves.json", {s: v.tolist() for s, v in curves.items()})
    plot_regret_curves(ctx.path("warm_vs_cold.png"), curves,
                       f"TabRepo task {objective.task} ({tr.dataset_names[target]})")
    best = int(np.argmin(regret[target]))  # the table is complete: the task's best config is known exactly
    ctx.meta_record |= {"metafeatures": metafeatures, "hpo": {
        "task": objective.task, "dataset": tr.dataset_names[target], "best_config": tr.config_names[best],
        "best_loss": float(tr.error[target, best]), "warm_start_source": source,
        "warm_start_configs": [tr.config_names[c] for c in knn], "best_hyperparameters": tr.hyperparameters[best]}}
    ctx.save_json("metafeatures.json", metafeatures)
    out = {}
    for s, v in curves.items():
        out[f"{s}_regret_at_{t.budget}"] = float(v[-1])
        out[f"{s}_area"] = float(np.nanmean(v))
    return out
