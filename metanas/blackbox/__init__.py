"""Black-box search: predictor-guided search (exhaustive ranking, evolution, REINFORCE acquisition) and the
random-search / regularized-evolution baselines. Pure functions; runners jit(vmap(...)) them over seeds."""
