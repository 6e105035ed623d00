"""Tabular benchmarks (host numpy, never traced): NB201 tables here; TabRepo in ``tabrepo.py``."""
