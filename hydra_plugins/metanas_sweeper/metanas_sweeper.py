"""``hydra/sweeper=metanas``: the metanas meta-learner searches any Hydra app.

Configuration (``hydra.sweeper.*``; names as the Optuna sweeper names them where it has them):

- ``params``: the search space in Hydra's override grammar (``choice(a, b)``, ``range(1, 8)``,
  ``interval(0, 1)``, ``tag(log, interval(1e-4, 1e-1))``); sweep overrides on the command line count too, plain
  values are fixed for every trial.
- ``n_trials``, ``n_jobs`` (trials per launcher call: a batch runs through whichever launcher is configured),
  ``direction`` (minimize | maximize; a list of two or more is rejected: one objective), ``seed``.
- ``sampler``: ``metalearner`` (default), or Optuna's ``tpe`` / ``gp`` / ``random`` as cold-start options
  (Optuna >= 5 samplers behind the same sweeper, trial store and resume).
- ``history``: earlier sweeps to learn from: multirun directories (every ``metanas_trials.jsonl`` below them is
  one earlier study) or metanas run stores (``.jsonl`` meta-datasets; ``history_metric`` names the metric read
  from their records, each (experiment, data set) is one study). Records of related apps count when their
  parameter names match this space; how much each study helps is decided by the trust weighting
  (``metanas.hpo.proposer``).
- ``n_candidates``, ``beta``, ``min_points``: the meta-learner's (``metanas.hpo.proposer.Proposer``).

The objective is the task function's return value (a number; ``None``/NaN or an exception = a failed trial).
Each trial is appended to ``<sweep dir>/metanas_trials.jsonl`` (job, overrides, params, value, status, error)
when it is launched ("running") and when it returns; the best one goes to ``optimization_results.yaml``. Running
the same command again with the same ``hydra.sweep.dir`` resumes: finished trials are read back and not
repeated, trials that never finished are launched again first, and the sweep continues to ``n_trials``.
"""


import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

SAMPLERS = ("metalearner", "tpe", "gp", "random")
TRIALS = "metanas_trials.jsonl"


@dataclass
class MetanasSweeperConf:
    _target_: str = "hydra_plugins.metanas_sweeper.metanas_sweeper.MetanasSweeper"
    params: Optional[Any] = None  # {key: override grammar}
    n_trials: int = 20
    n_jobs: int = 1
    direction: Any = "minimize"
    seed: int = 0
    sampler: str = "metalearner"
    history: List[str] = field(default_factory=list)
    history_metric: Optional[str] = None  # run-store history: the metric of each record (null: not used)
    n_candidates: int = 4096
    beta: float = 0.5
    min_points: int = 3
    max_failure_rate: float = 1.0  # stop when more than this share of a batch failed


ConfigStore.instance().store(group="hydra/sweeper", name="metanas", node=MetanasSweeperConf, provider="metanas")


class SweeperConfigError(ValueError):
    """A sweeper setting that cannot be used (one line: what was wrong, what would be right)."""


# ---- search space from Hydra's override grammar -----------------------------------------------------------------

def param_of(override: Override):
    """A ``metanas.hpo.space.Hyperparameter`` of one sweep override (None for a plain value)."""
    from metanas.hpo.space import Hyperparameter

    name = override.get_key_element()
    if not override.is_sweep_override():
        return None
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        choices = tuple(override.sweep_iterator(transformer=Transformer.encode))
        return Hyperparameter(name, "categorical", choices=choices)
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        items = list(override.sweep_iterator(transformer=Transformer.identity))
        if all(isinstance(v, int) for v in items) and value.step == 1:
            return Hyperparameter(name, "int", low=float(min(items)), high=float(max(items)))
        choices = tuple(override.sweep_iterator(transformer=Transformer.encode))
        return Hyperparameter(name, "categorical", choices=choices)
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log_scale = "log" in value.tags
        kind = "int" if isinstance(value.start, int) and isinstance(value.end, int) else "float"
        if log_scale and value.start <= 0:
            raise SweeperConfigError(f"hydra.sweeper.params.{name}: tag(log, interval({value.start}, {value.end})) "
                                     f"needs a start > 0")
        return Hyperparameter(name, kind, low=float(value.start), high=float(value.end), log=log_scale)
    raise SweeperConfigError(f"{name}: {override.input_line!r} is not a search space the metanas sweeper knows; use "
                             f"choice(...), range(...), interval(a, b) or tag(log, interval(a, b))")


