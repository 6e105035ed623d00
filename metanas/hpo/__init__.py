"""Hyperparameter optimisation and learning across tasks: spaces, schedulers, warm start, importance."""

from metanas.hpo.importance import importance_table, main_effect_importance
from metanas.plots import plot_importance
from metanas.hpo.metalearner import MetaLearnerSampler, PastRecords, load_records
from metanas.hpo.samplers import CandidateSampler, ModelBasedSampler, PortfolioSampler, RandomSampler
from metanas.hpo.schedulers import (Hyperband, RandomSearch, SuccessiveHalving, Trial, incumbent_curve, incumbent,
                                    rung_fidelities, successive_halving_bracket)
from metanas.hpo.space import (Hyperparameter, HyperparameterSpace, SpaceError, config_key, space_from_config,
                               to_overrides)
from metanas.hpo.warmstart import PastTasks, nearest_tasks, past_tasks_from_run_store, warm_start_configs

__all__ = [
    "CandidateSampler", "Hyperband", "Hyperparameter", "MetaLearnerSampler", "PastRecords", "load_records",
    "ModelBasedSampler", "PastTasks", "PortfolioSampler", "RandomSampler",
    "RandomSearch", "HyperparameterSpace", "SpaceError", "SuccessiveHalving", "Trial", "incumbent_curve", "config_key",
    "importance_table", "incumbent", "main_effect_importance", "nearest_tasks", "past_tasks_from_run_store",
    "plot_importance", "rung_fidelities", "space_from_config", "successive_halving_bracket", "to_overrides",
    "warm_start_configs",
]
