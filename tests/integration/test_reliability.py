"""Every failure leaves a true record (issue 17): validation before anything is written, resume that never loses a
finished run, interrupts recorded as such, honest reports, concurrent writers, and fault injection.

``pytest tests/integration/test_reliability.py -m slow -s`` also runs the kill test; with ``METANAS_FAULT_FIGURES=FILE`` the
fault-injection tests add their counts (kills tried, files damaged, concurrent writers) to FILE as JSON lines.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from conftest import REPO, run_metanas
from metanas.config import CONF_DIR
from metanas.config import ConfigError, import_target, train_ranges, validate

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


def _figure(name: str, **counts) -> None:
    """Record a fault-injection figure (see the module docstring)."""
    out = os.environ.get("METANAS_FAULT_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"test": name, **counts}) + "\n")


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _leaves(node: DictConfig, where: str = "train"):
    """(dotted key, value) of every train.* value outside components (``_target_`` nodes)."""
    if "_target_" in node:
        return
    for k in node:
        v = node[k]
        if isinstance(v, DictConfig):
            yield from _leaves(v, f"{where}.{k}")
        else:
            yield f"{where}.{k}", (OmegaConf.to_container(v) if OmegaConf.is_config(v) else v)


def _wrong_type(value):
    """A value of another type than ``value`` (None means 'any': no wrong type)."""
    if isinstance(value, bool):
        return "perhaps"
    if isinstance(value, (int, float)):
        return "abc"
    if isinstance(value, str):
        return None  # OmegaConf's string fields take numbers as their text (a choice is then checked by name)
    if isinstance(value, list):
        return "abc"
    return None


def _out_of_range(rng):
    if rng.lo is not None:
        return rng.lo if rng.lo_open else rng.lo - 1
    return rng.hi if rng.hi_open else rng.hi + 1


# ---- 1. validation of train.* before anything is written -----------------------------------------------------

@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_wrong_type_or_out_of_range_train_value_is_rejected(experiment):
    """Property over every train.* key of every experiment (composed with debug=fast): a value of another type, and
    a value just outside the declared range, fail validation naming the key; the defaults themselves pass."""
    cfg = _compose([f"experiment={experiment}", "debug=fast"])
    validate(cfg)
    rnd = random.Random(experiment)
    ranges = train_ranges(import_target(cfg.runner).train_type)  # the ranges declared on the train dataclass
    tried = 0
    for key, value in _leaves(cfg.train):
        bad = [_wrong_type(value)]
        if key in ranges and isinstance(value, (int, float, list)) and not isinstance(value, bool):
            b = _out_of_range(ranges[key])
            bad.append([b] * max(1, len(value)) if isinstance(value, list) else
                       (int(b) if isinstance(value, int) and float(b).is_integer() else b))
        if isinstance(value, float) and rnd.random() < 0.5:
            bad.append(True)  # a bool is not a number here
        for b in bad:
            if b is None:
                continue
            c = cfg.copy()
            tried += 1
            try:  # the schema (the runner's train dataclass) refuses a value of the wrong type on assignment ...
                OmegaConf.update(c, key, b, merge=False)
            except ValidationError as e:
                assert f"full_key: {key}" in str(e), str(e)
                continue
            with pytest.raises(ConfigError, match=r"^'" + key.replace(".", r"\.")):  # ... validate the rest
                validate(c)
    assert tried > 0 or not list(_leaves(cfg.train))


@pytest.mark.parametrize("override,expected", [
    ("train.steps=abc", "override train.steps=abc Value 'abc' of type 'str' could not be converted to Integer"),
    ("train.steps=0", "'train.steps' = 0 is out of range; expected int >= 1"),
    ("seeds=0", "'seeds' = 0 is out of range"),
])
def test_bad_train_value_exits_2_before_a_run_directory_exists(tmp_path, override, expected):
    p = run_metanas("experiment=toy_regression", override, f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metanas: error:") and expected in lines[0], p.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_late_read_train_value_is_checked_before_meta_training(tmp_path):
    p = run_metanas("experiment=maml_sinusoid", "train.test_tasks=abc", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path, timeout=60)
    assert p.returncode == 2 and "train.test_tasks=abc" in p.stderr and list(tmp_path.iterdir()) == []


def test_meta_dataset_source_without_a_meta_dataset_is_one_line():
    cfg = _compose(["experiment=predictor_nb201", "meta_dataset=null", "train.source=meta_dataset"])
    with pytest.raises(ConfigError, match="train.source=meta_dataset reads train.meta_dataset"):
        validate(cfg)


def test_runner_without_a_seed_vmap_rejects_seeds_above_1(tmp_path):
    p = run_metanas("experiment=maml_sinusoid", "debug=fast", "seeds=2", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("metanas: error: config error: seeds=2: experiment maml_sinusoid runs one seed"), last
    assert not list(tmp_path.rglob("summary.json")) and not (tmp_path / "meta.jsonl").exists()


def test_unwritable_meta_dataset_is_one_line_before_the_run(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    p = run_metanas("experiment=toy_regression", "debug=fast", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/afile/meta.jsonl", cwd=tmp_path)
    assert p.returncode == 2 and "is not a directory" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_cfg_job_shows_the_config_as_it_will_run(tmp_path):
    p = run_metanas("experiment=toy_regression", "debug=fast", "--cfg", "job", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    cfg = OmegaConf.create(p.stdout)
    assert cfg.train.steps == 6 and cfg.train.hidden == 8 and cfg.log_every == 1  # debug=fast's sizes


# ---- one finished toy run per module, copied by the tests that damage or resume it -----------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """``(run_dir, meta.jsonl, stderr)`` of one finished ``toy_regression debug=fast`` run (do not modify)."""
    root = tmp_path_factory.mktemp("finished")
    p = run_metanas("experiment=toy_regression", "debug=fast", f"results_dir={root}/runs",
                    f"meta_dataset={root}/meta.jsonl", cwd=root)
    assert p.returncode == 0, p.stderr[-2000:]
    (d,) = (root / "runs" / "toy_regression").iterdir()
    return d, root / "meta.jsonl", p.stdout + p.stderr


def _copy(finished, tmp_path):
    """A copy of the finished run and of its meta-dataset (record's run_dir pointing at the copy)."""
    import shutil

    d, meta, _ = finished
    run = tmp_path / "run"
    shutil.copytree(d, run)
    rec = json.loads(meta.read_text())
    rec["run_dir"] = str(run)
    (tmp_path / "meta.jsonl").write_text(json.dumps(rec) + "\n")
    return run, tmp_path / "meta.jsonl"


def _resume(run, meta, *extra):
    return run_metanas(f"resume={run}", f"meta_dataset={meta}", *extra, cwd=run.parent)


def _summary(run):
    return json.loads((run / "summary.json").read_text())


def test_backend_probing_is_quiet(finished):
    assert "Unable to initialize backend" not in finished[2] and "Traceback" not in finished[2]


@pytest.mark.parametrize("damage", ["garbled", "no_default_folder"])
def test_damaged_newest_checkpoint_falls_back_with_one_warning(finished, tmp_path, damage):
    run, meta = _copy(finished, tmp_path)
    newest = max((run / "checkpoints" / "train").iterdir(), key=lambda p: int(p.name))
    if damage == "garbled":
        for f in (newest / "default").rglob("*"):
            if f.is_file() and "/d/" in str(f):
                f.write_bytes(b"garbage")
    else:  # a partially copied checkpoint
        import shutil

        shutil.rmtree(newest / "default")
    before = _summary(run)
    p = _resume(run, meta)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr  # Hydra's log goes to stdout
    warn = [ln for ln in out.splitlines() if "is damaged" in ln]
    assert len(warn) == 1 and f"step {newest.name}" in warn[0] and "falling back to step" in warn[0], out
    assert "Traceback" not in out and "Event loop is closed" not in out
    s = _summary(run)
    assert s["status"] == "ok" and s["metrics"] == before["metrics"], "bitwise equal after the fallback"
    assert (run / "damaged_checkpoints" / "train" / newest.name).is_dir(), "the damaged checkpoint is kept aside"
    assert len(meta.read_text().splitlines()) == 1, "resuming a finished run appends no second record"
    _figure("damaged_checkpoint", files_damaged=1)


def test_resume_names_ignored_overrides_and_honours_meta_dataset_null(finished, tmp_path):
    run, meta = _copy(finished, tmp_path)
    meta.unlink()
    p = run_metanas(f"resume={run}", "seed=3", "experiment=maml_sinusoid", "meta_dataset=null", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    ign = [ln for ln in p.stderr.splitlines() if "resume ignores" in ln]
    assert len(ign) == 1 and "seed=3" in ign[0] and "experiment=maml_sinusoid" in ign[0]
    assert not meta.exists() and "meta_dataset: null" in (run / "config.yaml").read_text()


def test_summary_missing_after_the_record_was_appended_resumes_to_one_record(finished, tmp_path):
    """The state a kill leaves between the meta-dataset append and the ok summary."""
    run, meta = _copy(finished, tmp_path)
    before = _summary(run)
    (run / "summary.json").unlink()
    p = _resume(run, meta)
    assert p.returncode == 0, p.stderr[-2000:]
    assert _summary(run)["metrics"] == before["metrics"] and len(meta.read_text().splitlines()) == 1
    _figure("missing_summary", files_damaged=1)


def test_damaged_summary_is_reported_and_rewritten_by_resume(finished, tmp_path):
    run, meta = _copy(finished, tmp_path)
    before = _summary(run)
    (run / "summary.json").write_text('{"status": "ok", "metr')
    r = subprocess.run([sys.executable, "-m", "metanas.report", str(tmp_path)], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0 and "summary.json cannot be read" in r.stdout, "never dropped, never a false ok"
    p = _resume(run, meta)
    assert p.returncode == 0 and "summary.json cannot be read" in p.stdout + p.stderr
    assert _summary(run)["metrics"] == before["metrics"] and len(meta.read_text().splitlines()) == 1
    _figure("damaged_summary", files_damaged=1)


@pytest.mark.parametrize("damage", ["cut_last_row", "garbled_middle_row"])
def test_damaged_metrics_jsonl_is_rewritten_exactly_by_resume(finished, tmp_path, damage):
    run, meta = _copy(finished, tmp_path)
    good = (run / "metrics.jsonl").read_text()
    lines = good.splitlines(keepends=True)
    if damage == "cut_last_row":
        (run / "metrics.jsonl").write_text("".join(lines[:-1]) + lines[-1][:15])
    else:
        lines[2] = "\x00\x01garbage\n"
        (run / "metrics.jsonl").write_text("".join(lines))
    p = _resume(run, meta)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "not valid JSON" in p.stdout + p.stderr and (run / "metrics.jsonl.damaged").exists()
    s = _summary(run)
    assert s["status"] == "ok" and s["metrics"] == json.loads((finished[0] / "summary.json").read_text())["metrics"]
    if damage == "cut_last_row":  # the final row is redone from the previous checkpoint, bitwise equal
        assert (run / "metrics.jsonl").read_text() == good
    _figure("damaged_metrics", files_damaged=1)


def test_failed_resume_keeps_a_finished_runs_record(finished, tmp_path, monkeypatch):
    """In process: the runner fails on resume; summary.json (ok), metrics.jsonl and config.yaml stay as they were."""
    from metanas import experiment
    import metanas.runners.toy as toy

    run, meta = _copy(finished, tmp_path)
    kept = {n: (run / n).read_bytes() for n in ("summary.json", "metrics.jsonl", "config.yaml")}

    def boom(cfg, ctx):
        ctx.log("train", 99, {"loss": 1.0})
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(toy, "run", boom)
    cfg = _compose([f"resume={run}", f"meta_dataset={meta}"])
    with pytest.raises(RuntimeError, match="disk on fire"):
        experiment.run_experiment(cfg, run, [f"resume={run}", "train.noise=0.5"])
    assert {n: (run / n).read_bytes() for n in kept} == kept
    failed = json.loads((run / "resume_failed.json").read_text())
    assert failed["status"] == "failed" and "disk on fire" in failed["error"]


def test_record_that_cannot_be_appended_makes_the_summary_failed(tmp_path, monkeypatch):
    """The summary's status agrees with the exit code when the meta-dataset append fails during the run."""
    from metanas import experiment, run_store

    import jax

    append = run_store.append_jsonl

    def no_space(path, *a, **k):
        if str(path).endswith("meta.jsonl"):
            raise OSError(28, "No space left on device")
        return append(path, *a, **k)

    monkeypatch.setattr(run_store, "append_jsonl", no_space)
    cfg = _compose(["experiment=toy_regression", "debug=fast", f"meta_dataset={tmp_path}/meta.jsonl"])
    with jax.numpy_rank_promotion("allow"), pytest.raises(OSError, match="could not be appended"):
        experiment.run_experiment(cfg, tmp_path / "run", ["experiment=toy_regression", "debug=fast"])
    s = _summary(tmp_path / "run")
    assert s["status"] == "failed" and "No space left" in s["error"]


# ---- 3. interrupts ---------------------------------------------------------------------------------------------

def _default_signals():
    """A run started from a shell sees SIGINT/SIGTERM at their defaults. An earlier test in the same xdist worker can
    leave SIGINT ignored, which a child inherits across exec, and metanas (like nohup'd programs) keeps an ignored
    signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_is_recorded_as_interrupted_with_a_resume_hint(tmp_path, sig, code):
    env = dict(os.environ, CI="1")
    proc = subprocess.Popen([sys.executable, "-m", "metanas", "experiment=toy_regression", "train.steps=100000",
                             "checkpoint_every=20", f"results_dir={tmp_path}/runs",
                             f"meta_dataset={tmp_path}/meta.jsonl"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_signals)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("runs/toy_regression/*/checkpoints/train/20")):
        time.sleep(0.05)
    proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1]  # the first signal stops the run at the next step boundary
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    (run,) = (tmp_path / "runs" / "toy_regression").iterdir()
    assert last.startswith("metanas: interrupted") and f"resume with: python -m metanas resume={run}" in last
    s = _summary(run)
    assert s["status"] == "interrupted" and s["metrics"] == {} and not (tmp_path / "meta.jsonl").exists()
    r = subprocess.run([sys.executable, "-m", "metanas.report", str(tmp_path / "runs")], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0 and "1 interrupted run(s)" in r.stdout and str(run) in r.stdout


# ---- 5. meta-dataset appends and 6. caches, with concurrent writers --------------------------------------------

def test_cut_last_meta_dataset_line_is_ended_before_the_next_record(tmp_path):
    from metanas.run_store import JsonlError, append_jsonl, read_jsonl

    f = tmp_path / "meta.jsonl"
    f.write_text('{"run_dir": "a", "metrics": {"x": 1}}\n{"run_dir": "b", "metr')
    assert append_jsonl(f, {"run_dir": "c", "metrics": {"x": 3}})
    lines = f.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2]) == {"metrics": {"x": 3}, "run_dir": "c"}
    assert json.loads(lines[0])["run_dir"] == "a", "the earlier record is kept"
    with pytest.raises(JsonlError, match=r"meta.jsonl:2: not valid JSON"):  # the cut line is named, not glued
        read_jsonl(f)
    assert not append_jsonl(f, {"run_dir": "c", "metrics": {"x": 3}}, unless_run_dir="c")
    assert len(f.read_text().splitlines()) == 3
    _figure("damaged_meta_dataset_line", files_damaged=1)


def test_a_run_after_a_cut_meta_dataset_line_keeps_its_record(finished, tmp_path):
    d, meta, _ = finished
    m = tmp_path / "meta.jsonl"
    m.write_text(meta.read_text()[:-40])  # a record cut by a kill mid-append
    p = run_metanas("experiment=toy_regression", "debug=fast", f"results_dir={tmp_path}/runs", f"meta_dataset={m}",
                    cwd=tmp_path)
    assert p.returncode == 0 and "has no final newline" in p.stdout + p.stderr
    lines = m.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["metrics"] == _summary(d)["metrics"]
    _figure("damaged_meta_dataset_line_then_run", files_damaged=1)


_APPENDER = """
import sys
from metanas.run_store import append_jsonl
path, who, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    append_jsonl(path, {"who": who, "i": i, "pad": "x" * (100 + 997 * (i % 7))})
"""


def test_concurrent_meta_dataset_writers(tmp_path):
    """2-4 processes append to one meta-dataset at once (starting from a cut line): every row whole, none lost."""
    f = tmp_path / "meta.jsonl"
    tries = 0
    for n_procs in (2, 3, 4):
        f.write_text('{"cut": ')
        procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(f), str(w), "40"], cwd=REPO)
                 for w in range(n_procs)]
        assert all(p.wait(timeout=120) == 0 for p in procs)
        rows = [json.loads(ln) for ln in f.read_text().splitlines()[1:]]
        assert sorted((r["who"], r["i"]) for r in rows) == [(w, i) for w in range(n_procs) for i in range(40)]
        tries += 1
    _figure("concurrent_meta_dataset", writers=[2, 3, 4], rows_each=40, repeats=tries)


def _fake_omniglot(root: Path, chars: int = 2) -> None:
    rng = np.random.default_rng(0)
    for name in ("images_background", "images_evaluation"):
        np.savez(root / f"{name}.npz", images=rng.random((chars, 20, 105, 105)) > 0.2)


_BUILDER = """
import sys
import metanas.data.omniglot as o
o.OMNIGLOT_CHARS = 4  # the tiny fake input below
ink = o.load_omniglot_npz(sys.argv[1], 28, cache_dir=sys.argv[2])
assert ink.shape == (4, 20, 28, 28), ink.shape
"""


def test_concurrent_cache_builders_and_a_damaged_cache(tmp_path):
    """2-4 processes build the same Omniglot cache at once (tiny fake input, SYNTHETIC): all succeed, one whole
    cache, no temporary file left; a damaged cache is rebuilt with a warning."""
    from metanas.data.cache import read_cache

    _fake_omniglot(tmp_path)
    cache = tmp_path / "cache"
    for n_procs in (2, 3, 4, 4):
        import shutil

        shutil.rmtree(cache, ignore_errors=True)
        procs = [subprocess.Popen([sys.executable, "-c", _BUILDER, str(tmp_path), str(cache)], cwd=REPO,
                                  stderr=subprocess.PIPE, text=True) for _ in range(n_procs)]
        errs = [p.communicate(timeout=120)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), errs
        (f,) = list(cache.iterdir())
        assert read_cache(f, "ink").shape == (4, 20, 28, 28)
    f.write_bytes(f.read_bytes()[:100])  # a cache cut short
    p = subprocess.run([sys.executable, "-c", _BUILDER + "\nimport logging\n", str(tmp_path), str(cache)], cwd=REPO,
                       capture_output=True, text=True)
    assert p.returncode == 0 and "is damaged" in p.stderr, p.stderr
    assert read_cache(f, "ink").shape == (4, 20, 28, 28)
    _figure("concurrent_cache", writers=[2, 3, 4, 4], files_damaged=1)


# ---- 4. reports ------------------------------------------------------------------------------------------------

def _fake_run(d: Path, config: dict, metrics: dict, *, overrides=(), status="ok", per_seed=None, seeds=1):
    """A run directory as the app writes it (SYNTHETIC numbers, for the report's bookkeeping only)."""
    import yaml

    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    (d / ".hydra").mkdir()
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (d / "summary.json").write_text(json.dumps({"experiment": config["name"], "status": status, "metrics": metrics,
                                                "metrics_per_seed": per_seed, "seeds": seeds, "error": None}))


def test_report_counts_seeds_from_metrics_per_seed_and_never_pools_trials(tmp_path):
    from metanas.report import _bar_label, aggregate, find_runs, to_markdown

    base = {"name": "toy_regression", "seed": 0, "train": {"steps": 6, "hidden": 8}}
    # a runner that ignored seeds=2 recorded one value: n is 1, not 2
    _fake_run(tmp_path / "a", base, {"loss": 1.0}, overrides=["experiment=toy_regression"], seeds=2)
    # a seeds=3 run: n is 3
    _fake_run(tmp_path / "b", base | {"train": {"steps": 6, "hidden": 16}}, {"loss": 2.0},
              overrides=["experiment=toy_regression", "train.hidden=16"], per_seed={"loss": [1.0, 2.0, 3.0]}, seeds=3)
    # three HPO trials without overrides, with different configs: three rows
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        _fake_run(tmp_path / "hpo" / "trials" / f"{i:04d}", base | {"optimizer": {"learning_rate": lr}},
                  {"loss": lr})
    _fake_run(tmp_path / "c", base, {}, status="interrupted")
    table, failed, counts, interrupted = aggregate(find_runs([tmp_path]))
    assert counts["experiment=toy_regression"] == 1 and counts["experiment=toy_regression train.hidden=16"] == 3
    trial_rows = [s for s in table if "optimizer.learning_rate" in s]
    assert len(trial_rows) == 3 and len(set(trial_rows)) == 3, table.keys()
    assert len(interrupted) == 1 and not failed
    md = to_markdown(table, failed, counts, interrupted)
    assert "1 interrupted run(s)" in md
    labels = [_bar_label(s, sorted(table)) for s in sorted(table)]
    assert len(set(labels)) == len(labels), labels


def test_optuna_labels_differ(tmp_path):
    from metanas.report import _bar_label, aggregate, find_runs

    long = "experiment=darts_nb201 objective=supernet_val_acc hydra.sweeper.direction=maximize"
    for i, lr in enumerate([0.0123, 0.0456]):
        _fake_run(tmp_path / str(i), {"name": "darts_nb201", "search": {"w_lr": lr}}, {"supernet_val_acc": 50.0 + i},
                  overrides=[*long.split(), f"search.w_lr={lr}"])
    table, *_ = aggregate(find_runs([tmp_path]))
    labels = [_bar_label(s, sorted(table)) for s in sorted(table)]
    assert len(table) == 2 and len(set(labels)) == 2 and all("search.w_lr=" in lb for lb in labels), labels


# ---- 7. sweeper example ----------------------------------------------------------------------------------------

def test_sweep_objective_that_is_not_a_final_metric_is_one_line_and_a_sweep_summary(tmp_path):
    p = run_metanas("-m", "hydra/sweeper=tpe", "experiment=toy_regression", "debug=fast", "objective=nope",
                    "hydra.sweeper.n_trials=3", "optimizer.learning_rate=tag(log, interval(1e-3, 1e-1))",
                    f"hydra.sweep.dir={tmp_path}/sweep", "meta_dataset=null", cwd=tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("metanas: error: objective=nope is not a final metric of toy_regression; choose one of")
    s = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    assert "objective=nope" in s["aborted"] and s["jobs"] == 1


@pytest.mark.slow
def test_tpe_example_runs(tmp_path):
    p = run_metanas("-m", "hydra/sweeper=tpe", "experiment=toy_regression", "debug=fast", "objective=loss",
                    "hydra.sweeper.n_trials=3", "optimizer.learning_rate=tag(log, interval(1e-3, 1e-1))",
                    f"hydra.sweep.dir={tmp_path}/sweep", "meta_dataset=null", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    assert s["ok"] == 3 and (tmp_path / "sweep" / "optimization_results.yaml").exists()


# ---- fault injection: SIGKILL at random moments ----------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_at_20_random_moments_then_resume_ends_bitwise_equal(tmp_path):
    """20 SIGKILLs at random moments of a toy_regression run (checkpoint every 5 steps, so many land inside an
    orbax write), each followed by ``resume=``: bitwise the final metrics and metrics.jsonl of the uninterrupted
    run, and one valid meta-dataset record per finished run. ``METANAS_FAULT_SEED`` picks other moments."""
    from metanas.run_store import MetricWriter, read_jsonl

    common = ["experiment=toy_regression", "train.steps=400", "checkpoint_every=5", "log_every=10"]
    t0 = time.time()
    ref = run_metanas(*common, f"results_dir={tmp_path}/ref", f"meta_dataset={tmp_path}/ref.jsonl", cwd=tmp_path)
    wall = time.time() - t0
    assert ref.returncode == 0, ref.stderr[-2000:]
    (ref_dir,) = (tmp_path / "ref" / "toy_regression").iterdir()
    ref_metrics, ref_rows = _summary(ref_dir)["metrics"], MetricWriter(ref_dir).rows()

    meta = tmp_path / "meta.jsonl"
    rnd = random.Random(int(os.environ.get("METANAS_FAULT_SEED", "17")))
    env = dict(os.environ, CI="1")
    seen = {"kills": 0, "before_config": 0, "during_checkpoint_write": 0, "after_finish": 0, "cut_metrics_row": 0}
    runs = []
    for i in range(20):
        out = tmp_path / f"k{i:02d}"
        proc = subprocess.Popen([sys.executable, "-m", "metanas", *common, f"results_dir={out}",
                                 f"meta_dataset={meta}"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.3, wall + 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen["kills"] += 1
        dirs = [d for d in out.glob("toy_regression/*") if (d / "config.yaml").exists()]
        if not dirs:  # killed before the run had a config: start it again
            seen["before_config"] += 1
            p = run_metanas(*common, f"results_dir={out}", f"meta_dataset={meta}", cwd=tmp_path)
            dirs = [d for d in out.glob("toy_regression/*") if (d / "config.yaml").exists()]
        else:
            (d,) = dirs
            if list((d / "checkpoints" / "train").glob("*tmp*")):
                seen["during_checkpoint_write"] += 1
            if (d / "summary.json").exists():
                seen["after_finish"] += 1
            text = (d / "metrics.jsonl").read_text() if (d / "metrics.jsonl").exists() else ""
            seen["cut_metrics_row"] += bool(text) and not text.endswith("\n")
            p = run_metanas(f"resume={d}", cwd=tmp_path)
        assert p.returncode == 0, (i, p.stderr[-2000:])
        (d,) = dirs
        s = _summary(d)
        assert s["status"] == "ok" and s["metrics"] == ref_metrics, (i, s)
        assert MetricWriter(d).rows() == ref_rows, i
        runs.append(d)
    records = read_jsonl(meta)
    per_run = {str(d): sum(Path(r["run_dir"]).resolve() == d.resolve() for r in records) for d in runs}
    assert all(n == 1 for n in per_run.values()), per_run
    assert len(records) == len(runs)
    assert all(r["metrics"] == ref_metrics for r in records)
    _figure("sigkill", **seen)
    print(f"\nfault injection (SIGKILL): {seen}")


def test_atomic_writes_keep_the_usual_file_permissions(tmp_path):
    """mkstemp creates 0600 files; a run's summary must stay readable like any other file the user writes."""
    import os

    from metanas.run_store import atomic_write_json

    atomic_write_json(tmp_path / "summary.json", {"status": "ok"})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o666 & ~mask
