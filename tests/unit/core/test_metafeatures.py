"""Dataset meta-features (reference formulas, landmarker properties) and the auto-sklearn meta-data loader."""

import math
import shutil

import numpy as np
import pytest
from scipy import stats

from metanas.benchmarks.autosklearn import (AutoSklearnError, load_autosklearn, metafeatures_from_openml,
                                            to_lightgbm)
from metanas.metafeatures import MetaFeatureError, compute_metafeatures


def _blobs(n, sep, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return rng.normal(size=(n, 3)) + sep * y[:, None], y


def test_simple_and_class_features():
    x = np.arange(40, dtype=float).reshape(20, 2)
    x[0, 0] = x[3, 1] = x[3, 0] = np.nan
    y = np.array([0] * 15 + [1] * 5)
    mf = compute_metafeatures(x, y)
    assert (mf["NumberOfInstances"], mf["NumberOfFeatures"], mf["NumberOfClasses"]) == (20, 2, 2)
    assert mf["NumberOfMissingValues"] == 3 and mf["NumberOfInstancesWithMissingValues"] == 2
    assert mf["DatasetRatio"] == pytest.approx(0.1)
    assert mf["ClassEntropy"] == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert (mf["ClassProbabilityMin"], mf["ClassProbabilityMax"]) == (0.25, 0.75)
    four = compute_metafeatures(np.random.default_rng(0).normal(size=(40, 2)), np.arange(40) % 4)
    assert four["ClassEntropy"] == pytest.approx(2.0)


def test_skewness_kurtosis_match_moment_formulas():
    rng = np.random.default_rng(0)
    x = np.stack([rng.exponential(size=500), rng.normal(size=500), rng.uniform(size=500)], 1)
    mf = compute_metafeatures(x, rng.integers(0, 2, 500))

    def skew(c):
        m = c - c.mean()
        return np.mean(m ** 3) / np.mean(m ** 2) ** 1.5

    def kurt(c):
        m = c - c.mean()
        return np.mean(m ** 4) / np.mean(m ** 2) ** 2 - 3

    sk, ku = [skew(c) for c in x.T], [kurt(c) for c in x.T]
    assert mf["SkewnessMax"] == pytest.approx(max(sk)) and mf["SkewnessMin"] == pytest.approx(min(sk))
    assert mf["KurtosisMean"] == pytest.approx(np.mean(ku)) and mf["KurtosisSTD"] == pytest.approx(np.std(ku))
    assert max(sk) == pytest.approx(2.0, abs=0.4)  # exponential: skewness 2


def test_landmarkers_separate_easy_hard_and_nonlinear_tasks():
    easy = compute_metafeatures(*_blobs(400, 6.0))
    noise = compute_metafeatures(*_blobs(400, 0.0))
    assert easy["Landmark1NN"] > 0.97 and easy["LandmarkLinear"] > 0.97
    assert abs(noise["Landmark1NN"] - 0.5) < 0.1 and abs(noise["LandmarkLinear"] - 0.5) < 0.1
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (600, 2))
    xor = compute_metafeatures(x, (x[:, 0] * x[:, 1] > 0).astype(int))
    assert xor["Landmark1NN"] > 0.9 and xor["LandmarkLinear"] < 0.65  # 1-NN sees XOR, a linear model cannot
    skewed_y = np.array([0] * 320 + [1] * 80)
    assert compute_metafeatures(rng.normal(size=(400, 2)), skewed_y)["LandmarkMajority"] > 0.65


def test_regression_landmarkers_and_determinism():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.01 * rng.normal(size=300)
    mf = compute_metafeatures(x, y, classification=False, seed=3)
    assert mf["LandmarkLinear"] > 0.99 and mf["LandmarkMajority"] < 0.05 and "ClassEntropy" not in mf
    assert mf == compute_metafeatures(x, y, classification=False, seed=3)


@pytest.mark.parametrize("x,y,msg", [
    (np.zeros(10), np.zeros(10), "must be a 2-D table"),
    (np.zeros((10, 2)), np.zeros(9), r"y must have shape \(10,\)"),
    (np.zeros((2, 2)), np.zeros(2), "at least 4 instances"),
])
def test_bad_input(x, y, msg):
    with pytest.raises(MetaFeatureError, match=msg):
        compute_metafeatures(x, y)


@pytest.fixture(scope="module")
def askl():
    from conftest import DATA_DIR

    if not (DATA_DIR / "autosklearn_metalearning").exists():
        pytest.skip("shared data not found")
    return load_autosklearn(DATA_DIR)


def test_autosklearn_loader_matches_readme(askl):
    assert askl.features.shape == (len(askl.dataset_names), len(askl.feature_names))
    assert len(askl.dataset_names) > 200
    loss = dict(zip(askl.dataset_names, askl.best_loss))
    assert loss["hill-valley"] == 0.0 and loss["abalone"] == pytest.approx(0.877, abs=1e-3)  # README values
    j = askl.feature_names.index("ClassEntropy")
    assert askl.features[askl.dataset_names.index("2dplanes"), j] == pytest.approx(1.0, abs=1e-5)
    # LogNumberOfInstances is the log of NumberOfInstances
    a, b = askl.feature_names.index("LogNumberOfInstances"), askl.feature_names.index("NumberOfInstances")
    np.testing.assert_allclose(askl.features[:, a], np.log(askl.features[:, b]), rtol=1e-6)


def test_to_lightgbm_maps_only_gradient_boosting(askl):
    mapped = [to_lightgbm(askl.configs[c]) for c in askl.best_config_id]
    ok = [m for m in mapped if m is not None]
    kinds = [askl.configs[c]["classifier:__choice__"] for c in askl.best_config_id]
    assert len(ok) == kinds.count("gradient_boosting") > 0
    for m in ok:
        assert 0 < m["learning_rate"] <= 1 and m["num_leaves"] >= 2 and m["min_data_in_leaf"] >= 1


def test_openml_mapping_agrees_with_autosklearn_on_shared_datasets(askl, data_dir):
    from metanas.benchmarks.tabrepo import load_tabrepo

    tr = load_tabrepo(data_dir)
    agree, shared = 0, 0
    for i, name in enumerate(tr.dataset_names):
        if name not in askl.dataset_names or tr.problem_type[i] == "regression":
            continue
        q = {c: tr.openml_qualities[c][i] for c in tr.openml_qualities}
        mine = metafeatures_from_openml(q, tr.problem_type[i])
        theirs = dict(zip(askl.feature_names, askl.features[askl.dataset_names.index(name)]))
        keys = ("NumberOfFeatures", "NumberOfClasses", "NumberOfNumericFeatures", "NumberOfCategoricalFeatures")
        shared += 1
        agree += all(mine[k] == theirs[k] for k in keys) and \
            mine["NumberOfInstances"] == pytest.approx(theirs["NumberOfInstances"], rel=0.01)
    # same-named data sets may be different OpenML versions (porto-seguro: 57 vs 37 features)
    assert shared >= 5 and agree >= 0.8 * shared, (agree, shared)


def test_autosklearn_errors(tmp_path, data_dir):
    with pytest.raises(AutoSklearnError, match="no auto-sklearn scenario"):
        load_autosklearn(tmp_path)
    src = next((data_dir / "autosklearn_metalearning").glob("*.classification_dense"))
    dst = tmp_path / "scen"
    shutil.copytree(src, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    assert len(load_autosklearn(dst).dataset_names) > 200  # a user's own copy loads by its folder
    (dst / "algorithm_runs.arff").unlink()
    with pytest.raises(AutoSklearnError, match="file missing: .*algorithm_runs.arff"):
        load_autosklearn(dst)
