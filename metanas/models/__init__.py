"""Small functional models for meta-learning: params pytrees (dicts of arrays) plus pure ``apply``."""
