"""Library baselines on a curve table, every one reading the same ``CurveTable`` through ``CurveBlackbox``.

- Syne Tune (0.16; ``pip install metanas[curves]``): its simulator backend (``UserBlackboxBackend``) over
  ``CurveBlackbox``, a Syne Tune ``Blackbox`` whose configuration space is the table's scaled features in [0, 1]^D
  and whose answer for any configuration is the curve of the NEAREST kept configuration (the 1-nearest-neighbour
  surrogate Syne Tune's own blackbox repository recommends for tabular benchmarks, ``add_surrogate(...,
  KNeighborsRegressor(n_neighbors=1))``; here done by hand because the table is in memory). Schedulers: ``ASHA``
  (one bracket), ``Hyperband`` (Syne Tune's asynchronous Hyperband: ``ASHA`` with every bracket), ``BOHB``
  (ASHA + KDE searcher), ``RandomSearch`` (full curves). One worker, so the simulated time is the budget spent.
  ``dyhpo``: Syne Tune's DyHPO (``syne_tune.optimizer.legacy_baselines.DyHPO``, a pause-and-resume scheduler with
  MOBSTER's GP surrogate; library defaults: linearly spaced rungs 1, 3, 5, ..., ``probability_sh`` 0.25,
  ``opt_skip_period`` 3). Syne Tune 0.16 ships no DyHPO; it needs Syne Tune 0.14.2 with its GP searchers in its own
  environment (``pip install "syne-tune[gpsearchers]==0.14.2"``: numpy < 1.27), where the same ``CurveBlackbox`` and
  simulator backend are read through the same code (their API is unchanged between the two releases; only the
  schedulers' modules differ, imported per method below).
- Optuna (5.x): random configurations (``RandomSampler`` over the same [0, 1]^D, nearest kept config), each trial
  reporting its curve checkpoint by checkpoint; ``MedianPruner`` or ``HyperbandPruner`` stops it.

Every function returns ``(spent [E], values [E], cfg [E])``: one row per checkpoint observed, in order (``spent`` =
cumulative cost), which ``curve_trace`` turns into the incumbent trace the freeze-thaw searchers produce.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np


def nearest_kept(x: np.ndarray, keep: np.ndarray):
    """A function [D] -> index of the nearest kept config (Euclidean on the scaled features)."""
    idx = np.flatnonzero(keep)
    xk = np.asarray(x, np.float64)[idx]

    def f(v) -> int:
        return int(idx[np.argmin(((xk - np.asarray(v, np.float64)[None, :]) ** 2).sum(1))])

    return f


def curve_trace(spent, values, cfg, incumbent: str = "any", L: int | None = None, final_flags=None):
    """(spent, inc, inc_cfg) [E] from one row per observed checkpoint (``incumbent='any'``: best value so far)."""
    spent = np.asarray(spent, np.float64)
    v = np.asarray(values, np.float64)
    v = np.where(np.isfinite(v), v, np.inf)
    if incumbent == "final":
        v = np.where(np.asarray(final_flags, bool), v, np.inf)
    inc = np.minimum.accumulate(v) if len(v) else v
    arg = np.zeros(len(v), int)
    best, bi = np.inf, -1
    for k in range(len(v)):
        if v[k] < best:
            best, bi = v[k], int(cfg[k])
        arg[k] = bi
    return spent, inc, arg


def _blackbox(x, y, cost, keep):
    from syne_tune.blackbox_repository.blackbox import Blackbox
    from syne_tune.config_space import randint, uniform

    L = y.shape[1]
    near = nearest_kept(x, keep)
    names = [f"x{j}" for j in range(x.shape[1])]
    elapsed = np.cumsum(cost, 1)

    class CurveBlackbox(Blackbox):
        """A metanas ``CurveTable`` task as a Syne Tune blackbox (nearest kept configuration)."""

        def __init__(self):
            super().__init__(configuration_space={n: uniform(0.0, 1.0) for n in names},
                             fidelity_space={"epoch": randint(1, L)},
                             objectives_names=["valid", "elapsed_time", "cfg"])

        @property
        def fidelity_values(self):
            return np.arange(1, L + 1)

        def _objective_function(self, configuration, fidelity=None, seed=None):
            i = near([configuration[n] for n in names])
            out = np.stack([y[i], elapsed[i], np.full(L, float(i))], 1)
            if fidelity is None:
                return out
            f = int(fidelity["epoch"] if isinstance(fidelity, dict) else fidelity)
            return dict(zip(self.objectives_names, out[f - 1]))

    return CurveBlackbox(), names


SYNETUNE_METHODS = ("random", "asha", "hyperband", "bohb", "dyhpo")


def has_dyhpo() -> bool:
    """Whether the installed Syne Tune has DyHPO (0.14.x's ``legacy_baselines``; 0.16 has none)."""
    import importlib.util

    try:
        return importlib.util.find_spec("syne_tune.optimizer.legacy_baselines") is not None
    except ImportError:  # no syne_tune at all
        return False


def _scheduler(method: str, space: dict, seed: int, L: int, eta: int):
    """The Syne Tune scheduler of ``method`` over ``space`` (the only part that differs between 0.14.2 and 0.16)."""
    if method == "dyhpo":
        from syne_tune.optimizer.legacy_baselines import DyHPO  # Syne Tune <= 0.14

        return DyHPO(config_space=space, metric="valid", mode="min", resource_attr="epoch", max_t=L,
                     random_seed=seed)
    from syne_tune.optimizer.baselines import ASHA, BOHB, RandomSearch  # Syne Tune 0.16's signatures

    if method == "random":
        return RandomSearch(config_space=space, metrics=["valid"], do_minimize=True, random_seed=seed)
    s_max = int(np.floor(np.log(L) / np.log(eta) + 1e-9))
    brackets = 1 if method == "asha" else s_max + 1
    cls = ASHA if method in ("asha", "hyperband") else BOHB
    return cls(config_space=space, metric="valid", do_minimize=True, random_seed=seed, time_attr="epoch", max_t=L,
               grace_period=1, reduction_factor=eta, brackets=brackets)


def synetune(method: str, seed: int, x: np.ndarray, y: np.ndarray, cost: np.ndarray, keep: np.ndarray,
             budget: float, eta: int = 3):
    """Run one Syne Tune scheduler on one task [N, L] of a curve table until ``budget`` cost is spent."""
    from syne_tune import Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend

    if method not in SYNETUNE_METHODS:
        raise ValueError(f"syne tune method {method!r}; choose one of {', '.join(SYNETUNE_METHODS)}")
    for name in ("syne_tune", "syne_tune.tuner"):
        logging.getLogger(name).setLevel(logging.ERROR)
    y = np.where(np.isfinite(y), y, 1e6)  # kept configs have no NaN; a neighbour never is unkept
    bb, names = _blackbox(x, y, cost, keep)
    L = y.shape[1]
    sched = _scheduler(method, dict(bb.configuration_space), seed, L, eta)
    rows: list[tuple[float, float, int]] = []
    spent_now = [0.0]  # the stop criterion: budget counted from the results the scheduler received

    from syne_tune.tuner_callback import TunerCallback

    class Record(TunerCallback):
        def on_trial_result(self, trial, status, result, decision):
            rows.append((float(result["epoch"]), float(result["valid"]), int(result["cfg"])))
            spent_now[0] += float(cost[int(result["cfg"]), int(result["epoch"]) - 1])

    backend = UserBlackboxBackend(blackbox=bb, elapsed_time_attr="elapsed_time", seed=0)
    with tempfile.TemporaryDirectory() as d:
        old = os.environ.get("SYNETUNE_FOLDER")
        os.environ["SYNETUNE_FOLDER"] = d
        try:
            tuner = Tuner(trial_backend=backend, scheduler=sched,
                          stop_criterion=lambda status: spent_now[0] >= budget, n_workers=1, sleep_time=0,
                          callbacks=[SimulatorCallback(), Record()], save_tuner=False, print_update_interval=1e9,
                          results_update_interval=1e9, suffix_tuner_name=True)
            tuner.run()
        finally:
            if old is None:
                os.environ.pop("SYNETUNE_FOLDER", None)
            else:
                os.environ["SYNETUNE_FOLDER"] = old
    spent = np.cumsum([cost[c, int(e) - 1] for e, _, c in rows]) if rows else np.zeros(0)
    ok = spent <= budget + 1e-9
    vals = np.array([v for _, v, _ in rows])[ok] if rows else np.zeros(0)
    cfgs = np.array([c for _, _, c in rows])[ok] if rows else np.zeros(0, int)
    final = np.array([int(e) == L for e, _, _ in rows])[ok] if rows else np.zeros(0, bool)
    return spent[ok], vals, cfgs, final


OPTUNA_METHODS = ("median", "hyperband")


def optuna_pruner(method: str, seed: int, x: np.ndarray, y: np.ndarray, cost: np.ndarray, keep: np.ndarray,
                  budget: float, eta: int = 3):
    """Optuna's RandomSampler + ``MedianPruner`` / ``HyperbandPruner`` on one task until ``budget`` is spent."""
    import optuna

    if method not in OPTUNA_METHODS:
        raise ValueError(f"optuna pruner {method!r}; choose one of {', '.join(OPTUNA_METHODS)}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    L = y.shape[1]
    near = nearest_kept(x, keep)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if method == "median"
              else optuna.pruners.HyperbandPruner(min_resource=1, max_resource=L, reduction_factor=eta))
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=seed), pruner=pruner)
    rows: list[tuple[float, float, int, bool]] = []
    spent = 0.0
    while spent < budget:
        trial = study.ask()
        i = near([trial.suggest_float(f"x{j}", 0.0, 1.0) for j in range(x.shape[1])])
        last = np.inf
        state = optuna.trial.TrialState.COMPLETE
        for e in range(L):
            if spent >= budget:
                state = optuna.trial.TrialState.PRUNED
                break
            spent += float(cost[i, e])
            last = float(y[i, e])
            rows.append((spent, last, i, e == L - 1))
            trial.report(last, e)
            if e < L - 1 and trial.should_prune():
                state = optuna.trial.TrialState.PRUNED
                break
        if state == optuna.trial.TrialState.COMPLETE:
            study.tell(trial, last)
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    a = np.array(rows, dtype=object) if rows else np.zeros((0, 4), object)
    return (a[:, 0].astype(float), a[:, 1].astype(float), a[:, 2].astype(int), a[:, 3].astype(bool))


def run_library(name: str, seed: int, x, y, cost, keep, budget: float, incumbent: str = "any") -> dict[str, Any]:
    """``name`` = ``synetune_<method>`` or ``optuna_<pruner>``: (spent, inc, inc_cfg) of one run on one task."""
    lib, method = name.split("_", 1)
    fn = {"synetune": synetune, "optuna": optuna_pruner}[lib]
    spent, vals, cfgs, final = fn(method, seed, np.asarray(x), np.asarray(y), np.asarray(cost), np.asarray(keep),
                                  budget)
    s, inc, arg = curve_trace(spent, vals, cfgs, incumbent, final_flags=final)
    return {"spent": s, "inc": inc, "inc_cfg": arg}
