"""MetaLearnerSampler against Optuna's OWN sampler test suite (``optuna.testing.pytest_samplers``, shipped with
Optuna >= 4 for third-party and OptunaHub samplers): the basic cases (every distribution kind, conditional and
dynamic spaces, NaN objectives, PartialFixedSampler), the relative-sampling cases, and the single-objective-only case
(a multi-objective study rejected with a ValueError).

Twice: in the default run with the start-up draws only (``n_startup_trials`` beyond the suite's 20 trials: the
sampler's plumbing, fast), and in the full run (``slow``) with the meta-learner proposing from the third completed
trial on, where each new space compiles the meta-learner's programs again (~4.5 min on 2 shared cores). The
meta-learner's own proposals are checked in the default run by ``test_optuna_sampler.py``'s SQLite contract."""

import pytest

optuna = pytest.importorskip("optuna", minversion="4")
pytest_samplers = pytest.importorskip("optuna.testing.pytest_samplers")

from metanas.optuna import MetaLearnerSampler  # noqa: E402
from metanas.predictors.pairwise import Pairwise  # noqa: E402

SMALL = Pairwise(hidden=16, embed=8, steps=100, ensemble=2, batch=64)


class _StartUp:
    @pytest.fixture
    def sampler(self):  # overrides the suite's fixture (it raises NotImplementedError)
        return lambda: MetaLearnerSampler(seed=0, n_startup_trials=100, n_candidates=256, predictor=SMALL)


class _Model:
    @pytest.fixture
    def sampler(self):
        return lambda: MetaLearnerSampler(seed=0, n_startup_trials=2, n_candidates=256, predictor=SMALL)


class TestBasic(_StartUp, pytest_samplers.BasicSamplerTestCase):
    pass


class TestRelative(_StartUp, pytest_samplers.RelativeSamplerTestCase):
    pass


class TestSingleOnly(_StartUp, pytest_samplers.SingleOnlySamplerTestCase):
    pass


@pytest.mark.slow
class TestBasicModel(_Model, pytest_samplers.BasicSamplerTestCase):
    pass


@pytest.mark.slow
class TestRelativeModel(_Model, pytest_samplers.RelativeSamplerTestCase):
    pass
