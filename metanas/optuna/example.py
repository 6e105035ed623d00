"""OptunaHub-style example: warm-start a new study from an earlier one in the same SQLite storage.

    python -m metanas.optuna.example      # or: python metanas/optuna/example.py
"""

import math
import tempfile

import optuna

from metanas.optuna import MetaLearnerPruner, MetaLearnerSampler


def objective(trial: optuna.Trial, shift: float = 0.0) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    value = (x - 1.0 - shift) ** 2 + (math.log10(lr) + 2.0) ** 2 + {"a": 0.0, "b": 0.5, "c": 1.0}[kind]
    for step in range(5):  # a learning curve for the pruner
        trial.report(value * (1 + (4 - step) / 4), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tempfile.mkdtemp()}/studies.db"
    old = optuna.create_study(study_name="task-a", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    old.optimize(lambda t: objective(t, shift=0.2), n_trials=40)
    new = optuna.create_study(study_name="task-b", storage=storage,
                              sampler=MetaLearnerSampler(history=["task-a"], seed=0),
                              pruner=MetaLearnerPruner(history=["task-a"]))
    new.optimize(objective, n_trials=15)
    print(f"task-b best {new.best_value:.3f} after 15 trials ({sum(t.state.name == 'PRUNED' for t in new.trials)} "
          f"pruned); trust weights {new.sampler.last_weights}")
