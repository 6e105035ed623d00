"""search_darts_stream end to end through the CLI under debug=fast: the predictor fitted on NB301 genotypes, the
streamed shortlist valid and consistent, a bad size one line."""

import json

import numpy as np

from conftest import REPO, last_summary, run_fast, run_metanas
from metanas.search import stream
from metanas.run_store import read_jsonl
from metanas.search_spaces.darts_cnn import DartsCNNSpace


def test_search_darts_stream_fast(tmp_path, data_dir):
    run_fast(tmp_path, "experiment=search_darts_stream")
    s, run_dir = last_summary(tmp_path, "search_darts_stream")
    m = s["metrics"]
    assert m["candidates"] == 20000 and m["candidates_per_s"] > 0 and -1 <= m["heldout_kendall_tau"] <= 1
    top = json.loads((run_dir / "topk.json").read_text())
    space = DartsCNNSpace()
    archs = np.stack([space.from_string(r["genotype"]) for r in top["top"]])
    assert len(top["top"]) == 10 and len({r["id"] for r in top["top"]}) == 10
    assert [r["id"] for r in top["top"]] == stream.genotype_ids(space, stream.arch_ids(space, archs))
    u = [r["utility"] for r in top["top"]]
    assert u == sorted(u, reverse=True)
    np.testing.assert_allclose(np.log1p(top["top"][0]["predicted_gain"]), m["top1_utility_over_best_train"],
                               rtol=1e-5, atol=1e-6)
    phases = [r["phase"] for r in read_jsonl(run_dir / "metrics.jsonl")]
    assert phases == ["fit", "stream"]


def test_search_darts_stream_bad_top_is_one_line(tmp_path, data_dir):
    p = run_metanas("experiment=search_darts_stream", "debug=fast", "train.top=30000", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=REPO)
    assert p.returncode == 2
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("metanas: error:")]
    assert len(err) == 1 and "train.top <= train.candidates" in err[0]
