"""Tests that need an accelerator (``-m gpu``; CI has none and deselects them). They check that the same programs
give the same answers on a GPU / TPU as on the CPU, within float32 reassociation tolerance."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import last_summary, run_fast

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def accelerator():
    devs = [d for d in jax.devices() if d.platform != "cpu"]
    if not devs:
        pytest.skip("no accelerator: jax sees only the CPU")
    return devs[0]


def test_pairwise_fit_matches_the_cpu(accelerator):
    from metanas.predictors.pairwise import Pairwise

    k = jax.random.PRNGKey(0)
    x = jax.random.normal(k, (64, 8))
    y = jnp.abs(jax.random.normal(jax.random.PRNGKey(1), (64,))) + 1.0
    pw = Pairwise(steps=50, ensemble=2)
    fit = jax.jit(lambda k, x, y: pw.score(pw.fit(k, x, y, 48), x))
    on_cpu = fit(*jax.device_put((k, x, y), jax.devices("cpu")[0]))
    on_acc = fit(*jax.device_put((k, x, y), accelerator))
    np.testing.assert_allclose(np.asarray(on_acc), np.asarray(on_cpu), rtol=1e-3, atol=1e-3)


def test_toy_regression_runs_on_the_accelerator_and_records_it(accelerator, tmp_path):
    run_fast(tmp_path, "experiment=toy_regression")
    summary, _ = last_summary(tmp_path, "toy_regression")
    record = json.loads((tmp_path / "meta.jsonl").read_text().splitlines()[-1])
    assert record["hardware"].startswith(accelerator.platform) and np.isfinite(summary["metrics"]["loss"])
