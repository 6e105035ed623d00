"""The Syne Tune transfer adapter over a table: rows mapped back by value, never charged twice, seeded."""

import itertools

import numpy as np
import pytest

pytest.importorskip("syne_tune")

from metanas.search.library_transfer import TableTransfer, queries_to_hit  # noqa: E402


def _table(seed=0):
    rows = [dict(a=a, b=b, c=c) for a, b, c in itertools.product(range(3), range(3), range(4))]
    rng = np.random.default_rng(seed)
    target = rng.normal(size=len(rows))
    sources = np.stack([target + 0.01 * rng.normal(size=len(rows)) for _ in range(3)])
    return rows, target, sources


@pytest.mark.parametrize("method", ["zero_shot", "bounding_box", "quantile"])
def test_queries_are_distinct_held_rows_and_seeded(method):
    rows, target, sources = _table()
    target[[0, 5, 7]] = np.nan  # rows the target lacks are never queried
    t = TableTransfer(rows, target, sources)
    a = t.run(method, 12, seed=3)
    assert len(a) == len(set(a)) and all(np.isfinite(target[i]) for i in a)
    assert a == t.run(method, 12, seed=3)


def test_zero_shot_starts_at_the_sources_best_row():
    rows, target, sources = _table(1)
    order = TableTransfer(rows, target, sources).run("zero_shot", 3, seed=0)
    assert order[0] == int(np.argmax(sources.mean(0)))  # sources agree with the target: their best row first
    hit = np.zeros(len(rows), bool)
    hit[order[1]] = True
    assert queries_to_hit(order, hit, 3) == 2 and queries_to_hit(order, ~np.ones(len(rows), bool), 3) == 4


def test_bad_input_is_one_clear_error():
    rows, target, sources = _table()
    with pytest.raises(ValueError, match="same hyperparameters"):
        TableTransfer(rows + rows[:1], np.append(target, 0.0), np.c_[sources, sources[:, :1]])
    with pytest.raises(ValueError, match="expected"):
        TableTransfer(rows, target[:-1], sources)
    with pytest.raises(ValueError, match="unknown"):
        TableTransfer(rows, target, sources).run("bohb", 3, seed=0)