def parse_space(arguments: List[str]):
    """(HyperparameterSpace, fixed overrides [str]) of the sweeper params and the command line's arguments."""
    from metanas.hpo.space import HyperparameterSpace

    params, fixed = {}, []
    for o in OverridesParser.create().parse_overrides(arguments):
        p = param_of(o)
        if p is None:
            fixed.append(o.input_line)
        else:
            params[p.name] = p
    if not params:
        raise SweeperConfigError("the metanas sweeper found no search space: set hydra.sweeper.params (e.g. "
                                 "'hydra.sweeper.params.lr=tag(log, interval(1e-4, 1e-1))') or give sweep overrides")
    return HyperparameterSpace(tuple(params.values())), fixed


def override_value(p, v) -> str:
    if p.type == "categorical":
        return str(v)  # the encoded choice as written
    if p.type == "int":
        return str(int(v))
    return repr(float(v))


# ---- the trial store (this sweep and earlier ones) ----------------------------------------------------------------

def read_trials(path: Path) -> list[dict]:
    """Rows of a metanas_trials.jsonl, the last row per job (launched rows are superseded by their result)."""
    from metanas.run_store import read_jsonl

    rows: dict[int, dict] = {}
    for r in read_jsonl(path):
        rows[int(r["job"])] = r
    return [rows[k] for k in sorted(rows)]


def history_records(paths: List[str], space, metric: Optional[str], *, exclude: Path | None = None) -> dict:
    """{study name: [Record]} of the earlier sweeps / run stores named in ``hydra.sweeper.history``."""
    from metanas.hpo.proposer import Record

    out: dict[str, list] = {}
    for entry in paths:
        p = Path(os.path.expanduser(str(entry)))
        if not p.exists():
            raise SweeperConfigError(f"hydra.sweeper.history: {p} does not exist; give multirun directories of "
                                     f"earlier sweeps or a metanas run store (results/meta_dataset.jsonl)")
        if p.is_file() and p.name != TRIALS:  # a run store (meta-dataset records)
            if not metric:
                raise SweeperConfigError(f"hydra.sweeper.history: {p} is a run store; set hydra.sweeper.history_metric "
                                         f"to the metric of its records that this sweep's objective is")
            from metanas.run_store import read_jsonl

            for row in read_jsonl(p):
                value = (row.get("metrics") or {}).get(metric)
                cfg = row.get("config") or {}
                if value is None or not all(n in cfg for n in space.names):
                    continue
                name = f"{p}:{row.get('experiment')}|{row.get('dataset')}"
                out.setdefault(name, []).append(Record({n: cfg[n] for n in space.names}, float(value), "ok"))
            continue
        files = [p] if p.is_file() else sorted(p.glob(f"**/{TRIALS}"))
        for f in files:
            if exclude is not None and f.resolve() == exclude.resolve():
                continue
            rows = read_trials(f)
            recs = [Record(r["params"], r.get("value"), r.get("status", "failed")) for r in rows]
            if recs:
                out[str(f.parent)] = recs
    return out


