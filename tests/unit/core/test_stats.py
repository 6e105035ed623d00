"""metanas.stats: paired comparisons match scipy on hand-made cases; censoring treats every method alike."""

import numpy as np
import pytest
from scipy import stats as sps

from metanas import stats


def test_paired_matches_scipy_and_counts_wins_ties_losses():
    a = np.array([3, 5, 7, 9, 30, 12, 4, 8, 8, 10], float)  # e.g. queries to a target cell (lower is better)
    b = np.array([6, 5, 9, 15, 20, 14, 9, 11, 8, 19], float)
    r = stats.paired(a, b)
    assert (r.n, r.wins, r.ties, r.losses) == (10, 7, 2, 1)
    assert r.p == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert r.median_a == 8.0 and r.median_b == 10.0
    assert r.median_diff == float(np.median(a - b)) == -2.5  # median of the differences, exact
    assert r.ci_low <= r.median_diff <= r.ci_high
    flipped = stats.paired(a, b, lower_is_better=False)
    assert (flipped.wins, flipped.losses) == (1, 7) and flipped.p == r.p


def test_identical_methods_tie_with_p_one_and_a_zero_interval():
    a = np.arange(12.0)
    r = stats.paired(a, a.copy())
    assert (r.wins, r.ties, r.losses, r.p, r.ci_low, r.ci_high) == (0, 12, 0, 1.0, 0.0, 0.0)


def test_censoring_is_the_same_cap_for_every_method():
    budget = 50
    order = stats.censor([137, 2, 51, 50], budget)  # a deterministic order charged 137 queries counts 51
    search = stats.censor([51, 3, 60, 49], budget)  # a search that never hit within 50 counts 51 too
    assert order.tolist() == [51, 2, 51, 50] and search.tolist() == [51, 3, 51, 49]
    r = stats.paired(order, search)
    assert (r.wins, r.ties, r.losses) == (1, 2, 1)


def test_medians_print_exactly_and_bad_input_is_refused():
    assert stats.fmt(37.5) == "37.5" and stats.fmt(38.0) == "38" and stats.fmt(94.36667) == "94.367"
    assert stats.fmt(-0.0004) == "-0.0004" and stats.fmt(0.0035) == "0.0035"
    with pytest.raises(ValueError, match="one length"):
        stats.paired([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="censor"):
        stats.paired([1, np.nan], [1, 2])


def test_paired_table_has_one_row_per_other_method():
    res = {"ours": [1, 2, 3, 4], "rs": [5, 6, 7, 8], "rea": [1, 2, 3, 5]}
    t = stats.paired_table(res, "ours", what="queries")
    lines = t.strip().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| rs | 2.5 | 6.5 | -4 ") and "4 / 0 / 0" in lines[2]
    assert "| rea |" in lines[3] and "1 / 3 / 0" in lines[3]
