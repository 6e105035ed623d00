"""The predictor contract: what every model in ``metanas.predictors`` offers the searchers.

A predictor is a frozen (hashable) dataclass of hyperparameters with pure methods

- ``fit(key, x [N, D], y [N], n) -> params``: fitted on the first ``n`` rows (the rest are padding, so fits on many
  training-set sizes run in one vmapped program);
- ``score(params, x [M, D]) -> [M]``: higher = better for rankers (``Pairwise``), the predicted target for
  regressors;
- ``score_std(params, x) -> ([M], [M])``: the score and its spread (ensembles, trees, Bayesian models; zeros where a
  model has none).

``jittable = False`` (a class variable) marks a host model (scikit-learn / LightGBM trees): its ``fit`` runs outside
``jax.jit`` and its scores are NumPy arrays; ``metanas.predictors.trees.is_jittable`` tells the two apart. The
learning-curve models (``metanas.predictors.curves``) fit rows of (config, budget, value) instead and are not
predictors in this sense.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Predictor(Protocol):
    def fit(self, key: Any, x: Any, y: Any, n: Any) -> Any: ...

    def score(self, params: Any, x: Any) -> Any: ...

    def score_std(self, params: Any, x: Any) -> tuple[Any, Any]: ...


__all__ = ["Predictor"]