def _directions(direction: Any) -> list[str]:
    ds = list(direction) if isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction) else [direction]
    ds = [str(getattr(d, "name", d)).lower() for d in ds]
    bad = [d for d in ds if d not in ("minimize", "maximize")]
    if bad:
        raise SweeperConfigError(f"hydra.sweeper.direction={bad[0]!r}; expected minimize or maximize")
    if len(ds) != 1:
        raise SweeperConfigError(f"hydra.sweeper.direction has {len(ds)} directions; the metanas sweeper optimises one "
                                 f"objective (return one number; combine objectives in the task function)")
    return ds


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def make_proposer(kind: str, space, maximize: bool, *, seed: int = 0, history: Optional[dict] = None,
                  n_candidates: int = 4096, beta: float = 0.5, min_points: int = 3):
    """``propose(n, records, batch) -> [config]`` of one sampler kind (the sweeper's; study scripts call it too).
    ``metalearner``: ``metanas.hpo.proposer.Proposer`` with ``history`` ({study: [Record]}); ``tpe`` / ``gp`` /
    ``random``: one Optuna study for the sweep, told every finished record (a resumed sweep's too)."""
    if kind == "metalearner":
        import numpy as np

        from metanas.hpo.proposer import Proposer

        chunk = min(n_candidates, 4096)
        proposer = Proposer(space, maximize=maximize, n_candidates=n_candidates,
                            chunk=chunk if n_candidates % chunk == 0 else n_candidates, beta=beta,
                            min_points=min_points)
        members = proposer.history_members(history, seed=seed) if history else None

        def propose(n, records, batch):
            info: dict = {}
            out = proposer.propose(n, records, history, np.random.default_rng([seed, batch]), members=members,
                                   info=info)
            if "weights" in info:
                log.info("metanas sweeper: trust weights %s", info["weights"])
            return out

        return propose
    if kind not in ("tpe", "gp", "random"):
        raise SweeperConfigError(f"hydra.sweeper.sampler={kind!r}; expected one of {', '.join(SAMPLERS)}")
    import importlib.util

    if kind == "gp" and importlib.util.find_spec("torch") is None:  # else it fails only after the start-up trials
        raise SweeperConfigError("hydra.sweeper.sampler=gp is Optuna's GPSampler, which needs torch; "
                                 "pip install torch, or choose tpe or random")
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from metanas.hpo.space import config_key

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p.name: (CategoricalDistribution(list(p.choices)) if p.type == "categorical"
                      else IntDistribution(int(p.low), int(p.high), log=p.log) if p.type == "int"
                      else FloatDistribution(p.low, p.high, log=p.log)) for p in space.params}
    sampler = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
               "gp": lambda: optuna.samplers.GPSampler(seed=seed),
               "random": lambda: optuna.samplers.RandomSampler(seed=seed)}[kind]()
    study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
    asked: dict[str, Any] = {}  # config key -> asked trial awaiting its result
    told = [0]  # records already in the study

    def propose(n, records, batch):
        for r in records[told[0]:]:
            ok = r.status == "ok" and _number(r.value) is not None
            state = optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL
            trial = asked.pop(config_key(r.params), None)
            if trial is not None:
                study.tell(trial, _number(r.value) if ok else None, state=state)
            else:
                study.add_trial(optuna.trial.create_trial(params=dict(r.params), distributions=dists, state=state,
                                                          value=_number(r.value) if ok else None))
        told[0] = len(records)
        out = []
        for _ in range(n):
            trial = study.ask(dists)
            asked[config_key(trial.params)] = trial
            out.append(dict(trial.params))
        return out

    return propose


