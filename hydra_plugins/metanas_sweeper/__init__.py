"""Hydra sweeper plugin: the metanas meta-learner searches any Hydra app (hydra/sweeper=metanas)."""
