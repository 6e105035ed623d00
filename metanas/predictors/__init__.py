"""Meta-learners: encodings, pointwise baselines (ridge, MLP), the pairwise model, meta-dataset I/O.

Every predictor exposes ``fit(key, x, y, n) -> params`` and ``score(params, x)`` / ``score_std`` (pure).
"""

from metanas.predictors.pairwise import Pairwise, pair_targets
from metanas.predictors.pointwise import MLP, Ridge

__all__ = ["Pairwise", "MLP", "Ridge", "pair_targets"]
