"""Tabular benchmarks (host numpy, never traced): NB201 tables here; TabRepo in ``tabrepo.py``."""

from __future__ import annotations

from metanas.search_spaces.nb201 import NB201Space


def reference_metrics(space, arch, data_dir: str | None) -> tuple[dict, dict[str, float]]:
    """What a tabular benchmark knows of a derived ``arch`` of ``space``: (extra ``genotype.json`` fields, reference
    accuracies) -- reported, never used to choose. NB201 cells: their 200-epoch NB201 accuracies
    (``nb201.lookup_cell``; empty when an op is not an NB201 op); other spaces: nothing."""
    if not isinstance(space, NB201Space):
        return {}, {}
    from metanas.benchmarks.nb201 import lookup_cell

    acc = lookup_cell(space, arch, data_dir)
    return {"nb201_200ep_test_acc": acc}, acc
