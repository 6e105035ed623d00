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
