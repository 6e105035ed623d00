"""Search spaces: an architecture is a flat int32 array of op indices (see ``base.SearchSpace``)."""

from metanas.search_spaces.base import SearchSpace
from metanas.search_spaces.nb201 import EDGES, NB201_OPS, NB201Space

__all__ = ["SearchSpace", "NB201Space", "NB201_OPS", "EDGES"]
