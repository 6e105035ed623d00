"""curves_taskset under debug=fast (real TaskSet curves, two seeds, one held-out task)."""

import json

import pytest
from conftest import REPO, last_summary, run_fast, run_metanas

DATA = REPO.parent / "shared" / "data" / "taskset_dpl"


@pytest.mark.slow  # 185 s on the loaded 2-core machine (compilation of four jitted searches)
@pytest.mark.skipif(not DATA.is_dir(), reason="needs shared/data/taskset_dpl")
@pytest.mark.parametrize("init_prior", [0, 1])  # 1: the sources' order's best config first (FreezeThaw.init_prior)
def test_curves_taskset_fast(tmp_path, init_prior):
    run_fast(tmp_path, "experiment=curves_taskset", f"train.init_prior={init_prior}")
    s, run_dir = last_summary(tmp_path, "curves_taskset")
    for m in ("metanas", "dpl", "random"):
        assert 0.0 <= s["metrics"][f"{m}_regret"] <= 1.0
    res = json.loads((run_dir / "curves.json").read_text())
    assert res["tasks"] == ["FixedTextRNNClassification_imdb_patch32_GRU128_bs128"] and res["seeds"] == [0, 1]


def test_curves_taskset_bad_method_exits_2(tmp_path):
    p = run_metanas("experiment=curves_taskset", "debug=fast", "train.methods=[nope]", f"results_dir={tmp_path}/runs",
                    cwd=REPO)
    assert p.returncode == 2 and "train.methods" in p.stderr
    assert not (tmp_path / "runs").exists()
