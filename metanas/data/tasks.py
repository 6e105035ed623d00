"""The interface of a meta-learning task family (config group ``task``), so runners need not know which one it is.

A ``TaskFamily`` is a frozen dataclass instantiated from ``conf/task/*.yaml``. ``build(data_dir)`` loads what
its tasks are drawn from, once per run, and returns a ``TaskSampler`` whose ``sample(split, seed, step,
meta_batch, train=...)`` gives host numpy arrays ``(support_x, support_y, query_x, query_y)`` with a leading task
axis. The runners read everything else from the family: the loss (a key of ``metanas.meta.base.LOSSES``), the
shape of one input example, the number of outputs, whether there is a meta-validation split, and whether the
family has official test runs (``official_test_runs``, e.g. the 20 Omniglot 20-way 1-shot runs). A new task
family subclasses both and needs no change in a runner.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # support_x, support_y, query_x, query_y


class Curves(NamedTuple):
    """Ground truth of a few 1-D regression tasks, for plots of the fits before and after adaptation."""

    name: str  # the plot is <name>_fits.png
    functions: list[Callable[[np.ndarray], np.ndarray]]  # x [n, 1] -> y [n, 1]
    titles: list[str]
    x_range: tuple[float, float]
    shots: int  # support points per task


class TaskSampler(abc.ABC):
    """Draws batches of tasks from data loaded once by ``TaskFamily.build``."""

    @abc.abstractmethod
    def sample(self, split: str, seed: int, step: int, meta_batch: int, *, train: bool = False) -> Arrays:
        """``meta_batch`` tasks of ``split`` ("train" | "val" | "test"), a pure function of ``(seed, step)``;
        ``train``: the meta-training episode sizes where they differ from the evaluation ones."""


class TaskFamily(abc.ABC):
    """A distribution over tasks; subclasses are frozen dataclasses with a ``loss`` field."""

    loss: str  # "mse" | "cross_entropy" (metanas.meta.base.LOSSES); a dataclass field of the subclass

    @abc.abstractmethod
    def build(self, data_dir: str) -> TaskSampler:
        """Load the data (``data_dir`` is the run's shared data folder) and return the sampler."""

    @property
    @abc.abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example, e.g. ``(28, 28, 1)`` or ``(1,)``."""

    @property
    @abc.abstractmethod
    def num_outputs(self) -> int:
        """Model outputs per example (classes per task for classification)."""

    @property
    def classification(self) -> bool:
        return self.loss == "cross_entropy"

    @property
    def metric(self) -> str:
        """The per-task query metric the runners report: ``acc`` or ``mse``."""
        return "acc" if self.classification else "mse"

    @property
    def has_val_split(self) -> bool:
        """Whether ``sample`` serves a meta-validation split ``val`` (else model selection would read ``test``)."""
        return True

    @property
    def has_official_test_runs(self) -> bool:
        return False

    def official_test_runs(self, data_dir: str) -> Arrays:
        """The family's fixed, published test tasks (stacked), where ``has_official_test_runs``."""
        raise NotImplementedError(f"{type(self).__name__} has no official test runs")

    def curves(self, rng: np.random.Generator, n: int) -> Curves | None:
        """``n`` tasks' ground-truth functions where they can be plotted (1-D regression), else None."""
        return None
