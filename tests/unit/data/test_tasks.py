"""The task-family interface (metanas.data.tasks): the shipped families implement it, and a new family runs in the
meta-learning runner without a change there (SYNTHETIC data throughout)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from metanas.data.omniglot import FewShotImages
from metanas.data.sinusoid import SinusoidTasks
from metanas.data.tasks import Arrays, TaskFamily, TaskSampler


@dataclass(frozen=True)
class LineTasks(TaskFamily):
    """y = a x + b with a, b ~ U[-1, 1] (a test family: 2-D input, the second feature is noise)."""

    shots: int = 5
    loss: str = "mse"

    def build(self, data_dir: str) -> TaskSampler:
        return LineSampler(self)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (2,)

    @property
    def num_outputs(self) -> int:
        return 1


@dataclass(frozen=True)
class LineSampler(TaskSampler):
    family: LineTasks

    def sample(self, split: str, seed: int, step: int, meta_batch: int, *, train: bool = False) -> Arrays:
        rng = np.random.default_rng([seed, step, ("train", "val", "test").index(split)])
        a, b = rng.uniform(-1, 1, (2, meta_batch, 1, 1))
        x = rng.uniform(-2, 2, (meta_batch, 2 * self.family.shots, 2)).astype(np.float32)
        y = (a * x[..., :1] + b).astype(np.float32)
        k = self.family.shots
        return x[:, :k], y[:, :k], x[:, k:], y[:, k:]


def test_the_interface_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        TaskFamily()  # type: ignore[abstract]

    @dataclass(frozen=True)
    class NoShape(TaskFamily):
        loss: str = "mse"

        def build(self, data_dir):
            return None

    with pytest.raises(TypeError, match="input_shape"):
        NoShape()


def test_shipped_families_answer_the_interface():
    sin = SinusoidTasks(k_shot=5, k_query=7)
    assert (sin.input_shape, sin.num_outputs, sin.metric, sin.has_val_split) == ((1,), 1, "mse", True)
    assert not sin.has_official_test_runs and sin.curves(np.random.default_rng(0), 2).shots == 5
    sx, sy, qx, qy = sin.build("").sample("val", 0, 3, 4, train=True)
    assert sx.shape == (4, 5, 1) and qy.shape == (4, 7, 1)
    # the splits are disjoint seed streams
    assert not np.array_equal(sin.build("").sample("test", 0, 3, 4)[0], sx)

    omni = FewShotImages(ways=20, shots=1)
    assert omni.input_shape == (28, 28, 1) and omni.num_outputs == 20 and omni.metric == "acc"
    assert omni.has_official_test_runs and not FewShotImages(ways=5).has_official_test_runs
    assert FewShotImages(layout="miniimagenet_csv", image_size=84).input_shape == (84, 84, 3)
    assert not FewShotImages(n_val_chars=0).has_val_split


def test_sampler_defaults_follow_the_family_episode_sizes():
    from metanas.data.omniglot import FewShotSampler

    data = np.random.default_rng(0).integers(0, 255, (6, 20, 8, 8), dtype=np.uint8)
    s = FewShotSampler({"train": data}, rotations=False, ways=3, shots=1, queries=2, train_shots=4, train_queries=1)
    assert s.sample("train", 0, 0, 2)[0].shape == (2, 3, 8, 8, 1)  # evaluation sizes: 3-way 1-shot
    sx, _, qx, _ = s.sample("train", 0, 0, 2, train=True)
    assert sx.shape[1] == 12 and qx.shape[1] == 3  # meta-training sizes: 4 shots, 1 query per class


def test_a_new_family_runs_in_the_meta_runner_unchanged(tmp_path):
    """maml_sinusoid's algorithm and MLP on LineTasks (a family the runner has never heard of): the model is sized
    from input_shape / num_outputs, validation reads ``val``, and there is no fits plot (``curves`` is None)."""
    from metanas.config import validate
    from metanas.experiment import compose_config
    from metanas.runners import meta as meta_runner
    from metanas.runners.context import RunContext

    cfg = compose_config(["experiment=maml_sinusoid", "debug=fast", "progress=false", "meta_dataset=null"])
    cfg.task = {"_target_": f"{__name__}.LineTasks", "shots": 4, "loss": "mse"}
    validate(cfg)
    out = meta_runner.run(cfg, RunContext(cfg, tmp_path))
    assert np.isfinite(out["test_mse"]) and np.isfinite(out["val_mse"])
    assert not list(tmp_path.glob("*_fits.png"))
    json.dumps(out)
