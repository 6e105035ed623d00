"""Architecture search algorithms over a supernet's ``apply`` boundary (pure, jit-agnostic)."""

from metanas.search.darts import DARTS, DartsState, accuracy, cross_entropy
from metanas.search.gdas import GDAS

__all__ = ["DARTS", "GDAS", "DartsState", "cross_entropy", "accuracy"]
