"""Which split the meta-learning runner reads when: validation during/after training, test only at the end."""

from __future__ import annotations

import pytest

from metanas.data.omniglot import FewShotImages
from metanas.runners import meta as meta_runner


def test_eval_split_is_val_unless_the_task_has_none():
    from metanas.data.sinusoid import SinusoidTasks

    assert meta_runner.eval_split(FewShotImages()) == "val"
    assert meta_runner.eval_split(SinusoidTasks()) == "val"
    assert meta_runner.eval_split(FewShotImages(n_val_chars=0)) == "test"  # the documented fallback


def test_in_training_eval_reads_val_and_test_is_read_once_at_the_end(tmp_path, monkeypatch):
    """maml_sinusoid (synthetic, debug=fast sizes) in-process with a sampler that records every (split, train) call."""
    from metanas.experiment import compose_config
    from metanas.runners.context import RunContext

    cfg = compose_config(["experiment=maml_sinusoid", "debug=fast", "progress=false"])
    calls = []
    make = meta_runner.make_sampler

    def recording(cfg, family):
        sample = make(cfg, family)

        def wrapped(split, seed, step, meta_batch, train):
            calls.append((split, train, meta_batch))
            return sample(split, seed, step, meta_batch, train)
        return wrapped

    monkeypatch.setattr(meta_runner, "make_sampler", recording)
    monkeypatch.setattr("metanas.plots.plot_fits", lambda *a, **k: None)
    out = meta_runner.run(cfg, RunContext(cfg, tmp_path))
    t = cfg.train
    evals = [c for c in calls if not c[1]]
    first_test = next(i for i, c in enumerate(evals) if c[0] == "test")
    before = evals[:first_test]
    assert before and {c[0] for c in before} == {"val"}  # every in-training / final-val evaluation reads val
    assert sum(c[2] for c in before) == t.eval_tasks * (t.steps // t.eval_every + 1)  # + the final val_mse
    assert {c[0] for c in evals[first_test:]} == {"test"}  # test only at the end ...
    assert sum(c[2] for c in evals[first_test:]) == t.test_tasks  # ... train.test_tasks tasks, once
    assert {c[0] for c in calls if c[1]} == {"train"}
    assert out["n_val_tasks"] == t.eval_tasks and out["n_test_tasks"] == t.test_tasks
    assert out["val_mse"] != pytest.approx(out["test_mse"], rel=1e-9)  # different tasks
