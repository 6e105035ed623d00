"""metanas for Optuna users: ``MetaLearnerSampler`` (the meta-learner as a relative sampler, warm-started from other
studies) and ``MetaLearnerPruner`` (warm-started nearest-curves pruning). OptunaHub layout: README.md, LICENSE,
requirements.txt and example.py beside this file."""

from metanas.optuna.pruner import MetaLearnerPruner
from metanas.optuna.sampler import MetaLearnerSampler

__all__ = ["MetaLearnerPruner", "MetaLearnerSampler"]
