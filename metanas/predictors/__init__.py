"""Meta-learners: encodings, pointwise baselines (ridge, MLP), the pairwise model, meta-dataset I/O.

Every predictor exposes ``fit(key, x, y, n) -> params`` and ``score(params, x)`` / ``score_std`` (pure): the
``Predictor`` protocol of ``metanas.predictors.protocol``.
"""

from metanas.predictors.pairwise import Pairwise, pair_targets
from metanas.predictors.pointwise import MLP, Ridge
from metanas.predictors.protocol import Predictor

__all__ = ["Pairwise", "MLP", "Predictor", "Ridge", "pair_targets"]
