"""train.sampler=metalearner: the MetaLearnerSampler (metanas.hpo.metalearner), the run-store records it learns
from, resume, and the hpo_metalearner experiment under debug=fast."""

import json
import math
import shutil

import jax
import numpy as np
import pytest

from conftest import REPO, last_summary, run_fast, run_metanas
from metanas.hpo.metalearner import (MetaLearnerSampler, decode_units, encode_units, load_records)
from metanas.hpo.schedulers import RandomSearch, SuccessiveHalving, Trial
from metanas.hpo.space import config_key, space_from_config
from metanas.predictors.pairwise import Pairwise
from metanas.run_store import append_jsonl, read_jsonl

SPACE = space_from_config([
    {"name": "opt", "type": "categorical", "choices": ["adam", "sgd"]},
    {"name": "lr", "type": "float", "low": 1e-4, "high": 0.3, "log": True},
    {"name": "momentum", "type": "float", "low": 0.0, "high": 0.95, "condition": {"opt": ["sgd"]}},
    {"name": "nesterov", "type": "categorical", "choices": [True, False], "condition": {"opt": ["sgd"]}},
    {"name": "hidden", "type": "int", "low": 4, "high": 128, "log": True},
])
SMALL = space_from_config([  # 3 x 3 x 2 = 18 configurations
    {"name": "a", "type": "categorical", "choices": ["x", "y", "z"]},
    {"name": "b", "type": "int", "low": 1, "high": 3},
    {"name": "c", "type": "categorical", "choices": [0, 1]},
])
PRED = Pairwise(steps=300, ensemble=2, hidden=32, embed=8, batch=128)


def loss_of(c):  # a SYNTHETIC objective with a known optimum (lr ~ 0.01, sgd with high momentum, hidden ~ 64)
    loss = (math.log10(c["lr"]) + 2) ** 2 + (math.log2(c["hidden"]) - 6) ** 2 / 8
    return 0.1 + loss + (0.5 * (0.9 - c["momentum"]) ** 2 if c["opt"] == "sgd" else 0.3)


def sampler(space=SPACE, **kw):
    return MetaLearnerSampler(space, predictor=PRED, **({"n_candidates": 512, "chunk": 256, "top": 40} | kw))


def test_jitted_candidate_encoding_matches_the_space_and_respects_conditions():
    u = jax.random.uniform(jax.random.PRNGKey(0), (300, len(SPACE.params)))
    enc = np.asarray(jax.jit(jax.vmap(lambda v: encode_units(SPACE, v)))(u))
    for row, uu in zip(enc, np.asarray(u)):
        c = decode_units(SPACE, uu)
        SPACE.validate(c)  # only active parameters, all of them
        assert ("momentum" in c) == ("nesterov" in c) == (c["opt"] == "sgd")
        np.testing.assert_allclose(row, SPACE.encode(c), atol=1e-5)


def test_proposals_respect_conditional_parameters_and_are_model_driven():
    rng = np.random.default_rng(0)
    hist = []
    for i, c in enumerate([SPACE.sample(np.random.default_rng(i)) for i in range(12)]):
        hist.append(Trial(i, c, 1.0, loss_of(c), 0, 0, 1.0))
    props = sampler()(8, hist, rng)
    assert len(props) == 8
    for c in props:
        SPACE.validate(c)
    rand = [SPACE.sample(np.random.default_rng(100 + i)) for i in range(200)]
    # the model ranks: proposals are better than random draws on this smooth objective (median vs median)
    assert np.median([loss_of(c) for c in props]) < np.median([loss_of(c) for c in rand])


