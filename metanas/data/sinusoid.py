"""Sinusoid regression tasks (SYNTHETIC), as in Finn et al. 2017, Sec. 5.1.

A task is y = A sin(x - phase) with A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]; K support points
(K = 5 or 10) and a query set drawn from the same task. Host numpy, seeded by ``(seed, step)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metanas.data.tasks import Arrays, Curves, TaskFamily, TaskSampler


@dataclass(frozen=True)
class SinusoidTasks(TaskFamily):
    k_shot: int = 10
    k_query: int = 10
    amp_min: float = 0.1
    amp_max: float = 5.0
    phase_min: float = 0.0
    phase_max: float = float(np.pi)
    x_min: float = -5.0
    x_max: float = 5.0
    loss: str = "mse"

    def sample_params(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Amplitudes and phases [n] of ``n`` tasks."""
        return (rng.uniform(self.amp_min, self.amp_max, n).astype(np.float32),
                rng.uniform(self.phase_min, self.phase_max, n).astype(np.float32))

    def sample(self, seed: int, step: int, meta_batch: int) -> tuple[np.ndarray, ...]:
        """(support_x [T,K,1], support_y [T,K,1], query_x [T,Q,1], query_y [T,Q,1]) float32."""
        rng = np.random.default_rng([seed, step])
        amp, phase = self.sample_params(rng, meta_batch)
        x = rng.uniform(self.x_min, self.x_max, (meta_batch, self.k_shot + self.k_query, 1)).astype(np.float32)
        y = (amp[:, None, None] * np.sin(x - phase[:, None, None])).astype(np.float32)
        k = self.k_shot
        return x[:, :k], y[:, :k], x[:, k:], y[:, k:]

    def build(self, data_dir: str) -> TaskSampler:
        return SinusoidSampler(self)  # synthetic: nothing to load

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1,)

    @property
    def num_outputs(self) -> int:
        return 1

    def curves(self, rng: np.random.Generator, n: int) -> Curves:
        amp, phase = self.sample_params(rng, n)
        return Curves("sinusoid", [lambda x, a=a, p=p: (a * np.sin(x - p)).astype(np.float32)
                                   for a, p in zip(amp, phase)],
                      [f"A={a:.2f}, phase={p:.2f}" for a, p in zip(amp, phase)], (self.x_min, self.x_max), self.k_shot)


# disjoint seed streams per split: every split is fresh sinusoids
SPLIT_SEED_OFFSETS = {"train": 0, "test": 1_000_003, "val": 2_000_029}


@dataclass(frozen=True)
class SinusoidSampler(TaskSampler):
    family: SinusoidTasks

    def sample(self, split: str, seed: int, step: int, meta_batch: int, *, train: bool = False) -> Arrays:
        return self.family.sample(seed + SPLIT_SEED_OFFSETS[split], step, meta_batch)
