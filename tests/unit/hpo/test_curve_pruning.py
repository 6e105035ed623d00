"""metanas.hpo.curve_pruning: the curve-model pruner's rules (min checkpoints, incumbent, min curves, NaN, last
checkpoint), that it prunes a clearly bad run and keeps a good one, and that a decision is a function of the curves
at hand (what makes a resumed search decide as the uninterrupted one). SYNTHETIC curves."""

import math

import numpy as np
import pytest

from metanas.hpo.curve_pruning import Curve, CurvePruner, CurvePruning

L = 8
S = CurvePruning(threshold=0.9, min_checkpoints=2, min_curves=4, ensemble=3, hidden=16, fit_steps=300,
                 pretrain_steps=0, lr=1e-2)


def curve(final, start=1.0, n=L, x=0.0):
    t = np.arange(L)
    y = (final + (start - final) * np.exp(-0.6 * t)).astype(np.float32)  # lower is better
    y[n:] = np.nan
    return Curve(np.array([x], np.float32), y, n)


def history():
    return [curve(f, x=f) for f in np.linspace(0.1, 0.9, 9)] + [curve(0.5, n=3, x=0.5)]  # 9 finished, 1 pruned


def test_rules_before_the_model_is_asked():
    p = CurvePruner(S, L, 1)
    bad = curve(0.9, n=1, x=0.9)
    assert p.decide(bad, history(), 0.1) == (False, pytest.approx(math.nan, nan_ok=True))  # < min_checkpoints
    assert not p.decide(curve(0.9, n=3, x=0.9), history(), None)[0]  # no finished run in this study: no incumbent
    assert not p.decide(curve(0.9, n=3, x=0.9), history()[:2], 0.1)[0]  # fewer than min_curves curves
    assert not p.decide(curve(0.9, n=L, x=0.9), history(), 0.1)[0]  # finished: nothing left to stop
    nan = curve(0.9, n=3, x=0.9)._replace(y=np.array([1.0, np.nan] + [np.nan] * (L - 2), np.float32))
    assert p.decide(nan, history(), 0.1) == (True, 1.0)  # diverged: pruned at once
    assert p.fits == 0  # none of these needed a fit


def test_prunes_a_clearly_bad_run_keeps_a_good_one_and_is_a_function_of_the_curves():
    p = CurvePruner(S, L, 1)
    prune_bad, pb = p.decide(curve(0.9, n=3, x=0.9), history(), 0.15)
    prune_good, pg = p.decide(curve(0.1, n=3, x=0.1), history(), 0.15)
    assert prune_bad and pb >= 0.9 and not prune_good and pg < pb
    assert p.fits == 1  # same curves: one fit serves both decisions
    again = CurvePruner(S, L, 1)  # a fresh pruner (a resumed search) on the same curves decides the same
    assert again.decide(curve(0.9, n=3, x=0.9), history(), 0.15)[1] == pytest.approx(pb, abs=1e-6)
    p.decide(curve(0.9, n=3, x=0.9), history() + [curve(0.8, n=2, x=0.8)], 0.15)
    assert p.fits == 2  # a new (pruned, partial) curve is a new fit


def test_bad_settings_and_shapes_are_one_line_errors():
    with pytest.raises(ValueError, match="threshold"):
        CurvePruning(threshold=0.2)
    with pytest.raises(ValueError, match="min_checkpoints"):
        CurvePruning(min_checkpoints=0)
    with pytest.raises(ValueError, match="expects 2 features and 8 checkpoints"):
        CurvePruner(S, L, 2).decide(curve(0.9, n=3), history(), 0.1)


def test_live_pruner_optuna_pruners_replay_resumed_trials_and_prune_a_bad_one():
    from metanas.runners.pruning import LivePruner, checkpoint, watching

    for kind in ("median", "hyperband"):
        lp = LivePruner(kind, S, lambda c: np.zeros(1, np.float32), maximize=True)
        recs = []
        for i in range(8):  # resumed trials: replayed into the mirrored Optuna study, none trained here
            r = {"config": {"i": i}, "status": "ok", "curve": [0.5 + 0.01 * i + 0.05 * k for k in range(6)]}
            lp.finish(r)
            recs.append(r)
        assert len(lp.study.trials) == 8
        stops = []
        for j in range(6):  # new trials far below every curve (val acc, maximised); Hyperband: several brackets
            with watching(lp.decider({"i": 99 + j}, recs)):
                stop = next((k for k in range(1, 6) if checkpoint(k, 6, 0.05)), None)
            r = {"config": {"i": 99 + j}, "status": "ok" if stop is None else "pruned",
                 "curve": [0.05] * (6 if stop is None else stop)}
            lp.finish(r)
            recs.append(r)
            stops.append(stop)
        assert any(s is not None for s in stops), kind
        assert not checkpoint(1, 6, 0.05)  # outside the block nothing watches: a plain run trains to the end


def test_live_metalearner_never_prunes_before_min_checkpoints():
    from metanas.runners.pruning import LivePruner

    s = CurvePruning(threshold=0.5, min_checkpoints=4, min_curves=2, ensemble=2, hidden=8, fit_steps=20)
    lp = LivePruner("metalearner", s, lambda c: np.array([c["x"]], np.float32), maximize=True)
    recs = [{"config": {"x": 0.5}, "status": "ok", "curve": [0.5, 0.7, 0.8, 0.9, 0.9, 0.9]},
            {"config": {"x": 0.4}, "status": "pruned", "curve": [0.4, 0.6]}]
    decide = lp.decider({"x": 0.0}, recs)
    assert [decide(k, 6, 0.0) for k in (1, 2, 3)] == [False, False, False]  # a hopeless run, but < 4 checkpoints
    assert [k for k, _ in lp.decisions] == [1, 2, 3] and lp.core.fits == 0
    decide(4, 6, 0.0)
    assert lp.core.fits == 1  # from checkpoint 4 on the model is asked (the pruned partial curve is one of its rows)


def test_related_runs_give_source_curves_and_a_bad_dir_is_one_line(tmp_path):
    from metanas.config import ConfigError
    from metanas.run_store import append_jsonl
    from metanas.runners.hpo import _related_trials

    for status, curve in (("ok", [0.2, 0.4]), ("pruned", [0.1]), ("failed", []), ("ok", None)):
        append_jsonl(tmp_path / "trials.jsonl", {"key": "k", "config": {}, "fidelity": 2.0, "loss": 0.0,
                                                 "status": status, "curve": curve})
    assert [r["curve"] for r in _related_trials(tmp_path)] == [[0.2, 0.4], [0.1]]  # finished and pruned, with curves
    with pytest.raises(ConfigError, match="has no trials.jsonl; name run dirs of earlier live HPO runs"):
        _related_trials(tmp_path / "nope")
