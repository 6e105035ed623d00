"""The checkpoint hook between a live HPO search and the trial it is training in this process.

A trial runner that trains in segments (``metanas.runners.cell.run`` with ``train.eval_every > 0``) calls
``checkpoint(k, of, value)`` after its k-th of ``of`` checkpoints with the value of the searched metric; the HPO
runner (``train.pruner``) installs the decision with ``watching(decide)`` around the trial, and ``True`` stops the
trial there (it is then recorded with ``status: pruned`` and its partial curve). Without a watcher (a plain run)
``checkpoint`` says False and the run trains to the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Decide = Callable[[int, int, float], bool]
_WATCHER: ContextVar[Decide | None] = ContextVar("metanas_pruning_watcher", default=None)


def checkpoint(k: int, of: int, value: float) -> bool:
    """Report the metric after checkpoint ``k`` (1-based) of ``of``; True: stop the run here."""
    decide = _WATCHER.get()
    return bool(decide(k, of, value)) if decide is not None and k < of else False


@contextmanager
def watching(decide: Decide) -> Iterator[None]:
    """Route the ``checkpoint`` calls of runs started inside this block to ``decide(k, of, value)``."""
    token = _WATCHER.set(decide)
    try:
        yield
    finally:
        _WATCHER.reset(token)


class LivePruner:
    """``train.pruner`` of the live HPO runner: ``decider(config, records)`` gives the ``Decide`` for the trial about
    to train, ``finish(record)`` files every finished, pruned or resumed trial in order (``records``: this search's
    trial records so far, dicts with ``config``, ``status`` and ``curve``, the seed-mean metric per checkpoint).

    - ``metalearner``: ``metanas.hpo.curve_pruning.CurvePruner`` fitted on the curves of this search's finished and
      pruned trials and of ``source`` (records of related searches), incumbent = best finished trial.
    - ``median`` / ``hyperband``: Optuna's ``MedianPruner()`` / ``HyperbandPruner(min_resource=1,
      reduction_factor)`` on an in-memory study that mirrors the trials (resumed ones are replayed into it).
    """

    def __init__(self, kind: str, settings, encode: Callable, maximize: bool, source: list[dict] = (),
                 reduction_factor: int = 3):
        self.kind, self.settings, self.encode = kind, settings, encode
        self.sign = -1.0 if maximize else 1.0  # curves as losses (lower is better)
        self.source = [r for r in source if r.get("curve")]
        self.core = None
        self.decisions: list[tuple[int, float]] = []  # (checkpoint, P(no better than the incumbent)) of the last trial
        if kind in ("median", "hyperband"):
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            pruner = (optuna.pruners.MedianPruner() if kind == "median" else
                      optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=reduction_factor))
            self.study = optuna.create_study(direction="minimize", pruner=pruner)
            self.trial, self._reported = None, set()
        elif kind != "metalearner":
            raise ValueError(f"train.pruner={kind!r}; choose from none, metalearner, median, hyperband")

    def _curve(self, rec: dict, of: int):
        import numpy as np

        from metanas.hpo.curve_pruning import Curve

        c = [self.sign * float(v) for v in rec["curve"]][:of]
        y = np.full(of, np.nan, np.float32)
        y[:len(c)] = c
        return Curve(self.encode(rec["config"]), y, len(c))

    def decider(self, config: dict, records: list[dict]) -> Decide:
        seen: list[float] = []
        self.decisions = []
        if self.kind != "metalearner":
            self.trial = self.study.ask()

            def decide_optuna(k: int, of: int, value: float) -> bool:
                self.trial.report(self.sign * value, k)
                self._reported.add(k)
                return self.trial.should_prune()

            return decide_optuna

        def decide(k: int, of: int, value: float) -> bool:
            from metanas.hpo.curve_pruning import CurvePruner

            seen.append(value)
            mine = [r for r in records if r.get("curve") and r["status"] in ("ok", "pruned")
                    and len(r["curve"]) <= of]
            if self.core is None or self.core.L != of:
                src = [self._curve(r, of) for r in self.source if len(r["curve"]) <= of]
                self.core = CurvePruner(self.settings, of, len(self.encode(config)), source=src)
            done = [self.sign * r["curve"][-1] for r in mine if r["status"] == "ok" and len(r["curve"]) == of]
            run = self._curve({"config": config, "curve": seen}, of)
            prune, p = self.core.decide(run, [self._curve(r, of) for r in mine], min(done) if done else None)
            self.decisions.append((k, p))
            return prune

        return decide

    def finish(self, rec: dict) -> None:
        """File a trial's outcome (Optuna pruners: tell the mirrored study; resumed trials are replayed first)."""
        if self.kind == "metalearner":
            return
        import optuna

        if self.trial is None:  # resumed: this trial did not run here
            self.trial = self.study.ask()
        done, self._reported = self._reported, set()
        for k, v in enumerate(rec.get("curve") or [], 1):  # the checkpoints not yet reported (all, when resumed)
            if k not in done:
                self.trial.report(self.sign * float(v), k)
                self.trial.should_prune()  # the pruner's own bookkeeping (Hyperband's rungs), as if it ran here
        if rec["status"] == "ok" and rec.get("curve"):
            self.study.tell(self.trial, self.sign * float(rec["curve"][-1]))
        else:
            self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED if rec["status"] == "pruned"
                            else optuna.trial.TrialState.FAIL)
        self.trial = None


def read_curve(run_dir: str | None, metric: str) -> list[float]:
    """The ``metric`` per checkpoint of a trial run (``metrics.jsonl`` rows of phase ``curve``, in step order)."""
    from pathlib import Path

    from metanas.run_store import read_jsonl

    path = Path(run_dir or "") / "metrics.jsonl"
    if not run_dir or not path.exists():
        return []
    rows = sorted((r for r in read_jsonl(path) if r.get("phase") == "curve" and metric in r), key=lambda r: r["step"])
    return [float(r[metric]) for r in rows]