def test_never_proposes_a_configuration_already_run():
    rng = np.random.default_rng(1)
    all_cfgs = [{"a": a, "b": b, "c": c} for a in "xyz" for b in (1, 2, 3) for c in (0, 1)]
    hist = [Trial(i, cfg, 1.0, 1.0 + 0.1 * i, 0, 0, 1.0) for i, cfg in enumerate(all_cfgs[:10])]
    s = sampler(SMALL)
    ran = {config_key(t.config) for t in hist}
    props = s(5, hist, rng)
    keys = [config_key(c) for c in props]
    assert len(props) == 5 and len(set(keys)) == 5 and not ran & set(keys)
    # an exhausted space: fewer proposals, never a repeat
    hist += [Trial(10 + i, c, 1.0, 2.0, 0, 0, 1.0) for i, c in enumerate(props)]
    last = s(10, hist, rng)
    assert {config_key(c) for c in last} == {config_key(c) for c in all_cfgs} - {config_key(t.config) for t in hist}
    # a whole random search over the small space: every trial a new configuration
    seen = []
    RandomSearch(n_trials=18).run(sampler(SMALL), lambda c, f: seen.append(c) or 1.0 / (
        1 + all_cfgs.index(c)), np.random.default_rng(2))
    assert len({config_key(c) for c in seen}) == len(seen) == 18


def _records(path, n, experiment="toy", seed=0, keys=None):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        c = SPACE.sample(rng)
        flat = keys(c) if keys else dict(c) | {"train.steps": 100}
        append_jsonl(path, {"experiment": experiment, "dataset": "d", "split": "s", "run_dir": f"/x/{experiment}",
                            "config": flat, "metrics": {"test_mse": loss_of(c)}})


def test_records_of_an_unrelated_experiment_without_overlapping_keys_are_ignored(tmp_path):
    meta = tmp_path / "meta.jsonl"
    _records(meta, 10)
    kw = dict(metric="test_mse", maximize=False, experiment="toy", fidelity_key="train.steps")
    before = load_records(meta, SPACE, **kw, transfer=True)
    props_before = sampler(records=before, fidelity=(10.0, 100.0))(4, [], np.random.default_rng(0))
    # unrelated runs: none of the space's keys (and a metric of their own)
    _records(meta, 15, experiment="other", seed=3, keys=lambda c: {"model.width": 3, "train.steps": 5})
    for transfer in (False, True):
        after = load_records(meta, SPACE, **kw, transfer=transfer)
        assert after.configs == before.configs and after.utility == before.utility
        props = sampler(records=after, fidelity=(10.0, 100.0))(4, [], np.random.default_rng(0))
        assert props == props_before
    assert load_records(meta, SPACE, **kw, transfer=True).stats["no_overlap"] == 15
    assert load_records(meta, SPACE, **kw).stats["other_experiment"] == 15
    # a related experiment holding every key is used only with transfer, in its own pair group
    _records(meta, 5, experiment="related", seed=4)
    assert len(load_records(meta, SPACE, **kw).configs) == 10
    rel = load_records(meta, SPACE, **kw, transfer=True)
    assert len(rel.configs) == 15 and sum(g.startswith("related|") for g in rel.group) == 5
    # records of this experiment are 'already run' for the current task: never proposed again
    assert len(before.seen) == 10 and not {config_key(c) for c in props_before} & before.seen


def test_records_from_this_study_and_bad_rows_are_skipped(tmp_path):
    meta = tmp_path / "meta.jsonl"
    _records(meta, 4)
    append_jsonl(meta, {"experiment": "toy", "run_dir": "/study/trials/0000/toy", "metrics": {"test_mse": 1.0},
                        "config": {"opt": "adam", "lr": 0.01, "hidden": 8, "train.steps": 100}})
    append_jsonl(meta, {"experiment": "toy", "run_dir": "/y", "metrics": {"test_mse": float("nan")},
                        "config": {"opt": "adam", "lr": 0.01, "hidden": 8, "train.steps": 100}})
    append_jsonl(meta, {"experiment": "toy", "run_dir": "/y", "metrics": {"test_mse": 1.0},  # lr outside the space
                        "config": {"opt": "adam", "lr": 3.0, "hidden": 8, "train.steps": 100}})
    r = load_records(meta, SPACE, metric="test_mse", maximize=False, experiment="toy", fidelity_key="train.steps",
                     exclude_run_dir="/study")
    assert r.stats | {} == dict(used=4, other_experiment=0, no_overlap=0, missing_keys=1, bad_metric=1, own_study=1)


