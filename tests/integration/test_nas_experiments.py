"""NAS experiments end to end (CLI, debug=fast), CIFAR python-version loader, and 2-device == 1-device search.

Each CLI run compiles a supernet, a derived network and their steps (about 1 min per experiment on a quiet 2-core
VM, mostly XLA compilation); they stay in the default run, since every experiment must run under ``debug=fast``.
"""

import json
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO, run_metanas
from metanas.data.cifar import load_cifar
from metanas.search_spaces.nb201 import NB201Space


def _check_run(tmp_path, name, nb201: bool):
    runs = list((tmp_path / "runs" / name).iterdir())
    assert len(runs) == 1
    d = runs[0]
    summary = json.loads((d / "summary.json").read_text())["metrics"]
    geno = json.loads((d / "genotype.json").read_text())
    rows = [json.loads(x) for x in (d / "alphas.jsonl").read_text().splitlines()]
    assert rows and all(abs(sum(v for k, v in rows[0].items() if k.startswith(e + "/")) - 1) < 1e-5
                        for e in {k.split("/")[0] for k in rows[0] if "/" in k})  # softmax per edge
    assert (d / "alphas.png").stat().st_size > 0
    assert 0.0 <= summary["test_acc"] <= 1.0 and np.isfinite(summary["retrain_loss"])
    if nb201:
        arch = NB201Space().from_string(geno["arch"])  # a canonical NB201 string
        assert len(arch) == 6
        assert 0 < summary["nb201_cifar10_test_acc"] <= 100  # looked up in the real NB201 table
    return summary, geno


def _fast(tmp_path, experiment, *extra):
    p = run_metanas(f"experiment={experiment}", "debug=fast", f"results_dir={tmp_path}/runs", *extra, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_gdas_nb201_fast(tmp_path):
    _fast(tmp_path, "gdas_nb201")
    _check_run(tmp_path, "gdas_nb201", nb201=True)


def test_darts_nb201_fast(tmp_path):
    _fast(tmp_path, "darts_nb201")
    _check_run(tmp_path, "darts_nb201", nb201=True)


def test_darts2_nb201_fast(tmp_path):
    _fast(tmp_path, "darts2_nb201")
    _check_run(tmp_path, "darts2_nb201", nb201=True)


def test_darts_cnn_fast(tmp_path):
    """Also the retrain with BN running statistics (``train.retrain_running_stats``): the retrain checkpoint holds
    them, moved away from their initial (0, 1) by training."""
    import orbax.checkpoint as ocp

    _fast(tmp_path, "darts_cnn", "train.retrain_running_stats=true")
    _, geno = _check_run(tmp_path, "darts_cnn", nb201=False)
    assert len(geno["normal"]) == 8 and len(geno["reduce"]) == 8
    assert all(op != "none" for op, _ in geno["normal"] + geno["reduce"])
    ckpt = next((tmp_path / "runs" / "darts_cnn").iterdir()) / "checkpoints" / "retrain"
    last = max(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
    stats = ocp.StandardCheckpointer().restore(ckpt / str(last) / "default")["batch_stats"]
    means = [np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(stats) if "mean" in jax.tree_util.keystr(k)]
    assert len(means) > 10 and all(np.isfinite(m).all() for m in means)
    assert max(float(np.abs(m).max()) for m in means) > 1e-3  # updated in training, not the initial zeros


# ---- CIFAR python-version format --------------------------------------------------------------------------------
def _write_batch(path, n, rng, label_key=b"labels", ncls=10):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = rng.integers(0, ncls, n).tolist()
    with open(path, "wb") as f:
        pickle.dump({b"data": data, label_key: labels, b"batch_label": b"tiny"}, f)
    return data, labels


def test_cifar10_loader_reads_the_python_version_format(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    parts = [_write_batch(base / f"data_batch_{i}", 3, rng) for i in range(1, 6)]
    test = _write_batch(base / "test_batch", 4, rng)
    ds = load_cifar(tmp_path, "cifar10")
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3) and ds.num_classes == 10
    np.testing.assert_array_equal(ds.y_train, np.concatenate([p[1] for p in parts]))
    np.testing.assert_array_equal(ds.y_test, test[1])
    # channel-major rows -> NHWC: pixel (r=2, c=5) of image 0 has R, G, B at offsets 0, 1024, 2048
    raw = parts[0][0][0].astype(np.float32)
    px = raw[[2 * 32 + 5, 1024 + 2 * 32 + 5, 2048 + 2 * 32 + 5]]
    all_raw = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) / 255.0
    std = (px / 255.0 - all_raw.mean((0, 1, 2))) / (all_raw.std((0, 1, 2)) + 1e-6)
    np.testing.assert_allclose(ds.x_train[0, 2, 5], std, rtol=1e-4, atol=1e-4)


def test_cifar100_loader_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    tr = _write_batch(base / "train", 5, rng, b"fine_labels", 100)
    _write_batch(base / "test", 2, rng, b"fine_labels", 100)
    ds = load_cifar(base, "cifar100")  # the batch folder itself also works
    assert ds.num_classes == 100 and ds.x_train.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(ds.y_train, tr[1])


def test_cifar_bad_file_is_a_clear_value_error(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    (base / "train").write_bytes(b"not a pickle")
    (base / "test").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="python-version"):
        load_cifar(tmp_path, "cifar100")


def test_cifar_missing_files_is_a_one_line_error(tmp_path):
    p = run_metanas("experiment=darts_nb201", "debug=fast", "train.dataset=cifar10",
                    f"train.data_root={tmp_path}/nowhere", f"results_dir={tmp_path}/runs", cwd=REPO)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("metanas: error:")]
    assert len(lines) == 1, p.stderr[-2000:]
    assert "data_batch_1" in lines[0] and "test_batch" in lines[0] and "Traceback" not in p.stderr


# ---- data parallel ------------------------------------------------------------------------------------------------
_TWO_DEVICES = r"""
import functools, jax, jax.numpy as jnp, numpy as np
from metanas.sharding import data_parallel_shardings, put
from metanas.search.darts import DARTS
from metanas.search_spaces.toy import ToySpace
from metanas.supernet import make_supernet
assert jax.local_device_count() == 2, jax.devices()
net = make_supernet(ToySpace(), C=4, N=1, num_classes=3)
rng = np.random.default_rng(0)
xs = [rng.standard_normal((8, 6, 6, 1), np.float32) for _ in range(6)]
ys = [rng.integers(0, 3, 8).astype(np.int32) for _ in range(6)]
algo = DARTS(order=1)
out = []
for enabled in (False, True):
    bsh, rep = data_parallel_shardings(enabled)
    assert (bsh is None) == (not enabled)
    state = algo.init(*net.init(jax.random.PRNGKey(0), jnp.asarray(xs[0])), total_steps=3)
    if rep is not None:
        state = jax.device_put(state, rep)
    step = jax.jit(functools.partial(algo.step, net=net, total_steps=3))
    for i in range(3):
        tr = (put(xs[2 * i], bsh), put(ys[2 * i], bsh))
        va = (put(xs[2 * i + 1], bsh), put(ys[2 * i + 1], bsh))
        if enabled:
            assert len(tr[0].sharding.device_set) == 2
        state, m = step(state, tr, va, jax.random.PRNGKey(i))
    out.append(jax.device_get((state.weights, state.alphas)))
for a, b in zip(jax.tree.leaves(out[0]), jax.tree.leaves(out[1])):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
print("OK", float(np.abs(out[0][1]).sum()))
"""


def test_two_devices_give_the_same_search_result_as_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", _TWO_DEVICES], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0 and "OK" in p.stdout, p.stderr[-3000:]
