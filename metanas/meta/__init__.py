"""Meta-initialization algorithms: MAML (2nd / 1st order), ANIL, Meta-SGD, Reptile.

Each is a frozen dataclass of hyper-parameters with pure methods (``init``, ``adapt``, ``meta_train_step``,
``evaluate``); the runner (``metanas.runners.meta``) jits ``meta_train_step`` once.
"""

from metanas.meta.base import AbstractMetaAlgorithm, MetaState, Task, cross_entropy_accuracy, mse
from metanas.meta.maml import ANIL, MAML, MetaSGD
from metanas.meta.reptile import Reptile

__all__ = ["AbstractMetaAlgorithm", "ANIL", "MAML", "MetaSGD", "MetaState", "Reptile", "Task", "cross_entropy_accuracy",
           "mse"]
