"""experiments/transfer_study.py's nested leave-one-task-out choice (fabricated design results; no search)."""

from __future__ import annotations

import importlib.util

from conftest import REPO


def _study():
    spec = importlib.util.spec_from_file_location("transfer_study", REPO / "experiments" / "transfer_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_nested_choice_never_reads_the_held_out_task():
    study = _study()
    tasks = ["a", "b", "c"]
    # candidate "x" is best on a only (by far), "y" is best on b and c
    q = {"a": {"x": [1, 1], "y": [50, 50]}, "b": {"x": [20, 20], "y": [10, 10]}, "c": {"x": [20, 20], "y": [10, 10]}}
    design = {"tasks": tasks, "targets": {t: {"queries": q[t]} for t in tasks}}
    choice = study.nested_choice(design, ["x", "y"])
    # held-out a: judged on b and c only -> y (though x is far better on a itself); held-out b: a and c, x wins
    # (x mean 10.5 vs y 30); same for c
    assert choice == {"a": "y", "b": "x", "c": "x"}
    # changing the held-out task's own results never changes its choice
    q["a"] = {"x": [50, 50], "y": [1, 1]}
    design = {"tasks": tasks, "targets": {t: {"queries": q[t]} for t in tasks}}
    assert study.nested_choice(design, ["x", "y"])["a"] == "y"
    # ties go to the earlier candidate
    tie = {"tasks": tasks, "targets": {t: {"queries": {"x": [5], "y": [5]}} for t in tasks}}
    assert set(study.nested_choice(tie, ["y", "x"]).values()) == {"y"}