def test_a_study_killed_mid_round_replays_without_rerunning_finished_trials():
    """The runner's resume contract: the same (history, rng) gives the same proposals, so a replay of the
    schedule can take finished evaluations from trials.jsonl. Successive halving, killed inside rung 0."""
    method = SuccessiveHalving(n_configs=6, min_fidelity=1, max_fidelity=4, eta=2)
    done, calls = {}, []

    class Killed(Exception):
        pass

    def evaluate(c, f, kill_at=None):
        k = (config_key(c), f)
        if k in done:
            return done[k]
        if kill_at is not None and len(calls) == kill_at:
            raise Killed
        calls.append(k)
        done[k] = loss_of(c) / f
        return done[k]

    hist0 = [Trial(i, c, 4.0, loss_of(c), 0, 0, 1.0) for i, c in enumerate(
        SPACE.sample(np.random.default_rng(50 + i)) for i in range(4))]
    s = sampler(fidelity=(1.0, 4.0))

    def propose(n, history, rng):  # earlier trials at the top fidelity: the model proposes from the first call
        return s(n, hist0 + list(history), rng)

    with pytest.raises(Killed):
        method.run(propose, lambda c, f: evaluate(c, f, kill_at=4), np.random.default_rng(7))
    first = list(calls)
    hist = method.run(propose, evaluate, np.random.default_rng(7))
    assert [(config_key(t.config), t.fidelity) for t in hist[:4]] == first  # same proposals, same order
    assert len(calls) == len(hist) and calls[:4] == first  # nothing finished was evaluated twice


def test_trust_sampler_weights_the_earlier_study_that_ranks_this_one_right():
    """train.metalearner.trust: two earlier studies (pair groups) of the SYNTHETIC objective, one with the same
    objective, one with its order reversed; once this study has trials, the first takes the weight, its best
    configurations are replayed first, and a configuration already run on this task is never proposed."""
    from metanas.hpo.metalearner import PastRecords
    from metanas.hpo.proposer import Proposer, TrustSampler

    rng = np.random.default_rng(0)
    configs = [SPACE.sample(rng) for _ in range(24)]
    good = [1.0 / loss_of(c) for c in configs]  # utilities (maximised): the same order as this study's
    bad = [loss_of(c) for c in configs]  # reversed
    records = PastRecords(configs * 2, [math.nan] * 48, good + bad, ["good"] * 24 + ["bad"] * 24, [[]] * 48,
                          frozenset({config_key(configs[int(np.argmax(good))])}), {})
    proposer = Proposer(SPACE, maximize=True, transform="raw", predictor=PRED, n_candidates=512, chunk=256,
                        top=40, replay=2)
    ts = TrustSampler.from_records(proposer, records, maximize=False)
    first = ts(2, [], np.random.default_rng(1))
    assert config_key(configs[int(np.argmax(good))]) not in {config_key(c) for c in first}  # seen on this task
    trials = [Trial(i, c, 1.0, loss_of(c), 0, 0, 1.0) for i, c in enumerate(
        SPACE.sample(np.random.default_rng(10 + i)) for i in range(8))]
    out = ts(4, trials, np.random.default_rng(2))
    assert len(out) == 4 and not {config_key(c) for c in out} & {config_key(t.config) for t in trials}
    w = ts.weights[-1]
    assert w["good"] > 0.3 and w["bad"] < 0.05, w  # the rest: this study's own member


def test_bad_sampler_name_is_one_line(tmp_path):
    p = run_metanas("experiment=hpo_random", "debug=fast", "train.sampler=bayes", f"results_dir={tmp_path}",
                    "meta_dataset=null", cwd=REPO)
    assert p.returncode == 2 and ("'train.sampler' = 'bayes' is not a choice; expected one of 'random', 'model', "
                                  "'metalearner'") in p.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())  # rejected before anything is written


def test_trust_with_a_multi_fidelity_method_is_one_line(tmp_path):
    p = run_metanas("experiment=hpo_metalearner", "train.metalearner.trust=true",
                    "train.method._target_=metanas.hpo.schedulers.SuccessiveHalving", "+train.method.n_configs=4",
                    "+train.method.min_fidelity=10", "~train.method.n_trials", f"results_dir={tmp_path}",
                    "meta_dataset=null", cwd=REPO)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 2 and "train.metalearner.trust needs a single-fidelity method" in last, p.stderr[-800:]