class MetanasSweeper(Sweeper):
    def __init__(self, params=None, n_trials: int = 20, n_jobs: int = 1, direction: Any = "minimize", seed: int = 0,
                 sampler: str = "metalearner", history=(), history_metric=None, n_candidates: int = 4096,
                 beta: float = 0.5, min_points: int = 3, max_failure_rate: float = 1.0) -> None:
        self.params = params
        self.n_trials, self.n_jobs, self.seed = int(n_trials), int(n_jobs), int(seed)
        self.direction = direction
        self.sampler = str(sampler)
        self.history = list(history or [])
        self.history_metric = history_metric
        self.n_candidates, self.beta, self.min_points = int(n_candidates), float(beta), int(min_points)
        self.max_failure_rate = float(max_failure_rate)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)
        self.sweep_dir = Path(config.hydra.sweep.dir)

    # -- the sweep --------------------------------------------------------------------------------------------
    def sweep(self, arguments: List[str]) -> None:
        from metanas.hpo.proposer import Record
        from metanas.run_store import append_jsonl, atomic_write_text

        if self.sampler not in SAMPLERS:
            raise SweeperConfigError(f"hydra.sweeper.sampler={self.sampler!r}; expected one of {', '.join(SAMPLERS)}")
        maximize = _directions(self.direction)[0] == "maximize"
        spec = [f"{k}={v}" for k, v in (OmegaConf.to_container(self.params) if OmegaConf.is_config(self.params)
                                        else (self.params or {})).items()]
        space, fixed = parse_space(spec + list(arguments))
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        store = self.sweep_dir / TRIALS
        rows = read_trials(store) if store.exists() else []
        done = [r for r in rows if r["status"] in ("ok", "failed")]
        pending = [r for r in rows if r["status"] == "running"]
        if rows:
            log.info("metanas sweeper: resuming %s: %d finished trial(s), %d to run again", self.sweep_dir,
                     len(done), len(pending))
        job = max((int(r["job"]) for r in rows), default=-1) + 1
        history = None
        if self.sampler == "metalearner":
            from metanas.compilation_cache import configure

            configure("auto")  # compiled proposer programs are reused across sweeps and processes
            history = history_records(self.history, space, self.history_metric, exclude=store)
            if history:
                log.info("metanas sweeper: history %s", {k: len(v) for k, v in history.items()})
        elif self.history:
            log.warning("metanas sweeper: hydra.sweeper.history is read by sampler=metalearner only; %s starts cold",
                        self.sampler)
        propose = make_proposer(self.sampler, space, maximize, seed=self.seed, history=history,
                                n_candidates=self.n_candidates, beta=self.beta, min_points=self.min_points)
        log.info("metanas sweeper: %s, %d trial(s), %s, space %s", self.sampler, self.n_trials,
                 "maximize" if maximize else "minimize", list(space.names))
        records = [Record(r["params"], r.get("value"), r["status"]) for r in done]
        batch = len(done)
        while len(records) < self.n_trials:
            n = min(self.n_jobs, self.n_trials - len(records))
            configs = [r["params"] for r in pending[:n]]
            pending = pending[n:]
            if len(configs) < n:
                configs += propose(n - len(configs), records, batch)
            overrides = [tuple(fixed) + tuple(f"{p.name}={override_value(p, c[p.name])}" for p in space.params
                                              if p.name in c) for c in configs]
            for i, (c, o) in enumerate(zip(configs, overrides)):
                append_jsonl(store, {"job": job + i, "overrides": list(o), "params": c, "value": None,
                                     "status": "running", "error": None})
            returns = self.launcher.launch(overrides, initial_job_idx=job)
            failed = 0
            for i, (c, o, ret) in enumerate(zip(configs, overrides, returns)):
                err = None
                if ret.status == JobStatus.COMPLETED:
                    value = _number(ret.return_value)
                    if value is None:
                        err = f"the task function returned {ret.return_value!r}; expected a finite number"
                else:
                    value, err = None, f"{type(ret._return_value).__name__}: {ret._return_value}"
                status = "ok" if err is None else "failed"
                failed += status == "failed"
                append_jsonl(store, {"job": job + i, "overrides": list(o), "params": c, "value": value,
                                     "status": status, "error": err})
                records.append(Record(c, value, status))
            job += len(returns)
            batch = len(records)
            if failed / max(len(returns), 1) > self.max_failure_rate:
                raise RuntimeError(f"{failed} of {len(returns)} trials failed (max_failure_rate="
                                   f"{self.max_failure_rate}); see {store}")
        ok = [(r.value, r.params) for r in records if r.status == "ok"]
        if ok:
            best = (max if maximize else min)(ok, key=lambda t: t[0])
            atomic_write_text(self.sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(OmegaConf.create(
                {"name": "metanas", "sampler": self.sampler, "best_params": best[1], "best_value": best[0],
                 "n_trials": len(records), "n_ok": len(ok)})))
            log.info("metanas sweeper: best %s = %s (%d/%d trials ok) -> %s", best[1], best[0], len(ok), len(records),
                     self.sweep_dir / "optimization_results.yaml")
        else:
            log.warning("metanas sweeper: no trial finished ok; see %s", store)

