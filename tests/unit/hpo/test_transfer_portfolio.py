"""Portfolios (metanas.hpo.portfolio): the greedy portfolio equals brute force on tiny hand-made regret matrices
(SYNTHETIC), and the k-NN warm start standardises a new task's meta-features with training statistics only."""

import numpy as np

from metanas.hpo.portfolio import (best_on_average, brute_force_portfolio, greedy_portfolio, knn_portfolio,
                                   leave_tasks_out, portfolio_loss)


def test_greedy_equals_brute_force_on_a_hand_made_matrix():
    # 4 tasks x 4 configs: config 3 is a safe middle (0.5 everywhere); 0 covers tasks 0 and 1, 1 and 2 one each
    r = np.array([[0.0, 0.9, 0.8, 0.5],
                  [0.1, 0.9, 0.8, 0.5],
                  [0.9, 0.0, 0.8, 0.5],
                  [0.9, 0.8, 0.0, 0.5]])
    for size in (1, 2, 3, 4):
        g = greedy_portfolio(r, size)
        assert np.isclose(portfolio_loss(r, g), portfolio_loss(r, brute_force_portfolio(r, size)))
    assert greedy_portfolio(r, 3) == [0, 1, 2] and best_on_average(r, 2) == [0, 3]
    assert portfolio_loss(r, greedy_portfolio(r, 2)) < portfolio_loss(r, best_on_average(r, 2))


def test_greedy_is_not_optimal_in_general():
    """The textbook counter-example: the best single config (3) is a poor start for a pair."""
    r = np.array([[0.0, 1.0, 0.6, 0.3],
                  [1.0, 0.0, 0.6, 0.3],
                  [0.5, 0.5, 0.0, 0.3]])
    assert greedy_portfolio(r, 1) == [3] == list(brute_force_portfolio(r, 1))
    assert portfolio_loss(r, greedy_portfolio(r, 2)) > portfolio_loss(r, brute_force_portfolio(r, 2))


def test_greedy_matches_brute_force_on_random_small_matrices():
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = rng.random((4, 5))
        assert np.isclose(portfolio_loss(r, greedy_portfolio(r, 1)), portfolio_loss(r, brute_force_portfolio(r, 1)))
        g2 = greedy_portfolio(r, 2)
        assert len(set(g2)) == 2 and portfolio_loss(r, g2) >= portfolio_loss(r, brute_force_portfolio(r, 2)) - 1e-12


def test_knn_uses_training_statistics_only():
    feats = np.array([[0.0], [1.0], [2.0], [10.0]])
    regret = np.array([[0, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0]], float)
    a, _ = knn_portfolio(feats[:3], regret[:3], np.array([0.2]), k=2, size=1)
    assert a == [0]
    # the new task's own value does not change the scaling of the training tasks: a far query -> its nearest
    b, _ = knn_portfolio(feats[:3], regret[:3], np.array([100.0]), k=1, size=1)
    assert b == [1]


def test_leave_tasks_out_shapes():
    rng = np.random.default_rng(1)
    out = leave_tasks_out(rng.normal(size=(10, 3)), rng.random((10, 6)), folds=5, shuffles=1, k=3, size=4)
    assert out["n_task_evals"] == 10 and len(out["mean_regret"]["knn"]) == 4


def test_kernel_warm_start_interpolates_between_greedy_and_nearest_tasks():
    """SYNTHETIC: tasks 0-1 (features ~0) prefer config 0, tasks 2-4 (features ~5) prefer config 1."""
    from metanas.hpo.portfolio import WarmStartCandidate, kernel_warm_start, select_warm_start, task_weights

    feats = np.array([[0.0], [0.1], [5.0], [5.1], [4.9]])
    regret = np.array([[0, 1, .5], [0, 1, .5], [1, 0, .5], [1, 0, .5], [1, 0, .5]], float)
    w = task_weights(feats, np.array([0.05]), np.inf)
    np.testing.assert_allclose(w, 0.2)
    assert greedy_portfolio(regret, 3, w) == greedy_portfolio(regret, 3) == [1, 0, 2]
    assert greedy_portfolio(regret, 3, start=[2])[0] == 2 and len(set(greedy_portfolio(regret, 3, start=[2]))) == 3
    near, score = kernel_warm_start(feats, regret, np.array([0.05]), WarmStartCandidate(0.5), 2)
    assert near[0] == 0 and np.argmax(score) == 0  # the near tasks' best config, not the majority's
    far, _ = kernel_warm_start(feats, regret, np.array([0.05]), WarmStartCandidate(np.inf), 2)
    assert far[0] == 1  # uniform weights = the greedy portfolio
    # nested choice on these training tasks: a local kernel beats the task-agnostic one
    cands = [WarmStartCandidate(np.inf), WarmStartCandidate(0.5)]
    ip, ir = select_warm_start(feats, regret, cands, 2)
    assert ip == 1


def test_leave_tasks_out_reports_kernel_and_candidates():
    from metanas.hpo.portfolio import WarmStartCandidate

    rng = np.random.default_rng(2)
    cands = [WarmStartCandidate(np.inf), WarmStartCandidate(1.0, None, "rank")]
    out = leave_tasks_out(rng.normal(size=(10, 3)), rng.random((10, 6)), folds=5, shuffles=1, k=3, size=4,
                          candidates=cands)
    assert len(out["mean_regret"]["kernel"]) == 4 and len(out["per_candidate"]) == 2
    assert len(out["kernel_chosen"]) == 5 and "average_rank" in out["mean_tau"]
    # the uniform candidate is the greedy portfolio
    np.testing.assert_allclose(out["per_candidate"][0]["mean_regret"], out["mean_regret"]["greedy"])