def test_hpo_metalearner_fast_arch_keys_real_training_and_resume(tmp_path):
    """debug=fast: 3 trials, each ONE NB201 cell trained on real Omniglot; the third is the meta-learner's.
    Then kill the study after trial 1 (drop trial 2 and the summary) and resume: trials 0 and 1 are not rerun."""
    cache = f"device.compilation_cache={tmp_path}/xla"
    run_fast(tmp_path, "experiment=hpo_metalearner", cache)
    s, run_dir = last_summary(tmp_path, "hpo_metalearner")
    assert s["metrics"]["n_trials"] == 3 and s["metrics"]["n_failed"] == 0
    trials = json.loads((run_dir / "trials.json").read_text())
    recs = [r for r in read_jsonl(tmp_path / "meta.jsonl") if r["experiment"] == "nb201_cell"]
    assert len(recs) == 3 and len({config_key(t["config"]) for t in trials}) == 3
    for t, r in zip(trials, recs):
        ts = json.loads((next((run_dir / "trials").glob(f"{t['index']:04d}/*/summary.json"))).read_text())
        assert ts["metrics"]["val_acc"] == pytest.approx(-t["loss"]) and 0 <= ts["metrics"]["test_acc"] <= 1
        cell = [t["config"][f"train.cell.e{i}"] for i in range(6)]
        assert r["config"]["train.lr"] == pytest.approx(t["config"]["train.lr"])
        assert r["arch"] == "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*cell)
    assert json.loads((run_dir / "metalearner_records.json").read_text())["stats"]["used"] == 0

    # kill after trial 1: trial 2's run and everything after it are gone
    mtimes = {p: p.stat().st_mtime for p in (run_dir / "trials").glob("000[01]/*/summary.json")}
    lines = (run_dir / "trials.jsonl").read_text().splitlines()
    (run_dir / "trials.jsonl").write_text("\n".join(lines[:2]) + "\n")
    shutil.rmtree(run_dir / "trials" / "0002")
    (run_dir / "summary.json").unlink()
    p = run_metanas(f"resume={run_dir}", cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    assert {p: p.stat().st_mtime for p in (run_dir / "trials").glob("000[01]/*/summary.json")} == mtimes
    again = json.loads((run_dir / "trials.json").read_text())
    assert [t["config"] for t in again] == [t["config"] for t in trials]  # the meta-learner re-proposed trial 2
    assert len(json.loads((run_dir / "summary.json").read_text())["metrics"]) > 0

    # a second study with train.metalearner.trust: the first study's records are one trust-weighted member; the
    # configurations it ran on this task are never proposed again
    earlier = [r for r in read_jsonl(tmp_path / "meta.jsonl") if r["experiment"] == "nb201_cell"]
    run_fast(tmp_path, "experiment=hpo_metalearner", cache, "train.metalearner.trust=true", "seed=1")
    s2, run2 = last_summary(tmp_path, "hpo_metalearner")
    assert s2["metrics"]["n_trials"] == 3 and run2 != run_dir
    trust = json.loads((run2 / "trust.json").read_text())
    assert len(trust["studies"]) == 1 and trust["studies"][0].startswith("nb201_cell")
    assert json.loads((run2 / "metalearner_records.json").read_text())["stats"]["used"] == len(earlier)
    new = {config_key(t["config"]) for t in json.loads((run2 / "trials.json").read_text())}
    assert not new & {config_key(t["config"]) for t in trials}


@pytest.mark.slow
def test_live_study_script_at_tiny_size(tmp_path, data_dir):
    """experiments/live_metalearner_study.py --tiny: real training, both tasks, the warm run on task B reads task
    A's records from the study's meta-dataset; selection by validation, test read for the chosen config."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, str(REPO / "experiments/live_metalearner_study.py"), "--tiny", "--out",
                        str(tmp_path), "--data-dir", str(data_dir), "--methods", "random,metalearner"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(res["B"]["summary"]["methods"]) == {"random", "metalearner", "metalearner_warm"}
    assert res["B"]["warm_records"] == 8  # 2 methods x 1 seed x 4 trials of task A
    for label in "AB":
        for log in res[label]["trials"].values():
            assert len(log) == 4 and all(0 <= t["val_acc"] <= 1 for t in log)
        assert (tmp_path / f"best_so_far_task{label}.png").exists()
    assert "trials to target" in (tmp_path / "tables.md").read_text()
